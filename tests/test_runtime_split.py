"""Split execution: for every cut, the device's layers then the server's layers, with the cut tensor sent as raw
bytes in between, give the unsplit model's output (and every intermediate layer output)."""

import numpy as np
import onnxruntime as ort
import pytest

from dnnpart import networks
from dnnpart.errors import DnnpartError
from dnnpart.runtime.layers import LayerRunner, random_input, session_options
from dnnpart.runtime.split import split_network

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
