"""The layer profiler: designed sweep, one-node graphs, a tiny real run, resume and crash recovery."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dnnpart.delay import profiler as P
from dnnpart.errors import ProfileError


def test_design_is_deterministic_large_enough_and_within_caps():
    for t in P.LAYER_TYPES:
        assert P.design(t, seed=0) == P.design(t, seed=0)
    conv, fc = P.design("conv"), P.design("fc")
    assert len(conv) >= 1000 and len(fc) >= 1000
    assert len(set(conv)) == len(conv)
    assert all(c.out_side >= 1 for c in conv)
    assert max(P._conv_macs(c) for c in conv) <= P.CONV_MAX_MACS
    # the zoo's largest conv (VGG 224x224, 64->64, 3x3) and largest fc (VGG fc6) are in the sweep
    assert P.conv(3, 1, 1, 1, 64, 64, 224) in conv
    assert P.fc(25088, 4096) in fc
    assert P.design("conv", seed=1) != conv


def test_new_types_were_appended_so_measured_designs_stay_put():
    """The measured profile's sweeps were drawn before the DAG types existed: their seeds (type indices) and
    their first configurations must not move; conv's 1x1 and grouped configurations come after its old ones."""
    assert P.LAYER_TYPES[:7] == ("conv", "fc", "pool", "relu", "lrn", "softmax", "dropout")
    conv = P.design("conv")
    old = conv[:1100]  # DESIGN_SIZES["conv"] before the modern convs were appended (none was a duplicate)
    assert sum(1 for c in old if c.groups > 2) == 0 and len(conv) > 1400
    modern = conv[1100:]
    assert any(c.kernel == 1 and c.in_channels == 2048 for c in modern) and any(c.groups == 32 for c in modern)
    measured = pd.read_csv(P.Path(__file__).resolve().parents[1] / "data" / "profiles" / "measured" / "device.csv")
    measured_conv = measured[measured["layer_type"] == "conv"]
    keys = {tuple(int(getattr(c, f)) for f in P.FACTORS) for c in old}
    assert all(tuple(int(v) for v in r) in keys for r in measured_conv[list(P.FACTORS)].itertuples(index=False))


def test_designs_of_the_dag_types_cover_the_zoos_layers():
    from dnnpart import networks

    for name in networks.DAG_NETWORKS:
        table = networks.get(name)
        for t in ("dwconv", "batchnorm", "add", "clip", "gap"):
            rows, design = table[table["type"] == t], P.design(t)
            if rows.empty:
                continue
            # every zoo layer's input lies inside the design's range of channels and sides
            assert rows["in_channels"].max() <= max(c.in_channels for c in design), (name, t)
            assert rows["in_side"].max() <= max(c.in_side for c in design), (name, t)
    dw = P.design("dwconv")
    assert all(c.groups == c.in_channels == c.out_channels for c in dw) and len(dw) >= 500
    assert all(c.in_channels == 2 * c.out_channels for c in P.design("add"))
    assert all(c.out_side == 1 and c.kernel == c.in_side for c in P.design("gap"))


def test_design_variable_controlling_sweep_varies_one_factor():
    """The first conv configurations hold everything but the kernel fixed (the paper's variable control)."""
    first = P.design("conv")[:6]
    assert [c.kernel for c in first] == [1, 3, 5, 7, 9, 11]
    assert {(c.in_channels, c.out_channels, c.in_side, c.stride) for c in first} == {(64, 64, 56, 1)}


def test_unknown_layer_type_and_role_are_refused(tmp_path):
    with pytest.raises(ProfileError, match="valid types: conv"):
        P.design("layernorm")
    with pytest.raises(ProfileError, match="valid roles: device, server"):
        P.run_profile(tmp_path, "phone")
    with pytest.raises(ProfileError, match="'gelu'"):
        P.run_profile(tmp_path, "device", layer_types=["conv", "gelu"])


@pytest.mark.parametrize(
    "config",
    [
        P.conv(11, 4, 0, 1, 3, 96, 227),
        P.conv(5, 1, 2, 2, 96, 256, 27),
        P.fc(800, 500),
        P.pool(3, 2, 0, 96, 55),
        P.elementwise("relu", 4096, 1),
        P.elementwise("lrn", 96, 55, kernel=5),
        P.elementwise("softmax", 1000, 1),
        P.elementwise("dropout", 64, 28),
        P.dwconv(3, 2, 1, 96, 112),
        P.elementwise("batchnorm", 64, 14),
        P.join("add", 32, 28),
        P.join("concat", 16, 7),
        P.elementwise("clip", 1280, 1),
        P.elementwise("clip", 96, 56),
        P.gap(512, 7),
        P.conv(1, 1, 0, 32, 256, 256, 14),
    ],
)
def test_one_node_graph_output_matches_the_factors(config):
    import onnxruntime as ort

    model, feed = P.build_layer_model(config)
    assert len(model.graph.node) == 1
    sess = ort.InferenceSession(model.SerializeToString(), P.session_options(1), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, feed)
    expected = [1, config.out_channels] + ([config.out_side] * 2 if y.ndim == 4 else [])
    assert list(y.shape) == expected


def _tiny_run(out, **kw):
    return P.run_profile(
        out, "device", threads=1, layer_types=["conv", "fc", "relu"], limit=2, repeats=3, progress=False, **kw
    )


def test_tiny_real_run_writes_valid_rows_and_metadata(tmp_path):
    csv_path = _tiny_run(tmp_path)
    df = pd.read_csv(csv_path)
    assert list(df.columns) == list(P.PROFILE_COLUMNS)
    assert len(df) == 6 and set(df["layer_type"]) == {"conv", "fc", "relu"}
    # rows in design order, types in LAYER_TYPES order
    assert [tuple(r) for r in df[["layer_type", *P.FACTORS]].itertuples(index=False)] == [
        c.key("device")[1:] for t in ("conv", "fc", "relu") for c in P.design(t)[:2]
    ]
    assert (df["role"] == "device").all() and (df["repeats"] == 3 * P.PASSES).all()
    assert (df["latency_ms"] > 0).all() and (df["raw_ms"] > 0).all()
    assert (df["p10_ms"] <= df["latency_ms"]).all() and (df["latency_ms"] <= df["p90_ms"]).all()
    runs = pd.read_csv(tmp_path / "device.runs.csv")
    assert list(runs.columns) == list(P.RUN_COLUMNS) and len(runs) == 6 * P.PASSES
    assert sorted(runs["pass"].unique()) == list(range(P.PASSES))
    meta = json.loads((tmp_path / "device.json").read_text())
    assert meta["threads"] == 1 and meta["configs_per_type"] == {"conv": 2, "fc": 2, "relu": 2}
    assert meta["passes"] == P.PASSES
    for key in ("cpu_model", "cores", "onnxruntime", "date_utc", "clock", "reference_ms", "reference_layer"):
        assert meta[key]
    assert [r["windows_measured"] for r in meta["runs"]] == [6 * P.PASSES]


def _window(in_channels, pass_, raw_ms):
    return ("device", "fc", 1, 1, 0, 1, in_channels, 8, 1, 1, pass_, raw_ms, 0.8 * raw_ms, 1.2 * raw_ms, 5, 0.07)


def test_latency_is_the_fastest_window_over_passes():
    runs = pd.DataFrame(
        [
            _window(8, 0, 1.0),
            _window(16, 0, 3.0),
            _window(8, 1, 0.9),
            _window(16, 1, 2.0),
            _window(8, 2, 1.3),
            _window(16, 2, 2.5),
        ],
        columns=list(P.RUN_COLUMNS),
    )
    out = P.aggregate_runs(runs, order=[("device", "fc", 1, 1, 0, 1, n, 8, 1, 1) for n in (16, 8)])
    assert out["in_channels"].tolist() == [16, 8]
    assert out["latency_ms"].tolist() == [2.0, 0.9]
    # p10 and p90 come from the same (fastest) window, so p10 <= latency <= p90 holds
    assert out["p10_ms"].tolist() == [1.6, 0.72] and out["p90_ms"].tolist() == [2.4, 1.08]
    assert out["raw_ms"].tolist() == [2.5, 1.0] and out["repeats"].tolist() == [15, 15]


def test_the_reference_layer_is_small_and_timed_before_the_layer_is_built(monkeypatch):
    r = P.REFERENCE_LAYER
    weights = r.kernel**2 * r.in_channels * r.out_channels
    activations = r.in_channels * r.in_side**2 + r.out_channels * r.out_side**2
    assert 4 * (weights + activations) <= 128 * 1024  # fits in any L2: what ran before cannot evict much
    events = []
    real_make_session = P.make_session
    monkeypatch.setattr(P, "time_reference", lambda reference, threads=1: events.append("reference") or 2.0)
    monkeypatch.setattr(P, "make_session", lambda *a, **k: events.append("build") or real_make_session(*a, **k))
    w = P.measure_window(P.fc(64, 32), 1, reference=None, repeats=5)
    assert events == ["reference", "build"]
    assert w["reference_ms"] == 2.0 and w["repeats"] == 5 and w["p10_ms"] <= w["raw_ms"] <= w["p90_ms"]


def test_resume_skips_done_windows_and_recovers_a_truncated_line(tmp_path, monkeypatch):
    _tiny_run(tmp_path)
    runs_path, csv_path = tmp_path / "device.runs.csv", tmp_path / "device.csv"
    lines = runs_path.read_text().splitlines(keepends=True)
    profile = csv_path.read_text()
    calls = []

    def fake_window(config, threads, canaries, repeats=None, rng=None):
        calls.append(config)
        return {"raw_ms": 1.0, "p10_ms": 0.5, "p90_ms": 2.0, "repeats": 3, "reference_ms": 1.0}

    monkeypatch.setattr(P, "measure_window", fake_window)
    _tiny_run(tmp_path)  # everything already measured: nothing re-timed, nothing rewritten
    assert calls == [] and runs_path.read_text() == "".join(lines) and csv_path.read_text() == profile

    # a crash mid-write leaves half of the last line (no newline): only that window is measured again
    runs_path.write_text("".join(lines[:-1]) + lines[-1][:15])
    _tiny_run(tmp_path)
    assert len(calls) == 1
    runs = pd.read_csv(runs_path)
    assert len(runs) == 6 * P.PASSES and runs.iloc[-1]["raw_ms"] == 1.0
    assert runs_path.read_text().startswith("".join(lines[:-1]))
    assert len(pd.read_csv(csv_path)) == 6

    # a larger limit measures only the new configuration, once per pass; every run stays in the metadata
    P.run_profile(tmp_path, "device", threads=1, layer_types=["fc"], limit=3, repeats=3, progress=False)
    assert len(calls) == 1 + P.PASSES and calls[-1] == P.design("fc")[2]
    meta_runs = json.loads((tmp_path / "device.json").read_text())["runs"]
    assert [r["windows_measured"] for r in meta_runs] == [6 * P.PASSES, 1, P.PASSES]


def test_a_runs_csv_with_another_header_is_refused(tmp_path):
    (tmp_path / "device.runs.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ProfileError, match="header"):
        _tiny_run(tmp_path)


def test_bad_counts_are_refused(tmp_path):
    for kw in ({"passes": 0}, {"repeats": 0}, {"limit": 0}, {"threads": 0}):
        with pytest.raises(ProfileError, match=next(iter(kw))):
            P.run_profile(tmp_path, "device", layer_types=["relu"], progress=False, **kw)


class _CountingSession:
    def __init__(self):
        self.n = 0

    def run(self, *_):
        self.n += 1


def test_time_session_statistics_are_ordered():
    stats = P.time_session(_CountingSession(), {}, repeats=7)
    assert stats["repeats"] == 7
    assert stats["p10_ms"] <= stats["latency_ms"] <= stats["p90_ms"]
    assert np.isfinite(stats["latency_ms"])


def test_time_reference_warms_up_then_times_a_block():
    ref = _CountingSession()
    ms = P.time_reference((ref, {}))
    assert ref.n == P.REFERENCE_WARMUP_RUNS + P.REFERENCE_RUNS and 0 < ms < 1000
