"""An exact oracle for tiny instances: every cut vector times every merge order of the server chains.

It shares no modelling with the MILP: for each cut vector it enumerates the interleavings of the devices'
server chains (each chain keeps its own layer order) and times each with the as-early-as-possible rule of
Schedule. A regular objective never gains from idle time that the rule removes, so the best of these is
optimal. A partial order is abandoned only when a valid lower bound already exceeds the best found; that
prunes, it never changes the answer.
"""

from __future__ import annotations

import itertools
from math import factorial, prod

from dnnpart.errors import DnnpartError
from dnnpart.optimiser.instance import Instance
from dnnpart.optimiser.schedule import Schedule

MAX_ORDERS = 2_000_000


class OracleTooLargeError(DnnpartError):
    """The instance has too many cut vectors x merge orders to enumerate."""


def n_merge_orders(chain_lengths) -> int:
    """Interleavings of chains of the given lengths: the multinomial coefficient."""
    return factorial(sum(chain_lengths)) // prod(factorial(n) for n in chain_lengths)


def count_orders(instance: Instance) -> int:
    return sum(
        n_merge_orders([d.n_layers - c for d, c in zip(instance.devices, cuts)])
        for cuts in itertools.product(*[range(d.n_layers + 1) for d in instance.devices])
    )


def _best_merge(instance: Instance, cuts, best_sum: float):
    """Lowest sum of completions over all merge orders with these cuts (None if none beats best_sum)."""
    devs = instance.devices
    n = len(devs)
    ready0 = [d.release_ms(c) for d, c in zip(devs, cuts)]
    fixed = sum(d.local_prefix_ms(c) for d, c in zip(devs, cuts) if c == d.n_layers)
    active = [i for i in range(n) if cuts[i] < devs[i].n_layers]
    tail = {i: [sum(devs[i].server_ms[j:]) for j in range(devs[i].n_layers + 1)] for i in active}
    best = [best_sum, None]
    nxt = {i: cuts[i] for i in active}  # 0-based index of the next server layer
    ready = {i: ready0[i] for i in active}
    order = []

    def bound(t, done_sum):
        lb = done_sum
        for i in active:
            if nxt[i] < devs[i].n_layers:
                lb += max(t, ready[i]) + tail[i][nxt[i]] + devs[i].download_ms
        return lb

    def dfs(t, done_sum, left):
        if left == 0:
            if done_sum < best[0] - 1e-12:
                best[0], best[1] = done_sum, list(order)
            return
        if bound(t, done_sum) >= best[0] - 1e-12:
            return
        for i in active:
            j = nxt[i]
            if j == devs[i].n_layers:
                continue
            start = max(t, ready[i])
            finish = start + devs[i].server_ms[j]
            saved = ready[i]
            nxt[i], ready[i] = j + 1, finish
            order.append((i, j + 1))
            last = j + 1 == devs[i].n_layers
            dfs(finish, done_sum + (finish + devs[i].download_ms if last else 0.0), left - 1)
            order.pop()
            nxt[i], ready[i] = j, saved

    dfs(0.0, fixed, sum(devs[i].n_layers - cuts[i] for i in active))
    return best[1]


def brute_force(instance: Instance, max_orders: int = MAX_ORDERS) -> Schedule:
    """The optimal schedule by enumeration; OracleTooLargeError beyond max_orders candidate orders."""
    total = count_orders(instance)
    if total > max_orders:
        raise OracleTooLargeError(
            f"brute force would enumerate {total} cut vectors x merge orders "
            f"(limit {max_orders}); use dnnpart.optimiser.solve for instances this large"
        )
    best_sched = None
    best_sum = float("inf")
    for cuts in itertools.product(*[range(d.n_layers + 1) for d in instance.devices]):
        order = _best_merge(instance, cuts, best_sum)
        if order is None:
            continue
        sched = Schedule(instance, cuts, order)
        total_ms = sum(sched.completion_ms)
        if total_ms < best_sum - 1e-9:
            best_sched, best_sum = sched, total_ms
    return best_sched
