"""The headline's sensitivity to the sweep's ends, the raw input's encoding and the paper profile's non-conv layers."""

import numpy as np
import pandas as pd
import pytest

from dnnpart import networks
from dnnpart.delay import load_delay_model
from dnnpart.errors import DnnpartError
from dnnpart.planning.compile import network_instance
from dnnpart.study import headline_sensitivity as hs
from dnnpart.study import sweeps

BANDWIDTHS = [0.5, 5.0, 50.0]
ALEXNET_INPUT_BYTES = 3 * 227 * 227 * 4  # float32, as the layer table counts it


@pytest.fixture(scope="module")
def delays():
    return hs.sensitivity_delays("paper", bandwidths_mbps=BANDWIDTHS)


def wide(df):
    return df.pivot_table(
        index=["variant", "input_encoding", "bandwidth_mbps"], columns="method", values="avg_delay_ms"
    )


def test_fitted_float32_is_the_sweeps_instance(delays):
    ours = hs.sensitivity_instance("alexnet", 4, 5.0)
    assert ours.to_dict() == network_instance("alexnet", 4, 5.0, 0.0, "paper").to_dict()
    fig1 = sweeps.bandwidth_sweep("paper", bandwidths_mbps=BANDWIDTHS)
    theirs = fig1[fig1["method"] != "independent"].pivot_table(
        index="bandwidth_mbps", columns="method", values="avg_delay_ms"
    )
    mine = wide(delays).loc[("fitted", "float32")]
    pd.testing.assert_frame_equal(mine, theirs, check_names=False, rtol=1e-12)


def test_uint8_shrinks_only_the_raw_inputs_upload():
    f32 = hs.sensitivity_instance("alexnet", 2, 2.0, input_encoding="float32").devices[0]
    u8 = hs.sensitivity_instance("alexnet", 2, 2.0, input_encoding="uint8").devices[0]
    assert f32.upload_ms[0] == pytest.approx(ALEXNET_INPUT_BYTES * 8 / 2000.0)
    assert u8.upload_ms[0] == pytest.approx(ALEXNET_INPUT_BYTES / 4 * 8 / 2000.0)  # 154,587 bytes
    assert u8.upload_ms[1:] == f32.upload_ms[1:]
    assert (u8.local_ms, u8.server_ms) == (f32.local_ms, f32.server_ms)


def test_uint8_input_can_only_lower_the_delays(delays):
    w = wide(delays)
    for variant in hs.VARIANTS:
        f32, u8 = w.loc[(variant, "float32")], w.loc[(variant, "uint8")]
        assert (u8["case2"] < f32["case2"]).all()  # Case 2 uploads the raw input: strictly faster
        assert np.allclose(u8["case3"], f32["case3"])  # all-local never uploads
        assert (u8["case1"] <= f32["case1"] + 1e-6).all()  # the optimum over a faster instance


def test_every_solve_is_proven_optimal(delays):
    assert delays["proven_optimal"].all()
    assert len(delays) == 2 * 2 * len(BANDWIDTHS) * 3


def test_equations_variant_prices_layers_by_eq_1_and_2():
    layers = networks.get("alexnet").set_index("name")
    device = pd.Series(hs.equation_delays(layers, "device"), index=layers.index)
    server = pd.Series(hs.equation_delays(layers, "server"), index=layers.index)
    # fc6 (9216 -> 4096) with G = K = 1: a O I + b I + c O
    assert device["fc6"] == pytest.approx(0.3e-5 * 4096 * 9216 + 2.6e-5 * 9216 + 4.8e-5 * 4096)
    assert server["fc6"] == pytest.approx(3.0e-7 * 4096 * 9216 + 7.4e-7 * 9216 + 25.8e-7 * 4096)
    # norm1: 96 channels of 55 x 55, each output reads 5 neighbouring channels: I = 1, K² = 5
    assert device["norm1"] == pytest.approx(0.3e-5 * 55**2 * 5 * 96 + 2.6e-5 * 55**2 * 5 + 4.8e-5 * 55**2 * 96)
    # pool1: 3 x 3 window, 27 x 27 x 96 out; relu1: one read per output
    assert device["pool1"] == pytest.approx(0.3e-5 * 27**2 * 9 * 96 + 2.6e-5 * 27**2 * 9 + 4.8e-5 * 27**2 * 96)
    assert device["relu1"] == pytest.approx(0.3e-5 * 55**2 * 96 + 2.6e-5 * 55**2 + 4.8e-5 * 55**2 * 96)
    # conv: the paper profile's eq. (1)/(2) verbatim
    conv = layers["type"] == "conv"
    paper = load_delay_model("paper")
    np.testing.assert_allclose(device[conv], paper.predict(layers[conv], "device"), rtol=1e-12)
    np.testing.assert_allclose(server[conv], paper.predict(layers[conv], "server"), rtol=1e-12)


def test_max_reductions_on_known_delays():
    rows = []
    for b, (c1, c2, c3) in {0.5: (90.0, 900.0, 100.0), 5.0: (50.0, 100.0, 100.0), 50.0: (20.0, 25.0, 100.0)}.items():
        rows += [
            {
                "profile": "paper",
                "variant": "fitted",
                "input_encoding": "float32",
                "bandwidth_mbps": b,
                "method": m,
                "avg_delay_ms": d,
            }
            for m, d in [("case1", c1), ("case2", c2), ("case3", c3)]
        ]
    table = hs.max_reductions(pd.DataFrame(rows), lows_mbps=[0.5, 5.0], highs_mbps=[50.0]).set_index(
        ["sweep_low_mbps", "versus"]
    )
    assert table.loc[(0.5, "case2"), "reduction_pct"] == pytest.approx(90.0)  # 1 - 90/900, at 0.5 Mbps
    assert table.loc[(5.0, "case2"), "reduction_pct"] == pytest.approx(50.0)  # 0.5 Mbps no longer swept
    assert table.loc[(5.0, "case2"), "at_bandwidth_mbps"] == 5.0
    assert table.loc[(0.5, "case3"), "reduction_pct"] == pytest.approx(80.0)  # 1 - 20/100, at 50 Mbps
    assert table.loc[(0.5, "case3"), "paper_reduction_pct"] == 69.5
    assert table.loc[(0.5, "case2"), "paper_reduction_pct"] == 90.5


def test_headline_table_shape_and_narrower_sweeps():
    table = hs.headline_sensitivity(lows_mbps=(0.5, 1.0), highs_mbps=(5.0, 50.0))
    assert list(table.columns) == hs.COLUMNS
    assert len(table) == 2 * 2 * 2 * 2 * 2  # lows x highs x encodings x variants x versus
    assert not table.duplicated(["variant", "input_encoding", "versus", "sweep_low_mbps", "sweep_high_mbps"]).any()
    assert table["at_bandwidth_mbps"].between(table["sweep_low_mbps"], table["sweep_high_mbps"]).all()
    t = table.set_index(["variant", "input_encoding", "versus", "sweep_low_mbps", "sweep_high_mbps"])["reduction_pct"]
    for variant in hs.VARIANTS:
        for encoding in hs.INPUT_ENCODINGS:
            for versus in ["case2", "case3"]:
                widest = t[(variant, encoding, versus, 0.5, 50.0)]
                for low, high in [(1.0, 50.0), (0.5, 5.0), (1.0, 5.0)]:
                    assert t[(variant, encoding, versus, low, high)] <= widest + 1e-9
                assert t[(variant, encoding, versus, 1.0, 5.0)] <= t[(variant, encoding, versus, 1.0, 50.0)] + 1e-9
    # a smaller raw input shrinks Case 2 most where its upload dominates: at the lowest bandwidth
    for variant in hs.VARIANTS:
        assert t[(variant, "uint8", "case2", 0.5, 50.0)] < t[(variant, "float32", "case2", 0.5, 50.0)]


def test_sweep_grid_contains_the_ends_and_the_projects_points():
    grid = hs.sweep_grid([1.0], [10.0])
    assert grid[0] == 1.0 and grid[-1] == 10.0
    assert set(grid) - {1.0, 10.0} == {b for b in sweeps.BANDWIDTHS_MBPS if 1.0 <= b <= 10.0}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_encodings": ("float16",)}, "unknown input encoding 'float16'; choose one of float32, uint8"),
        ({"lows_mbps": (10.0,), "highs_mbps": (5.0,)}, "every sweep low end must lie below every high end"),
        ({"lows_mbps": (0.0,)}, "sweep end must be a positive number of Mbps"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(DnnpartError, match=message):
        hs.headline_sensitivity(**kwargs)


def test_bad_variants():
    with pytest.raises(DnnpartError, match="unknown profile variant 'scaled'; choose one of fitted, equations"):
        hs.sensitivity_delays("paper", variants=["scaled"], bandwidths_mbps=[1.0])
    with pytest.raises(DnnpartError, match="use profile 'paper', not 'measured'"):
        hs.sensitivity_delays("measured", variants=["equations"], bandwidths_mbps=[1.0])
    assert hs.default_variants("measured") == ["fitted"]
