"""The paper's Fig. 1 and Fig. 5 measured on the testbed (notebooks/08-testbed.ipynb, benchmarks/bench_testbed.py).

`sweep` runs one testbed per point (a number of identical devices at one uplink rate) and returns tidy rows:
per point and method, the average completion measured (median over rounds, min and max) beside the predicted
one, in the columns the simulated sweeps use (`avg_delay_ms`, `method`, `bandwidth_mbps`, `n_devices`), so
dnnpart.study.claims checks the paper's statements on measured numbers as it does on predicted ones.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from dnnpart.errors import TestbedError
from dnnpart.files import write_csv
from dnnpart.testbed.report import case1_is_best, case_summary, device_summary
from dnnpart.testbed.run import CACHE_PREFIX, run_testbed

BOARD = "emulated-board"  # data/profiles/emulated-board: device under BOARD_QUOTA, server 1 thread native
BOARD_QUOTA = 0.1
POINT_COLUMNS = [
    "figure",
    "n_devices",
    "bandwidth_mbps",
    "method",
    "predicted_ms",
    "measured_ms",
    "measured_min_ms",
    "measured_max_ms",
    "error",
    "rounds",
    "cuts",
    "server_predicted_ms",
    "server_measured_ms",
    "device_scale",
    "server_scale",
]


def server_time(result) -> pd.DataFrame:
    """Per case: the server's layer time per round, planned and measured (median over rounds), the part of
    the prediction that a busy server core makes wrong."""
    tl, plans = result.timeline, result.plans
    busy = tl[tl["where"] == "server"].assign(ms=lambda d: d["finish_ms"] - d["start_ms"])
    measured = busy.groupby(["case", "round"])["ms"].sum().groupby("case").median()
    planned = plans[plans["where"] == "server"].assign(ms=lambda d: d["finish_ms"] - d["start_ms"])
    predicted = planned.groupby("case")["ms"].sum()
    cases = list(dict.fromkeys(result.completions["case"]))
    return pd.DataFrame(
        {
            "server_predicted_ms": predicted.reindex(cases).fillna(0.0),
            "server_measured_ms": measured.reindex(cases).fillna(0.0),
        }
    )


def scenario_dict(network: str, n_devices: int, bandwidth_mbps: float, profile: str, quota) -> dict:
    return {
        "server": {"profile": profile},
        "devices": [
            {
                "name": "dev",
                "count": int(n_devices),
                "network": network,
                "profile": profile,
                "uplink_mbps": float(bandwidth_mbps),
                "cpu_quota": quota,
            }
        ],
    }


def points(bandwidths_mbps, n_devices, fig1_devices: int = 4, fig5_bandwidth_mbps: float = 2.5) -> list[tuple]:
    """(figures, n, bandwidth) of every testbed run, each once: Fig. 1 at fig1_devices over the bandwidths,
    Fig. 5 at fig5_bandwidth over the numbers of devices (the point they share runs once, for both)."""
    runs: dict[tuple, list[str]] = {}
    for b in bandwidths_mbps:
        runs.setdefault((fig1_devices, float(b)), []).append("fig1")
    for n in n_devices:
        runs.setdefault((int(n), float(fig5_bandwidth_mbps)), []).append("fig5")
    return [(figs, n, b) for (n, b), figs in runs.items()]


def sweep(
    out: Path,
    bandwidths_mbps=(0.5, 2.5, 20.0),
    n_devices=(1, 2, 4),
    network: str = "alexnet",
    profile: str = BOARD,
    quota=BOARD_QUOTA,
    repeats: int = 2,
    methods=("case1", "case2", "case3"),
    fallback: bool = False,
    fig1_devices: int = 4,
    progress=None,
    speed_runs: int = 3,
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Run every point; returns (points frame, per-device frame, each run's info) and writes them under out.
    Each point's predictions are scaled by its own speed check (`speed_runs`, `Testbed.check_speed`):
    `device_scale` (the devices' median) and `server_scale` say how far this host ran from the profiles."""
    import yaml

    out = Path(out)
    rows, per_device, infos = [], [], []
    # the points share one layer cache: AlexNet's layers are drawn once, not once per point
    with tempfile.TemporaryDirectory(prefix=f"{CACHE_PREFIX}{os.getpid()}-") as cache:
        for figs, n, b in points(bandwidths_mbps, n_devices, fig1_devices):
            name = f"n{n}-b{b:g}"
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            scenario = folder / "scenario.yaml"
            scenario.write_text(yaml.safe_dump(scenario_dict(network, n, b, profile, quota), sort_keys=False))
            if progress:
                progress(f"{name}: {n} x {network} at {b:g} Mbps")
            result = run_testbed(
                scenario,
                folder,
                repeats=repeats,
                fallback=fallback,
                methods=methods,
                probe_s=0.5,
                speed_runs=speed_runs,
                layer_cache=cache,
            )
            speed = result.speed.assign(server=lambda f: f["who"] == "server").groupby("server")["scale"].median()
            s = case_summary(result.completions)
            server = server_time(result)
            first_round = result.completions[result.completions["round"] == 0]
            cuts = first_round.groupby("case")["cut"].apply(lambda c: " ".join(map(str, c)))
            d = device_summary(result.completions)
            d.insert(0, "bandwidth_mbps", b)
            d.insert(0, "n_devices", n)
            per_device.append(d)
            infos.append(result.info | {"point": name})
            for fig in figs:
                for r in s.itertuples():
                    rows.append(
                        [fig, n, b, r.method, r.predicted_ms, r.measured_ms, r.measured_min_ms, r.measured_max_ms]
                        + [r.error, r.rounds, cuts[r.case]]
                        + [server.loc[r.case, "server_predicted_ms"], server.loc[r.case, "server_measured_ms"]]
                        + [float(speed[False]), float(speed[True])]
                    )
    if not rows:
        raise TestbedError("no testbed points to run")
    frame = pd.DataFrame(rows, columns=POINT_COLUMNS)
    devices = pd.concat(per_device, ignore_index=True)
    write_csv(frame, out / "points.csv")
    write_csv(devices, out / "devices.csv")
    return frame, devices, infos


def claims_input(frame: pd.DataFrame, figure: str, which: str) -> pd.DataFrame:
    """One figure's rows as check_claims reads them: `avg_delay_ms` the measured or the predicted average."""
    part = frame[frame["figure"] == figure].copy()
    part["profile"] = f"testbed {which}"
    part["avg_delay_ms"] = part["measured_ms" if which == "measured" else "predicted_ms"]
    return part


def goals(frame: pd.DataFrame, devices: pd.DataFrame) -> pd.DataFrame:
    """The issue's goals on these points: Case 1's prediction error (median and worst over points; worst per
    device) and whether measured Case 1 <= min(Case 2, Case 3) at every point, outright (medians over rounds) and
    within the spread (Case 1's best round at most the better baseline's worst: report.case1_is_best)."""
    c1 = frame[frame["method"] == "case1"].drop_duplicates(["n_devices", "bandwidth_mbps"])
    err = c1["error"].abs()
    dev = devices[devices["case"] == "case1"]["error"].abs()
    verdicts = [
        case1_is_best(rows.rename(columns={"method": "case"}))  # the testbed report's verdict, point by point
        for _, rows in frame.drop_duplicates(["n_devices", "bandwidth_mbps", "method"]).groupby(
            ["n_devices", "bandwidth_mbps"]
        )
    ]
    holds = pd.Series([v["holds"] for v in verdicts], dtype=float)
    within = pd.Series([v["within_spread"] for v in verdicts], dtype=float)
    rows = [
        ("case1 prediction error, median over points", float(err.median()), 0.10),
        ("case1 prediction error, worst point", float(err.max()), 0.25),
        ("case1 prediction error, worst device", float(dev.max()), 0.30),
        ("points where measured case1 <= min(case2, case3)", float(holds.mean()), 1.0),
        ("points where it holds within the spread over rounds", float(within.mean()), 1.0),
    ]
    out = pd.DataFrame(rows, columns=["goal", "value", "target"])
    out["met"] = [v <= t for _, v, t in rows[:3]] + [v >= t for _, v, t in rows[3:]]
    return out
