"""Write a zoo network (or any layer table) as a runnable ONNX model, and cut a model into its blocks.

One ONNX node per table row (plus a Flatten before a fully connected layer that reads a map), random He-uniform
float32 weights from a seeded generator, and, by default, every layer's output as a graph output so onnxruntime
can show each layer's shape. Node and tensor names are the layer names, so the tensor crossing a cut point is
named by the block's last layer; `extract_blocks` cuts out the sub-model of blocks i..j for split execution.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart.errors import DnnpartError
from dnnpart.files import atomic_write_bytes
from dnnpart.networks.blocks import block_bounds
from dnnpart.networks.layers import NETWORK_INPUT, layers_from_table
from dnnpart.networks.onnx_nodes import IR_VERSION, OPSET, layer_nodes
from dnnpart.networks.zoo import get

INPUT_NAME = NETWORK_INPUT  # Caffe's name for the network input


def to_onnx(name_or_table: str | pd.DataFrame, path: str | Path, seed: int = 0, layer_outputs: bool = True) -> Path:
    """Write a runnable ONNX model (opset 17, input "data" [1, C, H, W]) of a zoo network or a layer table.

    Weights are random (numpy default_rng(seed)), so two calls with the same seed write identical files.
    Node and output tensor names are the layer names; with `layer_outputs` every layer's output is a graph
    output (in table order), otherwise only the last. Raises DnnpartError for an unknown name or a table
    whose rows do not follow from their hyper-parameters.
    """
    from onnx import TensorProto, helper

    table = get(name_or_table) if isinstance(name_or_table, str) else name_or_table
    layers = layers_from_table(table)
    network = table.attrs.get("network", "table")
    names = [layer.name for layer in layers]
    clashes = sorted({n for n in names if names.count(n) > 1 or n == INPUT_NAME})
    if clashes:
        raise DnnpartError(f"{network}: layer names must be unique and not {INPUT_NAME!r}: {clashes}")

    rng = np.random.default_rng(seed)
    input_shape = [int(v) for v in table.attrs["input_shape"]]
    nodes, weights, outputs = [], {}, []
    rank = {INPUT_NAME: 4}  # tensor -> rank (4: a map, 2: a feature vector)
    current = INPUT_NAME
    for layer, row in zip(layers, table.itertuples(index=False)):
        sources = list(layer.inputs) or [current]
        if rank[sources[0]] == 4 and (layer.type == "fc" or layer.flatten):
            flat = f"{layer.name}_flat"
            nodes.append(helper.make_node("Flatten", sources, [flat], name=f"{layer.name}_flatten", axis=1))
            sources, rank[flat] = [flat], 2
        layer_n, layer_w = layer_nodes(layer, int(row.in_channels), sources if len(sources) > 1 else sources[0],
                                       layer.name, rng)
        nodes += layer_n
        weights.update(layer_w)
        rank[layer.name] = rank[sources[0]]
        shape = [1, int(row.out_channels)] + ([int(row.out_side)] * 2 if rank[layer.name] == 4 else [])
        outputs.append(helper.make_tensor_value_info(layer.name, TensorProto.FLOAT, shape))
        current = layer.name
    graph = helper.make_graph(
        nodes, network, [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, input_shape)],
        outputs if layer_outputs else outputs[-1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dnnpart",
                              ir_version=IR_VERSION)
    for name, array in weights.items():  # filled in place: make_graph/make_model would copy 100s of MB twice
        tensor = model.graph.initializer.add()
        tensor.name, tensor.data_type = name, TensorProto.FLOAT
        tensor.dims.extend(array.shape)
        tensor.raw_data = array.tobytes()  # little-endian float32, as ONNX stores raw data
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
        raise DnnpartError(f"{table.attrs.get('network', 'table')}: blocks {first}..{last} out of range; "
                           f"valid: 1 <= first <= last <= {len(tensors)}")
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    cut = [tensors[first - 1][0], tensors[last - 1][1]]
    g = model.graph
    if not set(cut) <= {v.name for v in [*g.input, *g.output, *g.value_info]}:
        model = onnx.shape_inference.infer_shapes(model)  # the extractor needs the cut tensors' shapes
    sub = Extractor(model).extract_model(cut[:1], cut[1:])
    sub.graph.name = f"{table.attrs.get('network', 'table')}_blocks_{first}_{last}"
    return sub
