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

import pytest
from testbed_helpers import NOTHING, check_outputs, leftovers, processes_mentioning, write_scenario

from dnnpart import paths
from dnnpart.testbed import links, report, run, study
from dnnpart.testbed.run import Testbed

ROOT_REASON = links.can_shape()
needs_root = pytest.mark.skipif(ROOT_REASON is not None, reason=f"tc links and cgroup quotas need root: {ROOT_REASON}")
GROUPS = [
    {"name": "lenet", "count": 2, "network": "lenet", "profile": "measured", "uplink_mbps": 2.0, "cpu_quota": 0.5},
    {"name": "alex", "count": 1, "network": "alexnet", "profile": "measured", "uplink_mbps": 20.0, "cpu_quota": 0.5},
]


def run_plan(tmp_path):
    """The done-when's testbed: 2 LeNet and 1 AlexNet devices run case 1 for 2 rounds; returns what it saw."""
    scenario = write_scenario(tmp_path / "s.yaml", GROUPS)
    out = tmp_path / "out"
    # probes of 1 s (the default): a 50 ms stall of this shared host costs a 0.3 s probe 15 % of its rate
    with Testbed(scenario, out, probe_s=1.0) as tb:
        pid = os.getpid() if tb.network is None else tb.network.pid
        seen = {
            "mechanism": tb.mechanism,
            "namespaces": links.namespaces(pid),
            "limits": {name: g.limits() for name, g in tb.groups.items()},
            "qdiscs": tb.network.qdiscs() if tb.network else {},
            "links": tb.links_frame.set_index("device"),
            "speed": tb.speed_frame,
        }
        before = quota_periods(tb)
        frames = tb.run_case(tb.cases()[0], repeats=2)
        seen["periods_in_case"] = {d: quota_periods(tb)[d] - n for d, n in before.items()}
    assert leftovers(pid, out) == NOTHING
    done = frames["completions"]
    assert sorted(done["device"].unique()) == ["alex-0", "lenet-0", "lenet-1"]
    assert (done["measured_ms"] > 0).all() and (done["predicted_ms"] > 0).all()
    assert check_outputs(out / "cases" / "case1" / "r0" / "devices", tb.devices, 2) == 6
    layers = {"alex-0": 23, "lenet-0": 8, "lenet-1": 8}
    offloading = {d for d, c in zip(done["device"], done["cut"]) if c < layers[d]}
    uploads = frames["timeline"][frames["timeline"]["where"] == "upload"]
    assert sorted(uploads["device"]) == sorted(2 * list(offloading))  # one upload per offloading device and round
    check_scaled_plan(seen["speed"], frames["plan"], dict(zip(done["device"], done["cut"])), out)
    return seen


def quota_periods(tb):
    """Per device: the quota periods its cgroup has run (cpu.stat nr_periods); {} without quotas."""
    out = {}
    for d in tb.devices:
        group = tb.groups.get(d.name)
        if group is not None and group.quota is not None:
            stat = dict(line.split() for line in (group.path / "cpu.stat").read_text().splitlines())
            out[d.name] = int(stat["nr_periods"])
    return out


def check_scaled_plan(speed, plan, cuts, out):
    """The speed check timed every device (its calibration start's rounds, all local) and the server (one row per
    network), and the plan's local and server times are the profiles' predictions times its factors."""
    import pandas as pd

    from dnnpart.delay import load_delay_model
    from dnnpart.networks import get

    assert list(speed["who"]) == ["lenet-0", "lenet-1", "alex-0", "server", "server"]
    assert (speed["measured_ms"] > 0).all() and list(speed["runs"]) == [3, 3, 3, 15, 15]
    calibration = pd.read_csv(out / "cases" / run.SPEED_CASE / "r0" / "server" / "completions.csv")
    assert sorted(calibration.groupby("device")["cut"].unique().map(list).items()) == [
        ("alex-0", [23]),
        ("lenet-0", [8]),
        ("lenet-1", [8]),
    ]
    ratio = calibration.set_index("device")["measured_ms"] / calibration.set_index("device")["predicted_ms"]
    scale = speed.set_index("who")["scale"]
    assert scale["lenet-0"] == scale["lenet-1"] == pytest.approx(ratio[["lenet-0", "lenet-1"]].median())  # one board
    assert scale["alex-0"] == pytest.approx(ratio["alex-0"].median())
    server = speed[speed["who"] == "server"]
    assert list(server["network"]) == ["alexnet", "lenet"]
    assert server["scale"].nunique() == 1
    assert server["scale"].iloc[0] == pytest.approx(server["measured_ms"].sum() / server["predicted_ms"].sum())
    scale = dict(zip(speed["who"], speed["scale"]))
    model = load_delay_model("measured")
    planned = plan.assign(ms=plan["finish_ms"] - plan["start_ms"])
    for device, network in (("alex-0", "alexnet"), ("lenet-0", "lenet"), ("lenet-1", "lenet")):
        cut, rows = cuts[device], planned[planned["device"] == device]
        local = model.predict(get(network), "device").to_numpy()[:cut].sum() * scale[device]
        remote = model.predict(get(network), "server").to_numpy()[cut:].sum() * scale["server"]
        assert rows.loc[rows["where"] == "local", "ms"].sum() == pytest.approx(local, rel=1e-5)  # scales pass as %.6g
        assert rows.loc[rows["where"] == "server", "ms"].sum() == pytest.approx(remote, rel=1e-5)


@needs_root
def test_three_devices_on_shaped_links_under_quotas_run_a_plan(tmp_path):
    seen = run_plan(tmp_path)
    assert seen["mechanism"].real and seen["mechanism"].link == "tc"
    assert len(seen["namespaces"]) == 4  # the server's and one per device
    limits = seen["limits"]
    assert limits["lenet-0"] == {"quota_us": 5000, "period_us": 10000} and limits["server"]["quota_us"] == -1
    pid = seen["namespaces"][0].split("-")[1]
    device_ends = [q for dev, q in seen["qdiscs"].items() if dev.startswith(f"tb{pid}d")]
    assert len(device_ends) == 3 and all(q.startswith("qdisc tbf 5: root") for q in device_ends)
    ratio = seen["links"]["achieved_mbps"] / seen["links"]["requested_mbps"]
    assert ratio.between(0.9, 1.1).all(), seen["links"]  # loose: a shared host; the benchmark measures the goal
    # the devices joined their quotas for the rounds (after building their layers natively)
    assert sorted(seen["periods_in_case"]) == ["alex-0", "lenet-0", "lenet-1"]
    assert all(n > 0 for n in seen["periods_in_case"].values()), seen["periods_in_case"]


def test_the_same_testbed_runs_with_the_fallbacks(tmp_path, monkeypatch):
    """Without root (forced here, so CI as root runs it too): loopback, a token bucket, no quota."""
    monkeypatch.setenv("DNNPART_TESTBED_FALLBACK", "1")
    seen = run_plan(tmp_path)
    m = seen["mechanism"]
    assert (m.link, m.cpu, m.reason) == ("token-bucket", "none", "forced")
    assert seen["namespaces"] == [] and seen["limits"] == {} and seen["qdiscs"] == {}
    assert (seen["links"]["link"] == "token-bucket").all()


def test_the_study_runs_the_cases_and_reports_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNPART_TESTBED_FALLBACK", "1")
    points, devices, infos = study.sweep(
        tmp_path, (2.5,), (2,), network="lenet", profile="measured", quota="native", repeats=1, fig1_devices=2
    )
    assert list(points["figure"].unique()) == ["fig1", "fig5"] and len(infos) == 1  # one run serves both
    assert sorted(points["method"].unique()) == ["case1", "case2", "case3"]
    cuts = points.drop_duplicates("method").set_index("method")["cuts"]
    assert cuts["case2"] == "0 0" and cuts["case3"] == "8 8"
    assert (points["measured_ms"] > 0).all() and (points["predicted_ms"] > 0).all()
    assert len(devices) == 3 * 2 and set(study.goals(points, devices)["goal"]) >= {
        "case1 prediction error, worst point"
    }
    info = json.loads((tmp_path / "n2-b2.5" / "testbed.json").read_text())
    assert info["mechanism"]["line"].startswith("fallback emulation (forced)")
    result = run.load_result(tmp_path / "n2-b2.5")
    html = report.report_html(result)
    assert "fallback emulation (forced)" in html and html.count("<svg") == 1 + 3  # completion chart, 3 Gantts
    # case 2 uploads LeNet's raw input (3136 bytes): the bucket holds it for its time at 2.5 Mbps, less the burst
    up = result.timeline[(result.timeline["case"] == "case2") & (result.timeline["where"] == "upload")]
    assert (up["finish_ms"] - up["start_ms"]).min() >= 0.95 * (3136 - 3028) * 8 / 2.5e3


def _interruptible():
    """Ctrl-C as a terminal delivers it. A child inherits an ignored or blocked SIGINT, and in a full run an
    earlier test leaves the pytest process so (the SIGINT test then hung with no output), which would make
    this test check the test process rather than the testbed."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(tmp_path, devices: int = 2):
    """`dnnpart testbed` in a subprocess, returned once case 1's server has started."""
    scenario = write_scenario(tmp_path / "s.yaml", [GROUPS[0] | {"count": devices}])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(paths.PROJ_ROOT), "PYTHONFAULTHANDLER": "1"}
    cmd = [sys.executable, "-m", "dnnpart", "testbed", "--scenario", str(scenario), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--repeats", "200", "--probe-seconds", "0.2"],
        env=env,
        preexec_fn=_interruptible,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = out / "cases" / "case1" / "r0" / "server" / "server.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not started.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    assert started.exists(), "case 1 did not start"
    return proc, out


def wait_for_rounds(out, deadline_s=60):
    """Until case 1's devices run rounds (the server has written a timeline)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and not (out / "cases" / "case1" / "r0" / "server" / "timeline.csv").exists():
        time.sleep(0.1)


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_testbed_stopped_mid_run_leaves_nothing(tmp_path, sig):
    proc, out = start_cli(tmp_path)
    assert len(links.namespaces(proc.pid)) == 3
    assert leftovers(proc.pid, out)["cgroups"] and leftovers(proc.pid, out)["processes"]
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # say where it hung, then clean up so nothing is left for other tests
        with open(f"/proc/{proc.pid}/status") as fh:
            masks = " ".join(line.strip() for line in fh if line.startswith(("SigPnd", "SigBlk", "SigIgn", "SigCgt")))
        proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack to stderr
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=30)
        err = f"{masks}\n{err}"
        subprocess.run([sys.executable, "-m", "dnnpart", "testbed", "--cleanup"], capture_output=True, timeout=60)
        pytest.fail(f"the testbed did not stop within 60 s of {sig.name}; its stderr ends: {err[-6000:]}")
    assert proc.returncode == (128 + signal.SIGTERM if sig == signal.SIGTERM else 130), err
    assert leftovers(proc.pid, out) == NOTHING


@needs_root
def test_a_killed_device_ends_the_run_with_one_line_and_leaves_nothing(tmp_path):
    proc, out = start_cli(tmp_path)
    try:
        wait_for_rounds(out)
        # a start's device lives for about a second (one round): kill the next one that runs, whichever case it
        # is (and the one after, should it have ended by itself between the look and the kill)
        case, err = None, None
        for _ in range(3):
            victims, deadline = [], time.monotonic() + 60
            while not victims and time.monotonic() < deadline:
                # each command line read once: a device that ends between two reads has an empty one
                lines = ((p, cmdline(p)) for p in processes_mentioning(str(out / "cases")))
                victims = [(p, line) for p, line in lines if b"/devices/lenet-1" in line and b"/cases/" in line]
                time.sleep(0.02)
            assert victims, "no device lenet-1 ran within 60 s"
            pid, line = victims[0]
            case = line.split(b"/devices/lenet-1")[0].rsplit(b"/cases/", 1)[1].split(b"/")[0].decode()
            try:
                os.kill(pid, signal.SIGKILL)
                _, err = proc.communicate(timeout=20)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        assert proc.poll() is not None, "no device of the run could be killed in three attempts"
    finally:
        if proc.poll() is None:  # a failed check: stop the run, and leave nothing for the other tests
            proc.kill()
            proc.communicate(timeout=30)
            subprocess.run([sys.executable, "-m", "dnnpart", "testbed", "--cleanup"], capture_output=True, timeout=60)
    assert proc.returncode == 2
    assert (
        err.strip().splitlines()[-1].startswith(f"dnnpart testbed: error: {case}: device lenet-1 exited with status -9")
    ), err
    assert leftovers(proc.pid, out) == NOTHING


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:  # it ended meanwhile
        return b""


@needs_root
def test_a_testbed_killed_outright_is_cleaned_by_the_next_run(tmp_path):
    proc, out = start_cli(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10  # its children die with it (PR_SET_PDEATHSIG)
    while leftovers(proc.pid, out)["processes"] and time.monotonic() < deadline:
        time.sleep(0.1)
    left = leftovers(proc.pid, out)
    assert left["processes"] == [] and left["namespaces"] and left["cgroups"] and left["layer caches"]
    env = {**os.environ, "PYTHONPATH": str(paths.PROJ_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "dnnpart", "testbed", "--cleanup"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert leftovers(proc.pid, out) == NOTHING
