"""The paper's Section IV sweeps, one function per figure, each returning a tidy DataFrame.

Every sweep evaluates the same four methods on the same instance:
  case1        the exact optimum (MILP),
  case2        all layers on the server (cut 0),
  case3        all layers on the device,
  independent  each device picks its own best cut alone (Neurosurgeon-style), the server schedules what arrives.
Rows: one per scenario x method, with avg_delay_ms, transmitted_bytes and the chosen cuts.

Each sweep takes `scheduler` and `workers` (dnnpart.parallel): the scenarios are solved serially, on a Dask
LocalCluster, or on a cluster, with the same rows in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from dnnpart import networks, parallel
from dnnpart.optimiser.baselines import solve_all_methods
from dnnpart.optimiser.instance import check_load
from dnnpart.optimiser.solver import solve
from dnnpart.planning.compile import check_n_devices, check_rate, network_instance
from dnnpart.vocabulary import cut_name

# Fig. 1/3: 0.25-50 Mbps, log-spaced, 17 points; rounded so CSVs and labels are stable.
BANDWIDTHS_MBPS = [float(f"{b:.3g}") for b in np.geomspace(0.25, 50.0, 17)]
LOADS = [round(0.1 * k, 1) for k in range(10)]
N_DEVICES = list(range(1, 17))
PAPER_NETWORKS = ["vgg16", "vgg13", "alexnet", "lenet"]
# The paper's claims (abstract and Section IV), set beside ours in the reports.
PAPER_HEADLINE = {"case2": 90.5, "case3": 69.5}


# Branch-and-bound nodes per solve in the sweeps. A node limit, unlike a time limit, stops at the same point on
# every run, so the figures' CSVs are identical run to run. Every point of the paper's sweeps is proven optimal
# within it; a row that is not says proven_optimal False and gives the remaining gap.
SWEEP_NODE_LIMIT = 500


def transmitted_bytes(layers: pd.DataFrame, cuts: Iterable[int]) -> int:
    """Bytes all devices upload: the input of subtask c+1 (layer, or block of a DAG) for every cut c below the
    last one."""
    in_bytes = networks.block_in_bytes(layers)
    return int(sum(in_bytes[c] for c in cuts if c < len(in_bytes)))


def scenario_rows(network: str, n_devices: int, bandwidth_mbps: float, load: float, profile: str) -> list[dict]:
    """Solve one identical-devices scenario with every method: one row per method."""
    layers = networks.get(network)
    layer_names = networks.block_names(layers)  # a cut of a DAG is named by its last local block's last layer
    instance = network_instance(network, n_devices, bandwidth_mbps, load, profile)
    rows = []
    for method, solution in solve_all_methods(instance, node_limit=SWEEP_NODE_LIMIT).items():
        cuts = [int(c) for c in solution.cuts]
        rows.append(
            {
                "profile": profile,
                "network": network,
                "n_devices": int(n_devices),
                "bandwidth_mbps": float(bandwidth_mbps),
                "load": float(load),
                "method": method,
                "avg_delay_ms": float(solution.avg_delay_ms),
                "transmitted_bytes": transmitted_bytes(layers, cuts),
                "per_device_bytes": transmitted_bytes(layers, cuts) / n_devices,
                "cuts": " ".join(map(str, cuts)),
                "cut_layers": ", ".join(cut_name(layer_names, c) for c in cuts),
                "proven_optimal": bool(solution.proven_optimal),
                "gap": float(solution.gap) if solution.gap is not None else float("nan"),
            }
        )
    return rows


def _scenario_point(point: dict) -> list[dict]:
    return scenario_rows(**point)


def _sweep(profiles, scenarios, scheduler=None, workers=None) -> pd.DataFrame:
    """Every scenario under every profile, solved where `scheduler` says (dnnpart.parallel); rows in the order of
    the profiles and scenarios, whichever worker finishes first."""
    points = [dict(profile=profile, **kw) for profile in _as_list(profiles) for kw in scenarios]
    results = parallel.map_points(_scenario_point, points, scheduler=scheduler, workers=workers)
    return pd.DataFrame([row for rows in results for row in rows])


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def bandwidth_sweep(
    profiles="paper",
    network="alexnet",
    n_devices=4,
    bandwidths_mbps=BANDWIDTHS_MBPS,
    load=0.0,
    scheduler=None,
    workers=None,
) -> pd.DataFrame:
    """Figs. 1 and 3: average delay and transmitted data against uplink bandwidth."""
    scenarios = [dict(network=network, n_devices=n_devices, bandwidth_mbps=b, load=load) for b in bandwidths_mbps]
    return _sweep(profiles, scenarios, scheduler, workers)


def network_sweep(
    profiles="paper",
    network_names=PAPER_NETWORKS,
    n_devices=4,
    bandwidth_mbps=1.0,
    load=0.0,
    scheduler=None,
    workers=None,
) -> pd.DataFrame:
    """Fig. 2: relative speed (Case-3 delay / method delay) per network at one bandwidth."""
    scenarios = [dict(network=n, n_devices=n_devices, bandwidth_mbps=bandwidth_mbps, load=load) for n in network_names]
    df = _sweep(profiles, scenarios, scheduler, workers)
    case3 = df[df["method"] == "case3"].set_index(["profile", "network"])["avg_delay_ms"]
    df["relative_speed"] = [case3[(p, n)] / d for p, n, d in zip(df["profile"], df["network"], df["avg_delay_ms"])]
    return df


def partitioning_gains(df: pd.DataFrame) -> pd.DataFrame:
    """What Case 1 (optimal partition) buys per (profile, network) of a network sweep: its delay against all-local
    (Case 3) and all-offloaded (Case 2) in ms and as a reduction in %, where its devices cut, and the bytes each
    device uploads at those cuts against the raw input (Case 2's upload)."""
    wide = df.pivot_table(index=["profile", "network"], columns="method", values="avg_delay_ms", sort=False)
    case1 = df[df["method"] == "case1"].set_index(["profile", "network"])
    case2 = df[df["method"] == "case2"].set_index(["profile", "network"])
    out = wide[["case1", "case2", "case3"]].add_suffix("_ms").reset_index()
    out["reduction_vs_case2_pct"] = 100.0 * (1.0 - out["case1_ms"] / out["case2_ms"])
    out["reduction_vs_case3_pct"] = 100.0 * (1.0 - out["case1_ms"] / out["case3_ms"])
    keys = list(zip(out["profile"], out["network"]))
    out["case1_cut_layers"] = [case1.loc[k, "cut_layers"] for k in keys]
    per_device = {m: t["transmitted_bytes"] / t["n_devices"] for m, t in (("case1", case1), ("case2", case2))}
    out["case1_upload_bytes_per_device"] = [float(per_device["case1"][k]) for k in keys]
    out["input_bytes"] = [float(per_device["case2"][k]) for k in keys]
    return out


def load_sweep(
    profiles="paper", network="alexnet", n_devices=4, bandwidth_mbps=5.0, loads=LOADS, scheduler=None, workers=None
) -> pd.DataFrame:
    """Fig. 4: average delay against the server's load level (server times scaled by 1/(1-load))."""
    scenarios = [dict(network=network, n_devices=n_devices, bandwidth_mbps=bandwidth_mbps, load=x) for x in loads]
    return _sweep(profiles, scenarios, scheduler, workers)


def devices_sweep(
    profiles="paper", network="alexnet", n_devices=N_DEVICES, bandwidth_mbps=2.5, load=0.0, scheduler=None, workers=None
) -> pd.DataFrame:
    """Fig. 5: average delay against the number of identical devices."""
    scenarios = [dict(network=network, n_devices=n, bandwidth_mbps=bandwidth_mbps, load=load) for n in n_devices]
    return _sweep(profiles, scenarios, scheduler, workers)


def reductions(df: pd.DataFrame) -> pd.DataFrame:
    """Per scenario, Case 1's delay reduction (%) against Case 2 and Case 3: 100 * (1 - case1 / caseX)."""
    keys = [c for c in ["figure", "profile", "network", "n_devices", "bandwidth_mbps", "load"] if c in df.columns]
    wide = df.pivot_table(index=keys, columns="method", values="avg_delay_ms", sort=True).reset_index()
    out = []
    for baseline in ["case2", "case3"]:
        part = wide[keys].copy()
        part["versus"] = baseline
        part["reduction_pct"] = 100.0 * (1.0 - wide["case1"] / wide[baseline])
        out.append(part)
    return pd.concat(out, ignore_index=True)


def headline(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The largest reduction against Case 2 and Case 3 across all sweeps, per profile, beside the paper's."""
    tagged = pd.concat([df.assign(figure=name) for name, df in sorted(frames.items())], ignore_index=True)
    red = reductions(tagged)
    best = red.loc[red.groupby(["profile", "versus"], sort=True)["reduction_pct"].idxmax()]
    best = best.assign(paper_reduction_pct=best["versus"].map(PAPER_HEADLINE))
    cols = [
        "profile",
        "versus",
        "reduction_pct",
        "paper_reduction_pct",
        "figure",
        "network",
        "n_devices",
        "bandwidth_mbps",
        "load",
    ]
    return best[cols].sort_values(["profile", "versus"]).reset_index(drop=True)


def check_parameters(profiles=(), network_names=(), bandwidths_mbps=(), loads=(), n_devices=()) -> None:
    """Fail fast on bad notebook parameters (papermill only warns on unknown names, so values are checked here)."""
    from dnnpart.delay import load_delay_model

    for profile in _as_list(profiles):
        load_delay_model(profile)
    for name in _as_list(network_names):
        networks.get(name)
    for b in bandwidths_mbps:
        check_rate(b, "bandwidth_mbps")
    for load in loads:
        check_load(load)
    for n in n_devices:
        check_n_devices(n)


def solver_scaling(
    n_devices=(1, 2, 3, 4, 8, 16),
    formulations=("exact", "paper"),
    network="alexnet",
    bandwidth_mbps=2.5,
    load=0.0,
    profile="paper",
    time_limit=30.0,
    paper_max_devices=3,
) -> pd.DataFrame:
    """Solve time, status and gap against the number of identical devices, per formulation.

    The paper's literal formulation grows quadratically in layer pairs and is only run up to
    `paper_max_devices`; both run under the same time limit, so a row says whether optimality was proven.
    """
    rows = []
    for n in n_devices:
        instance = network_instance(network, n, bandwidth_mbps, load, profile)
        for formulation in formulations:
            if formulation == "paper" and n > paper_max_devices:
                continue
            sol = solve(instance, formulation=formulation, time_limit=time_limit)
            rows.append(
                {
                    "profile": profile,
                    "network": network,
                    "bandwidth_mbps": float(bandwidth_mbps),
                    "n_devices": int(n),
                    "formulation": formulation,
                    "solve_time_s": sol.solve_time_s,
                    "avg_delay_ms": sol.avg_delay_ms,
                    "proven_optimal": bool(sol.proven_optimal),
                    "gap": sol.gap,
                    "status": sol.status,
                }
            )
    return pd.DataFrame(rows)
