"""One deadline for the whole solve: every phase stops on the clock and the result says which one ended it.

No assertion here measures time (the machine is shared); benchmarks/bench_milp.py --scenarios deadline does.
The clock is made to run out deterministically instead: a deadline already in the past.
"""

import random
import time

import pytest

from dnnpart.optimiser import relaxation, solver
from dnnpart.optimiser.baselines import solve_all_methods
from dnnpart.optimiser.cuts import cut_sets_for
from dnnpart.optimiser.exact_search import exact_search
from dnnpart.optimiser.heuristic import heuristic
from dnnpart.optimiser.instance import Device, Instance
from dnnpart.optimiser.relaxation import BudgetExhausted, preemptive_bound
from dnnpart.optimiser.solver import milp_rows_estimate, solve


def different_devices(n: int, seed: int = 3, m: int = 12) -> Instance:
    rng = random.Random(seed)
    return Instance(
        [
            Device(
                f"d{i}",
                [rng.uniform(1, 30) for _ in range(m)],
                [rng.uniform(0.1, 3) for _ in range(m)],
                [rng.uniform(0, 40) for _ in range(m)],
            )
            for i in range(n)
        ]
    )


@pytest.fixture
def clock_every_node(monkeypatch):
    monkeypatch.setattr(relaxation, "CLOCK_EVERY", 1)


def test_searches_stop_at_a_past_deadline(clock_every_node):
    inst = different_devices(8)
    cut_sets = cut_sets_for(inst, None)
    warm = heuristic(inst, cut_sets, time_budget_s=1.0)
    past = time.perf_counter() - 1.0
    with pytest.raises(BudgetExhausted) as stop:
        exact_search(inst, cut_sets, cutoff_ms=warm.avg_delay_ms, max_nodes=10**9, deadline=past)
    assert stop.value.reason == "deadline"
    assert preemptive_bound(inst, cut_sets, cutoff_ms=warm.avg_delay_ms, deadline=past) is None
    # without a deadline the same searches finish (node budgets only: deterministic)
    assert preemptive_bound(inst, cut_sets, cutoff_ms=warm.avg_delay_ms) is not None


def test_a_node_budget_stops_with_its_own_reason():
    inst = different_devices(8)
    cut_sets = cut_sets_for(inst, None)
    with pytest.raises(BudgetExhausted) as stop:
        exact_search(inst, cut_sets, cutoff_ms=1e12, max_nodes=10)
    assert stop.value.reason == "nodes"


def test_a_search_that_runs_out_hands_over_the_best_schedule_it_found():
    inst = different_devices(8)
    cut_sets = cut_sets_for(inst, None)
    optimum = exact_search(inst, cut_sets, cutoff_ms=1e12)
    carried = []
    for budget in (10, 100, 1_000, 10_000, 100_000):
        try:
            exact_search(inst, cut_sets, cutoff_ms=1e12, max_nodes=budget)
        except BudgetExhausted as stop:
            found = stop.schedule
            if found is not None:
                assert found.validate() == pytest.approx(found.avg_delay_ms)
                assert found.avg_delay_ms >= optimum.avg_delay_ms - 1e-9
                carried.append(found.avg_delay_ms)
        else:
            break
    assert carried  # some budget ran out after the search had found a schedule
    assert carried == sorted(carried, reverse=True)  # more nodes, never a worse schedule (same order of search)


def test_the_result_says_which_phase_ended_the_solve(clock_every_node, monkeypatch):
    inst = different_devices(6)
    proven = solve(inst)  # no limit: proven by the exact search
    assert proven.proven_optimal and proven.stopped_by == "exact_search:optimal"
    # the searches see their deadline as passed, and there is no time left for the MILP
    monkeypatch.setattr(solver, "SEARCH_SHARE", -1.0)
    monkeypatch.setattr(solver, "BOUND_SHARE", -1.0)
    monkeypatch.setattr(solver, "MIN_MILP_SHARE", 2.0)
    cut = solve(inst, time_limit=5.0)
    assert cut.status == "time_limit" and cut.stopped_by.startswith("exact_search:deadline+lagrangian_bound; milp")
    assert cut.schedule.validate() == pytest.approx(cut.avg_delay_ms)
    assert cut.avg_delay_ms >= proven.avg_delay_ms - 1e-9 and cut.bound_ms <= proven.avg_delay_ms + 1e-9


def test_lagrangian_bound_at_a_past_deadline_still_bounds():
    # one step (prices 0) always runs, so a bound is returned however late; it is the same as the first step
    # of an unhurried run, so never above that run's best
    from dnnpart.optimiser.lp_bound import lagrangian_bound

    inst = different_devices(8)
    cut_sets = cut_sets_for(inst, None)
    warm = heuristic(inst, cut_sets, time_budget_s=1.0)
    late = lagrangian_bound(inst, cut_sets, warm.avg_delay_ms, deadline=time.perf_counter() - 1.0)
    full = lagrangian_bound(inst, cut_sets, warm.avg_delay_ms)
    assert 0 < late <= full <= warm.avg_delay_ms
    assert late == lagrangian_bound(inst, cut_sets, warm.avg_delay_ms, max_steps=1)


def test_all_methods_share_one_time_limit():
    inst = different_devices(5)
    timed = solve_all_methods(inst, time_limit=20.0)
    untimed = solve_all_methods(inst)
    assert list(timed) == ["case1", "case2", "case3", "independent"]
    for method, sol in timed.items():  # small enough to be proven either way: the limit changes nothing
        assert sol.proven_optimal and sol.avg_delay_ms == pytest.approx(untimed[method].avg_delay_ms)
        assert sol.stopped_by


def test_milp_size_estimate_grows_with_pairs():
    small, big = different_devices(4), different_devices(16)
    rows_small = milp_rows_estimate(small, cut_sets_for(small, None), "exact")
    rows_big = milp_rows_estimate(big, cut_sets_for(big, None), "exact")
    assert 0 < rows_small < rows_big and rows_big > 10 * rows_small  # quadratic in devices


def test_a_milp_too_big_for_its_time_hands_that_time_to_the_heuristic(monkeypatch):
    inst = different_devices(6)
    budgets = []

    def recording_heuristic(instance, cut_sets, time_budget_s):
        budgets.append(time_budget_s)
        return heuristic(instance, cut_sets, time_budget_s=min(time_budget_s, 1.0))

    monkeypatch.setattr(solver, "heuristic", recording_heuristic)
    rows = milp_rows_estimate(inst, cut_sets_for(inst, None), "exact")
    milp_time = (1 - solver.FINISH_RESERVE - solver.LP_BOUND_SHARE) * 10.0
    monkeypatch.setattr(solver, "MILP_ROWS_PER_S", rows / milp_time * 1.01)  # it just fits
    solve(inst, time_limit=10.0)
    monkeypatch.setattr(solver, "MILP_ROWS_PER_S", rows / milp_time * 0.99)  # it just does not
    solve(inst, time_limit=10.0)
    assert budgets == pytest.approx(
        [solver.HEURISTIC_SHARE * 10.0, (solver.HEURISTIC_SHARE + solver.NO_MILP_EXTRA) * 10.0]
    )
