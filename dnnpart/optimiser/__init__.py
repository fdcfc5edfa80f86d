"""Partitioning and offloading (paper Section III): choose every device's cut and the server's schedule.

Data flows instance -> schedule: `instance` holds the per-layer times, `solve` returns a validated `Schedule`
inside a `Solution`. The parts: `cuts` (candidates), `heuristic`, `relaxation` and `lp_bound` (lower
bounds), `exact_search` (branch and bound without a MILP), `pyomo_models` (the MILPs), `solve`, `baselines`
(the paper's Cases 2 and 3 and independent cuts) and `oracle` (brute force for tiny instances).
"""

from dnnpart.optimiser.baselines import solve_all_methods
from dnnpart.optimiser.cuts import candidate_cuts, independent_cuts
from dnnpart.optimiser.exact_search import best_server_order, exact_search
from dnnpart.optimiser.heuristic import dispatch, heuristic
from dnnpart.optimiser.instance import Device, Instance, load_instance, scale_server
from dnnpart.optimiser.lp_bound import lagrangian_bound, time_indexed_bound
from dnnpart.optimiser.relaxation import preemptive_bound, srpt_total_ms
from dnnpart.optimiser.schedule import Schedule, ScheduleError
from dnnpart.optimiser.solver import FORMULATIONS, Solution, solve

__all__ = [
    "FORMULATIONS",
    "Device",
    "Instance",
    "Schedule",
    "ScheduleError",
    "Solution",
    "best_server_order",
    "candidate_cuts",
    "dispatch",
    "exact_search",
    "heuristic",
    "independent_cuts",
    "lagrangian_bound",
    "load_instance",
    "preemptive_bound",
    "scale_server",
    "solve",
    "solve_all_methods",
    "srpt_total_ms",
    "time_indexed_bound",
]
