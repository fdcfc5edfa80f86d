"""One seaborn function per figure of the paper; each reads a saved long-form table.

Saved figures have fixed SVG ids and no timestamps, so reruns write identical files. The backend is left to the
caller (inline in a notebook, Agg in scripts and tests): importing this module must not switch it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import seaborn as sns

from dnnpart.vocabulary import METHOD_LABELS, METHODS

matplotlib.rcParams["svg.hashsalt"] = "dnnpart"
sns.set_theme(style="whitegrid", context="notebook")
METHODS = list(METHODS)  # seaborn's hue_order wants a list
PALETTE = dict(zip(METHODS, sns.color_palette("colorblind", len(METHODS))))
MARKERS = dict(zip(METHODS, ["o", "s", "^", "D"]))
# One colour, marker and legend order per method in every line figure.
METHOD_LINES = dict(
    hue="method", style="method", hue_order=METHODS, style_order=METHODS, markers=MARKERS, dashes=False, palette=PALETTE
)


# How each fixed setting of a sweep reads in a figure title; the values come from the table, never from here.
SETTING_FORMATS = {
    "network": "{}",
    "n_devices": "N = {}",
    "bandwidth_mbps": "{} Mbps",
    "load": "load {} %",
}


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_text(df, columns) -> str:
    """The table's value of each column, e.g. 'vgg16, N = 4, load 0 %' (several values: 'lenet/vgg16')."""
    parts = []
    for column in columns:
        values = sorted(df[column].dropna().unique())
        if column == "load":
            values = [100 * float(v) for v in values]
        if values:
            parts.append(SETTING_FORMATS[column].format("/".join(_number(v) for v in values)))
    return ", ".join(parts)


def _lines(df, x, y, ylabel, xlabel, title, logx=False, logy=False):
    """A line per method, one panel per profile."""
    g = sns.relplot(
        data=df,
        x=x,
        y=y,
        **METHOD_LINES,
        col="profile",
        kind="line",
        height=3.6,
        aspect=1.25,
        facet_kws={"sharey": False},
    )
    for ax in g.axes.flat:
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
    return _decorate(g, xlabel, ylabel, title)


def _decorate(g, xlabel, ylabel, title, panel_titles="profile: {col_name}"):
    """Axis labels, panel titles, the spelled-out legend and the figure title of a seaborn grid."""
    g.set_axis_labels(xlabel, ylabel)
    g.set_titles(panel_titles)
    _relabel_legend(g)
    g.figure.suptitle(title, y=1.03)
    return g.figure


def _relabel_legend(g):
    """Method names spelled out, in a legend below the panels (beside them it covered the right panel)."""
    if g.legend is not None:
        for text in g.legend.texts:
            text.set_text(METHOD_LABELS.get(text.get_text(), text.get_text()))
        sns.move_legend(g, "upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, title=None, frameon=False)


def fig1_delay_vs_bandwidth(df):
    return _lines(
        df,
        "bandwidth_mbps",
        "avg_delay_ms",
        "average delay (ms)",
        "uplink bandwidth (Mbps)",
        f"Fig. 1: average delay vs bandwidth ({setting_text(df, ['network', 'n_devices', 'load'])})",
        logx=True,
        logy=True,
    )


def fig2_relative_speed(df):
    g = sns.catplot(
        data=df,
        x="network",
        y="relative_speed",
        hue="method",
        hue_order=METHODS,
        col="profile",
        kind="bar",
        palette=PALETTE,
        height=3.6,
        aspect=1.25,
        sharey=False,
    )
    g.tick_params(axis="x", labelrotation=30)  # seven network names do not fit side by side
    return _decorate(
        g,
        "network",
        "relative speed (Case-3 delay / delay)",
        f"Fig. 2: relative speed per network ({setting_text(df, ['n_devices', 'bandwidth_mbps', 'load'])})",
    )


def fig3_transmitted_vs_bandwidth(df):
    long = df.melt(
        id_vars=["profile", "bandwidth_mbps", "method"],
        value_vars=["transmitted_bytes", "per_device_bytes"],
        var_name="scope",
        value_name="bytes",
    )
    long["scope"] = long["scope"].map({"transmitted_bytes": "all devices", "per_device_bytes": "per device"})
    long["MB"] = long["bytes"] / 1e6
    g = sns.relplot(
        data=long,
        x="bandwidth_mbps",
        y="MB",
        **METHOD_LINES,
        row="scope",
        col="profile",
        kind="line",
        height=3.0,
        aspect=1.4,
        facet_kws={"sharey": False},
    )
    for ax in g.axes.flat:
        ax.set_xscale("log")
    return _decorate(
        g,
        "uplink bandwidth (Mbps)",
        "transmitted data (MB)",
        f"Fig. 3: transmitted data vs bandwidth ({setting_text(df, ['network', 'n_devices', 'load'])})",
        "{row_name} — profile: {col_name}",
    )


def fig4_delay_vs_load(df):
    df = df.assign(load_pct=100 * df["load"])
    return _lines(
        df,
        "load_pct",
        "avg_delay_ms",
        "average delay (ms)",
        "server load level (%)",
        f"Fig. 4: average delay vs server load ({setting_text(df, ['network', 'n_devices', 'bandwidth_mbps'])})",
    )


def fig5_delay_vs_devices(df):
    return _lines(
        df,
        "n_devices",
        "avg_delay_ms",
        "average delay (ms)",
        "number of devices",
        f"Fig. 5: average delay vs number of devices ({setting_text(df, ['network', 'bandwidth_mbps', 'load'])})",
    )


def save_figure(fig, directory: Path, name: str) -> list[Path]:
    """Write NAME.png and NAME.svg under directory, with no timestamps, and close the figure."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for ext, metadata in [("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})]:
        path = directory / f"{name}.{ext}"
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata=metadata)
        written.append(path)
    plt.close(fig)
    return written


def solver_scaling_plot(df):
    """Solve time against the number of devices, one line per formulation; hollow markers: not proven optimal."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for formulation, part in df.groupby("formulation", sort=True):
        (line,) = ax.plot(part["n_devices"], part["solve_time_s"], marker="o", label=formulation)
        open_ = part[~part["proven_optimal"].astype(bool)]
        ax.plot(
            open_["n_devices"],
            open_["solve_time_s"],
            "o",
            markerfacecolor="white",
            markeredgecolor=line.get_color(),
            markersize=9,
        )
    ax.set_yscale("log")
    ax.set_xlabel("number of identical devices")
    ax.set_ylabel("solve time (s)")
    ax.set_title(
        f"Solve time per formulation, {setting_text(df, ['network', 'bandwidth_mbps'])} "
        "(hollow: time limit hit, not proven optimal)",
        fontsize=10,
    )
    ax.legend(title="formulation")
    return fig
