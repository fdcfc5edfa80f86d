"""The paper's comparison cases, evaluated by the same code as the optimiser.

- case2 (all on server): every device uploads its raw input (cut 0); the server schedules optimally.
- case3 (all local): every device runs its whole network (cut M); the server is idle.
- independent: each device picks the cut that would be best for it alone (Neurosurgeon-style), then the
  server schedules what arrives optimally.

The server schedule for given cuts comes from dnnpart.optimiser.solver.solve(fixed_cuts=...), so baselines and the
optimiser share the timing, the checker and the objective.
"""

from __future__ import annotations

import time

from dnnpart.optimiser.cuts import independent_cuts
from dnnpart.optimiser.instance import Instance
from dnnpart.optimiser.solver import Solution, solve
from dnnpart.vocabulary import BASELINE_METHODS


def with_cuts(instance: Instance, cuts, time_limit: float | None = None, node_limit: int | None = None) -> Solution:
    """The best server schedule for fixed cuts."""
    return solve(instance, "exact", time_limit=time_limit, fixed_cuts=cuts, node_limit=node_limit)


def all_server(instance: Instance, time_limit: float | None = None, node_limit: int | None = None) -> Solution:
    """Case 2: offload everything (cut 0)."""
    return with_cuts(instance, [0] * len(instance), time_limit, node_limit)


def all_local(instance: Instance, time_limit: float | None = None, node_limit: int | None = None) -> Solution:
    """Case 3: run everything on the device (cut M)."""
    return with_cuts(instance, [d.n_layers for d in instance.devices], time_limit, node_limit)


def independent(instance: Instance, time_limit: float | None = None, node_limit: int | None = None) -> Solution:
    """Each device's selfish best cut, then the server's best schedule of what arrives."""
    return with_cuts(instance, independent_cuts(instance), time_limit, node_limit)


# the baselines under their names in the study's vocabulary (case2, case3, independent)
BASELINES = dict(zip(BASELINE_METHODS, (all_server, all_local, independent), strict=True))


def evaluate_all(
    instance: Instance, time_limit: float | None = None, node_limit: int | None = None
) -> dict[str, Solution]:
    """Every baseline by name (case2, case3, independent)."""
    return {name: fn(instance, time_limit, node_limit) for name, fn in BASELINES.items()}


CASE1_SHARE = 0.7  # of one time limit over all methods: the optimum's share; the baselines split the rest


def solve_all_methods(
    instance: Instance, formulation: str = "exact", time_limit: float | None = None, node_limit: int | None = None
) -> dict[str, Solution]:
    """The optimum ("case1") and every baseline, all solved by the same code: method -> Solution.

    `time_limit` holds for all of them together: the optimum gets CASE1_SHARE of it, and each baseline (fixed
    cuts: only the server order is searched) an equal part of what is left when its turn comes."""
    if time_limit is None:
        return {
            "case1": solve(instance, formulation, node_limit=node_limit),
            **evaluate_all(instance, None, node_limit),
        }
    end = time.perf_counter() + time_limit
    out = {"case1": solve(instance, formulation, time_limit=CASE1_SHARE * time_limit, node_limit=node_limit)}
    for k, (name, fn) in enumerate(BASELINES.items()):
        share = max(0.05, (end - time.perf_counter()) / (len(BASELINES) - k))
        out[name] = fn(instance, share, node_limit)
    return out
