"""The paper's statements about each figure, checked against our sweep tables.

`check_claims(figure, df)` returns one row per (profile, claim): the paper's words, whether our data agree,
and the numbers behind the verdict, so each report says plainly where we match the paper and where we differ.
"""
from __future__ import annotations

import pandas as pd

TOL_MS = 1e-6


def _wide(df: pd.DataFrame, x: str, value: str = "avg_delay_ms") -> pd.DataFrame:
    return df.pivot_table(index=x, columns="method", values=value, sort=True)


def _monotone(series: pd.Series, direction: str) -> bool:
    """The paper's "increases"/"decreases": never moves the other way AND changes overall (flat is not a trend)."""
    steps = series.diff().dropna()
    if direction == "up":
        return bool((steps >= -TOL_MS).all() and series.iloc[-1] > series.iloc[0] + TOL_MS)
    return bool((steps <= TOL_MS).all() and series.iloc[-1] < series.iloc[0] - TOL_MS)


def _fmt(series: pd.Series) -> str:
    return f"{series.iloc[0]:,.1f} → {series.iloc[-1]:,.1f}"


def _always_best(w: pd.DataFrame) -> tuple[bool, str]:
    others = w.drop(columns="case1")
    ok = bool((w["case1"] <= others.min(axis=1) + TOL_MS).all())
    worst = (w["case1"] - others.min(axis=1)).max()
    return ok, f"largest (case1 − best other) = {worst:,.3f} ms"


def _trend_claims(w: pd.DataFrame, x_name: str, direction: str) -> list[tuple[str, bool, str]]:
    word = "decreases" if direction == "down" else "increases"
    ok_best, detail_best = _always_best(w)
    return [
        ("Case 1 is always the minimum", ok_best, detail_best),
        (f"Case 1 {word} with {x_name}", _monotone(w["case1"], direction), f"case1 {_fmt(w['case1'])} ms"),
        (f"Case 2 {word} with {x_name}", _monotone(w["case2"], direction), f"case2 {_fmt(w['case2'])} ms"),
        (f"Case 3 is unchanged with {x_name}", bool(w["case3"].max() - w["case3"].min() < TOL_MS),
         f"case3 {_fmt(w['case3'])} ms"),
    ]


def _fig1(w: pd.DataFrame) -> list[tuple[str, bool, str]]:
    drop1, drop2 = w["case1"].iloc[0] - w["case1"].iloc[-1], w["case2"].iloc[0] - w["case2"].iloc[-1]
    low = w.iloc[0]
    return _trend_claims(w, "bandwidth", "down") + [
        ("Case 2 decreases more than Case 1", bool(drop2 > drop1), f"drop case2 {drop2:,.1f} ms vs case1 {drop1:,.1f} ms"),
        ("At the lowest bandwidth Case 1 runs (almost) everything locally",
         bool(low["case1"] >= 0.9 * low["case3"]), f"case1/case3 = {low['case1'] / low['case3']:.3f}"),
    ]


def _fig2(df: pd.DataFrame) -> list[tuple[str, bool, str]]:
    w = df.pivot_table(index="network", columns="method", values="relative_speed")
    order = [n for n in ["vgg16", "vgg13", "alexnet", "lenet"] if n in w.index]
    w = w.loc[order]
    best = bool((w["case1"] >= w.max(axis=1) - 1e-9).all())
    return [
        ("Case 1 always has the highest relative speed", best,
         ", ".join(f"{n}: {v:.2f}" for n, v in w["case1"].items())),
        ("Case 1's relative speed decreases from VGG16 to VGG13 to AlexNet to LeNet",
         _monotone(w["case1"], "down"), "case1 " + " → ".join(f"{v:.2f}" for v in w["case1"])),
        ("Case 2's relative speed decreases from VGG16 to VGG13 to AlexNet to LeNet",
         _monotone(w["case2"], "down"), "case2 " + " → ".join(f"{v:.2f}" for v in w["case2"])),
    ]


def _fig3(w: pd.DataFrame) -> list[tuple[str, bool, str]]:
    return [
        ("Case 2 transmits a fixed amount (the raw input)", bool(w["case2"].nunique() == 1),
         f"case2 {w['case2'].iloc[0] / 1e6:.3f} MB"),
        ("Case 3 transmits nothing", bool((w["case3"] == 0).all()), f"case3 max {w['case3'].max():.0f} bytes"),
        ("Case 1 transmits more as the bandwidth grows", _monotone(w["case1"], "up"),
         f"case1 {w['case1'].iloc[0] / 1e6:.3f} → {w['case1'].iloc[-1] / 1e6:.3f} MB"),
    ]


def check_claims(figure: str, df: pd.DataFrame) -> pd.DataFrame:
    """Rows: profile, figure, claim (the paper's), holds (bool), detail (our numbers)."""
    rows = []
    for profile, part in df.groupby("profile", sort=True):
        if figure == "fig1":
            found = _fig1(_wide(part, "bandwidth_mbps"))
        elif figure == "fig2":
            found = _fig2(part)
        elif figure == "fig3":
            found = _fig3(_wide(part, "bandwidth_mbps", "transmitted_bytes"))
        elif figure == "fig4":
            found = _trend_claims(_wide(part, "load"), "server load", "up")
        elif figure == "fig5":
            found = _trend_claims(_wide(part, "n_devices"), "the number of devices", "up")
        else:
            raise ValueError(f"unknown figure {figure!r}; choose one of fig1, fig2, fig3, fig4, fig5")
        rows += [{"profile": profile, "figure": figure, "claim": c, "holds": ok, "detail": d} for c, ok, d in found]
    return pd.DataFrame(rows)


def claims_markdown(claims: pd.DataFrame) -> str:
    """A short list per profile: ✓ where our data agree with the paper, ✗ where they differ."""
    lines = []
    for profile, part in claims.groupby("profile", sort=True):
        agree = int(part["holds"].sum())
        lines.append(f"**Profile `{profile}`** — {agree} of {len(part)} of the paper's statements hold in our data:\n")
        lines += [f"- {'✓' if r.holds else '✗ differs:'} {r.claim} ({r.detail})" for r in part.itertuples()]
        lines.append("")
    return "\n".join(lines)
