"""The testbed's parts without processes or privileges: the token bucket, the cgroup files written (v1 and v2,
on a fake hierarchy), tbf's parameters, the scenario's new fields, the choice of mechanism and the slowdown
calibration (on a fake board)."""

import os

import pytest
from testbed_helpers import write_scenario

from dnnpart.cli import main
from dnnpart.errors import ScenarioError, TestbedError
from dnnpart.planning.scenario import load_scenario
from dnnpart.testbed import cpu_quota, links, run, slowdown
from dnnpart.testbed.token_bucket import TokenBucket


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_token_bucket_holds_an_upload_for_its_time_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(8.0, burst_bytes=1000, clock=clock, sleep=clock.sleep)  # 1 MB/s
    assert bucket.wait(1000) == 0.0  # the burst passes at once
    assert bucket.wait(500_000) == pytest.approx(0.5)  # then the rate: 500 KB at 1 MB/s
    clock.now += 10.0  # idle: the bucket refills only up to its burst
    assert bucket.wait(101_000) == pytest.approx(0.1)
    with pytest.raises(TestbedError, match="positive number of Mbps"):
        TokenBucket(0.0)


def fake_hierarchy(tmp_path, version):
    root = tmp_path / f"v{version}"
    root.mkdir()
    (tmp_path / "mounts").write_text(
        f"cgroup2 {root} cgroup2 rw 0 0\n" if version == 2 else f"cgroup {root} cgroup rw,relatime,cpu 0 0\n"
    )
    if version == 2:
        (root / "cgroup.controllers").write_text("cpuset cpu io memory\n")
    return cpu_quota.detect(tmp_path / "mounts")


@pytest.mark.parametrize("version", [1, 2])
def test_a_quota_group_writes_a_10_ms_period_and_the_quota(tmp_path, version):
    h = fake_hierarchy(tmp_path, version)
    assert h == cpu_quota.Hierarchy(version, tmp_path / f"v{version}")
    group = cpu_quota.CpuQuota("d0", 0.25, h)
    assert group.name.startswith(f"dnnpart-tb-{os.getpid()}-")
    group.create()  # a real cgroup folder comes with its files; the fake one gets them written
    if version == 2:
        assert (group.path / "cpu.max").read_text() == "2500 10000\n"
    else:
        assert (group.path / "cpu.cfs_period_us").read_text() == "10000\n"
        assert (group.path / "cpu.cfs_quota_us").read_text() == "2500\n"
    assert group.limits() == {"quota_us": 2500, "period_us": 10000}
    for name in list(group.path.iterdir()):
        name.unlink()  # a real group's files vanish with rmdir
    group.remove()
    assert not group.path.exists()


def test_detect_prefers_cgroup2_with_the_cpu_controller_and_ignores_it_without(tmp_path):
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "mounts").write_text(
        f"cgroup2 {tmp_path / 'u'} cgroup2 rw 0 0\ncgroup {tmp_path / 'c'} cgroup rw,cpu 0 0\n"
    )
    assert cpu_quota.detect(tmp_path / "mounts") == cpu_quota.Hierarchy(1, tmp_path / "c")
    (tmp_path / "mounts").write_text("proc /proc proc rw 0 0\n")
    assert cpu_quota.detect(tmp_path / "mounts") is None


@pytest.mark.parametrize("bad", [0, -0.5, 65, 0.0005, True, "half"])
def test_a_quota_outside_the_range_is_one_line(bad):
    with pytest.raises(TestbedError, match="quota"):
        cpu_quota.check_quota(bad)


@pytest.mark.parametrize("version", [1, 2])
def test_a_quota_below_a_tenth_gets_the_shortest_period_holding_one_ms(tmp_path, version):
    assert [cpu_quota.period_us(q) for q in (None, 1.0, 0.1)] == [10_000] * 3
    assert cpu_quota.period_us(0.09) == 11_112  # 1 ms / 0.09 = 11.11 ms, rounded up: the quota stays >= 1 ms
    assert cpu_quota.period_us(0.001) == 1_000_000
    group = cpu_quota.CpuQuota("d0", 0.05, fake_hierarchy(tmp_path, version)).create()
    if version == 2:
        assert (group.path / "cpu.max").read_text() == "1000 20000\n"
    else:
        assert (group.path / "cpu.cfs_period_us").read_text() == "20000\n"
        assert (group.path / "cpu.cfs_quota_us").read_text() == "1000\n"


def test_tbf_rate_pays_for_the_frame_headers_and_the_burst_is_small():
    args = dict(zip(*[iter(links.tbf_args(10.0))] * 2))
    assert float(args["rate"].removesuffix("bit")) == pytest.approx(10e6 * 1514 / 1448)
    assert int(args["burst"]) == 2 * 1514  # 1 ms at 10 Mbps is smaller than two frames
    assert int(dict(zip(*[iter(links.tbf_args(50.0))] * 2))["burst"]) == int(50e6 * 1514 / 1448 / 8e3)


def test_tbf_queue_is_deeper_than_a_tcp_connection_can_fill():
    # tcp_wmem's default cap is 4 MiB: a queue of more never drops an upload's packets
    assert int(dict(zip(*[iter(links.tbf_args(0.5))] * 2))["limit"]) == 8 << 20
    fast = dict(zip(*[iter(links.tbf_args(500.0))] * 2))  # 0.5 s at 500 Mbps is more than 8 MiB
    assert int(fast["limit"]) == int(500e6 * 1514 / 1448 / 8 * 0.5)


def test_scenario_testbed_fields_are_validated_and_default_to_native(tmp_path):
    group = {"count": 2, "network": "lenet", "profile": "measured", "uplink_mbps": 2.0}
    s = load_scenario(write_scenario(tmp_path / "a.yaml", [group]))
    assert (s.groups[0].cpu_quota, s.groups[0].link_delay_ms) == ("native", 0.0)
    s = load_scenario(write_scenario(tmp_path / "b.yaml", [group | {"cpu_quota": 0.1, "link_delay_ms": 5}]))
    assert [d.cpu_quota for d in run.devices_of(s)] == [0.1, 0.1]
    for field, value, message in (
        ("cpu_quota", -1, "cpu_quota"),
        ("cpu_quota", "slow", "cpu_quota"),
        ("link_delay_ms", -2.0, "link_delay_ms"),
    ):
        with pytest.raises(ScenarioError, match=message) as info:
            load_scenario(write_scenario(tmp_path / "c.yaml", [group | {field: value}]))
        assert "\n" not in str(info.value)


def test_the_testbed_refuses_onnx_files_with_one_line(tmp_path):
    from dnnpart import paths

    group = {"count": 1, "network": str(paths.PROJ_ROOT / "examples" / "lenet.onnx"), "profile": "measured"}
    s = load_scenario(write_scenario(tmp_path / "a.yaml", [group | {"uplink_mbps": 2.0}]))
    with pytest.raises(TestbedError, match="zoo networks only"):
        run.devices_of(s)


def test_the_fallback_is_chosen_when_forced(monkeypatch):
    monkeypatch.setenv(run.FALLBACK_ENV, "1")
    m = run.choose_mechanism(False)
    assert (m.link, m.cpu, m.real, m.reason) == ("token-bucket", "none", False, "forced")
    assert "fallback emulation (forced)" in m.line()


def test_study_points_run_the_shared_point_once():
    from dnnpart.testbed.study import points

    assert points((0.5, 2.5, 20.0), (1, 2, 4)) == [
        (["fig1"], 4, 0.5),
        (["fig1", "fig5"], 4, 2.5),
        (["fig1"], 4, 20.0),
        (["fig5"], 1, 2.5),
        (["fig5"], 2, 2.5),
    ]


def test_without_a_speed_check_the_predictions_are_the_profiles(tmp_path, monkeypatch):
    """speed_runs = 0: no run, every scale 1, and the predicted instance is the profiles' prediction."""
    from dnnpart.delay import load_delay_model
    from dnnpart.networks import get

    monkeypatch.setenv(run.FALLBACK_ENV, "1")
    groups = [{"name": "a", "count": 2, "network": "lenet", "profile": "measured", "uplink_mbps": 2.0}]
    with run.Testbed(write_scenario(tmp_path / "s.yaml", groups), tmp_path / "out", speed_runs=0) as tb:
        speed, instance = tb.speed_frame, tb.predicted_instance()
    assert list(speed.columns) == run.SPEED_COLUMNS and list(speed["who"]) == ["a-0", "a-1", "server"]
    assert (speed["scale"] == 1.0).all() and speed["measured_ms"].isna().all()
    want = load_delay_model("measured").predict(get("lenet"), "device").sum()
    assert speed["predicted_ms"].iloc[0] == pytest.approx(want)
    assert sum(instance.devices[0].local_ms) == pytest.approx(want)


@pytest.mark.parametrize("runs", [-1, 1.5, True, 101])
def test_a_bad_number_of_speed_runs_is_one_line(tmp_path, runs):
    with pytest.raises(TestbedError, match=r"--speed-runs must be an integer in 0\.\.100"):
        run.run_testbed(tmp_path / "none.yaml", tmp_path / "out", speed_runs=runs)


def test_the_study_goals_use_the_reports_verdict_on_hand_made_points():
    """Case 1 beats the better baseline outright at one point, and only within the spread at the other
    (its best round 9 <= Case 3's worst 9.5, though its median 10 > 8): the report's case1_is_best rule."""
    import pandas as pd

    from dnnpart.testbed.study import goals

    cols = ["n_devices", "bandwidth_mbps", "method", "measured_ms", "measured_min_ms", "measured_max_ms", "error"]
    frame = pd.DataFrame(
        [
            [1, 2.5, "case1", 10.0, 9.0, 11.0, 0.20],
            [1, 2.5, "case2", 30.0, 29.0, 31.0, 0.0],
            [1, 2.5, "case3", 8.0, 7.0, 9.5, 0.0],
            [4, 2.5, "case1", 5.0, 4.0, 6.0, -0.05],
            [4, 2.5, "case2", 6.0, 6.0, 6.0, 0.0],
            [4, 2.5, "case3", 7.0, 7.0, 7.0, 0.0],
        ],
        columns=cols,
    )
    devices = pd.DataFrame({"case": ["case1", "case1", "case3"], "error": [0.1, -0.35, 0.9]})
    g = goals(frame, devices).set_index("goal")["value"]
    assert g["case1 prediction error, median over points"] == pytest.approx(0.125)
    assert g["case1 prediction error, worst point"] == pytest.approx(0.20)
    assert g["case1 prediction error, worst device"] == pytest.approx(0.35)
    assert g["points where measured case1 <= min(case2, case3)"] == 0.5
    assert g["points where it holds within the spread over rounds"] == 1.0
    frame.loc[0, "measured_min_ms"] = 9.6  # now beyond Case 3's worst round
    assert goals(frame, devices)["value"].iloc[4] == 0.5


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_the_layer_cache_is_filled_once_and_removed_with_the_run(tmp_path, monkeypatch, use_cache):
    import os

    from dnnpart.runtime.split import split_network

    monkeypatch.setenv(run.FALLBACK_ENV, "1")
    groups = [{"name": "a", "count": 2, "network": "lenet", "profile": "measured", "uplink_mbps": 2.0}]
    scenario = write_scenario(tmp_path / "s.yaml", groups)
    with run.Testbed(scenario, tmp_path / "out", speed_runs=0, use_layer_cache=use_cache) as tb:
        during = run.temporary_caches(os.getpid())
        args = tb._cache_args()
        held = sorted(p.stem for p in during[0].glob("*.onnx")) if during else []
    assert run.temporary_caches(os.getpid()) == []
    if use_cache:
        assert len(during) == 1 and args == ["--layer-cache", str(during[0])]
        assert held == sorted(split_network("lenet").layer_sha256)  # drawn before any process starts
    else:
        assert during == [] and args == []


def test_the_speed_check_times_boards_as_case_3_runs_and_pools_identical_ones(tmp_path, monkeypatch):
    """The devices' factors come from a calibration start of the runtime (every device all local, speed_runs
    rounds, with factor 1): identical boards share the median of all their rounds' measured / predicted, a board
    of its own keeps its own median; the server's factor is its summed native time over its profile's."""
    import pandas as pd

    from dnnpart.delay import load_delay_model
    from dnnpart.networks import get

    monkeypatch.setenv(run.FALLBACK_ENV, "1")
    groups = [
        {"name": "a", "count": 2, "network": "lenet", "profile": "measured", "uplink_mbps": 2.0},
        {"name": "b", "count": 1, "network": "lenet", "profile": "measured", "uplink_mbps": 2.0, "cpu_quota": 0.5},
    ]
    model = load_delay_model("measured")
    local = float(model.predict(get("lenet"), "device").sum())
    server = float(model.predict(get("lenet"), "server").sum())
    factors = {"a-0": [1.0, 1.1, 1.2], "a-1": [2.0, 3.0, 4.0], "b-0": [0.5, 0.7, 0.6]}  # per round
    seen = []

    def fake_case(self, case, repeats, first_round=0):
        seen.append((case.label, list(case.cuts), repeats, self.scales()))
        rows = [(d, r, f * local) for d, fs in factors.items() for r, f in enumerate(fs)]
        return {"completions": pd.DataFrame(rows, columns=["device", "round", "measured_ms"])}

    monkeypatch.setattr(run.Testbed, "run_case", fake_case)
    monkeypatch.setattr(run.Testbed, "_time_network", lambda self, *a: None)
    monkeypatch.setattr(run.Testbed, "_speed_result", lambda self, proc, what: 1.5 * server)
    with run.Testbed(write_scenario(tmp_path / "s.yaml", groups), tmp_path / "out", speed_runs=3) as tb:
        speed = tb.speed_frame
    assert [s[:3] for s in seen] == [(run.SPEED_CASE, [8, 8, 8], 3)]  # one start, every device all local
    assert seen[0][3] == pytest.approx({"a-0": 1.0, "a-1": 1.0, "b-0": 1.0, "server": 1.5})
    by = speed.set_index("who")
    assert list(speed["runs"]) == [3, 3, 3, 15]
    medians = [1.1 * local, 3.0 * local, 0.6 * local]  # each device's own rounds
    assert by.loc[["a-0", "a-1", "b-0"], "measured_ms"].tolist() == pytest.approx(medians)
    assert by.loc["a-0", "scale"] == by.loc["a-1", "scale"] == pytest.approx(1.6)  # median of 1, 1.1, 1.2, 2, 3, 4
    assert by.loc["b-0", "scale"] == pytest.approx(0.6)  # another quota: another board
    assert by.loc["server", "scale"] == pytest.approx(1.5)


def fake_board(work_ms: float, native_ms=(40.0,)):
    """measure_slowdown's stand-in: a board whose run costs `work_ms` of full-core time at any quota (its median is
    work / quota); the native median cycles through `native_ms` (a host whose speed moves)."""
    calls = []

    def measure(network, quota, runs):
        native = native_ms[len(calls) % len(native_ms)]
        calls.append(quota)
        device = work_ms / quota
        return {"cpu_quota": quota, "device_ms": device, "server_ms": native, "slowdown": device / native}

    return measure, calls


def test_the_calibrated_quota_gives_the_requested_factor_on_a_board_with_cold_caches():
    measure, calls = fake_board(46.0)  # 15 % more than the native 40 ms
    found = slowdown.calibrate_quota("alexnet", 10, rounds=2, measure=measure)
    assert calls == [0.1, 0.115]  # 1/k first; then the quota the first round says gives 10x
    assert found["cpu_quota"] == 0.115 and found["slowdown"] == pytest.approx(10.0)
    assert [r["slowdown"] for r in found["rounds"]] == pytest.approx([11.5, 10.0])


def test_the_calibration_pools_its_rounds_so_one_slow_native_round_moves_it_by_a_share():
    measure, calls = fake_board(46.0, native_ms=(40.0, 40.0, 50.0, 40.0))  # round 3 timed the native run slow
    slowdown.calibrate_quota("alexnet", 10, rounds=4, measure=measure)
    # after round 3 the pooled estimate is 138 / (130 * 10); chasing round 3 alone would give 46 / 500 = 0.092
    assert calls == pytest.approx([0.1, 0.115, 0.115, 138 / 1300], abs=1e-5)  # quotas kept to 5 decimals


@pytest.mark.parametrize("bad", [1, 0.5, 1001, True, "ten"])
def test_a_slowdown_factor_outside_the_range_is_one_line(bad, capsys):
    with pytest.raises(TestbedError, match=r"slowdown factor must be a number in \(1, 1000\]"):
        slowdown.calibrate_quota("alexnet", bad, measure=fake_board(40.0)[0])
    if not isinstance(bad, (bool, str)):
        assert main(["testbed", "--calibrate-slowdown", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "slowdown factor must be a number in (1, 1000]" in err


def test_calibrating_an_unknown_network_is_one_line_naming_the_choices(capsys):
    assert main(["testbed", "--calibrate-slowdown", "10", "--calibrate-network", "alexnett"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown network 'alexnett'" in err and "lenet" in err


def test_rounds_alternate_the_order_of_the_cases():
    assert run.round_order(["c1", "c2", "c3"], 3) == [
        (0, "c1"), (0, "c2"), (0, "c3"), (1, "c3"), (1, "c2"), (1, "c1"), (2, "c1"), (2, "c2"), (2, "c3"),
    ]  # fmt: skip
    assert run.round_order(["c1"], 2) == [(0, "c1"), (1, "c1")]
