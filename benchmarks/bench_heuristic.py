"""The heuristic against proven optima: the ranked search with polished orders vs one device's moves alone.

    .venv/bin/python benchmarks/bench_heuristic.py [--n 4,6,8] [--seeds 1-20] [--big 12,16] [--big-seeds 1-10]

On the held-out family of benchmarks/bench_deadline.py (`heterogeneous(n, seed)`), side by side in one run:
`heuristic(..., ranked=True)` (dnnpart's, moves of one or two devices ranked by the preemptive relaxation, then
the best server order of a short branch and bound) and `heuristic(..., ranked=False)` (the reference: moves of one
device, each timed by dispatch's order: the local search before 2026-12-07), both with a 5 s budget. For the
small sizes (`--n`), `solve(instance, time_limit=60)` gives the optimum to compare with (rows where it is not
proven say so); for the big sizes (`--big`) only the two heuristics are compared. Writes
benchmarks/results/heuristic.csv (one row per instance and method) and prints a summary per size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deadline import heterogeneous  # noqa: E402

from dnnpart.files import write_csv  # noqa: E402
from dnnpart.optimiser.cuts import candidate_cuts  # noqa: E402
from dnnpart.optimiser.heuristic import heuristic  # noqa: E402
from dnnpart.optimiser.solver import solve  # noqa: E402
from dnnpart.paths import BENCHMARKS_DIR  # noqa: E402

OUT = BENCHMARKS_DIR / "results" / "heuristic.csv"
METHODS = {"ranked": True, "single_moves": False}  # dnnpart's heuristic, and the reference


def span(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def rows_for(n: int, seed: int, with_optimum: bool) -> list[dict]:
    inst = heterogeneous(n, seed)
    cut_sets = [candidate_cuts(d) for d in inst.devices]
    optimum = solve(inst, time_limit=60.0) if with_optimum else None
    rows = []
    for method, ranked in METHODS.items():
        start = time.perf_counter()
        found = heuristic(inst, cut_sets, time_budget_s=5.0, ranked=ranked)
        rows.append(
            {
                "n_devices": n,
                "seed": seed,
                "method": method,
                "avg_delay_ms": found.avg_delay_ms,
                "time_s": round(time.perf_counter() - start, 3),
                "optimum_ms": None if optimum is None else optimum.avg_delay_ms,
                "optimum_proven": None if optimum is None else optimum.proven_optimal,
            }
        )
    return rows


def summary(df: pd.DataFrame) -> pd.DataFrame:
    wide = df.pivot_table(index=["n_devices", "seed"], columns="method", values="avg_delay_ms")
    out = []
    for n, g in df.groupby("n_devices", sort=True):
        row = {"n_devices": n, "instances": g["seed"].nunique()}
        w = wide.loc[n]
        row["ranked_better"] = int((w["ranked"] < w["single_moves"] - 1e-6).sum())
        row["ranked_worse"] = int((w["ranked"] > w["single_moves"] + 1e-6).sum())
        row["mean_improvement_pct"] = round(100 * (1 - w["ranked"] / w["single_moves"]).mean(), 3)
        for method in METHODS:
            m = g[g["method"] == method]
            row[f"{method}_max_s"] = m["time_s"].max()
            if m["optimum_ms"].notna().all():
                excess = 100 * (m["avg_delay_ms"] / m["optimum_ms"] - 1)
                row[f"{method}_at_optimum"] = int((excess < 1e-7).sum())
                row[f"{method}_mean_excess_pct"] = round(excess.mean(), 3)
                row[f"{method}_max_excess_pct"] = round(excess.max(), 3)
        if g["optimum_proven"].notna().all():
            row["optima_proven"] = int(g[g["method"] == "ranked"]["optimum_proven"].sum())
        out.append(row)
    return pd.DataFrame(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="4,6,8", help="sizes compared with solve's optimum")
    ap.add_argument("--seeds", default="1-20")
    ap.add_argument("--big", default="12,16", help="sizes where only the two heuristics are compared")
    ap.add_argument("--big-seeds", default="1-10")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    rows = []
    plan = [(int(n), s, True) for n in filter(None, args.n.split(",")) for s in span(args.seeds)]
    plan += [(int(n), s, False) for n in filter(None, args.big.split(",")) for s in span(args.big_seeds)]
    for n, seed, with_optimum in plan:
        rows += rows_for(n, seed, with_optimum)
        write_csv(pd.DataFrame(rows), Path(args.out))  # after every instance: an interrupted run keeps its rows
    print(summary(pd.DataFrame(rows)).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
