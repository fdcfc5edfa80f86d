"""Split execution: a network as one runnable ONNX model per layer, so that any cut c runs layers 1..c on the
device and c+1..M on the server, one subtask at a time (the server interleaves devices at layer boundaries).

The per-layer models of a zoo network come from the same walk as `networks.to_onnx` (`layer_steps`), so with the
same seed they hold exactly the whole model's weights. A device's own ONNX chain model (`split_onnx`) is cut into
its layers by `networks.extract_blocks`, so every layer model carries the file's own weights. A layer that
flattens a 4-D input carries its Flatten node, so the tensor crossing any cut is the previous layer's output as
it is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart.errors import DnnpartError, OnnxImportError
from dnnpart.networks.blocks import is_dag
from dnnpart.networks.onnx_export import block_tensors, extract_blocks, graph_model, layer_steps
from dnnpart.networks.onnx_import import from_onnx
from dnnpart.networks.zoo import get

DATATYPE = "FP32"  # the Open Inference Protocol's name for float32, the only tensor type the layers use


@dataclass(frozen=True)
class SplitNetwork:
    """A chain network as per-layer ONNX models.

    models[j-1] runs layer j; shapes[c] is the shape of the tensor crossing cut c (shapes[0] the input,
    shapes[M] the output); sha256 identifies the weights (a digest over every layer model's bytes). A split
    ONNX file has onnx_sha256, the file's digest, and is named onnx_model_name(onnx_sha256).
    """

    network: str
    seed: int
    layer_names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    models: tuple[bytes, ...]
    sha256: str
    table: pd.DataFrame = field(compare=False, repr=False)  # the layer table the planner predicts times for
    onnx_sha256: str = ""
    # each layer model's own digest (FetchLayers sends it; a device's layer cache files by it); computed if not given
    layer_sha256: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self):
        if not self.layer_sha256:  # frozen: set once, here
            object.__setattr__(self, "layer_sha256", tuple(hashlib.sha256(m).hexdigest() for m in self.models))

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    @property
    def version(self) -> str:
        """The model's version in the Open Inference Protocol: the weight seed, or the ONNX file's sha256."""
        return self.onnx_sha256 or str(self.seed)

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
    for step in layer_steps(table, seed):
        models.append(graph_model([step], f"{network}.{step.output_name}").SerializeToString())
        names.append(step.output_name)
        shapes.append(tuple(step.output_shape))
    layers = tuple(hashlib.sha256(m).hexdigest() for m in models)
    sha256 = split_digest(network, seed, layers)
    return SplitNetwork(
        network, int(seed), tuple(names), tuple(shapes), tuple(models), sha256, table, layer_sha256=layers
    )


def split_digest(network: str, seed: int, layer_sha256) -> str:
    """SplitNetwork.sha256 of a zoo network's split: over the name, the seed and every layer's digest."""
    digest = hashlib.sha256(f"{network}:{seed}:".encode())
    for sha in layer_sha256:
        digest.update(bytes.fromhex(sha))
    return digest.hexdigest()


def _weight_code():
    """The modules whose source decides a zoo split's bytes (the cache index's key includes them)."""
    import sys

    from dnnpart.networks import onnx_export, onnx_nodes

    return [onnx_nodes, onnx_export, sys.modules[__name__]]


def cached_split_network(name: str, seed: int, cache) -> SplitNetwork:
    """split_network(name, seed), read from a LayerCache when it holds this split, else built and kept there.

    An index file names the split's layers by digest; it is keyed by the layer table, the seed and the source
    of the code that draws and writes the weights, so a changed zoo spec or exporter builds afresh. Each layer
    file is checked against its digest (LayerCache.get); a missing or altered one makes the split be built
    again."""
    import json

    from dnnpart.files import atomic_write_text

    table = get(name)
    network = str(table.attrs.get("network", name))
    code = b"".join(Path(m.__file__).read_bytes() for m in _weight_code())
    spec = json.dumps([network, int(seed), list(table.attrs["input_shape"]), table.to_csv(index=False)])
    key = hashlib.sha256(spec.encode() + code).hexdigest()[:16]
    index = cache.folder / f"{network}-seed{int(seed)}-{key}.json"
    try:
        meta = json.loads(index.read_text(encoding="utf-8"))
        models = [cache.get(sha) for sha in meta["layers"]]
    except (OSError, ValueError, KeyError, TypeError):
        models = [None]
    if models and all(m is not None for m in models):
        shapes = tuple(tuple(int(v) for v in shape) for shape in meta["shapes"])
        names = tuple(str(n) for n in meta["names"])
        layers = tuple(str(sha) for sha in meta["layers"])  # each checked by cache.get
        sha256 = split_digest(network, seed, layers)
        return SplitNetwork(network, int(seed), names, shapes, tuple(models), sha256, table, layer_sha256=layers)
    split = split_network(table, seed)
    layers = [cache.put(m) for m in split.models]
    meta = {"names": list(split.layer_names), "shapes": [list(s) for s in split.shapes], "layers": layers}
    try:
        atomic_write_text(index, json.dumps(meta, indent=1) + "\n")
    except (OSError, DnnpartError):  # an unwritable folder: no cache, the split is built either way
        pass
    return split


def onnx_model_name(sha256: str) -> str:
    """The name the server gives a device's ONNX model: its digest's first 12 hex digits, unique and safe."""
    return f"onnx-{sha256[:12]}"


def split_onnx(path: str | Path, sha256: str | None = None) -> SplitNetwork:
    """Cut an ONNX chain model into one runnable model per layer, with the file's own weights.

    The layer table is `networks.from_onnx`'s; a DAG model (branches that join) is refused, as is any model
    from_onnx refuses (OnnxImportError naming the node) and one whose input is not float32. The tensor shapes
    crossing each cut are measured by running the layers once on zeros (a dynamic batch dimension becomes 1).
    """
    import onnx

    from dnnpart.runtime.layers import LayerRunner

    path = Path(path)
    data = path.read_bytes()
    sha256 = sha256 or hashlib.sha256(data).hexdigest()
    name = onnx_model_name(sha256)
    table = from_onnx(path)
    if is_dag(table):
        joins = table.loc[table["type"].isin(["add", "concat"]), "name"].astype(str).tolist()
        raise OnnxImportError(
            f"{path.name}: not a chain (branches join at {', '.join(joins[:3])}{', ...' if len(joins) > 3 else ''}); "
            "the runtime runs chain models, layer by layer"
        )
    table.attrs["network"] = name
    model = onnx.load_from_string(data)
    x = next(i for i in model.graph.input if i.name == table.attrs["onnx_input"])
    if x.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise OnnxImportError(f"{path.name}: input '{x.name}' must be float32, the only tensor type of the runtime")
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in x.type.tensor_type.shape.dim]
    known = {v.name for v in [*model.graph.input, *model.graph.output, *model.graph.value_info]}
    if not {t for pair in block_tensors(table) for t in pair} <= known:
        model = onnx.shape_inference.infer_shapes(model)  # once here, not once per layer in extract_blocks
    m = len(table)
    models = [extract_blocks(model, table, j, j).SerializeToString() for j in range(1, m + 1)]
    y, shapes = np.zeros(dims, np.float32), [tuple(dims)]
    runner = LayerRunner(models, threads=1)
    for j in range(1, m + 1):
        y = runner.run(j, y)
        shapes.append(tuple(int(s) for s in y.shape))
    digest = hashlib.sha256(f"onnx:{sha256}:".encode())
    for layer in models:
        digest.update(hashlib.sha256(layer).digest())
    names = tuple(str(n) for n in table["name"])
    return SplitNetwork(name, 0, names, tuple(shapes), tuple(models), digest.hexdigest(), table, sha256)
