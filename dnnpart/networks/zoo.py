"""The network zoo: the paper's networks as compact `Layer` specs, built into layer tables on demand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from dnnpart.errors import UnknownNetworkError
from dnnpart.networks.layers import (
    Layer,
    add,
    batchnorm,
    build_table,
    clip,
    conv,
    dropout,
    dwconv,
    fc,
    gap,
    lrn,
    pool,
    relu,
    softmax,
    summary,
)

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


def _conv_bn(name: str, bn: str, out: int, kernel: int, stride: int = 1, inputs: tuple[str, ...] = ()) -> list[Layer]:
    """torchvision's bias-free conv (padding kernel // 2) followed by its batch normalisation."""
    return [conv(name, out, kernel, stride, kernel // 2, bias=False, inputs=inputs), batchnorm(bn)]


def _resnet(blocks: Sequence[int], bottleneck: bool) -> list[Layer]:
    """torchvision's ResNet (v1.5: a bottleneck strides in its 3x3 conv), layers named after its modules.

    Each residual block ends in `add` (the shortcut joins) and a ReLU; the shortcut is the block's input, or a
    strided 1x1 conv + batch norm ("downsample") where the shape changes.
    """
    layers = [*_conv_bn("conv1", "bn1", 64, 7, 2), relu("relu"), pool("maxpool", 3, 2, 1, ceil=False)]
    x, channels = "maxpool", 64
    expansion = 4 if bottleneck else 1
    for stage, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for i in range(count):
            p = f"layer{stage}.{i}"
            stride = 2 if (stage > 1 and i == 0) else 1
            out = width * expansion
            if bottleneck:
                body = [
                    *_conv_bn(f"{p}.conv1", f"{p}.bn1", width, 1, inputs=(x,)),
                    relu(f"{p}.relu1"),
                    *_conv_bn(f"{p}.conv2", f"{p}.bn2", width, 3, stride),
                    relu(f"{p}.relu2"),
                    *_conv_bn(f"{p}.conv3", f"{p}.bn3", out, 1),
                ]
            else:
                body = [
                    *_conv_bn(f"{p}.conv1", f"{p}.bn1", width, 3, stride, inputs=(x,)),
                    relu(f"{p}.relu1"),
                    *_conv_bn(f"{p}.conv2", f"{p}.bn2", out, 3),
                ]
            shortcut = x
            if stride != 1 or channels != out:
                body += _conv_bn(f"{p}.downsample.0", f"{p}.downsample.1", out, 1, stride, inputs=(x,))
                shortcut = f"{p}.downsample.1"
            layers += body + [
                add(f"{p}.add", body[-1].name if shortcut == x else body[-3].name, shortcut),
                relu(f"{p}.relu"),
            ]
            x, channels = f"{p}.relu", out
    return layers + [gap("avgpool"), fc("fc", 1000)]


# MobileNetV2 (Sandler et al. 2018, Table 2; torchvision): expansion t, channels c, repeats n, first stride s.
_MOBILENET_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _mobilenet_v2() -> list[Layer]:
    """torchvision's mobilenet_v2 (width 1.0), layers named after its modules: inverted residual blocks of a 1x1
    expansion, a 3x3 depthwise conv and a linear 1x1 projection (each with batch norm, ReLU6 as `clip`), with a
    shortcut `add` where a block keeps its shape."""

    def conv_bn_relu6(prefix: str, out: int, kernel: int, stride: int = 1, inputs=()) -> list[Layer]:
        return [
            conv(f"{prefix}.0", out, kernel, stride, kernel // 2, bias=False, inputs=inputs),
            batchnorm(f"{prefix}.1"),
            clip(f"{prefix}.2"),
        ]

    layers = conv_bn_relu6("features.0", 32, 3, 2)
    x, channels, index = "features.0.2", 32, 1
    for t, c, n, s in _MOBILENET_V2:
        for i in range(n):
            p, stride, hidden = f"features.{index}", (s if i == 0 else 1), channels * t
            body = conv_bn_relu6(f"{p}.conv.0", hidden, 1, inputs=(x,)) if t != 1 else []
            k = len(body) // 3  # index of the depthwise stage inside the block
            body += [
                replace(dwconv(f"{p}.conv.{k}.0", hidden, 3, stride, 1, bias=False), inputs=() if body else (x,)),
                batchnorm(f"{p}.conv.{k}.1"),
                clip(f"{p}.conv.{k}.2"),
                conv(f"{p}.conv.{k + 1}", c, 1, bias=False),
                batchnorm(f"{p}.conv.{k + 2}"),
            ]
            if stride == 1 and channels == c:
                body.append(add(f"{p}.add", body[-1].name, x))
            layers += body
            x, channels, index = body[-1].name, c, index + 1
    layers += conv_bn_relu6(f"features.{index}", 1280, 1, inputs=(x,))
    return layers + [gap("avgpool"), Layer("classifier.0", "dropout", flatten=True), fc("classifier.1", 1000)]


# name -> (input shape, layer specs). Sources: Caffe examples/mnist/lenet_train_test.prototxt,
# models/bvlc_alexnet/deploy.prototxt, Simonyan & Zisserman 2015 Table 1 configurations B and D, and
# torchvision.models (resnet.py, mobilenetv2.py) for the DAG networks.
_ZOO: dict[str, tuple[list[int], list[Layer]]] = {
    "lenet": (
        [1, 1, 28, 28],
        [
            conv("conv1", 20, 5),
            pool("pool1", 2, 2),
            conv("conv2", 50, 5),
            pool("pool2", 2, 2),
            fc("ip1", 500),
            relu("relu1"),
            fc("ip2", 10),
            softmax("prob"),
        ],
    ),
    "alexnet": (
        [1, 3, 227, 227],
        [
            conv("conv1", 96, 11, stride=4),
            relu("relu1"),
            lrn("norm1", 5),
            pool("pool1", 3, 2),
            conv("conv2", 256, 5, pad=2, groups=2),
            relu("relu2"),
            lrn("norm2", 5),
            pool("pool2", 3, 2),
            conv("conv3", 384, 3, pad=1),
            relu("relu3"),
            conv("conv4", 384, 3, pad=1, groups=2),
            relu("relu4"),
            conv("conv5", 256, 3, pad=1, groups=2),
            relu("relu5"),
            pool("pool5", 3, 2),
            *_classifier(4096, 1000, first=6),
        ],
    ),
    "vgg13": ([1, 3, 224, 224], _vgg([(2, 64), (2, 128), (2, 256), (2, 512), (2, 512)])),
    "vgg16": ([1, 3, 224, 224], _vgg([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)])),
    "resnet18": ([1, 3, 224, 224], _resnet([2, 2, 2, 2], bottleneck=False)),
    "resnet50": ([1, 3, 224, 224], _resnet([3, 4, 6, 3], bottleneck=True)),
    "mobilenet_v2": ([1, 3, 224, 224], _mobilenet_v2()),
}
# The paper's networks (chains); the study's sweeps, the paper profile and additivity default to these.
PAPER_NETWORKS = ("lenet", "alexnet", "vgg13", "vgg16")
DAG_NETWORKS = ("resnet18", "resnet50", "mobilenet_v2")  # residual networks, split at their cut points


def names(include_dag: bool = False) -> list[str]:
    """The paper's networks, smallest first; with include_dag, then the DAG networks (ResNet, MobileNetV2).

    The default stays the paper's four so that the study, which profiles only their layer types, is unchanged.
    """
    return list(PAPER_NETWORKS) + (list(DAG_NETWORKS) if include_dag else [])


def get(name: str) -> pd.DataFrame:
    """The layer table of a zoo network (a fresh DataFrame each call; see the module docstring)."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _ZOO:
        raise UnknownNetworkError(f"unknown network {name!r}; valid choices: {', '.join(names(include_dag=True))}")
    input_shape, layers = _ZOO[key]
    return build_table(key, input_shape, layers)


def zoo_summary() -> pd.DataFrame:
    """One row per zoo network (all of them) with its totals (`summary`) and its number of blocks."""
    from dnnpart.networks.blocks import block_bounds

    rows = []
    for n in names(include_dag=True):
        table = get(n)
        rows.append({**summary(table), "blocks": len(block_bounds(table))})
    return pd.DataFrame(rows)


def load(name_or_path: str | Path) -> pd.DataFrame:
    """A zoo network by name, or a model (a chain or a DAG) from a path ending in .onnx."""
    if isinstance(name_or_path, (str, Path)) and str(name_or_path).lower().endswith(".onnx"):
        from dnnpart.networks.onnx_import import from_onnx

        return from_onnx(name_or_path)
    try:
        return get(name_or_path)
    except UnknownNetworkError as exc:
        raise UnknownNetworkError(f"{exc} (or a path to a .onnx file)") from None
