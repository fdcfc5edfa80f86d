"""`dnnpart solve`: load or build an instance, solve it, print the plan (or JSON) with the baselines."""
from __future__ import annotations

import json
import math

from dnnpart.errors import DnnpartError


def check_args(args) -> None:
    """Reject impossible scenario parameters before any work (exit status 2 via the CLI)."""
    from dnnpart.scenario import check_load, check_n_devices, check_rate

    if args.network is not None:
        check_rate(args.bandwidth_mbps, "--bandwidth-mbps")
        check_load(args.load, "--load")
        check_n_devices(args.devices, "--devices")
    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise DnnpartError(f"--time-limit must be a positive number of seconds, got {args.time_limit}")
    if args.report is not None and args.scenario is None:
        raise DnnpartError("--report needs --scenario")


def result_dict(sol, baselines: dict) -> dict:
    """The --json object: the solution, its full schedule (uploads included) and the baselines."""
    out = sol.to_dict()
    out["devices"] = sol.schedule.completions().to_dict(orient="records")
    out["baselines"] = {name: {"avg_delay_ms": b.avg_delay_ms, "cuts": list(b.cuts)} for name, b in baselines.items()}
    return out


def format_plan(sol, baselines: dict) -> str:
    """A readable plan: per device, then the average, the baselines and what the solver proved."""
    table = sol.schedule.completions()
    lines = [f"{'device':<16} {'cut':>4} {'local_ms':>10} {'upload_ms':>10} {'server_ms':>10} {'completion_ms':>14}"]
    for r in table.itertuples():
        lines.append(f"{r.device:<16} {r.cut:>4} {r.local_ms:>10.2f} {r.upload_ms:>10.2f} {r.server_ms:>10.2f} "
                     f"{r.completion_ms:>14.2f}")
    lines.append(f"average completion: {sol.avg_delay_ms:.3f} ms")
    for name, b in baselines.items():
        saving = 100.0 * (b.avg_delay_ms - sol.avg_delay_ms) / b.avg_delay_ms if b.avg_delay_ms > 0 else 0.0
        lines.append(f"  vs {name:<12} {b.avg_delay_ms:>12.3f} ms  (optimiser saves {saving:.1f} %)")
    gap = "n/a" if sol.gap is None else f"{100 * sol.gap:.3f} %"
    lines.append(f"status: {sol.status}, proven optimal: {'yes' if sol.proven_optimal else 'no'}, gap: {gap}, "
                 f"formulation: {sol.formulation}, solve time: {sol.solve_time_s:.2f} s")
    return "\n".join(lines)


def cli_solve(args) -> int:
    check_args(args)
    if args.scenario is not None:
        from dnnpart.scenario import cli_solve_scenario

        return cli_solve_scenario(args)
    if args.instance is not None:
        from dnnpart.instance import load_instance

        instance = load_instance(args.instance)
    else:
        from dnnpart.scenario import network_instance

        instance = network_instance(args.network, args.devices, args.bandwidth_mbps, args.load, args.profile)
    from dnnpart.baselines import solve_all_methods

    baselines = solve_all_methods(instance, args.formulation, args.time_limit)
    sol = baselines.pop("case1")
    if args.json:
        print(json.dumps(result_dict(sol, baselines), indent=1))
    else:
        print(format_plan(sol, baselines))
    return 0
