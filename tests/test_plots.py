"""Figure titles are read from the table they plot, and importing the plots module leaves the backend alone."""

import os
import subprocess
import sys

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from dnnpart.study import plots
from dnnpart.vocabulary import METHODS


def sweep_frame(x: str, values, network="vgg16", n_devices=8, bandwidth_mbps=7.5, load=0.3) -> pd.DataFrame:
    """A tidy sweep table as the notebooks write it: one row per (profile, x value, method)."""
    fixed = {"network": network, "n_devices": n_devices, "bandwidth_mbps": bandwidth_mbps, "load": load}
    rows = []
    for profile in ("paper", "measured"):
        for i, v in enumerate(values):
            for k, method in enumerate(METHODS):
                rows.append(
                    {
                        **fixed,
                        "profile": profile,
                        x: v,
                        "method": method,
                        "avg_delay_ms": 10.0 + i + k,
                        "relative_speed": 1.0 + k / 10,
                        "transmitted_bytes": 1e6 * (i + k),
                        "per_device_bytes": 1e6 * (i + k) / 8,
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "draw, x, values, title",
    [
        (
            plots.fig1_delay_vs_bandwidth,
            "bandwidth_mbps",
            [1.0, 4.0],
            "Fig. 1: average delay vs bandwidth (vgg16, N = 8, load 30 %)",
        ),
        (
            plots.fig2_relative_speed,
            "network",
            ["vgg16", "lenet"],
            "Fig. 2: relative speed per network (N = 8, 7.5 Mbps, load 30 %)",
        ),
        (
            plots.fig3_transmitted_vs_bandwidth,
            "bandwidth_mbps",
            [1.0, 4.0],
            "Fig. 3: transmitted data vs bandwidth (vgg16, N = 8, load 30 %)",
        ),
        (plots.fig4_delay_vs_load, "load", [0.0, 0.5], "Fig. 4: average delay vs server load (vgg16, N = 8, 7.5 Mbps)"),
        (
            plots.fig5_delay_vs_devices,
            "n_devices",
            [1, 2],
            "Fig. 5: average delay vs number of devices (vgg16, 7.5 Mbps, load 30 %)",
        ),
    ],
)
def test_figure_title_names_the_plotted_setting(draw, x, values, title):
    fig = draw(sweep_frame(x, values))
    suptitle = fig.get_suptitle()
    plt.close(fig)
    assert suptitle == title
    assert "alexnet" not in suptitle.lower()


def test_setting_text_lists_every_value_of_a_varying_column():
    df = pd.DataFrame(
        {
            "network": ["vgg16", "lenet", "vgg16"],
            "n_devices": [1, 1, 1],
            "load": [0.0, 0.0, 0.0],
            "bandwidth_mbps": [0.25, 2.0, 2.0],
        }
    )
    assert (
        plots.setting_text(df, ["network", "n_devices", "bandwidth_mbps", "load"])
        == "lenet/vgg16, N = 1, 0.25/2 Mbps, load 0 %"
    )


def test_solver_scaling_title_names_network_and_bandwidth():
    df = pd.DataFrame(
        {
            "network": "lenet",
            "bandwidth_mbps": 5.0,
            "n_devices": [1, 2, 1],
            "formulation": ["exact", "exact", "paper"],
            "solve_time_s": [0.01, 0.02, 0.5],
            "proven_optimal": [True, True, False],
        }
    )
    fig = plots.solver_scaling_plot(df)
    title = fig.axes[0].get_title()
    plt.close(fig)
    assert title.startswith("Solve time per formulation, lenet, 5 Mbps ")


def test_importing_plots_keeps_the_callers_backend():
    """A module that switched to Agg at import turned every notebook figure into '<Figure size ...>' text."""
    code = "import matplotlib, dnnpart.study.plots; print(matplotlib.get_backend())"
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"
