"""The layer profiler: designed sweep, one-node graphs, a tiny real run, resume and crash recovery."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dnnpart import profiling as P
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


def test_design_variable_controlling_sweep_varies_one_factor():
    """The first conv configurations hold everything but the kernel fixed (the paper's variable control)."""
    first = P.design("conv")[:6]
    assert [c.kernel for c in first] == [1, 3, 5, 7, 9, 11]
    assert {(c.in_channels, c.out_channels, c.in_side, c.stride) for c in first} == {(64, 64, 56, 1)}


def test_unknown_layer_type_and_role_are_refused(tmp_path):
    with pytest.raises(ProfileError, match="valid types: conv"):
        P.design("batchnorm")
    with pytest.raises(ProfileError, match="valid roles: device, server"):
        P.run_profile(tmp_path, "phone")
    with pytest.raises(ProfileError, match="'gelu'"):
        P.run_profile(tmp_path, "device", layer_types=["conv", "gelu"])


@pytest.mark.parametrize("config", [
    P.conv(11, 4, 0, 1, 3, 96, 227), P.conv(5, 1, 2, 2, 96, 256, 27), P.fc(800, 500),
    P.pool(3, 2, 0, 96, 55), P.elementwise("relu", 4096, 1), P.elementwise("lrn", 96, 55, kernel=5),
    P.elementwise("softmax", 1000, 1), P.elementwise("dropout", 64, 28),
])
def test_one_node_graph_output_matches_the_factors(config):
    import onnxruntime as ort

    model, feed = P.build_layer_model(config)
    assert len(model.graph.node) == 1
    sess = ort.InferenceSession(model.SerializeToString(), P.session_options(1), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, feed)
    expected = [1, config.out_channels] + ([config.out_side] * 2 if y.ndim == 4 else [])
    assert list(y.shape) == expected


def _tiny_run(out, **kw):
    return P.run_profile(out, "device", threads=1, layer_types=["conv", "fc", "relu"], limit=2, repeats=3,
                         progress=False, **kw)


def test_tiny_real_run_writes_valid_rows_and_metadata(tmp_path):
    csv_path = _tiny_run(tmp_path)
    df = pd.read_csv(csv_path)
    assert list(df.columns) == list(P.CSV_COLUMNS)
    assert len(df) == 6 and set(df["layer_type"]) == {"conv", "fc", "relu"}
    assert (df["role"] == "device").all() and (df["repeats"] >= 3).all()
    assert (df["latency_ms"] > 0).all()
    assert (df["p10_ms"] <= df["latency_ms"]).all() and (df["latency_ms"] <= df["p90_ms"]).all()
    meta = json.loads((tmp_path / "device.json").read_text())
    assert meta["threads"] == 1 and meta["configs_per_type"] == {"conv": 2, "fc": 2, "relu": 2}
    for key in ("cpu_model", "cores", "onnxruntime", "date_utc", "clock"):
        assert meta[key]
    assert [r["configs_measured"] for r in meta["runs"]] == [6]


def test_resume_skips_done_rows_and_recovers_a_truncated_line(tmp_path, monkeypatch):
    csv_path = _tiny_run(tmp_path)
    lines = csv_path.read_text().splitlines(keepends=True)
    calls = []

    def fake_measure(config, threads, repeats=None, rng=None):
        calls.append(config)
        return {"latency_ms": 1.0, "p10_ms": 0.5, "p90_ms": 2.0, "repeats": 3}

    monkeypatch.setattr(P, "measure", fake_measure)
    _tiny_run(tmp_path)  # everything already measured
    assert calls == [] and csv_path.read_text() == "".join(lines)

    # a crash mid-write leaves half of the last line (no newline)
    csv_path.write_text("".join(lines[:-1]) + lines[-1][:15])
    _tiny_run(tmp_path)
    df = pd.read_csv(csv_path)
    assert len(calls) == 1 and calls[0].layer_type == "relu"
    assert len(df) == 6 and df.iloc[-1]["latency_ms"] == 1.0
    assert csv_path.read_text().startswith("".join(lines[:-1]))

    # a larger limit measures only the new configurations; every run stays in the metadata's history
    P.run_profile(tmp_path, "device", threads=1, layer_types=["fc"], limit=3, repeats=3, progress=False)
    assert len(calls) == 2 and calls[1] == P.design("fc")[2]
    runs = json.loads((tmp_path / "device.json").read_text())["runs"]
    assert sum(r["configs_measured"] for r in runs) == 8


def test_a_csv_with_another_header_is_refused(tmp_path):
    (tmp_path / "device.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ProfileError, match="header"):
        _tiny_run(tmp_path)


def test_time_session_statistics_are_ordered():
    class Fake:
        def __init__(self):
            self.n = 0

        def run(self, *_):
            self.n += 1

    stats = P.time_session(Fake(), {}, repeats=7)
    assert stats["repeats"] == 7
    assert stats["p10_ms"] <= stats["latency_ms"] <= stats["p90_ms"]
    assert np.isfinite(stats["latency_ms"])
