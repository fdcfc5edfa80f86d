"""The edge server in-process on 127.0.0.1 (a free port): the MEC loop, the policies, and every refusal."""

import os
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
from runtime_helpers import running_server

from dnnpart.errors import RuntimeConfigError
from dnnpart.runtime import protocol
from dnnpart.runtime.device import DeviceClient, DeviceError
from dnnpart.runtime.layers import LayerRunner, random_input
from dnnpart.runtime.proto import runtime_pb2 as pb
from dnnpart.runtime.server import ServeConfig
from dnnpart.runtime.split import split_network
from dnnpart.runtime.timeline import check_timeline, server_order

LENET_LOCAL = [0.5] * 8  # local times given by the device (ms): no profile needed


def unsplit(network, x):
    y = x
    runner = LayerRunner(split_network(network).models)
    for j in range(1, len(runner.sessions) + 1):
        y = runner.run(j, y)
    return y


def run_devices(address, specs, repeats=1, token=None):
    """Run DeviceClients in threads (bounded joins); returns {name: [RoundResult]} and {name: exception}."""
    results, errors = {}, {}

    def go(name, network, cut):
        try:
            with DeviceClient(
                address,
                name,
                network,
                100.0,
                local_ms=LENET_LOCAL if network == "lenet" else None,
                profile="paper",
                cut=cut,
                token=token,
                timeout_s=120,
            ) as client:
                results[name] = client.run(repeats, input_seed=7)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors[name] = exc

    threads = [threading.Thread(target=go, args=spec, daemon=True) for spec in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads)
    return results, errors


def test_plan_policy_runs_the_plans_order_and_outputs_match(tmp_path):
    specs = [("a", "lenet", 0), ("b", "lenet", 2), ("c", "lenet", 4)]
    with running_server(tmp_path / "out", expected=3, policy="plan") as (address, service):
        results, errors = run_devices(address, specs, repeats=2)
        plan = service.plan
    assert errors == {}
    x = [random_input([1, 1, 28, 28], 7 + k) for k in range(2)]
    for name, _, cut in specs:
        assert [r.cut for r in results[name]] == [cut, cut]
        for k, r in enumerate(results[name]):
            assert np.allclose(r.output, unsplit("lenet", x[k]), rtol=1e-4, atol=1e-5)
    timeline = pd.read_csv(tmp_path / "out" / "timeline.csv")
    for k in range(2):
        rows = timeline[timeline["round"] == k]
        assert server_order(rows) == plan["order"]
        check_timeline(rows, {name: (cut, 8) for name, _, cut in specs}, clock_tol_ms=5.0)
    done = pd.read_csv(tmp_path / "out" / "completions.csv")
    assert sorted(done["device"]) == ["a", "a", "b", "b", "c", "c"] and (done["measured_ms"] > 0).all()
    assert set(pd.read_csv(tmp_path / "out" / "plan.csv")["where"]) == {"local", "upload", "server", "download"}


def test_the_log_is_written_once_a_rounds_last_device_has_reported(tmp_path):
    # writing it at every report took the server's core from the layers of the jobs still running
    specs = [("a", "lenet", 0), ("b", "lenet", 2), ("c", "lenet", 8)]
    with running_server(tmp_path / "out", expected=3, policy="plan") as (address, service):
        seen, write = [], service.write_log

        def spy():
            seen.append({rnd: sorted(names) for rnd, names in service.reported.items()})
            write()

        service.write_log = spy
        _, errors = run_devices(address, specs, repeats=2)
        during = list(seen)
    assert errors == {}
    assert during == [{0: ["a", "b", "c"]}, {0: ["a", "b", "c"], 1: ["a", "b", "c"]}]
    assert sorted(set(pd.read_csv(tmp_path / "out" / "timeline.csv")["round"])) == [0, 1]


@pytest.mark.parametrize("policy", ["fifo", "srpt"])
def test_fifo_and_srpt_follow_their_rule(tmp_path, policy):
    specs = [("a", "lenet", 0), ("b", "alexnet", 16), ("c", "lenet", 3)]
    with running_server(tmp_path / "out", expected=3, policy=policy) as (address, service):
        results, errors = run_devices(address, specs)
        plan = service.plan
    assert errors == {}
    rows = pd.read_csv(tmp_path / "out" / "timeline.csv")
    cuts = {"a": (0, 8), "b": (16, 23), "c": (3, 8)}
    check_timeline(rows, cuts, clock_tol_ms=5.0)
    arrived = {d: rows[(rows["device"] == d) & (rows["where"] == "upload")]["finish_ms"].iloc[0] for d in cuts}
    server = rows[rows["where"] == "server"].sort_values("start_ms")
    predicted = {d: plan["instance"].devices[plan["devices"].index(d)].server_ms for d in cuts}
    done = {d: set() for d in cuts}
    for dev, layer, start in zip(server["device"], server["layer"], server["start_ms"]):
        # devices whose upload the server had received and that still had layers left
        waiting = [d for d in cuts if arrived[d] <= start + 1e-6 and len(done[d]) < cuts[d][1] - cuts[d][0]]
        if policy == "fifo":
            assert min(waiting, key=lambda d: arrived[d]) == dev
        else:
            left = {
                d: sum(predicted[d][j - 1] for j in range(cuts[d][0] + 1, cuts[d][1] + 1) if j not in done[d])
                for d in waiting
            }
            assert left[dev] == pytest.approx(min(left.values()))
        done[dev].add(layer)
    assert np.allclose(
        results["b"][0].output, unsplit("alexnet", random_input([1, 3, 227, 227], 7)), rtol=1e-4, atol=1e-5
    )


def test_refusals_leave_the_server_serving(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    token = protocol.read_token(token_file)
    with running_server(tmp_path / "out", expected=1, token=token, max_message_bytes=16384) as (address, _):
        for bad in (None, "wrong"):
            with (
                DeviceClient(address, "x", "lenet", 10.0, local_ms=LENET_LOCAL, token=bad) as c,
                pytest.raises(DeviceError, match="UNAUTHENTICATED: missing or wrong token"),
            ):
                c.register()
        with DeviceClient(address, "d", "lenet", 10.0, local_ms=LENET_LOCAL, cut=2, token=token) as c:
            request = pb.ModelInferRequest(model_name="lenet")
            request.parameters["device"].CopyFrom(protocol.param("d"))
            with pytest.raises(DeviceError, match="FAILED_PRECONDITION: device 'd' has not registered"):
                c._call(c.stub.ModelInfer, request)
            c.sync_clock()
            c.register()
            with pytest.raises(DeviceError, match="ALREADY_EXISTS: device 'd' is already registered"):
                c.register()
            c.plan()
            c.fetch_layers()
            start = c._call(c.stub.Start, pb.StartRequest(device="d", round=0))
            assert start.devices == ["d"]

            def infer(array):
                tensor, raw = protocol.tensor_message(array, "pool1")
                req = pb.ModelInferRequest(model_name="lenet", inputs=[tensor], raw_input_contents=[raw])
                for key, value in (("device", "d"), ("round", 0), ("first_layer", 3)):
                    req.parameters[key].CopyFrom(protocol.param(value))
                return c._call(c.stub.ModelInfer, req)

            with pytest.raises(
                DeviceError, match="RESOURCE_EXHAUSTED: tensor of 20000 bytes is over the server's limit of 16384 bytes"
            ):
                infer(np.zeros((1, 20, 25, 10), np.float32))
            with pytest.raises(
                DeviceError,
                match=r"INVALID_ARGUMENT: tensor FP32 \[1, 20, 12, 11\] does not match "
                r"cut 2 of lenet: expected FP32 \[1, 20, 12, 12\]",
            ):
                infer(np.zeros((1, 20, 12, 11), np.float32))
            x = random_input([1, 1, 28, 28], 3)
            head = c.runner.run_range(x, 1, 2)[0]
            reply = infer(head)
            out = protocol.tensor_from(reply.outputs[0].datatype, reply.outputs[0].shape, reply.raw_output_contents[0])
            assert np.allclose(out, unsplit("lenet", x), rtol=1e-4, atol=1e-5)
            with pytest.raises(DeviceError, match="ALREADY_EXISTS: d already ran round 0"):
                infer(head)
    log = (tmp_path / "out" / "server.log").read_text()
    for reason in (
        "UNAUTHENTICATED: missing or wrong token",
        "has not registered",
        "already registered",
        "RESOURCE_EXHAUSTED",
        "does not match cut 2",
        "already ran round 0",
    ):
        assert reason in log
    assert log.count("refused") == 7


def test_a_client_that_disconnects_mid_upload_does_not_stop_the_others(tmp_path):
    with running_server(tmp_path / "out", expected=2, policy="fifo", stall_s=5.0) as (address, _):
        # a device process that registers, starts the round and dies while its 3 MB upload is in flight
        code = f"""
import os, numpy as np
from dnnpart.runtime.device import DeviceClient
from dnnpart.runtime.proto import runtime_pb2 as pb
from dnnpart.runtime import protocol
c = DeviceClient("{address}", "quitter", "alexnet", 10.0, profile="paper", cut=0)
c.sync_clock(); c.register(); c.plan(); c.fetch_layers()
c._call(c.stub.Start, pb.StartRequest(device="quitter", round=0))
tensor, raw = protocol.tensor_message(np.zeros((1, 3, 227, 227), np.float32), "data")
req = pb.ModelInferRequest(model_name="alexnet", inputs=[tensor], raw_input_contents=[raw * 5])
future = c.stub.ModelInfer.future(req, timeout=60)
os._exit(0)
"""
        quitter = subprocess.Popen([sys.executable, "-c", code], env={**os.environ})
        try:
            results, errors = run_devices(address, [("stays", "lenet", 0)])
            assert quitter.wait(timeout=120) == 0
        finally:
            if quitter.poll() is None:
                quitter.kill()
                quitter.wait(timeout=10)
        assert errors == {} and results["stays"][0].cut == 0
        with DeviceClient(address, "late", "lenet", 10.0, local_ms=LENET_LOCAL) as c:
            assert c.sync_clock() >= 0  # still serving


def test_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with running_server(tmp_path / "out", expected=1, tls_cert=str(cert), tls_key=str(key)) as (address, _):
        with (
            DeviceClient(address, "plain", "lenet", 10.0, local_ms=LENET_LOCAL, timeout_s=5) as c,
            pytest.raises(DeviceError, match="UNAVAILABLE"),
        ):
            c.register()
        with DeviceClient(address, "secure", "lenet", 10.0, local_ms=LENET_LOCAL, cut=1, tls_ca=str(cert)) as c:
            [result] = c.run(1, input_seed=5)
    assert np.allclose(result.output, unsplit("lenet", random_input([1, 1, 28, 28], 5)), rtol=1e-4, atol=1e-5)


def test_bad_settings_are_refused_with_one_line():
    with pytest.raises(RuntimeConfigError, match="unknown policy 'lifo'; valid policies: plan, fifo, srpt"):
        ServeConfig(out="x", policy="lifo")
    with pytest.raises(RuntimeConfigError, match="TLS needs both --tls-cert and --tls-key"):
        ServeConfig(out="x", tls_cert="c.pem")
    with pytest.raises(RuntimeConfigError, match="must be HOST:PORT"):
        protocol.parse_address("localhost")
    with pytest.raises(RuntimeConfigError, match="device name 'a b'"):
        DeviceClient("127.0.0.1:1", "a b", "lenet", 1.0)
    with pytest.raises(RuntimeConfigError, match="--server-scale must be a positive number, got 0"):
        ServeConfig(out="x", server_scale=0)
    with pytest.raises(RuntimeConfigError, match="--local-scale must be a positive number, got nan"):
        DeviceClient("127.0.0.1:1", "d", "lenet", 1.0, local_scale=float("nan"))
    with pytest.raises(RuntimeConfigError, match="--local-scale scales the profile's predicted local times"):
        DeviceClient("127.0.0.1:1", "d", "lenet", 1.0, local_ms=[1.0] * 8, local_scale=2.0)
