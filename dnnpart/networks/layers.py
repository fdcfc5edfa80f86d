"""Layer tables: one row per layer, the sizes the delay models and the optimiser need.

A network is a compact list of `Layer` specs; one function, `build_table`, propagates shapes through it and
computes each row's sizes, MACs and parameter count. The zoo and ONNX import and export all go through it, so a
table means the same thing whichever way it was made.

Shapes follow Caffe, where the paper took its layer factors from: convolution output sides round down,
pooling output sides round up (Caffe's ceil mode, unless a spec says ceil=False as PyTorch's default), and a
fully connected layer flattens its input.

A layer reads the previous layer's output unless its spec names its `inputs` (layer names, or NETWORK_INPUT):
that is how residual and branched networks (DAGs) are written. A table whose layers do not simply follow one
another gets two more columns, `inputs` and `block` (see dnnpart.networks.blocks); a chain's table has exactly
COLUMNS. Join layers count every input: an `add` of two C-channel maps has in_channels 2C and out_channels C,
a `concat` the sum of its inputs' channels in and out.

Parameters are counted as torchvision counts them: weights and biases, and for batch normalisation its scale
and shift (2 per channel); the running mean and variance are buffers, not parameters. Batch normalisation is a
layer of its own (not folded into the convolution before it), so MACs are those of conv and fc layers only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dnnpart.errors import DnnpartError
from dnnpart.limits import MAX_LAYERS
from dnnpart.networks.blocks import cut_points
from dnnpart.vocabulary import LAYER_TYPES

BYTES_PER_ELEMENT = 4  # float32
NETWORK_INPUT = "data"  # how a layer's `inputs` name the network input (Caffe's name for it)

COLUMNS = [
    "name",
    "type",
    "kernel",
    "stride",
    "pad",
    "groups",
    "in_channels",
    "out_channels",
    "in_side",
    "out_side",
    "in_elements",
    "in_bytes",
    "out_elements",
    "out_bytes",
    "macs",
    "params",
]
NUMERIC_COLUMNS = COLUMNS[2:]
DAG_COLUMNS = ["inputs", "block"]  # only in the tables of networks that are not chains

WINDOWED = ("conv", "dwconv", "pool")  # types with a stride and padding
SPATIAL = ("conv", "dwconv", "pool", "lrn", "gap")  # types that need a [1, C, H, W] input
JOINS = ("add", "concat")  # types that read two or more tensors
FLATTENABLE = ("relu", "dropout", "softmax", "clip")  # element-wise types that may flatten their input first


@dataclass(frozen=True)
class Layer:
    """One layer's hyper-parameters; shapes are derived by `build_table`.

    out: output channels (conv, dwconv) or features (fc); kernel: side (conv/pool) or local_size (lrn); a pool
    with kernel 0 is global (its window is the whole map, as ONNX's GlobalMaxPool).
    ceil: pooling output side rounds up (Caffe) rather than down (ONNX/PyTorch default).
    bias: conv/dwconv/fc have a bias vector (counted in params).
    flatten: the input is flattened to a feature vector first (implicit for fc).
    inputs: the layers (or NETWORK_INPUT) it reads; empty = the previous layer (the network input for the first).
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
    inputs: tuple[str, ...] = ()


def conv(
    name: str,
    out: int,
    kernel: int,
    stride: int = 1,
    pad: int = 0,
    groups: int = 1,
    bias: bool = True,
    inputs: tuple[str, ...] = (),
) -> Layer:
    return Layer(
        name, "conv", out=out, kernel=kernel, stride=stride, pad=pad, groups=groups, bias=bias, inputs=tuple(inputs)
    )


def dwconv(name: str, channels: int, kernel: int, stride: int = 1, pad: int = 0, bias: bool = True) -> Layer:
    """Depthwise convolution: one kernel x kernel filter per channel (groups = channels)."""
    return Layer(name, "dwconv", out=channels, kernel=kernel, stride=stride, pad=pad, groups=channels, bias=bias)


def pool(name: str, kernel: int, stride: int, pad: int = 0, ceil: bool = True) -> Layer:
    return Layer(name, "pool", kernel=kernel, stride=stride, pad=pad, ceil=ceil)


def batchnorm(name: str) -> Layer:
    return Layer(name, "batchnorm")


def clip(name: str) -> Layer:
    """Clip to [0, 6] (ReLU6, MobileNetV2's activation)."""
    return Layer(name, "clip")


def gap(name: str) -> Layer:
    """Global average pooling: [1, C, H, H] -> [1, C, 1, 1]."""
    return Layer(name, "gap")


def add(name: str, *inputs: str) -> Layer:
    return Layer(name, "add", inputs=tuple(inputs))


def concat(name: str, *inputs: str) -> Layer:
    """Concatenation along the channels."""
    return Layer(name, "concat", inputs=tuple(inputs))


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

    Layers must come in a topological order (every layer after the layers it reads) and every layer but the last
    must be read by a later one (a network has one output). Raises DnnpartError naming the layer when a spec is
    impossible (bad type, groups not dividing the channels, a window larger than its input, a spatial layer
    after the tensor was flattened, a join of unequal shapes, an input that is not an earlier layer).
    """
    if len(layers) > MAX_LAYERS:
        raise DnnpartError(
            f"{network}: {len(layers):,} layers; at most {MAX_LAYERS:,} are supported (dnnpart.limits.MAX_LAYERS)"
        )
    shape = [int(v) for v in input_shape]
    if len(shape) != 4 or shape[0] != 1 or shape[2] != shape[3] or min(shape) < 1:
        raise DnnpartError(f"{network}: input shape must be [1, C, H, W] with H == W, got {list(input_shape)}")
    # tensor -> (channels, side, flat: a feature vector [1, F] whose side is 1)
    tensors: dict[str, tuple[int, int, bool]] = {NETWORK_INPUT: (shape[1], shape[2], False)}
    explicit = any(layer.inputs for layer in layers)
    names = [layer.name for layer in layers]
    if explicit:
        clashes = sorted({n for n in names if names.count(n) > 1 or n == NETWORK_INPUT})
        if clashes:
            raise DnnpartError(
                f"{network}: layers that name their inputs need unique layer names other than "
                f"{NETWORK_INPUT!r}: {clashes}"
            )
    rows, sources = [], []
    previous = NETWORK_INPUT
    for layer in layers:

        def fail(problem: str, layer: Layer = layer) -> DnnpartError:
            err = DnnpartError(f"{network}: layer '{layer.name}' ({layer.type}): {problem}")
            err.layer = layer.name  # lets from_onnx name the ONNX node behind the layer
            return err

        if layer.type not in LAYER_TYPES:
            raise fail(f"unknown layer type; valid types: {', '.join(LAYER_TYPES)}")
        srcs = tuple(layer.inputs) or (previous,)
        for src in srcs:
            if src not in tensors:
                raise fail(f"reads {src!r}, which is neither an earlier layer nor the network input {NETWORK_INPUT!r}")
        if layer.type in JOINS and len(srcs) < 2:
            raise fail(f"joins two or more inputs, got {list(srcs)}")
        if layer.type not in JOINS and len(srcs) != 1:
            raise fail(f"reads one input, got {list(srcs)}")
        channels, side, flat = tensors[srcs[0]]
        if layer.type in JOINS:
            parts = [tensors[src] for src in srcs]
            if any((p[1], p[2]) != (side, flat) for p in parts) or (
                layer.type == "add" and any(p[0] != channels for p in parts)
            ):
                raise fail(f"inputs {list(srcs)} have unequal shapes {[(p[0], p[1]) for p in parts]} (channels, side)")
            in_channels = sum(p[0] for p in parts)
            channels = channels if layer.type == "add" else in_channels
            in_elements = in_channels * side * side
        else:
            in_elements = channels * side * side
            if layer.type == "fc" or layer.flatten:
                channels, side, flat = in_elements, 1, True
            in_channels = channels
        in_side = side
        macs = params = 0
        kind = layer.type
        kernel, stride, pad, groups = layer.kernel, layer.stride, layer.pad, layer.groups
        if kind == "conv" and groups > 1 and groups == in_channels:
            kind = "dwconv"  # one rule, wherever the spec came from
        if kind in SPATIAL and flat:
            raise fail("needs a spatial input but the tensor was already flattened")
        if layer.flatten and kind not in FLATTENABLE:
            raise fail(f"only {', '.join(FLATTENABLE)} layers can flatten their input first")
        if kind not in ("conv", "dwconv") and groups != 1:
            raise fail("only conv layers have groups")
        if kind not in WINDOWED and (stride != 1 or pad != 0):
            raise fail("only conv and pool layers have a stride or padding")
        if kind == "pool" and kernel == 0:  # global: the window is the whole map
            kernel, ceil = side, False
        else:
            ceil = layer.ceil
        if kind == "gap":
            kernel = side
        if min(kernel, stride, groups) < 1 or pad < 0:
            raise fail(f"kernel, stride and groups must be >= 1 and pad >= 0 (got {kernel}, {stride}, {groups}, {pad})")
        if kind in ("conv", "dwconv"):
            if layer.out is None or layer.out < 1 or in_channels % groups or layer.out % groups:
                raise fail(f"groups={groups} must divide input channels {in_channels} and output channels {layer.out}")
            if kind == "dwconv" and groups != in_channels:
                raise fail(f"a depthwise conv has groups = input channels ({in_channels}), got groups={groups}")
            if side + 2 * pad < kernel:
                raise fail(f"kernel {kernel} larger than the padded input side {side + 2 * pad}")
            side = (side + 2 * pad - kernel) // stride + 1
            channels = layer.out
            weights = channels * (in_channels // groups) * kernel * kernel
            macs = side * side * weights
            params = weights + (channels if layer.bias else 0)
        elif kind == "pool":
            if side + 2 * pad < kernel or pad >= kernel:
                raise fail(f"kernel {kernel} with pad {pad} does not fit the input side {side}")
            side = pooled_side(side, kernel, stride, pad, ceil)
        elif kind == "gap":
            side = 1
        elif kind == "batchnorm":
            params = 2 * channels  # scale and shift; the running statistics are buffers
        elif kind == "fc":
            if layer.out is None or layer.out < 1:
                raise fail("needs a positive number of output features")
            channels = layer.out
            macs = in_channels * channels
            params = macs + (channels if layer.bias else 0)
        out_elements = channels * side * side
        tensors[layer.name] = (channels, side, flat)
        sources.append(srcs)
        previous = layer.name
        rows.append(
            {
                "name": layer.name,
                "type": kind,
                "kernel": kernel,
                "stride": stride,
                "pad": pad,
                "groups": groups,
                "in_channels": in_channels,
                "out_channels": channels,
                "in_side": in_side,
                "out_side": side,
                "in_elements": in_elements,
                "in_bytes": in_elements * BYTES_PER_ELEMENT,
                "out_elements": out_elements,
                "out_bytes": out_elements * BYTES_PER_ELEMENT,
                "macs": macs,
                "params": params,
            }
        )
    if not rows:
        raise DnnpartError(f"{network}: a network needs at least one layer")
    table = pd.DataFrame(rows, columns=COLUMNS)
    table[NUMERIC_COLUMNS] = table[NUMERIC_COLUMNS].astype("int64")
    chain = all(srcs == ((names[i - 1],) if i else (NETWORK_INPUT,)) for i, srcs in enumerate(sources))
    if not chain:
        read = {src for srcs in sources for src in srcs}
        unused = [n for n in names[:-1] if n not in read]
        if unused:
            err = DnnpartError(
                f"{network}: layer '{unused[0]}' ({rows[names.index(unused[0])]['type']}): its "
                "output is read by no later layer; a network has one output, its last layer's"
            )
            err.layer = unused[0]
            raise err
        cuts = cut_points(sources, names, NETWORK_INPUT)
        table["inputs"] = [",".join(srcs) for srcs in sources]
        table["block"] = np.searchsorted(np.array(cuts, dtype=np.int64), np.arange(len(rows)), side="right") + 1
        table["block"] = table["block"].astype("int64")
    table.attrs["network"] = network
    table.attrs["input_shape"] = shape
    return table


def layers_from_table(table: pd.DataFrame) -> list[Layer]:
    """Recover the specs behind a layer table (the inverse of `build_table`) and check the table is consistent.

    Pooling rounding (ceil or floor), biases and implicit flattening are read back from the sizes; a DAG table's
    inputs from its `inputs` column.
    Raises DnnpartError naming the first row whose sizes do not follow from their hyper-parameters.
    """
    network = table.attrs.get("network", "table")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DnnpartError(f"{network}: not a layer table, missing columns {missing}; expected {COLUMNS}")
    if "input_shape" not in table.attrs:
        raise DnnpartError(f"{network}: layer table lacks attrs['input_shape'] = [1, C, H, W]")
    dag = "inputs" in table.columns
    layers = []
    shapes = {NETWORK_INPUT: (int(table.attrs["input_shape"][1]), int(table.attrs["input_shape"][2]))}
    prev = shapes[NETWORK_INPUT]
    for row in table.itertuples(index=False):
        kind, k, s, p, g = str(row.type), int(row.kernel), int(row.stride), int(row.pad), int(row.groups)
        i, o = int(row.in_channels), int(row.out_channels)
        inputs = tuple(str(row.inputs).split(",")) if dag else ()
        if dag:
            prev = shapes.get(inputs[0], (-1, -1))
        weights = {"conv": o * (i // max(g, 1)) * k * k, "dwconv": o * k * k, "fc": i * o, "batchnorm": 0}.get(kind, 0)
        extra = 2 * o if kind == "batchnorm" else 0
        layers.append(
            Layer(
                str(row.name),
                kind,
                out=o if kind in ("conv", "dwconv", "fc") else None,
                kernel=k if kind not in ("gap",) else 1,
                stride=s,
                pad=p,
                groups=g,
                ceil=kind == "pool" and int(row.out_side) == pooled_side(int(row.in_side), k, s, p, True),
                bias=int(row.params) - extra != weights,
                flatten=kind in FLATTENABLE and (i, int(row.in_side)) != prev,
                inputs=inputs,
            )
        )
        prev = (o, int(row.out_side))
        shapes[str(row.name)] = prev
    rebuilt = build_table(network, table.attrs["input_shape"], layers)
    for (r, want), (_, got) in zip(rebuilt[NUMERIC_COLUMNS].iterrows(), table[NUMERIC_COLUMNS].iterrows()):
        bad = [c for c in NUMERIC_COLUMNS if int(want[c]) != int(got[c])]
        if bad:
            raise DnnpartError(
                f"{network}: layer '{table['name'].iloc[r]}' is inconsistent in {bad}: "
                f"its hyper-parameters give {[int(want[c]) for c in bad]}"
            )
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
