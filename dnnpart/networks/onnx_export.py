"""Write a zoo network (or any layer table) as a runnable ONNX model, and cut a model into its blocks.

One ONNX node per table row (plus a Flatten before a fully connected layer that reads a map), random He-uniform
float32 weights from a seeded generator, and, by default, every layer's output as a graph output so onnxruntime
can show each layer's shape. `layer_steps` is the one walk over the layers behind both the whole model (`to_onnx`)
and split execution (dnnpart.runtime), so a split model has exactly the weights of the whole one.

Node and tensor names are the layer names, so the tensor crossing a cut point is named by the block's last
layer. A DAG network splits only at its cut points: `block_steps` gives one step per block (for a chain, exactly
`layer_steps`), and `extract_blocks` cuts blocks i..j out of any ONNX file, ours or imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart.errors import DnnpartError
from dnnpart.files import atomic_write_bytes
from dnnpart.networks.blocks import block_bounds
from dnnpart.networks.layers import NETWORK_INPUT, Layer, layers_from_table
from dnnpart.networks.onnx_nodes import IR_VERSION, OPSET, layer_nodes
from dnnpart.networks.zoo import get

INPUT_NAME = NETWORK_INPUT  # Caffe's name for the network input


@dataclass
class LayerStep:
    """One layer of the exported graph: its nodes (a Flatten first where the layer flattens a 4-D input),
    their weights, and the tensors it reads and writes with their shapes."""

    index: int  # 1-based layer number, as in the optimiser
    layer: Layer
    nodes: list
    weights: dict[str, np.ndarray]
    input_name: str  # the (first) tensor it reads (or INPUT_NAME), before any Flatten
    input_shape: list[int]
    output_name: str  # the layer's name
    output_shape: list[int]
    inputs: tuple[str, ...] = ()  # every tensor it reads (a join reads two or more)


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
    shapes = {INPUT_NAME: [int(v) for v in table.attrs["input_shape"]]}  # tensor -> shape
    current = INPUT_NAME
    for index, (layer, row) in enumerate(zip(layers, table.itertuples(index=False)), start=1):
        if stop is not None and index > stop:
            return
        sources = list(layer.inputs) or [current]
        shape = shapes[sources[0]]
        nodes, xs = [], sources
        if len(shape) == 4 and (layer.type == "fc" or layer.flatten):
            xs = [f"{layer.name}_flat"]
            nodes.append(helper.make_node("Flatten", sources, xs, name=f"{layer.name}_flatten", axis=1))
        layer_n, weights = layer_nodes(layer, int(row.in_channels), xs if len(xs) > 1 else xs[0], layer.name, rng)
        flat = len(shape) == 2 or xs != sources
        out_shape = [1, int(row.out_channels)] + ([] if flat else [int(row.out_side)] * 2)
        yield LayerStep(
            index, layer, nodes + layer_n, weights, sources[0], shape, layer.name, out_shape, tuple(sources)
        )
        current, shapes[layer.name] = layer.name, out_shape


def block_steps(table: pd.DataFrame, seed: int = 0) -> Iterator[LayerStep]:
    """One step per block (dnnpart.networks.blocks): its layers' nodes and weights, reading the one tensor that
    crosses into it. For a chain these are exactly `layer_steps`; for a DAG they are the pieces split execution
    can run one after another (`graph_model([step])` is a runnable model of one block)."""
    steps = list(layer_steps(table, seed))
    for b, (start, stop) in enumerate(block_bounds(table), start=1):
        part, before = steps[start:stop], steps[start - 1] if start else None
        name, shape = (before.output_name, before.output_shape) if before else (INPUT_NAME, steps[0].input_shape)
        yield LayerStep(
            b,
            part[-1].layer,
            [n for s in part for n in s.nodes],
            {k: v for s in part for k, v in s.weights.items()},
            name,
            shape,
            part[-1].output_name,
            part[-1].output_shape,
            (name,),
        )


def graph_model(steps: list[LayerStep], name: str, outputs: list[tuple[str, list[int]]] | None = None):
    """An onnx ModelProto running `steps` in order: input = the first step's input, output = the last step's
    output (or the given (name, shape) outputs). Weights are copied into initializers in place."""
    from onnx import TensorProto, helper

    first, last = steps[0], steps[-1]
    outputs = [(last.output_name, last.output_shape)] if outputs is None else outputs
    graph = helper.make_graph(
        [n for s in steps for n in s.nodes],
        name,
        [helper.make_tensor_value_info(first.input_name, TensorProto.FLOAT, first.input_shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in outputs],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dnnpart", ir_version=IR_VERSION
    )
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


def block_tensors(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(input tensor, output tensor) of every block of a model written by `to_onnx` (or read by `from_onnx`,
    whose tables remember the file's tensor names in attrs['onnx_tensors'] and attrs['onnx_input'])."""
    tensors = table.attrs.get("onnx_tensors", {})
    names = [str(n) for n in table["name"]]
    outs = [tensors.get(names[stop - 1], names[stop - 1]) for _, stop in block_bounds(table)]
    return list(zip([table.attrs.get("onnx_input", INPUT_NAME)] + outs[:-1], outs))


def extract_blocks(model, table: pd.DataFrame, first: int, last: int):
    """The sub-model (an onnx ModelProto) running blocks first..last (1-based, inclusive) of `model` (a
    ModelProto or a path), for split execution: its one input is the tensor crossing into block `first` (the
    network input for block 1), its one output block `last`'s output.

    Feeding each block's sub-model the previous one's output reproduces the whole model at every cut point.
    Raises DnnpartError for a block range outside 1..number of blocks.
    """
    import onnx
    from onnx.utils import Extractor

    tensors = block_tensors(table)
    if not (isinstance(first, int) and isinstance(last, int) and 1 <= first <= last <= len(tensors)):
        raise DnnpartError(
            f"{table.attrs.get('network', 'table')}: blocks {first}..{last} out of range; "
            f"valid: 1 <= first <= last <= {len(tensors)}"
        )
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    cut = [tensors[first - 1][0], tensors[last - 1][1]]
    g = model.graph
    if not set(cut) <= {v.name for v in [*g.input, *g.output, *g.value_info]}:
        model = onnx.shape_inference.infer_shapes(model)  # the extractor needs the cut tensors' shapes
    sub = Extractor(model).extract_model(cut[:1], cut[1:])
    sub.graph.name = f"{table.attrs.get('network', 'table')}_blocks_{first}_{last}"
    return sub
