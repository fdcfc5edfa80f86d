"""Build reports/index.html: the headline (paper vs reproduced), its sensitivity, the paper's statements checked,
links to every report and every figure.

Run by `make reproduce` after the notebooks (`python -m dnnpart.study.report_index`); it also writes
reports/data/headline.csv from the figure tables the notebooks saved. The page is templates/index.html.j2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from dnnpart import pages, paths
from dnnpart.files import atomic_write_text, write_csv
from dnnpart.study import sweeps
from dnnpart.study.claims import check_claims
from dnnpart.vocabulary import METHOD_LABELS

SWEEP_TABLES = {"fig1": "bandwidth", "fig2": "networks", "fig4": "server load", "fig5": "devices"}
CLAIM_FIGURES = ["fig1", "fig2", "fig3", "fig4", "fig5"]
SENSITIVITY_FILE = "headline-sensitivity.csv"
TESTBED_FILE = "testbed.csv"  # profiles "testbed measured" and "testbed predicted"
SENSITIVITY_KEYS = ["profile", "variant", "sweep_low_mbps", "sweep_high_mbps", "input_encoding"]
# Claim kinds (the `kind` column of check_claims), in the order the page lists them, with what each means.
CLAIM_KINDS = {
    "holds by construction": "These follow from how the methods are defined, whatever the delays: a ✗ here "
    "points to a bug, not to a difference from the paper.",
    "depends on the data": "These depend on the delay profile and the swept values: a ✗ here is a real "
    "difference between our data and the paper's.",
}
HOLDS = {True: "✓ holds", False: "✗ differs"}


def load_sweeps(data_dir: Path) -> dict[str, pd.DataFrame]:
    """The delay sweeps the notebooks wrote (fig3 holds bytes, not delays, so it is not a sweep here)."""
    missing = [f"{name}.csv" for name in SWEEP_TABLES if not (data_dir / f"{name}.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"missing in {data_dir}: {', '.join(missing)} — run the notebooks first")
    return {name: pd.read_csv(data_dir / f"{name}.csv") for name in SWEEP_TABLES}


def method_words(method: str) -> str:
    """'case2' -> 'Case 2 (all on server)', from the vocabulary's label."""
    label = METHOD_LABELS.get(method, method)
    return label.replace(": ", " (", 1) + ")" if ": " in label else label


def versus_label(method: str) -> str:
    return f"vs {method_words(method)}"


def headline_table(head: pd.DataFrame) -> pages.Table:
    shown = pd.DataFrame(
        {
            "profile": head["profile"],
            "versus": head["versus"].map(versus_label),
            "paper_reduction_pct": head["paper_reduction_pct"],
            "reduction_pct": head["reduction_pct"],
            "where": [
                f"{r.figure}: {r.network}, N={r.n_devices}, {r.bandwidth_mbps:g} Mbps, load {100 * r.load:.0f} %"
                for r in head.itertuples()
            ],
        }
    )
    pct = "{:.1f} %".format
    return pages.table(shown, {"paper_reduction_pct": pct, "reduction_pct": pct})


def paper_claim(head: pd.DataFrame) -> str:
    """The paper's headline in words, from the numbers the headline table carries."""
    paper = head.drop_duplicates("versus").set_index("versus")["paper_reduction_pct"]
    return " and ".join(f"{v:.1f} % lower than {method_words(m)}" for m, v in paper.items())


def sensitivity_table(df: pd.DataFrame) -> pages.Table:
    """reports/data/headline-sensitivity.csv as one row per variant and a reduction column per baseline (the
    paper's value in the header); a file without the expected tidy columns is shown as it is."""
    wanted = SENSITIVITY_KEYS + ["versus", "reduction_pct", "paper_reduction_pct"]
    if not set(wanted) <= set(df.columns):
        return pages.table(df)
    keyed = df[SENSITIVITY_KEYS + ["versus"]]
    if keyed.isna().any().any() or keyed.duplicated().any():  # not one value per cell: no pivot
        return pages.table(df)
    paper = df.drop_duplicates("versus").set_index("versus")["paper_reduction_pct"]
    order = list(dict.fromkeys(df["versus"]))
    wide = df.pivot(index=SENSITIVITY_KEYS, columns="versus", values="reduction_pct")
    rows = df[SENSITIVITY_KEYS].drop_duplicates()  # the file's own row order
    wide = wide.loc[pd.MultiIndex.from_frame(rows), order].reset_index()
    labels = [f"{versus_label(m)}, paper {paper[m]:.1f} %" for m in order]
    wide.columns = SENSITIVITY_KEYS + labels
    pct = "{:.1f} %".format
    return pages.table(
        wide, {"sweep_low_mbps": "{:g}".format, "sweep_high_mbps": "{:g}".format, **dict.fromkeys(labels, pct)}
    )


def claim_groups(claims: pd.DataFrame) -> list[dict]:
    """One table per claim kind (known kinds first, in CLAIM_KINDS order), or a single table without `kind`."""
    cols = ["figure", "profile", "claim", "holds", "detail"]
    if "kind" in claims.columns:
        kinds = [k for k in CLAIM_KINDS if (claims["kind"] == k).any()]
        kinds += sorted(set(claims["kind"].astype(str)) - set(CLAIM_KINDS))
        parts = [(k, claims[claims["kind"].astype(str) == k]) for k in kinds]
    else:
        parts = [(None, claims)]
    groups = []
    for kind, part in parts:
        holds = part["holds"].astype(bool)
        groups.append(
            {
                "kind": kind,
                "explanation": CLAIM_KINDS.get(kind, ""),
                "n": len(part),
                "n_hold": int(holds.sum()),
                "table": pages.table(part[cols], {"holds": HOLDS.__getitem__}),
                "row_classes": ["" if h else "differs" for h in holds],
            }
        )
    return groups


def index_html(reports_dir: Path, head: pd.DataFrame) -> str:
    """The index page for a reports folder, given its headline table (sweeps.headline)."""
    data_dir = reports_dir / "data"
    tables = {n: pd.read_csv(data_dir / f"{n}.csv") for n in CLAIM_FIGURES if (data_dir / f"{n}.csv").is_file()}
    claims = pd.concat([check_claims(name, df) for name, df in tables.items()], ignore_index=True)
    sens_path = data_dir / SENSITIVITY_FILE
    sensitivity = sensitivity_table(pd.read_csv(sens_path)) if sens_path.is_file() else None
    reports = sorted(p for p in reports_dir.glob("*.html") if p.name != "index.html")
    figures = sorted((reports_dir / "figures").glob("*.png"))
    return pages.render(
        "index.html.j2",
        paper_claim=paper_claim(head),
        headline=headline_table(head),
        sensitivity=sensitivity,
        sensitivity_file=f"data/{SENSITIVITY_FILE}",
        claims=claim_groups(claims),
        reports=[{"href": quote(p.name), "title": p.stem} for p in reports],
        figures=[{"src": f"figures/{quote(p.name)}", "title": p.stem} for p in figures],
    )


def build_index(reports_dir: Path = paths.REPORTS_DIR) -> Path:
    """Write reports_dir/data/headline.csv and reports_dir/index.html (both atomically)."""
    reports_dir = Path(reports_dir)
    data_dir = reports_dir / "data"
    frames = load_sweeps(data_dir)
    testbed = data_dir / TESTBED_FILE
    if testbed.is_file():  # notebooks/08-testbed.ipynb: the headline measured on the testbed, and its prediction
        frames["testbed"] = pd.read_csv(testbed)
    head = sweeps.headline(frames)
    write_csv(head, data_dir / "headline.csv")
    return atomic_write_text(reports_dir / "index.html", index_html(reports_dir, head))


if __name__ == "__main__":
    try:
        print(build_index())
    except FileNotFoundError as exc:
        print(f"report_index: error: {exc}", file=sys.stderr)
        sys.exit(2)
