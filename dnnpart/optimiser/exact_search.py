"""An exact combinatorial search for mostly different devices: cut choices by the nested preemptive search,
each promising cut vector's server order by branch and bound. No MILP."""

from __future__ import annotations

import heapq
import math
from itertools import product

from dnnpart.errors import DnnpartError
from dnnpart.optimiser.instance import Instance
from dnnpart.optimiser.relaxation import (
    BOUND_NODES,
    EXACT_GROUP,
    BudgetExhausted,
    Clock,
    PreemptiveRelaxation,
    nested_groups,
)
from dnnpart.optimiser.schedule import Schedule, suffix_sums


def best_server_order(
    instance: Instance, cuts, cutoff_ms: float, counter: list, max_nodes: int, clock: Clock | None = None
):
    """The best server order for fixed cuts if its sum of completions is below cutoff_ms (else None), as
    (sum of completions, order). Raises BudgetExhausted when counter[0] (shared node count) passes max_nodes.

    Branch and bound over the next layer to run, in as-early-as-possible timing. Only layers that can start
    before any other next layer could finish are branched on (active schedules hold an optimum for a regular
    objective); a node is bounded by the finished completions plus SRPT on what remains (each device's rest
    as one preemptive job, released when the server is free or the device is ready); and a node is dropped
    when a node with the same layers done reached the same point with the server free no later and a sum of
    finished completions no larger (the rest of the schedule depends only on those: every started device is
    ready by the time the server is free).
    """
    # Per offloading device, by its position p among them (the search's hot loop reads plain lists, not
    # devices and dicts: the same nodes in the same order, about twice as fast).
    devs = instance.devices
    active = [i for i, (d, c) in enumerate(zip(devs, cuts)) if c < d.n_layers]
    done0 = sum(d.local_prefix_ms(c) for d, c in zip(devs, cuts) if c == d.n_layers)
    positions = range(len(active))
    n_layers = [devs[i].n_layers for i in active]
    work = [devs[i].server_ms for i in active]
    download = [devs[i].download_ms for i in active]
    tail = [suffix_sums(devs[i].server_ms) for i in active]
    nxt = [cuts[i] for i in active]
    ready = [devs[i].release_ms(cuts[i]) for i in active]
    best = [cutoff_ms, None]
    order, seen = [], {}
    heappush, heappop = heapq.heappush, heapq.heappop

    def enter(t, done, left):
        """Count a node and bound it; its children (position, layer index, ready time before, finish, sum of
        finished completions) in visiting order, or None for a leaf or a pruned node."""
        counter[0] += 1
        if counter[0] > max_nodes:
            raise BudgetExhausted("nodes")
        if clock is not None:
            clock.check(counter[0])
        if left == 0:
            if done < best[0]:
                best[0], best[1] = done, list(order)
            return None
        live = [p for p in positions if nxt[p] < n_layers[p]]
        # SRPT on what remains: srpt_total_ms inlined, with the same float operations (so the same bound to the
        # last bit). The devices ready by t arrive together at t: their works, sorted, are the heap srpt_push
        # would build one by one (a zero work among them it would finish at t, as the loop below does).
        heap = sorted([tail[p][nxt[p]] for p in live if ready[p] <= t])
        now, rest = t, 0.0
        jobs = sorted([(ready[p], tail[p][nxt[p]]) for p in live if ready[p] > t])
        for release, w in jobs:
            while heap and now + heap[0] <= release:
                now += heappop(heap)
                rest += now
            if heap:
                heap[0] -= release - now
            heappush(heap, w)
            now = release
        for w in sorted(heap):
            now += w
            rest += now
        if done + rest + sum([download[p] for p in live]) >= best[0]:
            return None
        front = seen.setdefault(tuple(nxt), [])
        for t2, d2 in front:
            if t2 <= t and d2 <= done:
                return None
        front.append((t, done))
        starts = [t if ready[p] < t else ready[p] for p in live]
        ends = [start + work[p][nxt[p]] for start, p in zip(starts, live)]
        first_end = min(ends)
        # dispatch's choice first: ready before the others, then least work left (device index: no ties)
        branch = sorted(
            (ready[p] > t, tail[p][nxt[p]], active[p], p, end)
            for p, start, end in zip(live, starts, ends)
            if start < first_end or end == first_end
        )
        return [
            (p, nxt[p], ready[p], end, done + (end + download[p] if nxt[p] + 1 == n_layers[p] else 0.0))
            for *_, p, end in branch
        ]

    # Depth-first with an explicit stack (one server layer per level: deep chains would overflow Python's
    # recursion limit); each frame is [children, next child, layers left]; the child in progress is applied
    # to nxt/ready/order and undone when the stack returns to its frame.
    layers = sum(n_layers[p] - nxt[p] for p in positions)
    try:
        root = enter(0.0, done0, layers)
        stack = [] if root is None else [[root, 0, layers]]
        while stack:
            frame = stack[-1]
            children, k, left = frame
            if k > 0:  # undo the previous child
                p, j, saved = children[k - 1][:3]
                order.pop()
                nxt[p], ready[p] = j, saved
            if k == len(children):
                stack.pop()
                continue
            frame[1] = k + 1
            p, j, _, finish, done = children[k]
            nxt[p], ready[p] = j + 1, finish
            order.append((active[p], j + 1))
            grandchildren = enter(finish, done, left - 1)
            if grandchildren is not None:
                stack.append([grandchildren, 0, left - 1])
    except BudgetExhausted as exc:
        exc.order = None if best[1] is None else (best[0], best[1])  # the best order found by then
        raise
    return None if best[1] is None else (best[0], best[1])


SMALL_SHARE = 1e-3  # small devices may move the objective by at most this share of it in all (see small_groups)
SMALL_COMBOS = 256  # and have at most this many cut combinations among them


def small_groups(relax: PreemptiveRelaxation, groups, scale_ms: float, share: float = SMALL_SHARE):
    """Split the nested search's groups into (big, small). A class is small when its devices may run all local
    and their cut moves their own stand-alone completion little: the members' spreads H - min_c A(c) (all-local
    time minus the best release + server work + download) add up to at most `share` of `scale_ms` (a sum of
    completions) over the small classes, taken smallest first, with at most SMALL_COMBOS cut combinations among
    them. At least one group stays big."""
    spread = {}
    for k, _ in groups:
        local = [fixed for _, _, fixed, offloads in relax.classes[k] if not offloads]  # the all-local time H
        alone = [r + w + f if offloads else f for r, w, f, offloads in relax.classes[k]]
        spread[k] = max(local) - min(alone) if local else math.inf
    small, total, combos = set(), 0.0, 1
    for k, count in sorted(groups, key=lambda g: (spread[g[0]] * g[1], g[0])):
        more = combos * len(relax.classes[k]) ** count
        within = total + spread[k] * count <= share * scale_ms and more <= SMALL_COMBOS
        if not within or len(small) + 1 == len(groups):
            break
        small.add(k)
        total, combos = total + spread[k] * count, more
    return [g for g in groups if g[0] not in small], [g for g in groups if g[0] in small]


def exact_search(
    instance: Instance,
    cut_sets,
    cutoff_ms: float,
    max_nodes: int = BOUND_NODES,
    deadline: float | None = None,
    small_share: float = SMALL_SHARE,
):
    """An optimal schedule by combinatorial branch and bound, for instances the nested preemptive search
    handles (no class of identical devices larger than EXACT_GROUP, at least two classes).

    The nested search over cut choices (preemptive_bound) prunes with the relaxation's bounds; at each
    complete choice whose relaxation value is below the best so far, best_server_order finds the exact best
    server order. Returns the optimal Schedule, or None if no schedule beats cutoff_ms (an average: then the
    schedule that gave the cutoff is optimal). Raises BudgetExhausted past max_nodes (counted, deterministic)
    or the deadline, carrying the best schedule found below the cutoff by then (or None).

    Small devices (`small_groups`: those whose cut hardly changes their own completion, e.g. LeNet next to
    VGGs) are left out of the search over cuts, which would otherwise try every combination of their cuts
    under every choice of the others. Making a device all local never delays another (its server layers leave
    the order; as early as possible, nobody starts later) and gives it its all-local time H, so for any cuts y
    of the small devices S, with x the same choice with S all local:
        OPT(y) >= OPT(x) - sum over s in S of (H_s - A_s(y_s)),
    A_s(c) being s's stand-alone completion with cut c (release + server work + download; H for all local).
    At each choice of the other devices the search solves x exactly (with the cutoff raised by the largest
    such sum), which refutes every y at once when OPT(x) is that far above the cutoff, and otherwise bounds
    each y before its own server-order search. The search over the others is bounded as before plus the small
    devices' least stand-alone completions (a restriction: each finishes no earlier than alone).
    """
    n = len(instance)
    relax = PreemptiveRelaxation(instance, cut_sets, max_nodes, deadline)
    groups = nested_groups(relax)
    if groups is None:
        raise DnnpartError(f"exact_search needs at least two classes of at most {EXACT_GROUP} identical devices each")
    scale = min(cutoff_ms * n, sum(d.local_prefix_ms(d.n_layers) for d in instance.devices))
    groups, small = small_groups(relax, groups, scale, small_share)
    # per small device: (cut, H - A(cut)) for each of its candidates
    options = []
    for k, count in small:
        local = max(f for _, _, f, offloads in relax.classes[k] if not offloads)
        spread = [local - (r + w + f if off else f) for r, w, f, off in relax.classes[k]]
        options += [list(zip(cut_sets[i], spread)) for i in relax.members[k][:count]]
    small_ids = [i for k, count in small for i in relax.members[k][:count]]
    least = sum(count * min(r + w + f if off else f for r, w, f, off in relax.classes[k]) for k, count in small)
    widest = sum(max(s for _, s in opts) for opts in options)
    combos = sorted(product(*options), key=lambda combo: -sum(s for _, s in combo))  # largest bound first
    counter = [0]
    best = [math.inf, None]  # the best sum of completions found below the cutoff, and its (cuts, order)

    def order(cuts, cutoff):
        counter[0] = relax.nodes
        try:
            return best_server_order(instance, cuts, cutoff, counter, relax.max_nodes, relax.clock)
        finally:
            relax.nodes = counter[0]

    def leaf(chosen, cutoff):
        cuts = [0] * n
        filled = {}
        for k, p in chosen:  # identical devices are interchangeable: members take the class's cuts in turn
            i = relax.members[k][filled.get(k, 0)]
            filled[k] = filled.get(k, 0) + 1
            cuts[i] = cut_sets[i][p]
        cutoff += least  # the search over the others counts the small devices' least completions only
        for i in small_ids:
            cuts[i] = instance.devices[i].n_layers
        found = order(cuts, cutoff + widest)  # x: the small devices all local
        if found is None:
            return None  # OPT(x) >= cutoff + widest: no choice of the small devices beats the cutoff
        local_opt, value = found[0], math.inf
        if local_opt < cutoff:
            value, best[:] = local_opt, [local_opt, (list(cuts), found[1])]
        for combo in combos:
            if local_opt - sum(s for _, s in combo) >= min(value, cutoff):
                break  # this bound only grows along combos
            trial = list(cuts)
            for i, (c, _) in zip(small_ids, combo):
                trial[i] = c
            if trial == cuts:
                continue
            found = order(trial, min(value, cutoff))
            if found is not None:
                value, best[:] = found[0], [found[0], (trial, found[1])]
        return None if value == math.inf else value - least

    try:
        relax._search(groups, 0, (cutoff_ms * n - least, []), leaf=leaf)
    except BudgetExhausted as exc:
        # not proven, but the schedules found on the way are real: the caller keeps the best as its incumbent
        exc.schedule = None if best[1] is None else Schedule(instance, *best[1])
        raise
    if best[1] is None:
        return None
    cuts, order_found = best[1]
    return Schedule(instance, cuts, order_found)
