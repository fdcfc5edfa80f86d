"""The heuristic's steps beyond one device's moves: the relaxation value that ranks moves, the polished server
order, and what they find on the held-out family of benchmarks/bench_deadline.py against proven optima."""

import sys

import pytest
from hypothesis import given, settings
from test_oracle_property import SETTINGS, identical_instances, instances

from dnnpart.optimiser import preemptive_bound, solve
from dnnpart.optimiser.cuts import candidate_cuts
from dnnpart.optimiser.heuristic import (
    dispatch,
    heuristic,
    moves_of_one_or_two,
    polish,
    relaxation_descent,
    relaxation_search,
    relaxation_table,
    relaxation_value,
)
from dnnpart.optimiser.oracle import brute_force
from dnnpart.paths import BENCHMARKS_DIR

sys.path.insert(0, str(BENCHMARKS_DIR))
from bench_deadline import heterogeneous  # noqa: E402


def every_cut_vector(inst, limit=200):
    vectors = [[]]
    for d in inst.devices:
        vectors = [v + [c] for v in vectors for c in range(d.n_layers + 1)]
    return vectors[:limit]


@settings(max_examples=40, **SETTINGS)
@given(instances())
def test_relaxation_value_is_the_preemptive_bound_of_fixed_cuts_and_below_every_schedule(inst):
    table = relaxation_table(inst, [list(range(d.n_layers + 1)) for d in inst.devices])
    for cuts in every_cut_vector(inst):
        value = relaxation_value(table, cuts)
        fixed = preemptive_bound(inst, [[c] for c in cuts])  # the relaxation's own search, cuts fixed
        assert value == pytest.approx(fixed * len(inst), rel=1e-9, abs=1e-9)
        assert value <= dispatch(inst, cuts).avg_delay_ms * len(inst) + 1e-6


@settings(max_examples=40, **SETTINGS)
@given(identical_instances() | instances())
def test_polish_finds_the_best_server_order_of_small_instances(inst):
    opt = brute_force(inst)
    first = dispatch(inst, opt.cuts)
    polished = polish(inst, opt.cuts, first, deadline=float("inf"))
    polished.validate(avg_delay_ms=polished.avg_delay_ms)
    assert polished.avg_delay_ms <= first.avg_delay_ms
    assert polished.avg_delay_ms == pytest.approx(opt.avg_delay_ms, abs=1e-6)  # 20,000 nodes: exhaustive here


def assert_single_move_local_optimum(table, cut_sets, cuts):
    """`cuts` are candidate cuts and no single device's move to another candidate lowers their relaxation value."""
    assert all(c in cs for c, cs in zip(cuts, cut_sets))
    for i, cs in enumerate(cut_sets):
        for c in cs:
            trial = list(cuts)
            trial[i] = c
            assert relaxation_value(table, trial) >= relaxation_value(table, cuts) - 1e-6


@settings(max_examples=40, **SETTINGS)
@given(instances())
def test_relaxation_descent_never_raises_the_relaxation_value(inst):
    cut_sets = [candidate_cuts(d) for d in inst.devices]
    table = relaxation_table(inst, cut_sets)
    start = [cs[-1] for cs in cut_sets]
    found = relaxation_descent(cut_sets, table, list(range(len(inst))), start, deadline=float("inf"))
    assert relaxation_value(table, found) <= relaxation_value(table, start)
    assert_single_move_local_optimum(table, cut_sets, found)


def test_the_relaxation_search_kicks_its_way_below_a_single_descent():
    # Held-out instance where one descent from all-local stops at a local optimum 2.4 % above what the kicks find.
    inst = heterogeneous(8, 8)
    cut_sets = [candidate_cuts(d) for d in inst.devices]
    table = relaxation_table(inst, cut_sets)
    twins, start = list(range(len(inst))), [cs[-1] for cs in cut_sets]
    descent = relaxation_descent(cut_sets, table, twins, start, deadline=float("inf"))
    found = relaxation_search(cut_sets, table, twins, start, deadline=float("inf"))
    assert found == relaxation_search(cut_sets, table, twins, start, deadline=float("inf"))  # a fixed seed
    values = [relaxation_value(table, cuts) for cuts in found]
    assert values == sorted(values) and len({tuple(c) for c in found}) == len(found)
    assert descent in found
    assert values[0] < relaxation_value(table, descent) * 0.98
    for cuts in found:  # every one is a descent's end
        assert_single_move_local_optimum(table, cut_sets, cuts)


def test_moves_of_identical_devices_at_the_same_cut_are_tried_once():
    assert moves_of_one_or_two([0] * 16, [3] * 16) == [(0,), (0, 1)]
    # two classes: a lone device (index 2) and three twins, two of them at cut 1
    assert moves_of_one_or_two([0, 0, 2, 0], [1, 5, 7, 1]) == [(0,), (1,), (2,), (0, 1), (0, 2), (0, 3), (1, 2)]
    different = moves_of_one_or_two(list(range(5)), [0] * 5)
    assert len(different) == 5 + 10 and len(set(different)) == len(different)


@pytest.mark.parametrize("n, seed", [(5, 18), (6, 18)])
def test_the_heuristic_finds_optima_that_moves_of_one_device_miss(n, seed):
    # Held-out zoo instances where the optimum (proven by solve's exact search) differs from the single-move
    # local optimum in two devices' cuts or in the server order.
    inst = heterogeneous(n, seed)
    cut_sets = [candidate_cuts(d) for d in inst.devices]
    optimum = solve(inst)
    assert optimum.proven_optimal
    found = heuristic(inst, cut_sets, time_budget_s=60.0)
    found.validate(avg_delay_ms=found.avg_delay_ms)
    assert found.avg_delay_ms == pytest.approx(optimum.avg_delay_ms, rel=1e-9)
    single = heuristic(inst, cut_sets, time_budget_s=60.0, ranked=False)  # one device's moves, dispatch's order
    assert single.avg_delay_ms > optimum.avg_delay_ms * 1.005
