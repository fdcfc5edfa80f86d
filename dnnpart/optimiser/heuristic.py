"""A fast schedule: list scheduling for fixed cuts, and a greedy local search over cuts around it."""

from __future__ import annotations

import heapq
import time

from dnnpart.optimiser.cuts import candidate_cuts, independent_cuts
from dnnpart.optimiser.instance import Instance
from dnnpart.optimiser.schedule import TOL_MS, Schedule


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


def suffix_sums(values) -> list[float]:
    out = [0.0] * (len(values) + 1)
    for j in range(len(values) - 1, -1, -1):
        out[j] = out[j + 1] + values[j]
    return out


def heuristic(instance: Instance, cut_sets=None, time_budget_s: float = 5.0) -> Schedule:
    """Greedy local search over cuts (one device at a time), each cut vector timed by `dispatch`."""
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
    tried = set()
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        for i, cs in enumerate(cut_sets):
            for c in cs:
                move = (twin_of[i], best.cuts[i], c)
                if c == best.cuts[i] or move in tried or time.perf_counter() > deadline:
                    continue
                tried.add(move)
                cuts = list(best.cuts)
                cuts[i] = c
                cand = dispatch(instance, cuts)
                if cand.avg_delay_ms < best.avg_delay_ms - TOL_MS:
                    best, improved = cand, True
                    tried.clear()
    return best
