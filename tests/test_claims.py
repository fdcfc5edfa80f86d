"""The paper's statements are checked on sweep tables: each check is shown to hold on data that agree with the
paper AND to fail on data that do not; "holds by construction" checks must hold on every real sweep."""

import pandas as pd
import pytest

from dnnpart.errors import DnnpartError
from dnnpart.study import sweeps
from dnnpart.study.claims import (
    BY_CONSTRUCTION,
    DEPENDS_ON_DATA,
    FIGURES,
    KINDS,
    check_claims,
    claims_markdown,
)

# Claim texts, as the reports print them.
CASE1_MIN = "Case 1 is always the minimum"
SWITCH = "Case 1 switches from all-local to offloading inside the sweep"
LOW_LOCAL = "At the lowest bandwidth Case 1 runs (almost) everything locally"
DROP_MORE = "Case 2 decreases more than Case 1"
NO_MORE_DATA = "Case 1 transmits no more than Case 2 at every bandwidth"
HEAVY = "VGG16 and VGG13: offloading everything (Case 2) is faster than all-local"
LIGHT = "AlexNet and LeNet: all-local is faster than offloading everything (Case 2)"
LOCAL_ORDER = "The networks' all-local delay decreases from VGG16 to VGG13 to AlexNet to LeNet"


def sweep(case1, case2, case3, x="load", xs=(0.0, 0.5, 0.9)):
    """A delay sweep in the notebooks' long shape: one row per x and method (independent = case2 here)."""
    rows = []
    for method, ys in [("case1", case1), ("case2", case2), ("case3", case3), ("independent", case2)]:
        rows += [{"profile": "p", x: xv, "method": method, "avg_delay_ms": y} for xv, y in zip(xs, ys)]
    return pd.DataFrame(rows)


def bandwidth(case1, case2, case3=(100.0, 100.0, 100.0)):
    return sweep(case1, case2, case3, "bandwidth_mbps", (0.5, 5.0, 50.0))


def networks_sweep(delays: dict[str, tuple[float, float, float]]):
    """Fig. 2's shape: per network (case1, case2, case3) delays; relative speed = case3 / delay, as the sweep."""
    rows = []
    for network, (c1, c2, c3) in delays.items():
        for method, d in [("case1", c1), ("case2", c2), ("case3", c3), ("independent", c2)]:
            rows.append(
                {"profile": "p", "network": network, "method": method, "avg_delay_ms": d, "relative_speed": c3 / d}
            )
    return pd.DataFrame(rows)


def data_sweep(case1, case2=(400, 400, 400), case3=(0, 0, 0)):
    rows = []
    for method, ys in [("case1", case1), ("case2", case2), ("case3", case3), ("independent", case2)]:
        rows += [
            {"profile": "p", "bandwidth_mbps": b, "method": method, "transmitted_bytes": y}
            for b, y in zip((0.5, 5.0, 50.0), ys)
        ]
    return pd.DataFrame(rows)


def verdicts(df, figure="fig4"):
    claims = check_claims(figure, df)
    return dict(zip(claims["claim"], claims["holds"]))


def details(df, figure):
    claims = check_claims(figure, df)
    return dict(zip(claims["claim"], claims["detail"]))


# ---------------------------------------------------------------------------------------------------- Fig. 4
def test_trends_that_hold():
    v = verdicts(sweep([1.0, 2.0, 3.0], [2.0, 4.0, 9.0], [5.0, 5.0, 5.0]))
    assert all(v.values()), v
    assert len(v) == 5


def test_a_flat_series_is_not_an_increase():
    # all-local optimum everywhere: Case 1 equals Case 3 and does not grow with load, unlike the paper's Fig. 4
    v = verdicts(sweep([5.0, 5.0, 5.0], [6.0, 8.0, 20.0], [5.0, 5.0, 5.0]))
    assert v["Case 1 increases with server load"] is False
    assert v["Case 2 increases with server load"] is True
    assert v[CASE1_MIN] is True
    off = "Case 1 offloads at every server load (stays below Case 3), as the paper's reason for its rise requires"
    assert v[off] is False
    assert (
        "all-local is optimal at server load = 0, 0.5, 0.9"
        in details(sweep([5.0, 5.0, 5.0], [6.0, 8.0, 20.0], [5.0, 5.0, 5.0]), "fig4")[off]
    )


def test_a_case1_worse_than_a_baseline_is_reported():
    v = verdicts(sweep([1.0, 2.5, 3.0], [2.0, 2.0, 9.0], [5.0, 5.0, 5.0]))
    assert v[CASE1_MIN] is False
    assert v["Case 2 increases with server load"] is True  # 2 -> 2 -> 9 stalls but never falls: a rise


# ---------------------------------------------------------------------------------------------------- Fig. 1
def test_fig1_as_the_paper_describes_it():
    # all-local at 0.5 Mbps, offloading from 5 Mbps; all-server falls much faster
    df = bandwidth([100.0, 60.0, 30.0], [400.0, 120.0, 40.0])
    v = verdicts(df, "fig1")
    assert all(v.values()), v
    assert len(v) == 7
    assert (
        details(df, "fig1")[SWITCH] == "all-local up to 0.5 Mbps, offloads from 5 Mbps; at 50 Mbps case1/case3 = 0.300"
    )
    assert details(df, "fig1")[DROP_MORE] == "drop case2 360.0 ms vs case1 70.0 ms"


def test_fig1_offloading_already_at_the_lowest_bandwidth():
    df = bandwidth([80.0, 60.0, 30.0], [400.0, 120.0, 40.0])
    v = verdicts(df, "fig1")
    assert v[SWITCH] is False and v[LOW_LOCAL] is False  # 80 / 100 < 0.9
    assert v["Case 1 decreases with bandwidth"] is True
    assert details(df, "fig1")[SWITCH].startswith("offloads already at the lowest bandwidth, 0.5 Mbps")


def test_fig1_all_local_throughout():
    df = bandwidth([100.0, 100.0, 100.0], [400.0, 120.0, 110.0])
    v = verdicts(df, "fig1")
    assert v[SWITCH] is False and v["Case 1 decreases with bandwidth"] is False
    assert v[LOW_LOCAL] is True and v[CASE1_MIN] is True
    assert details(df, "fig1")[SWITCH].startswith("all-local at every bandwidth up to 50 Mbps")


def test_fig1_case2_no_steeper_than_case1():
    # offloading everything is optimal at every bandwidth: both fall by the same amount
    v = verdicts(bandwidth([90.0, 60.0, 30.0], [90.0, 60.0, 30.0]), "fig1")
    assert v[DROP_MORE] is False and v[SWITCH] is False
    assert v["Case 2 decreases with bandwidth"] is True


def test_fig1_case3_moving_with_bandwidth_is_caught():
    # impossible in our model (hence "by construction"), so the check must flag it
    v = verdicts(bandwidth([90.0, 60.0, 30.0], [400.0, 120.0, 40.0], (100.0, 90.0, 100.0)), "fig1")
    assert v["Case 3 is unchanged with bandwidth"] is False


# ---------------------------------------------------------------------------------------------------- Fig. 2
PAPER_LIKE_FIG2 = {
    "vgg16": (200.0, 250.0, 1000.0),
    "vgg13": (200.0, 300.0, 800.0),
    "alexnet": (50.0, 150.0, 100.0),
    "lenet": (9.0, 20.0, 10.0),
}


def test_fig2_as_the_paper_describes_it():
    df = networks_sweep(PAPER_LIKE_FIG2)
    v = verdicts(df, "fig2")
    assert all(v.values()), v
    assert len(v) == 6
    d = details(df, "fig2")
    assert (
        d["Case 1's relative speed decreases from VGG16 to VGG13 to AlexNet to LeNet"]
        == "case1 5.00 → 4.00 → 2.00 → 1.11"
    )
    assert d[HEAVY] == "case2 relative speed vgg16: 4.00, vgg13: 2.67"


def test_fig2_light_network_gaining_from_the_server_and_heavier_local_delay_out_of_order():
    delays = dict(PAPER_LIKE_FIG2, lenet=(9.0, 9.5, 10.0), alexnet=(50.0, 150.0, 900.0))
    v = verdicts(networks_sweep(delays), "fig2")
    assert v[LIGHT] is False  # LeNet offloaded is faster than local
    assert v[LOCAL_ORDER] is False  # AlexNet (900) above VGG13 (800)
    assert v["Case 2's relative speed decreases from VGG16 to VGG13 to AlexNet to LeNet"] is False
    assert v[HEAVY] is True


def test_fig2_heavy_networks_that_do_not_gain_and_missing_networks():
    delays = {"alexnet": (50.0, 150.0, 100.0), "lenet": (9.0, 20.0, 10.0)}
    v, d = verdicts(networks_sweep(delays), "fig2"), details(networks_sweep(delays), "fig2")
    assert v[HEAVY] is False and d[HEAVY] == "vgg16, vgg13 not in this sweep"
    assert v[LIGHT] is True
    slow_server = dict(PAPER_LIKE_FIG2, vgg13=(800.0, 900.0, 800.0))
    assert verdicts(networks_sweep(slow_server), "fig2")[HEAVY] is False


# ---------------------------------------------------------------------------------------------------- Fig. 3
def test_fig3_as_the_paper_describes_it():
    df = data_sweep([0, 100, 300])
    v = verdicts(df, "fig3")
    assert all(v.values()), v
    assert len(v) == 4
    assert details(df, "fig3")[NO_MORE_DATA] == "largest case1 − case2 = -0.000 MB (at 50 Mbps)"


def test_fig3_case1_sending_more_than_the_raw_input():
    # a cut after a layer whose output is larger than the raw input (AlexNet's conv1/relu1)
    df = data_sweep([0, 100, 500])
    v = verdicts(df, "fig3")
    assert v[NO_MORE_DATA] is False
    assert v["Case 1 transmits more as the bandwidth grows"] is True


def test_fig3_irregular_case1_and_broken_baselines():
    v = verdicts(data_sweep([0, 300, 100], case2=(400, 400, 300), case3=(0, 5, 0)), "fig3")
    assert v["Case 1 transmits more as the bandwidth grows"] is False
    assert v["Case 2 transmits a fixed amount (the raw input)"] is False
    assert v["Case 3 transmits nothing"] is False


# ---------------------------------------------------------------------------------------------------- Fig. 5
OFFLOADS_N = (
    "Case 1 offloads at every number of devices (stays below Case 3), as the paper's reason for its rise requires"
)


def test_fig5_as_the_paper_describes_it():
    v = verdicts(sweep([20.0, 25.0, 30.0], [20.0, 30.0, 45.0], [40.0, 40.0, 40.0], "n_devices", (1, 2, 3)), "fig5")
    assert all(v.values()), v
    assert len(v) == 5


def test_fig5_case1_reaching_all_local():
    df = sweep([20.0, 40.0, 40.0], [20.0, 30.0, 45.0], [40.0, 40.0, 40.0], "n_devices", (1, 2, 3))
    v = verdicts(df, "fig5")
    assert v[OFFLOADS_N] is False
    assert details(df, "fig5")[OFFLOADS_N].endswith("all-local is optimal at number of devices = 2, 3")
    assert v["Case 1 increases with the number of devices"] is True
    assert v[CASE1_MIN] is False  # 40 > case2's 30 at N = 2


# ------------------------------------------------------------------------------------------------ every figure
def test_every_claim_has_a_kind_and_twelve_of_the_papers_twenty_are_by_construction():
    frames = {
        "fig1": bandwidth([100.0, 60.0, 30.0], [400.0, 120.0, 40.0]),
        "fig2": networks_sweep(PAPER_LIKE_FIG2),
        "fig3": data_sweep([0, 100, 300]),
        "fig4": sweep([1.0, 2.0, 3.0], [2.0, 4.0, 9.0], [5.0, 5.0, 5.0]),
        "fig5": sweep([20.0, 25.0, 30.0], [20.0, 30.0, 45.0], [40.0, 40.0, 40.0], "n_devices", (1, 2, 3)),
    }
    claims = pd.concat([check_claims(f, df) for f, df in frames.items()], ignore_index=True)
    assert list(claims.columns) == ["profile", "figure", "claim", "kind", "holds", "detail"]
    assert set(claims["kind"]) == set(KINDS)
    assert claims["kind"].value_counts().to_dict() == {DEPENDS_ON_DATA: 15, BY_CONSTRUCTION: 12}
    assert not claims.duplicated(["figure", "claim"]).any()


def test_unknown_figure():
    with pytest.raises(DnnpartError, match="unknown figure 'fig6'; choose one of fig1, fig2, fig3, fig4, fig5"):
        check_claims("fig6", sweep([1.0] * 3, [1.0] * 3, [1.0] * 3))


def test_markdown_lists_refutable_statements_first():
    text = claims_markdown(check_claims("fig4", sweep([5.0, 5.0, 5.0], [6.0, 8.0, 20.0], [5.0, 5.0, 5.0])))
    refutable, constructed = text.index("could refute: 0 of 2 hold"), text.index("by construction")
    assert refutable < constructed
    assert "by construction of the model (a check of the code): 3 of 3 hold" in text


@pytest.fixture(scope="module")
def real_sweeps():
    """Tiny sweeps of the real code, for both shipped profiles."""
    profiles = ["paper", "measured"]
    fig1 = sweeps.bandwidth_sweep(profiles, bandwidths_mbps=[0.5, 5, 50])
    return {
        "fig1": fig1,
        "fig3": fig1,
        "fig2": sweeps.network_sweep(profiles, network_names=["alexnet", "lenet"]),
        "fig4": sweeps.load_sweep(profiles, loads=[0.0, 0.5, 0.9]),
        "fig5": sweeps.devices_sweep(profiles, n_devices=[1, 2, 3]),
    }


@pytest.mark.parametrize("figure", FIGURES)
def test_by_construction_claims_hold_on_real_sweeps(real_sweeps, figure):
    claims = check_claims(figure, real_sweeps[figure])
    constructed = claims[claims["kind"] == BY_CONSTRUCTION]
    assert set(constructed["profile"]) == {"paper", "measured"}
    assert constructed["holds"].all(), constructed[~constructed["holds"]].to_dict("records")
