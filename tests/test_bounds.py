"""Different devices: the time-indexed LP bound (dnnpart.optimiser.lp_bound), the nested ("Russian doll")
preemptive search, the exact combinatorial search built on it, and the all-local dominance of cuts, each checked
against the brute-force oracle; and searches deeper than Python's recursion limit."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_oracle_property import SETTINGS, devices, identical_instances, instances

from dnnpart.optimiser import (
    best_server_order,
    candidate_cuts,
    exact_search,
    preemptive_bound,
    solve,
)
from dnnpart.optimiser.instance import Device, Instance
from dnnpart.optimiser.lp_bound import lagrangian_bound, time_indexed_bound
from dnnpart.optimiser.oracle import brute_force


def all_cuts(inst):
    return [list(range(d.n_layers + 1)) for d in inst.devices]


@settings(max_examples=60, **SETTINGS)
@given(st.one_of(instances(), identical_instances()), st.sampled_from([3, 40, 800]))
def test_time_indexed_bound_never_exceeds_the_optimum(inst, slots):
    opt = brute_force(inst).avg_delay_ms
    for cut_sets in (all_cuts(inst), [candidate_cuts(d) for d in inst.devices]):
        bound = time_indexed_bound(inst, cut_sets, slots=slots)
        assert bound is not None and bound <= opt + 1e-9


def test_time_indexed_bound_known_values():
    # one device, cut 0: released at 10, 20 ms of server work, C = 30. Horizon = all-local time 40. With 4
    # slots of 10 ms the work sits in the slots starting at 10 and 20: estimated mean busy time 15 (true 20),
    # bound 15 + 20/2 = 25; the slot starts lose at most one slot width per device
    one = Instance((Device("a", [10, 30], [10, 10], [10, 100]),))
    assert candidate_cuts(one.devices[0]) == [0, 2]
    assert time_indexed_bound(one, [[0, 2]], slots=4) == pytest.approx(25.0, rel=1e-5)
    assert 30.0 - 40 / 800 <= time_indexed_bound(one, [[0, 2]], slots=800) <= 30.0
    # a device that never gains from offloading is fixed all-local: its bound is its all-local time
    slow = Instance((Device("s", [1, 1], [5, 5], [50, 50]),))
    assert candidate_cuts(slow.devices[0]) == [2]
    assert time_indexed_bound(slow, [[2]]) == 2.0
    # two identical jobs released at 0 (10 ms each, cut 0), all-local 100, 1 ms slots: true optimum 10 + 20,
    # mean 15; each job's estimated mean busy time is half a slot early: 14.5
    pair = Instance(tuple(Device(f"d{i}", [50, 50], [5, 5], [0, 0]) for i in range(2)))
    assert time_indexed_bound(pair, [[0, 2]] * 2, slots=100) == pytest.approx(14.5, rel=1e-5)


def test_all_local_dominance_counts_the_download():
    # cut 0: released at 5, 8 ms of server work, then an 8 ms download: 21 ms >= all-local 20, so all-local
    # dominates it; without the download (13 ms) it stays. (Without a download the rule "a larger cut
    # dominates" already covers this: the all-local cut's release is the all-local time.)
    assert candidate_cuts(Device("d", [10, 10], [4, 4], [5, 50], download_ms=8.0)) == [2]
    assert candidate_cuts(Device("d", [10, 10], [4, 4], [5, 50])) == [0, 2]


@settings(max_examples=40, **SETTINGS)
@given(instances())
def test_pruned_cut_sets_keep_the_optimum(inst):
    # the optimum over candidate cuts only (both dominance rules) equals the oracle's over all cuts
    assert solve(inst, warm_start=False).avg_delay_ms == pytest.approx(brute_force(inst).avg_delay_ms, abs=1e-6)


def test_nested_bound_on_different_devices_matches_the_plain_search():
    # three different devices: the nested search (used for them) and the brute-force relaxation optimum
    # over every cut vector agree
    from itertools import product

    from dnnpart.optimiser import srpt_total_ms

    inst = Instance(
        (
            Device("a", [40, 40, 40], [20, 20, 20], [0, 5, 5]),
            Device("b", [25, 25, 30], [10, 10, 1], [50, 30, 1]),
            Device("c", [5, 5, 5], [3, 2, 1], [4, 2, 1], download_ms=2.0),
        )
    )
    cut_sets = [candidate_cuts(d) for d in inst.devices]
    best = min(
        srpt_total_ms([(d.release_ms(c), d.server_work_ms(c)) for d, c in zip(inst.devices, cuts) if c < d.n_layers])
        + sum(d.download_ms if c < d.n_layers else d.local_prefix_ms(c) for d, c in zip(inst.devices, cuts))
        for cuts in product(*cut_sets)
    )
    assert preemptive_bound(inst) == pytest.approx(best / 3, rel=1e-9)
    assert preemptive_bound(inst) <= brute_force(inst).avg_delay_ms


@st.composite
def mixed_instances(draw):
    """Two or three devices, possibly two of them identical: the classes the exact search handles."""
    first = draw(devices("d0"))
    twin = draw(st.booleans())
    second = (
        Device("d1", first.local_ms, first.server_ms, first.upload_ms, first.download_ms)
        if twin
        else draw(devices("d1"))
    )
    rest = draw(st.lists(devices("d2"), max_size=1))
    return Instance((first, second, *rest))


@settings(max_examples=80, **SETTINGS)
@given(st.one_of(instances(), mixed_instances()))
def test_exact_search_equals_the_oracle(inst):
    cut_sets = [candidate_cuts(d) for d in inst.devices]
    if len({(d.local_ms, d.server_ms, d.upload_ms, d.download_ms) for d in inst.devices}) < 2:
        return  # one class: the nested search does not apply (solve uses the plain bound and the MILP)
    oracle = brute_force(inst)
    found = exact_search(inst, cut_sets, cutoff_ms=float("inf"))
    assert found.avg_delay_ms == pytest.approx(oracle.avg_delay_ms, abs=1e-6)
    found.validate(avg_delay_ms=found.avg_delay_ms)
    # with the optimum as cutoff nothing strictly better exists
    assert exact_search(inst, cut_sets, cutoff_ms=oracle.avg_delay_ms - 1e-6) is None
    sol = solve(inst)  # goes through the exact search
    assert sol.proven_optimal and sol.avg_delay_ms == pytest.approx(oracle.avg_delay_ms, abs=1e-6)


@settings(max_examples=80, **SETTINGS)
@given(st.one_of(instances(), mixed_instances()), st.sampled_from([1e-3, 0.05, 1e9]))
def test_exact_search_with_small_devices_left_out_equals_the_oracle(inst, share):
    # any set of devices may be left out of the search over cuts (the all-local bound of exact_search holds for
    # every set): with a large share every class but one is "small"
    from dnnpart.optimiser.exact_search import small_groups
    from dnnpart.optimiser.relaxation import PreemptiveRelaxation, nested_groups

    cut_sets = [candidate_cuts(d) for d in inst.devices]
    relax = PreemptiveRelaxation(inst, cut_sets, 10**6)
    groups = nested_groups(relax)
    if groups is None:
        return  # one class: the nested search does not apply
    big, small = small_groups(relax, groups, sum(d.local_prefix_ms(d.n_layers) for d in inst.devices), share)
    assert big and sorted(big + small) == sorted(groups)
    if share == 1e9:
        assert len(big) == 1  # every class but one, as far as SMALL_COMBOS allows (these have few cuts)
    oracle = brute_force(inst)
    found = exact_search(inst, cut_sets, cutoff_ms=float("inf"), small_share=share)
    assert found.avg_delay_ms == pytest.approx(oracle.avg_delay_ms, abs=1e-6)
    found.validate(avg_delay_ms=found.avg_delay_ms)
    assert exact_search(inst, cut_sets, cutoff_ms=oracle.avg_delay_ms - 1e-6, small_share=share) is None
    assert exact_search(inst, cut_sets, cutoff_ms=oracle.avg_delay_ms + 1e-3, small_share=share) is not None


def test_a_tiny_device_beside_big_ones_is_left_out_of_the_cut_search():
    # two big devices and a tiny one whose cuts move its own completion by 0.9 ms at most (all local 1 ms):
    # only the tiny one is small at the default share, and the result is the oracle's
    from dnnpart.optimiser.exact_search import small_groups
    from dnnpart.optimiser.relaxation import PreemptiveRelaxation, nested_groups

    inst = Instance(
        (
            Device("big-a", [300, 300, 300], [40, 60, 20], [5, 30, 10]),
            Device("big-b", [200, 400, 100], [50, 30, 40], [8, 20, 2]),
            Device("tiny", [0.5, 0.5], [0.05, 0.05], [0.05, 0.2]),
        )
    )
    cut_sets = [candidate_cuts(d) for d in inst.devices]
    relax = PreemptiveRelaxation(inst, cut_sets, 10**6)
    big, small = small_groups(relax, nested_groups(relax), 1000.0)
    assert [relax.members[k] for k, _ in small] == [[2]] and len(big) == 2
    oracle = brute_force(inst)
    found = exact_search(inst, cut_sets, cutoff_ms=float("inf"))
    assert found.avg_delay_ms == pytest.approx(oracle.avg_delay_ms, abs=1e-9)


def test_best_server_order_known_value():
    # the interleaving example with cuts (0, 2): the best order runs B's layer between A's layers 3 and 4
    from dnnpart.optimiser.instance import load_instance
    from dnnpart.paths import PROJ_ROOT

    inst = load_instance(PROJ_ROOT / "tests" / "data" / "interleaving-example.json")
    total, order = best_server_order(inst, [0, 2], float("inf"), [0], 10_000)
    assert total == pytest.approx(142.0) and order.index((1, 3)) == order.index((0, 3)) + 1
    assert best_server_order(inst, [0, 2], 142.0, [0], 10_000) is None  # nothing strictly below the optimum


def chain_devices(n_layers: int, server_ms_per_layer) -> Instance:
    """Different devices with n_layers layers each whose only candidate cuts are 0 and all-local (uploading
    any intermediate output takes 10 s): every server order is a chain of n_layers server layers."""
    return Instance(
        tuple(
            Device(f"d{k}", [5.0] * n_layers, [w] * n_layers, [1.0] + [1e4] * (n_layers - 1))
            for k, w in enumerate(server_ms_per_layer)
        )
    )


def test_searches_deeper_than_the_recursion_limit(monkeypatch):
    # 3 x 400 = 1200 server layers, more than Python's default recursion limit (1000) of stack frames
    import sys

    inst = chain_devices(400, [0.5, 1.0, 1.5])
    cut_sets = [candidate_cuts(d) for d in inst.devices]
    assert cut_sets == [[0, 400]] * 3
    limit = sys.getrecursionlimit()
    monkeypatch.setattr(sys, "setrecursionlimit", lambda n: pytest.fail("the search changed the recursion limit"))
    # all released at 1 ms and served shortest first (200, 400, 600 ms of work): completions 201, 601 and
    # 1201 ms; keeping one device local (2000 ms) is worse
    total, order = best_server_order(inst, [0, 0, 0], float("inf"), [0], 100_000)
    assert total == 201 + 601 + 1201 and order == [(i, j) for i in range(3) for j in range(1, 401)]
    found = exact_search(inst, cut_sets, cutoff_ms=float("inf"))
    assert found.cuts == [0, 0, 0] and found.avg_delay_ms == pytest.approx((201 + 601 + 1201) / 3, abs=1e-9)
    found.validate(avg_delay_ms=found.avg_delay_ms)
    assert preemptive_bound(inst, cut_sets) == pytest.approx((201 + 601 + 1201) / 3, rel=1e-9)
    assert sys.getrecursionlimit() == limit


def test_relaxation_search_over_more_devices_than_the_recursion_limit():
    # 1100 identical one-layer devices: the cut-choice search goes one level per device. Each offloads
    # (release 1 ms, 1 ms of server work; local 1000 ms) or not; the first k offloaders finish at 2, 3, ...
    import sys

    n = 1100
    inst = Instance(tuple(Device(f"d{i}", [1000.0], [1.0], [1.0]) for i in range(n)))
    limit = sys.getrecursionlimit()
    # offloading pays while the k-th offloader finishes before 1000 ms: k <= 998 (finish k + 1)
    best = (sum(k + 1 for k in range(1, 999)) + 1000.0 * (n - 998)) / n
    assert preemptive_bound(inst, cutoff_ms=best + 1.0) == pytest.approx(best, rel=1e-9)
    assert sys.getrecursionlimit() == limit


@settings(max_examples=30, **SETTINGS)
@given(st.one_of(instances(), mixed_instances()))
def test_lp_bound_when_the_preemptive_searches_run_out(inst):
    # the searches get one node each and no time is left for the MILP: the reported bound is then the
    # Lagrangian bound's (not the no-contention bound), and it never exceeds the oracle's optimum
    import dnnpart.optimiser.solver as solver

    opt = brute_force(inst).avg_delay_ms
    with pytest.MonkeyPatch.context() as mp:
        for name in ("BOUND_NODES", "EXACT_NODES"):
            mp.setattr(solver, name, 1)
        mp.setattr(solver, "MIN_MILP_SHARE", 2.0)
        sol = solve(inst, time_limit=30.0)
    sol.schedule.validate(avg_delay_ms=sol.avg_delay_ms)
    assert sol.avg_delay_ms >= opt - 1e-6 and sol.bound_ms <= opt + 1e-6
    if not sol.proven_optimal:
        assert "lagrangian_bound" in sol.stopped_by
        cut_sets = [candidate_cuts(d) for d in inst.devices]
        lagrange = lagrangian_bound(inst, cut_sets, sol.avg_delay_ms, slots=solver.MID_LAGRANGE_SLOTS)
        assert sol.bound_ms >= min(lagrange, sol.avg_delay_ms) - 1e-9  # that bound was used


@settings(max_examples=60, **SETTINGS)
@given(st.one_of(instances(), identical_instances()), st.sampled_from([3, 40, 400]))
def test_lagrangian_bound_never_exceeds_the_optimum(inst, slots):
    opt = brute_force(inst).avg_delay_ms
    for cut_sets in (all_cuts(inst), [candidate_cuts(d) for d in inst.devices]):
        # any upper value only sets the step length: a bad one (here twice the optimum) must stay valid
        for upper in (opt, 2 * opt + 1):
            assert lagrangian_bound(inst, cut_sets, upper, slots=slots) <= opt + 1e-9


def test_lagrangian_bound_known_values_and_the_lp():
    # one device (the LP's example): no contention, so the Lagrangian bound is the LP's 25 at 4 slots
    one = Instance((Device("a", [10, 30], [10, 10], [10, 100]),))
    assert lagrangian_bound(one, [[0, 2]], 30.0, slots=4) == pytest.approx(25.0, rel=1e-5)
    # two identical jobs released at 0 (5 + 5 ms, cut 0), all-local 100: the capacity prices must rise for the
    # bound to reach the LP's 14.5 (without prices both jobs would use the first slots: 5 / 2 + 5 / 2 = 5)
    pair = Instance(tuple(Device(f"d{i}", [50, 50], [5, 5], [0, 0]) for i in range(2)))
    assert lagrangian_bound(pair, [[0, 2]] * 2, 15.0, slots=100) == pytest.approx(14.5, rel=1e-3)
    # a device with a fractional cut in the LP: its per-device subproblem picks one cut, so the Lagrangian
    # bound (its best step) may exceed the LP at the same grid, never the optimum (checked above)
    three = Instance(
        (
            Device("a", [40, 40, 40], [20, 20, 20], [0, 5, 5]),
            Device("b", [25, 25, 30], [10, 10, 1], [50, 30, 1]),
            Device("c", [5, 5, 5], [3, 2, 1], [4, 2, 1], download_ms=2.0),
        )
    )
    cut_sets = [candidate_cuts(d) for d in three.devices]
    opt = brute_force(three).avg_delay_ms
    lagrange = lagrangian_bound(three, cut_sets, opt, slots=200)
    assert time_indexed_bound(three, cut_sets, slots=200) <= lagrange <= opt
