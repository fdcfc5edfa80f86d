"""Edge-runtime benchmark (issue 12): the server path's overhead, its busy share when saturated, and upload time.

    .venv/bin/python benchmarks/bench_runtime.py [--rounds 30]   # writes benchmarks/results/runtime.csv

One in-process server on 127.0.0.1 (policy fifo, the paper profile for the plan: cuts are fixed here), devices as
DeviceClients in threads, no uplink emulation (unshaped loopback). Rows (metric, case, value, unit, goal):
  overhead_per_subtask  (ModelInfer round trip - time inside onnxruntime on the server) / offloaded layers,
                        median over rounds; `direct_ms` is the same layers run on their sessions directly
  busy_share            4 AlexNet devices offloading everything (cut 0): time inside onnxruntime / wall time
                        from the first round start to the last result
  upload_600kb          the AlexNet input (618 348 bytes) from the device's send to the server's receipt
  grpc_unary_floor      a bare unary call (ServerLive) after the same idle wait as a round's (the round's lead,
                        50 ms): what any gRPC round trip costs here, whatever the server does; part of the overhead
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart.files import write_csv
from dnnpart.paths import BENCHMARKS_DIR, PROJ_ROOT
from dnnpart.runtime.device import DeviceClient
from dnnpart.runtime.layers import random_input
from dnnpart.runtime.proto import runtime_pb2 as pb

sys.path.insert(0, str(PROJ_ROOT / "tests"))
from runtime_helpers import running_server

OUT = BENCHMARKS_DIR / "results" / "runtime.csv"


def overhead(out: Path, network: str, cut: int, rounds: int) -> dict:
    with (
        running_server(out, expected=1, policy="fifo") as (address, service),
        DeviceClient(address, "bench", network, 1000.0, profile="paper", cut=cut) as c,
    ):
        c.sync_clock()
        c.register()
        c.plan()
        c.fetch_layers()
        runner = service.runners[(network, "0")]
        per_round, direct, upload = [], [], []
        for k in range(rounds):
            s0 = c.start_round(k)
            x = random_input(c.input_shape, k)
            head = c.runner.run_range(x, 1, cut)[0] if cut else x
            t0 = time.perf_counter_ns()
            r = c.finish_round(k, x, s0)
            server_rows = [row for row in r.rows if row[1] == "server"]
            inside = sum(b - a for _, _, a, b in server_rows)
            up = next(row for row in r.rows if row[1] == "upload")
            upload.append(up[3] - up[2])
            layers = len(server_rows)
            rtt = next(row for row in r.rows if row[1] == "download")[3] - up[2]
            per_round.append((rtt - inside) / layers)
            t0 = time.perf_counter_ns()
            runner.run_range(head, cut + 1, cut + layers)
            direct.append((time.perf_counter_ns() - t0) / 1e6)
        floor = []
        for _ in range(rounds):  # idle as long as a device waits for its round to start, then one bare call
            time.sleep(service.config.start_lead_ms / 1e3)
            t0 = time.perf_counter_ns()
            c._call(c.stub.ServerLive, pb.ServerLiveRequest())
            floor.append((time.perf_counter_ns() - t0) / 1e6)
        return {
            "floor_ms": float(np.median(floor)),
            "overhead_ms": float(np.median(per_round)),
            "direct_ms": float(np.median(direct)),
            "layers": layers,
            "tensor_bytes": int(np.prod(c.plan_reply.cut_shape)) * 4,
            "upload_ms": float(np.median(upload)),
        }


def busy_share(out: Path, rounds: int) -> float:
    with running_server(out, expected=4, policy="fifo") as (address, service):
        errors = []

        def go(name):
            try:
                with DeviceClient(address, name, "alexnet", 1000.0, profile="paper", cut=0) as c:
                    c.run(rounds)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=go, args=(f"d{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        if errors:
            raise errors[0]
        frame = service.timeline_frame()
        wall_ms = sum(g["finish_ms"].max() - max(0.0, g["start_ms"].min()) for _, g in frame.groupby("round"))
        return service.scheduler.busy_ns / 1e6 / wall_ms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, network, cut in (
            ("small: lenet softmax, 40 B", "lenet", 7),
            ("alexnet prob, 4 KB", "alexnet", 22),
            ("large: alexnet all 23 layers, 618 KB", "alexnet", 0),
        ):
            r = overhead(Path(tmp) / case.split(":")[0].replace(" ", "_"), network, cut, args.rounds)
            rows.append(
                {
                    "metric": "overhead_per_subtask",
                    "case": case,
                    "value": r["overhead_ms"],
                    "unit": "ms",
                    "goal": "<= 1",
                    "direct_ms": r["direct_ms"],
                    "layers": r["layers"],
                    "tensor_bytes": r["tensor_bytes"],
                }
            )
            if cut == 7:
                rows.append(
                    {
                        "metric": "grpc_unary_floor",
                        "case": "ServerLive after a 50 ms idle wait",
                        "value": r["floor_ms"],
                        "unit": "ms",
                        "goal": "",
                        "direct_ms": np.nan,
                        "layers": 0,
                        "tensor_bytes": 0,
                    }
                )
            if cut == 0:
                rows.append(
                    {
                        "metric": "upload_600kb",
                        "case": case,
                        "value": r["upload_ms"],
                        "unit": "ms",
                        "goal": "<= 10",
                        "direct_ms": np.nan,
                        "layers": r["layers"],
                        "tensor_bytes": r["tensor_bytes"],
                    }
                )
        share = busy_share(Path(tmp) / "busy", max(3, args.rounds // 5))
        rows.append(
            {
                "metric": "busy_share",
                "case": "4 alexnet devices, cut 0, fifo",
                "value": share,
                "unit": "share",
                "goal": ">= 0.9",
                "direct_ms": np.nan,
                "layers": 23,
                "tensor_bytes": 618348,
            }
        )
    df = pd.DataFrame(rows)
    df.insert(0, "date", time.strftime("%Y-%m-%d"))
    write_csv(df, Path(args.out))
    print(df.to_string(index=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
