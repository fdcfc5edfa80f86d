"""Networks as layer tables (paper Section II-A): the zoo, ONNX models in and out, and blocks for DAG networks.

`get(name)` builds a zoo network's table; `load(name_or_path)` also reads an .onnx file (a chain or a DAG);
`to_onnx` writes a runnable model of any table; `from_onnx` reads one back; `block_table` is the optimiser's
view of a network (its blocks between cut points) and `extract_blocks` cuts an ONNX model into them.
"""

from dnnpart.networks.blocks import (
    BLOCK_COLUMNS,
    block_bounds,
    block_in_bytes,
    block_names,
    block_sums,
    block_table,
    cut_points,
    is_dag,
    layer_blocks,
)
from dnnpart.networks.layers import (
    BYTES_PER_ELEMENT,
    COLUMNS,
    DAG_COLUMNS,
    NETWORK_INPUT,
    NUMERIC_COLUMNS,
    Layer,
    add,
    batchnorm,
    build_table,
    clip,
    concat,
    conv,
    dropout,
    dwconv,
    fc,
    gap,
    layers_from_table,
    lrn,
    pool,
    pooled_side,
    relu,
    softmax,
    summary,
)
from dnnpart.networks.onnx_export import block_tensors, extract_blocks, to_onnx
from dnnpart.networks.onnx_import import from_onnx
from dnnpart.networks.zoo import DAG_NETWORKS, PAPER_NETWORKS, get, load, names, zoo_summary
from dnnpart.vocabulary import LAYER_TYPES

__all__ = [
    "BLOCK_COLUMNS",
    "BYTES_PER_ELEMENT",
    "COLUMNS",
    "DAG_COLUMNS",
    "DAG_NETWORKS",
    "LAYER_TYPES",
    "NETWORK_INPUT",
    "NUMERIC_COLUMNS",
    "PAPER_NETWORKS",
    "Layer",
    "add",
    "batchnorm",
    "block_bounds",
    "block_in_bytes",
    "block_names",
    "block_sums",
    "block_table",
    "block_tensors",
    "build_table",
    "clip",
    "concat",
    "conv",
    "cut_points",
    "dropout",
    "dwconv",
    "extract_blocks",
    "fc",
    "from_onnx",
    "gap",
    "get",
    "is_dag",
    "layer_blocks",
    "layers_from_table",
    "load",
    "lrn",
    "names",
    "pool",
    "pooled_side",
    "relu",
    "softmax",
    "summary",
    "to_onnx",
    "zoo_summary",
]
