"""Solve-time benchmark of the optimiser: the exact formulation against formulation="paper", same instances.

    .venv/bin/python benchmarks/bench_milp.py            # writes benchmarks/results/milp.csv (~25 min)

Runs (the goals of issue 4, on a 2-core machine):
  sweep   identical AlexNet / VGG16 devices, `paper` profile, 2.5 Mbps (--sweep-mbps), N = 1..16 (exact; paper
          for N <= 2)
  n3      N = 3 AlexNet at 5 Mbps, exact vs paper (paper with a time limit, recorded if hit)
  hetero  mixed zoo networks, uplinks 0.5-20 Mbps (seed 0), N = 10 and N = 100, 60 s limit (N = 100: the
          heuristic schedule with the time-indexed LP bound)
  peer    ours (exact) and OR-Tools CP-SAT (benchmarks/cpsat_peer.py, 2 workers) side by side, same instances
          and time limit (--peer-limit, 30 s): the held-out heterogeneous family of bench_deadline.py
          (--peer-n 8,12,16,24,40 x --peer-seeds 1,2,3) and identical AlexNet devices as in `sweep`
          (--peer-sweep-n 4,8,16); one row per instance with both results, cpsat / ours ratios of the
          objective and of the time to proof (when both prove). Needs ortools: pip install 'dnnpart[bench]'
  resnet18  identical ResNet-18 devices (a DAG: its subtasks are its blocks), `paper` profile, --sweep-mbps,
          N = 1..--max-n, exact, --sweep-limit per solve (issue 14: each proven optimal in <= 5 s)
If the `paper` delay profile is not available, a synthetic one (ms per MAC and per output element, server
10x faster, as in the paper's eq. 1-2) stands in and the `source` column says so.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import pandas as pd
from bench_deadline import heterogeneous as heldout_heterogeneous

from dnnpart import networks
from dnnpart.errors import ProfileError
from dnnpart.files import write_csv
from dnnpart.optimiser import solve
from dnnpart.optimiser.instance import Device, Instance
from dnnpart.paths import BENCHMARKS_DIR

OUT = BENCHMARKS_DIR / "results" / "milp.csv"
SEED = 0
SCENARIOS = ("sweep", "n3", "hetero", "peer", "resnet18")


def synthetic_device(name: str, network: str, mbps: float) -> Device:
    layers = networks.get(network)
    local = 3e-6 * layers["macs"] + 2e-6 * layers["out_elements"]
    return Device(name, local.tolist(), (local / 10).tolist(), (layers["in_bytes"] * 8 / (mbps * 1000)).tolist())


def profile_device(name: str, network: str, mbps: float):
    """A device from the `paper` delay profile, or None when that profile does not exist yet."""
    try:
        from dnnpart.delay import load_delay_model
        from dnnpart.planning.compile import device_for_table

        model = load_delay_model("paper")
    except (ProfileError, ImportError):
        return None
    return device_for_table(name, networks.get(network), model, model, mbps)


def make_device(name, network, mbps):
    dev = profile_device(name, network, mbps)
    return (dev, "paper-profile") if dev is not None else (synthetic_device(name, network, mbps), "synthetic")


def identical(network: str, n: int, mbps: float):
    dev, source = make_device("d0", network, mbps)
    return Instance(tuple(Device(f"d{i}", dev.local_ms, dev.server_ms, dev.upload_ms) for i in range(n))), source


def heterogeneous(n: int, seed: int = SEED):
    rng = random.Random(seed)
    devs, source = [], None
    for i in range(n):
        net, mbps = rng.choice(networks.names()), round(rng.uniform(0.5, 20.0), 2)
        dev, source = make_device(f"d{i}-{net}-{mbps}", net, mbps)
        devs.append(dev)
    return Instance(tuple(devs)), source


def run(rows, scenario, network, mbps, inst, source, formulation, time_limit):
    sol = solve(inst, formulation, time_limit=time_limit)
    rows.append(
        {
            "formulation": formulation,
            "scenario": scenario,
            "n_devices": len(inst),
            "network": network,
            "mbps": mbps,
            "source": source,
            "time_limit_s": time_limit,
            "solve_time_s": round(sol.solve_time_s, 3),
            "avg_delay_ms": sol.avg_delay_ms,
            "bound_ms": sol.bound_ms,
            "proven_optimal": sol.proven_optimal,
            "status": sol.status,
            "gap": sol.gap,
        }
    )
    r = rows[-1]
    print(
        f"{scenario:<7} {network:<8} N={r['n_devices']:<4} {formulation:<6} {r['solve_time_s']:>8.2f} s  "
        f"{r['avg_delay_ms']:>10.2f} ms  {r['status']:<11} gap={r['gap']}",
        flush=True,
    )


def run_peer(rows, scenario, network, mbps, seed, inst, source, time_limit):
    """Ours and CP-SAT on one instance, same time limit; one row with both and their ratios (cpsat / ours)."""
    from cpsat_peer import solve_cpsat

    ours = solve(inst, "exact", time_limit=time_limit)
    peer = solve_cpsat(inst, time_limit)
    both_proven = ours.proven_optimal and peer.proven_optimal
    ours_s, peer_s = round(ours.solve_time_s, 3), round(peer.solve_time_s, 3)  # as written, ratio from these
    rows.append(
        {
            "formulation": "exact",
            "scenario": scenario,
            "n_devices": len(inst),
            "network": network,
            "mbps": mbps,
            "seed": seed,
            "source": source,
            "time_limit_s": time_limit,
            "solve_time_s": ours_s,
            "avg_delay_ms": ours.avg_delay_ms,
            "bound_ms": ours.bound_ms,
            "proven_optimal": ours.proven_optimal,
            "status": ours.status,
            "gap": ours.gap,
            "cpsat_solve_time_s": peer_s,
            "cpsat_avg_delay_ms": peer.avg_delay_ms,
            "cpsat_objective_ms": peer.objective_ms,
            "cpsat_bound_ms": peer.bound_ms,
            "cpsat_proven_optimal": peer.proven_optimal,
            "cpsat_status": peer.status,
            "cpsat_gap": peer.gap,
            # CP-SAT's schedule as dnnpart times it, over ours: > 1 means ours is better
            "objective_ratio": None if peer.avg_delay_ms is None else peer.avg_delay_ms / ours.avg_delay_ms,
            "time_to_proof_ratio": peer_s / max(ours_s, 1e-3) if both_proven else None,
        }
    )
    r = rows[-1]
    ratio = "-" if r["objective_ratio"] is None else f"{r['objective_ratio']:.4f}"
    seed_text = "-" if seed is None else seed
    print(
        f"{scenario:<7} {network:<8} N={r['n_devices']:<4} seed={seed_text}  ours {r['solve_time_s']:>7.2f} s "
        f"{r['avg_delay_ms']:>10.2f} ms {r['status']:<10}  cpsat {r['cpsat_solve_time_s']:>7.2f} s "
        f"{r['cpsat_avg_delay_ms'] or float('nan'):>10.2f} ms {r['cpsat_status']:<9} objective x{ratio}",
        flush=True,
    )


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paper-limit", type=float, default=300.0, help="time limit of the paper formulation at N=3")
    ap.add_argument("--limit", type=float, default=60.0, help="time limit of the heterogeneous and N=3 exact solves")
    ap.add_argument("--sweep-limit", type=float, default=20.0, help="time limit of each solve of the N=1..16 sweep")
    ap.add_argument("--max-n", type=int, default=16)
    ap.add_argument("--sweep-mbps", type=float, default=2.5, help="uplink of the N=1..16 sweep (the paper's 2.5)")
    ap.add_argument("--peer-limit", type=float, default=30.0, help="time limit of each solve, ours and CP-SAT's")
    ap.add_argument("--peer-n", default="8,12,16,24,40", help="devices of the held-out heterogeneous instances")
    ap.add_argument("--peer-seeds", default="1,2,3", help="seeds of the held-out heterogeneous instances")
    ap.add_argument("--peer-sweep-n", default="4,8,16", help="identical AlexNet devices at --sweep-mbps")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated subset; rows of other scenarios already in --out are kept",
    )
    args = ap.parse_args(argv)
    wanted = set(args.scenarios.split(","))
    if wanted - set(SCENARIOS):
        print(f"unknown scenario(s) {sorted(wanted - set(SCENARIOS))}; choose from {list(SCENARIOS)}", file=sys.stderr)
        return 2
    if "peer" in wanted:
        try:
            import ortools  # noqa: F401
        except ImportError:
            print(
                "the peer scenario needs OR-Tools: pip install 'dnnpart[bench]' (or leave out peer with "
                "--scenarios sweep,n3,hetero)",
                file=sys.stderr,
            )
            return 2
    rows = []
    for network in ("alexnet", "vgg16") if "sweep" in wanted else ():
        for n in range(1, args.max_n + 1):
            inst, source = identical(network, n, args.sweep_mbps)
            run(rows, "sweep", network, args.sweep_mbps, inst, source, "exact", args.sweep_limit)
            if n <= 2:
                run(rows, "sweep", network, args.sweep_mbps, inst, source, "paper", args.sweep_limit)
    if "n3" in wanted:
        inst, source = identical("alexnet", 3, 5.0)
        run(rows, "n3", "alexnet", 5.0, inst, source, "exact", args.limit)
        run(rows, "n3", "alexnet", 5.0, inst, source, "paper", args.paper_limit)
    for n in (10, 100) if "hetero" in wanted else ():
        inst, source = heterogeneous(n)
        run(rows, "hetero", "mixed", None, inst, source, "exact", args.limit)
    if "peer" in wanted:
        for n in ints(args.peer_n):
            for seed in ints(args.peer_seeds):
                inst = heldout_heterogeneous(n, seed)
                run_peer(rows, "peer", "heldout", None, seed, inst, "paper-profile", args.peer_limit)
        for n in ints(args.peer_sweep_n):
            inst, source = identical("alexnet", n, args.sweep_mbps)
            run_peer(rows, "peer", "alexnet", args.sweep_mbps, None, inst, source, args.peer_limit)
    for n in range(1, args.max_n + 1) if "resnet18" in wanted else ():
        inst, source = identical("resnet18", n, args.sweep_mbps)
        run(rows, "resnet18", "resnet18", args.sweep_mbps, inst, source, "exact", args.sweep_limit)
    df = pd.DataFrame(rows)
    out = Path(args.out)
    if out.exists() and wanted != set(SCENARIOS):
        old = pd.read_csv(out)
        df = pd.concat([old[~old.scenario.isin(wanted)], df], ignore_index=True)
        order = {name: k for k, name in enumerate(SCENARIOS)}
        df = df.sort_values("scenario", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    write_csv(df, out)
    summarise(df)
    return 0


def summarise(df: pd.DataFrame) -> None:
    ex = df[df.formulation == "exact"]
    sweep = ex[ex.scenario == "sweep"]
    print("\nGoal                                              measured")
    for net in ("alexnet", "vgg16"):
        s = sweep[sweep.network == net]
        if s.empty:
            continue
        print(
            f"  {net}: proven optimal N<=16 in <=2 s each      max {s.solve_time_s.max():.2f} s, "
            f"{int(s.proven_optimal.sum())}/{len(s)} proven"
        )
        print(f"  {net}: sweep N=1..16 in <=10 s total            {s.solve_time_s.sum():.2f} s")
    r18 = ex[ex.scenario == "resnet18"]
    if len(r18):
        print(
            f"  resnet18: proven optimal N<=16 in <=5 s each     max {r18.solve_time_s.max():.2f} s, "
            f"{int(r18.proven_optimal.sum())}/{len(r18)} proven"
        )
    n3 = df[df.scenario == "n3"].set_index("formulation")
    if {"exact", "paper"} <= set(n3.index):
        speedup = n3.loc["paper", "solve_time_s"] / max(n3.loc["exact", "solve_time_s"], 1e-9)
        print(
            f"  N=3 AlexNet 5 Mbps: exact >=100x faster than paper  {speedup:.0f}x (paper: "
            f"{n3.loc['paper', 'status']}, {n3.loc['paper', 'solve_time_s']:.1f} s)"
        )
    for n in (10, 100):
        h = ex[(ex.scenario == "hetero") & (ex.n_devices == n)]
        if len(h):
            h = h.iloc[0]
            bound = f", bound {h.bound_ms:.1f} ms" if "bound_ms" in h else ""
            print(
                f"  hetero N={n}: {'proven optimal' if n == 10 else 'gap <= 2 %'} within 60 s"
                f"{'':<14} {h.status}, {h.avg_delay_ms:.1f} ms, gap {h.gap:.4f}{bound}, {h.solve_time_s:.1f} s"
            )
    peer = df[df.scenario == "peer"]
    if len(peer):
        ratio = peer.objective_ratio.dropna()
        proof = peer.time_to_proof_ratio.dropna()
        none = len(peer) - len(ratio)  # CP-SAT found no schedule within the limit: ours is ahead there too
        print(
            f"  peer: objective <= CP-SAT's on every instance         {int((ratio >= 1 - 1e-9).sum()) + none}"
            f"/{len(peer)} (cpsat/ours {ratio.min():.4f}..{ratio.max():.4f}; CP-SAT found no schedule: {none})"
        )
        print(
            f"  peer: time to proof >= 10x shorter where both prove  {int((proof >= 10).sum())}/{len(proof)}"
            + (f" (cpsat/ours {proof.min():.1f}..{proof.max():.1f}x)" if len(proof) else "")
        )
        print(
            f"  peer: proven optimal, ours / CP-SAT                 {int(peer.proven_optimal.sum())} / "
            f"{int(peer.cpsat_proven_optimal.sum())} of {len(peer)}"
        )


if __name__ == "__main__":
    sys.exit(main())
