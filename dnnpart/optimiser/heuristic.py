"""A fast schedule: list scheduling for fixed cuts, and a greedy local search over cuts around it."""

from __future__ import annotations

import heapq
import random
import time
from itertools import combinations, product

from dnnpart.optimiser.cuts import candidate_cuts, independent_cuts
from dnnpart.optimiser.exact_search import best_server_order
from dnnpart.optimiser.instance import Instance
from dnnpart.optimiser.relaxation import BudgetExhausted, Clock, relaxation_job, srpt_total_ms
from dnnpart.optimiser.schedule import TOL_MS, Schedule, suffix_sums


def dispatch(instance: Instance, cuts) -> Schedule:
    """Time given cuts with a simple rule: whenever the server is free, run the next layer of the released
    device with the least remaining server work (ties: earliest release, then device order)."""
    devs = instance.devices
    release = [d.release_ms(c) for d, c in zip(devs, cuts)]
    nxt = {i: c for i, (d, c) in enumerate(zip(devs, cuts)) if c < d.n_layers}
    tail = {i: suffix_sums(devs[i].server_ms) for i in nxt}  # remaining server work from each layer on
    ready = {i: release[i] for i in nxt}
    # Two heaps instead of a scan of every device per layer (O(L log N), not O(L N)): devices not yet released
    # by their ready time, released ones by the rule's key. Once released a device stays released (t only grows).
    waiting = [(ready[i], i) for i in nxt]
    heapq.heapify(waiting)
    released = []
    t, order = 0.0, []
    while waiting or released:
        while waiting and waiting[0][0] <= t + TOL_MS:
            _, k = heapq.heappop(waiting)
            heapq.heappush(released, (tail[k][nxt[k]], release[k], k))
        if not released:
            t = waiting[0][0]
            continue
        i = heapq.heappop(released)[2]
        j = nxt[i]
        t = max(t, ready[i]) + devs[i].server_ms[j]
        ready[i] = t
        order.append((i, j + 1))
        nxt[i] += 1
        if nxt[i] < devs[i].n_layers:
            heapq.heappush(waiting, (ready[i], i))
    return Schedule(instance, cuts, order)


RANKED_MOVES = 24  # moves of one or two devices timed by dispatch per step of the ranked search
RANKED_MAX_DEVICES = 40  # beyond this, pairs are too many to rank in a local search's time (1000 devices)
POLISH_NODES = 20_000  # best_server_order nodes per cut vector polished at the end (~0.2 s here)
PAIR_REACH = 3  # a descent's move of two devices tries cuts at most this many candidates from each one's own
SEARCH_ROUNDS = 30  # kicks of the relaxation search (a count: without a time limit every run ends alike)
SEARCH_KICK = 3  # devices a kick moves to random cuts
MOVES_SHARE = 0.4  # of the heuristic's budget: its moves' part when the relaxation search follows
RELAXATION_SEARCH_SHARE = 0.75  # of the heuristic's time left after its moves: the relaxation search's; then polish
TIMED_OPTIMA = 5  # the relaxation search's best local optima that get a server order


def relaxation_value(table, cuts) -> float:
    """Sum of completions of a cut vector in the preemptive relaxation (docs/optimiser.md): SRPT on the offloaded
    parts, each a job (release, server work), plus downloads and all-local times. `table[i][c]` holds device i's
    `relaxation_job` for cut c (`relaxation_table`)."""
    rows = [table[i][c] for i, c in enumerate(cuts)]
    return srpt_total_ms([row[:2] for row in rows if row[3]]) + sum(row[2] for row in rows)


def relaxation_table(instance: Instance, cut_sets) -> list[dict]:
    """Per device, its candidate cuts' `relaxation_job`s, by cut."""
    return [{c: relaxation_job(d, c) for c in cs} for d, cs in zip(instance.devices, cut_sets)]


def moves_of_one_or_two(twin_of, cuts) -> list[tuple[int, ...]]:
    """The devices to move together, one or two, once per distinct move: identical devices at the same cut are
    interchangeable (`twin_of`: each device's lowest-index twin), so moving either gives the same cut multiset.
    16 identical devices at one cut: 2 moves of one or two devices instead of 136."""
    state = [(twin_of[i], c) for i, c in enumerate(cuts)]
    singles = list({state[i]: (i,) for i in reversed(range(len(cuts)))}.values())
    pairs = {}
    for i, j in combinations(range(len(cuts)), 2):
        pairs.setdefault(tuple(sorted((state[i], state[j]))), (i, j))
    return sorted(singles) + sorted(pairs.values())


def moved(cut_sets, cuts, devices):
    """Every cut vector in which each of `devices` moves to another of its cuts and the others stay."""
    for choice in product(*([c for c in cut_sets[i] if c != cuts[i]] for i in devices)):
        trial = list(cuts)
        for i, c in zip(devices, choice):
            trial[i] = c
        yield trial


def ranked_move(instance: Instance, cut_sets, table, twin_of, best: Schedule, deadline: float) -> Schedule | None:
    """One step of the ranked search: every move of one device, or of two devices at once, to other cuts is
    ranked by its preemptive relaxation value (cheap: no layer-by-layer timing), and the RANKED_MOVES best are
    timed by dispatch. The best of them if it beats `best`, else None. Moves of two devices find what one
    device's moves cannot: on held-out heterogeneous instances the optimum often moves one device's cut earlier
    and another's later (one uses the server time the other leaves)."""
    moves = []
    for devices in moves_of_one_or_two(twin_of, best.cuts):
        if time.perf_counter() > deadline:
            break  # rank what is ranked so far
        moves += [(relaxation_value(table, trial), trial) for trial in moved(cut_sets, best.cuts, devices)]
    moves.sort()
    timed = [dispatch(instance, trial) for _, trial in moves[:RANKED_MOVES]]
    found = min(timed, key=lambda s: s.avg_delay_ms, default=None)
    return found if found is not None and found.avg_delay_ms < best.avg_delay_ms - TOL_MS else None


def relaxation_descent(cut_sets, table, twin_of, cuts, deadline: float, reach: int = PAIR_REACH) -> list[int]:
    """A local optimum of the preemptive relaxation's value around `cuts` (first improvement, until a pass finds
    nothing or the deadline): the cuts the relaxation prefers. Every single device's move is tried first, and only
    when none improves, moves of two devices, each to one of its candidate cuts at most `reach` places from its
    own on either side. All combinations of two devices' cuts took 10-17 s per descent at 40 devices (780 pairs,
    about 200 combinations each); the pairs that help move one device's cut a little earlier and another's a
    little later, so the nearby ones keep the descent's reach at a fraction of the cost."""
    best, value = list(cuts), relaxation_value(table, cuts)
    rank = [{c: k for k, c in enumerate(cs)} for cs in cut_sets]

    def nearby(i):
        k = rank[i][best[i]]
        return cut_sets[i][max(0, k - reach) : k + reach + 1]

    improved = True
    while improved:
        improved = False
        for devices in moves_of_one_or_two(twin_of, best):
            if len(devices) == 2 and improved:
                break  # a single move helped: try every single move again before the pairs
            if time.perf_counter() > deadline:
                return best
            options = cut_sets if len(devices) == 1 else {i: nearby(i) for i in devices}
            for trial in moved(options, best, devices):
                trial_value = relaxation_value(table, trial)
                if trial_value < value - TOL_MS:
                    best, value, improved = trial, trial_value, True
    return best


def relaxation_search(cut_sets, table, twin_of, cuts, deadline: float, rounds: int = SEARCH_ROUNDS) -> list[list[int]]:
    """Iterated local search on the preemptive relaxation's value: a descent from `cuts`, then `rounds` times a
    kick (SEARCH_KICK devices moved to cuts drawn at random, with a fixed seed) and a descent from there, going on
    from the result when its value is lower. Returns the distinct local optima found, lowest value first (ties:
    cut vector order). One descent settles what the moves of one or two devices can reach; on 24 to 40 different
    devices the kicks found cut vectors whose schedules are up to 2.1 % better (held-out seeds, 2026-12-07)."""
    rng = random.Random(0)
    current = relaxation_descent(cut_sets, table, twin_of, cuts, deadline)
    found = {tuple(current): relaxation_value(table, current)}
    for _ in range(rounds):
        if time.perf_counter() > deadline:
            break
        trial = list(current)
        for i in rng.sample(range(len(trial)), min(SEARCH_KICK, len(trial))):
            trial[i] = rng.choice(cut_sets[i])
        local = relaxation_descent(cut_sets, table, twin_of, trial, deadline)
        found[tuple(local)] = relaxation_value(table, local)
        if found[tuple(local)] < found[tuple(current)]:
            current = local
    return [list(c) for c, _ in sorted(found.items(), key=lambda item: (item[1], item[0]))]


def polish(instance: Instance, cuts, best: Schedule, deadline: float) -> Schedule:
    """The best server order for `cuts` that branch and bound (best_server_order) finds within POLISH_NODES
    nodes or the deadline, as a Schedule, if it beats `best`; else `best`. Dispatch's order can be a few per
    cent worse than the best one (held-out N = 12, seed 8: 2 %), which a few thousand nodes recover."""
    try:
        found = best_server_order(instance, cuts, best.avg_delay_ms * len(instance), [0], POLISH_NODES, Clock(deadline))
    except BudgetExhausted as exc:
        found = exc.order
    if found is None or found[0] / len(instance) >= best.avg_delay_ms - TOL_MS:
        return best
    return Schedule(instance, cuts, found[1])


def heuristic(instance: Instance, cut_sets=None, time_budget_s: float = 5.0, ranked: bool = True) -> Schedule:
    """Greedy local search over cuts (one device at a time), each cut vector timed by `dispatch`. For up to
    RANKED_MAX_DEVICES devices of at least two kinds: once no such move improves, a step of the ranked search
    (`ranked_move`), and again; then the result's cuts and the best cut vectors of an iterated local search on the
    relaxation's value (`relaxation_search`) get a better server order than dispatch's if a short branch and bound
    finds one (`polish`). Every step stops at the deadline.
    `ranked=False`: one device's moves only (the local search before 2026-12-07, benchmarks/bench_heuristic.py's
    reference)."""
    cut_sets = cut_sets or [candidate_cuts(d) for d in instance.devices]
    start = [c if c in cs else cs[-1] for c, cs in zip(independent_cuts(instance), cut_sets)]
    seeds = [start, [cs[-1] for cs in cut_sets], [cs[0] for cs in cut_sets]]
    best = min((dispatch(instance, s) for s in seeds), key=lambda s: s.avg_delay_ms)
    deadline = time.perf_counter() + time_budget_s
    devs = instance.devices
    # moving one of several identical devices from cut a to cut b gives the same cut multiset whichever
    # device moves: try each such move once per incumbent
    twin_of = [
        next(p for p in range(len(devs)) if devs[p].same_task(d) and cut_sets[p] == cut_sets[i])
        for i, d in enumerate(devs)
    ]
    # Identical devices (one class) skip the ranked step and the polish: there the preemptive bound usually proves
    # the single moves' result optimal (docs/optimiser.md, item 7), and on 60 points like the study's sweeps the
    # two steps found nothing better in twice the time (2026-12-07).
    different = len(set(twin_of)) > 1
    table = relaxation_table(instance, cut_sets) if ranked and different and len(devs) <= RANKED_MAX_DEVICES else None
    # with the relaxation search to follow, the moves get part of the budget (at 40 devices each ranked step takes
    # seconds, and the search finds more in that time)
    moves_until = deadline if table is None else time.perf_counter() + MOVES_SHARE * time_budget_s
    tried = set()
    improved = True
    while improved and time.perf_counter() < moves_until:
        improved = False
        for i, cs in enumerate(cut_sets):
            for c in cs:
                move = (twin_of[i], best.cuts[i], c)
                if c == best.cuts[i] or move in tried or time.perf_counter() > moves_until:
                    continue
                tried.add(move)
                cuts = list(best.cuts)
                cuts[i] = c
                cand = dispatch(instance, cuts)
                if cand.avg_delay_ms < best.avg_delay_ms - TOL_MS:
                    best, improved = cand, True
                    tried.clear()
        if not improved and table is not None and time.perf_counter() < moves_until:
            found = ranked_move(instance, cut_sets, table, twin_of, best, moves_until)
            if found is not None:
                best, improved = found, True
                tried.clear()
    if table is not None:
        # the best server order for these cuts, then for the relaxation's best cut vectors found around them
        best = polish(instance, best.cuts, best, deadline)
        now = time.perf_counter()
        until = now + RELAXATION_SEARCH_SHARE * (deadline - now)
        searched = relaxation_search(cut_sets, table, twin_of, best.cuts, until)
        for cuts in searched[:TIMED_OPTIMA]:
            if cuts != best.cuts:
                other = polish(instance, cuts, dispatch(instance, cuts), deadline)
                best = other if other.avg_delay_ms < best.avg_delay_ms - TOL_MS else best
    return best
