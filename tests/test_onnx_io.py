"""ONNX both ways: exported zoo models run in onnxruntime with the table's shapes; chain models import back."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from dnnpart import networks
from dnnpart.errors import DnnpartError, OnnxImportError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """lenet and alexnet written once (AlexNet is 244 MB of weights; VGG is never written in tests)."""
    folder = tmp_path_factory.mktemp("onnx")
    return {name: networks.to_onnx(name, folder / f"{name}.onnx") for name in ("lenet", "alexnet")}


def run_all_layers(path, input_shape, seed=0):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).standard_normal(input_shape, dtype=np.float32)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: x})))


def assert_shapes_match(outputs, table):
    assert list(outputs) == list(table["name"])
    for row in table.itertuples():
        shape = outputs[row.name].shape
        assert shape[0] == 1 and shape[1] == row.out_channels, (row.name, shape)
        assert all(s == row.out_side for s in shape[2:]), (row.name, shape)
        assert int(np.prod(shape)) == row.out_elements


@pytest.mark.parametrize("name", ["lenet", "alexnet"])
def test_exported_model_runs_with_the_tables_shapes(exported, name):
    onnx.checker.check_model(str(exported[name]))
    table = networks.get(name)
    outputs = run_all_layers(exported[name], table.attrs["input_shape"])
    assert_shapes_match(outputs, table)
    prob = outputs["prob"]
    assert np.isfinite(prob).all() and prob.sum() == pytest.approx(1.0, abs=1e-5)


def test_exported_alexnet_uses_caffe_operators_in_table_order(exported):
    graph = onnx.load(str(exported["alexnet"]), load_external_data=False).graph
    ops = [(n.name, n.op_type) for n in graph.node]
    assert [n for n, op in ops if op != "Flatten"] == list(networks.get("alexnet")["name"])
    assert [op for _, op in ops].count("Flatten") == 1 and ops[15] == ("fc6_flatten", "Flatten")
    attrs = {n.name: {a.name: helper.get_attribute_value(a) for a in n.attribute} for n in graph.node}
    assert [attrs[c]["group"] for c in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]
    assert dict(ops)["norm1"] == "LRN" and attrs["norm1"]["size"] == 5
    assert dict(ops)["pool1"] == "MaxPool" and attrs["pool1"]["ceil_mode"] == 1
    assert dict(ops)["fc6"] == "Gemm" and dict(ops)["drop6"] == "Dropout" and dict(ops)["prob"] == "Softmax"
    sizes = {t.name: int(np.prod(t.dims)) for t in graph.initializer}
    assert sum(sizes.values()) == networks.get("alexnet")["params"].sum()
    assert sizes["conv2_w"] == 256 * 48 * 25


@pytest.mark.parametrize("name", ["lenet", "alexnet"])
def test_round_trip_reproduces_the_zoo_table(exported, name):
    back = networks.from_onnx(exported[name])
    table = networks.get(name)
    assert back[networks.NUMERIC_COLUMNS].equals(table[networks.NUMERIC_COLUMNS])
    assert list(back["name"]) == list(table["name"]) and list(back["type"]) == list(table["type"])
    assert {k: back.attrs[k] for k in ("network", "input_shape")} == {
        "network": name,
        "input_shape": table.attrs["input_shape"],
    }
    assert back.attrs["onnx_input"] == "data" and back.attrs["onnx_tensors"] == {n: n for n in table["name"]}
    assert list(back.columns) == networks.COLUMNS  # a chain stays a chain: no inputs/block columns


def test_export_is_deterministic_and_seeded(tmp_path):
    a = networks.to_onnx("lenet", tmp_path / "a.onnx", seed=0).read_bytes()
    b = networks.to_onnx(networks.get("lenet"), tmp_path / "b.onnx", seed=0).read_bytes()
    c = networks.to_onnx("lenet", tmp_path / "c.onnx", seed=1).read_bytes()
    assert a == b and a != c
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx", "c.onnx"]  # no temp files left


def test_export_with_only_the_final_output(tmp_path):
    path = networks.to_onnx("lenet", tmp_path / "lenet.onnx", layer_outputs=False)
    outputs = run_all_layers(path, [1, 1, 28, 28])
    assert list(outputs) == ["prob"] and outputs["prob"].shape == (1, 10)


def test_export_refuses_an_inconsistent_table_and_writes_nothing(tmp_path):
    table = networks.get("lenet")
    table.loc[1, "out_side"] = 11
    with pytest.raises(DnnpartError, match="'pool1'"):
        networks.to_onnx(table, tmp_path / "bad.onnx")
    with pytest.raises(DnnpartError, match="valid choices"):
        networks.to_onnx("lenet5", tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------- hand-built models
def save(tmp_path, nodes, inits, input_shape=(1, 3, 8, 8), name="m.onnx", inputs=None, ir_version=8):
    graph = helper.make_graph(
        nodes,
        "g",
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.asarray(v, dtype=np.float32 if k != "shape" else np.int64), k)
            for k, v in inits.items()
        ],
    )
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=ir_version), path)
    return path


def w(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def test_import_a_pytorch_style_chain(tmp_path):
    """What torch.onnx.export produces: /path names, dynamic batch, Constant + Reshape, MatMul + Add, mask outputs."""
    n = helper.make_node
    nodes = [
        n(
            "Conv",
            ["input.1", "conv.weight", "conv.bias"],
            ["c"],
            name="/features/conv/Conv",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[1, 1],
        ),
        n("Relu", ["c"], ["r"], name="/features/relu/Relu"),
        n("MaxPool", ["r"], ["m"], name="/features/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        n(
            "AveragePool",
            ["m"],
            ["a"],
            name="/features/avg/AveragePool",
            kernel_shape=[3, 3],
            strides=[2, 2],
            ceil_mode=1,
        ),
        n("GlobalAveragePool", ["a"], ["g"], name="/gap/GlobalAveragePool"),
        n("Identity", ["g"], ["i"], name="/Identity"),
        n("Constant", [], ["shape"], name="/Constant", value=numpy_helper.from_array(np.array([-1, 8], np.int64))),
        n("Reshape", ["i", "shape"], ["f"], name="/Reshape"),
        n("Dropout", ["f", "ratio"], ["d", "mask"], name="/classifier/drop/Dropout"),
        n("MatMul", ["d", "fc1.weight"], ["mm"], name="/classifier/fc1/MatMul"),
        n("Add", ["mm", "fc1.bias"], ["fc1"], name="/classifier/fc1/Add"),
        n("Relu", ["fc1"], ["r2"], name="/classifier/relu/Relu"),
        n("Gemm", ["r2", "fc2.weight"], ["fc2"], name=""),  # unnamed, no bias, transB=0
        n("Softmax", ["fc2"], ["out"], name="/Softmax"),
    ]
    inits = {
        "conv.weight": w(8, 3, 3, 3),
        "conv.bias": w(8),
        "ratio": np.float32(0.5),
        "fc1.weight": w(8, 16),
        "fc1.bias": w(16),
        "fc2.weight": w(16, 4),
    }
    batch = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["batch_size", 3, 32, 32])
    weights_as_inputs = [
        helper.make_tensor_value_info(k, TensorProto.FLOAT, list(np.shape(v))) for k, v in inits.items()
    ]
    path = save(tmp_path, nodes, inits, inputs=[batch, *weights_as_inputs], name="torchy.onnx", ir_version=7)

    t = networks.from_onnx(path)
    assert t.attrs["network"] == "torchy" and t.attrs["input_shape"] == [1, 3, 32, 32]
    assert t.attrs["onnx_tensors"]["/classifier/fc1/MatMul"] == "fc1"  # the bias Add's output
    assert list(t["name"]) == [
        "/features/conv/Conv",
        "/features/relu/Relu",
        "/features/pool/MaxPool",
        "/features/avg/AveragePool",
        "/gap/GlobalAveragePool",
        "/classifier/drop/Dropout",
        "/classifier/fc1/MatMul",
        "/classifier/relu/Relu",
        "Gemm_12",
        "/Softmax",
    ]
    assert list(t["type"]) == ["conv", "relu", "pool", "pool", "gap", "dropout", "fc", "relu", "fc", "softmax"]
    assert list(t["out_side"]) == [32, 32, 16, 8, 1, 1, 1, 1, 1, 1]  # AveragePool ceil_mode: 16 -> 8, not 7
    assert list(t["out_channels"]) == [8, 8, 8, 8, 8, 8, 16, 16, 4, 4]
    assert list(t["kernel"][:5]) == [3, 1, 2, 3, 8]
    assert list(t["macs"]) == [32 * 32 * 8 * 27, 0, 0, 0, 0, 0, 8 * 16, 0, 16 * 4, 0]
    assert list(t["params"]) == [8 * 27 + 8, 0, 0, 0, 0, 0, 8 * 16 + 16, 0, 16 * 4, 0]

    # and the imported table exports to a model that onnxruntime runs with the same shapes
    outputs = run_all_layers(networks.to_onnx(t, tmp_path / "again.onnx"), t.attrs["input_shape"])
    assert_shapes_match(outputs, t)
    assert networks.from_onnx(tmp_path / "again.onnx")[networks.NUMERIC_COLUMNS].equals(t[networks.NUMERIC_COLUMNS])


def test_refuses_a_dangling_branch_and_operators_that_read_two_tensors(tmp_path):
    n = helper.make_node
    nodes = [
        n("Relu", ["x"], ["a"], name="a"),
        n("Relu", ["a"], ["b"], name="b"),
        n("Softmax", ["a"], ["y"], name="late"),
    ]  # reads 'a'; 'b' is never read: two outputs
    with pytest.raises(OnnxImportError, match=r"node 'b' \(Relu\): .*its output is read by no later layer"):
        networks.from_onnx(save(tmp_path, nodes, {}))
    nodes = [n("Relu", ["x"], ["a"], name="a"), n("Mul", ["a", "a"], ["y"], name="square")]
    with pytest.raises(OnnxImportError, match=r"node 'square' \(Mul\)"):
        networks.from_onnx(save(tmp_path, nodes, {}))
    nodes = [n("Relu", ["x"], ["a"], name="a"), n("Conv", ["a", "a"], ["y"], name="odd", kernel_shape=[1, 1])]
    with pytest.raises(OnnxImportError, match=r"node 'odd' \(Conv\) reads 2 activation tensors"):
        networks.from_onnx(save(tmp_path, nodes, {}))
    nodes = [
        n("Relu", ["x"], ["a"], name="a"),
        n("Relu", ["x"], ["b"], name="b"),
        n("Concat", ["a", "b"], ["y"], name="cat", axis=2),
    ]
    with pytest.raises(OnnxImportError, match=r"node 'cat' \(Concat\): only a Concat along the channels"):
        networks.from_onnx(save(tmp_path, nodes, {}))


@pytest.mark.parametrize("op, extra, attrs", [("Sigmoid", [], {}), ("Gather", ["k"], {"axis": 1})])
def test_refuses_an_unsupported_operator_naming_node_and_operator(tmp_path, op, extra, attrs):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="r"),
        helper.make_node(op, ["r", *extra], ["y"], name="head", **attrs),
    ]
    path = save(tmp_path, nodes, {"k": np.array([0], np.int64)})
    with pytest.raises(OnnxImportError) as err:
        networks.from_onnx(path)
    message = str(err.value)
    assert f"node 'head' ({op})" in message and "supported operators: Conv, Relu" in message


def test_refuses_what_the_table_cannot_describe(tmp_path):
    n = helper.make_node
    conv = lambda **a: [n("Conv", ["x", "w"], ["y"], name="odd", **a)]  # noqa: E731
    cases = [
        (conv(kernel_shape=[3, 3], pads=[0, 0, 1, 1]), "pads .* not square/symmetric"),
        (conv(kernel_shape=[3, 3], dilations=[2, 2]), "dilations"),
        (conv(kernel_shape=[3, 3], auto_pad="SAME_UPPER"), "auto_pad"),
        (
            [n("Relu", ["x"], ["r"], name="r"), n("Add", ["r", "b"], ["y"], name="bias")],
            "Add of a constant is supported only as the bias of a MatMul",
        ),
    ]
    for i, (nodes, pattern) in enumerate(cases):
        path = save(tmp_path, nodes, {"w": w(4, 3, 3, 3), "b": w(3, 8, 8)}, name=f"c{i}.onnx")
        with pytest.raises(OnnxImportError, match=pattern):
            networks.from_onnx(path)
    path = save(tmp_path, conv(kernel_shape=[3, 3]), {"w": w(4, 3, 3, 3)}, input_shape=(1, 3, 8, 6), name="rect.onnx")
    with pytest.raises(OnnxImportError, match="square inputs"):
        networks.from_onnx(path)


def test_refuses_weights_that_do_not_fit_the_input(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[3, 3])]
    path = save(tmp_path, nodes, {"w": w(4, 5, 3, 3)})  # 5 input channels, the input has 3
    with pytest.raises(OnnxImportError, match=r"node .c. \(Conv\): its weight expects 5 input channels but receives 3"):
        networks.from_onnx(path)


def test_refuses_files_that_are_not_onnx(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    text = tmp_path / "text.onnx"
    text.write_text("this is not a model\n")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for path in (garbage, text, empty, tmp_path / "missing.onnx", tmp_path):
        with pytest.raises(OnnxImportError, match=str(path.name)):
            networks.from_onnx(path)


def test_refuses_a_model_onnx_itself_finds_malformed(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="r"),
        helper.make_node("Softmax", ["r"], ["y"], name="s", axis=7),
    ]  # rank 4: axis out of range
    with pytest.raises(OnnxImportError, match="shape inference failed"):
        networks.from_onnx(save(tmp_path, nodes, {}))


def test_ceil_mode_pooling_follows_onnxruntime_where_onnx_shape_inference_does_not(tmp_path):
    """5 -> MaxPool(k2, s2, pad 1, ceil): the last window would start in the padding, so onnxruntime (like Caffe
    and PyTorch) gives side 3 while onnx.shape_inference says 4; the table must follow what actually runs."""
    n = helper.make_node
    nodes = [
        n("MaxPool", ["x"], ["p"], name="p", kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
        n("Flatten", ["p"], ["f"], name="flat"),
        n("Gemm", ["f", "w"], ["y"], name="fc", transB=1),
    ]
    path = save(tmp_path, nodes, {"w": w(10, 2 * 3 * 3)}, input_shape=(1, 2, 5, 5))
    table = networks.from_onnx(path)
    assert list(table["out_side"]) == [3, 1] and table["in_channels"].iloc[1] == 18
    outputs = run_all_layers(networks.to_onnx(table, tmp_path / "again.onnx"), [1, 2, 5, 5])
    assert_shapes_match(outputs, table)
