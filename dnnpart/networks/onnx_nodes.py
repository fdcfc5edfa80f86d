"""ONNX nodes for one layer: the single builder behind the exporter (whole networks) and the profiler
(one-node graphs), so both run the same operator with the same attributes."""

from __future__ import annotations

import numpy as np

from dnnpart.networks.layers import Layer

OPSET = 17
IR_VERSION = 8  # ONNX 1.12, the release that introduced opset 17, writes IR 8; older runtimes can read it


def layer_nodes(
    layer: Layer, in_channels: int, x: str | list[str], y: str, rng: np.random.Generator
) -> tuple[list, dict]:
    """ONNX nodes computing one table row from tensor x into tensor y, and their weights {name: float32 array}.

    `in_channels` is the layer's input channel count (of all its inputs together, for a join); `x` (a list of
    tensors for add and concat) must already have the rank the layer expects (4-D for conv/pool/lrn, 2-D for fc).
    Batch normalisation gets a random scale, shift, mean and variance; clip is ReLU6 (bounds 0 and 6).
    """
    from onnx import helper

    def he_uniform(shape):  # keeps activations finite through deep random nets; uniform is cheaper to draw
        w = rng.random(size=shape, dtype=np.float32)
        w -= np.float32(0.5)
        w *= np.float32(2 * np.sqrt(6.0 / np.prod(shape[1:])))
        return w

    name, weights = layer.name, {}
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    if layer.type in ("conv", "dwconv", "fc"):
        cin = int(in_channels) // layer.groups
        shape = (layer.out, cin, layer.kernel, layer.kernel) if layer.type != "fc" else (layer.out, cin)
        weights[f"{name}_w"] = he_uniform(shape)
        if layer.bias:
            weights[f"{name}_b"] = np.full(layer.out, 0.01, np.float32)
    elif layer.type == "batchnorm":
        c = int(in_channels)
        for part, lo, hi in (("scale", 0.5, 1.0), ("shift", -0.1, 0.1), ("mean", -0.1, 0.1), ("var", 0.5, 1.5)):
            weights[f"{name}_{part}"] = rng.uniform(lo, hi, size=c).astype(np.float32)
    elif layer.type == "clip":
        weights[f"{name}_min"], weights[f"{name}_max"] = np.array(0.0, np.float32), np.array(6.0, np.float32)
    inputs = [*xs, *weights]
    k2, s2, p4 = [layer.kernel] * 2, [layer.stride] * 2, [layer.pad] * 4
    op, attrs = {
        "conv": ("Conv", dict(kernel_shape=k2, strides=s2, pads=p4, group=layer.groups)),
        "dwconv": ("Conv", dict(kernel_shape=k2, strides=s2, pads=p4, group=layer.groups)),
        "pool": ("MaxPool", dict(kernel_shape=k2, strides=s2, pads=p4, ceil_mode=int(layer.ceil))),
        "fc": ("Gemm", dict(transB=1)),
        "relu": ("Relu", {}),
        "lrn": ("LRN", dict(size=layer.kernel, alpha=1e-4, beta=0.75, bias=1.0)),  # Caffe's defaults
        "dropout": ("Dropout", {}),  # identity at inference
        "softmax": ("Softmax", dict(axis=1)),
        "batchnorm": ("BatchNormalization", dict(epsilon=1e-5)),
        "add": ("Add", {}),
        "clip": ("Clip", {}),
        "gap": ("GlobalAveragePool", {}),
        "concat": ("Concat", dict(axis=1)),
    }[layer.type]
    return [helper.make_node(op, inputs, [y], name=name, **attrs)], weights
