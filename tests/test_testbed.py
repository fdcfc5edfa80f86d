"""Done-when of issue 13: a 3-device testbed (LeNet and AlexNet) with shaped links and CPU quotas runs a plan,
its outputs equal the unsplit model's and nothing is left afterwards; the same with the fallbacks (forced, so
it runs as root too); and a testbed stopped mid-run (SIGTERM, a killed device, SIGKILL and `--cleanup`) leaves
no namespace, cgroup or process behind."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from testbed_helpers import NOTHING, check_outputs, leftovers, processes_mentioning, write_scenario

from dnnpart import paths
from dnnpart.testbed import links
from dnnpart.testbed.run import Testbed, run_testbed

ROOT_REASON = links.can_shape()
needs_root = pytest.mark.skipif(ROOT_REASON is not None, reason=f"tc links and cgroup quotas need root: {ROOT_REASON}")
GROUPS = [
    {"name": "lenet", "count": 2, "network": "lenet", "profile": "measured", "uplink_mbps": 2.0, "cpu_quota": 0.5},
    {"name": "alex", "count": 1, "network": "alexnet", "profile": "measured", "uplink_mbps": 20.0, "cpu_quota": 0.5},
]


@needs_root
def test_three_devices_on_shaped_links_under_quotas_run_a_plan(tmp_path):
    scenario = write_scenario(tmp_path / "s.yaml", GROUPS)
    out = tmp_path / "out"
    with Testbed(scenario, out, probe_s=0.3) as tb:
        assert tb.mechanism.real and tb.mechanism.link == "tc"
        pid = tb.network.pid
        assert len(links.namespaces(pid)) == 4  # the server's and one per device
        limits = {name: g.limits() for name, g in tb.groups.items()}
        assert limits["lenet-0"] == {"quota_us": 5000, "period_us": 10000} and limits["server"]["quota_us"] == -1
        qdiscs = tb.network.qdiscs()
        assert all("tbf" in q for dev, q in qdiscs.items() if "d" in dev.removeprefix(f"tb{pid}"))
        rates = tb.links_frame.set_index("device")
        ratio = rates["achieved_mbps"] / rates["requested_mbps"]
        assert ratio.between(0.9, 1.1).all(), rates  # loose: a shared host; the benchmark measures the goal
        case1 = tb.cases()[0]
        frames = tb.run_case(case1, repeats=2)
    assert leftovers(pid, out) == NOTHING
    done = frames["completions"]
    assert sorted(done["device"].unique()) == ["alex-0", "lenet-0", "lenet-1"]
    assert (done["measured_ms"] > 0).all() and (done["predicted_ms"] > 0).all()
    assert check_outputs(out / "cases" / "case1" / "devices", tb.devices, 2) == 6
    layers = {"alex-0": 23, "lenet-0": 8, "lenet-1": 8}
    offloading = {d for d, c in zip(done["device"], done["cut"]) if c < layers[d]}
    uploads = frames["timeline"][frames["timeline"]["where"] == "upload"]
    assert sorted(uploads["device"]) == sorted(2 * list(offloading))  # one upload per offloading device and round


def test_the_fallback_runs_the_cases_on_loopback_with_a_token_bucket(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNPART_TESTBED_FALLBACK", "1")
    groups = [GROUPS[0] | {"cpu_quota": "native"}, GROUPS[1] | {"network": "lenet", "cpu_quota": "native"}]
    scenario = write_scenario(tmp_path / "s.yaml", groups)
    out = tmp_path / "out"
    result = run_testbed(scenario, out, repeats=1, methods=("case1", "case2", "case3"))
    info = json.loads((out / "testbed.json").read_text())
    assert info["mechanism"]["link"] == "token-bucket" and not info["mechanism"]["real"]
    assert info["mechanism"]["line"].startswith("fallback emulation (forced)")
    assert list(dict.fromkeys(result.completions["case"])) == ["case1", "case2", "case3"]
    done = pd.read_csv(out / "completions.csv")
    cuts = done.groupby("case")["cut"].apply(set).to_dict()
    assert cuts["case2"] == {0} and cuts["case3"] == {8}
    # case 2 uploads LeNet's raw input (3136 bytes): the bucket holds it for at least its time at 2 or 20 Mbps
    up = result.timeline[(result.timeline["case"] == "case2") & (result.timeline["where"] == "upload")]
    ms = (up["finish_ms"] - up["start_ms"]).groupby(up["device"]).min()
    assert ms["lenet-0"] >= 0.95 * (3136 - 3028) * 8 / 2e3
    for case in ("case1", "case2", "case3"):
        names = sorted(result.completions.loc[result.completions["case"] == case, "device"].unique())
        assert names == ["alex-0", "lenet-0", "lenet-1"]
    assert (out / "links.csv").exists() and (out / "subtasks.csv").exists()
    assert leftovers(os.getpid(), out)["processes"] == []


def start_cli(tmp_path, devices: int = 2):
    """`dnnpart testbed` in a subprocess, returned once case 1's server has started."""
    scenario = write_scenario(tmp_path / "s.yaml", [GROUPS[0] | {"count": devices}])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(paths.PROJ_ROOT)}
    cmd = [sys.executable, "-m", "dnnpart", "testbed", "--scenario", str(scenario), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--repeats", "200", "--probe-seconds", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = out / "cases" / "case1" / "server" / "server.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not started.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    assert started.exists(), "case 1 did not start"
    return proc, out


def wait_for_rounds(out, deadline_s=60):
    """Until case 1's devices run rounds (the server has written a timeline)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and not (out / "cases" / "case1" / "server" / "timeline.csv").exists():
        time.sleep(0.1)


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_testbed_stopped_mid_run_leaves_nothing(tmp_path, sig):
    proc, out = start_cli(tmp_path)
    assert len(links.namespaces(proc.pid)) == 3
    assert leftovers(proc.pid, out)["cgroups"] and leftovers(proc.pid, out)["processes"]
    wait_for_rounds(out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (128 + signal.SIGTERM if sig == signal.SIGTERM else 130), err
    assert leftovers(proc.pid, out) == NOTHING


@needs_root
def test_a_killed_device_ends_the_run_with_one_line_and_leaves_nothing(tmp_path):
    proc, out = start_cli(tmp_path)
    wait_for_rounds(out)
    victims = processes_mentioning(str(out / "cases" / "case1" / "devices" / "lenet-1"))
    assert len(victims) == 1
    os.kill(victims[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert (
        err.strip().splitlines()[-1].startswith("dnnpart testbed: error: case1: device lenet-1 exited with status -9")
    )
    assert leftovers(proc.pid, out) == NOTHING


@needs_root
def test_a_testbed_killed_outright_is_cleaned_by_the_next_run(tmp_path):
    proc, out = start_cli(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10  # its children die with it (PR_SET_PDEATHSIG)
    while leftovers(proc.pid, out)["processes"] and time.monotonic() < deadline:
        time.sleep(0.1)
    left = leftovers(proc.pid, out)
    assert left["processes"] == [] and left["namespaces"] and left["cgroups"]
    env = {**os.environ, "PYTHONPATH": str(paths.PROJ_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "dnnpart", "testbed", "--cleanup"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert leftovers(proc.pid, out) == NOTHING
