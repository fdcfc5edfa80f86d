"""Split execution: for every cut, the device's layers then the server's layers, with the cut tensor sent as raw
bytes in between, give the unsplit model's output (and every intermediate layer output)."""

import numpy as np
import onnxruntime as ort
import pytest
from runtime_helpers import tiny_onnx_chain

from dnnpart import networks
from dnnpart.errors import DnnpartError, OnnxImportError
from dnnpart.runtime.layers import LayerRunner, random_input, session_options
from dnnpart.runtime.split import onnx_model_name, split_network, split_onnx

RTOL, ATOL = 1e-4, 1e-5


def unsplit_outputs(name, path, x):
    """Every layer's output of the whole exported model (one onnxruntime session)."""
    networks.to_onnx(name, path, seed=0, layer_outputs=True)
    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"data": x})))


def run_split(split, runner, cut, x):
    """Layers 1..cut (the device), the cut tensor crossing as raw bytes, layers cut+1..M (the server)."""
    y = runner.run_range(x, 1, cut)[0]
    assert y.shape == split.shapes[cut] and y.dtype == np.float32
    wire = y.tobytes()
    assert len(wire) == split.input_bytes(cut)
    at_cut = np.frombuffer(wire, dtype=np.float32).reshape(split.shapes[cut])
    return at_cut, runner.run_range(at_cut, cut + 1, split.n_layers)[0]


@pytest.mark.parametrize("name", ["lenet", "alexnet"])
def test_every_cut_gives_the_unsplit_output(tmp_path, name):
    split = split_network(name, seed=0)
    table = networks.get(name)
    assert split.layer_names == tuple(table["name"]) and split.n_layers == len(table)
    assert [split.input_bytes(c) for c in range(1, split.n_layers + 1)] == table["out_bytes"].tolist()
    x = random_input(split.shapes[0], seed=1)
    whole = unsplit_outputs(name, tmp_path / f"{name}.onnx", x)
    final = whole[split.layer_names[-1]]
    pre_softmax = whole[split.layer_names[-2]]
    assert np.ptp(pre_softmax) > 0  # a constant logit vector would make the comparison vacuous
    runner = LayerRunner(split.models)
    for cut in range(split.n_layers + 1):
        at_cut, out = run_split(split, runner, cut, x)
        if cut:
            np.testing.assert_allclose(at_cut, whole[split.layer_names[cut - 1]], rtol=RTOL, atol=ATOL)
        assert np.allclose(out, final, rtol=RTOL, atol=ATOL), (name, cut)
    # and every layer's output along the chain, not only the last one
    y = x
    for j, layer in enumerate(split.layer_names, start=1):
        y = runner.run(j, y)
        assert np.allclose(y, whole[layer], rtol=RTOL, atol=ATOL), (name, layer)


def test_vgg16_at_a_few_cuts(tmp_path):
    """VGG16 is 530 MB of weights: the whole model once, the split at four cuts (input, inside the convolutions,
    just before the first fc, all local); the cuts in between run the same per-layer models."""
    split = split_network("vgg16", seed=0)
    x = random_input(split.shapes[0], seed=2)
    whole = unsplit_outputs("vgg16", tmp_path / "vgg16.onnx", x)
    runner = LayerRunner(split.models)
    first_fc = split.layer_names.index("fc6")
    checked = {0, 7, first_fc, split.n_layers}
    y = x
    for cut in range(split.n_layers + 1):
        if cut:
            y = runner.run(cut, y)
        if cut in checked:
            np.testing.assert_allclose(y, whole[split.layer_names[cut - 1]] if cut else x, rtol=RTOL, atol=ATOL)
    assert np.allclose(y, whole["prob"], rtol=RTOL, atol=ATOL)


def test_same_seed_same_weights_other_seed_differs():
    a, b, c = split_network("lenet", 0), split_network("lenet", 0), split_network("lenet", 1)
    assert a.sha256 == b.sha256 and a.models == b.models
    assert c.sha256 != a.sha256


def test_bad_cut_is_refused():
    split = split_network("lenet")
    with pytest.raises(DnnpartError, match=r"cut must be an integer in 0\.\.8"):
        split.check_cut(9)
    assert split.check_cut(8) == 8


def whole_file_output(path, x):
    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    return session.run([session.get_outputs()[-1].name], {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(("name", "layer_outputs"), [("lenet", False), ("alexnet", True)])
def test_an_exported_zoo_file_splits_with_its_own_weights_at_every_cut(tmp_path, name, layer_outputs):
    """The file's weights (seed 3), not re-initialised ones: the split equals the whole file at every cut and
    the zoo split drawn with seed 3, and differs from the default seed's."""
    path = networks.to_onnx(name, tmp_path / f"{name}.onnx", seed=3, layer_outputs=layer_outputs)
    split = split_onnx(path)
    zoo = split_network(name, seed=3)
    assert split.network == onnx_model_name(split.onnx_sha256) and split.version == split.onnx_sha256
    assert split.layer_names == zoo.layer_names and split.shapes == zoo.shapes
    x = random_input(split.shapes[0], seed=4)
    final = whole_file_output(path, x)
    assert np.ptp(final) > 0
    runner = LayerRunner(split.models)
    for cut in range(split.n_layers + 1):
        _, out = run_split(split, runner, cut, x)
        assert np.allclose(out, final, rtol=RTOL, atol=ATOL), (name, cut)
    zoo_out = LayerRunner(zoo.models).run_range(x, 1, zoo.n_layers)[0]
    assert np.allclose(zoo_out, final, rtol=RTOL, atol=ATOL)
    other = LayerRunner(split_network(name, seed=0).models).run_range(x, 1, zoo.n_layers)[0]
    assert not np.allclose(other, final, rtol=RTOL, atol=ATOL)


def test_a_hand_built_chain_splits_at_every_cut(tmp_path):
    path = tiny_onnx_chain(tmp_path / "tiny.onnx", seed=5)
    split = split_onnx(path)
    assert split.layer_names == ("conv", "act", "pool", "fc", "prob")
    assert split.shapes == ((1, 3, 8, 8), (1, 4, 8, 8), (1, 4, 8, 8), (1, 4, 4, 4), (1, 10), (1, 10))
    assert split.table.attrs["network"] == split.network
    x = random_input(split.shapes[0], seed=6)
    final = whole_file_output(path, x)
    assert np.ptp(final) > 0
    runner = LayerRunner(split.models)
    for cut in range(split.n_layers + 1):
        at_cut, out = run_split(split, runner, cut, x)
        assert np.allclose(out, final, rtol=RTOL, atol=ATOL), cut
    # another seed, another file: other weights, other digests
    again = split_onnx(tiny_onnx_chain(tmp_path / "tiny2.onnx", seed=5))
    other = split_onnx(tiny_onnx_chain(tmp_path / "tiny3.onnx", seed=6))
    assert again.sha256 == split.sha256 and other.sha256 != split.sha256 and other.onnx_sha256 != split.onnx_sha256


def test_a_dag_or_an_unsupported_model_is_refused_with_one_line(tmp_path):
    with pytest.raises(
        OnnxImportError, match=r"^dag\.onnx: not a chain \(branches join at join\); the runtime runs chain"
    ):
        split_onnx(tiny_onnx_chain(tmp_path / "dag.onnx", dag=True))
    with pytest.raises(OnnxImportError, match=r"node 'act' \(Sigmoid\): operator Sigmoid cannot be described"):
        split_onnx(tiny_onnx_chain(tmp_path / "sig.onnx", op="Sigmoid"))
