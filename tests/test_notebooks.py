"""Each study notebook runs through papermill with small parameters; the tables it writes are checked.

The pattern of recommenders' notebook smoke tests: the notebook records its values (here, the CSVs it writes
into a temporary out_dir) and the test asserts properties that the paper's model implies. `run_notebook`
(tests/conftest.py) also renders each run's HTML report and checks that it shows every saved figure once.
"""

import json

import numpy as np
import pandas as pd
import papermill as pm
import pytest

from dnnpart import delay, networks, paths
from dnnpart.planning.compile import network_instance
from dnnpart.vocabulary import ROLES

TOL = 1e-6


def wide(df, x, value="avg_delay_ms"):
    return df.pivot_table(index=x, columns="method", values=value, sort=True)


def assert_case1_best(w):
    assert (w["case1"] <= w[["case2", "case3", "independent"]].min(axis=1) + TOL).all(), w


def nondecreasing(s):
    return bool((s.diff().dropna() >= -TOL).all())


def test_bandwidth_notebook(run_notebook, tmp_path):
    data = run_notebook("02-bandwidth", tmp_path, profiles=["paper"], bandwidths_mbps=[0.5, 2.0, 8.0, 32.0])
    fig1 = pd.read_csv(data / "fig1.csv")
    assert sorted(fig1["method"].unique()) == ["case1", "case2", "case3", "independent"]
    assert len(fig1) == 4 * 4
    w = wide(fig1, "bandwidth_mbps")
    assert_case1_best(w)
    assert np.ptp(w["case3"]) < TOL  # local processing ignores the uplink
    assert nondecreasing(-w["case2"])  # more bandwidth never slows all-server
    fig3 = wide(pd.read_csv(data / "fig3.csv"), "bandwidth_mbps", "transmitted_bytes")
    assert (fig3["case3"] == 0).all()
    assert (fig3["case2"] == 4 * 3 * 227 * 227 * 4).all()  # four devices upload AlexNet's float32 input
    assert (tmp_path / "figures" / "fig1-delay-vs-bandwidth.svg").is_file()


def test_networks_notebook(run_notebook, tmp_path):
    data = run_notebook("03-networks", tmp_path, profiles=["paper"], network_names=["alexnet", "lenet"])
    fig2 = pd.read_csv(data / "fig2.csv")
    for _, part in fig2.groupby("network"):
        w = part.set_index("method")
        assert w.loc["case3", "relative_speed"] == pytest.approx(1.0)
        assert w.loc["case1", "relative_speed"] >= w["relative_speed"].max() - TOL
        assert w.loc["case1", "avg_delay_ms"] <= w["avg_delay_ms"].min() + TOL


@pytest.mark.parametrize(
    "name, table, swept, values",
    [
        ("04-server-load", "fig4", "loads", [0.0, 0.5, 0.9]),
        ("05-devices", "fig5", "n_devices", [1, 2, 3]),
    ],
)
def test_delay_grows_with_server_contention(run_notebook, tmp_path, name, table, swept, values):
    """More load or more devices never helps the cases that use the server; all-local does not notice."""
    data = run_notebook(name, tmp_path, profiles=["paper"], **{swept: values})
    w = wide(pd.read_csv(data / f"{table}.csv"), "load" if swept == "loads" else "n_devices")
    assert list(w.index) == values
    assert_case1_best(w)
    assert nondecreasing(w["case1"]) and nondecreasing(w["case2"])
    assert np.ptp(w["case3"]) < TOL


def test_bad_parameter_fails_the_notebook(run_notebook, tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="load"):
        run_notebook("04-server-load", tmp_path, profiles=["paper"], loads=[1.5])


def test_two_runs_write_identical_csvs(run_notebook, tmp_path):
    """make reproduce must write the same data every time: fixed seeds and node-limited (not timed) solves."""
    params = {"profiles": ["paper", "measured"], "loads": [0.0, 0.6]}
    first = run_notebook("04-server-load", tmp_path / "a", **params) / "fig4.csv"
    second = run_notebook("04-server-load", tmp_path / "b", **params) / "fig4.csv"
    assert first.read_bytes() == second.read_bytes()


def _markdown_outputs(executed) -> str:
    """Every Markdown a notebook displayed (its computed prose), joined."""
    nb = json.loads(executed.read_text())
    return "\n".join(
        "".join(o["data"]["text/markdown"])
        for c in nb["cells"]
        for o in c.get("outputs", [])
        if "text/markdown" in o.get("data", {})
    )


def test_delay_model_notebook(run_notebook, tmp_path):
    data = run_notebook("01-delay-model", tmp_path, profile="measured", additivity_networks=["lenet"])
    folder = delay.resolve_profile("measured")
    metrics = pd.read_csv(data / "delay-metrics.csv")
    assert set(metrics["role"]) == set(ROLES) and set(metrics["family"]) == set(delay.FAMILIES)
    for role in ROLES:  # every profile row is in exactly one split, a fifth of them held out
        rows = delay.read_profile_csv(folder / f"{role}.csv").groupby("layer_type").size()
        part = metrics[metrics["role"] == role].set_index(["family", "layer_type"])
        for family in delay.FAMILIES:
            counts = part.loc[family, "n_train"] + part.loc[family, "n_test"]
            assert counts.sort_index().to_dict() == rows.sort_index().to_dict()
            assert (part.loc[family, "n_test"] / counts).between(0.15, 0.25).all()
    conv = metrics[metrics["layer_type"] == "conv"]
    assert len(conv) == 4 and conv["r2_test"].between(0, 1).all() and conv["within10"].between(0, 1).all()

    coefs = pd.read_csv(data / "delay-conv-coefficients.csv")
    for r in coefs.itertuples():
        assert r.paper_coef == delay.models.PAPER_CONV_COEFFICIENTS[r.role][r.term]
        assert r.fitted_over_paper == pytest.approx(r.fitted_coef / r.paper_coef)

    add = pd.read_csv(tmp_path / "timings" / "delay-additivity.csv")
    assert add["network"].tolist() == ["lenet", "lenet"] and add["role"].tolist() == list(ROLES)
    model = delay.load_delay_model("measured")
    for r in add.itertuples():
        assert r.layers == len(networks.get("lenet"))
        assert r.predicted_ms == pytest.approx(model.predict(networks.get("lenet"), r.role).sum(), rel=1e-9)
        assert r.ratio == pytest.approx(r.predicted_ms / r.measured_ms)

    prose = _markdown_outputs(tmp_path / "01-delay-model.ipynb")  # the closing prose quotes this run's tables
    for r in add.itertuples():
        assert (
            f"- now, lenet, {r.role}: a whole run takes {r.measured_ms:.3f} ms and the layer sum is {r.ratio:.2f}×"
            in prose
        )
    # runs recorded with the profile are priced and quoted too; a profile without them says so
    recorded = pd.concat([delay.recorded_additivity("measured", role) for role in ROLES])
    for role, part in recorded[recorded["measured_ms"] >= 1.0].groupby("role"):
        quoted = f"- with the profile, {role} (threads: {part['threads'].iloc[0]}), {', '.join(part['network'])}: "
        assert quoted + "predicted / measured" in prose
    if recorded.empty:
        assert "- This profile has no whole-network runs recorded with it, only this notebook's." in prose
    device_conv = metrics.set_index(["role", "layer_type", "family"]).loc[("device", "conv", "dnnpart")]
    assert f"- device conv: R² {device_conv['r2_test']:.3f}, {100 * device_conv['within10']:.0f} % within" in prose


def test_solver_notebook(run_notebook, tmp_path):
    run_notebook("06-solver", tmp_path, n_devices=[1, 2], paper_max_devices=2, time_limit=5.0)
    scaling = pd.read_csv(tmp_path / "timings" / "solver-scaling.csv")
    assert sorted(zip(scaling["n_devices"], scaling["formulation"])) == [
        (1, "exact"),
        (1, "paper"),
        (2, "exact"),
        (2, "paper"),
    ]
    exact = scaling[scaling["formulation"] == "exact"].set_index("n_devices")
    assert exact["proven_optimal"].all()
    # one device has the server to itself: the optimum is its best cut alone
    device = network_instance("alexnet", 1, 2.5, 0.0, "paper").devices[0]
    alone = min(device.alone_ms(c) for c in range(device.n_layers + 1))
    assert exact.loc[1, "avg_delay_ms"] == pytest.approx(alone, rel=1e-9)
    assert exact.loc[2, "avg_delay_ms"] >= alone - TOL  # a second device can only wait for the server
    for r in scaling[(scaling["formulation"] == "paper") & scaling["proven_optimal"]].itertuples():
        assert r.avg_delay_ms == pytest.approx(exact.loc[r.n_devices, "avg_delay_ms"], rel=1e-6)
    example = json.loads((paths.EXAMPLES_DIR / "interleaving-example.json").read_text())
    prose = _markdown_outputs(tmp_path / "06-solver.ipynb")
    assert f"optimum's {example['optimum_avg_delay_ms']:.1f} ms" in prose
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == [
        "solver-gantt-alexnet-4.png",
        "solver-interleaving-gantt.png",
        "solver-scaling.png",
    ]
