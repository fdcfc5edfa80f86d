"""Networks as layer tables (paper Section II-A): the zoo, and ONNX models in and out.

`get(name)` builds a zoo network's table; `load(name_or_path)` also reads a chain-structured .onnx file;
`to_onnx` writes a runnable model of any table; `from_onnx` reads one back.
"""
from dnnpart.networks.layers import (BYTES_PER_ELEMENT, COLUMNS, NUMERIC_COLUMNS, Layer, build_table, conv, dropout, fc,
                                     layers_from_table, lrn, pool, pooled_side, relu, softmax, summary)
from dnnpart.networks.onnx_export import to_onnx
from dnnpart.networks.onnx_import import from_onnx
from dnnpart.networks.zoo import get, load, names, zoo_summary
from dnnpart.vocabulary import LAYER_TYPES

__all__ = ["BYTES_PER_ELEMENT", "COLUMNS", "LAYER_TYPES", "NUMERIC_COLUMNS", "Layer", "build_table", "conv", "dropout",
           "fc", "from_onnx", "get", "layers_from_table", "load", "lrn", "names", "pool", "pooled_side", "relu",
           "softmax", "summary", "to_onnx", "zoo_summary"]
