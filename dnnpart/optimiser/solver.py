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
no MILP); when that and the preemptive bound run out, the Lagrangian bound of the time-indexed LP
(dnnpart.optimiser.lp_bound) bounds the result; for more than LARGE_N devices with a time limit it reports the
heuristic with that bound. Every result is re-timed by Schedule (as early as possible in the solver's server
order) and validated.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pyomo.environ as pyo

from dnnpart.errors import DnnpartError
from dnnpart.optimiser.cuts import cut_sets_for
from dnnpart.optimiser.exact_search import exact_search
from dnnpart.optimiser.heuristic import heuristic
from dnnpart.optimiser.instance import Instance
from dnnpart.optimiser.lp_bound import lagrangian_bound
from dnnpart.optimiser.pyomo_models import build_exact, build_paper
from dnnpart.optimiser.relaxation import (
    BOUND_NODES,
    EXACT_GROUP,
    EXACT_NODES,
    NODES_PER_S,
    BudgetExhausted,
    PreemptiveRelaxation,
    preemptive_bound,
)
from dnnpart.optimiser.schedule import Schedule, ScheduleError

FORMULATIONS = ("exact", "paper")
LARGE_N = 40  # with a time limit, larger instances get the heuristic and the no-contention bound only
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
    stopped_by: str = ""  # the phase that ended the solve and how, e.g. "exact_search:optimal", "highs:time_limit"

    def to_dict(self) -> dict:
        return {
            "avg_delay_ms": self.avg_delay_ms,
            "cuts": list(self.cuts),
            "status": self.status,
            "proven_optimal": self.proven_optimal,
            "gap": self.gap,
            "bound_ms": self.bound_ms,
            "solve_time_s": self.solve_time_s,
            "formulation": self.formulation,
            "stopped_by": self.stopped_by,
            "completion_ms": list(self.schedule.completion_ms),
            "schedule": self.schedule.to_frame().to_dict(orient="records"),
        }


def _order_from_starts(instance: Instance, starts: dict) -> list[tuple[int, int]]:
    """The server order the solver's start times imply (zero-length layers before longer ones that start
    at the same time, so re-timing never pushes them behind)."""

    def key(ij):
        start = round(starts[ij], 6)
        return start, start + instance.devices[ij[0]].server_ms[ij[1] - 1], ij[0], ij[1]

    return sorted(starts, key=key)


# Shares of one time limit T (the deadline is t0 + T, minus FINISH_RESERVE for validating and reporting):
HEURISTIC_SHARE = 0.2  # local search, at most
SEARCH_SHARE = 0.6  # exact_search must end by t0 + this share of T (then the MILP still has the rest)
BOUND_SHARE = 0.7  # preemptive_bound must end by then
LP_BOUND_SHARE = 0.74  # the Lagrangian bound, when the preemptive search ran out, must end by then (MILP next)
# When the MILP has more rows than it could build in the time those phases leave it (MILP_ROWS_PER_S), the phases
# end this share of T later instead: the heuristic's time grows by it, where its relaxation search finds better
# schedules (40 different devices, 60 s: the solve used to stop at 44 s with the MILP skipped).
NO_MILP_EXTRA = 0.23
LARGE_HEURISTIC_SHARE = 0.5  # more than LARGE_N devices: the heuristic until then, the Lagrangian bound after
MID_LAGRANGE_SLOTS = 400  # its grid when the preemptive search ran out (at most LARGE_N devices: finer is cheap)
MIN_MILP_SHARE = 0.22  # build and solve the MILP only if at least this share of T is left
FINISH_RESERVE = 0.03  # of T: the last phase ends this early
# Pyomo builds about 20,000 rows per second on an idle machine here, several times fewer on a loaded one: on 40
# different devices at load average 16 (2 cores, 2026-12-02) the build overran a 60 s limit by 5 s. A model
# with more rows than this rate times the time left is not started.
MILP_ROWS_PER_S = 5_000


def solve(
    instance: Instance,
    formulation: str = "exact",
    time_limit: float | None = None,
    fixed_cuts=None,
    warm_start: bool = True,
    node_limit: int | None = None,
) -> Solution:
    """Minimise the average completion time; see the module docstring and docs/optimiser.md.

    `time_limit` (seconds) is one deadline for the whole solve: every phase (local search, exact search,
    preemptive bound, MILP build, HiGHS, the LP bound for many devices) gets a share of it and stops on the
    clock, and the result's `stopped_by` says which phase ended the solve. `node_limit` caps HiGHS's
    branch-and-bound nodes: unlike a time limit it stops at the same point on every run and machine, so sweeps
    that must write identical CSVs use it (status "node_limit"; without a time limit the searches before
    HiGHS are bounded by node counts too).
    """
    if formulation not in FORMULATIONS:
        raise DnnpartError(f"unknown formulation {formulation!r}; choose one of {list(FORMULATIONS)}")
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise DnnpartError(f"time limit must be a positive number of seconds, got {time_limit}")
    from pyomo.contrib.solver.common.factory import SolverFactory

    t0 = time.perf_counter()

    def by(share: float) -> float | None:  # the clock time at which a phase with this share of T must end
        return None if time_limit is None else t0 + share * time_limit

    deadline = by(1.0 - FINISH_RESERVE)

    def left() -> float | None:
        return None if deadline is None else deadline - time.perf_counter()

    def without_solver(best: Schedule, status: str, bound, stopped_by: str) -> Solution:
        """The result of a phase before (or instead of) HiGHS: its schedule, with the bound it proved."""
        return _finish(
            instance,
            formulation,
            None,
            None,
            best,
            None,
            cut_sets,
            t0,
            status=status,
            bound=bound,
            stopped_by=stopped_by,
        )

    cut_sets = cut_sets_for(instance, fixed_cuts)
    if formulation == "paper" and fixed_cuts is None:
        cut_sets = [list(range(d.n_layers + 1)) for d in instance.devices]
    # The heuristic's schedule is the fallback incumbent for both formulations (a time limit always returns
    # a schedule); only the exact formulation also hands its value to HiGHS as a cutoff.
    rows = milp_rows_estimate(instance, cut_sets, formulation)
    extra = 0.0
    if time_limit is not None and warm_start and formulation == "exact":
        milp_time = (1.0 - FINISH_RESERVE - LP_BOUND_SHARE) * time_limit  # at most, after the phases before it
        if rows > MILP_ROWS_PER_S * milp_time:
            extra = NO_MILP_EXTRA
    budget = 5.0 if time_limit is None else (HEURISTIC_SHARE + extra) * time_limit  # stops earlier once converged
    if formulation == "exact" and time_limit is not None and len(instance) > LARGE_N:
        # Beyond LARGE_N devices the pairwise model takes longer to build than a typical limit and its LP
        # bound is no better than the no-contention bound: spend the first part of the time on the heuristic,
        # the rest on the Lagrangian bound (its step length needs the heuristic's value).
        best = heuristic(instance, cut_sets, time_budget_s=max(0.05, by(LARGE_HEURISTIC_SHARE) - time.perf_counter()))
        bound = None
        if fixed_cuts is None:
            bound = lagrangian_bound(instance, cut_sets, best.avg_delay_ms, deadline=deadline)
        return without_solver(best, "heuristic", bound, "heuristic+lagrangian_bound")
    fallback = heuristic(instance, cut_sets, time_budget_s=budget) if warm_start else None
    warm = fallback if formulation == "exact" else None
    relaxed, stopped = None, "heuristic"
    if warm is not None:
        # The preemptive relaxation often proves the heuristic's schedule optimal outright (identical
        # devices); otherwise its bound still tightens the MILP. Skipped without a warm start, so that
        # warm_start=False tests the MILP alone.
        nodes = BOUND_NODES if time_limit is None else int(NODES_PER_S * time_limit)
        sizes = PreemptiveRelaxation(instance, cut_sets, nodes).sizes
        if len(sizes) > 1 and max(sizes) <= EXACT_GROUP:  # mostly different devices: try the exact search
            budget = EXACT_NODES if time_limit is None else int(NODES_PER_S * time_limit)
            try:
                better = exact_search(
                    instance, cut_sets, cutoff_ms=warm.avg_delay_ms, max_nodes=budget, deadline=by(SEARCH_SHARE + extra)
                )
            except BudgetExhausted as exc:
                stopped = f"exact_search:{exc.reason}"
                if exc.schedule is not None and exc.schedule.avg_delay_ms < warm.avg_delay_ms:
                    # its best so far beats the heuristic: the incumbent (and cutoff) of every later phase
                    fallback = warm = exc.schedule
            else:
                best = warm if better is None or better.avg_delay_ms >= warm.avg_delay_ms else better
                return without_solver(best, "optimal", best.avg_delay_ms, "exact_search:optimal")
        relaxed = preemptive_bound(
            instance, cut_sets, cutoff_ms=warm.avg_delay_ms, max_nodes=nodes, deadline=by(BOUND_SHARE + extra)
        )
        if relaxed is not None and relaxed >= warm.avg_delay_ms * (1 - PROOF_GAP):
            return without_solver(warm, "optimal", relaxed, "preemptive_bound:optimal")
        if relaxed is None and fixed_cuts is None:
            # the preemptive search ran out (mostly 12 to 40 different devices): the Lagrangian bound of the same
            # relaxation's time-indexed LP is weaker but always ends, and HiGHS's own bound is far weaker still
            relaxed = lagrangian_bound(
                instance, cut_sets, warm.avg_delay_ms, slots=MID_LAGRANGE_SLOTS, deadline=by(LP_BOUND_SHARE + extra)
            )
            stopped += "+lagrangian_bound"
    if (
        time_limit is not None
        and fallback is not None
        and (left() < MIN_MILP_SHARE * time_limit or rows > MILP_ROWS_PER_S * left())
    ):
        # not enough time left to build the MILP and let HiGHS work: report what the searches found
        return without_solver(
            fallback, "time_limit", relaxed, f"{stopped}; milp skipped ({rows:,} rows, {max(0.0, left()):.1f} s left)"
        )
    build = build_exact if formulation == "exact" else build_paper
    built_at = time.perf_counter()
    model, extract = build(instance, cut_sets)
    build_s = time.perf_counter() - built_at
    if relaxed is not None and formulation == "exact":
        model.relaxation_cut = pyo.Constraint(
            expr=sum(model.completion_ms[i] for i in model.DEVICES) >= len(instance) * relaxed
        )
    options = {"mip_rel_gap": 1e-9, "mip_abs_gap": 1e-7, "random_seed": 0}
    if node_limit is not None:
        options["mip_max_nodes"] = int(node_limit)
    if warm is not None:  # prune with the heuristic's value; its schedule stays the fallback incumbent
        options["objective_bound"] = warm.avg_delay_ms * (1 + 1e-7) + 1e-6
    # Pyomo hands the model to HiGHS before HiGHS's own clock starts, and loads the solution back after it
    # stops; each takes about as long as the build: HiGHS gets the time left minus two more build times (with
    # one, 16 different devices took 64.5 s of a 60 s limit at load average 8, 2026-12-02).
    remaining = None if deadline is None else left() - 2 * build_s
    if remaining is not None and remaining < 0.05 and fallback is not None:
        return without_solver(fallback, "time_limit", relaxed, "milp build used the time limit")
    res = SolverFactory("highs").solve(
        model,
        time_limit=None if remaining is None else max(0.05, remaining),
        load_solutions=False,
        raise_exception_on_nonoptimal_result=False,
        solver_options=options,
    )
    return _finish(instance, formulation, res, extract, fallback, warm, cut_sets, t0, bound=relaxed)


def milp_rows_estimate(instance: Instance, cut_sets, formulation: str) -> int:
    """About how many constraint rows the MILP will have (its build time grows with them): per pair of
    offloading devices, one pattern row per layer of either; the paper model pairs every two layers."""
    spans = [d.n_layers - min(cs) for d, cs in zip(instance.devices, cut_sets)]
    if formulation == "paper":
        total = sum(spans)
        return total * total
    total, rows = sum(spans), 0
    for span in spans:
        total -= span
        rows += 2 * span * (len(spans) - 1) + total  # a device's layers against each later device, both ways
    return rows + 3 * sum(spans)


def _finish(
    instance,
    formulation,
    res,
    extract,
    fallback,
    warm,
    cut_sets,
    t0,
    status="time_limit",
    bound=None,
    stopped_by: str = "",
) -> Solution:
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
        return Solution(
            avg_delay_ms=best.avg_delay_ms,
            cuts=list(best.cuts),
            status=status,
            proven_optimal=proven,
            gap=0.0 if proven else (best.avg_delay_ms - bound) / max(best.avg_delay_ms, 1e-12),
            bound_ms=bound,
            solve_time_s=time.perf_counter() - t0,
            formulation=formulation,
            schedule=best,
            stopped_by=stopped_by or status,
        )
    term = res.termination_condition
    best = fallback
    if res.incumbent_objective is not None:
        res.solution_loader.load_vars()
        cuts, starts = extract()
        sched = Schedule(instance, cuts, _order_from_starts(instance, starts))
        if sched.avg_delay_ms > res.incumbent_objective + 1e-4 * max(1.0, res.incumbent_objective):
            raise ScheduleError(
                f"re-timing the solver's order gives {sched.avg_delay_ms} ms, worse than the "
                f"solver's {res.incumbent_objective} ms"
            )
        if best is None or sched.avg_delay_ms < best.avg_delay_ms:
            best = sched
    proven = term == TerminationCondition.convergenceCriteriaSatisfied
    if proven and best.avg_delay_ms < res.incumbent_objective - 1e-4 * max(1.0, best.avg_delay_ms):
        raise ScheduleError(
            f"HiGHS claims {res.incumbent_objective} ms optimal but the heuristic found "
            f"{best.avg_delay_ms} ms: the {formulation} formulation is wrong"
        )
    bound = res.objective_bound
    bound = trivial if bound is None or not math.isfinite(bound) else max(bound, trivial)
    if term == TerminationCondition.objectiveLimit or (
        warm is not None and term == TerminationCondition.provenInfeasible
    ):
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
    status = (
        "optimal"
        if proven
        else {TerminationCondition.maxTimeLimit: "time_limit", TerminationCondition.iterationLimit: "node_limit"}.get(
            term, term.name
        )
    )
    return Solution(
        avg_delay_ms=best.avg_delay_ms,
        cuts=list(best.cuts),
        status=status,
        proven_optimal=proven,
        gap=gap,
        bound_ms=bound,
        solve_time_s=time.perf_counter() - t0,
        formulation=formulation,
        schedule=best,
        stopped_by=f"highs:{status}",
    )
