"""An exact combinatorial search for mostly different devices: cut choices by the nested preemptive search,
each promising cut vector's server order by branch and bound. No MILP."""

from __future__ import annotations

import heapq

from dnnpart.errors import DnnpartError
from dnnpart.optimiser.heuristic import suffix_sums
from dnnpart.optimiser.instance import Instance
from dnnpart.optimiser.relaxation import (
    BOUND_NODES,
    EXACT_GROUP,
    BudgetExhausted,
    Clock,
    PreemptiveRelaxation,
    nested_groups,
)
from dnnpart.optimiser.schedule import Schedule


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
    return None if best[1] is None else (best[0], best[1])


def exact_search(
    instance: Instance, cut_sets, cutoff_ms: float, max_nodes: int = BOUND_NODES, deadline: float | None = None
):
    """An optimal schedule by combinatorial branch and bound, for instances the nested preemptive search
    handles (no class of identical devices larger than EXACT_GROUP, at least two classes).

    The nested search over cut choices (preemptive_bound) prunes with the relaxation's bounds; at each
    complete choice whose relaxation value is below the best so far, best_server_order finds the exact best
    server order. Returns the optimal Schedule, or None if no schedule beats cutoff_ms (an average: then the
    schedule that gave the cutoff is optimal). Raises BudgetExhausted past max_nodes (counted, deterministic).
    """
    n = len(instance)
    relax = PreemptiveRelaxation(instance, cut_sets, max_nodes, deadline)
    groups = nested_groups(relax)
    if groups is None:
        raise DnnpartError(f"exact_search needs at least two classes of at most {EXACT_GROUP} identical devices each")
    counter = [0]
    orders = {}

    def leaf(chosen, cutoff):
        cuts = [0] * n
        filled = {}
        for k, p in chosen:  # identical devices are interchangeable: members take the class's cuts in turn
            i = relax.members[k][filled.get(k, 0)]
            filled[k] = filled.get(k, 0) + 1
            cuts[i] = cut_sets[i][p]
        counter[0] = relax.nodes
        found = best_server_order(instance, cuts, cutoff, counter, relax.max_nodes, relax.clock)
        relax.nodes = counter[0]
        if found is None:
            return None
        orders[found[0]] = (cuts, found[1])
        return found[0]

    total, _ = relax._search(groups, 0, (cutoff_ms * n, []), leaf=leaf)
    if total not in orders:
        return None
    cuts, order = orders[total]
    return Schedule(instance, cuts, order)
