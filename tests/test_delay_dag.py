"""Delay models for the DAG layer types on synthetic profiles (known latency formulas), prediction of the DAG
zoo, the block instances the optimiser sees, and profiles imported from other tools."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dnnpart import networks
from dnnpart.cli import main
from dnnpart.delay import models as D
from dnnpart.delay import profiler as P
from dnnpart.delay.import_profile import import_profile
from dnnpart.errors import MissingModelError, ProfileError

NEW_TYPES = ("dwconv", "batchnorm", "add", "clip", "gap", "concat")


def known_ms(df: pd.DataFrame) -> np.ndarray:
    """The synthetic truth: per-call overhead plus work. dwconv: MACs and input elements; joins: output
    elements; every other type but conv: input elements; conv: eq. (1)'s three terms."""
    f = D.features(df)
    conv = (
        2e-8 * f["G"] ** 2 * f["K"] ** 2 * f["O"] * f["Cin"]
        + 3e-6 * f["G"] ** 2 * f["K"] ** 2 * f["Cin"]
        + 5e-6 * f["G"] ** 2 * f["O"]
    )
    dw = 0.002 + 4e-8 * f["G"] ** 2 * f["K"] ** 2 * f["O"] + 2e-7 * f["L"] ** 2 * f["O"]
    join = 0.003 + 1e-6 * f["L"] ** 2 * f["O"]
    other = 0.004 + 2e-6 * f["L"] ** 2 * f["Cin"]
    t = df["layer_type"]
    return np.where(t == "conv", conv, np.where(t == "dwconv", dw, np.where(t.isin(["add", "concat"]), join, other)))


def synthetic(types=networks.LAYER_TYPES, role="device", n=300, scale=1.0) -> pd.DataFrame:
    rows = [
        {"role": role, "layer_type": t, **{f: getattr(c, f) for f in P.FACTORS}} for t in types for c in P.design(t)[:n]
    ]
    df = pd.DataFrame(rows)
    ms = known_ms(df) * scale
    return df.assign(latency_ms=ms, p10_ms=ms * 0.95, p90_ms=ms * 1.05, repeats=5)


@pytest.fixture(scope="module")
def full_profile(tmp_path_factory):
    """A profile covering every layer type on both roles (the server 10x faster)."""
    folder = tmp_path_factory.mktemp("full")
    synthetic().to_csv(folder / "device.csv", index=False)
    synthetic(role="server", scale=0.1).to_csv(folder / "server.csv", index=False)
    return folder


@pytest.mark.parametrize("layer_type", NEW_TYPES)
def test_paper_family_recovers_the_new_types_exactly(layer_type):
    df = synthetic((layer_type,))
    model = D.fit_layer_type(df, layer_type, "paper", seed=0)
    assert model.info["r2_test"] == pytest.approx(1.0, abs=1e-9) and model.info["within10"] == 1.0
    assert model.params["Intercept"] == pytest.approx(
        {"dwconv": 0.002, "add": 0.003, "concat": 0.003}.get(layer_type, 0.004), rel=1e-6
    )


@pytest.mark.parametrize("layer_type", NEW_TYPES)
def test_dnnpart_family_fits_the_new_types_like_conv(layer_type):
    """Goal of issue 14 on measured data: conv-like types R^2 >= 0.99 and >= 90 % within 10 %; here on known
    latencies with 3 % noise, every new type must reach it."""
    df = synthetic((layer_type,))
    df["latency_ms"] *= np.exp(0.03 * np.random.default_rng(0).standard_normal(len(df)))
    model = D.fit_layer_type(df, layer_type, "dnnpart", seed=0)
    assert model.info["r2_test"] >= 0.99 and model.info["within10"] >= 0.9
    assert model.info["n_test"] == round(0.2 * len(df))


def test_fit_report_and_prediction_of_the_dag_zoo(full_profile):
    report = D.fit_report(full_profile)
    assert set(report["layer_type"]) == set(networks.LAYER_TYPES) and len(report) == 13 * 2 * 2
    model = D.load_delay_model(full_profile)
    for name in networks.DAG_NETWORKS:
        table = networks.get(name)
        for role in ("device", "server"):
            ms = model.predict(table, role)
            assert (ms > 0).all() and len(ms) == len(table)
            blocks = networks.block_sums(table, ms)
            assert len(blocks) == len(networks.block_table(table)) and blocks.sum() == pytest.approx(ms.sum())


def test_a_profile_without_the_dag_types_names_the_first_missing_one(tmp_path):
    chain_only = ("conv", "fc", "pool", "relu", "lrn", "softmax", "dropout")
    synthetic(types=chain_only, n=40).to_csv(tmp_path / "device.csv", index=False)
    model = D.load_delay_model(tmp_path)
    with pytest.raises(
        MissingModelError,
        match=r"no device delay model for layer type 'batchnorm' in profile .*; covered types: conv, dropout, fc",
    ):
        model.predict(networks.get("resnet18"), "device")
    from dnnpart.planning.compile import network_instance

    with pytest.raises(MissingModelError, match="'batchnorm'"):
        network_instance("mobilenet_v2", 2, 10.0, profile=str(tmp_path))


def test_network_instance_of_a_dag_is_its_chain_of_blocks(full_profile):
    from dnnpart.optimiser.baselines import solve_all_methods
    from dnnpart.planning.compile import LabelledInstance, network_instance

    table = networks.get("resnet18")
    model = D.load_delay_model(full_profile)
    inst = network_instance("resnet18", 3, 8.0, load=0.5, profile=str(full_profile))
    d = inst.devices[0]
    assert d.n_layers == 22 and len(inst) == 3
    np.testing.assert_allclose(d.local_ms, networks.block_sums(table, model.predict(table, "device")), rtol=1e-12)
    np.testing.assert_allclose(d.server_ms, 2 * networks.block_sums(table, model.predict(table, "server")), rtol=1e-12)
    np.testing.assert_allclose(d.upload_ms, networks.block_table(table)["in_bytes"] * 8 / 8000.0, rtol=1e-12)
    labelled = LabelledInstance.of_network(inst, table)
    assert labelled.cut_name(0, 5) == "layer1.0.add" and labelled.cut_name(0, 22) == "all local"
    solutions = solve_all_methods(inst)
    assert solutions["case1"].avg_delay_ms <= min(s.avg_delay_ms for s in solutions.values()) + 1e-6
    assert all(0 <= c <= 22 for c in solutions["case1"].schedule.cuts)


def test_a_scenario_mixes_dag_and_chain_networks(full_profile, tmp_path):
    import yaml

    from dnnpart.planning.compile import compile_scenario

    path = networks.to_onnx("mobilenet_v2", tmp_path / "mine.onnx", layer_outputs=False)
    scenario = {
        "server": {"profile": str(full_profile), "load": 0.0},
        "devices": [
            {"name": "phone", "count": 2, "network": "resnet18", "profile": str(full_profile), "uplink_mbps": 10},
            {"name": "cam", "count": 1, "network": path.name, "profile": str(full_profile), "uplink_mbps": 5},
            {"name": "old", "count": 1, "network": "lenet", "profile": str(full_profile), "uplink_mbps": 5},
        ],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    compiled = compile_scenario(tmp_path / "s.yaml")
    assert [d.n_layers for d in compiled.instance.devices] == [22, 22, 72, 8]
    assert compiled.layer_names[2] == networks.block_names(networks.get("mobilenet_v2"))
    assert compiled.layer_names[3] == list(networks.get("lenet")["name"])
    assert compiled.cut_name(2, 17) == "features.3.add"
    data = compiled.to_dict()
    assert len(data["devices"][0]["_layers"]) == 22


def write_timings(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_import_profile_maps_the_minimal_schema(tmp_path):
    """Timings as a PyTorch script would log them: operator names or layer types, shapes, latency; no
    p10/p90/repeats; every configuration timed three times; one row 100x off."""
    rng = np.random.default_rng(0)
    rows = []
    for c in P.design("dwconv")[:40]:
        for _ in range(3):
            ms = 0.002 + 4e-8 * c.out_side**2 * 9 * c.out_channels + 2e-7 * c.in_side**2 * c.out_channels
            rows.append(
                {
                    "layer_type": "Conv",
                    "in_channels": c.in_channels,
                    "out_channels": c.out_channels,
                    "in_side": c.in_side,
                    "kernel": c.kernel,
                    "stride": c.stride,
                    "pad": c.pad,
                    "groups": c.groups,
                    "latency_ms": ms * float(np.exp(0.02 * rng.standard_normal())),
                }
            )
    for c in P.design("add")[:30]:
        ms = 0.003 + 1e-6 * c.in_side**2 * c.out_channels
        rows.append({"layer_type": "add", "in_channels": c.in_channels, "in_side": c.in_side, "latency_ms": ms})
    rows[-1]["latency_ms"] *= 100  # a typo: the flagged row
    src = write_timings(tmp_path / "pi.csv", rows)
    csv_path = import_profile(src, "device", tmp_path / "pi")
    df = D.read_profile_csv(csv_path)
    assert len(df) == 40 + 30 and set(df["layer_type"]) == {"dwconv", "add"}  # repeats aggregated
    dw = df[df["layer_type"] == "dwconv"]
    assert (dw["repeats"] == 3).all() and (dw["p10_ms"] <= dw["latency_ms"]).all()
    assert (dw["groups"] == dw["in_channels"]).all()
    add = df[df["layer_type"] == "add"]
    assert (add["out_channels"] * 2 == add["in_channels"]).all() and add["p10_ms"].isna().all()
    meta = json.loads((tmp_path / "pi" / "device.json").read_text())
    assert meta["rows_read"] == 150 and meta["configurations"] == 70 and meta["source"] == "imported"
    assert [(r["layer_type"], r["in_channels"]) for r in meta["flagged"]] == [("add", rows[-1]["in_channels"])]
    model = D.load_delay_model(tmp_path / "pi")
    table = networks.build_table("x", [1, 96, 28, 28], [networks.dwconv("d", 96, 3, 1, 1)])
    assert model.predict(table, "device").iloc[0] == pytest.approx(
        0.002 + 4e-8 * 28**2 * 9 * 96 + 2e-7 * 28**2 * 96, rel=0.1
    )


def test_repeats_are_aggregated_before_the_split():
    df = synthetic(("relu",), n=50)
    twice = pd.concat([df, df.assign(latency_ms=df["latency_ms"] * 1.1)], ignore_index=True)
    agg = D.aggregate_repeats(twice)
    assert len(agg) == 50 and (agg["repeats"] == 10).all()
    np.testing.assert_allclose(agg["latency_ms"], df["latency_ms"] * 1.05)
    model = D.fit_layer_type(agg, "relu", "paper")
    assert model.info["n_train"] + model.info["n_test"] == 50
    assert D.aggregate_repeats(df) is df  # nothing repeated: untouched


def test_import_profile_cli_and_its_one_line_errors(tmp_path, capsys):
    rows = [
        {
            "layer_type": "clip",
            "in_channels": c.in_channels,
            "in_side": c.in_side,
            "latency_ms": 0.004 + 2e-6 * c.in_side**2 * c.in_channels,
        }
        for c in P.design("clip")[:30]
    ]
    src = write_timings(tmp_path / "t.csv", rows)
    out = tmp_path / "board"
    assert main(["import-profile", str(src), "--from", "csv", "--role", "server", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out / 'server.csv'}: 30 configurations from 30 rows" in text and "0 rows flagged" in text
    assert main(["import-profile", str(src), "--from", "csv", "--role", "server", "--out", str(out)]) == 2
    assert "already holds a server profile" in capsys.readouterr().err
    bad = write_timings(
        tmp_path / "bad.csv", [{"layer_type": "Sigmoid", "in_channels": 3, "in_side": 4, "latency_ms": 1.0}]
    )
    assert main(["import-profile", str(bad), "--from", "csv", "--role", "device", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2: unknown layer_type 'Sigmoid'" in err and "dwconv" in err
    short = write_timings(tmp_path / "short.csv", [{"layer_type": "conv", "in_side": 4, "latency_ms": 1.0}])
    assert main(["import-profile", str(short), "--from", "csv", "--role", "device", "--out", str(tmp_path / "y")]) == 2
    assert "missing column(s) in_channels" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse's own refusal, one line
        main(["import-profile", str(src), "--from", "xlsx", "--role", "device", "--out", str(tmp_path / "z")])
    assert exit_.value.code == 2 and "invalid choice: 'xlsx'" in capsys.readouterr().err
    with pytest.raises(ProfileError, match="needs out_channels"):
        import_profile(
            write_timings(
                tmp_path / "c.csv", [{"layer_type": "conv", "in_channels": 3, "in_side": 8, "latency_ms": 1.0}]
            ),
            "device",
            tmp_path / "c",
        )


def test_additivity_runs_on_a_dag_network(full_profile):
    from dnnpart.delay import additivity_check

    df = additivity_check(full_profile, "device", ["mobilenet_v2"], threads=1, repeats=1)
    assert df[["network", "layers"]].values.tolist() == [["mobilenet_v2", 152]]
    model = D.load_delay_model(full_profile)
    assert df["predicted_ms"].iloc[0] == pytest.approx(model.predict(networks.get("mobilenet_v2"), "device").sum())
    assert df["measured_ms"].iloc[0] > 0 and df["ratio"].iloc[0] > 0


def test_the_deployment_guide_documents_the_import_schema():
    from dnnpart.delay.import_profile import IMPORT_REQUIRED
    from dnnpart.paths import PROJ_ROOT

    guide = (PROJ_ROOT / "docs" / "deployment.md").read_text()
    section = guide[guide.index("## Residual networks and profiles from other tools") :]
    assert all(f"| `{col}` | yes |" in section for col in IMPORT_REQUIRED)
    assert f"more than {D.OUTLIER_FACTOR:g}x above or below" in section
    assert f"at least {D.MIN_ROWS_PER_TYPE} distinct configurations" in section
    assert all(f"`{t}`" in section for t in networks.LAYER_TYPES)


# --- the shipped measured profile: the DAG types measured beside the paper's, their fits, the conv shapes -------


def shipped_rows(role: str) -> pd.DataFrame:
    return D.read_profile_csv(D.resolve_profile("measured") / f"{role}.csv")


@pytest.mark.parametrize("role", ["device", "server"])
def test_the_shipped_profile_fits_every_new_type_on_held_out_rows(role):
    report = D.fit_report("measured").set_index(["role", "layer_type", "family"])
    rows = shipped_rows(role)
    for t in NEW_TYPES:
        n = int((rows["layer_type"] == t).sum())
        assert n >= D.MIN_ROWS_PER_TYPE
        for family in D.FAMILIES:
            r = report.loc[(role, t, family)]
            assert r["n_train"] + r["n_test"] == n and r["n_test"] == round(D.TEST_SHARE * n)
            assert np.isfinite([r["r2_test"], r["mae_ms"], r["mape"]]).all() and 0 <= r["within10"] <= 1
        if role == "device":  # sane: far better than the mean (the 2026-12-02 server rows, measured under load
            # 8-11 with two spinning threads, are too noisy for that: data/README.md)
            assert report.loc[(role, t, "dnnpart"), "r2_test"] > 0.5


def test_the_new_types_leave_the_paper_types_fits_as_they_were():
    """A role's fit with the DAG types' rows and without them gives the paper's types the same models."""
    rows = shipped_rows("device")
    quick = rows[rows["layer_type"].isin(("pool", "relu", "softmax", *NEW_TYPES))]  # conv and fc: the same path
    with_new = D.fit_profile_role(quick, "dnnpart")
    without = D.fit_profile_role(quick[~quick["layer_type"].isin(NEW_TYPES)], "dnnpart")
    assert set(with_new) - set(without) == set(NEW_TYPES)
    for t, model in without.items():
        assert with_new[t].formula == model.formula and with_new[t].params == model.params


def test_measured_rows_rebuild_from_their_windows_in_sweep_order():
    """The profile CSV is the fastest window of each configuration in the runs file, rows in every type's sweep
    order: the paper's types first, exactly as shipped before the DAG types were added after them."""
    folder = D.resolve_profile("measured")
    runs = pd.read_csv(folder / "device.runs.csv")
    order = [c.key("device") for t in networks.LAYER_TYPES for c in P.design(t)]
    rebuilt = P.aggregate_runs(runs, order)
    shipped = pd.read_csv(folder / "device.csv")
    pd.testing.assert_frame_equal(rebuilt.reset_index(drop=True), shipped, check_dtype=False)
    types = shipped["layer_type"].tolist()
    assert types.index("dwconv") > max(i for i, t in enumerate(types) if t not in NEW_TYPES)


def test_conv_shape_report_covers_the_validation_sweep():
    folder = D.resolve_profile("measured")
    report = D.conv_shape_report("measured").set_index(["role", "family", "source", "subset"])
    for role in ("device", "server"):
        extra = pd.read_csv(folder / f"modern-conv-{role}.csv")
        assert {(c.layer_type, *map(int, c[2 : 2 + len(P.FACTORS)])) for c in extra.itertuples(index=False)} <= {
            (c.layer_type, *(int(getattr(c, f)) for f in P.FACTORS)) for c in P.modern_conv_design()
        }
        subsets = D.conv_subset(extra).value_counts()
        for family in D.FAMILIES:
            for subset, n in subsets.items():
                assert report.loc[(role, family, "modern-conv", subset), "n"] == n
        # none of them was fitted: the validation rows are not in the profile
        keys = ["layer_type", *P.FACTORS]
        assert extra[keys].merge(shipped_rows(role)[keys]).empty


def test_half_agreement_counts_configurations_whose_halves_agree():
    runs = pd.DataFrame(
        [
            {
                "role": "device",
                "layer_type": "relu",
                **dict.fromkeys(P.FACTORS, 1),
                "in_channels": c,
                "pass": p,
                "raw_ms": ms,
            }
            for c, times in ((1, [1.0, 1.05, 2.0, 1.0]), (2, [1.0, 1.3, 1.5, 1.2]))
            for p, ms in enumerate(times)
        ]
    )
    out = P.half_agreement(runs).set_index(["role", "layer_type"])
    assert out.loc[("device", "relu"), "n"] == 2
    assert out.loc[("device", "relu"), "halves_within10"] == 0.5  # 1.0 vs 1.0 agree; 1.0 vs 1.2 do not


def test_covered_networks_leave_out_dags_a_profile_cannot_price(tmp_path):
    from dnnpart.delay import covered_networks

    assert covered_networks("measured") == networks.names(include_dag=True)
    chain_types = ("conv", "fc", "pool", "relu", "lrn", "softmax", "dropout")
    synthetic(types=chain_types, n=40).to_csv(tmp_path / "device.csv", index=False)
    assert covered_networks(tmp_path) == networks.names()


def dwconv_cost_ms(df: pd.DataFrame) -> np.ndarray:
    """A depthwise conv whose costs differ per path (3x3 or larger kernel, stride 1 or 2) and whose cost per
    output element steps up once the input map passes 2^20 bytes (an L2 cache)."""
    f = D.features(df)
    out, rows, col = f["O"] * f["G"] ** 2, f["O"] * f["G"], f["O"] * f["G"] ** 2 * f["K"] ** 2
    k3, strided = df["kernel"] == 3, df["stride"] > 1
    overhead = np.where(k3, 0.003, 0.006) + np.where(strided, 0.001, 0.0)
    per_out = np.where(k3, 2e-6, 1e-6) * np.where(strided, 2.0, 1.0)
    per_col = np.where(k3, 0.0, 3e-7)
    step = 5e-7 * (f["lmapb"] - 20).clip(lower=0)
    return overhead + 4e-5 * f["O"] / 1e3 + per_out * out + 1e-6 * rows + per_col * col + step * out


def test_dwconv_cost_model_is_chosen_and_recovers_per_path_costs():
    df = synthetic(("dwconv",))
    df["latency_ms"] = dwconv_cost_ms(df)
    model = D.fit_layer_type(df, "dwconv", "dnnpart", seed=0)
    assert model.formula.startswith("latency_ms ~ 0 + dw_k3 + dw_k3_strided")
    assert model.weights == D.RELATIVE_WEIGHTS and not model.info.get("rank_deficient")
    assert model.info["within10"] == 1.0 and model.info["mape"] < 1e-6


def test_dwconv_cost_model_needs_every_path_measured():
    """With only 3x3 filters the larger-kernel paths have no rows: the cost model is not a candidate (its
    terms for those paths could not be estimated and would predict nothing there)."""
    df = synthetic(("dwconv",))
    only_k3 = D.features(df[df["kernel"] == 3])
    assert not any(f.startswith("latency_ms ~ 0 + dw_") for f, _ in D.candidate_formulas("dwconv", only_k3))
    assert any(f.startswith("latency_ms ~ 0 + dw_") for f, _ in D.candidate_formulas("dwconv", D.features(df)))


def test_measured_device_dwconv_meets_the_conv_like_goal():
    """Issue 14's goal on the shipped measurements: held-out R^2 >= 0.99 and >= 90 % within +-10 %."""
    df = D.read_profile_csv(D.resolve_profile("measured") / "device.csv")
    model = D.fit_layer_type(df[df["layer_type"] == "dwconv"], "dwconv", "dnnpart", seed=0)
    assert model.info["r2_test"] >= 0.99 and model.info["within10"] >= 0.90


def test_measured_device_1x1_convs_meet_the_conv_like_goal():
    """The same goal for 1x1 convs (the conv model): on the held-out conv rows and on the ResNet/MobileNet-shaped
    validation sweep (`modern-conv-device.csv`, never fitted)."""
    report = D.conv_shape_report("measured")
    ones = report[(report["role"] == "device") & (report["family"] == "dnnpart") & (report["subset"] == "1x1")]
    assert set(ones["source"]) == {"held-out", "modern-conv"}
    assert (ones["r2_test"] >= 0.99).all() and (ones["within10"] >= 0.90).all()
