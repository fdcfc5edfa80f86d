"""The preemptive relaxation with cut choice: a lower bound on the optimum (docs/optimiser.md).

If the server may preempt a device at any moment, a device with cut c is one job released at r(c) with W(c) ms
of server work; for fixed cuts SRPT is optimal (Schrage 1968), and a branch and bound over cut choices finds the
relaxation's optimum. Every schedule of the model is one of the relaxation, so its value is a valid bound.
"""

from __future__ import annotations

import heapq
import math
import time

from dnnpart.optimiser.cuts import candidate_cuts
from dnnpart.optimiser.instance import Instance

BOUND_NODES = 1_500_000  # search nodes of preemptive_bound before it gives up (a count, not a clock: deterministic)
EXACT_NODES = 3_000_000  # budget of exact_search (doubled in nested mode: ~10 s here); it replaces the MILP
# With a time limit the searches stop on the clock: their node budgets become this many per second of the limit,
# about twice what this machine searches (~500,000 nodes/s, 2026-12-07), so the deadline ends them first.
NODES_PER_S = 1_000_000
EXACT_GROUP = 6  # groups of up to this many identical devices get their exact relaxation optimum as a bound


CLOCK_EVERY = 2048  # search nodes between two reads of the clock when a deadline is set


class BudgetExhausted(Exception):
    """A search ran out of its node budget (reason "nodes") or past its deadline (reason "deadline").
    What it had found by then, None if nothing beat its cutoff: `schedule`, the best schedule (exact_search),
    and `order`, the best (sum of completions, server order) (best_server_order)."""

    def __init__(self, reason: str = "nodes"):
        super().__init__(reason)
        self.reason = reason
        self.schedule = None
        self.order = None


class Clock:
    """A deadline (time.perf_counter() seconds, or None: no clock) checked every CLOCK_EVERY counted nodes, so
    searches stop on time without reading the clock at every node."""

    def __init__(self, deadline: float | None):
        self.deadline, self.next_check = deadline, CLOCK_EVERY

    def check(self, nodes: int) -> None:
        if self.deadline is not None and nodes >= self.next_check:
            self.next_check = nodes + CLOCK_EVERY
            if time.perf_counter() > self.deadline:
                raise BudgetExhausted("deadline")


def relaxation_job(device, cut: int) -> tuple[float, float, float, bool]:
    """A device with this cut in the preemptive relaxation: (release, server work, the fixed part of its
    completion, offloads?). The fixed part is the download when it offloads, else its all-local time."""
    offloads = cut < device.n_layers
    fixed = device.download_ms if offloads else device.local_prefix_ms(cut)
    return device.release_ms(cut), device.server_work_ms(cut), fixed, offloads


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


class _Frame:
    """A node of PreemptiveRelaxation._search whose children are being visited: device slot `depth`, fixed part
    `fixed`, class k; plain search: candidates from `next` on, from SRPT `state`; nested search: `children`
    (value, candidate, state) sorted, `next` the index of the next one, `stop` the bound of what follows the
    last device of a group (None otherwise). `applied`: the child in progress is in chosen/jobs."""

    __slots__ = ("applied", "children", "depth", "fixed", "k", "next", "state", "stop")

    def __init__(self, depth, fixed, k, pos, state):
        self.depth, self.fixed, self.k, self.next, self.state = depth, fixed, k, pos, state
        self.applied, self.children, self.stop = False, None, None


class PreemptiveRelaxation:
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

    def __init__(self, instance: Instance, cut_sets, max_nodes: int, deadline: float | None = None):
        self.clock = Clock(deadline)
        self.classes, self.sizes = [], []
        for i, d in enumerate(instance.devices):
            for members in self.sizes:
                first = members[0]
                if instance.devices[first].same_task(d) and cut_sets[first] == cut_sets[i]:
                    members.append(i)
                    break
            else:
                self.sizes.append([i])
                self.classes.append([relaxation_job(d, c) for c in cut_sets[i]])
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
                seed = min(
                    (self._value([(k, p) for p in prev + [q]]), prev + [q]) for q in range(pos, len(self.classes[k]))
                )
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

        def child_state(state, release, work):
            """The SRPT state after adding a job to the current choice (jobs, not yet holding it)."""
            if release >= state[0]:  # arrivals in release order: continue the parent's SRPT run
                return srpt_push(state, release, work)
            child = SRPT_START  # a later class released earlier: rerun SRPT from the start
            for job in sorted(jobs + [(release, work)]):
                child = srpt_push(child, *job)
            return child

        def enter(depth: int, fixed: float, pos: int, state):
            """Count a node, settle a complete choice, bound a partial one: the frame of its children, or None."""
            self.nodes += 1
            if self.nodes > self.max_nodes:
                raise BudgetExhausted("nodes")
            self.clock.check(self.nodes)
            value = srpt_value(state) + fixed
            if depth == len(slots):
                if value < best[0] and leaf is not None:  # the exact value of this choice, if below best
                    value = leaf(list(chosen), best[0])
                if value is not None and value < best[0]:
                    best[0], best[1] = value, [p for _, p in chosen]
                return None
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
                    return None
            frame = _Frame(depth, fixed, k, pos, state)
            if self.nested:
                # The nested search's children: all evaluated first (counted as nodes), visited most
                # promising first. When the child is the last device of group g, the bound of what follows is
                # later[g + 1] for every child, so the first child that fails it ends the loop.
                children = []
                for p in range(pos, len(self.classes[k])):
                    release, work, fixed_p, offloads = self.classes[k][p]
                    child = child_state(state, release, work) if offloads else state
                    children.append((srpt_value(child) + fixed + fixed_p, p, child))
                self.nodes += len(children)
                children.sort(key=lambda c: c[:2])
                frame.children, frame.next, frame.stop = children, 0, later[g + 1] if left == 1 else None
            return frame

        def next_child(frame: _Frame):
            """The frame's next child to visit as (candidate, its SRPT state), or None when there is none."""
            if frame.children is None:  # plain search: every candidate from pos on, in order
                p = frame.next
                if p == len(self.classes[frame.k]):
                    return None
                frame.next = p + 1
                release, work, _, offloads = self.classes[frame.k][p]
                return p, (child_state(frame.state, release, work) if offloads else frame.state)
            if frame.next == len(frame.children):
                return None
            value, p, child = frame.children[frame.next]
            if frame.stop is not None and value + frame.stop >= best[0]:
                return None
            frame.next += 1
            return p, child

        # Depth-first with an explicit stack, one level per device (no recursion limit to hit): the candidate
        # in progress is applied to chosen/jobs and undone when the stack returns to its frame; nodes are
        # visited and counted in the order of the recursive formulation.
        root = enter(0, 0.0, first_pos, SRPT_START)
        stack = [] if root is None else [root]
        while stack:
            frame = stack[-1]
            if frame.applied:  # undo the child just searched
                _, p = chosen.pop()
                if self.classes[frame.k][p][3]:
                    jobs.pop()
                frame.applied = False
            step = next_child(frame)
            if step is None:
                stack.pop()
                continue
            p, child = step
            release, work, fixed_p, offloads = self.classes[frame.k][p]
            chosen.append((frame.k, p))
            if offloads:
                jobs.append((release, work))
            frame.applied = True
            sub = enter(frame.depth + 1, frame.fixed + fixed_p, p, child)
            if sub is not None:
                stack.append(sub)
        return best[0], best[1]

    def suffix_best(self, groups: tuple) -> tuple[float, list]:
        """Relaxation optimum (sum of completions) and its choice for the groups together; memoised. The
        search starts from the optimum of groups[1:] plus the best single candidate for the first group."""
        if groups not in self.suffix_memo:
            (k, count), rest = groups[0], groups[1:]
            tail = [
                (k2, p)
                for k2, p in zip([k2 for k2, c in rest for _ in range(c)], self.suffix_best(rest)[1] if rest else [])
            ]
            seed = min(
                (self._value([(k, q)] * count + tail), [q] * count + [p for _, p in tail])
                for q in range(len(self.classes[k]))
            )
            self.suffix_memo[groups] = self._search(list(groups), 0, seed)
        return self.suffix_memo[groups]


def preemptive_bound(
    instance: Instance,
    cut_sets=None,
    cutoff_ms: float | None = None,
    max_nodes: int = BOUND_NODES,
    deadline: float | None = None,
) -> float | None:
    """A lower bound on the optimal average completion time, or None if the search needs more nodes.

    Relaxation: the server may preempt a device at any moment, not only between layers. With cut c a device
    is then a job released at r(c) with W(c) ms of server work (completion + its download), or finishes at
    its all-local time; for fixed cuts the relaxation's optimum is SRPT's, and a branch and bound over the
    cut choices (identical devices as multisets) finds the best. Every schedule of the model is a schedule
    of the relaxation, so the value is a valid bound; on identical zoo devices it usually meets the optimum.
    With `cutoff_ms` (an average) the search only looks for values below it and returns min(relaxation
    optimum, cutoff): a valid bound either way, found much faster when the cutoff is a good schedule's value.
    `deadline` (a time.perf_counter() value) also stops the search, with None.
    """
    cut_sets = cut_sets or [candidate_cuts(d) for d in instance.devices]
    n = len(instance)
    relax = PreemptiveRelaxation(instance, cut_sets, max_nodes, deadline)
    groups = nested_groups(relax) or [(k, size) for k, size in enumerate(relax.sizes)]
    start = (math.inf, []) if cutoff_ms is None else (cutoff_ms * n, [])
    try:
        if len(groups) == 1:
            total = relax.class_best(0, n, 0)[0] if cutoff_ms is None else relax._search(groups, 0, start)[0]
        else:
            total = relax._search(groups, 0, start)[0]
    except BudgetExhausted:
        return None
    return total / n * (1 - 1e-12)  # float rounding in the sums must not make the bound invalid


def nested_groups(relax: PreemptiveRelaxation):
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
