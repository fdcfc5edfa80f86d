"""What a testbed run measured beside what was predicted: tidy summaries, the text `dnnpart testbed` prints,
and the standalone HTML report (measured vs predicted completion, planned and measured Gantt charts, the
cases and policies compared, the emulation used)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart import pages
from dnnpart.files import atomic_write_text
from dnnpart.vocabulary import METHOD_LABELS


def round_averages(completions: pd.DataFrame) -> pd.DataFrame:
    """Per case and round: the devices' average measured and predicted completion (ms)."""
    keys = ["case", "method", "policy", "round"]
    return completions.groupby(keys, sort=False)[["measured_ms", "predicted_ms"]].mean().reset_index()


def case_summary(completions: pd.DataFrame) -> pd.DataFrame:
    """Per case: the average completion measured (median over rounds, and its spread min..max) and predicted,
    and the prediction error measured / predicted - 1."""
    rounds = round_averages(completions)
    g = rounds.groupby(["case", "method", "policy"], sort=False)
    out = g["measured_ms"].agg(measured_ms="median", measured_min_ms="min", measured_max_ms="max").reset_index()
    out["predicted_ms"] = g["predicted_ms"].first().to_numpy()
    out["rounds"] = g.size().to_numpy()
    out["error"] = out["measured_ms"] / out["predicted_ms"] - 1
    return out


def device_summary(completions: pd.DataFrame) -> pd.DataFrame:
    """Per case and device: cut, measured completion (median over rounds), predicted, and the error."""
    g = completions.groupby(["case", "device"], sort=False)
    out = g.agg(cut=("cut", "first"), measured_ms=("measured_ms", "median"), predicted_ms=("predicted_ms", "first"))
    out = out.reset_index()
    out["error"] = out["measured_ms"] / out["predicted_ms"] - 1
    return out


def case1_is_best(summary: pd.DataFrame) -> dict | None:
    """Measured Case 1 (under the plan's policy) against min(Case 2, Case 3): holds outright, within the spread
    over rounds, or not. None when the run lacks one of the three."""
    by = summary.set_index("case")
    if not {"case1", "case2", "case3"} <= set(by.index):
        return None
    c1 = by.loc["case1"]
    best = min(("case2", "case3"), key=lambda c: by.loc[c, "measured_ms"])
    other = by.loc[best]
    return {
        "case1_ms": float(c1["measured_ms"]),
        "best_other": best,
        "best_other_ms": float(other["measured_ms"]),
        "holds": bool(c1["measured_ms"] <= other["measured_ms"]),
        "within_spread": bool(c1["measured_min_ms"] <= other["measured_max_ms"]),
    }


def summary_text(result) -> str:
    s = case_summary(result.completions)
    shown = s[["case", "rounds", "predicted_ms", "measured_ms", "measured_min_ms", "measured_max_ms", "error"]].copy()
    for c in ("predicted_ms", "measured_ms", "measured_min_ms", "measured_max_ms"):
        shown[c] = shown[c].map("{:.1f}".format)
    shown["error"] = (100 * s["error"]).map("{:+.1f} %".format)
    links = result.links.copy()
    links["achieved/requested"] = (links["achieved_mbps"] / links["requested_mbps"]).map("{:.3f}".format)
    speed = result.speed.round({"predicted_ms": 1, "measured_ms": 1, "scale": 3})
    return (
        "average completion per case (ms):\n"
        + shown.to_string(index=False)
        + "\nlinks:\n"
        + links[["device", "requested_mbps", "achieved_mbps", "achieved/requested", "link"]].to_string(index=False)
        + "\nspeed check (whole network now / profile's prediction; scales every prediction):\n"
        + speed.to_string(index=False)
    )


# --- the HTML report -----------------------------------------------------------------------------------------

WHERE_COLOURS = {"local": "#4c72b0", "upload": "#dd8452", "server": "#55a868", "download": "#c44e52"}


def gantt_axes(ax, rows: pd.DataFrame, devices: list[str], title: str, xmax: float):
    """One Gantt chart: a lane per device for its local, upload and download rows, and one server lane."""
    lanes = [*devices, "server"]
    for r in rows.itertuples(index=False):
        lane = lanes.index("server") if r.where == "server" else devices.index(r.device)
        width = max(r.finish_ms - r.start_ms, xmax * 1e-3)
        ax.barh(lane, width, left=r.start_ms, height=0.6, color=WHERE_COLOURS[r.where], edgecolor="none")
    ax.set_yticks(range(len(lanes)), lanes)
    ax.invert_yaxis()
    ax.set_xlim(0, xmax)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel("ms from the round's start")


def gantt_svg(result, case: str, round_: int) -> str:
    """The planned and the measured Gantt chart of one case and round, one above the other, as SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    plan = result.plans[result.plans["case"] == case]
    measured = result.timeline[(result.timeline["case"] == case) & (result.timeline["round"] == round_)]
    devices = list(dict.fromkeys(plan["device"]))
    xmax = 1.05 * max(plan["finish_ms"].max(), measured["finish_ms"].max() if len(measured) else 0)
    height = 1.2 + 0.35 * (len(devices) + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 2 * height), sharex=True)
    gantt_axes(top, plan, devices, f"{case}: planned", xmax)
    gantt_axes(bottom, measured, devices, f"{case}: measured, round {round_}", xmax)
    fig.legend(
        handles=[Patch(color=c, label=w) for w, c in WHERE_COLOURS.items()], loc="upper right", ncol=4, fontsize=8
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return buf.getvalue()


def completion_svg(result) -> str:
    """Measured (median and spread over rounds) beside predicted average completion, per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = case_summary(result.completions)
    x = np.arange(len(s))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.bar(x - 0.2, s["predicted_ms"], 0.4, label="predicted", color="#bbbbbb")
    err = np.vstack([s["measured_ms"] - s["measured_min_ms"], s["measured_max_ms"] - s["measured_ms"]])
    ax.bar(x + 0.2, s["measured_ms"], 0.4, yerr=err, capsize=3, label="measured (median, min..max)", color="#4c72b0")
    ax.set_xticks(x, s["case"])
    ax.set_ylabel("average completion (ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return buf.getvalue()


def _pct(x) -> str:
    return "" if pd.isna(x) else f"{100 * x:+.1f} %"


def _ms(x) -> str:
    return "" if pd.isna(x) else f"{x:.1f}"


def report_html(result) -> str:
    s = case_summary(result.completions)
    s.insert(1, "label", s["method"].map(METHOD_LABELS).fillna(s["method"]))
    d = device_summary(result.completions)
    links = result.links.copy()
    links["ratio"] = links["achieved_mbps"] / links["requested_mbps"]
    best = case1_is_best(s)
    cases = list(dict.fromkeys(result.completions["case"]))
    gantts = [(c, pages.markup(gantt_svg(result, c, 0))) for c in cases]
    info = result.info
    return pages.render(
        "testbed.html.j2",
        title="dnnpart testbed",
        info=info,
        mechanism=info["mechanism"]["line"],
        real=info["mechanism"]["real"],
        cases=pages.table(
            s[
                [
                    "case",
                    "label",
                    "rounds",
                    "predicted_ms",
                    "measured_ms",
                    "measured_min_ms",
                    "measured_max_ms",
                    "error",
                ]
            ],
            dict.fromkeys(("predicted_ms", "measured_ms", "measured_min_ms", "measured_max_ms"), _ms) | {"error": _pct},
        ),
        devices=pages.table(d, {"measured_ms": _ms, "predicted_ms": _ms, "error": _pct}),
        links=pages.table(
            links,
            {
                "requested_mbps": "{:g}".format,
                "achieved_mbps": "{:.3f}".format,
                "rtt_ms": _ms,
                "ratio": "{:.3f}".format,
            },
        ),
        speed=pages.table(
            result.speed, {"predicted_ms": _ms, "measured_ms": _ms, "scale": "{:.3f}".format, "runs": "{:d}".format}
        ),
        speed_runs=info.get("speed_runs", 0),
        best=best,
        completion_svg=pages.markup(completion_svg(result)),
        gantts=gantts,
    )


def write_report(result, path) -> Path:
    return atomic_write_text(Path(path), report_html(result))
