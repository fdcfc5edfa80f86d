"""The peer a user would pick instead of dnnpart: OR-Tools CP-SAT on the same interleaving model.

Benchmark code only (nothing under dnnpart/ imports ortools; install it with `pip install 'dnnpart[bench]'`).

The model, per device i with candidate cuts C_i (dnnpart.optimiser.cuts.candidate_cuts, the same pruning
ours uses):
  - one cut: a one-hot choice x[i, c] over C_i;
  - per server layer j that some candidate cut offloads, an optional interval of the layer's server time,
    present iff the chosen cut is below j;
  - precedence along the chain: the first server layer starts after the local part and the upload of the
    chosen cut, each next server layer after its predecessor, and the completion is the last server layer's
    end plus the download (or the all-local time when the cut keeps everything local);
  - AddNoOverlap on all server intervals (zero-length intervals count too in CP-SAT's NoOverlap, as the
    server runs them in dnnpart's model);
  - objective: the sum of completions (= N x the average).

CP-SAT needs integers: every time is scaled to microseconds, round(t_ms * 1000). The scaled optimum is
therefore the optimum of slightly rounded durations; it is compared with dnnpart's after scaling back, and
the schedule is re-timed with dnnpart's own checker (Schedule: CP-SAT's cuts and the server order its start
times imply), whose average must agree with CP-SAT's objective within the rounding error (0.5 us per rounded
duration on a completion's path). Both objectives are reported in ms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from dnnpart.optimiser.cuts import candidate_cuts
from dnnpart.optimiser.instance import Instance
from dnnpart.optimiser.schedule import Schedule, ScheduleError

SCALE = 1000  # integer time unit: 1 us = 1/1000 ms
WORKERS = 2
SEED = 0


def scaled(t_ms: float) -> int:
    return round(t_ms * SCALE)


@dataclass
class PeerResult:
    """CP-SAT's answer, scaled back to ms, with the schedule dnnpart's checker re-timed from it."""

    avg_delay_ms: float | None  # dnnpart's Schedule of CP-SAT's cuts and server order (float times)
    objective_ms: float | None  # CP-SAT's own objective / N, scaled back (rounded durations)
    bound_ms: float | None  # CP-SAT's best bound / N, scaled back
    proven_optimal: bool
    status: str  # optimal, feasible, infeasible, unknown, model_invalid (CP-SAT's status, lower case)
    solve_time_s: float  # model build + search, wall clock
    cuts: list[int] | None
    schedule: Schedule | None
    tolerance_ms: float  # the most rounding can move an average

    @property
    def gap(self) -> float | None:
        if self.objective_ms is None or self.bound_ms is None:
            return None
        return max(0.0, (self.objective_ms - self.bound_ms) / max(abs(self.objective_ms), 1e-9))


def build(instance: Instance):
    """The CP-SAT model; returns (model, cut literals per device, server intervals per device, completions)."""
    model = cp_model.CpModel()
    cut_sets = [candidate_cuts(d) for d in instance.devices]
    # A horizon no optimal schedule exceeds: the latest release (or all-local finish), then all server work
    # any cut could need, then the longest download.
    latest = max(max(scaled(d.release_ms(c)) for c in cuts) for d, cuts in zip(instance.devices, cut_sets))
    work = sum(scaled(t) for d, cuts in zip(instance.devices, cut_sets) for t in d.server_ms[min(cuts) :])
    horizon = latest + work + max(scaled(d.download_ms) for d in instance.devices)
    x, intervals, completion = [], [], []
    for i, (d, cuts) in enumerate(zip(instance.devices, cut_sets)):
        m = d.n_layers
        xi = {c: model.NewBoolVar(f"x{i}_{c}") for c in cuts}
        model.AddExactlyOne(xi.values())
        done = model.NewIntVar(0, horizon, f"T{i}")
        layers = {}  # j -> (presence, start, end, interval)
        for j in range(min(cuts) + 1, m + 1):
            present = model.NewBoolVar(f"p{i}_{j}")
            model.Add(present == sum(xi[c] for c in cuts if c < j))  # the chosen cut offloads layer j
            start = model.NewIntVar(0, horizon, f"s{i}_{j}")
            end = model.NewIntVar(0, horizon, f"e{i}_{j}")
            layers[j] = (
                present,
                start,
                end,
                model.NewOptionalIntervalVar(start, scaled(d.server_ms[j - 1]), end, present, f"v{i}_{j}"),
            )
        for c in cuts:
            if c == m:
                model.Add(done >= scaled(d.release_ms(m))).OnlyEnforceIf(xi[c])
            else:  # the first server layer waits for the local part and the upload of this cut
                model.Add(layers[c + 1][1] >= scaled(d.release_ms(c))).OnlyEnforceIf(xi[c])
        for j in range(min(cuts) + 1, m):
            model.Add(layers[j + 1][1] >= layers[j][2]).OnlyEnforceIf(layers[j][0])
        if m in layers:
            model.Add(done >= layers[m][2] + scaled(d.download_ms)).OnlyEnforceIf(layers[m][0])
        # Redundant, as a user would add: no device finishes before it would alone with its cut (summed from
        # the same rounded terms, so it cuts off no schedule). It gives CP-SAT's linear relaxation a bound the
        # enforced precedences do not.
        alone = {
            c: scaled(d.release_ms(c))
            + (0 if c == m else sum(scaled(t) for t in d.server_ms[c:]) + scaled(d.download_ms))
            for c in cuts
        }
        model.Add(done >= sum(alone[c] * xi[c] for c in cuts))
        x.append(xi)
        intervals.append(layers)
        completion.append(done)
    model.AddNoOverlap([v[3] for layers in intervals for v in layers.values()])
    model.Minimize(sum(completion))
    return model, x, intervals, completion


def server_order(instance: Instance, cuts, intervals, solver) -> list[tuple[int, int]]:
    """The server order CP-SAT's start times imply (a zero-length layer before a longer one at the same
    start, as CP-SAT's NoOverlap puts it)."""
    run = [
        (solver.Value(v[1]), solver.Value(v[2]), i, j)
        for i, layers in enumerate(intervals)
        for j, v in layers.items()
        if j > cuts[i]
    ]
    return [(i, j) for _, _, i, j in sorted(run)]


def solve_cpsat(instance: Instance, time_limit: float, seed: int = SEED, workers: int = WORKERS) -> PeerResult:
    """Minimise the average completion with CP-SAT within `time_limit` seconds (model build included)."""
    t0 = time.perf_counter()
    model, x, intervals, _ = build(instance)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    solver.parameters.max_time_in_seconds = max(0.01, time_limit - (time.perf_counter() - t0))
    code = solver.Solve(model)
    elapsed = time.perf_counter() - t0
    status = solver.StatusName(code).lower()
    n = len(instance)
    # Each completion is a sum of rounded terms along one path: a release, server layers (of any devices),
    # a download.
    tolerance = 0.5 / SCALE * (sum(d.n_layers for d in instance.devices) + 2)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return PeerResult(None, None, None, False, status, elapsed, None, None, tolerance)
    cuts = [next(c for c, lit in xi.items() if solver.Value(lit)) for xi in x]
    schedule = Schedule(instance, cuts, server_order(instance, cuts, intervals, solver))
    schedule.validate()
    objective = solver.ObjectiveValue() / SCALE / n
    # Re-timing CP-SAT's order as early as possible can only move completions earlier (up to rounding): it
    # may gain on a merely feasible answer, never on a proven optimum.
    if schedule.avg_delay_ms > objective + tolerance or (
        code == cp_model.OPTIMAL and schedule.avg_delay_ms < objective - tolerance
    ):
        raise ScheduleError(
            f"CP-SAT's objective {objective} ms and dnnpart's timing of its schedule "
            f"{schedule.avg_delay_ms} ms differ by more than the scaling error {tolerance} ms"
        )
    return PeerResult(
        schedule.avg_delay_ms,
        objective,
        solver.BestObjectiveBound() / SCALE / n,
        code == cp_model.OPTIMAL,
        status,
        elapsed,
        cuts,
        schedule,
        tolerance,
    )
