"""Do the study's sweeps scale out? Serial against a Dask LocalCluster, side by side in one run.

    .venv/bin/python benchmarks/bench_sweep.py [--notebooks 02,03,04,05] [--jobs 2] [--workers 1,2]
                                               [--sweep-runs 1000:1,1000:2]

Three parts, one CSV (benchmarks/results/sweep.csv, a row per measurement):
- `make reproduce`: the sweep notebooks executed and rendered as `make reproduce` does (papermill, then
  nbconvert, into one reports folder), one at a time and then --jobs of them at once (the Makefile's JOBS):
  wall time of the whole set, speedup against one at a time, and whether every CSV is byte-identical.
- `notebook`: each sweep notebook executed by papermill, once with scheduler "serial" and once on a
  LocalCluster of each --workers count (the Dask path inside a notebook); wall time, speedup against serial,
  and whether every CSV the notebook wrote is byte-identical to the serial run's.
- `dnnpart sweep`: random points (AlexNet/VGG16/LeNet, N = 1-8, 0.5-50 Mbps, load 0-0.5, `paper` profile)
  solved by the command, one run per `--sweep-runs` entry POINTS:WORKERS: points per second, and the minutes
  10,000 such points take (measured when POINTS is 10000, else extrapolated from the run's rate: `extrapolated`
  says which), against the 30-minute goal. A run's wall time includes starting the LocalCluster and each
  worker's first point (loading the delay models), which a sample of a few hundred points does not amortise.
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
from concurrent.futures import ThreadPoolExecutor
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


def render_report(path: Path, out_dir: Path) -> None:
    """One notebook as the Makefile's reports/%.html rule runs it: papermill (serial sweeps), then nbconvert."""
    run_notebook(path, out_dir, "serial", None)
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--no-input", "--output-dir", str(out_dir),
           str(out_dir / path.name)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{path.name} failed to render:\n{res.stderr[-3000:]}")


def bench_reproduce(names: list[str], jobs: list[int]) -> list[dict]:
    """The sweep notebooks rendered into one folder, one at a time and then j at a time for each j in `jobs`."""
    paths = [next(NOTEBOOKS_DIR.glob(f"{name}-*.ipynb")) for name in names]
    rows, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for j in [1, *jobs]:
            out_dir = Path(tmp) / f"jobs{j}"
            load = load_average()
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=j) as pool:  # threads only wait on the notebook processes
                list(pool.map(lambda p, d=out_dir: render_report(p, d), paths))
            wall = time.perf_counter() - start
            first = first or (wall, csv_bytes(out_dir))
            rows.append(dict(part="make reproduce", name="notebooks " + ",".join(names), scheduler="serial",
                             workers=j, wall_s=wall, speedup=first[0] / wall, same_csvs=csv_bytes(out_dir) == first[1],
                             load_average=load))  # fmt: skip
    return rows


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


def bench_sweep_command(runs: list[tuple[int, int]]) -> list[dict]:
    """One `dnnpart sweep` per (points, workers); runs of the same size must write the same table."""
    rows, tables = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for draws, w in runs:
            grid = Path(tmp) / f"grid-{draws}.yaml"
            grid.write_text(DRAWS_GRID.format(draws=draws))
            out = Path(tmp) / f"p{draws}-w{w}.parquet"
            load = load_average()
            start = time.perf_counter()
            res = subprocess.run(
                [sys.executable, "-m", "dnnpart", "sweep", "--grid", str(grid), "--out", str(out),
                 "--scheduler", "local", "--workers", str(w), "--json"],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            wall = time.perf_counter() - start
            points = json.loads(res.stdout)["points"]
            table = pd.read_parquet(out)
            tables.setdefault(draws, table)
            rate = points / wall
            rows.append(dict(part="dnnpart sweep", name=f"{points} random points", scheduler="local", workers=w,
                             wall_s=wall, points_per_s=rate, minutes_for_10000_points=10_000 / rate / 60,
                             extrapolated=points != 10_000, same_csvs=table.equals(tables[draws]),
                             load_average=load))  # fmt: skip
    for r in rows:
        r["speedup"] = r["points_per_s"] / rows[0]["points_per_s"]  # against the first run's rate
    return rows


def parse_runs(text: str) -> list[tuple[int, int]]:
    """'1000:1,1000:2' -> [(1000, 1), (1000, 2)]; ValueError on anything else."""
    runs = [tuple(int(x) for x in item.split(":")) for item in text.split(",") if item]
    if any(len(r) != 2 or min(r) < 1 for r in runs):
        raise ValueError(text)
    return runs


def parse_counts(ap: argparse.ArgumentParser, option: str, text: str) -> list[int]:
    """'1,2' -> [1, 2]; a usage error (exit 2, one line) on anything but positive integers."""
    try:
        counts = [int(x) for x in text.split(",") if x]
    except ValueError:
        counts = [0]
    if any(c < 1 for c in counts):
        ap.error(f"--{option}: expected comma-separated positive integers, got {text!r}")
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebooks", default="02,03,04,05", help="comma-separated notebook numbers ('' to skip)")
    ap.add_argument("--jobs", default="2", help="comma-separated numbers of notebooks rendered at once ('' skips)")
    ap.add_argument("--workers", default="2", help="comma-separated LocalCluster sizes for the notebooks")
    ap.add_argument("--sweep-runs", default="1000:1,1000:2", help="dnnpart sweep runs, POINTS:WORKERS,... ('' skips)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    try:
        sweep_runs = parse_runs(args.sweep_runs)
    except ValueError:
        ap.error(f"--sweep-runs: expected POINTS:WORKERS[,...] of positive integers, got {args.sweep_runs!r}")
    workers, jobs = (parse_counts(ap, name, getattr(args, name)) for name in ("workers", "jobs"))
    names = [n for n in args.notebooks.split(",") if n]
    rows = bench_reproduce(names, jobs) if names and jobs else []
    rows += bench_notebooks(names, workers) if workers else []
    rows += bench_sweep_command(sweep_runs)
    table = pd.DataFrame(rows)
    write_csv(table, Path(args.out))
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
