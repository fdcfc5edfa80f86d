"""A lower bound for many different devices: a time-indexed LP of the preemptive relaxation with cut choice.

The preemptive relaxation (docs/optimiser.md) lets the server preempt a device at any moment. With cut c a
device is a job released at r(c) with p(c) ms of server work, then its download f; all-local it finishes at
its all-local time H. In ANY schedule a job's mean busy time M (the average of the instants at which it is
served) satisfies M <= C - p/2, so C >= M + p/2 (equality when it runs in one piece).

The LP cuts [0, T] into equal slots [a_t, a_t + Δ) and has, per device, z_ic (cut c chosen; Σ_c z_ic = 1)
and y_ict >= 0 (server time given to device i with cut c in slot t), with Σ_t y_ict = p(c) z_ic and Σ y in a
slot <= Δ. A unit of work served in slot t is served no earlier than max(a_t, r(c)), so
Σ_t y_ict max(a_t, r(c)) / p(c) <= M_i and the objective Σ_ic [Σ_t y_ict max(a_t, r(c)) / p(c)
+ z_ic (p(c)/2 + f)] + Σ_i z_iM H_i is at most Σ_i C_i of the schedule: every schedule maps to a feasible
point that costs no more, so the LP optimum is a valid lower bound. Some optimal schedule has every C_i <= H_i
(docs/optimiser.md), so work of device i is only placed in [r(c), H_i - f]; that bounds y_ict by the part
of the slot inside that window. (Also bounding y_ict by that length times z_ic is valid and tighter when z is
fractional, but it adds one row per variable: at N = 100 it raised the bound by 0.25 % and took 15x longer.)

It is weaker than the exact preemptive bound (milp.preemptive_bound) but its size grows linearly with the
number of devices, so it bounds instances with a hundred devices in seconds.
"""

from __future__ import annotations

import math

import numpy as np
from pyomo.common.tee import capture_output

from dnnpart.optimiser.instance import Instance

SLOTS = 800  # time slots of the default grid (Δ = horizon / SLOTS; ~66 ms for VGG16's 53 s all-local time)
SAFETY = 1e-6  # the bound is scaled down by this (relative): the LP is solved to HiGHS's tolerances


def time_indexed_bound(
    instance: Instance, cut_sets, slots: int = SLOTS, time_limit: float | None = None
) -> float | None:
    """A lower bound on the optimal average completion time (see the module docstring), or None if HiGHS
    does not report an optimal LP (within `time_limit` seconds, if given). `cut_sets`: the candidate cuts of each
    device (all-local included)."""
    import highspy

    devs = instance.devices
    n = len(devs)
    local = [d.local_prefix_ms(d.n_layers) for d in devs]
    offload = [
        [c for c in cs if c < d.n_layers and d.alone_ms(c) < local[i]] for i, (d, cs) in enumerate(zip(devs, cut_sets))
    ]
    horizon = max((local[i] - d.download_ms for i, d in enumerate(devs) if offload[i]), default=0.0)
    constant = sum(local[i] for i in range(n) if not offload[i])  # devices that can only stay local
    if horizon <= 0:
        return constant / n
    delta = horizon / slots
    starts = np.arange(slots) * delta

    cost, upper, col_rows, col_vals = [], [], [], []
    row_lower, row_upper = [-math.inf] * slots, [delta] * slots  # rows 0..slots-1: capacity of each slot

    def new_row(lo, hi):
        row_lower.append(lo)
        row_upper.append(hi)
        return len(row_lower) - 1

    def new_col(c, ub, rows, vals):
        cost.append(c)
        upper.append(ub)
        col_rows.append(rows)
        col_vals.append(vals)
        return len(cost) - 1

    for i, d in enumerate(devs):
        if not offload[i]:
            continue
        choose = new_row(1.0, 1.0)
        if d.n_layers in cut_sets[i]:
            new_col(local[i], 1.0, [choose], [1.0])
        end = local[i] - d.download_ms  # server work of device i ends by then in some optimum
        for c in offload[i]:
            r, p = d.release_ms(c), d.server_work_ms(c)
            if p <= 0:  # nothing to serve: completes at its release (plus the download)
                new_col(r + d.download_ms, 1.0, [choose], [1.0])
                continue
            work = new_row(0.0, 0.0)
            new_col(p / 2 + d.download_ms, 1.0, [choose, work], [1.0, -p])
            first, last = int(r // delta), min(slots, math.ceil(end / delta))
            for t in range(first, last):
                a = starts[t]
                room = min(a + delta, end) - max(a, r)
                if room <= 0:
                    continue
                new_col(max(a, r) / p, room, [t, work], [1.0, 1.0])

    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(cost), len(row_lower)
    lp.col_cost_ = np.array(cost, dtype=float)
    lp.col_lower_ = np.zeros(len(cost))
    lp.col_upper_ = np.array(upper, dtype=float)
    lp.row_lower_ = np.array(row_lower, dtype=float)
    lp.row_upper_ = np.array(row_upper, dtype=float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum([len(r) for r in col_rows])]).astype(np.int32)
    lp.a_matrix_.index_ = np.fromiter((r for rows in col_rows for r in rows), dtype=np.int32)
    lp.a_matrix_.value_ = np.fromiter((v for vals in col_vals for v in vals), dtype=float)
    with capture_output(capture_fd=True):  # HiGHS prints a banner when created, before output_flag applies
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    # no "threads" option: HiGHS's thread pool is global and refuses a count other than the one it started
    # with (pyomo's solves may start it first); the dual simplex runs serially anyway
    highs.setOptionValue("random_seed", 0)
    if time_limit is not None:
        highs.setOptionValue("time_limit", float(time_limit))
    highs.passModel(lp)
    highs.run()
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    value = highs.getInfo().objective_function_value + constant
    return value / n * (1 - SAFETY)


LAGRANGE_SLOTS = 120  # slots of the Lagrangian bound's grid (the LP's size is no concern there: O(N) per step)


def lagrangian_bound(
    instance: Instance,
    cut_sets,
    upper_ms: float,
    slots: int = LAGRANGE_SLOTS,
    deadline: float | None = None,
    max_steps: int = 400,
) -> float:
    """A lower bound on the optimal average completion time for very many devices: the Lagrangian dual of the
    time-indexed LP above, its slot capacities priced by mu_t >= 0 and the prices improved by subgradient steps.

    For any prices the devices decouple: each picks the cut and the slots that minimise its LP cost plus
    sum_t mu_t y_ict, a greedy fill of its work into its cheapest slots; L(mu) = sum of these minima - Δ sum_t
    mu_t is at most the LP optimum (weak duality), so every step's value is a valid bound and the best is
    returned. One step costs a sort of (candidate cuts x slots), linear in the number of devices.
    `upper_ms` (an average, e.g. the heuristic's) sets the step length (Polyak's rule); `deadline` (a
    time.perf_counter() value) stops the steps early, still with a valid bound (the first step always runs).
    """
    import time

    devs = instance.devices
    n = len(devs)
    local = np.array([d.local_prefix_ms(d.n_layers) for d in devs])
    offload = [
        [c for c in cs if c < d.n_layers and d.alone_ms(c) < local[i]] for i, (d, cs) in enumerate(zip(devs, cut_sets))
    ]
    horizon = max((local[i] - d.download_ms for i, d in enumerate(devs) if offload[i]), default=0.0)
    constant = float(sum(local[i] for i in range(n) if not offload[i]))
    if horizon <= 0:
        return constant / n
    delta = horizon / slots
    starts = np.arange(slots) * delta
    # per device: the cost if it keeps a cut without server work (all-local, or an offload with no work)
    fixed = np.full(n, np.inf)
    rows, release, work, extra = [], [], [], []  # one entry per (device, cut) with server work
    for i, d in enumerate(devs):
        if not offload[i]:
            continue
        if d.n_layers in cut_sets[i]:
            fixed[i] = local[i]
        for c in offload[i]:
            r, p = d.release_ms(c), d.server_work_ms(c)
            if p <= 0:
                fixed[i] = min(fixed[i], r + d.download_ms)
            else:
                rows.append(i)
                release.append(r)
                work.append(p)
                extra.append((p / 2 + d.download_ms, local[i] - d.download_ms))
    used = sorted(set(rows) | {i for i in range(n) if offload[i]})
    owner = np.array(rows, dtype=int)
    release, work = np.array(release), np.array(work)
    base = np.array([e[0] for e in extra])
    end = np.array([e[1] for e in extra])
    # room of each (cut, slot) inside its window [release, end); the cost of a unit of work there
    room = np.minimum(starts[None, :] + delta, end[:, None]) - np.maximum(starts[None, :], release[:, None])
    room = np.where(room > 0, room, 0.0)
    feasible = room.sum(axis=1) >= work * (1 - 1e-12)
    unit = np.where(room > 0, np.maximum(starts[None, :], release[:, None]) / work[:, None], np.inf)
    mu = np.zeros(slots)
    best = -np.inf
    target = upper_ms * n - constant
    theta = 1.0
    stale = 0
    for step_count in range(max_steps):
        if step_count > 0 and deadline is not None and time.perf_counter() > deadline:
            break  # (the first step, at mu = 0, always runs: a bound is always returned)
        cost = unit + mu[None, :]
        order = np.argsort(cost, axis=1, kind="stable")
        sorted_room = np.take_along_axis(room, order, axis=1)
        before = np.cumsum(sorted_room, axis=1) - sorted_room
        take = np.clip(work[:, None] - before, 0.0, sorted_room)
        sorted_cost = np.take_along_axis(cost, order, axis=1)
        value = base + (np.where(take > 0, sorted_cost, 0.0) * take).sum(axis=1)
        value = np.where(feasible, value, np.inf)
        # each device's best: its best cut with work, or its fixed cost
        per_device = fixed.copy()
        np.minimum.at(per_device, owner, value)
        chosen = np.full(n, -1)
        hit = np.isclose(value, per_device[owner], rtol=0, atol=0) & (value < fixed[owner])
        chosen[owner[hit][::-1]] = np.nonzero(hit)[0][::-1]  # the first cut that attains the minimum
        dual = float(per_device[used].sum()) - delta * float(mu.sum())
        if dual > best + 1e-9 * abs(best if math.isfinite(best) else 1.0):
            best, stale = dual, 0
        else:
            stale += 1
            if stale >= 20:
                theta, stale = theta / 2, 0
                if theta < 1e-4:
                    break
        # subgradient: the chosen cuts' use of each slot minus its capacity
        usage = np.zeros(slots)
        picks = chosen[chosen >= 0]
        np.add.at(usage, order[picks].ravel(), take[picks].ravel())
        grad = usage - delta
        grad = np.where((mu <= 0) & (grad < 0), 0.0, grad)  # projected: prices stay >= 0
        norm = float(grad @ grad)
        if norm <= 1e-18:
            break
        step = theta * max(target - dual, 1e-9 * abs(target)) / norm
        mu = np.maximum(0.0, mu + step * grad)
    return (best + constant) / n * (1 - SAFETY)
