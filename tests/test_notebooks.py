"""Each study notebook runs through papermill with small parameters; the tables it writes are checked.

The pattern of recommenders' notebook smoke tests: the notebook records its values (here, the CSVs it writes
into a temporary out_dir) and the test asserts properties that the paper's model implies.
"""
import numpy as np
import pandas as pd
import papermill as pm
import pytest

from dnnpart import paths

TOL = 1e-6


def run_notebook(name: str, tmp_path, **parameters):
    """Execute a notebook with papermill into tmp_path; returns the folder its CSVs are written to."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(paths.NOTEBOOKS_DIR / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
        parameters={"out_dir": str(tmp_path), **parameters}, kernel_name="python3",
        cwd=str(paths.NOTEBOOKS_DIR), execution_timeout=600, progress_bar=False,
    )
    return tmp_path / "data"


def wide(df, x, value="avg_delay_ms"):
    return df.pivot_table(index=x, columns="method", values=value, sort=True)


def assert_case1_best(w):
    assert (w["case1"] <= w[["case2", "case3", "independent"]].min(axis=1) + TOL).all(), w


def nondecreasing(s):
    return bool((s.diff().dropna() >= -TOL).all())


def test_bandwidth_notebook(tmp_path):
    data = run_notebook("02-bandwidth", tmp_path, profiles=["paper"], bandwidths_mbps=[0.5, 2.0, 8.0, 32.0])
    fig1 = pd.read_csv(data / "fig1.csv")
    assert sorted(fig1["method"].unique()) == ["case1", "case2", "case3", "independent"]
    assert len(fig1) == 4 * 4
    w = wide(fig1, "bandwidth_mbps")
    assert_case1_best(w)
    assert np.ptp(w["case3"]) < TOL                       # local processing ignores the uplink
    assert nondecreasing(-w["case2"])                     # more bandwidth never slows all-server
    fig3 = wide(pd.read_csv(data / "fig3.csv"), "bandwidth_mbps", "transmitted_bytes")
    assert (fig3["case3"] == 0).all()
    assert (fig3["case2"] == 4 * 3 * 227 * 227 * 4).all()  # four devices upload AlexNet's float32 input
    assert (tmp_path / "figures" / "fig1-delay-vs-bandwidth.svg").is_file()


def test_networks_notebook(tmp_path):
    data = run_notebook("03-networks", tmp_path, profiles=["paper"], network_names=["alexnet", "lenet"])
    fig2 = pd.read_csv(data / "fig2.csv")
    for _, part in fig2.groupby("network"):
        w = part.set_index("method")
        assert w.loc["case3", "relative_speed"] == pytest.approx(1.0)
        assert w.loc["case1", "relative_speed"] >= w["relative_speed"].max() - TOL
        assert w.loc["case1", "avg_delay_ms"] <= w["avg_delay_ms"].min() + TOL


@pytest.mark.parametrize("name, table, swept, values", [
    ("04-server-load", "fig4", "loads", [0.0, 0.5, 0.9]),
    ("05-devices", "fig5", "n_devices", [1, 2, 3]),
])
def test_delay_grows_with_server_contention(tmp_path, name, table, swept, values):
    """More load or more devices never helps the cases that use the server; all-local does not notice."""
    data = run_notebook(name, tmp_path, profiles=["paper"], **{swept: values})
    w = wide(pd.read_csv(data / f"{table}.csv"), "load" if swept == "loads" else "n_devices")
    assert list(w.index) == values
    assert_case1_best(w)
    assert nondecreasing(w["case1"]) and nondecreasing(w["case2"])
    assert np.ptp(w["case3"]) < TOL


def test_bad_parameter_fails_the_notebook(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="load"):
        run_notebook("04-server-load", tmp_path, profiles=["paper"], loads=[1.5])


def test_two_runs_write_identical_csvs(tmp_path):
    """make reproduce must write the same data every time: fixed seeds and node-limited (not timed) solves."""
    params = dict(profiles=["paper", "measured"], loads=[0.0, 0.6])
    first = run_notebook("04-server-load", tmp_path / "a", **params) / "fig4.csv"
    second = run_notebook("04-server-load", tmp_path / "b", **params) / "fig4.csv"
    assert first.read_bytes() == second.read_bytes()
