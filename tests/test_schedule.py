"""Schedule timing and the independent checker."""

import pytest

from dnnpart.optimiser.instance import load_instance
from dnnpart.optimiser.schedule import Schedule, ScheduleError
from dnnpart.paths import PROJ_ROOT

EXAMPLE = PROJ_ROOT / "tests" / "data" / "interleaving-example.json"
INTERLEAVED = [(0, 1), (0, 2), (0, 3), (1, 3), (0, 4)]


@pytest.fixture(scope="module")
def inst():
    return load_instance(EXAMPLE)


def test_interleaved_order_times_as_documented(inst):
    s = Schedule(inst, [0, 2], INTERLEAVED)
    assert s.completion_ms == [81.0, 61.0] and s.avg_delay_ms == 71.0
    df = s.to_frame()
    assert list(df.columns) == ["device", "layer", "where", "start_ms", "finish_ms"]
    b3 = df[(df.device == "B") & (df.layer == 3)].set_index("where")
    assert (b3.loc["upload", "start_ms"], b3.loc["upload", "finish_ms"]) == (50.0, 51.0)
    assert (b3.loc["server", "start_ms"], b3.loc["server", "finish_ms"]) == (60.0, 61.0)
    a4 = df[(df.device == "A") & (df.layer == 4) & (df["where"] == "server")].iloc[0]
    assert (a4.start_ms, a4.finish_ms) == (61.0, 81.0)
    assert s.validate(avg_delay_ms=71.0) == 71.0


def test_block_orders_and_all_local(inst):
    assert Schedule(inst, [0, 2]).avg_delay_ms == 80.5  # A's block first: B waits until 80
    assert Schedule(inst, [0, 2], [(1, 3), (0, 1), (0, 2), (0, 3), (0, 4)]).avg_delay_ms == (52 + 132) / 2
    s = Schedule(inst, [4, 3])
    assert s.completion_ms == [160.0, 80.0] and s.to_frame()["where"].eq("local").all()


def test_names_accepted_in_order(inst):
    named = [("A", 1), ("A", 2), ("A", 3), ("B", 3), ("A", 4)]
    assert Schedule(inst, [0, 2], named).avg_delay_ms == 71.0


@pytest.mark.parametrize(
    "cuts, order, match",
    [
        ([0, 2], [(0, 2), (0, 1), (0, 3), (1, 3), (0, 4)], "in that order"),
        ([0, 2], [(0, 1), (0, 2), (0, 3), (0, 4)], "device 'B'"),
        ([5, 2], None, "0..4"),
        ([0], None, "one cut per device"),
    ],
)
def test_bad_cuts_or_order_rejected(inst, cuts, order, match):
    with pytest.raises(ScheduleError, match=match):
        Schedule(inst, cuts, order)


def _shift(df, device, layer, where, by):
    df = df.copy()
    k = df.index[(df.device == device) & (df.layer == layer) & (df["where"] == where)][0]
    df.loc[k, ["start_ms", "finish_ms"]] += by
    return df


def test_validate_catches_violations(inst):
    s = Schedule(inst, [0, 2], INTERLEAVED)
    good = s.to_frame()
    with pytest.raises(ScheduleError, match="server overlap"):
        s.validate(_shift(good, "B", 3, "server", -5.0))  # 55-56 inside A's layer 3 (40-60)
    with pytest.raises(ScheduleError, match="before its predecessor"):
        s.validate(_shift(good, "B", 3, "upload", -10.0))  # upload before the local part ends
    longer = good.copy()
    longer.loc[longer.index[-1], "finish_ms"] += 1
    with pytest.raises(ScheduleError, match="should last"):
        s.validate(longer)
    with pytest.raises(ScheduleError, match="subtasks"):
        s.validate(good[good["where"] != "upload"])
    with pytest.raises(ScheduleError, match="objective mismatch"):
        s.validate(avg_delay_ms=70.0)
    # a later (idle) but consistent timing is valid and its own objective is returned
    later = _shift(_shift(good, "A", 4, "server", 1.0), "A", 4, "download", 1.0)
    assert s.validate(later) == 71.5


def test_plot_draws_lanes(inst):
    import matplotlib

    matplotlib.use("agg")
    ax = Schedule(inst, [0, 2], INTERLEAVED).plot()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["server", "A", "B"]
    assert (
        len(ax.collections) == 5 + 4 + 4
    )  # server lane 5; A: 4 server (0-ms upload skipped); B: 2 local, upload, server


def test_huge_times_validate_with_a_relative_tolerance():
    """Times near 1e12 ms lose digits in float sums; the checker must not call such a schedule invalid."""
    from dnnpart.optimiser import solve
    from dnnpart.optimiser.instance import Device, Instance

    inst = Instance(
        [Device(f"d{i}", [1e12 / 3 + i, 7e11 / 3], [1e11 / 7, 3e10 / 7 + i], [1e-8, 3.3], 1e9 + i) for i in range(3)]
    )
    sol = solve(inst)
    assert sol.schedule.validate() == pytest.approx(sol.avg_delay_ms, rel=1e-12)
    tiny = Instance([Device("a", [1e-9, 2e-9], [1e-10, 1e-10], [33.18634, 1e-3])])
    assert solve(tiny).schedule.validate() > 0
