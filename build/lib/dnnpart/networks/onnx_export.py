"""Write a zoo network (or any layer table) as a runnable ONNX model.

One ONNX node per table row (plus a Flatten before the first fully connected layer), random He-uniform float32
weights from a seeded generator, and, by default, every layer's output as a graph output so onnxruntime can
show each layer's shape. `layer_steps` is the one walk over the layers behind both the whole model (`to_onnx`)
and split execution (dnnpart.runtime), so a split model has exactly the weights of the whole one.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart.errors import DnnpartError
from dnnpart.files import atomic_write_bytes
from dnnpart.networks.layers import Layer, layers_from_table
from dnnpart.networks.onnx_nodes import IR_VERSION, OPSET, layer_nodes
from dnnpart.networks.zoo import get

INPUT_NAME = "data"  # Caffe's name for the network input


@dataclass
class LayerStep:
    """One layer of the exported graph: its nodes (a Flatten first where the layer flattens a 4-D input),
    their weights, and the tensors it reads and writes with their shapes."""

    index: int                      # 1-based layer number, as in the optimiser
    layer: Layer
    nodes: list
    weights: dict[str, np.ndarray]
    input_name: str                 # the previous layer's output (or INPUT_NAME), before any Flatten
    input_shape: list[int]
    output_name: str                # the layer's name
    output_shape: list[int]


def layer_steps(table: pd.DataFrame, seed: int = 0, stop: int | None = None) -> Iterator[LayerStep]:
    """The layers of `table` as graph pieces, in order, weights drawn from numpy default_rng(seed).

    With `stop`, only layers 1..stop are built (their weights are the same as in the full walk, since the
    generator is drawn in layer order). Raises DnnpartError for clashing layer names.
    """
    from onnx import helper

    layers = layers_from_table(table)
    network = table.attrs.get("network", "table")
    names = [layer.name for layer in layers]
    clashes = sorted({n for n in names if names.count(n) > 1 or n == INPUT_NAME})
    if clashes:
        raise DnnpartError(f"{network}: layer names must be unique and not {INPUT_NAME!r}: {clashes}")
    rng = np.random.default_rng(seed)
    shape = [int(v) for v in table.attrs["input_shape"]]
    current = INPUT_NAME
    for index, (layer, row) in enumerate(zip(layers, table.itertuples(index=False)), start=1):
        if stop is not None and index > stop:
            return
        nodes, x = [], current
        if len(shape) == 4 and (layer.type == "fc" or layer.flatten):
            x = f"{layer.name}_flat"
            nodes.append(helper.make_node("Flatten", [current], [x], name=f"{layer.name}_flatten", axis=1))
        layer_n, weights = layer_nodes(layer, int(row.in_channels), x, layer.name, rng)
        flat = len(shape) == 2 or x != current
        out_shape = [1, int(row.out_channels)] + ([] if flat else [int(row.out_side)] * 2)
        yield LayerStep(index, layer, nodes + layer_n, weights, current, shape, layer.name, out_shape)
        current, shape = layer.name, out_shape


def graph_model(steps: list[LayerStep], name: str, outputs: list[tuple[str, list[int]]] | None = None):
    """An onnx ModelProto running `steps` in order: input = the first step's input, output = the last step's
    output (or the given (name, shape) outputs). Weights are copied into initializers in place."""
    from onnx import TensorProto, helper

    first, last = steps[0], steps[-1]
    outputs = [(last.output_name, last.output_shape)] if outputs is None else outputs
    graph = helper.make_graph(
        [n for s in steps for n in s.nodes], name,
        [helper.make_tensor_value_info(first.input_name, TensorProto.FLOAT, first.input_shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dnnpart",
                              ir_version=IR_VERSION)
    for step in steps:  # filled in place: make_graph/make_model would copy 100s of MB twice
        for wname, array in step.weights.items():
            tensor = model.graph.initializer.add()
            tensor.name, tensor.data_type = wname, TensorProto.FLOAT
            tensor.dims.extend(array.shape)
            tensor.raw_data = array.tobytes()  # little-endian float32, as ONNX stores raw data
    return model


def to_onnx(name_or_table: str | pd.DataFrame, path: str | Path, seed: int = 0, layer_outputs: bool = True) -> Path:
    """Write a runnable ONNX model (opset 17, input "data" [1, C, H, W]) of a zoo network or a layer table.

    Weights are random (numpy default_rng(seed)), so two calls with the same seed write identical files.
    Node and output tensor names are the layer names; with `layer_outputs` every layer's output is a graph
    output (in table order), otherwise only the last. Raises DnnpartError for an unknown name or a table
    whose rows do not follow from their hyper-parameters.
    """
    table = get(name_or_table) if isinstance(name_or_table, str) else name_or_table
    steps = list(layer_steps(table, seed))
    outputs = [(s.output_name, s.output_shape) for s in steps]
    model = graph_model(steps, table.attrs.get("network", "table"), outputs if layer_outputs else outputs[-1:])
    path = Path(path)
    atomic_write_bytes(path, model.SerializeToString())
    return path
