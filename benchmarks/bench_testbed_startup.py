"""What a testbed case costs besides its rounds, with the layer cache and without (side by side in one run).

    .venv/bin/python benchmarks/bench_testbed_startup.py [--repeats 2]
    # writes benchmarks/results/testbed-startup.csv

Needs root. One 4-device AlexNet point at 2.5 Mbps on the emulated board (no speed check): Case 1, 2 and 3, each
one round per start as the study runs them, first without a layer cache (every server start draws AlexNet's
weights, every device receives its layers) and then with one (drawn once, before the cases), alternating
--repeats times. Rows: cache (off/on), repeat, case, seconds (from the server's start to its stop, the round
included), open_seconds (the set-up before the cases: namespaces, probes, the cache's fill).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from dnnpart.files import write_csv
from dnnpart.paths import BENCHMARKS_DIR
from dnnpart.testbed import links, study
from dnnpart.testbed.run import Testbed

OUT = BENCHMARKS_DIR / "results" / "testbed-startup.csv"


def time_cases(tmp: Path, use_cache: bool, repeat: int) -> list[list]:
    folder = tmp / f"{'on' if use_cache else 'off'}-{repeat}"
    folder.mkdir()
    scenario = folder / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(study.scenario_dict("alexnet", 4, 2.5, study.BOARD, study.BOARD_QUOTA)))
    t0 = time.perf_counter()
    rows = []
    with Testbed(scenario, folder, speed_runs=0, probe_s=0.5, use_layer_cache=use_cache) as tb:
        opened = time.perf_counter() - t0
        for case in tb.cases()[:3]:
            t = time.perf_counter()
            tb.run_case(case, 1)
            rows.append(["on" if use_cache else "off", repeat, case.label, time.perf_counter() - t, opened])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if not 1 <= args.repeats <= 20:
        print(f"bench_testbed_startup: --repeats must be in 1..20, got {args.repeats}", file=sys.stderr)
        return 2
    reason = links.can_shape()
    if reason is not None:
        print(f"bench_testbed_startup: needs root and iproute2 ({reason})", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for use_cache in (False, True):
                rows += time_cases(Path(tmp), use_cache, r)
    df = pd.DataFrame(rows, columns=["cache", "repeat", "case", "seconds", "open_seconds"])
    write_csv(df, OUT)
    print(df.groupby(["cache", "case"])["seconds"].median().unstack().round(2).to_string())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
