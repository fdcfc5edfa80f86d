"""Delay models: recovery of known coefficients, held-out metrics, validation, prediction on the zoo."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from dnnpart import networks
from dnnpart.delay import additivity, paper_profile
from dnnpart.delay import models as D
from dnnpart.delay import profiler as P
from dnnpart.errors import MissingModelError, ProfileError
from dnnpart.paths import PROFILES_DIR

TRUE_CONV = {"I(G ** 2 * K ** 2 * O * Cin)": 2.0e-8, "I(G ** 2 * K ** 2 * Cin)": 3.0e-6, "I(G ** 2 * O)": 5.0e-6}


def synthetic_profile(noise: float = 0.0, seed: int = 1, types=("conv",)) -> pd.DataFrame:
    """Profile rows whose latency follows known formulas: conv eq.-(1)-shaped, others linear in elements."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in types:
        for c in P.design(t)[:400]:
            rows.append({"role": "device", "layer_type": t, **{f: getattr(c, f) for f in P.FACTORS}})
    df = pd.DataFrame(rows)
    f = D.features(df)
    conv_ms = sum(
        coef * D.LayerModel("y ~ " + name + " - 1", {name: 1.0}, False).predict(f) for name, coef in TRUE_CONV.items()
    )
    other_ms = 0.004 + 2e-6 * f["L"] ** 2 * f["Cin"]
    ms = np.where(df["layer_type"] == "conv", conv_ms, other_ms) * np.exp(noise * rng.standard_normal(len(df)))
    return df.assign(latency_ms=ms, p10_ms=ms * 0.95, p90_ms=ms * 1.05, repeats=5)


def write_profile(folder, df: pd.DataFrame, role="device"):
    folder.mkdir(parents=True, exist_ok=True)
    df = df.assign(role=role)
    df[list(P.CSV_COLUMNS)].to_csv(folder / f"{role}.csv", index=False)
    return folder


def test_paper_form_recovers_known_coefficients_exactly_without_noise():
    df = synthetic_profile(noise=0.0)
    model = D.fit_layer_type(df, "conv", "paper", seed=0)
    assert set(model.params) == set(TRUE_CONV)
    for name, value in TRUE_CONV.items():
        assert model.params[name] == pytest.approx(value, rel=1e-6)
    assert model.info["r2_test"] == pytest.approx(1.0, abs=1e-9)
    assert model.info["within10"] == 1.0


def test_paper_form_recovers_coefficients_approximately_with_noise():
    df = synthetic_profile(noise=0.02)
    model = D.fit_layer_type(df, "conv", "paper", seed=0)
    for name, value in TRUE_CONV.items():
        assert model.params[name] == pytest.approx(value, rel=0.15)
    assert model.info["r2_test"] > 0.99


def test_dnnpart_form_recovers_a_power_law_exactly():
    df = synthetic_profile()
    f = D.features(df)
    df["latency_ms"] = np.exp(-9.0 + 2.0 * f["lg"] + 1.5 * f["lk"] + 1.0 * f["lo"] + 0.8 * f["lcin"])
    model = D.fit_layer_type(df, "conv", "dnnpart", seed=0)
    pred = model.predict(f)
    np.testing.assert_allclose(pred, df["latency_ms"], rtol=1e-6)
    assert model.info["validation_mape"]  # chosen among several candidates on validation rows
    assert model.formula in model.info["validation_mape"]


TRUE_COST = {
    "path_gemm": 0.006,
    "path_im2col": 0.008,
    "path_strided": 0.011,
    "path_gemm:macs": 0.05,
    "path_gemm:col": 0.2,
    "path_im2col:macs": 0.04,
    "path_im2col:col": 0.3,
    "path_im2col:out": 0.5,
    "path_strided:macs": 0.045,
    "path_strided:col": 0.9,
    "path_strided:inp": 0.4,
}


def cost_profile() -> pd.DataFrame:
    """Conv rows whose latency is a known linear cost per onnxruntime code path."""
    df = synthetic_profile()
    f = D.features(df)
    ms = sum(coef * np.prod([f[v] for v in name.split(":")], axis=0) for name, coef in TRUE_COST.items())
    return df.assign(latency_ms=ms)


def test_conv_rows_cover_every_code_path_and_each_row_takes_one():
    f = D.features(synthetic_profile())
    paths = f[list(D.CONV_PATHS)]
    assert (paths.sum(axis=1) == 1).all() and (paths.sum(axis=0) > 20).all()


def test_cost_model_recovers_known_costs_per_code_path():
    df = cost_profile()
    model = D.fit_formula(D.cost_formula("basic"), D.features(df), D.RELATIVE_WEIGHTS)
    assert model.weights == D.RELATIVE_WEIGHTS and not model.log_response
    for name, value in model.params.items():
        assert value == pytest.approx(TRUE_COST.get(name, 0.0), rel=1e-6, abs=1e-9), name
    # and the dnnpart family picks a cost model for such data, predicting the held-out rows exactly
    chosen = D.fit_layer_type(df, "conv", "dnnpart", seed=0)
    assert chosen.weights == D.RELATIVE_WEIGHTS and chosen.formula.startswith("latency_ms ~ 0 + path_gemm")
    assert chosen.info["within10"] == 1.0 and chosen.info["mape"] < 1e-6


def test_cost_model_with_input_cache_steps_recovers_a_step_in_the_cost_per_input_element():
    """A conv whose every input element costs 0.1 ns more per doubling of the input map past 2^20 bytes:
    only the variant with the input knots can express it, and the dnnpart family chooses it."""
    df = synthetic_profile()
    f = D.features(df)
    df["latency_ms"] = cost_profile()["latency_ms"] + 0.1 * f["inp"] * (f["lmapb"] - 20).clip(lower=0)
    chosen = D.fit_layer_type(df, "conv", "dnnpart", seed=0)
    assert D.is_conv_cost_formula(chosen.formula) and "inp:I((lmapb - 20) * (lmapb > 20))" in chosen.formula
    assert chosen.info["within10"] == 1.0 and chosen.info["mape"] < 1e-6
    plain = D.fit_formula(D.cost_formula("panels"), D.features(df), D.RELATIVE_WEIGHTS)
    assert D.metrics(df["latency_ms"], plain.predict(D.features(df)))["mape"] > 1e-3  # the step is needed


def test_unknown_weights_are_refused():
    with pytest.raises(ValueError, match="unknown weights"):
        D.fit_formula(D.cost_formula("basic"), D.features(cost_profile()), "1/latency")


def test_split_is_80_20_disjoint_seeded_and_order_independent():
    df = synthetic_profile()
    train, test = D.split_train_test(df, seed=0)
    assert len(test) == round(0.2 * len(df)) and len(train) + len(test) == len(df)
    assert set(train.index).isdisjoint(test.index)
    shuffled = df.sample(frac=1.0, random_state=3)
    _, test2 = D.split_train_test(shuffled, seed=0)
    assert sorted(test2.index) == sorted(test.index)
    _, test3 = D.split_train_test(df, seed=1)
    assert sorted(test3.index) != sorted(test.index)


def test_metrics_use_only_held_out_rows():
    df = synthetic_profile(noise=0.05)
    base = D.fit_layer_type(df, "conv", "paper", seed=0)
    train, test = D.split_train_test(df, seed=0)
    # the reported metrics are exactly those of the test rows
    expected = D.metrics(test["latency_ms"], base.predict(D.features(test)))
    for key, value in expected.items():
        assert base.info[key] == pytest.approx(value)
    assert (base.info["n_train"], base.info["n_test"]) == (len(train), len(test))
    # corrupting a test row changes the metrics but not the fitted coefficients (the fit never saw it)
    bad = df.copy()
    bad.loc[test.index[0], "latency_ms"] *= 1000
    corrupted = D.fit_layer_type(bad, "conv", "paper", seed=0)
    assert corrupted.params == pytest.approx(base.params, rel=1e-12)
    assert corrupted.info["mae_ms"] > 10 * base.info["mae_ms"]


def test_metrics_values():
    m = D.metrics(np.array([1.0, 2.0, 4.0]), np.array([1.05, 2.5, 4.0]))
    assert m["mae_ms"] == pytest.approx(0.55 / 3)
    assert m["mape"] == pytest.approx((0.05 + 0.25) / 3)
    assert m["within10"] == pytest.approx(2 / 3)
    assert m["r2_test"] == pytest.approx(1 - (0.05**2 + 0.25) / (np.var([1, 2, 4]) * 3))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda df: df.drop(columns=["out_side"]), "missing column.*out_side"),
        (lambda df: df.assign(latency_ms=np.where(df.index == 3, 0.0, df["latency_ms"])), "line 5.*latency_ms"),
        (lambda df: df.assign(latency_ms=np.where(df.index == 0, -1.0, df["latency_ms"])), "line 2.*latency_ms"),
        (lambda df: df.assign(layer_type=np.where(df.index == 7, "gelu", df["layer_type"])), "line 9.*'gelu'"),
        (lambda df: df.assign(role="phone"), "line 2.*'phone'"),
    ],
)
def test_bad_profile_csv_is_refused_naming_the_problem(tmp_path, mutate, match):
    df = synthetic_profile().head(20)
    mutate(df).to_csv(tmp_path / "device.csv", index=False)
    with pytest.raises(ProfileError, match=match):
        D.read_profile_csv(tmp_path / "device.csv")
    with pytest.raises(ProfileError, match=match):
        D.load_delay_model(tmp_path)


def test_missing_profile_names_the_valid_ones():
    with pytest.raises(ProfileError, match="measured.*paper|paper.*measured"):
        D.load_delay_model("no-such-profile")
    with pytest.raises(ProfileError, match="family"):
        D.load_delay_model("measured", family="magic")


def test_missing_layer_type_raises_naming_covered_types(tmp_path):
    folder = write_profile(tmp_path / "convonly", synthetic_profile())
    model = D.load_delay_model(folder, family="paper")
    with pytest.raises(MissingModelError, match=r"'relu'.*covered types: conv"):
        model.predict(networks.get("alexnet"), "device")
    with pytest.raises(ProfileError, match="'server'"):
        model.predict(networks.get("lenet"), "server")


def test_model_cache_is_written_and_refitted_when_the_csv_changes(tmp_path):
    folder = write_profile(tmp_path / "p", synthetic_profile(noise=0.01, types=("conv", "relu")))
    first = D.load_delay_model(folder, family="paper")
    cache = D.cache_path(D.sha256_file(folder / "device.csv"), "device", "paper", 0)
    stored = json.loads(cache.read_text())
    assert stored["csv_sha256"] == D.sha256_file(folder / "device.csv") and stored["formula_engine"] == "patsy"
    again = D.load_delay_model(folder, family="paper")  # from the cache: same predictions
    table = networks.get("lenet")
    table = table[table["type"].isin(["conv", "relu"])]
    pd.testing.assert_series_equal(first.predict(table, "device"), again.predict(table, "device"))
    df = pd.read_csv(folder / "device.csv")
    df["latency_ms"] *= 2
    df.to_csv(folder / "device.csv", index=False)
    doubled = D.load_delay_model(folder, family="paper")
    np.testing.assert_allclose(doubled.predict(table, "device"), 2 * first.predict(table, "device"), rtol=1e-9)


@pytest.mark.parametrize("profile, family", [("measured", "dnnpart"), ("measured", "paper"), ("paper", "dnnpart")])
def test_predict_on_every_zoo_network_is_positive(profile, family):
    model = D.load_delay_model(profile, family=family)
    for name in networks.names():
        table = networks.get(name)
        for role in P.ROLES:
            pred = model.predict(table, role)
            assert pred.index.equals(table.index)
            assert np.isfinite(pred).all() and (pred > 0).all(), (name, role)


def test_paper_profile_uses_equations_1_and_2_verbatim():
    model = D.load_delay_model("paper")
    conv1 = networks.get("alexnet").iloc[[0]]  # G=55, K=11, O=96, I=3
    g, k, o, i = 55, 11, 96, 3
    eq1 = (0.3 * g**2 * k**2 * o * i + 2.6 * g**2 * k**2 * i + 4.8 * g**2 * o) * 1e-5
    eq2 = (3 * g**2 * k**2 * o * i + 7.4 * g**2 * k**2 * i + 25.8 * g**2 * o) * 1e-7
    assert model.predict(conv1, "device").iloc[0] == pytest.approx(eq1, rel=1e-12)
    assert model.predict(conv1, "server").iloc[0] == pytest.approx(eq2, rel=1e-12)
    # grouped conv: I is the per-group input channel count (AlexNet conv2: 96 channels in 2 groups)
    conv2 = networks.get("alexnet").iloc[[4]]
    g, k, o, i = 27, 5, 256, 48
    eq1 = (0.3 * g**2 * k**2 * o * i + 2.6 * g**2 * k**2 * i + 4.8 * g**2 * o) * 1e-5
    assert model.predict(conv2, "device").iloc[0] == pytest.approx(eq1, rel=1e-12)


def test_paper_profile_rescaling_is_as_documented():
    for role in P.ROLES:
        meta = json.loads((PROFILES_DIR / "paper" / f"{role}.json").read_text())
        assert meta["scale"] == pytest.approx(meta["zoo_conv_equation_ms"] / meta["zoo_conv_measured_model_ms"])
        assert meta["models"]["relu"]["scale"] == pytest.approx(meta["scale"])
        measured = D.load_delay_model(meta["derived_from"]["profile"], family=meta["derived_from"]["family"])
        convs = paper_profile.zoo_layers("conv")
        assert measured.predict(convs, role).sum() * meta["scale"] == pytest.approx(
            meta["zoo_conv_equation_ms"], rel=1e-9
        )
        relus = paper_profile.zoo_layers("relu")
        paper = D.load_delay_model("paper")
        np.testing.assert_allclose(paper.predict(relus, role), meta["scale"] * measured.predict(relus, role), rtol=1e-9)


def test_build_paper_profile_regenerates_the_shipped_files(tmp_path):
    out = paper_profile.build_paper_profile(out=tmp_path / "paper")
    for role in P.ROLES:
        assert json.loads((out / f"{role}.json").read_text()) == json.loads(
            (PROFILES_DIR / "paper" / f"{role}.json").read_text()
        )


def test_fitting_writes_nothing_into_the_profile_folder_and_caches_per_seed(tmp_path):
    folder = write_profile(tmp_path / "p", synthetic_profile(noise=0.01, types=("conv", "relu")))
    before = sorted(p.name for p in folder.iterdir())
    D.load_delay_model(folder, family="paper", seed=0)
    D.load_delay_model(folder, family="paper", seed=1)
    assert sorted(p.name for p in folder.iterdir()) == before  # data/ holds measurements only
    fingerprint = D.sha256_file(folder / "device.csv")
    seed0, seed1 = (json.loads(D.cache_path(fingerprint, "device", "paper", s).read_text()) for s in (0, 1))
    assert (seed0["seed"], seed1["seed"]) == (0, 1)  # another seed does not overwrite the first fit


@pytest.mark.parametrize("garbage", [b"\xff\xfe not json", b"[1, 2, 3]", b'{"models": 5}'])
def test_a_bad_cache_is_refitted(tmp_path, garbage):
    folder = write_profile(tmp_path / "p", synthetic_profile(noise=0.01, types=("conv", "relu")))
    good = D.load_delay_model(folder, family="paper")
    cache = D.cache_path(D.sha256_file(folder / "device.csv"), "device", "paper", 0)
    cache.write_bytes(garbage)
    again = D.load_delay_model(folder, family="paper")
    table = networks.get("lenet")
    table = table[table["type"].isin(["conv", "relu"])]
    pd.testing.assert_series_equal(good.predict(table, "device"), again.predict(table, "device"))
    assert json.loads(cache.read_text())["seed"] == 0  # rewritten


def test_additivity_check_on_lenet(tmp_path):
    shutil.copytree(PROFILES_DIR / "measured", tmp_path / "m")
    df = additivity.additivity_check(tmp_path / "m", "device", network_names=["lenet"], repeats=3)
    assert list(df["network"]) == ["lenet"] and df.loc[0, "threads"] == 1
    row = df.iloc[0]
    assert row["measured_ms"] > 0 and row["predicted_ms"] > 0
    assert row["ratio"] == pytest.approx(row["predicted_ms"] / row["measured_ms"])
    assert row["reference_ms"] > 0


def test_recorded_additivity_prices_the_runs_recorded_with_a_profile(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(PROFILES_DIR / "measured", folder)
    (folder / "additivity-device.csv").unlink(missing_ok=True)
    assert additivity.recorded_additivity(folder, "device").empty  # no record: nothing invented
    runs = additivity.record_additivity(folder, "device", ["lenet", "alexnet"])
    assert list(pd.read_csv(folder / "additivity-device.csv").columns) == list(additivity.RECORD_COLUMNS)
    got = additivity.recorded_additivity(folder, "device")
    assert list(got["network"]) == ["lenet", "alexnet"] and (got["threads"] == 1).all()
    model = D.load_delay_model(folder)
    for r in got.itertuples():
        predicted = model.predict(networks.get(r.network), "device").sum()
        assert r.predicted_ms == pytest.approx(predicted)
        assert r.ratio == pytest.approx(predicted / runs.set_index("network").loc[r.network, "measured_ms"])
    pd.read_csv(folder / "additivity-device.csv").drop(columns="reference_ms").to_csv(
        folder / "additivity-device.csv", index=False
    )
    with pytest.raises(ProfileError, match=r"additivity-device.csv: missing columns \['reference_ms'\]"):
        additivity.recorded_additivity(folder, "device")
    with pytest.raises(ProfileError, match="unknown role 'edge'; valid roles: device, server"):
        additivity.record_additivity(folder, "edge")


def test_rank_deficient_fit_is_recorded_not_warned(recwarn):
    df = synthetic_profile()
    df = df[(df["kernel"] == 3) & (df["out_side"] == 56) & (df["out_channels"] == 64)]  # G, K, O fixed: collinear
    model = D.fit_formula(D.PAPER_CONV_FORMULA, D.features(df))
    assert model.info["rank_deficient"] is True
    assert not [w for w in recwarn if "rank" in str(w.message)]
    full = D.fit_formula(D.PAPER_CONV_FORMULA, D.features(synthetic_profile()))
    assert "rank_deficient" not in full.info


def test_a_profile_with_too_few_rows_per_type_is_refused(tmp_path):
    df = synthetic_profile(noise=0.01, types=("conv", "relu"))
    df = pd.concat([df[df["layer_type"] == "conv"], df[df["layer_type"] == "relu"].head(1)])
    folder = write_profile(tmp_path / "one-relu", df)
    with pytest.raises(ProfileError, match=r"relu: 1; each layer type needs at least 10"):
        D.load_delay_model(folder, family="paper")
