"""Does `dnnpart solve --time-limit T` hold? Wall time of the optimum plus every baseline against T.

    .venv/bin/python benchmarks/bench_deadline.py [--time-limit 60] [--n 8,12,16,24,40,100] [--seeds 1,2,3]

A held-out family of heterogeneous instances, as a new user would write them (issue 15): every device picks a
zoo network, an uplink log-uniform in 0.5-50 Mbps and a server load uniform in 0-0.5, from random.Random(seed)
with the seeds given (not the optimiser benchmark's seed 0); delays from the `paper` profile. Each instance
is solved as the CLI does (dnnpart.optimiser.baselines.solve_all_methods with one time limit for all four
methods). Writes benchmarks/results/deadline.csv: wall time, its ratio to the limit, whether it held
(<= 1.05 T + 1 s), and what the optimum proved (status, gap, the phase that stopped it).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import pandas as pd

from dnnpart import networks
from dnnpart.delay import load_delay_model
from dnnpart.files import write_csv
from dnnpart.optimiser.baselines import solve_all_methods
from dnnpart.optimiser.instance import Instance
from dnnpart.paths import BENCHMARKS_DIR
from dnnpart.planning.compile import device_from_times

OUT = BENCHMARKS_DIR / "results" / "deadline.csv"


def heterogeneous(n: int, seed: int) -> Instance:
    """The held-out family: each device a random zoo network, uplink and server load, from random.Random(seed).
    The same devices as `device_for_table` per device, with each network's layer delays predicted once."""
    rng = random.Random(seed)
    model = load_delay_model("paper")
    predicted = {}
    devices = []
    for i in range(n):
        net = rng.choice(networks.names())
        mbps = round(10 ** rng.uniform(-0.30103, 1.69897), 3)  # 0.5 .. 50 Mbps, log-uniform
        load = round(rng.uniform(0.0, 0.5), 3)
        if net not in predicted:
            layers = networks.get(net)
            predicted[net] = (layers, model.predict(layers, "device"), model.predict(layers, "server"))
        layers, local_ms, server_ms = predicted[net]
        devices.append(device_from_times(f"d{i}-{net}", layers, local_ms, server_ms, mbps, load))
    return Instance(tuple(devices))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--n", default="8,12,16,24,40,100", help="comma-separated numbers of devices")
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated instance seeds")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    rows = []
    for n in [int(v) for v in args.n.split(",")]:
        for seed in [int(v) for v in args.seeds.split(",")]:
            inst = heterogeneous(n, seed)
            start = time.perf_counter()
            sols = solve_all_methods(inst, "exact", args.time_limit)
            wall = time.perf_counter() - start
            best = sols["case1"]
            rows.append(
                {
                    "n_devices": n,
                    "seed": seed,
                    "time_limit_s": args.time_limit,
                    "wall_s": round(wall, 3),
                    "wall_over_limit": round(wall / args.time_limit, 4),
                    "limit_held": wall <= 1.05 * args.time_limit + 1.0,
                    "case1_solve_time_s": round(best.solve_time_s, 3),
                    "avg_delay_ms": best.avg_delay_ms,
                    "bound_ms": best.bound_ms,
                    "gap": best.gap,
                    "proven_optimal": best.proven_optimal,
                    "status": best.status,
                    "stopped_by": best.stopped_by,
                }
            )
            r = rows[-1]
            print(
                f"N={n:<4} seed={seed}  wall {wall:7.2f} s / {args.time_limit:g} s  {r['status']:<10} "
                f"gap={r['gap']}  {r['stopped_by']}",
                flush=True,
            )
    df = pd.DataFrame(rows)
    write_csv(df, Path(args.out))
    print(
        f"\nlimit held in {int(df['limit_held'].sum())} of {len(df)} runs; worst wall/limit "
        f"{df['wall_over_limit'].max():.3f}; proven optimal {int(df['proven_optimal'].sum())} of {len(df)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
