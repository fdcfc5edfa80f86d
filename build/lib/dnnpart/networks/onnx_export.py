"""Write a zoo network (or any layer table) as a runnable ONNX model.

One ONNX node per table row (plus a Flatten before the first fully connected layer), random He-uniform float32
weights from a seeded generator, and, by default, every layer's output as a graph output so onnxruntime can
show each layer's shape.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart.errors import DnnpartError
from dnnpart.files import atomic_write_bytes
from dnnpart.networks.layers import layers_from_table
from dnnpart.networks.onnx_nodes import IR_VERSION, OPSET, layer_nodes
from dnnpart.networks.zoo import get

INPUT_NAME = "data"  # Caffe's name for the network input


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
    current, rank = INPUT_NAME, 4
    for layer, row in zip(layers, table.itertuples(index=False)):
        if rank == 4 and (layer.type == "fc" or layer.flatten):
            flat = f"{layer.name}_flat"
            nodes.append(helper.make_node("Flatten", [current], [flat], name=f"{layer.name}_flatten", axis=1))
            current, rank = flat, 2
        layer_n, layer_w = layer_nodes(layer, int(row.in_channels), current, layer.name, rng)
        nodes += layer_n
        weights.update(layer_w)
        shape = [1, int(row.out_channels)] + ([int(row.out_side)] * 2 if rank == 4 else [])
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
