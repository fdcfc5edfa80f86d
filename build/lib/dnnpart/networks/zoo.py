"""The network zoo: the paper's networks as compact `Layer` specs, built into layer tables on demand."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from dnnpart.errors import UnknownNetworkError
from dnnpart.networks.layers import Layer, build_table, conv, dropout, fc, lrn, pool, relu, softmax, summary

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


def zoo_summary() -> pd.DataFrame:
    """One row per zoo network with its totals (`summary`)."""
    return pd.DataFrame([summary(get(n)) for n in names()])


def load(name_or_path: str | Path) -> pd.DataFrame:
    """A zoo network by name, or a chain-structured model from a path ending in .onnx."""
    if isinstance(name_or_path, (str, Path)) and str(name_or_path).lower().endswith(".onnx"):
        from dnnpart.networks.onnx_import import from_onnx

        return from_onnx(name_or_path)
    try:
        return get(name_or_path)
    except UnknownNetworkError as exc:
        raise UnknownNetworkError(f"{exc} (or a path to a .onnx file)") from None
