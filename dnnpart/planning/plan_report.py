"""A deployment plan for people: per device the cut (by layer name) and its times, the baselines beside it.

Three renderings of the same content: `plan_text` (the CLI's table), `plan_dict` (its --json), and
`plan_html` (a standalone page from templates/plan.html.j2: the shared stylesheet inlined, an inline-SVG
Gantt chart, no external files).

Methods compared (dnnpart.vocabulary.METHODS, each evaluated by the same schedule code): case1 the optimum
(cuts and server order chosen jointly), case2 all on the server, case3 all local, independent cuts.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd

from dnnpart.files import atomic_write_text
from dnnpart.optimiser.baselines import solve_all_methods
from dnnpart.planning.compile import CompiledScenario, LabelledInstance
from dnnpart.vocabulary import METHOD_LABELS

PLAN_COLUMNS = [
    "device",
    "group",
    "network",
    "cut",
    "cut_layer",
    "local_ms",
    "upload_ms",
    "server_ms",
    "download_ms",
    "completion_ms",
]


def solve_plans(compiled: CompiledScenario, formulation: str = "exact", time_limit: float | None = None) -> dict:
    """The optimum and the three baselines for a compiled scenario: method (vocabulary.METHODS) -> Solution.

    The time limit applies to each solve (a baseline's fixed cuts still leave the server order to optimise)."""
    return solve_all_methods(compiled.instance, formulation, time_limit)


def plan_frame(labelled: LabelledInstance, solution) -> pd.DataFrame:
    """One row per device: its cut (index and layer name) and the time spent in each place.

    local_ms: layers 1..cut on the device; upload_ms: sending the input of layer cut+1; server_ms: the
    server layers' own run time (waiting for the server is in completion_ms, not here); download_ms: the
    result coming back (0 when all local).
    """
    per = solution.schedule.completions()
    rows = []
    for i, (device, r) in enumerate(zip(labelled.instance.devices, per.itertuples(index=False))):
        rows.append(
            {
                "device": device.name,
                "group": labelled.groups[i],
                "network": labelled.networks[i],
                "cut": int(r.cut),
                "cut_layer": labelled.cut_name(i, int(r.cut)),
                "local_ms": float(r.local_ms),
                "upload_ms": float(r.upload_ms),
                "server_ms": float(r.server_ms),
                "download_ms": device.download_ms if r.cut < device.n_layers else 0.0,
                "completion_ms": float(r.completion_ms),
            }
        )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def comparison_frame(labelled: LabelledInstance, solutions: dict) -> pd.DataFrame:
    """One row per method: average delay, how much slower than the optimum (%), and the cuts by name."""
    best = solutions["case1"].avg_delay_ms
    rows = []
    for method, sol in solutions.items():
        rows.append(
            {
                "method": method,
                "label": METHOD_LABELS[method],
                "avg_delay_ms": float(sol.avg_delay_ms),
                "vs_optimal_pct": 100.0 * (sol.avg_delay_ms / best - 1.0) if best > 0 else 0.0,
                "cut_layers": ", ".join(labelled.cut_name(i, c) for i, c in enumerate(sol.cuts)),
            }
        )
    return pd.DataFrame(rows)


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def plan_dict(labelled: LabelledInstance, solutions: dict, source: dict) -> dict:
    """Everything the CLI prints, as JSON-ready data: the same keys whatever the input (`source` says what it
    was: a scenario, a zoo network or an instance file), methods named as in dnnpart.vocabulary."""
    sol = solutions["case1"]
    return {
        "source": source,
        "method": "case1",
        "avg_delay_ms": float(sol.avg_delay_ms),
        "cuts": [int(c) for c in sol.cuts],
        "cut_layers": [labelled.cut_name(i, c) for i, c in enumerate(sol.cuts)],
        "status": sol.status,
        "proven_optimal": bool(sol.proven_optimal),
        "gap": _finite(sol.gap),
        "bound_ms": _finite(sol.bound_ms),
        "solve_time_s": float(sol.solve_time_s),
        "formulation": sol.formulation,
        "devices": plan_frame(labelled, sol).to_dict(orient="records"),
        "baselines": {
            m: {
                "avg_delay_ms": float(s.avg_delay_ms),
                "cuts": [int(c) for c in s.cuts],
                "cut_layers": [labelled.cut_name(i, c) for i, c in enumerate(s.cuts)],
            }
            for m, s in solutions.items()
            if m != "case1"
        },
        "schedule": sol.schedule.to_frame().to_dict(orient="records"),
    }


def scenario_source(compiled: CompiledScenario) -> dict:
    """plan_dict's `source` for a scenario file."""
    sc = compiled.scenario
    return {
        "kind": "scenario",
        "path": str(sc.path),
        "server_profile": sc.server_profile.label,
        "load": sc.load,
        "family": sc.family,
    }


def status_line(sol) -> str:
    gap = "n/a" if sol.gap is None else f"{100 * sol.gap:.2f} %"
    proven = "proven optimal" if sol.proven_optimal else "NOT proven optimal"
    return (
        f"status {sol.status} ({proven}), gap {gap}, solved in {sol.solve_time_s:.2f} s (formulation {sol.formulation})"
    )


def scenario_line(compiled: CompiledScenario) -> str:
    sc = compiled.scenario
    groups = ", ".join(
        f"{g.count} x {g.name} ({g.network_name}, {g.profile.label}, {g.uplink_mbps:g} Mbps)" for g in sc.groups
    )
    return (
        f"scenario {sc.path.name}: {sc.n_devices} devices: {groups}; server profile "
        f"{sc.server_profile.label!r} at load {100 * sc.load:g} %"
    )


def plan_text(labelled: LabelledInstance, solutions: dict, header: str) -> str:
    """The plan as the CLI prints it, under a one-line description of the input (`header`)."""
    sol = solutions["case1"]
    plan = plan_frame(labelled, sol)
    comp = comparison_frame(labelled, solutions)
    fmt = {c: "{:.1f}".format for c in PLAN_COLUMNS if c.endswith("_ms")}
    lines = [
        header,
        status_line(sol),
        "",
        plan.to_string(index=False, formatters=fmt),
        "",
        f"average completion: {sol.avg_delay_ms:.1f} ms",
        "",
        comp.to_string(index=False, formatters={"avg_delay_ms": "{:.1f}".format, "vs_optimal_pct": "{:+.1f} %".format}),
    ]
    return "\n".join(lines)


def gantt_figure(compiled: CompiledScenario, solution, title: str | None = None):
    """The optimiser's Gantt chart (Schedule.plot) on a pyplot-free Figure, safe in scripts and notebooks."""
    from matplotlib.figure import Figure

    lanes = 1 + len(compiled.instance)
    fig = Figure(figsize=(10, 1.3 + 0.45 * lanes), layout="constrained")
    ax = fig.subplots()
    solution.schedule.plot(ax=ax, title=title or f"plan: average completion {solution.avg_delay_ms:.1f} ms")
    # the legend goes above the lanes: inside the axes it covers the last device's bars
    legend = ax.get_legend()
    fig.legend(
        legend.legend_handles,
        [t.get_text() for t in legend.get_texts()],
        loc="outside upper right",
        ncols=len(legend.get_texts()),
        fontsize=8,
        frameon=False,
    )
    legend.remove()
    return fig


def gantt_svg(compiled: CompiledScenario, solution) -> str:
    """The Gantt chart as an inline <svg> element (no XML header, fixed ids so reruns are identical)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "dnnpart", "svg.fonttype": "path"}):
        gantt_figure(compiled, solution).savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def plan_html(compiled: CompiledScenario, solutions: dict) -> str:
    """A standalone HTML page (templates/plan.html.j2): scenario, status, plan table, comparison, the Gantt
    chart (inline SVG) and the scenario file. Every name is escaped; only the SVG is inserted as markup."""
    from dnnpart import pages

    sol = solutions["case1"]
    sc = compiled.scenario
    ms = "{:.1f}".format
    plan = plan_frame(compiled.labelled, sol)
    comp = comparison_frame(compiled.labelled, solutions)
    try:
        source = sc.path.read_text(encoding="utf-8")
    except OSError:
        source = "(scenario file no longer readable)"
    return pages.render(
        "plan.html.j2",
        scenario_name=sc.path.name,
        scenario_line=scenario_line(compiled),
        status_line=status_line(sol),
        proven_optimal=bool(sol.proven_optimal),
        plan=pages.table(plan, {c: ms for c in PLAN_COLUMNS if c.endswith("_ms")}),
        avg_delay=ms(sol.avg_delay_ms),
        comparison=pages.table(comp, {"avg_delay_ms": ms, "vs_optimal_pct": "{:+.1f} %".format}),
        gantt_svg=pages.markup(gantt_svg(compiled, sol)),
        scenario_source=source,
    )


def write_html(compiled: CompiledScenario, solutions: dict, path) -> Path:
    """Write plan_html atomically (no half-written page on a crash)."""
    return atomic_write_text(Path(path), plan_html(compiled, solutions))
