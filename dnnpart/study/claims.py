"""The paper's statements about each figure, checked against our sweep tables.

`check_claims(figure, df)` returns one row per (profile, claim): the paper's words, whether the claim could fail
at all in our model (`kind`), whether our data agree, and the numbers behind the verdict, so each report says
plainly where we match the paper, where we differ, and which agreements are worth something.

`kind` is "holds by construction" when no data fed to our model (docs/optimiser.md) could make the claim fail,
e.g. "Case 1 is always the minimum": Case 1 is the optimum over a superset of every baseline's choices. Such a
row checks our code, not the paper. "depends on the data" rows are the ones the delay profile can refute.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from dnnpart.errors import DnnpartError

TOL_MS = 1e-6
BY_CONSTRUCTION = "holds by construction"
DEPENDS_ON_DATA = "depends on the data"
KINDS = (BY_CONSTRUCTION, DEPENDS_ON_DATA)
FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig5")
# Fig. 2's networks, heaviest first; the paper's reasoning splits them into heavy (offloading pays) and light.
FIG2_ORDER = ("vgg16", "vgg13", "alexnet", "lenet")
HEAVY_NETWORKS = ("vgg16", "vgg13")
LIGHT_NETWORKS = ("alexnet", "lenet")
NETWORK_LABELS = {"vgg16": "VGG16", "vgg13": "VGG13", "alexnet": "AlexNet", "lenet": "LeNet"}


class Claim(NamedTuple):
    claim: str
    kind: str
    holds: bool
    detail: str


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


def _always_best(w: pd.DataFrame) -> Claim:
    # By construction: Case 1 is the optimum over all cuts and server orders, a superset of every baseline's
    # fixed cuts (sweep solves are proven optimal; a row that is not says proven_optimal False).
    others = w.drop(columns="case1")
    ok = bool((w["case1"] <= others.min(axis=1) + TOL_MS).all())
    worst = (w["case1"] - others.min(axis=1)).max()
    return Claim("Case 1 is always the minimum", BY_CONSTRUCTION, ok, f"largest (case1 − best other) = {worst:,.3f} ms")


def _case3_flat(w: pd.DataFrame, x_name: str) -> Claim:
    # By construction: all-local never touches the uplink or the server, and devices do not share anything.
    return Claim(
        f"Case 3 is unchanged with {x_name}",
        BY_CONSTRUCTION,
        bool(w["case3"].max() - w["case3"].min() < TOL_MS),
        f"case3 {_fmt(w['case3'])} ms",
    )


def _trend(w: pd.DataFrame, method: str, x_name: str, direction: str, kind: str) -> Claim:
    word = "decreases" if direction == "down" else "increases"
    label = f"Case {method[-1]}"
    return Claim(
        f"{label} {word} with {x_name}", kind, _monotone(w[method], direction), f"{method} {_fmt(w[method])} ms"
    )


def _uses_server_throughout(w: pd.DataFrame, x_name: str, reason: str) -> Claim:
    # Depends on the data: if the server is slow enough, all-local (= Case 3) is optimal at some or all points.
    local_at = [x for x, row in w.iterrows() if row["case1"] >= row["case3"] - TOL_MS]
    ratio = w["case1"] / w["case3"]
    detail = f"case1/case3 {ratio.min():.3f} … {ratio.max():.3f}" + (
        f"; all-local is optimal at {x_name} = {', '.join(f'{x:g}' for x in local_at)}" if local_at else ""
    )
    return Claim(
        f"Case 1 offloads at every {x_name} (stays below Case 3), {reason}", DEPENDS_ON_DATA, not local_at, detail
    )


def _fig1(w: pd.DataFrame) -> list[Claim]:
    drop1, drop2 = w["case1"].iloc[0] - w["case1"].iloc[-1], w["case2"].iloc[0] - w["case2"].iloc[-1]
    low, high = w.iloc[0], w.iloc[-1]
    all_local = w["case1"] >= w["case3"] - TOL_MS  # all-local is an optimal choice (Case 1 can never exceed Case 3)
    offloading = w.index[~all_local]
    if len(offloading) == 0:
        switch = f"all-local at every bandwidth up to {w.index[-1]:g} Mbps"
    elif not all_local.iloc[0]:
        ratio = low["case1"] / low["case3"]
        switch = f"offloads already at the lowest bandwidth, {w.index[0]:g} Mbps (case1/case3 = {ratio:.3f})"
    else:
        first = offloading.min()
        last_local = w.index[all_local.to_numpy() & (w.index < first)].max()
        switch = f"all-local up to {last_local:g} Mbps, offloads from {first:g} Mbps"
    return [
        _always_best(w),
        # Depends on the data: never rising is by construction (shorter uploads never delay a schedule), but a
        # strict drop needs offloading to pay somewhere in the sweep; all-local throughout leaves it flat.
        _trend(w, "case1", "bandwidth", "down", DEPENDS_ON_DATA),
        # By construction: the raw input's upload (in_bytes / bandwidth, > 0) shrinks at every step and every
        # device's release moves earlier, so the whole optimal schedule moves earlier.
        _trend(w, "case2", "bandwidth", "down", BY_CONSTRUCTION),
        _case3_flat(w, "bandwidth"),
        # Depends on the data: if offloading everything is optimal at both ends, both drops are equal; a device
        # faster than the server on early layers can make Case 1 gain more than Case 2.
        Claim(
            "Case 2 decreases more than Case 1",
            DEPENDS_ON_DATA,
            bool(drop2 > drop1),
            f"drop case2 {drop2:,.1f} ms vs case1 {drop1:,.1f} ms",
        ),
        # Depends on the data: the profile decides whether uploading pays at the lowest bandwidth.
        Claim(
            "At the lowest bandwidth Case 1 runs (almost) everything locally",
            DEPENDS_ON_DATA,
            bool(low["case1"] >= 0.9 * low["case3"]),
            f"case1/case3 = {low['case1'] / low['case3']:.3f}",
        ),
        # Depends on the data ("when the bandwidth is small, most tasks are processed locally ... with the
        # increasing of bandwidth, more tasks are ... offloaded"): the sweep must see Case 1 switch from
        # all-local to offloading, so its lowest bandwidth must be all-local and its highest not.
        Claim(
            "Case 1 switches from all-local to offloading inside the sweep",
            DEPENDS_ON_DATA,
            bool(all_local.iloc[0] and not all_local.iloc[-1]),
            switch + f"; at {w.index[-1]:g} Mbps case1/case3 = {high['case1'] / high['case3']:.3f}",
        ),
    ]


def _fig2(df: pd.DataFrame) -> list[Claim]:
    speed = df.pivot_table(index="network", columns="method", values="relative_speed")
    delay = df.pivot_table(index="network", columns="method", values="avg_delay_ms")
    order = [n for n in FIG2_ORDER if n in speed.index]
    speed, delay = speed.loc[order], delay.loc[order]
    best = bool((speed["case1"] >= speed.max(axis=1) - 1e-9).all())

    def chain(series: pd.Series, fmt: str = "{:.2f}") -> str:
        return " → ".join(fmt.format(v) for v in series)

    def case2_vs_local(networks: tuple[str, ...], faster: bool) -> Claim:
        # Depends on the data: whether offloading everything beats all-local is the profile's and uplink's call.
        present = [n for n in networks if n in speed.index]
        names = " and ".join(NETWORK_LABELS[n] for n in networks)
        claim = (
            f"{names}: offloading everything (Case 2) is faster than all-local"
            if faster
            else f"{names}: all-local is faster than offloading everything (Case 2)"
        )
        if not present:
            return Claim(claim, DEPENDS_ON_DATA, False, f"{', '.join(networks)} not in this sweep")
        s = speed.loc[present, "case2"]
        ok = bool((s > 1 + 1e-9).all()) if faster else bool((s < 1 - 1e-9).all())
        return Claim(
            claim, DEPENDS_ON_DATA, ok, "case2 relative speed " + ", ".join(f"{n}: {v:.2f}" for n, v in s.items())
        )

    return [
        # By construction: relative speed = Case-3 delay / the method's delay, and Case 1's delay is the least.
        Claim(
            "Case 1 always has the highest relative speed",
            BY_CONSTRUCTION,
            best,
            ", ".join(f"{n}: {v:.2f}" for n, v in speed["case1"].items()),
        ),
        # Depends on the data: how much each network gains from the server is the delay profile's doing.
        Claim(
            "Case 1's relative speed decreases from VGG16 to VGG13 to AlexNet to LeNet",
            DEPENDS_ON_DATA,
            _monotone(speed["case1"], "down"),
            "case1 " + chain(speed["case1"]),
        ),
        Claim(
            "Case 2's relative speed decreases from VGG16 to VGG13 to AlexNet to LeNet",
            DEPENDS_ON_DATA,
            _monotone(speed["case2"], "down"),
            "case2 " + chain(speed["case2"]),
        ),
        # Depends on the data: the paper's reason ("the computing complexities of VGG16, VGG13, ALEXNET and LENET
        # are decreasing"), read as the device's all-local delay, which the delay profile sets.
        Claim(
            "The networks' all-local delay decreases from VGG16 to VGG13 to AlexNet to LeNet",
            DEPENDS_ON_DATA,
            _monotone(delay["case3"], "down"),
            "case3 " + chain(delay["case3"], "{:,.0f}") + " ms",
        ),
        # The paper: for VGG16/VGG13 "offloading more tasks to the server ... is more time-saving than processing
        # locally"; for AlexNet/LeNet "execution locally is more time-saving".
        case2_vs_local(HEAVY_NETWORKS, faster=True),
        case2_vs_local(LIGHT_NETWORKS, faster=False),
    ]


def _fig3(w: pd.DataFrame) -> list[Claim]:
    excess = w["case1"] - w["case2"]
    worst_at = excess.idxmax()
    return [
        # By construction: cut 0 uploads the raw input of every device at every bandwidth.
        Claim(
            "Case 2 transmits a fixed amount (the raw input)",
            BY_CONSTRUCTION,
            bool(w["case2"].nunique() == 1),
            f"case2 {w['case2'].iloc[0] / 1e6:.3f} MB",
        ),
        # By construction: cut M uploads nothing.
        Claim(
            "Case 3 transmits nothing",
            BY_CONSTRUCTION,
            bool((w["case3"] == 0).all()),
            f"case3 max {w['case3'].max():.0f} bytes",
        ),
        # Depends on the data: which layer's output Case 1 uploads at each bandwidth is the optimiser's choice.
        Claim(
            "Case 1 transmits more as the bandwidth grows",
            DEPENDS_ON_DATA,
            _monotone(w["case1"], "up"),
            f"case1 {w['case1'].iloc[0] / 1e6:.3f} → {w['case1'].iloc[-1] / 1e6:.3f} MB",
        ),
        # Depends on the data. The paper implies Case 1 <= Case 2: with more bandwidth "mobile devices will prefer
        # to offload more subtasks", growing towards Case 2's "original data". In our model a cut after a layer
        # whose output is larger than the raw input (AlexNet's conv1/relu1/norm1) can make it send more.
        Claim(
            "Case 1 transmits no more than Case 2 at every bandwidth",
            DEPENDS_ON_DATA,
            bool((excess <= 0).all()),
            f"largest case1 − case2 = {excess.max() / 1e6:+.3f} MB (at {worst_at:g} Mbps)",
        ),
    ]


def _fig4(w: pd.DataFrame) -> list[Claim]:
    return [
        _always_best(w),
        # Depends on the data: never falling is by construction (slower server layers never help), a strict rise
        # needs Case 1 to use the server; all-local throughout leaves it flat.
        _trend(w, "case1", "server load", "up", DEPENDS_ON_DATA),
        # By construction: every server time is multiplied by 1/(1 - load) > its previous value, and with cut 0
        # every device's last layer runs on the server, so every completion grows.
        _trend(w, "case2", "server load", "up", BY_CONSTRUCTION),
        _case3_flat(w, "server load"),
        # The paper's reason for Case 1's rise ("decrease the processing speed on the server") needs Case 1 on
        # the server at every load.
        _uses_server_throughout(w, "server load", "as the paper's reason for its rise requires"),
    ]


def _fig5(w: pd.DataFrame) -> list[Claim]:
    return [
        _always_best(w),
        # Depends on the data: as for Fig. 4, a rise needs Case 1 to share the server at all.
        _trend(w, "case1", "the number of devices", "up", DEPENDS_ON_DATA),
        # By construction: identical devices released together queue for one server; each added device adds a
        # completion later than all the others', so the mean grows.
        _trend(w, "case2", "the number of devices", "up", BY_CONSTRUCTION),
        _case3_flat(w, "the number of devices"),
        # The paper's reason ("there are more offloaded tasks to be processed on the server") needs Case 1 to
        # offload at every number of devices.
        _uses_server_throughout(w, "number of devices", "as the paper's reason for its rise requires"),
    ]


def check_claims(figure: str, df: pd.DataFrame) -> pd.DataFrame:
    """Rows: profile, figure, claim (the paper's), kind (one of KINDS), holds (bool), detail (our numbers)."""
    if figure not in FIGURES:
        raise DnnpartError(f"unknown figure {figure!r}; choose one of {', '.join(FIGURES)}")
    rows = []
    for profile, part in df.groupby("profile", sort=True):
        if figure == "fig1":
            found = _fig1(_wide(part, "bandwidth_mbps"))
        elif figure == "fig2":
            found = _fig2(part)
        elif figure == "fig3":
            found = _fig3(_wide(part, "bandwidth_mbps", "transmitted_bytes"))
        elif figure == "fig4":
            found = _fig4(_wide(part, "load"))
        else:
            found = _fig5(_wide(part, "n_devices"))
        rows += [{"profile": profile, "figure": figure, **c._asdict()} for c in found]
    return pd.DataFrame(rows, columns=["profile", "figure", "claim", "kind", "holds", "detail"])


def claims_markdown(claims: pd.DataFrame) -> str:
    """A short list per profile, the claims that could fail first: ✓ where our data agree, ✗ where they differ."""
    lines = []
    for profile, part in claims.groupby("profile", sort=True):
        lines.append(f"**Profile `{profile}`**\n")
        for kind, heading in [
            (DEPENDS_ON_DATA, "Statements our data could refute"),
            (BY_CONSTRUCTION, "Statements that hold by construction of the model (a check of the code)"),
        ]:
            rows = part[part["kind"] == kind]
            if rows.empty:
                continue
            lines.append(f"*{heading}: {int(rows['holds'].sum())} of {len(rows)} hold.*\n")
            lines += [f"- {'✓' if r.holds else '✗ differs:'} {r.claim} ({r.detail})" for r in rows.itertuples()]
            lines.append("")
    return "\n".join(lines)
