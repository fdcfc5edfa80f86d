"""Choose every device's cut and the server schedule: a Pyomo MILP solved by HiGHS.

Two formulations of the same model (docs/optimiser.md):

- "exact" (default): one-hot cut variables over dominance-pruned cut candidates, one start time per
  server layer, and per pair of devices a choice among "A entirely before B", "B entirely before A",
  "B runs inside A's chain between A's layers k and k+1" and the mirror. That laminar pattern is
  enough: two devices never need to interrupt each other both ways (docs/optimiser.md gives the
  exchange argument; the brute-force oracle checks it). Big-M values come from each device's all-local
  time, which no optimal completion exceeds; identical devices are ordered by completion.
- "paper": eq. 10-16 as written: x_ij binaries, s/f per layer, eq. 15 linearised with x_{i,k+1}-x_{ik},
  and a big-M disjunction for every pair of layers of different devices.

For mostly different devices `solve` first tries exact_search (branch and bound over cuts and server orders,
no MILP); for more than LARGE_N devices with a time limit it reports the heuristic with the time-indexed LP
bound (dnnpart.bounds). Every result is re-timed by Schedule (as early as possible in the solver's server
order) and validated.
"""
from __future__ import annotations

import heapq
import math
import sys
import time
from dataclasses import dataclass, field

import pyomo.environ as pyo

from dnnpart.bounds import time_indexed_bound
from dnnpart.errors import DnnpartError
from dnnpart.instance import Device, Instance
from dnnpart.schedule import Schedule, ScheduleError, block_order, check_cuts

FORMULATIONS = ("exact", "paper")
LARGE_N = 40  # with a time limit, larger instances get the heuristic and the no-contention bound only
TOL_MS = 1e-6
PROOF_GAP = 1e-9  # relative gap at which a schedule counts as proven optimal (as HiGHS's mip_rel_gap)


@dataclass
class Solution:
    """A solved instance: the schedule (validated), its objective, and what the solver proved."""

    avg_delay_ms: float
    cuts: list[int]
    status: str
    proven_optimal: bool
    gap: float | None
    bound_ms: float | None
    solve_time_s: float
    formulation: str
    schedule: Schedule = field(repr=False)

    def to_dict(self) -> dict:
        return {"avg_delay_ms": self.avg_delay_ms, "cuts": list(self.cuts), "status": self.status,
                "proven_optimal": self.proven_optimal, "gap": self.gap, "bound_ms": self.bound_ms,
                "solve_time_s": self.solve_time_s, "formulation": self.formulation,
                "completion_ms": list(self.schedule.completion_ms),
                "schedule": self.schedule.to_frame().to_dict(orient="records")}


# ----------------------------------------------------------------------------------------------- cuts
def candidate_cuts(device: Device) -> list[int]:
    """Cuts that no larger cut dominates.

    Cut c' > c dominates c when release(c') <= release(c) + server work of layers c+1..c': with cut c the
    server could not finish layer c' before c' would have arrived anyway, so cutting at c' frees server
    time and delays nothing. The all-local cut M is always kept, and it dominates every cut whose stand-alone
    completion is not below the all-local time H: a device with such a cut finishes at or after H, and
    switching it to all-local never makes it later and only removes server work (docs/optimiser.md).
    """
    m = device.n_layers
    local = device.local_prefix_ms(m)
    keep = []
    for c in range(m + 1):
        dominated = any(device.release_ms(c2) <= device.release_ms(c) + sum(device.server_ms[c:c2]) + TOL_MS
                        for c2 in range(c + 1, m + 1)) or (c < m and device.alone_ms(c) >= local)
        if not dominated:
            keep.append(c)
    return keep


def _cut_sets(instance: Instance, fixed_cuts) -> list[list[int]]:
    if fixed_cuts is None:
        return [candidate_cuts(d) for d in instance.devices]
    return [[c] for c in check_cuts(instance, fixed_cuts)]


# ------------------------------------------------------------------------------------------ heuristic
def dispatch(instance: Instance, cuts) -> Schedule:
    """Time given cuts with a simple rule: whenever the server is free, run the next layer of the released
    device with the least remaining server work (ties: earliest release, then device order)."""
    devs = instance.devices
    release = [d.release_ms(c) for d, c in zip(devs, cuts)]
    nxt = {i: c for i, (d, c) in enumerate(zip(devs, cuts)) if c < d.n_layers}
    tail = {i: _suffix_sums(devs[i].server_ms) for i in nxt}  # remaining server work from each layer on
    ready = dict((i, release[i]) for i in nxt)
    t, order = 0.0, []
    while nxt:
        avail = [i for i in nxt if ready[i] <= t + TOL_MS]
        if not avail:
            t = min(ready[i] for i in nxt)
            continue
        i = min(avail, key=lambda k: (tail[k][nxt[k]], release[k], k))
        j = nxt[i]
        t = max(t, ready[i]) + devs[i].server_ms[j]
        ready[i] = t
        order.append((i, j + 1))
        nxt[i] += 1
        if nxt[i] == devs[i].n_layers:
            del nxt[i]
    return Schedule(instance, cuts, order)


def _suffix_sums(values) -> list[float]:
    out = [0.0] * (len(values) + 1)
    for j in range(len(values) - 1, -1, -1):
        out[j] = out[j + 1] + values[j]
    return out


def independent_cuts(instance: Instance) -> list[int]:
    """Each device's best cut if it had the server to itself (smallest cut on ties)."""
    return [min(range(d.n_layers + 1), key=lambda c: (d.alone_ms(c), c)) for d in instance.devices]


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
    twin_of = [next(p for p in range(len(devs)) if devs[p].same_task(d) and cut_sets[p] == cut_sets[i])
               for i, d in enumerate(devs)]
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


# ------------------------------------------------------------------------------------------ lower bound
BOUND_NODES = 1_500_000  # search nodes of preemptive_bound before it gives up (a count, not a clock: deterministic)
BOUND_NODES_PER_S = 50_000  # with a time limit, at most this many nodes per second of it (~1/4 of it here)
EXACT_NODES = 3_000_000  # budget of exact_search (doubled in nested mode: ~20 s here); it replaces the MILP
EXACT_NODES_PER_S = 100_000  # with a time limit, at most this many per second of it (~1/3 of it here)
EXACT_GROUP = 6  # groups of up to this many identical devices get their exact relaxation optimum as a bound


class _BoundBudget(Exception):
    """preemptive_bound ran out of search nodes."""


def srpt_total_ms(jobs) -> float:
    """Sum of finish times of (release_ms, work_ms) jobs on one machine with free preemption, scheduled
    shortest-remaining-work-first: the optimum of that relaxation (Schrage 1968)."""
    state = SRPT_START
    for release, work in sorted(jobs):
        state = srpt_push(state, release, work)
    return srpt_value(state)


SRPT_START = (0.0, 0.0, [])  # SRPT state: (time of the last arrival, sum of finishes so far, remaining works)


def srpt_push(state, release: float, work: float):
    """The SRPT state after one more job arrives; arrivals must come in nondecreasing release order."""
    t, done, heap = state
    heap = list(heap)
    while heap and t + heap[0] <= release:
        t += heapq.heappop(heap)
        done += t
    if heap:
        heap[0] -= release - t  # the job in service ran until the arrival (the heap order is kept)
    heapq.heappush(heap, work)
    return release, done, heap


def srpt_value(state) -> float:
    """Sum of all finish times if no more jobs arrive: the rest in shortest-remaining-work order."""
    t, done, heap = state
    for work in sorted(heap):
        t += work
        done += t
    return done


class _PreemptiveRelaxation:
    """Branch and bound over cut choices for the preemptive relaxation (see preemptive_bound).

    Identical devices form a class and pick cuts in nondecreasing order (any multiset once). A partial choice
    S is bounded by SRPT(S) + the relaxation optimum of each undecided group alone: restricting a schedule
    of S ∪ T1 ∪ T2 to any one part gives a feasible schedule of that part, so the sum of the parts' optima is
    a lower bound. The optimum of "R devices of class k with cuts from the p-th candidate on" is memoised
    and computed by the same search (its bounds use fewer devices, so the recursion ends).

    With `nested` (used when no class is larger than EXACT_GROUP, i.e. mostly different devices), the
    undecided groups after g are bounded by their optimum TOGETHER (a "Russian doll" search: the optimum of
    each suffix of the group list, computed by the same search, shortest suffix first) instead of the sum of
    their optima alone: the bound then misses only the interaction between decided and undecided devices.
    """

    def __init__(self, instance: Instance, cut_sets, max_nodes: int):
        self.classes, self.sizes = [], []
        for i, d in enumerate(instance.devices):
            for k, members in enumerate(self.sizes):
                first = members[0]
                if instance.devices[first].same_task(d) and cut_sets[first] == cut_sets[i]:
                    members.append(i)
                    break
            else:
                self.sizes.append([i])
                # (release, work, fixed part of the completion, offloads?) per candidate cut
                self.classes.append([(d.release_ms(c), d.server_work_ms(c),
                                      d.download_ms if c < d.n_layers else d.local_prefix_ms(c), c < d.n_layers)
                                     for c in cut_sets[i]])
        self.members = self.sizes
        self.sizes = [len(m) for m in self.members]
        self.nodes, self.max_nodes, self.memo = 0, max_nodes, {}
        self.nested, self.suffix_memo = False, {}

    def class_best(self, k: int, count: int, pos: int) -> tuple[float, list]:
        """Relaxation optimum (sum of completions) and its choice for `count` devices of class k using
        candidates pos.. only."""
        key = (k, count, pos)
        if key not in self.memo:
            if count == 0:
                self.memo[key] = (0.0, [])
            else:  # seed: one more device added to the best choice for count - 1
                _, prev = self.class_best(k, count - 1, pos)
                seed = min((self._value([(k, p) for p in prev + [q]]), prev + [q])
                           for q in range(pos, len(self.classes[k])))
                self.memo[key] = self._search([(k, count)], pos, seed)
        return self.memo[key]

    def group_bound(self, k: int, count: int, pos: int) -> float:
        """A lower bound on class_best(k, count, pos)[0]: exact for small groups; larger ones split into
        groups of EXACT_GROUP devices (the optimum is superadditive by the same restriction argument)."""
        whole, rest = divmod(count, EXACT_GROUP)
        if whole == 0 or (whole == 1 and rest == 0):
            return self.class_best(k, count, pos)[0]
        return whole * self.class_best(k, EXACT_GROUP, pos)[0] + self.class_best(k, rest, pos)[0]

    def _value(self, chosen) -> float:
        jobs = [self.classes[k][p][:2] for k, p in chosen if self.classes[k][p][3]]
        return srpt_total_ms(jobs) + sum(self.classes[k][p][2] for k, p in chosen)

    def _search(self, groups, first_pos: int, incumbent: tuple[float, list], leaf=None) -> tuple[float, list]:
        """Lowest relaxation value over choices for groups [(class, count), ...], the first group using
        candidates first_pos.. only; subtrees whose bound is not below the incumbent are skipped. With
        `leaf(chosen, cutoff)` a complete choice is worth what leaf returns (None: nothing below cutoff)."""
        slots = [(g, k) for g, (k, count) in enumerate(groups) for _ in range(count)]
        later = [0.0] * (len(groups) + 1)  # a bound on the optimum of groups g.. (each alone, or together)
        for g in range(len(groups) - 1, 0, -1):
            later[g] = later[g + 1] + self.group_bound(*groups[g], 0)
            if self.nested:
                later[g] = max(later[g], self.suffix_best(tuple(groups[g:]))[0])
        best = list(incumbent)
        chosen, jobs = [], []

        def dfs(depth: int, fixed: float, pos: int, state):
            self.nodes += 1
            if self.nodes > self.max_nodes:
                raise _BoundBudget
            value = srpt_value(state) + fixed
            if depth == len(slots):
                if value < best[0] and leaf is not None:  # the exact value of this choice, if below best
                    value = leaf(list(chosen), best[0])
                if value is not None and value < best[0]:
                    best[0], best[1] = value, [p for _, p in chosen]
                return
            g, k = slots[depth]
            left = groups[0][1]  # devices of group g still to choose
            if depth > 0:
                if slots[depth - 1][0] != g:
                    pos = 0
                left = sum(1 for s in slots[depth:] if s[0] == g)
                rest = self.group_bound(k, left, pos) + later[g + 1]
                if left == groups[g][1] and pos == 0:  # group g untouched: all later groups together
                    rest = max(rest, later[g])
                if value + rest >= best[0]:
                    return
            if self.nested:
                visit_sorted(depth, fixed, pos, state, g, k, left)
                return
            for p in range(pos, len(self.classes[k])):
                release, work, fixed_p, offloads = self.classes[k][p]
                chosen.append((k, p))
                child = state
                if offloads:
                    jobs.append((release, work))
                    if release >= state[0]:  # arrivals in release order: continue the parent's SRPT run
                        child = srpt_push(state, release, work)
                    else:  # a later class released earlier: rerun SRPT from the start
                        child = SRPT_START
                        for job in sorted(jobs):
                            child = srpt_push(child, *job)
                dfs(depth + 1, fixed + fixed_p, p, child)
                if offloads:
                    jobs.pop()
                chosen.pop()

        def visit_sorted(depth, fixed, pos, state, g, k, left):
            """The nested search's children: all evaluated first (counted as nodes), visited most promising
            first. When the child is the last device of group g, the bound of what follows is later[g + 1]
            for every child, so the first child that fails it ends the loop."""
            children = []
            for p in range(pos, len(self.classes[k])):
                release, work, fixed_p, offloads = self.classes[k][p]
                child = state
                if offloads:
                    if release >= state[0]:
                        child = srpt_push(state, release, work)
                    else:
                        child = SRPT_START
                        for job in sorted(jobs + [(release, work)]):
                            child = srpt_push(child, *job)
                children.append((srpt_value(child) + fixed + fixed_p, p, child))
            self.nodes += len(children)
            children.sort(key=lambda c: c[:2])
            for value, p, child in children:
                if left == 1 and value + later[g + 1] >= best[0]:
                    break
                release, work, fixed_p, offloads = self.classes[k][p]
                chosen.append((k, p))
                if offloads:
                    jobs.append((release, work))
                dfs(depth + 1, fixed + fixed_p, p, child)
                if offloads:
                    jobs.pop()
                chosen.pop()

        dfs(0, 0.0, first_pos, SRPT_START)
        return best[0], best[1]

    def suffix_best(self, groups: tuple) -> tuple[float, list]:
        """Relaxation optimum (sum of completions) and its choice for the groups together; memoised. The
        search starts from the optimum of groups[1:] plus the best single candidate for the first group."""
        if groups not in self.suffix_memo:
            (k, count), rest = groups[0], groups[1:]
            tail = [(k2, p) for k2, p in zip([k2 for k2, c in rest for _ in range(c)],
                                             self.suffix_best(rest)[1] if rest else [])]
            seed = min((self._value([(k, q)] * count + tail), [q] * count + [p for _, p in tail])
                       for q in range(len(self.classes[k])))
            self.suffix_memo[groups] = self._search(list(groups), 0, seed)
        return self.suffix_memo[groups]


def preemptive_bound(instance: Instance, cut_sets=None, cutoff_ms: float | None = None,
                     max_nodes: int = BOUND_NODES) -> float | None:
    """A lower bound on the optimal average completion time, or None if the search needs more nodes.

    Relaxation: the server may preempt a device at any moment, not only between layers. With cut c a device
    is then a job released at r(c) with W(c) ms of server work (completion + its download), or finishes at
    its all-local time; for fixed cuts the relaxation's optimum is SRPT's, and a branch and bound over the
    cut choices (identical devices as multisets) finds the best. Every schedule of the model is a schedule
    of the relaxation, so the value is a valid bound; on identical zoo devices it usually meets the optimum.
    With `cutoff_ms` (an average) the search only looks for values below it and returns min(relaxation
    optimum, cutoff): a valid bound either way, found much faster when the cutoff is a good schedule's value.
    """
    cut_sets = cut_sets or [candidate_cuts(d) for d in instance.devices]
    n = len(instance)
    relax = _PreemptiveRelaxation(instance, cut_sets, max_nodes)
    groups = _nested_groups(relax) or [(k, size) for k, size in enumerate(relax.sizes)]
    start = (math.inf, []) if cutoff_ms is None else (cutoff_ms * n, [])
    try:
        if len(groups) == 1:
            total = relax.class_best(0, n, 0)[0] if cutoff_ms is None else relax._search(groups, 0, start)[0]
        else:
            total = relax._search(groups, 0, start)[0]
    except _BoundBudget:
        return None
    return total / n * (1 - 1e-12)  # float rounding in the sums must not make the bound invalid


def best_server_order(instance: Instance, cuts, cutoff_ms: float, counter: list, max_nodes: int):
    """The best server order for fixed cuts if its sum of completions is below cutoff_ms (else None), as
    (sum of completions, order). Raises _BoundBudget when counter[0] (shared node count) passes max_nodes.

    Branch and bound over the next layer to run, in as-early-as-possible timing. Only layers that can start
    before any other next layer could finish are branched on (active schedules hold an optimum for a regular
    objective); a node is bounded by the finished completions plus SRPT on what remains (each device's rest
    as one preemptive job, released when the server is free or the device is ready); and a node is dropped
    when a node with the same layers done reached the same point with the server free no later and a sum of
    finished completions no larger (the rest of the schedule depends only on those: every started device is
    ready by the time the server is free).
    """
    devs = instance.devices
    active = [i for i, (d, c) in enumerate(zip(devs, cuts)) if c < d.n_layers]
    done0 = sum(d.local_prefix_ms(c) for d, c in zip(devs, cuts) if c == d.n_layers)
    tail = {i: _suffix_sums(devs[i].server_ms) for i in active}
    nxt = {i: cuts[i] for i in active}
    ready = {i: devs[i].release_ms(cuts[i]) for i in active}
    best = [cutoff_ms, None]
    order, seen = [], {}

    def dfs(t, done, left):
        counter[0] += 1
        if counter[0] > max_nodes:
            raise _BoundBudget
        if left == 0:
            if done < best[0]:
                best[0], best[1] = done, list(order)
            return
        live = [i for i in active if nxt[i] < devs[i].n_layers]
        rest = srpt_total_ms([(max(t, ready[i]), tail[i][nxt[i]]) for i in live])
        if done + rest + sum(devs[i].download_ms for i in live) >= best[0]:
            return
        front = seen.setdefault(tuple(nxt[i] for i in active), [])
        if any(t2 <= t and d2 <= done for t2, d2 in front):
            return
        front.append((t, done))
        first_end = min(max(t, ready[i]) + devs[i].server_ms[nxt[i]] for i in live)
        branch = [i for i in live if max(t, ready[i]) < first_end
                  or max(t, ready[i]) + devs[i].server_ms[nxt[i]] == first_end]
        branch.sort(key=lambda i: (ready[i] > t, tail[i][nxt[i]], i))  # dispatch's choice first
        for i in branch:
            j, saved = nxt[i], ready[i]
            finish = max(t, saved) + devs[i].server_ms[j]
            nxt[i], ready[i] = j + 1, finish
            order.append((i, j + 1))
            last = j + 1 == devs[i].n_layers
            dfs(finish, done + (finish + devs[i].download_ms if last else 0.0), left - 1)
            order.pop()
            nxt[i], ready[i] = j, saved

    dfs(0.0, done0, sum(devs[i].n_layers - cuts[i] for i in active))
    return None if best[1] is None else (best[0], best[1])


def exact_search(instance: Instance, cut_sets, cutoff_ms: float, max_nodes: int = BOUND_NODES):
    """An optimal schedule by combinatorial branch and bound, for instances the nested preemptive search
    handles (no class of identical devices larger than EXACT_GROUP, at least two classes).

    The nested search over cut choices (preemptive_bound) prunes with the relaxation's bounds; at each
    complete choice whose relaxation value is below the best so far, best_server_order finds the exact best
    server order. Returns the optimal Schedule, or None if no schedule beats cutoff_ms (an average: then the
    schedule that gave the cutoff is optimal). Raises _BoundBudget past max_nodes (counted, deterministic).
    """
    n = len(instance)
    relax = _PreemptiveRelaxation(instance, cut_sets, max_nodes)
    groups = _nested_groups(relax)
    if groups is None:
        raise DnnpartError("exact_search needs at least two classes of at most "
                           f"{EXACT_GROUP} identical devices each")
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
        found = best_server_order(instance, cuts, cutoff, counter, relax.max_nodes)
        relax.nodes = counter[0]
        if found is None:
            return None
        orders[found[0]] = (cuts, found[1])
        return found[0]

    depth = sys.getrecursionlimit()
    sys.setrecursionlimit(max(depth, 1000 + 2 * sum(d.n_layers for d in instance.devices)))
    try:
        total, _ = relax._search(groups, 0, (cutoff_ms * n, []), leaf=leaf)
    finally:
        sys.setrecursionlimit(depth)
    if total not in orders:
        return None
    cuts, order = orders[total]
    return Schedule(instance, cuts, order)


def _nested_groups(relax: "_PreemptiveRelaxation"):
    """The group list of the nested search, or None if it does not apply: at least two classes, none larger
    than EXACT_GROUP. Turns nested mode on. Groups are ordered so that those that finish latest alone come
    first: the nested suffixes then hold the small ones (cheap to solve) and the bound of a partial choice
    includes the big ones' contention."""
    groups = [(k, size) for k, size in enumerate(relax.sizes)]
    if len(groups) < 2 or max(relax.sizes) > EXACT_GROUP:
        return None
    relax.nested = True
    relax.max_nodes *= 2  # it counts each child twice (evaluated, then visited)
    groups.sort(key=lambda g: -min(r + w + f if off else f for r, w, f, off in relax.classes[g[0]]))
    return groups


# --------------------------------------------------------------------------------------------- models
def classes_root(twin: dict, i: int) -> int:
    """The lowest-index device identical to device i."""
    while i in twin:
        i = twin[i]
    return i


def _build_exact(instance: Instance, cut_sets) -> tuple[pyo.ConcreteModel, callable]:
    devs = instance.devices
    n = len(devs)
    m = pyo.ConcreteModel("dnnpart_exact")
    horizon = [d.local_prefix_ms(d.n_layers) for d in devs]  # no optimal completion is later (docs)
    m.z = pyo.Var([(i, c) for i in range(n) for c in cut_sets[i]], domain=pyo.Binary)
    m.C = pyo.Var(range(n), bounds=lambda _, i: (min(devs[i].alone_ms(c) for c in cut_sets[i]), horizon[i]))
    m.one_cut = pyo.Constraint(range(n), rule=lambda _, i: sum(m.z[i, c] for c in cut_sets[i]) == 1)
    first = [min(cs) for cs in cut_sets]  # layers first[i]+1..M_i may run on the server
    serv = [(i, j) for i in range(n) for j in range(first[i] + 1, devs[i].n_layers + 1)]
    m.s = pyo.Var(serv, bounds=lambda _, i, j: (0.0, horizon[i]))
    local_all = {i: (m.z[i, devs[i].n_layers] if devs[i].n_layers in cut_sets[i] else 0) for i in range(n)}

    def on_server(i, j):  # 1 if layer j of device i runs on the server
        return sum(m.z[i, c] for c in cut_sets[i] if c < j)

    def finish(i, j):  # finish of server layer j (equals its start when j runs locally)
        return m.s[i, j] + devs[i].server_ms[j - 1] * on_server(i, j)

    m.cons = pyo.ConstraintList()
    for i, d in enumerate(devs):
        m.cons.add(m.C[i] >= sum(m.z[i, c] * d.alone_ms(c) for c in cut_sets[i]))
        if first[i] == d.n_layers:
            continue
        for j in range(first[i] + 1, d.n_layers + 1):
            # earliest start of layer j given the cut: release plus the server work before it
            m.cons.add(m.s[i, j] >= sum(m.z[i, c] * (d.release_ms(c) + sum(d.server_ms[c:j - 1]))
                                        for c in cut_sets[i] if c < j))
            if j < d.n_layers:
                m.cons.add(m.s[i, j + 1] >= finish(i, j))
        m.cons.add(m.C[i] >= finish(i, d.n_layers) + d.download_ms * (1 - local_all[i]))
    # identical devices are interchangeable: order their completions (then only "i first" patterns remain)
    twin = {}
    for i in range(n):
        for p in range(i):
            if devs[p].same_task(devs[i]) and cut_sets[p] == cut_sets[i]:
                twin[i] = p
                break
    for i, p in twin.items():
        m.cons.add(m.C[p] <= m.C[i])
    # Energy cuts for each class of identical devices (ordered by completion): every device of the class up
    # to the k-th that is released at or after t0 is served within [t0, C_k].
    classes = {}
    for i in range(n):
        classes.setdefault(i if i not in twin else classes_root(twin, i), []).append(i)
    for members in classes.values():
        d = devs[members[0]]
        offl = [c for c in cut_sets[members[0]] if c < d.n_layers]
        for t0 in sorted({d.release_ms(c) for c in offl}):
            late = [c for c in offl if d.release_ms(c) >= t0 - TOL_MS]
            for k, i in enumerate(members):
                work = sum(m.z[g, c] * d.server_work_ms(c) for g in members[:k + 1] for c in late)
                m.cons.add(m.C[i] >= work + (t0 + d.download_ms) * sum(m.z[i, c] for c in late))
        for prev, i in zip(members, members[1:]):
            # both offload: the later-finishing one's last server layer runs after the other's completion
            m.cons.add(m.C[i] >= m.C[prev] + (d.server_ms[-1]) * (on_server(i, d.n_layers)
                                                                    + on_server(prev, d.n_layers) - 1))

    def nest_fits(a, b, k):
        """Can b's whole server part run between a's layers k and k+1 with both done by their all-local
        times? (Time windows only; a pattern that fails here cannot be optimal.)"""
        da, db = devs[a], devs[b]
        offload_b = [c for c in cut_sets[b] if c < db.n_layers]
        earliest_end_b = min(db.release_ms(c) + db.server_work_ms(c) for c in offload_b)
        latest_resume_a = horizon[a] - da.download_ms - da.server_work_ms(k)
        earliest_k_a = min(da.release_ms(c) + sum(da.server_ms[c:k]) for c in cut_sets[a] if c < k)
        latest_start_b = max(horizon[b] - db.download_ms - db.server_work_ms(c) for c in offload_b)
        return earliest_end_b <= latest_resume_a + TOL_MS and earliest_k_a <= latest_start_b + TOL_MS

    m.v = pyo.Var(pyo.Any, dense=False, domain=pyo.Binary)
    for i in range(n):
        if first[i] == devs[i].n_layers:
            continue
        for p in range(i + 1, n):
            if first[p] == devs[p].n_layers:
                continue
            symmetric = classes_root(twin, p) == classes_root(twin, i)
            # (a, b, k): b runs inside a's chain after a's layer k; k = first[a] means b entirely before a,
            # k = M_a means a entirely before b. Mirror patterns (a = p) need only interior k.
            options = [(i, p, k) for k in range(first[i], devs[i].n_layers + 1)]
            options += [(p, i, k) for k in range(first[p] + 1, devs[p].n_layers)]
            if symmetric:  # with C_i <= C_p only "i before p" and "i inside p" remain
                options = [(a, b, k) for a, b, k in options if a == p or k == devs[i].n_layers]
            options = [(a, b, k) for a, b, k in options if k in (first[a], devs[a].n_layers) or nest_fits(a, b, k)]
            relax = local_all[i] + local_all[p]
            chosen = []
            for a, b, k in options:
                var = m.v[a, b, k]
                chosen.append(var)
                big_a, big_b = horizon[a], horizon[b]  # bound every (phantom) start/finish of the device
                if k < devs[a].n_layers:  # a's layer k+1 waits for b's last server layer
                    m.cons.add(m.s[a, k + 1] >= finish(b, devs[b].n_layers) - big_b * (1 - var + relax))
                if k > first[a]:  # b's first server layer waits for a's layer k
                    m.cons.add(m.s[b, first[b] + 1] >= finish(a, k) - big_a * (1 - var + relax))
            m.cons.add(sum(chosen) == 1)
    m.obj = pyo.Objective(expr=sum(m.C[i] for i in range(n)) / n, sense=pyo.minimize)

    def extract():
        cuts = [max(cut_sets[i], key=lambda c: pyo.value(m.z[i, c])) for i in range(n)]
        starts = {(i, j): pyo.value(m.s[i, j]) for i, j in serv if j > cuts[i]}
        return cuts, starts

    return m, extract


def _build_paper(instance: Instance, cut_sets) -> tuple[pyo.ConcreteModel, callable]:
    devs = instance.devices
    n = len(devs)
    m = pyo.ConcreteModel("dnnpart_paper")
    jobs = [(i, j) for i in range(n) for j in range(1, devs[i].n_layers + 1)]
    big = max(d.local_prefix_ms(d.n_layers) for d in devs) + max(max(d.server_ms) for d in devs)
    m.x = pyo.Var(jobs, domain=pyo.Binary)
    m.s = pyo.Var(jobs, domain=pyo.NonNegativeReals)  # eq. 5
    m.f = pyo.Var(jobs, domain=pyo.NonNegativeReals)
    m.cons = pyo.ConstraintList()
    for i, d in enumerate(devs):
        cs = cut_sets[i]
        for j in range(1, d.n_layers + 1):
            if len(cs) == 1:  # fixed cuts
                m.x[i, j].fix(1 if cs[0] < j else 0)
            if j < d.n_layers:
                m.cons.add(m.x[i, j] <= m.x[i, j + 1])  # a partition pattern is a cut
                m.cons.add(m.s[i, j + 1] >= m.s[i, j])  # eq. 11 (non-strict)
                m.cons.add(m.f[i, j + 1] >= m.f[i, j])  # eq. 12
                m.cons.add(m.s[i, j + 1] >= m.f[i, j])  # eq. 13
            m.cons.add(m.f[i, j] >= m.s[i, j] + (1 - m.x[i, j]) * d.local_ms[j - 1]
                       + m.x[i, j] * d.server_ms[j - 1])  # eq. 14
            # eq. 15 with the condition linearised: x_{i,j} - x_{i,j-1} is 1 exactly at the cut
            prev_x = m.x[i, j - 1] if j > 1 else 0
            prev_f = m.f[i, j - 1] if j > 1 else 0
            m.cons.add(m.s[i, j] >= prev_f + d.upload_ms[j - 1] * (m.x[i, j] - prev_x))
    m.o = pyo.Var(pyo.Any, dense=False, domain=pyo.Binary)
    for a, (i, j) in enumerate(jobs):  # eq. 16 as a big-M disjunction for every pair of server layers
        for (p, q) in jobs[a + 1:]:
            if p == i:
                continue
            both_off = 2 - m.x[i, j] - m.x[p, q]
            o = m.o[i, j, p, q]
            m.cons.add(m.f[i, j] <= m.s[p, q] + big * (1 - o) + big * both_off)
            m.cons.add(m.f[p, q] <= m.s[i, j] + big * o + big * both_off)
    completion = [m.f[i, d.n_layers] + d.download_ms * m.x[i, d.n_layers] for i, d in enumerate(devs)]
    m.obj = pyo.Objective(expr=sum(completion) / n, sense=pyo.minimize)  # eq. 4 / 10

    def extract():
        cuts = [sum(1 for j in range(1, d.n_layers + 1) if pyo.value(m.x[i, j]) < 0.5) for i, d in enumerate(devs)]
        starts = {(i, j): pyo.value(m.s[i, j]) for i, j in jobs if j > cuts[i]}
        return cuts, starts

    return m, extract


# ---------------------------------------------------------------------------------------------- solve
def _order_from_starts(instance: Instance, starts: dict) -> list[tuple[int, int]]:
    """The server order the solver's start times imply (zero-length layers before longer ones that start
    at the same time, so re-timing never pushes them behind)."""
    def key(ij):
        start = round(starts[ij], 6)
        return start, start + instance.devices[ij[0]].server_ms[ij[1] - 1], ij[0], ij[1]
    return sorted(starts, key=key)


def solve(instance: Instance, formulation: str = "exact", time_limit: float | None = None,
          fixed_cuts=None, threads: int | None = None, warm_start: bool = True,
          node_limit: int | None = None) -> Solution:
    """Minimise the average completion time; see the module docstring and docs/optimiser.md.

    `node_limit` caps HiGHS's branch-and-bound nodes: unlike a time limit it stops at the same point on
    every run and machine, so sweeps that must write identical CSVs use it (status "node_limit").
    """
    if formulation not in FORMULATIONS:
        raise DnnpartError(f"unknown formulation {formulation!r}; choose one of {list(FORMULATIONS)}")
    if time_limit is not None and not time_limit > 0:
        raise DnnpartError(f"time limit must be a positive number of seconds, got {time_limit}")
    from pyomo.contrib.solver.common.factory import SolverFactory

    t0 = time.perf_counter()
    cut_sets = _cut_sets(instance, fixed_cuts)
    if formulation == "paper" and fixed_cuts is None:
        cut_sets = [list(range(d.n_layers + 1)) for d in instance.devices]
    # The heuristic's schedule is the fallback incumbent for both formulations (a time limit always returns
    # a schedule); only the exact formulation also hands its value to HiGHS as a cutoff.
    budget = 5.0 if time_limit is None else 0.2 * time_limit  # local search stops earlier once converged
    if formulation == "exact" and time_limit is not None and len(instance) > LARGE_N:
        # Beyond LARGE_N devices the pairwise model takes longer to build than a typical limit and its LP
        # bound is no better than the no-contention bound: bound with the time-indexed LP instead and spend
        # the rest of the time on the heuristic.
        bound = time_indexed_bound(instance, cut_sets) if fixed_cuts is None else None
        budget = max(0.1, 0.8 * time_limit - (time.perf_counter() - t0))
        best = heuristic(instance, cut_sets, time_budget_s=budget)
        return _finish(instance, formulation, None, None, best, None, cut_sets, t0, status="heuristic",
                       bound=bound)
    fallback = heuristic(instance, cut_sets, time_budget_s=budget) if warm_start else None
    warm = fallback if formulation == "exact" else None
    relaxed = None
    if warm is not None:
        # The preemptive relaxation often proves the heuristic's schedule optimal outright (identical
        # devices); otherwise its bound still tightens the MILP. Skipped without a warm start, so that
        # warm_start=False tests the MILP alone.
        nodes = BOUND_NODES if time_limit is None else min(BOUND_NODES, int(BOUND_NODES_PER_S * time_limit))
        sizes = _PreemptiveRelaxation(instance, cut_sets, nodes).sizes
        if len(sizes) > 1 and max(sizes) <= EXACT_GROUP:  # mostly different devices: try the exact search
            budget = EXACT_NODES if time_limit is None else min(EXACT_NODES, int(EXACT_NODES_PER_S * time_limit))
            try:
                better = exact_search(instance, cut_sets, cutoff_ms=warm.avg_delay_ms, max_nodes=budget)
            except _BoundBudget:
                pass
            else:
                best = warm if better is None or better.avg_delay_ms >= warm.avg_delay_ms else better
                return _finish(instance, formulation, None, None, best, None, cut_sets, t0, status="optimal",
                               bound=best.avg_delay_ms)
        relaxed = preemptive_bound(instance, cut_sets, cutoff_ms=warm.avg_delay_ms, max_nodes=nodes)
        if relaxed is not None and relaxed >= warm.avg_delay_ms * (1 - PROOF_GAP):
            return _finish(instance, formulation, None, None, warm, None, cut_sets, t0, status="optimal",
                           bound=relaxed)
    build = _build_exact if formulation == "exact" else _build_paper
    model, extract = build(instance, cut_sets)
    if relaxed is not None and formulation == "exact":
        model.relaxation_cut = pyo.Constraint(expr=sum(model.C[i] for i in model.C) >= len(instance) * relaxed)
    options = {"mip_rel_gap": 1e-9, "mip_abs_gap": 1e-7, "random_seed": 0}
    if node_limit is not None:
        options["mip_max_nodes"] = int(node_limit)
    if warm is not None:  # prune with the heuristic's value; its schedule stays the fallback incumbent
        options["objective_bound"] = warm.avg_delay_ms * (1 + 1e-7) + 1e-6
    remaining = None if time_limit is None else time_limit - (time.perf_counter() - t0)
    if remaining is not None and remaining < 0.5 and fallback is not None:
        res = None  # building the model used up the time limit: report the heuristic schedule
    else:
        res = SolverFactory("highs").solve(model, time_limit=None if remaining is None else max(0.05, remaining),
                                           load_solutions=False, raise_exception_on_nonoptimal_result=False,
                                           solver_options=options, threads=threads)
    return _finish(instance, formulation, res, extract, fallback, warm, cut_sets, t0, bound=relaxed)


def _finish(instance, formulation, res, extract, fallback, warm, cut_sets, t0, status="time_limit",
            bound=None) -> Solution:
    """Pick the best of the solver's and the heuristic's schedules, validate it, and report the bound
    (`bound`: a proven lower bound from elsewhere, e.g. preemptive_bound; status "optimal" without a solver
    run means that bound meets the fallback schedule's value)."""
    from pyomo.contrib.solver.common.results import TerminationCondition

    # every device finishes no earlier than alone on the server with its best cut: always a valid bound
    trivial = sum(min(d.alone_ms(c) for c in cs) for d, cs in zip(instance.devices, cut_sets)) / len(instance)
    if bound is not None:
        trivial = max(trivial, bound)
    if res is None:
        best, bound = fallback, min(trivial, fallback.avg_delay_ms)
        best.validate()
        proven = status == "optimal"
        return Solution(avg_delay_ms=best.avg_delay_ms, cuts=list(best.cuts), status=status,
                        proven_optimal=proven,
                        gap=0.0 if proven else (best.avg_delay_ms - bound) / max(best.avg_delay_ms, 1e-12),
                        bound_ms=bound, solve_time_s=time.perf_counter() - t0, formulation=formulation,
                        schedule=best)
    term = res.termination_condition
    best = fallback
    if res.incumbent_objective is not None:
        res.solution_loader.load_vars()
        cuts, starts = extract()
        sched = Schedule(instance, cuts, _order_from_starts(instance, starts))
        if sched.avg_delay_ms > res.incumbent_objective + 1e-4 * max(1.0, res.incumbent_objective):
            raise ScheduleError(f"re-timing the solver's order gives {sched.avg_delay_ms} ms, worse than the "
                                f"solver's {res.incumbent_objective} ms")
        if best is None or sched.avg_delay_ms < best.avg_delay_ms:
            best = sched
    proven = term == TerminationCondition.convergenceCriteriaSatisfied
    if proven and best.avg_delay_ms < res.incumbent_objective - 1e-4 * max(1.0, best.avg_delay_ms):
        raise ScheduleError(f"HiGHS claims {res.incumbent_objective} ms optimal but the heuristic found "
                            f"{best.avg_delay_ms} ms: the {formulation} formulation is wrong")
    bound = res.objective_bound
    bound = trivial if bound is None or not math.isfinite(bound) else max(bound, trivial)
    if term == TerminationCondition.objectiveLimit or (
            warm is not None and term == TerminationCondition.provenInfeasible):
        # nothing beats the heuristic's value: the heuristic schedule is optimal
        proven, bound = True, warm.avg_delay_ms
    if best is None:
        raise DnnpartError(f"HiGHS found no schedule within the time limit ({term.name}); raise --time-limit")
    best.validate()
    if bound is not None:
        bound = min(bound, best.avg_delay_ms)
    gap = 0.0 if proven else (None if bound is None else (best.avg_delay_ms - bound) / max(best.avg_delay_ms, 1e-12))
    if proven:
        bound = best.avg_delay_ms if bound is None else bound
    status = "optimal" if proven else {TerminationCondition.maxTimeLimit: "time_limit",
                                       TerminationCondition.iterationLimit: "node_limit"}.get(term, term.name)
    return Solution(avg_delay_ms=best.avg_delay_ms, cuts=list(best.cuts), status=status, proven_optimal=proven,
                    gap=gap, bound_ms=bound, solve_time_s=time.perf_counter() - t0, formulation=formulation,
                    schedule=best)
