"""DAG networks through ONNX: a branched model imported with its cut points checked by hand, the zoo's residual
networks exported, run with every block's shape checked, imported back, and executed block by block."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from dnnpart import networks
from dnnpart.errors import DnnpartError


def session(model):
    """Graph rewrites off (as the profiler runs): fusing Conv+BatchNorm+Add differently in a whole model and in
    its parts would change float rounding (by up to 2e-5 on resnet18), not what the split computes."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def run(model, x):
    s = session(model)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, {s.get_inputs()[0].name: x})))


def w(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-0.3, 0.3, size=shape).astype(np.float32)


def two_residual_blocks(path):
    """stem conv -> relu -> [conv+BN -> relu -> conv] + shortcut -> relu -> [depthwise conv -> clip -> 1x1 conv]
    + shortcut -> relu -> global average pool -> flatten -> gemm, written the way torch.onnx.export names things."""
    n = helper.make_node
    nodes = [
        n("Conv", ["input", "stem.w"], ["t0"], name="/stem/Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("Relu", ["t0"], ["t1"], name="/stem/Relu"),
        n("Conv", ["t1", "a.w"], ["t2"], name="/b1/conv1/Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["t2", "bn.s", "bn.b", "bn.m", "bn.v"], ["t3"], name="/b1/bn1/BatchNormalization"),
        n("Relu", ["t3"], ["t4"], name="/b1/Relu"),
        n("Conv", ["t4", "b.w"], ["t5"], name="/b1/conv2/Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("Add", ["t5", "t1"], ["t6"], name="/b1/Add"),
        n("Relu", ["t6"], ["t7"], name="/b1/Relu_1"),
        n("Conv", ["t7", "dw.w"], ["t8"], name="/b2/dw/Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
        n("Clip", ["t8", "lo", "hi"], ["t9"], name="/b2/Clip"),
        n("Conv", ["t9", "pw.w"], ["t10"], name="/b2/pw/Conv", kernel_shape=[1, 1]),
        n("Add", ["t7", "t10"], ["t11"], name="/b2/Add"),
        n("Relu", ["t11"], ["t12"], name="/b2/Relu"),
        n("GlobalAveragePool", ["t12"], ["t13"], name="/pool/GlobalAveragePool"),
        n("Flatten", ["t13"], ["t14"], name="/Flatten"),
        n("Gemm", ["t14", "fc.w", "fc.b"], ["logits"], name="/fc/Gemm", transB=1),
    ]
    inits = {
        "stem.w": w(8, 3, 3, 3),
        "a.w": w(8, 8, 3, 3, seed=1),
        "b.w": w(8, 8, 3, 3, seed=2),
        "bn.s": np.ones(8, np.float32),
        "bn.b": np.zeros(8, np.float32),
        "bn.m": np.zeros(8, np.float32),
        "bn.v": np.ones(8, np.float32),
        "dw.w": w(8, 1, 3, 3, seed=3),
        "lo": np.array(0, np.float32),
        "hi": np.array(6, np.float32),
        "pw.w": w(8, 8, 1, 1, seed=4),
        "fc.w": w(5, 8, seed=5),
        "fc.b": np.zeros(5, np.float32),
    }
    graph = helper.make_graph(
        nodes,
        "two_blocks",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_a_branched_model_imports_with_its_cut_points(tmp_path):
    path = two_residual_blocks(tmp_path / "two_blocks.onnx")
    t = networks.from_onnx(path)
    assert list(t["type"]) == [
        "conv",
        "relu",
        "conv",
        "batchnorm",
        "relu",
        "conv",
        "add",
        "relu",
        "dwconv",
        "clip",
        "conv",
        "add",
        "relu",
        "gap",
        "fc",
    ]
    # by hand: inside a residual block two tensors cross (the shortcut and the body's), so the cut points are
    # after the stem conv, the stem relu, each add, each block's relu, the pool; the blocks are
    assert list(t["block"]) == [1, 2, 3, 3, 3, 3, 3, 4, 5, 5, 5, 5, 6, 7, 8]
    blocks = networks.block_table(t)
    assert list(blocks["name"]) == [
        "/stem/Conv",
        "/stem/Relu",
        "/b1/Add",
        "/b1/Relu_1",
        "/b2/Add",
        "/b2/Relu",
        "/pool/GlobalAveragePool",
        "/fc/Gemm",
    ]
    assert list(blocks["in_bytes"]) == [3 * 36 * 4] + [8 * 36 * 4] * 6 + [8 * 4]
    rows = t.set_index("name")
    assert rows.loc["/b1/Add", "inputs"] == "/b1/conv2/Conv,/stem/Relu"
    assert rows.loc["/b2/Add", ["inputs", "in_channels", "out_channels"]].tolist() == ["/b1/Relu_1,/b2/pw/Conv", 16, 8]
    assert rows.loc["/b2/dw/Conv", ["groups", "macs", "params"]].tolist() == [8, 36 * 8 * 9, 8 * 9]
    assert rows.loc["/b1/bn1/BatchNormalization", "params"] == 16 and rows.loc["/pool/GlobalAveragePool", "kernel"] == 6
    assert t.attrs["onnx_input"] == "input" and t.attrs["onnx_tensors"]["/b1/Add"] == "t6"

    # the file itself splits at those cut points (its own tensor names), and block by block equals the whole
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6), dtype=np.float32)
    whole = run(path, x)["logits"]
    y = x
    for b in range(1, len(blocks) + 1):
        y = next(iter(run(networks.extract_blocks(path, t, b, b), y).values()))
    np.testing.assert_allclose(y, whole, rtol=1e-4, atol=1e-5)
    # and its table exports to a runnable model that imports back to the same table
    again = networks.from_onnx(networks.to_onnx(t, tmp_path / "again.onnx"))
    assert again[networks.COLUMNS + networks.DAG_COLUMNS].equals(t[networks.COLUMNS + networks.DAG_COLUMNS])


def test_batchnorm_in_training_mode_is_refused(tmp_path):
    path = two_residual_blocks(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.node[3].attribute.append(helper.make_attribute("training_mode", 1))
    onnx.save(model, tmp_path / "train.onnx")
    with pytest.raises(DnnpartError, match=r"'/b1/bn1/BatchNormalization' \(BatchNormalization\): needs inference"):
        networks.from_onnx(tmp_path / "train.onnx")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dag")
    return {name: networks.to_onnx(name, folder / f"{name}.onnx") for name in ("resnet18", "mobilenet_v2")}


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_exported_dag_runs_with_every_blocks_shape_and_imports_back(exported, name):
    table = networks.get(name)
    onnx.checker.check_model(str(exported[name]))
    x = np.random.default_rng(0).standard_normal(table.attrs["input_shape"], dtype=np.float32)
    outputs = run(exported[name], x)
    assert list(outputs) == list(table["name"])
    for block in networks.block_table(table).itertuples():
        y = outputs[block.name]
        assert y.shape[:2] == (1, table.set_index("name").loc[block.name, "out_channels"])
        assert y.nbytes == block.out_bytes and np.isfinite(y).all()
    back = networks.from_onnx(exported[name])
    columns = networks.COLUMNS + networks.DAG_COLUMNS
    assert back[columns].equals(table[columns])


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_block_by_block_equals_the_whole_model_at_every_cut_point(exported, name):
    table = networks.get(name)
    model = onnx.load(str(exported[name]))
    x = np.random.default_rng(1).standard_normal(table.attrs["input_shape"], dtype=np.float32)
    whole = run(model, x)
    y = x
    blocks = networks.block_table(table)
    for b, block in enumerate(blocks.itertuples(), start=1):
        sub = networks.extract_blocks(model, table, b, b)
        assert [i.name for i in sub.graph.input] == [networks.block_tensors(table)[b - 1][0]]
        y = run(sub, y)[block.name]
        np.testing.assert_allclose(y, whole[block.name], rtol=1e-4, atol=1e-5)
    # a device part (blocks 1..k) and a server part (k+1..end) at a cut in the middle
    k = len(blocks) // 2
    head = run(networks.extract_blocks(model, table, 1, k), x)[blocks["name"][k - 1]]
    tail = run(networks.extract_blocks(model, table, k + 1, len(blocks)), head)
    np.testing.assert_allclose(tail[blocks["name"].iloc[-1]], whole[blocks["name"].iloc[-1]], rtol=1e-4, atol=1e-5)


def test_resnet50_splits_at_a_few_cut_points(tmp_path):
    table = networks.get("resnet50")
    path = networks.to_onnx("resnet50", tmp_path / "resnet50.onnx", layer_outputs=False)
    model = onnx.load(str(path))
    x = np.random.default_rng(2).standard_normal(table.attrs["input_shape"], dtype=np.float32)
    whole = run(model, x)["fc"]
    blocks = networks.block_table(table)
    assert len(blocks) == 38 and blocks["name"].iloc[-1] == "fc"
    for k in (4, 9, 30):  # after the stem, inside layer2, inside layer4
        head = run(networks.extract_blocks(model, table, 1, k), x)[blocks["name"][k - 1]]
        tail = run(networks.extract_blocks(model, table, k + 1, len(blocks)), head)["fc"]
        np.testing.assert_allclose(tail, whole, rtol=1e-4, atol=1e-5)
    assert networks.from_onnx(path)[networks.COLUMNS + networks.DAG_COLUMNS].equals(
        table[networks.COLUMNS + networks.DAG_COLUMNS]
    )


def test_extract_blocks_refuses_a_range_outside_the_network(exported):
    table = networks.get("resnet18")
    for first, last in ((0, 1), (3, 2), (1, 23)):
        with pytest.raises(DnnpartError, match=r"resnet18: blocks .* out of range; valid: 1 <= first <= last <= 22"):
            networks.extract_blocks(exported["resnet18"], table, first, last)


def test_block_steps_are_the_layer_steps_of_a_chain_and_runnable_blocks_of_a_dag():
    from dnnpart.networks.onnx_export import block_steps, graph_model, layer_steps

    lenet = networks.get("lenet")
    for a, b in zip(block_steps(lenet), layer_steps(lenet)):
        assert (a.input_name, a.output_name, a.input_shape, a.output_shape) == (
            b.input_name,
            b.output_name,
            b.input_shape,
            b.output_shape,
        )
        assert [n.SerializeToString() for n in a.nodes] == [n.SerializeToString() for n in b.nodes]
    table = networks.get("mobilenet_v2")
    steps = list(block_steps(table, seed=3))
    assert [s.output_name for s in steps] == networks.block_names(table)
    whole = graph_model(list(layer_steps(table, seed=3)), "whole")
    x = np.random.default_rng(3).standard_normal(table.attrs["input_shape"], dtype=np.float32)
    want = run(whole, x)["classifier.1"]
    y = x
    for step in steps:
        y = run(graph_model([step], step.output_name), y)[step.output_name]
        assert list(y.shape) == step.output_shape
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
