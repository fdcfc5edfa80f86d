"""The DNN zoo as layer tables: one row per layer, the sizes the delay models and the optimiser need.

Every network is a compact list of `Layer` specs; one function, `build_table`, propagates shapes through
it and computes each row's sizes, MACs and parameter count. ONNX import and export (dnnpart.onnx_io)
reuse the same function, so a table means the same thing whichever way it was made.

Shapes follow Caffe, where the paper took its layer factors from: convolution output sides round down,
pooling output sides round up (Caffe's ceil mode), and a fully connected layer flattens its input.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from dnnpart.errors import DnnpartError, UnknownNetworkError

BYTES_PER_ELEMENT = 4  # float32

LAYER_TYPES = ("conv", "relu", "lrn", "pool", "fc", "dropout", "softmax")

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


# --- the zoo -------------------------------------------------------------------------------------------

def _classifier(hidden: int, classes: int, first: int) -> list[Layer]:
    """Caffe's fc-relu-dropout x2, fc, softmax head, numbered from `first` (fc6 ... fc8, prob)."""
    layers = []
    for i in (first, first + 1):
        layers += [fc(f"fc{i}", hidden), relu(f"relu{i}"), dropout(f"drop{i}")]
    return layers + [fc(f"fc{first + 2}", classes), softmax("prob")]


def _vgg(blocks: Sequence[tuple[int, int]]) -> list[Layer]:
    """VGG: per block (convs, channels) 3x3 pad-1 conv+relu pairs then a 2x2/2 max pool; then the classifier."""
    layers = []
    for b, (convs, channels) in enumerate(blocks, start=1):
        for i in range(1, convs + 1):
            layers += [conv(f"conv{b}_{i}", channels, 3, pad=1), relu(f"relu{b}_{i}")]
        layers.append(pool(f"pool{b}", 2, 2))
    return layers + _classifier(4096, 1000, first=6)


# name -> (input shape, layer specs). Sources: Caffe examples/mnist/lenet_train_test.prototxt,
# models/bvlc_alexnet/deploy.prototxt, and Simonyan & Zisserman 2015 Table 1 configurations B and D.
_ZOO: dict[str, tuple[list[int], list[Layer]]] = {
    "lenet": ([1, 1, 28, 28], [
        conv("conv1", 20, 5), pool("pool1", 2, 2), conv("conv2", 50, 5), pool("pool2", 2, 2),
        fc("ip1", 500), relu("relu1"), fc("ip2", 10), softmax("prob"),
    ]),
    "alexnet": ([1, 3, 227, 227], [
        conv("conv1", 96, 11, stride=4), relu("relu1"), lrn("norm1", 5), pool("pool1", 3, 2),
        conv("conv2", 256, 5, pad=2, groups=2), relu("relu2"), lrn("norm2", 5), pool("pool2", 3, 2),
        conv("conv3", 384, 3, pad=1), relu("relu3"),
        conv("conv4", 384, 3, pad=1, groups=2), relu("relu4"),
        conv("conv5", 256, 3, pad=1, groups=2), relu("relu5"), pool("pool5", 3, 2),
        *_classifier(4096, 1000, first=6),
    ]),
    "vgg13": ([1, 3, 224, 224], _vgg([(2, 64), (2, 128), (2, 256), (2, 512), (2, 512)])),
    "vgg16": ([1, 3, 224, 224], _vgg([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)])),
}


def names() -> list[str]:
    """The zoo's network names, smallest first."""
    return list(_ZOO)


def get(name: str) -> pd.DataFrame:
    """The layer table of a zoo network (a fresh DataFrame each call; see the module docstring)."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _ZOO:
        raise UnknownNetworkError(f"unknown network {name!r}; valid choices: {', '.join(names())}")
    input_shape, layers = _ZOO[key]
    return build_table(key, input_shape, layers)


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


def zoo_summary() -> pd.DataFrame:
    """One row per zoo network with its totals (`summary`)."""
    return pd.DataFrame([summary(get(n)) for n in names()])


# --- ONNX, implemented in dnnpart.onnx_io (imported lazily: onnx is slow to import) ---------------------

def to_onnx(name_or_table: str | pd.DataFrame, path: str | Path, seed: int = 0, layer_outputs: bool = True) -> Path:
    """Write a runnable ONNX model of a zoo network or layer table; see dnnpart.onnx_io.to_onnx."""
    from dnnpart import onnx_io

    return onnx_io.to_onnx(name_or_table, path, seed=seed, layer_outputs=layer_outputs)


def from_onnx(path: str | Path) -> pd.DataFrame:
    """Read a chain-structured ONNX model into a layer table; see dnnpart.onnx_io.from_onnx."""
    from dnnpart import onnx_io

    return onnx_io.from_onnx(path)


def load(name_or_path: str) -> pd.DataFrame:
    """A zoo network by name, or a chain-structured model from a path ending in .onnx."""
    if isinstance(name_or_path, (str, Path)) and str(name_or_path).lower().endswith(".onnx"):
        return from_onnx(name_or_path)
    try:
        return get(name_or_path)
    except UnknownNetworkError as exc:
        raise UnknownNetworkError(f"{exc} (or a path to a .onnx file)") from None


# --- command line ---------------------------------------------------------------------------------------

def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as plain-Python dicts (JSON-serialisable ints and strs)."""
    return [{k: v if isinstance(v, str) else int(v) for k, v in row.items()}
            for row in table[COLUMNS].to_dict(orient="records")]


def cli_networks(args) -> int:
    """`dnnpart networks [NAME|FILE.onnx] [--json]`: the zoo's totals, or one network's layer table."""
    if args.name is None:
        zoo = zoo_summary()
        if args.json:
            print(json.dumps(zoo.to_dict(orient="records"), indent=1))
        else:
            print(zoo.to_string(index=False))
        return 0
    table = load(args.name)
    if args.json:
        print(json.dumps(_records(table), indent=1))
        return 0
    s = summary(table)
    print(f"{s['network']}: input {s['input_shape']}, {s['layers']} layers, {s['gmacs']} GMACs, "
          f"{s['mparams']} M params, output {s['output_shape']}")
    print(table.to_string(index=False))
    return 0
