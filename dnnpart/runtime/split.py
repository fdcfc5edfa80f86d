"""Split execution: a network as one runnable ONNX model per layer, so that any cut c runs layers 1..c on the
device and c+1..M on the server, one subtask at a time (the server interleaves devices at layer boundaries).

The per-layer models come from the same walk as `networks.to_onnx` (`layer_steps`), so with the same seed they
hold exactly the whole model's weights. A layer that flattens a 4-D input carries its Flatten node, so the
tensor crossing any cut is the previous layer's output as it is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dnnpart.errors import DnnpartError
from dnnpart.networks.onnx_export import graph_model, layer_steps
from dnnpart.networks.zoo import get

DATATYPE = "FP32"  # the Open Inference Protocol's name for float32, the only tensor type the layers use


@dataclass(frozen=True)
class SplitNetwork:
    """A chain network as per-layer ONNX models.

    models[j-1] runs layer j; shapes[c] is the shape of the tensor crossing cut c (shapes[0] the input,
    shapes[M] the output); sha256 identifies the weights (a digest over every layer model's bytes).
    """

    network: str
    seed: int
    layer_names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    models: tuple[bytes, ...]
    sha256: str

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    def check_cut(self, cut) -> int:
        if isinstance(cut, bool) or int(cut) != cut or not 0 <= cut <= self.n_layers:
            raise DnnpartError(f"{self.network}: cut must be an integer in 0..{self.n_layers}, got {cut!r}")
        return int(cut)

    def input_bytes(self, cut: int) -> int:
        """Bytes of the float32 tensor crossing cut `cut`."""
        return 4 * int(np.prod(self.shapes[self.check_cut(cut)]))


def split_network(name_or_table: str | pd.DataFrame, seed: int = 0) -> SplitNetwork:
    """Build every layer's one-layer ONNX model of a zoo network (by name) or a layer table."""
    table = get(name_or_table) if isinstance(name_or_table, str) else name_or_table
    network = str(table.attrs.get("network", "table"))
    models, names, shapes = [], [], [tuple(int(v) for v in table.attrs["input_shape"])]
    digest = hashlib.sha256(f"{network}:{seed}:".encode())
    for step in layer_steps(table, seed):
        data = graph_model([step], f"{network}.{step.output_name}").SerializeToString()
        digest.update(hashlib.sha256(data).digest())
        models.append(data)
        names.append(step.output_name)
        shapes.append(tuple(step.output_shape))
    return SplitNetwork(network, int(seed), tuple(names), tuple(shapes), tuple(models), digest.hexdigest())
