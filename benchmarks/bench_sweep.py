"""Do the study's sweeps scale out? Serial against a Dask LocalCluster, side by side in one run.

    .venv/bin/python benchmarks/bench_sweep.py [--notebooks 02,03,04,05] [--workers 1,2] [--draws 200]

Two parts, one CSV (benchmarks/results/sweep.csv, a row per measurement):
- `notebook`: each sweep notebook executed by papermill as `make reproduce` does, once with scheduler "serial"
  and once on a LocalCluster of each --workers count; wall time, speedup against serial, and whether every CSV
  the notebook wrote is byte-identical to the serial run's.
- `dnnpart sweep`: `--draws` random points (AlexNet/VGG16/LeNet, N = 1-8, 0.5-50 Mbps, load 0-0.5, `paper`
  profile) solved by the command with 1 and 2 workers: points per second, and the time 10,000 such points would
  take at that rate (an extrapolation from the sample, labelled `extrapolated`), against the 30-minute goal.
Wall times depend on what else runs on the machine: the load average before each run is recorded beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from dnnpart.files import write_csv
from dnnpart.paths import BENCHMARKS_DIR, NOTEBOOKS_DIR

OUT = BENCHMARKS_DIR / "results" / "sweep.csv"
KERNEL = "dnnpart"
DRAWS_GRID = """networks: [alexnet, vgg16, lenet]
n_devices: {{min: 1, max: 8}}
bandwidths_mbps: {{min: 0.5, max: 50, log: true}}
loads: {{min: 0, max: 0.5}}
profiles: [paper]
draws: {draws}
seed: 2026
"""


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def run_notebook(path: Path, out_dir: Path, scheduler: str, workers: int | None) -> float:
    cmd = [sys.executable, "-m", "papermill", "--kernel", KERNEL, "--cwd", str(NOTEBOOKS_DIR), str(path),
           str(out_dir / path.name), "-p", "out_dir", str(out_dir), "-p", "scheduler", scheduler]  # fmt: skip
    if workers is not None:
        cmd += ["-p", "workers", str(workers)]
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{path.name} failed with scheduler {scheduler}:\n{res.stderr[-3000:]}")
    return time.perf_counter() - start


def csv_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "data").glob("*.csv"))}


def bench_notebooks(names: list[str], workers: list[int]) -> list[dict]:
    rows = []
    for name in names:
        path = next(NOTEBOOKS_DIR.glob(f"{name}-*.ipynb"))
        with tempfile.TemporaryDirectory() as tmp:
            serial_dir = Path(tmp) / "serial"
            load = load_average()
            serial_s = run_notebook(path, serial_dir, "serial", None)
            rows.append(dict(part="notebook", name=path.stem, scheduler="serial", workers=1, wall_s=serial_s,
                             speedup=1.0, same_csvs=True, load_average=load))  # fmt: skip
            for w in workers:
                w_dir = Path(tmp) / f"local{w}"
                load = load_average()
                wall = run_notebook(path, w_dir, "local", w)
                rows.append(dict(part="notebook", name=path.stem, scheduler="local", workers=w, wall_s=wall,
                                 speedup=serial_s / wall, same_csvs=csv_bytes(w_dir) == csv_bytes(serial_dir),
                                 load_average=load))  # fmt: skip
    return rows


def bench_sweep_command(draws: int, workers: list[int]) -> list[dict]:
    rows, tables = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.yaml"
        grid.write_text(DRAWS_GRID.format(draws=draws))
        for w in workers:
            out = Path(tmp) / f"w{w}.parquet"
            load = load_average()
            start = time.perf_counter()
            res = subprocess.run(
                [sys.executable, "-m", "dnnpart", "sweep", "--grid", str(grid), "--out", str(out),
                 "--scheduler", "local", "--workers", str(w), "--json"],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            wall = time.perf_counter() - start
            points = json.loads(res.stdout)["points"]
            tables[w] = pd.read_parquet(out)
            rate = points / wall
            rows.append(dict(part="dnnpart sweep", name=f"{points} random points", scheduler="local", workers=w,
                             wall_s=wall, points_per_s=rate, extrapolated_10000_points_min=10_000 / rate / 60,
                             same_csvs=tables[w].equals(tables[workers[0]]), load_average=load))  # fmt: skip
    base = rows[0]["points_per_s"]
    for r in rows:
        r["speedup"] = r["points_per_s"] / base
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebooks", default="02,03,04,05", help="comma-separated notebook numbers ('' to skip)")
    ap.add_argument("--workers", default="2", help="comma-separated LocalCluster sizes for the notebooks")
    ap.add_argument("--sweep-workers", default="1,2", help="comma-separated worker counts for dnnpart sweep")
    ap.add_argument("--draws", type=int, default=200, help="random points for the dnnpart sweep sample (0 skips)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",") if w]
    rows = bench_notebooks([n for n in args.notebooks.split(",") if n], workers)
    if args.draws:
        rows += bench_sweep_command(args.draws, [int(w) for w in args.sweep_workers.split(",") if w])
    table = pd.DataFrame(rows)
    write_csv(table, Path(args.out))
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
