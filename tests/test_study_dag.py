"""The study and the planning tools with the DAG networks (ResNet, MobileNetV2) beside the paper's chains."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from dnnpart import networks
from dnnpart.planning import sensitivity
from dnnpart.planning.compile import compile_scenario
from dnnpart.study import sweeps
from dnnpart.study.claims import check_claims


@pytest.fixture(scope="module")
def fig2():
    return sweeps.network_sweep("paper", ["lenet", "alexnet", "mobilenet_v2"], n_devices=2)


def test_fig2_prices_a_dag_network_by_its_blocks(fig2):
    table = networks.get("mobilenet_v2")
    block_bytes, names = networks.block_in_bytes(table), networks.block_names(table)
    part = fig2[fig2["network"] == "mobilenet_v2"].set_index("method")
    assert part.loc["case3", "relative_speed"] == pytest.approx(1.0)
    assert part.loc["case1", "avg_delay_ms"] <= part["avg_delay_ms"].min() + 1e-6
    assert part.loc["case2", "transmitted_bytes"] == 2 * block_bytes[0] == 2 * 3 * 224 * 224 * 4
    for _, row in part.iterrows():
        cuts = [int(c) for c in row["cuts"].split()]
        assert row["transmitted_bytes"] == sum(block_bytes[c] for c in cuts if c < len(names))
        expected = ["input" if c == 0 else "all local" if c == len(names) else names[c - 1] for c in cuts]
        assert row["cut_layers"] == ", ".join(expected)


def test_fig2_rows_of_the_paper_networks_do_not_change_when_dag_networks_join(fig2):
    alone = sweeps.network_sweep("paper", ["lenet", "alexnet"], n_devices=2)
    joint = fig2[fig2["network"] != "mobilenet_v2"].reset_index(drop=True)
    pd.testing.assert_frame_equal(joint, alone)
    # the paper's statements stay about the paper's networks
    pd.testing.assert_frame_equal(check_claims("fig2", fig2), check_claims("fig2", alone))


def test_partitioning_gains_from_the_sweep(fig2):
    gains = sweeps.partitioning_gains(fig2).set_index("network")
    for net, part in fig2.groupby("network"):
        d = part.set_index("method")["avg_delay_ms"]
        g = gains.loc[net]
        assert g["reduction_vs_case3_pct"] == pytest.approx(100 * (1 - d["case1"] / d["case3"]))
        assert g["reduction_vs_case2_pct"] == pytest.approx(100 * (1 - d["case1"] / d["case2"]))
        assert g["input_bytes"] == networks.block_in_bytes(networks.get(net))[0]
        assert g["case1_upload_bytes_per_device"] * 2 == part.set_index("method").loc["case1", "transmitted_bytes"]


def test_block_factors_are_the_predicted_time_weighted_mean_of_the_layer_factors():
    table = networks.get("resnet18")
    predicted = np.arange(1, len(table) + 1, dtype=float)
    factors = np.vstack([np.full(len(table), 1.5), np.linspace(0.5, 2.0, len(table))])
    out = sensitivity._block_factors(table, predicted, factors)
    bounds = networks.block_bounds(table)
    assert out.shape == (2, len(bounds))
    assert np.allclose(out[0], 1.5)  # the same factor on every layer scales every block by it
    for b, (start, stop) in enumerate(bounds):  # realised block time = sum of realised layer times
        realised = (predicted[start:stop] * factors[1, start:stop]).sum()
        assert out[1, b] * predicted[start:stop].sum() == pytest.approx(realised)


def test_robustness_runs_on_a_scenario_with_a_dag_network(tmp_path):
    scenario = {
        "server": {"profile": "measured", "load": 0.0},
        "devices": [
            {"name": "cam", "count": 1, "network": "mobilenet_v2", "profile": "measured", "uplink_mbps": 20},
            {"name": "old", "count": 1, "network": "lenet", "profile": "measured", "uplink_mbps": 5},
        ],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    compiled = compile_scenario(tmp_path / "s.yaml")
    df = sensitivity.robustness(compiled, n_draws=50, seed=0)
    assert set(df["method"]) == {"case1", "case2", "case3", "independent"}
    assert (df["realised_avg_delay_ms"] > 0).all()
    # case 3 runs everything locally: its realised delays scatter around the predicted one
    c3 = df[df["method"] == "case3"]
    assert 0.5 < c3["realised_avg_delay_ms"].median() / c3["predicted_avg_delay_ms"].iloc[0] < 2.0
    again = sensitivity.robustness(compiled, n_draws=50, seed=0)
    pd.testing.assert_frame_equal(df, again)
