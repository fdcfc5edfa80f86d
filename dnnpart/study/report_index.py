"""Build reports/index.html: the headline (paper vs reproduced), every figure, and links to every report.

Run by `make reproduce` after the notebooks (`python -m dnnpart.study.report_index`); it also writes
reports/data/headline.csv from the figure tables the notebooks saved.
"""
from __future__ import annotations

import html
import sys
from pathlib import Path

import pandas as pd

from dnnpart import paths
from dnnpart.files import atomic_write_text, write_csv
from dnnpart.study import sweeps
from dnnpart.study.claims import check_claims

SWEEP_TABLES = {"fig1": "bandwidth", "fig2": "networks", "fig4": "server load", "fig5": "devices"}


def load_sweeps(data_dir: Path) -> dict[str, pd.DataFrame]:
    """The delay sweeps the notebooks wrote (fig3 holds bytes, not delays, so it is not a sweep here)."""
    missing = [f"{name}.csv" for name in SWEEP_TABLES if not (data_dir / f"{name}.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"missing in {data_dir}: {', '.join(missing)} — run the notebooks first")
    return {name: pd.read_csv(data_dir / f"{name}.csv") for name in SWEEP_TABLES}


def build_index(reports_dir: Path = paths.REPORTS_DIR) -> Path:
    data_dir = reports_dir / "data"
    head = sweeps.headline(load_sweeps(data_dir))
    write_csv(head, data_dir / "headline.csv")

    shown = head.assign(
        reproduced=head["reduction_pct"].map("{:.1f} %".format),
        paper=head["paper_reduction_pct"].map("{:.1f} %".format),
        versus=head["versus"].map({"case2": "vs all-server (Case 2)", "case3": "vs all-local (Case 3)"}),
        where=[f"{r.figure}: {r.network}, N={r.n_devices}, {r.bandwidth_mbps:g} Mbps, load {100 * r.load:.0f} %"
               for r in head.itertuples()],
    )[["profile", "versus", "paper", "reproduced", "where"]]
    shown.columns.name = None

    claim_tables = {name: pd.read_csv(data_dir / f"{name}.csv") for name in ["fig1", "fig2", "fig3", "fig4", "fig5"]
                    if (data_dir / f"{name}.csv").is_file()}
    claims = pd.concat([check_claims(name, df) for name, df in claim_tables.items()], ignore_index=True)
    claims["holds"] = claims["holds"].map({True: "✓ holds", False: "✗ differs"})

    figures = sorted((reports_dir / "figures").glob("*.png"))
    reports = sorted(p for p in reports_dir.glob("*.html") if p.name != "index.html")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>dnnpart — reproduced study</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "img{max-width:100%;border:1px solid #eee;margin:8px 0}</style></head><body>",
        "<h1>dnnpart: Gao et al., DNN task partitioning and offloading for MEC — reproduced</h1>",
        "<h2>Headline: largest reduction of the average delay by the optimal partition (Case 1)</h2>",
        "<p>The paper claims up to 90.5 % lower average delay than all-server and 69.5 % lower than all-local. "
        "Below, the largest reduction we measure across all sweeps (Figs. 1, 2, 4 and 5), per delay profile, "
        "and the scenario where it occurs.</p>",
        shown.to_html(index=False, escape=True),
        "<h2>The paper's statements about Figs. 1–5, checked on our data</h2>",
        "<p>A trend holds only if it moves the stated way and never the other; details are our numbers.</p>",
        claims[["figure", "profile", "claim", "holds", "detail"]].to_html(index=False, escape=True),
        "<h2>Reports</h2><ul>",
        *[f"<li><a href='{html.escape(p.name)}'>{html.escape(p.stem)}</a></li>" for p in reports],
        "</ul><h2>Figures</h2>",
        *[f"<h3>{html.escape(p.stem)}</h3><img src='figures/{html.escape(p.name)}' alt='{html.escape(p.stem)}'>"
          for p in figures],
        "</body></html>",
    ]
    out = reports_dir / "index.html"
    atomic_write_text(out, "\n".join(parts))
    return out


if __name__ == "__main__":
    try:
        print(build_index())
    except FileNotFoundError as exc:
        print(f"report_index: error: {exc}", file=sys.stderr)
        sys.exit(2)
