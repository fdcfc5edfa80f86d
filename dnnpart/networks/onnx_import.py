"""Read an ONNX model, a chain or a DAG (residual, branched), into a layer table.

`from_onnx` walks a model's nodes in their (topological) file order, follows which node produced each tensor a
node reads, turns each node into a `Layer` spec naming its inputs, and builds the table with the same shape
propagation as the zoo, which also finds the cut points (dnnpart.networks.blocks); the shapes ONNX itself infers
are checked against it. Batch normalisation is read as a layer of its own; a model exported with it folded into
the convolutions (as inference runtimes and torch.onnx.export do) simply has none, and biased convs instead.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart.errors import DnnpartError, OnnxImportError
from dnnpart.networks.layers import FLATTENABLE, NETWORK_INPUT, Layer, build_table, pooled_side

# ONNX operator -> what it becomes in the table ("fold": absorbed, no row).
SUPPORTED_OPS = {
    "Conv": "conv",
    "Relu": "relu",
    "LRN": "lrn",
    "MaxPool": "pool",
    "AveragePool": "pool",
    "GlobalAveragePool": "gap",
    "GlobalMaxPool": "pool",
    "Gemm": "fc",
    "MatMul": "fc",
    "Dropout": "dropout",
    "Softmax": "softmax",
    "BatchNormalization": "batchnorm",
    "Clip": "clip",
    "Add": "add",  # of two branches; with a constant, the bias of the MatMul right before it
    "Concat": "concat",
    "Flatten": "fold",
    "Reshape": "fold",
    "Identity": "fold",
    "Constant": "fold",
}
JOIN_OPS = ("Add", "Concat")


def _fail(path: Path, message: str) -> OnnxImportError:
    return OnnxImportError(f"{path}: {message}")


def _supported() -> str:
    return ", ".join(
        "Add (of two branches, or a MatMul bias)" if op == "Add" else op for op in SUPPORTED_OPS if op != "Constant"
    )


def _dims(value_info) -> list | None:
    """A value_info's dims as ints (None for unknown ones), or None without a shape."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def _infer_shapes(model) -> tuple[dict[str, list], str | None]:
    """Tensor name -> inferred dims, and the strict inference's error (None if it passed).

    Weights are passed as typed inputs so the big tensors are not copied. On a strict failure the lenient
    result is returned, so that the caller can first report a more specific problem (an unsupported node).
    """
    import onnx
    from onnx import helper

    g = model.graph
    small = [t for t in g.initializer if np.prod(t.dims) <= 64]
    weight_inputs = [
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializer if np.prod(t.dims) > 64
    ]
    graph_inputs = {i.name for i in g.input}
    light = helper.make_model(
        helper.make_graph(
            list(g.node),
            g.name or "graph",
            list(g.input) + [w for w in weight_inputs if w.name not in graph_inputs],
            list(g.output),
            small,
            value_info=list(g.value_info),
        ),
        opset_imports=list(model.opset_import),
        ir_version=max(model.ir_version, 4),
    )
    error = None
    try:
        inferred = onnx.shape_inference.infer_shapes(light, strict_mode=True)
    except Exception as exc:  # onnx raises its own InferenceError and others
        error = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        try:
            inferred = onnx.shape_inference.infer_shapes(light)
        except Exception:
            inferred = light
    ig = inferred.graph
    return {vi.name: _dims(vi) for vi in [*ig.input, *ig.value_info, *ig.output]}, error


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def from_onnx(path: str | Path) -> pd.DataFrame:
    """Read an ONNX model into a layer table (network name = the file's stem).

    Conv (grouped, depthwise), BatchNormalization, Relu, Clip, MaxPool/AveragePool/GlobalAveragePool/
    GlobalMaxPool, LRN, Gemm, MatMul (+ Add of a bias), Dropout, Softmax, and the joins Add and Concat become
    rows; Flatten, a flattening Reshape and Identity are folded away. A node may read any earlier node's output
    (branches); a network has one data input and one output (its last layer). Anything else raises
    OnnxImportError naming the node and the operator. The table's attrs remember the file's tensor names
    ('onnx_input', 'onnx_tensors': layer -> its output tensor), for cutting the file into blocks.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or ["no detail"])[0]
        raise _fail(path, f"cannot read as an ONNX model ({type(exc).__name__}: {detail})") from None
    g = model.graph
    if not g.node:
        raise _fail(path, "not an ONNX model with a graph (no nodes found)")
    shapes, inference_error = _infer_shapes(model)
    weights = {t.name: t for t in g.initializer}
    constants = {}  # small tensors whose values we may need (Reshape targets)
    for t in g.initializer:
        if np.prod(t.dims) <= 64:
            constants[t.name] = numpy_helper.to_array(t)

    data_inputs = [i for i in g.input if i.name not in weights]
    if len(data_inputs) != 1:
        raise _fail(
            path, f"a network has one data input, this model has {len(data_inputs)}: {[i.name for i in data_inputs]}"
        )
    x = data_inputs[0]
    dims = shapes.get(x.name) or _dims(x) or []
    if len(dims) not in (2, 4) or any(d is None for d in dims[1:]):
        raise _fail(path, f"input '{x.name}' must have a fixed shape [N, C, H, W] or [N, features], got {dims}")
    if len(dims) == 4 and dims[2] != dims[3]:
        raise _fail(path, f"input '{x.name}' is {dims[2]}x{dims[3]}; the layer table describes square inputs only")
    input_shape = [1, dims[1], dims[2], dims[3]] if len(dims) == 4 else [1, dims[1], 1, 1]

    nodes = list(g.node)
    labels = [node.name or f"{node.op_type}_{i}" for i, node in enumerate(nodes)]
    consumers: dict[str, list[int]] = {}  # tensor -> indices of the nodes reading it
    for i, node in enumerate(nodes):
        for name in dict.fromkeys(node.input):
            consumers.setdefault(name, []).append(i)

    layers: list[Layer] = []
    index = {}  # layer name -> position in layers
    origin = {}  # layer name -> (node label, op, output tensor)
    fan_in = {}  # layer name -> input channels/features its weights expect
    source = {x.name: (NETWORK_INPUT, False)}  # tensor -> (the layer that made it, flattened since)
    used = {NETWORK_INPUT}
    for i, node in enumerate(nodes):
        op, label = node.op_type, labels[i]
        where = f"node '{label}' ({op})"
        if op == "Constant":
            value = _attr(node, "value")
            if value is not None:
                constants[node.output[0]] = numpy_helper.to_array(value)
            weights.setdefault(node.output[0], None)
            continue
        reads = [n for n in node.input if n and n not in weights]
        if op not in SUPPORTED_OPS:
            raise _fail(
                path,
                f"{where}: operator {op} cannot be described by the layer table; supported operators: {_supported()}",
            )
        for tensor in reads:
            if tensor not in source:
                raise _fail(
                    path,
                    f"{where} reads tensor '{tensor}', which no earlier node produces (nodes must "
                    "come in topological order, and a network has one data input)",
                )
        for extra in node.output[1:]:  # e.g. Dropout's mask, MaxPool's indices
            if extra and extra in consumers:
                raise _fail(path, f"{where}'s second output '{extra}' is used; only the first output may be")
        if label in used:
            label = f"{label}_{i}"
        used.add(label)
        out = node.output[0]

        if op == "Add" and len(reads) == 1:  # a constant added: the bias of the MatMul right before it
            made_by = source[reads[0]][0]
            last = layers[index[made_by]] if made_by in index else None
            bias = _tensor_dims(next((n for n in node.input if n and n in weights), ""), weights, constants, shapes)
            if (
                last is None
                or last.type != "fc"
                or last.bias
                or origin[made_by][1] != "MatMul"
                or bias is None
                or int(np.prod(bias)) != last.out
                or consumers.get(reads[0]) != [i]
            ):
                raise _fail(
                    path,
                    f"{where}: operator Add of a constant is supported only as the bias of a MatMul "
                    f"right before it; supported operators: {_supported()}",
                )
            layers[index[made_by]] = replace(last, bias=True)
            origin[made_by] = (*origin[made_by][:2], out)
            source[out] = source[reads[0]]
            continue
        if op in JOIN_OPS:
            if len(reads) < 2 or (op == "Add" and len(reads) != 2):
                raise _fail(
                    path, f"{where}: joins {'two' if op == 'Add' else 'two or more'} activation tensors, reads {reads}"
                )
            if op == "Concat" and _attr(node, "axis") != 1:
                raise _fail(
                    path,
                    f"{where}: only a Concat along the channels (axis=1) is supported, got axis={_attr(node, 'axis')}",
                )
            layer = Layer(label, SUPPORTED_OPS[op])
        else:
            if len(reads) != 1:
                raise _fail(
                    path, f"{where} reads {len(reads)} activation tensors {reads}; only Add and Concat join branches"
                )
            layer = _node_layer(node, op, label, where, weights, constants, shapes, path, fan_in)
        if layer == "flatten":
            source[out] = (source[reads[0]][0], True)
            continue
        if layer is None:
            source[out] = source[reads[0]]
            continue
        layer = replace(
            layer, inputs=tuple(source[t][0] for t in reads), flatten=source[reads[0]][1] and layer.type in FLATTENABLE
        )
        index[layer.name] = len(layers)
        layers.append(layer)
        origin[layer.name] = (label, op, out)
        source[out] = (layer.name, False)

    if not layers:
        raise _fail(path, "the model has no layer the table can describe")
    try:
        table = build_table(path.stem, input_shape, layers)
    except DnnpartError as exc:
        bad = getattr(exc, "layer", None)
        if bad in origin:
            raise _fail(path, f"node '{origin[bad][0]}' ({origin[bad][1]}): {exc}") from None
        raise _fail(path, str(exc)) from None
    # ONNX's shape inference (unlike onnxruntime, PyTorch and Caffe) ignores the rule that a ceil-mode pooling
    # window may not start in the padding; after a pool where that rule bites, its shapes are not to be trusted.
    onnx_shapes_trusted = True
    for layer, row in zip(layers, table.itertuples(index=False)):
        label, op, tensor = origin[row.name]
        if row.name in fan_in and fan_in[row.name] != row.in_channels:
            raise _fail(
                path,
                f"node '{label}' ({op}): its weight expects {fan_in[row.name]} input "
                f"{'features' if row.type == 'fc' else 'channels'} but receives {row.in_channels}",
            )
        if (
            layer.type == "pool"
            and layer.ceil
            and row.out_side != pooled_side(row.in_side, row.kernel, row.stride, row.pad, ceil=True, clip=False)
        ):
            onnx_shapes_trusted = False
        want = shapes.get(tensor)
        if not onnx_shapes_trusted or not want or len(want) not in (2, 4) or any(d is None for d in want[1:]):
            continue
        side = int(row.out_side)
        spatial_ok = want[2:] == [side, side] if len(want) == 4 else side == 1
        if want[1] != row.out_channels or not spatial_ok:
            raise _fail(
                path,
                f"node '{label}' ({op}): the table's shape rules give {row.out_channels} channels of "
                f"side {side} but ONNX infers {want}",
            )
    if inference_error and onnx_shapes_trusted:  # the checks above found nothing more specific to say
        raise _fail(path, f"ONNX shape inference failed: {inference_error}")
    table.attrs["onnx_input"] = x.name
    table.attrs["onnx_tensors"] = {name: origin[name][2] for name in table["name"]}
    return table


def _tensor_dims(name, weights, constants, shapes) -> list | None:
    """Dims of a weight, constant or inferred tensor, or None."""
    if not name:
        return None
    t = weights.get(name)
    if t is not None:
        return list(t.dims)
    if name in constants:
        return list(constants[name].shape)
    return shapes.get(name)


def _square(values, what: str, where: str, path: Path) -> int:
    values = [int(v) for v in values]
    if len(set(values)) != 1:
        raise _fail(
            path,
            f"{where}: {what} {values} is not square/symmetric; the layer table describes square "
            f"kernels, equal strides and symmetric padding only",
        )
    return values[0]


def _window(node, where: str, path: Path, kernel_default=None) -> dict:
    """kernel, stride and pad of a Conv/Pool node, refusing what the table cannot say (dilation, SAME padding)."""
    auto_pad = _attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "VALID"):
        raise _fail(path, f"{where}: auto_pad={auto_pad} is not supported; export with explicit pads")
    dil = _attr(node, "dilations", [1, 1])
    if any(d != 1 for d in dil):
        raise _fail(path, f"{where}: dilations {list(dil)} cannot be described by the layer table")
    kernel = _attr(node, "kernel_shape", kernel_default)
    if kernel is None or len(kernel) != 2:
        raise _fail(path, f"{where}: needs a 2-D kernel, got {kernel}")
    return dict(
        kernel=_square(kernel, "kernel", where, path),
        stride=_square(_attr(node, "strides", [1, 1]), "strides", where, path),
        pad=_square(_attr(node, "pads", [0, 0, 0, 0]), "pads", where, path),
    )


def _node_layer(node, op, label, where, weights, constants, shapes, path, fan_in):
    """The Layer a one-input node becomes, "flatten" for a folded flatten, None for a no-op; raises for the
    unsupported. For conv, fc and batchnorm, fan_in[label] receives the input channels/features the weights expect.
    """

    def weight_dims(k):
        return _tensor_dims(node.input[k] if len(node.input) > k else "", weights, constants, shapes)

    has_bias = len(node.input) > 2 and bool(node.input[2])
    if op == "Identity":
        return None
    if op == "Flatten":
        if _attr(node, "axis", 1) != 1:
            raise _fail(path, f"{where}: only axis=1 flattens to [N, features]")
        return "flatten"
    if op == "Reshape":
        target = constants.get(node.input[1]) if len(node.input) > 1 else None
        out = shapes.get(node.output[0])
        if target is None or len(target) != 2 or not out or len(out) != 2:
            raise _fail(
                path,
                f"{where}: only a Reshape to [N, features] with a constant shape can be folded "
                f"(got {None if target is None else target.tolist()})",
            )
        return "flatten"
    if op == "Conv":
        w = weight_dims(1)
        if w is None or len(w) != 4:
            raise _fail(path, f"{where}: weight must be a 4-D initializer, got {w}")
        fan_in[label] = int(w[1]) * int(_attr(node, "group", 1))
        return Layer(
            label,
            "conv",
            out=int(w[0]),
            groups=int(_attr(node, "group", 1)),
            bias=has_bias,
            **_window(node, where, path, kernel_default=w[2:]),
        )
    if op in ("MaxPool", "AveragePool"):
        return Layer(label, "pool", ceil=bool(_attr(node, "ceil_mode", 0)), **_window(node, where, path))
    if op == "GlobalAveragePool":
        return Layer(label, "gap")
    if op == "GlobalMaxPool":
        return Layer(label, "pool", kernel=0)  # kernel 0: global, the window is the whole map
    if op == "BatchNormalization":
        dims = [weight_dims(k) for k in range(1, 5)]
        if (
            _attr(node, "training_mode", 0)
            or any(d is None or len(d) != 1 for d in dims)
            or len({d[0] for d in dims}) != 1
        ):
            raise _fail(
                path,
                f"{where}: needs inference mode and four 1-D initializers (scale, bias, mean, "
                f"variance) of one length, got {dims}",
            )
        fan_in[label] = int(dims[0][0])
        return Layer(label, "batchnorm")
    if op == "Clip":
        return Layer(label, "clip")
    if op == "LRN":
        size = _attr(node, "size")
        if size is None:
            raise _fail(path, f"{where}: has no size attribute")
        return Layer(label, "lrn", kernel=int(size))
    if op == "Gemm":
        w = weight_dims(1)
        if _attr(node, "transA", 0) or w is None or len(w) != 2:
            raise _fail(path, f"{where}: needs transA=0 and a 2-D weight initializer, got weight {w}")
        trans = bool(_attr(node, "transB", 0))
        fan_in[label] = int(w[1] if trans else w[0])
        return Layer(label, "fc", out=int(w[0] if trans else w[1]), bias=has_bias)
    if op == "MatMul":
        w = weight_dims(1)
        if w is None or len(w) != 2:
            raise _fail(path, f"{where}: needs a 2-D weight initializer, got {w}")
        fan_in[label] = int(w[0])
        return Layer(label, "fc", out=int(w[1]), bias=False)
    if op == "Relu":
        return Layer(label, "relu")
    if op == "Dropout":
        return Layer(label, "dropout")
    if op == "Softmax":
        return Layer(label, "softmax")
    raise AssertionError(op)  # SUPPORTED_OPS and this function disagree
