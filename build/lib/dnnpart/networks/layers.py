"""Layer tables: one row per layer, the sizes the delay models and the optimiser need.

A network is a compact list of `Layer` specs; one function, `build_table`, propagates shapes through it and
computes each row's sizes, MACs and parameter count. The zoo and ONNX import and export all go through it, so a
table means the same thing whichever way it was made.

Shapes follow Caffe, where the paper took its layer factors from: convolution output sides round down,
pooling output sides round up (Caffe's ceil mode), and a fully connected layer flattens its input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from dnnpart.errors import DnnpartError
from dnnpart.limits import MAX_LAYERS
from dnnpart.vocabulary import LAYER_TYPES

BYTES_PER_ELEMENT = 4  # float32

COLUMNS = [
    "name", "type", "kernel", "stride", "pad", "groups", "in_channels", "out_channels", "in_side", "out_side",
    "in_elements", "in_bytes", "out_elements", "out_bytes", "macs", "params",
]
NUMERIC_COLUMNS = COLUMNS[2:]


@dataclass(frozen=True)
class Layer:
    """One layer's hyper-parameters; shapes are derived by `build_table`.

    out: output channels (conv) or features (fc); kernel: side (conv/pool) or local_size (lrn).
    ceil: pooling output side rounds up (Caffe) rather than down (ONNX/PyTorch default).
    bias: conv/fc have a bias vector (counted in params).
    flatten: the input is flattened to a feature vector first (implicit for fc).
    """

    name: str
    type: str
    out: int | None = None
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    groups: int = 1
    ceil: bool = True
    bias: bool = True
    flatten: bool = False


def conv(name: str, out: int, kernel: int, stride: int = 1, pad: int = 0, groups: int = 1) -> Layer:
    return Layer(name, "conv", out=out, kernel=kernel, stride=stride, pad=pad, groups=groups)


def pool(name: str, kernel: int, stride: int, pad: int = 0) -> Layer:
    return Layer(name, "pool", kernel=kernel, stride=stride, pad=pad)


def fc(name: str, out: int) -> Layer:
    return Layer(name, "fc", out=out)


def relu(name: str) -> Layer:
    return Layer(name, "relu")


def lrn(name: str, local_size: int) -> Layer:
    return Layer(name, "lrn", kernel=local_size)


def dropout(name: str) -> Layer:
    return Layer(name, "dropout")


def softmax(name: str) -> Layer:
    return Layer(name, "softmax")


def pooled_side(side: int, kernel: int, stride: int, pad: int, ceil: bool, clip: bool = True) -> int:
    """Output side of a pooling window; with ceil, Caffe's (and PyTorch's, onnxruntime's) `clip` rule that the
    last window must start inside the input or its left padding."""
    span = side + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and clip and pad > 0 and (out - 1) * stride >= side + pad:
        out -= 1
    return out


def build_table(network: str, input_shape: Sequence[int], layers: Sequence[Layer]) -> pd.DataFrame:
    """Propagate an input of shape [1, C, H, W] (H == W) through `layers` into the layer table.

    Raises DnnpartError naming the layer when a spec is impossible (bad type, groups not dividing the
    channels, a window larger than its input, a spatial layer after the tensor was flattened).
    """
    if len(layers) > MAX_LAYERS:
        raise DnnpartError(f"{network}: {len(layers):,} layers; at most {MAX_LAYERS:,} are supported "
                           "(dnnpart.limits.MAX_LAYERS)")
    shape = [int(v) for v in input_shape]
    if len(shape) != 4 or shape[0] != 1 or shape[2] != shape[3] or min(shape) < 1:
        raise DnnpartError(f"{network}: input shape must be [1, C, H, W] with H == W, got {list(input_shape)}")
    channels, side = shape[1], shape[2]
    flat = False  # the tensor is a feature vector [1, F]; its side is 1
    rows = []
    for layer in layers:
        def fail(problem: str) -> DnnpartError:
            err = DnnpartError(f"{network}: layer '{layer.name}' ({layer.type}): {problem}")
            err.layer = layer.name  # lets from_onnx name the ONNX node behind the layer
            return err

        if layer.type not in LAYER_TYPES:
            raise fail(f"unknown layer type; valid types: {', '.join(LAYER_TYPES)}")
        in_elements = channels * side * side
        if layer.type == "fc" or layer.flatten:
            channels, side, flat = in_elements, 1, True
        in_channels, in_side = channels, side
        macs = params = 0
        kernel, stride, pad, groups = layer.kernel, layer.stride, layer.pad, layer.groups
        if layer.type in ("conv", "pool", "lrn") and flat:
            raise fail("needs a spatial input but the tensor was already flattened")
        if layer.type != "conv" and groups != 1:
            raise fail("only conv layers have groups")
        if layer.type not in ("conv", "pool") and (stride != 1 or pad != 0):
            raise fail("only conv and pool layers have a stride or padding")
        if min(kernel, stride, groups) < 1 or pad < 0:
            raise fail(f"kernel, stride and groups must be >= 1 and pad >= 0 (got {kernel}, {stride}, {groups}, {pad})")
        if layer.type == "conv":
            if layer.out is None or layer.out < 1 or in_channels % groups or layer.out % groups:
                raise fail(f"groups={groups} must divide input channels {in_channels} and output channels {layer.out}")
            if side + 2 * pad < kernel:
                raise fail(f"kernel {kernel} larger than the padded input side {side + 2 * pad}")
            side = (side + 2 * pad - kernel) // stride + 1
            channels = layer.out
            weights = channels * (in_channels // groups) * kernel * kernel
            macs = side * side * weights
            params = weights + (channels if layer.bias else 0)
        elif layer.type == "pool":
            if side + 2 * pad < kernel or pad >= kernel:
                raise fail(f"kernel {kernel} with pad {pad} does not fit the input side {side}")
            side = pooled_side(side, kernel, stride, pad, layer.ceil)
        elif layer.type == "fc":
            if layer.out is None or layer.out < 1:
                raise fail("needs a positive number of output features")
            channels = layer.out
            macs = in_channels * channels
            params = macs + (channels if layer.bias else 0)
        out_elements = channels * side * side
        rows.append({
            "name": layer.name, "type": layer.type, "kernel": kernel, "stride": stride, "pad": pad,
            "groups": groups, "in_channels": in_channels, "out_channels": channels, "in_side": in_side,
            "out_side": side, "in_elements": in_elements, "in_bytes": in_elements * BYTES_PER_ELEMENT,
            "out_elements": out_elements, "out_bytes": out_elements * BYTES_PER_ELEMENT,
            "macs": macs, "params": params,
        })
    if not rows:
        raise DnnpartError(f"{network}: a network needs at least one layer")
    table = pd.DataFrame(rows, columns=COLUMNS)
    table[NUMERIC_COLUMNS] = table[NUMERIC_COLUMNS].astype("int64")
    table.attrs["network"] = network
    table.attrs["input_shape"] = shape
    return table


def layers_from_table(table: pd.DataFrame) -> list[Layer]:
    """Recover the specs behind a layer table (the inverse of `build_table`) and check the table is consistent.

    Pooling rounding (ceil or floor), biases and implicit flattening are read back from the sizes.
    Raises DnnpartError naming the first row whose sizes do not follow from its hyper-parameters.
    """
    network = table.attrs.get("network", "table")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DnnpartError(f"{network}: not a layer table, missing columns {missing}; expected {COLUMNS}")
    if "input_shape" not in table.attrs:
        raise DnnpartError(f"{network}: layer table lacks attrs['input_shape'] = [1, C, H, W]")
    layers = []
    prev = (int(table.attrs["input_shape"][1]), int(table.attrs["input_shape"][2]))
    for row in table.itertuples(index=False):
        kind, k, s, p, g = str(row.type), int(row.kernel), int(row.stride), int(row.pad), int(row.groups)
        i, o = int(row.in_channels), int(row.out_channels)
        weights = {"conv": o * (i // max(g, 1)) * k * k, "fc": i * o}.get(kind, 0)
        layers.append(Layer(
            str(row.name), kind, out=o if kind in ("conv", "fc") else None, kernel=k, stride=s, pad=p, groups=g,
            ceil=kind == "pool" and int(row.out_side) == pooled_side(int(row.in_side), k, s, p, True),
            bias=int(row.params) != weights,
            flatten=kind in ("relu", "dropout", "softmax") and (i, int(row.in_side)) != prev,
        ))
        prev = (o, int(row.out_side))
    rebuilt = build_table(network, table.attrs["input_shape"], layers)
    for (r, want), (_, got) in zip(rebuilt[NUMERIC_COLUMNS].iterrows(), table[NUMERIC_COLUMNS].iterrows()):
        bad = [c for c in NUMERIC_COLUMNS if int(want[c]) != int(got[c])]
        if bad:
            raise DnnpartError(f"{network}: layer '{table['name'].iloc[r]}' is inconsistent in {bad}: "
                               f"its hyper-parameters give {[int(want[c]) for c in bad]}")
    return layers


def summary(table: pd.DataFrame) -> dict:
    """One network's totals: layers, input shape, GMACs, M params, output shape."""
    last = table.iloc[-1]
    output = [1, int(last.out_channels)] + ([int(last.out_side)] * 2 if last.out_side > 1 else [])
    return {
        "network": table.attrs["network"],
        "layers": len(table),
        "input_shape": "x".join(map(str, table.attrs["input_shape"])),
        "gmacs": round(int(table["macs"].sum()) / 1e9, 6),
        "mparams": round(int(table["params"].sum()) / 1e6, 4),
        "output_shape": "x".join(map(str, output)),
    }
