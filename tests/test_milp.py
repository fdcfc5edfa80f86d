"""The MILP on known instances: the interleaving example, fixed cuts, baselines, time limits, bad input."""

import pytest

from dnnpart.errors import DnnpartError
from dnnpart.optimiser import (
    baselines,
    candidate_cuts,
    preemptive_bound,
    solve,
    srpt_total_ms,
)
from dnnpart.optimiser.instance import Device, Instance, load_instance
from dnnpart.optimiser.oracle import OracleTooLargeError, brute_force
from dnnpart.paths import PROJ_ROOT

EXAMPLE = PROJ_ROOT / "tests" / "data" / "interleaving-example.json"


@pytest.fixture(scope="module")
def inst():
    return load_instance(EXAMPLE)


@pytest.mark.parametrize("formulation", ["exact", "paper"])
@pytest.mark.parametrize("warm_start", [True, False])
def test_interleaving_example_optimum(inst, formulation, warm_start):
    sol = solve(inst, formulation, warm_start=warm_start)
    assert sol.avg_delay_ms == pytest.approx(71.0, abs=1e-6)
    assert sol.cuts == [0, 2] and sol.proven_optimal and sol.status == "optimal" and sol.gap == pytest.approx(0)
    assert sol.bound_ms == pytest.approx(71.0, abs=1e-6) and sol.formulation == formulation
    assert sol.schedule.validate(avg_delay_ms=71.0) == pytest.approx(71.0)
    # B's only server layer runs between A's layers 3 and 4: the interleaving
    order = sol.schedule.server_order
    assert order.index((1, 3)) == order.index((0, 3)) + 1


def test_oracle_and_block_only_value(inst):
    assert brute_force(inst).avg_delay_ms == 71.0
    block_only = min(min(solve_block(inst, cuts)) for cuts in [(a, b) for a in range(5) for b in range(4)])
    assert block_only == 80.0


def solve_block(inst, cuts):
    """Both block orders for these cuts (the server runs each device's part in one piece)."""
    from dnnpart.optimiser.schedule import Schedule, block_order

    return [Schedule(inst, cuts, block_order(inst, cuts, order)).avg_delay_ms for order in ([0, 1], [1, 0])]


def test_dominance_pruning(inst):
    # A: every cut survives (each later cut arrives too late); B: cut 0 and 1 are dominated by cut 2
    # (release 51 <= 50 + 20 = release(0) + server work of layers 1-2)
    assert candidate_cuts(inst.devices[0]) == [0, 1, 2, 3, 4]
    assert candidate_cuts(inst.devices[1]) == [2, 3]


def test_baselines_known_values(inst):
    got = baselines.evaluate_all(inst)
    assert got["case2"].avg_delay_ms == 90.5 and got["case2"].cuts == [0, 0]
    assert got["case3"].avg_delay_ms == 120.0 and got["case3"].cuts == [4, 3]
    assert got["independent"].cuts == [0, 2] and got["independent"].avg_delay_ms == 71.0
    for sol in got.values():
        assert sol.proven_optimal
        sol.schedule.validate(avg_delay_ms=sol.avg_delay_ms)


def test_identical_devices_symmetry_keeps_optimum():
    dev = {"local_ms": [30, 30, 30], "server_ms": [10, 5, 5], "upload_ms": [20, 12, 4]}
    inst = Instance(tuple(Device(f"d{i}", **dev) for i in range(3)))
    sol = solve(inst, warm_start=False)
    assert sol.avg_delay_ms == pytest.approx(brute_force(inst).avg_delay_ms, abs=1e-6)
    assert sol.proven_optimal


def test_time_limit_returns_valid_incumbent():
    # four identical 6-layer devices: far from solved in 0.05 s, but a schedule is always returned
    dev = {"local_ms": [40, 35, 30, 25, 20, 15], "server_ms": [4, 7, 3, 6, 2, 5], "upload_ms": [60, 45, 30, 20, 12, 6]}
    inst = Instance(tuple(Device(f"d{i}", **dev) for i in range(4)) + (Device("x", [50, 5], [5, 5], [1, 60]),))
    sol = solve(inst, "paper", time_limit=0.05)
    sol.schedule.validate(avg_delay_ms=sol.avg_delay_ms)
    assert (not sol.proven_optimal and sol.status != "optimal") or sol.gap == pytest.approx(0)
    if not sol.proven_optimal:
        assert sol.gap is None or sol.gap >= 0


def test_bad_arguments(inst):
    with pytest.raises(DnnpartError, match="formulation"):
        solve(inst, "fast")
    with pytest.raises(DnnpartError, match="time limit"):
        solve(inst, time_limit=0)
    with pytest.raises(DnnpartError, match="0..4"):
        solve(inst, fixed_cuts=[7, 0])
    big = Instance(tuple(Device(f"d{i}", [1] * 8, [1] * 8, [1] * 8) for i in range(4)))
    with pytest.raises(OracleTooLargeError, match="limit"):
        brute_force(big)


def test_node_limit_stops_at_the_same_point_every_run():
    from dnnpart.planning.compile import network_instance

    inst = network_instance("alexnet", 6, 2.5, 0.0, "paper")
    first, second = (solve(inst, node_limit=1) for _ in range(2))
    assert first.status in {"optimal", "node_limit"}
    assert first.proven_optimal == (first.status == "optimal")
    assert (first.avg_delay_ms, first.cuts, first.gap) == (second.avg_delay_ms, second.cuts, second.gap)
    first.schedule.validate()
    # a limited solve is never better than the proven optimum
    assert first.avg_delay_ms >= solve(inst).avg_delay_ms - 1e-6


def test_srpt_total_known_values():
    # 0-2: job A (8 ms left); at 2 two 3 ms jobs arrive and preempt it: finishes 5, 8, then A at 16
    assert srpt_total_ms([(0, 10), (2, 3), (2, 3)]) == 29
    assert srpt_total_ms([(5, 0), (0, 4)]) == 4 + 5  # a zero-work job finishes at its release
    assert srpt_total_ms([]) == 0


def test_preemptive_bound_on_the_interleaving_example(inst):
    # relaxation optimum: A (cut 0, 80 ms of work from 0) is preempted at 51 by B's 1 ms (cut 2): 52 + 81
    assert preemptive_bound(inst) == pytest.approx((52 + 81) / 2)
    assert preemptive_bound(inst) <= 71.0


def test_identical_devices_proven_by_the_relaxation():
    dev = {"local_ms": [30, 30, 30], "server_ms": [10, 5, 5], "upload_ms": [20, 12, 4]}
    inst = Instance(tuple(Device(f"d{i}", **dev) for i in range(4)))
    fast, milp_only = solve(inst), solve(inst, warm_start=False)
    assert fast.proven_optimal and fast.status == "optimal" and fast.gap == 0.0
    assert fast.avg_delay_ms == pytest.approx(milp_only.avg_delay_ms, abs=1e-6)
    assert fast.avg_delay_ms == pytest.approx(brute_force(inst).avg_delay_ms, abs=1e-6)
    assert fast.bound_ms == pytest.approx(fast.avg_delay_ms, rel=1e-9)
    # the proof came from the relaxation alone (no HiGHS run): its bound meets the heuristic's value
    assert preemptive_bound(inst, cutoff_ms=fast.avg_delay_ms) >= fast.avg_delay_ms * (1 - 1e-9)
    fast.schedule.validate(avg_delay_ms=fast.avg_delay_ms)
