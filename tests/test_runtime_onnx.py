"""A device's own ONNX chain model in the runtime: it registers the file's sha256, uploads the file when the
server does not hold it, and both sides run the file's own weights; the server refuses a hash mismatch, an
oversized model and a model that is not a chain, each with one line."""

import hashlib
import threading

import numpy as np
import onnxruntime as ort
import pytest
from runtime_helpers import running_server, tiny_onnx_chain

from dnnpart import cli, networks
from dnnpart.runtime.device import DeviceClient, DeviceError
from dnnpart.runtime.layers import random_input
from dnnpart.runtime.proto import runtime_pb2 as pb
from dnnpart.runtime.split import onnx_model_name

LOCAL_MS = [0.5] * 5  # the tiny chain's five layers


def whole(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def finish(client, rnd, x, box):
    """Plan, fetch the layers and run round rnd (in a thread: the plan waits for every device)."""
    try:
        client.plan()
        client.fetch_layers()
        client.sync_clock()
        box[client.name] = client.run_round(rnd, x)
    except Exception as exc:  # noqa: BLE001 - reported by the test
        box[client.name] = exc


def run_together(clients, inputs):
    box = {}
    threads = [threading.Thread(target=finish, args=(c, 0, x, box), daemon=True) for c, x in zip(clients, inputs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads)
    return box


def test_an_onnx_model_is_uploaded_once_and_runs_with_its_own_weights(tmp_path):
    path = tiny_onnx_chain(tmp_path / "tiny.onnx", seed=11)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    out = tmp_path / "out"
    x = [random_input([1, 3, 8, 8], 20 + k) for k in range(3)]
    with running_server(out, expected=3, policy="plan") as (address, service):
        clients = [
            DeviceClient(address, "a", str(path), 100.0, local_ms=LOCAL_MS, cut=0),
            DeviceClient(address, "b", str(path), 100.0, local_ms=LOCAL_MS, cut=3),
            DeviceClient(address, "z", "lenet", 100.0, local_ms=[0.5] * 8, cut=2),  # a zoo device beside them
        ]
        try:
            replies = [c.register() for c in clients]  # a uploads, b finds the model held
            box = run_together(clients, x[:2] + [random_input([1, 1, 28, 28], 3)])
        finally:
            for c in clients:
                c.close()
        split = service.splits[(onnx_model_name(sha), sha)]
    assert [r.model_name for r in replies] == [onnx_model_name(sha), onnx_model_name(sha), "lenet"]
    assert replies[0].n_layers == 5 and replies[0].model_sha256 == split.sha256
    for name, k in (("a", 0), ("b", 1)):
        assert not isinstance(box[name], Exception), box[name]
        assert np.allclose(box[name].output, whole(path, x[k]), rtol=1e-4, atol=1e-5), name
    assert [box["a"].cut, box["b"].cut] == [0, 3] and not isinstance(box["z"], Exception)
    assert (out / "models" / f"{sha}.onnx").read_bytes() == path.read_bytes()
    log = (out / "server.log").read_text()
    assert log.count(f"model {onnx_model_name(sha)}: {path.stat().st_size} bytes, 5 layers, uploaded") == 1
    assert log.count("NOT_FOUND: ONNX model") == 1 and f"registered b: {onnx_model_name(sha)} (ONNX model {sha})" in log


def test_a_model_in_the_models_folder_is_held_without_an_upload(tmp_path):
    held = tmp_path / "held"
    held.mkdir()
    path = networks.to_onnx("lenet", held / "mine.onnx", seed=7, layer_outputs=False)
    x = random_input([1, 1, 28, 28], 8)
    with (
        running_server(tmp_path / "out", expected=1, models_dir=held) as (address, _),
        DeviceClient(address, "d", str(path), 100.0, local_ms=[0.5] * 8, cut=4) as c,
    ):
        [result] = c.run(1, input_seed=8)
    assert np.allclose(result.output, whole(path, x), rtol=1e-4, atol=1e-5)
    log = (tmp_path / "out" / "server.log").read_text()
    assert "uploaded" not in log and "refused" not in log
    assert not (tmp_path / "out" / "models").exists()


def upload(client, data, sha=None):
    chunk = pb.ModelChunk(sha256=sha or hashlib.sha256(data).hexdigest(), total_bytes=len(data), data=data)
    return client._call(client.stub.UploadModel, iter([chunk]))


def test_hash_mismatch_oversized_and_non_chain_models_are_refused_with_one_line(tmp_path):
    good = tiny_onnx_chain(tmp_path / "good.onnx")
    dag = tiny_onnx_chain(tmp_path / "dag.onnx", dag=True)
    big = networks.to_onnx("lenet", tmp_path / "big.onnx")  # 1.7 MB, over the 1 MB limit below
    out = tmp_path / "out"
    with running_server(out, expected=1, max_model_bytes=1 << 20) as (address, _):
        with DeviceClient(address, "m", str(good), 10.0, local_ms=LOCAL_MS) as c:
            data = good.read_bytes()
            with pytest.raises(DeviceError, match=r"INVALID_ARGUMENT: the model's \d+ bytes hash to \w{12}\.\.\., not"):
                upload(c, data, sha="0" * 64)
        refusals = []
        for path, name in ((big, "big"), (dag, "dag")):
            with DeviceClient(address, name, str(path), 10.0, local_ms=LOCAL_MS) as c, pytest.raises(DeviceError) as e:
                c.register()
            refusals.append(str(e.value))
        with DeviceClient(address, "m2", "lenet", 10.0, local_ms=LOCAL_MS) as c:
            request = pb.RegisterRequest(device="m2", onnx_sha256="abc", uplink_mbps=1.0)
            with pytest.raises(DeviceError, match="INVALID_ARGUMENT: onnx_sha256 must be 64 lower-case hex digits"):
                c._call(c.stub.Register, request)
    oversized, not_chain = refusals
    assert f"RESOURCE_EXHAUSTED: model of {big.stat().st_size} bytes is over the server's limit of 1048576" in oversized
    assert "INVALID_ARGUMENT: " in not_chain and "not a chain (branches join at join)" in not_chain
    assert all("\n" not in r for r in refusals)
    assert str(out) not in not_chain  # the reply names the model, not the server's folders
    assert list((out / "models").glob("*")) == []  # a refused model is not kept
    log = (out / "server.log").read_text()
    assert log.count("refused UploadModel") == 3


@pytest.mark.parametrize(
    ("network", "extra", "message"),
    [
        ("missing.onnx", [], "cannot read ONNX model missing.onnx: No such file or directory"),
        ("tiny.onnx", ["--seed", "2"], "--seed draws a zoo network's weights; an ONNX model has its own"),
    ],
)
def test_the_device_cli_refuses_bad_onnx_options_with_one_line(tmp_path, monkeypatch, capsys, network, extra, message):
    monkeypatch.chdir(tmp_path)
    tiny_onnx_chain(tmp_path / "tiny.onnx")
    argv = ["device", "--server", "127.0.0.1:1", "--name", "n", "--network", network, "--uplink-mbps", "1", *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
