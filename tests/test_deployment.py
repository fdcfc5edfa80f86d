"""Sensitivity and robustness of deployment plans; measured profiles copied from elsewhere; notebook 07.

A synthetic measured profile (known rates times log-normal noise, both roles) keeps fitting fast and independent of
the shipped measurements; one test copies the shipped profile to check a folder measured elsewhere works as is.
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from dnnpart import delay, networks, optimiser, paths
from dnnpart.delay.profiler import CSV_COLUMNS, FACTORS
from dnnpart.errors import ProfileError
from dnnpart.planning import sensitivity as deployment
from dnnpart.planning.compile import compile_scenario

SIGMA = 0.1  # log-normal measurement noise of the synthetic profile


def synthetic_profile(folder, role: str, ms_per_mmac: float, seed: int = 0, reps: int = 2):
    """A measured-style CSV: every zoo layer configuration (and two width variants) with latency =
    (overhead + rate x work) x lognormal(0, SIGMA); work = MMACs for conv/fc, input elements otherwise."""
    rng = np.random.default_rng(seed)
    table = pd.concat([networks.get(n) for n in networks.names()], ignore_index=True)
    rows = []
    for _ in range(reps):
        for r in table.itertuples(index=False):
            for scale in (0.5, 1.0, 2.0):
                work = r.macs * scale / 1e6 if r.macs else r.in_elements / 2e5
                lat = (0.02 + ms_per_mmac * work) * float(rng.lognormal(0.0, SIGMA))
                row = {f: getattr(r, f) for f in FACTORS}
                if r.type in ("conv", "fc"):
                    row["out_channels"] = max(1, int(r.out_channels * scale))
                rows.append(
                    {
                        "role": role,
                        "layer_type": r.type,
                        **row,
                        "latency_ms": lat,
                        "p10_ms": 0.95 * lat,
                        "p90_ms": 1.05 * lat,
                        "repeats": 10,
                    }
                )
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(CSV_COLUMNS)).to_csv(folder / f"{role}.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A small heterogeneous scenario on a synthetic two-role profile, compiled once (fits cached under paths.CACHE_DIR;
    the paper family's fixed formulas fit in a fraction of the time of the dnnpart family's search)."""
    root = tmp_path_factory.mktemp("site")
    synthetic_profile(root / "synth", "device", 0.02)
    synthetic_profile(root / "synth", "server", 0.004, seed=1)
    scenario = {
        "family": "paper",
        "server": {"profile": "synth", "load": 0.1},
        "devices": [
            {"name": "cam", "count": 2, "network": "alexnet", "profile": "synth", "uplink_mbps": 20},
            {"name": "tag", "count": 1, "network": "lenet", "profile": "synth", "uplink_mbps": 1, "downlink_mbps": 1},
        ],
    }
    (root / "site.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
    compiled = compile_scenario(root / "site.yaml")
    from dnnpart.planning.plan_report import solve_plans

    return root, compiled, solve_plans(compiled)


def test_held_out_ratios_come_from_the_fits_test_rows(site):
    root, _, _ = site
    ratios = deployment.held_out_ratios(root / "synth", "device", family="paper")
    csv = pd.read_csv(root / "synth" / "device.csv")
    assert sorted(ratios) == sorted(csv["layer_type"].unique())
    for layer_type, r in ratios.items():
        n = int((csv["layer_type"] == layer_type).sum())
        assert len(r) == round(delay.models.TEST_SHARE * n)  # exactly the 20 % held out
        assert np.all(r > 0)
        # the synthetic noise is lognormal(0, 0.1): held-out ratios centre near 1 with a spread of that order
        assert 0.8 < np.median(r) < 1.25
        assert 0.02 < np.std(np.log(r)) < 0.5


def test_simulate_with_unit_factors_reproduces_each_schedule(site):
    _, compiled, solutions = site
    inst = compiled.instance
    local = [np.asarray([d.local_ms]) for d in inst.devices]
    server = [np.asarray([d.server_ms]) for d in inst.devices]
    for sol in solutions.values():
        s = sol.schedule
        got = deployment.simulate(inst, s.cuts, s.server_order, local, server)
        assert got[0] == pytest.approx(s.avg_delay_ms, rel=1e-12)


def test_robustness_is_deterministic_and_paired(site):
    _, compiled, solutions = site
    a = deployment.robustness(compiled, n_draws=200, seed=3, solutions=solutions)
    b = deployment.robustness(compiled, n_draws=200, seed=3, solutions=solutions)
    pd.testing.assert_frame_equal(a, b)
    c = deployment.robustness(compiled, n_draws=200, seed=4, solutions=solutions)
    assert not np.allclose(a["realised_avg_delay_ms"], c["realised_avg_delay_ms"])
    assert list(a.columns) == ["draw", "method", "realised_avg_delay_ms", "predicted_avg_delay_ms"]
    assert len(a) == 200 * 4 and set(a["method"]) == {"case1", "case2", "case3", "independent"}
    for method, part in a.groupby("method"):
        assert part["predicted_avg_delay_ms"].iloc[0] == pytest.approx(solutions[method].avg_delay_ms)
        assert part["realised_avg_delay_ms"].std() > 0  # the noise does move the outcome
        # noise of ~10 % per layer: the mean realised delay stays within 25 % of the prediction
        assert part["realised_avg_delay_ms"].mean() == pytest.approx(part["predicted_avg_delay_ms"].iloc[0], rel=0.25)
    assert a.attrs["noise_sources"][0]["source"] == "own held-out rows"
    summary = deployment.robustness_summary(a).set_index("method")
    assert summary.loc["case1", "case1_wins_share"] == 1.0
    assert ((summary["p5_ms"] <= summary["median_ms"]) & (summary["median_ms"] <= summary["p95_ms"])).all()


def test_fixed_model_profile_borrows_the_fallback_residuals(site, tmp_path):
    root, _, _ = site
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    models = delay.load_delay_model(root / "synth", family="paper").models["device"]
    (fixed / "device.json").write_text(json.dumps({"models": {t: m.to_dict() for t, m in models.items()}}))
    scenario = {
        "family": "paper",
        "server": {"profile": str(root / "synth")},
        "devices": [{"count": 1, "network": "lenet", "profile": "fixed", "uplink_mbps": 2}],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    compiled = compile_scenario(tmp_path / "s.yaml")
    with pytest.raises(ProfileError, match="no measured device.csv"):
        deployment.robustness(compiled, n_draws=10, fallback_profile=None)
    df = deployment.robustness(compiled, n_draws=10, fallback_profile=str(root / "synth"))
    sources = {(s["role"], s["profile"]): s["source"] for s in df.attrs["noise_sources"]}
    assert sources[("device", "fixed")].startswith("fallback")
    assert sources[("server", str(root / "synth"))] == "own held-out rows"


def test_bandwidth_sensitivity(site):
    _, compiled, solutions = site
    factors = [0.1, 1.0, 10.0]
    df = deployment.bandwidth_sensitivity(compiled, factors=factors)
    n_groups, n_devices = len(compiled.scenario.groups), len(compiled.instance)
    assert len(df) == n_groups * len(factors) * n_devices
    base = df[df["factor"] == 1.0].drop_duplicates("group")["avg_delay_ms"]
    assert np.allclose(base, solutions["case1"].avg_delay_ms, rtol=1e-6)
    cam = df[df["group"] == "cam"]
    assert np.allclose(cam.drop_duplicates("factor")["uplink_mbps"], [2.0, 20.0, 200.0])
    for _, part in df.drop_duplicates(["group", "factor"]).groupby("group"):
        assert part["proven_optimal"].all()
        assert (np.diff(part.sort_values("factor")["avg_delay_ms"]) <= 1e-6).all()  # more bandwidth never hurts
    names = set(networks.get("alexnet")["name"]) | {"input", "all local"}
    assert set(df.loc[df["device_group"] == "cam", "cut_layer"]) <= names


def test_copied_measured_profile_folder_works_as_is(site, tmp_path):
    """A profile folder measured elsewhere (here: the shipped one's device role, copied with whatever fitted-model
    cache it has, as a user would copy a folder) is used by path, untouched."""
    root, _, _ = site
    board = tmp_path / "measurements" / "board"
    board.mkdir(parents=True)
    for path in (paths.PROFILES_DIR / "measured").glob("device.*"):
        shutil.copy(path, board / path.name)
    copied = sorted(p.name for p in board.iterdir())
    scenario = {
        "family": "paper",
        "server": {"profile": str(root / "synth")},
        "devices": [
            {"name": "pi", "count": 2, "network": "alexnet", "profile": "measurements/board", "uplink_mbps": 5}
        ],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    compiled = compile_scenario(tmp_path / "s.yaml")
    expected = delay.load_delay_model(board, family="paper").predict(networks.get("alexnet"), "device")
    assert compiled.instance.devices[1].local_ms == pytest.approx(expected.tolist(), rel=1e-12)
    assert sorted(p.name for p in board.iterdir()) == copied  # fits are cached elsewhere: the folder is untouched
    sol = optimiser.solve(compiled.instance)
    assert sol.proven_optimal and sol.avg_delay_ms <= min(d.alone_ms(d.n_layers) for d in compiled.instance.devices)


def test_notebook_writes_its_tables(site, tmp_path, run_notebook):
    root, _, _ = site
    data = run_notebook(
        "07-your-deployment",
        tmp_path,
        scenario=str(root / "site.yaml"),
        factors=[0.5, 2.0],
        n_draws=50,
        plan_time_limit_s=30.0,
        sweep_time_limit_s=10.0,
    )
    plan = pd.read_csv(data / "deployment-plan.csv")
    assert plan["device"].tolist() == ["cam-0", "cam-1", "tag-0"]
    comparison = pd.read_csv(data / "deployment-comparison.csv").set_index("method")
    assert comparison.loc["case1", "avg_delay_ms"] <= comparison["avg_delay_ms"].min() + 1e-6
    assert plan["completion_ms"].mean() == pytest.approx(comparison.loc["case1", "avg_delay_ms"])
    sens = pd.read_csv(data / "deployment-sensitivity.csv")
    assert sorted(sens["factor"].unique()) == [0.5, 2.0] and set(sens["group"]) == {"cam", "tag"}
    robust = pd.read_csv(data / "deployment-robustness.csv")
    assert len(robust) == 50 * 4
    for name in ("deployment-gantt", "deployment-sensitivity", "deployment-robustness"):
        assert (tmp_path / "figures" / f"{name}.svg").is_file()
    assert "<svg" in (tmp_path / "deployment-plan.html").read_text()
