"""Measure single-layer execution delays with onnxruntime: the data behind the delay models.

Each configuration is one layer type with one set of factors (the layer-table columns kernel, stride, pad,
groups, in_channels, out_channels, in_side, out_side), so a model fitted on a profile predicts a network table
directly. Every configuration becomes a one-node ONNX graph built with onnx.helper and runs in onnxruntime with
graph optimisations off, so the node measured is the node that runs.

Timing on a shared machine: every window alternates the layer with a reference layer of the same type
(CANARIES) and keeps the per-pair latency ratios, which cancel the drift that slows every layer at once; each
configuration gets one window per pass over the shuffled sweep (PASSES), so slower drift averages out too. The
profile's latency is the median over passes of ratio x the reference's median latency over the whole run.

A profile folder holds <role>.runs.csv (one row per configuration and pass, appended and flushed as measured),
<role>.csv (one row per configuration, rebuilt from the runs after every pass) and <role>.json (metadata,
including the reference latencies). Both are written atomically. An interrupted run resumes: windows already
in the runs CSV are skipped, and a half-written trailing line left by a crash is dropped first.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnnpart.errors import ProfileError
from dnnpart.io import atomic_write_text, write_csv

LAYER_TYPES = ("conv", "fc", "pool", "relu", "lrn", "softmax", "dropout")
ROLES = ("device", "server")
FACTORS = ("kernel", "stride", "pad", "groups", "in_channels", "out_channels", "in_side", "out_side")
MEASURES = ("latency_ms", "p10_ms", "p90_ms", "repeats")
CSV_COLUMNS = ("role", "layer_type", *FACTORS, *MEASURES)  # what a profile CSV must hold (delay.read_profile_csv)
PROFILE_COLUMNS = (*CSV_COLUMNS, "raw_ms")  # what the profiler writes: also the median before normalisation
# <role>.runs.csv: one row per configuration and pass, written as measured
RUN_COLUMNS = ("role", "layer_type", *FACTORS, "pass", "canary", "raw_ms", "canary_ms", "ratio", "ratio_p10",
               "ratio_p90", "repeats")

# Each configuration is timed in PASSES windows, one per pass over the whole (shuffled) sweep, so that slow
# machine drift averages out. A window alternates the layer with a reference layer: adaptive pairs, at least
# MIN_REPEATS, at most MAX_REPEATS, stop after TARGET_SECONDS.
PASSES, MIN_REPEATS, MAX_REPEATS, TARGET_SECONDS, WARMUP_RUNS = 3, 5, 25, 0.06, 2
# Largest sizes drawn at random. The zoo's biggest conv (VGG, 224x224, 64->64, 1.85 GMAC) is inside CONV_MAX_MACS;
# VGG's fc6 (25088x4096 = 103 M weights, 411 MB) appears only in the fixed sweep, random fc stay below FC_MAX_WEIGHTS.
CONV_MAX_MACS = 2.0e9
FC_MAX_WEIGHTS = 4.0e7
ELEMENTWISE_MAX = 224 * 224 * 64  # VGG's largest activation
OPSET = 17


@dataclass(frozen=True)
class Config:
    """One layer configuration: the layer type and the eight table factors."""

    layer_type: str
    kernel: int
    stride: int
    pad: int
    groups: int
    in_channels: int
    out_channels: int
    in_side: int
    out_side: int

    def key(self, role: str) -> tuple:
        return (role, self.layer_type, *(int(getattr(self, f)) for f in FACTORS))


def _out_side(in_side: int, kernel: int, stride: int, pad: int) -> int:
    return (in_side + 2 * pad - kernel) // stride + 1


def conv(k, s, p, g, cin, cout, side) -> Config:
    return Config("conv", k, s, p, g, cin, cout, side, _out_side(side, k, s, p))


def fc(nin, nout) -> Config:
    return Config("fc", 1, 1, 0, 1, nin, nout, 1, 1)


def pool(k, s, p, c, side) -> Config:
    return Config("pool", k, s, p, 1, c, c, side, _out_side(side, k, s, p))


def elementwise(layer_type, c, side, kernel=1) -> Config:
    return Config(layer_type, kernel, 1, 0, 1, c, c, side, side)


# Reference layers ("canaries"), a ladder per type from call-overhead-bound to compute- or memory-bound. On a
# shared VM every layer slows down together by 10-20 % for seconds at a time (host contention, measured with
# scratch drift runs: correlation 0.7-0.8 between layers); timing each layer against a reference run right
# next to it cancels most of that.
CANARIES = {
    "conv": (conv(1, 1, 0, 1, 16, 16, 14), conv(3, 1, 1, 1, 32, 32, 14), conv(3, 1, 1, 1, 64, 64, 28),
             conv(3, 1, 1, 1, 128, 128, 28)),
    "fc": (fc(256, 64), fc(1024, 256), fc(2048, 1024), fc(4096, 4096)),
    "pool": (pool(2, 2, 0, 16, 14), pool(3, 2, 0, 64, 28), pool(3, 2, 0, 64, 112)),
    "relu": (elementwise("relu", 64, 1), elementwise("relu", 64, 28), elementwise("relu", 64, 112)),
    "dropout": (elementwise("dropout", 64, 1), elementwise("dropout", 64, 28), elementwise("dropout", 64, 112)),
    "lrn": (elementwise("lrn", 32, 13, kernel=5), elementwise("lrn", 96, 27, kernel=5),
            elementwise("lrn", 96, 55, kernel=5)),
    "softmax": (elementwise("softmax", 10, 1), elementwise("softmax", 1000, 1), elementwise("softmax", 10000, 1)),
}


# ----------------------------------------------------------------------------------------------- designed sweep
def _log_uniform_int(rng, lo, hi) -> int:
    return int(round(float(np.exp(rng.uniform(np.log(lo), np.log(hi))))))


def _conv_sweep() -> list[Config]:
    """Variable-controlling sweeps (paper II-B): vary one factor, hold the others at a base configuration."""
    out = []
    for base_cin, base_cout, base_side in ((64, 64, 56), (128, 256, 28), (16, 32, 112)):
        base = dict(k=3, s=1, p=1, g=1, cin=base_cin, cout=base_cout, side=base_side)
        for k in (1, 3, 5, 7, 9, 11):
            out.append(conv(**{**base, "k": k, "p": k // 2}))
        for c in (1, 3, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512):
            out.append(conv(**{**base, "cin": c}))
            out.append(conv(**{**base, "cout": c}))
        for side in (5, 7, 10, 14, 20, 28, 40, 56, 80, 112, 160, 224):
            out.append(conv(**{**base, "side": side}))
        for s in (1, 2, 3, 4):
            out.append(conv(**{**base, "s": s}))
        for p in (0, 1, 2):
            out.append(conv(**{**base, "p": p}))
        out.append(conv(**{**base, "g": 2}))
    return [c for c in out if _conv_macs(c) <= CONV_MAX_MACS]


def _conv_macs(c: Config) -> float:
    return c.out_side ** 2 * c.kernel ** 2 * c.out_channels * c.in_channels / c.groups


def _channels(rng, lo, hi) -> int:
    """Channel counts as real networks use them: mostly multiples of 8, some arbitrary."""
    c = _log_uniform_int(rng, lo, hi)
    return max(8, 8 * round(c / 8)) if rng.random() < 0.8 else c


def _conv_random(rng, n) -> list[Config]:
    """Random convs shaped like real ones (zoo and common imports): kernels no wider than the map, big kernels
    only on big maps (strides up to 4 for kernels >= 5, up to 2 otherwise), input channels 1 or 3 for stems,
    otherwise mostly multiples of 8."""
    out = []
    while len(out) < n:
        k = int(rng.choice([1, 1, 3, 3, 3, 3, 5, 5, 7, 11]))
        side = _log_uniform_int(rng, 4, 227)
        if k > side or (k >= 5 and side < 2 * k):
            continue
        s = int(rng.choice([1, 2, 4])) if k >= 5 else int(rng.choice([1, 1, 1, 2]))
        p = 0 if k == 1 else int(rng.choice([0, k // 2]))
        g = int(rng.choice([1, 1, 1, 1, 1, 2]))
        cin = int(rng.choice([1, 3])) if (g == 1 and rng.random() < 0.12) else _channels(rng, 8, 512)
        cout = _channels(rng, 8, 512)
        if g > 1:
            cin, cout = max(g, cin - cin % g), max(g, cout - cout % g)
        c = conv(k, s, p, g, cin, cout, side)
        if c.out_side < 1 or _conv_macs(c) > CONV_MAX_MACS:
            continue
        out.append(c)
    return out


def _fc_sweep() -> list[Config]:
    out = [fc(n, 1000) for n in (16, 64, 256, 512, 1024, 2048, 4096, 8192, 9216, 16384)]
    out += [fc(4096, n) for n in (10, 64, 256, 500, 1000, 2048, 4096, 8192)]
    out += [fc(800, 500), fc(500, 10), fc(9216, 4096), fc(4096, 4096), fc(4096, 1000), fc(25088, 4096)]
    return out


def _fc_large() -> list[Config]:
    """Large fc layers (VGG's fc6 corner: many inputs AND many outputs), which the capped random draw misses.

    Appended after the random ones so that adding them left every earlier configuration (and resumed
    profiles) unchanged.
    """
    return [fc(n_in, n_out) for n_in in (10240, 12544, 14336, 16384, 18432, 20480, 22528, 25088)
            for n_out in (2048, 2560, 3072, 3584, 4096)
            if n_in * n_out > FC_MAX_WEIGHTS]


def _fc_random(rng, n) -> list[Config]:
    out = []
    while len(out) < n:
        c = fc(_log_uniform_int(rng, 8, 25088), _log_uniform_int(rng, 8, 4096))
        if c.in_channels * c.out_channels <= FC_MAX_WEIGHTS:
            out.append(c)
    return out


def _pool_designs(rng, n) -> list[Config]:
    out = [pool(k, s, 0, c, side) for k, s in ((2, 2), (3, 2)) for c in (6, 16, 64, 96, 256, 512)
           for side in (14, 28, 55, 112, 224) if c * side * side <= ELEMENTWISE_MAX]
    while len(out) < n:
        k = int(rng.choice([2, 3, 3, 5]))
        s = int(rng.choice([1, 2, 2, 2, 3]))
        c, side = _log_uniform_int(rng, 1, 512), _log_uniform_int(rng, 4, 224)
        if side >= k and c * side * side <= ELEMENTWISE_MAX:
            out.append(pool(k, s, 0, c, side))
    return out


def _elementwise_designs(layer_type, rng, n) -> list[Config]:
    """relu / dropout on both conv maps (C x L x L) and fc vectors (C features, side 1)."""
    out = [elementwise(layer_type, c, side) for c in (16, 64, 256, 512) for side in (7, 14, 28, 56, 112, 224)
           if c * side * side <= ELEMENTWISE_MAX]
    out += [elementwise(layer_type, c, 1) for c in (10, 84, 500, 1000, 4096, 9216, 25088)]
    while len(out) < n:
        if rng.random() < 0.25:
            out.append(elementwise(layer_type, _log_uniform_int(rng, 8, 25088), 1))
            continue
        c, side = _log_uniform_int(rng, 1, 512), _log_uniform_int(rng, 2, 224)
        if c * side * side <= ELEMENTWISE_MAX:
            out.append(elementwise(layer_type, c, side))
    return out


def _lrn_designs(rng, n) -> list[Config]:
    out = [elementwise("lrn", c, side, kernel=k) for k in (3, 5) for c in (32, 96, 256) for side in (13, 27, 55)]
    while len(out) < n:
        c, side = _log_uniform_int(rng, 4, 512), _log_uniform_int(rng, 4, 112)
        if c * side * side <= ELEMENTWISE_MAX:
            out.append(elementwise("lrn", c, side, kernel=int(rng.choice([3, 5, 5, 7]))))
    return out


def _softmax_designs(rng, n) -> list[Config]:
    out = [elementwise("softmax", c, 1) for c in (2, 10, 100, 1000, 4096, 10000)]
    while len(out) < n:
        out.append(elementwise("softmax", _log_uniform_int(rng, 2, 50000), 1))
    return out


# Configurations per layer type: >= 1,000 for conv and fc (the paper's "over 1000"), fewer for cheap types.
DESIGN_SIZES = {"conv": 1100, "fc": 1050, "pool": 200, "relu": 200, "lrn": 120, "softmax": 80, "dropout": 120}


def design(layer_type: str, seed: int = 0) -> list[Config]:
    """The designed sweep for one layer type: fixed variable-controlling points first, then seeded random ones.

    Duplicates are removed keeping the first occurrence, so the list (and its order) depends only on the seed.
    """
    if layer_type not in LAYER_TYPES:
        raise ProfileError(f"unknown layer type {layer_type!r}; valid types: {', '.join(LAYER_TYPES)}")
    # One generator per type, so adding configurations to one type does not change the others.
    rng = np.random.default_rng([seed, LAYER_TYPES.index(layer_type)])
    n = DESIGN_SIZES[layer_type]
    if layer_type == "conv":
        fixed = _conv_sweep()
        configs = fixed + _conv_random(rng, n - len(fixed))
    elif layer_type == "fc":
        fixed = _fc_sweep()
        configs = fixed + _fc_random(rng, n - len(fixed)) + _fc_large()
    elif layer_type == "pool":
        configs = _pool_designs(rng, n)
    elif layer_type == "lrn":
        configs = _lrn_designs(rng, n)
    elif layer_type == "softmax":
        configs = _softmax_designs(rng, n)
    else:
        configs = _elementwise_designs(layer_type, rng, n)
    seen, unique = set(), []
    for c in configs:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


# ------------------------------------------------------------------------------------------- one-node graphs
def _weights(rng, shape) -> np.ndarray:
    return (rng.standard_normal(size=shape, dtype=np.float32) * 0.01).astype(np.float32)


def build_layer_model(config: Config, rng=None):
    """A one-node ONNX model for a configuration. Returns (model, input feed dict)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = rng if rng is not None else np.random.default_rng(0)
    c = config
    inits = []
    if c.in_side == 1 and c.layer_type in ("fc", "softmax", "relu", "dropout"):
        x_shape = [1, c.in_channels]
    else:
        x_shape = [1, c.in_channels, c.in_side, c.in_side]
    if c.layer_type == "conv":
        inits = [numpy_helper.from_array(_weights(rng, (c.out_channels, c.in_channels // c.groups, c.kernel, c.kernel)), "W"),
                 numpy_helper.from_array(_weights(rng, (c.out_channels,)), "B")]
        node = helper.make_node("Conv", ["x", "W", "B"], ["y"], kernel_shape=[c.kernel] * 2, strides=[c.stride] * 2,
                                pads=[c.pad] * 4, group=c.groups)
    elif c.layer_type == "fc":
        inits = [numpy_helper.from_array(_weights(rng, (c.out_channels, c.in_channels)), "W"),
                 numpy_helper.from_array(_weights(rng, (c.out_channels,)), "B")]
        node = helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)
    elif c.layer_type == "pool":
        node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[c.kernel] * 2, strides=[c.stride] * 2,
                                pads=[c.pad] * 4)
    elif c.layer_type == "relu":
        node = helper.make_node("Relu", ["x"], ["y"])
    elif c.layer_type == "lrn":
        node = helper.make_node("LRN", ["x"], ["y"], size=c.kernel, alpha=1e-4, beta=0.75, bias=1.0)
    elif c.layer_type == "softmax":
        node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    elif c.layer_type == "dropout":
        node = helper.make_node("Dropout", ["x"], ["y"])
    else:
        raise ProfileError(f"unknown layer type {c.layer_type!r}; valid types: {', '.join(LAYER_TYPES)}")
    graph = helper.make_graph([node], f"{c.layer_type}_layer",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    feed = {"x": rng.standard_normal(size=x_shape, dtype=np.float32)}
    return model, feed


def session_options(threads: int):
    """onnxruntime options shared by layer and whole-network timing: no graph rewrites, `threads` intra-op."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    # Idle pool threads sleep instead of spinning. On this 2-vCPU VM a spinning worker made 2-thread runs no
    # faster than 1-thread ones and twice as noisy (scratch test: conv 64x64@28, 0.69 ms with spinning,
    # 0.41 ms without; 1-thread sessions have no pool and are unaffected).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


SCHEDSTAT = Path("/proc/thread-self/schedstat")


def _runqueue_wait_ns() -> int:
    """Nanoseconds the calling thread has spent runnable but waiting for a CPU (Linux schedstat), else 0."""
    try:
        return int(SCHEDSTAT.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def timing_clock(threads: int) -> str:
    """How runs are timed: 1-thread sessions subtract the calling thread's run-queue wait where Linux reports
    it; multi-threaded sessions use plain wall time."""
    if threads == 1 and (_runqueue_wait_ns() > 0 or SCHEDSTAT.exists()):
        return "wall-minus-runqueue-wait"
    return "wall"


def _timed_run_ms(session, feed, threads: int) -> float:
    """One run's latency in ms.

    A 1-thread session runs on the calling thread, so the time that thread sat in the run queue while other
    processes had the CPU is not the layer's and is subtracted. With more threads the pool keeps working while
    the caller waits (subtracting produced reference runs 10x too fast on the server role), so wall time it is.
    """
    w0 = _runqueue_wait_ns() if threads == 1 else 0
    t0 = time.perf_counter()
    session.run(None, feed)
    t1 = time.perf_counter()
    waited_ms = (_runqueue_wait_ns() - w0) / 1e6 if threads == 1 else 0.0
    return max((t1 - t0) * 1e3 - waited_ms, 1e-6)


def _enough(n: int, start: float, repeats: int | None) -> bool:
    if repeats is not None:
        return n >= repeats
    return n >= MAX_REPEATS or (n >= MIN_REPEATS and time.perf_counter() - start >= TARGET_SECONDS)


def time_session(session, feed, repeats: int | None = None, threads: int = 1) -> dict:
    """Warm up, then time runs; `repeats` None means adaptive (MIN..MAX_REPEATS, stop after TARGET_SECONDS)."""
    for _ in range(WARMUP_RUNS):
        session.run(None, feed)
    times, start = [], time.perf_counter()
    while not _enough(len(times), start, repeats):
        times.append(_timed_run_ms(session, feed, threads))
    arr = np.asarray(times)
    return {"latency_ms": float(np.median(arr)), "p10_ms": float(np.percentile(arr, 10)),
            "p90_ms": float(np.percentile(arr, 90)), "repeats": len(arr)}


def time_against_reference(session, feed, ref_session, ref_feed, repeats: int | None = None,
                           threads: int = 1) -> dict:
    """Alternate runs of a layer and of a reference layer; the per-pair latency ratios cancel machine drift.

    Returns the layer's raw median (raw_ms), the reference's median (canary_ms), the median, p10 and p90 of the
    per-pair ratios and the number of pairs.
    """
    for _ in range(WARMUP_RUNS):
        session.run(None, feed)
        ref_session.run(None, ref_feed)
    raw, ref, start = [], [], time.perf_counter()
    while not _enough(len(raw), start, repeats):
        raw.append(_timed_run_ms(session, feed, threads))
        ref.append(_timed_run_ms(ref_session, ref_feed, threads))
    raw, ref = np.asarray(raw), np.asarray(ref)
    ratio = raw / ref
    return {"raw_ms": float(np.median(raw)), "canary_ms": float(np.median(ref)), "ratio": float(np.median(ratio)),
            "ratio_p10": float(np.percentile(ratio, 10)), "ratio_p90": float(np.percentile(ratio, 90)),
            "repeats": len(raw)}


def make_session(config: Config, threads: int, rng=None):
    import onnxruntime as ort

    model, feed = build_layer_model(config, rng)
    session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    return session, feed


def work_size(config: Config) -> float:
    """A static size of a layer's work: multiply-adds for conv and fc, touched elements for the others."""
    if config.layer_type == "conv":
        return _conv_macs(config)
    if config.layer_type == "fc":
        return float(config.in_channels * config.out_channels)
    return float(config.in_channels * config.in_side ** 2 * config.kernel ** 2)


def canary_index(config: Config) -> int:
    """The reference layer a configuration is timed against: the one of its type closest in work size (log).

    The choice is static, so a configuration meets the same reference in every pass and every run; a choice
    by measured latency flips near the boundaries and made passes disagree (scratch runs, fc: 81 % same).
    """
    sizes = np.array([work_size(c) for c in CANARIES[config.layer_type]])
    return int(np.argmin(np.abs(np.log(sizes) - np.log(max(work_size(config), 1.0)))))


class Canaries:
    """The reference layers of one profiling run: one-node sessions, built on first use."""

    def __init__(self, threads: int):
        self.threads = threads
        self._sessions: dict[tuple[str, int], tuple] = {}

    def session(self, layer_type: str, index: int) -> tuple:
        if (layer_type, index) not in self._sessions:
            config = CANARIES[layer_type][index]
            self._sessions[layer_type, index] = make_session(config, self.threads, np.random.default_rng(index))
        return self._sessions[layer_type, index]


def measure_window(config: Config, threads: int, canaries: Canaries, repeats: int | None = None, rng=None) -> dict:
    """One timing window of a configuration against its reference layer (see time_against_reference)."""
    session, feed = make_session(config, threads, rng)
    index = canary_index(config)
    ref_session, ref_feed = canaries.session(config.layer_type, index)
    return {"canary": index, **time_against_reference(session, feed, ref_session, ref_feed, repeats, threads)}


def retest(profile_dir: str | Path, role: str, layer_type: str = "conv", n: int = 100, threads: int | None = None,
           seed: int = 0):
    """Test-retest: re-measure `n` random rows of a profile and compare with the stored latencies.

    Each re-measurement is one window against the same reference layers, scaled by the references' latencies
    stored in the profile's metadata, as the profile itself was. Returns a DataFrame (the factors, stored_ms,
    retest_ms, rel_diff). The share of |rel_diff| <= 10 % is the ceiling any delay model can reach on that
    profile's within-10 % metric: the data disagree with themselves that much.
    """
    import pandas as pd

    profile_dir = Path(profile_dir)
    df = pd.read_csv(profile_dir / f"{role}.csv")
    df = df[df["layer_type"] == layer_type]
    if df.empty:
        raise ProfileError(f"{profile_dir / f'{role}.csv'}: no {layer_type!r} rows to re-test")
    refs = json.loads((profile_dir / f"{role}.json").read_text())["canary_ref_ms"][layer_type]
    threads = default_threads(role) if threads is None else threads
    sample = df.sample(min(n, len(df)), random_state=seed).sort_index()
    rng, canaries = np.random.default_rng(seed), Canaries(threads)
    retest_ms = []
    for _, r in sample.iterrows():
        w = measure_window(Config(layer_type, *(int(r[f]) for f in FACTORS)), threads, canaries, rng=rng)
        retest_ms.append(w["ratio"] * refs[w["canary"]])
    out = sample[["role", "layer_type", *FACTORS]].copy()
    out["stored_ms"] = sample["latency_ms"].to_numpy()
    out["retest_ms"] = retest_ms
    out["rel_diff"] = out["retest_ms"] / out["stored_ms"] - 1.0
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------- CSV I/O
def _run_key(row) -> tuple:
    """(role, layer_type, factors..., pass) of a runs-CSV row (strings)."""
    return (row[0], row[1], *(int(v) for v in row[2:2 + len(FACTORS)]), int(row[2 + len(FACTORS)]))


def _recover_runs(path: Path) -> set[tuple]:
    """Check the header, drop a half-written trailing line, return the (config, pass) keys already measured."""
    text = path.read_text()
    if not text:
        return set()
    header, _, body = text.partition("\n")
    if header.split(",") != list(RUN_COLUMNS):
        raise ProfileError(f"{path}: header {header!r} is not the runs header {','.join(RUN_COLUMNS)}")
    lines = body.split("\n")
    # A complete file ends with "\n" so the last element is "". Anything else is a line cut off mid-write.
    good = [ln for ln in lines[:-1] if len(ln.split(",")) == len(RUN_COLUMNS)]
    if lines[-1] != "" or len(good) != len(lines) - 1:
        atomic_write_text(path, header + "\n" + "".join(ln + "\n" for ln in good))
    return {_run_key(row) for row in csv.reader(io.StringIO("\n".join(good)))}


def _format_run(role: str, config: Config, pass_: int, w: dict) -> str:
    values = [role, config.layer_type, *(str(int(getattr(config, f))) for f in FACTORS), str(pass_),
              str(w["canary"]), f"{w['raw_ms']:.6f}", f"{w['canary_ms']:.6f}", f"{w['ratio']:.8g}",
              f"{w['ratio_p10']:.8g}", f"{w['ratio_p90']:.8g}", str(w["repeats"])]
    return ",".join(values) + "\n"


def canary_refs(runs) -> dict[str, list[float]]:
    """Per layer type, each reference layer's latency (ms): the median of its windows over the whole run
    (None for a reference no configuration was paired with)."""
    med = runs.groupby(["layer_type", "canary"])["canary_ms"].median()
    return {t: [round(float(med[(t, i)]), 6) if (t, i) in med.index else None for i in range(len(CANARIES[t]))]
            for t in LAYER_TYPES if t in set(runs["layer_type"])}


def aggregate_runs(runs, order: list[tuple] | None = None, refs: dict | None = None):
    """The profile table from the windows: latency = median over passes of (ratio x reference latency).

    p10_ms / p90_ms are the medians over passes of the within-window ratio percentiles, scaled the same way;
    repeats counts every timed pair; raw_ms is the median over passes of the unnormalised window medians.
    Rows follow `order` (config keys without the pass) when given, else first appearance in `runs`.
    `refs` are canary_refs(runs), computed here when not given.
    """
    refs = canary_refs(runs) if refs is None else refs
    scale = np.array([refs[t][c] for t, c in zip(runs["layer_type"], runs["canary"])])
    w = runs.assign(lat=runs["ratio"] * scale, p10=runs["ratio_p10"] * scale, p90=runs["ratio_p90"] * scale)
    keys = ["role", "layer_type", *FACTORS]
    out = w.groupby(keys, sort=False).agg(latency_ms=("lat", "median"), p10_ms=("p10", "median"),
                                          p90_ms=("p90", "median"), repeats=("repeats", "sum"),
                                          raw_ms=("raw_ms", "median")).reset_index()
    if order is not None:
        rank = {k: i for i, k in enumerate(order)}
        pos = [rank.get((r, t, *f), len(rank)) for r, t, *f in out[keys].itertuples(index=False)]
        out = out.iloc[np.argsort(pos, kind="stable")].reset_index(drop=True)
    for col in ("latency_ms", "p10_ms", "p90_ms", "raw_ms"):
        out[col] = out[col].round(6)
    return out[list(PROFILE_COLUMNS)]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _write_metadata(out: Path, role: str, threads: int, seed: int, passes: int, started: str, profile,
                    refs: dict, command: str | None, measured: int = 0) -> dict:
    import onnx
    import onnxruntime as ort

    counts = profile["layer_type"].value_counts().reindex(LAYER_TYPES).dropna().astype(int).to_dict()
    meta = {
        "role": role,
        "threads": threads,
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "graph_optimization_level": "ORT_DISABLE_ALL",
        "clock": timing_clock(threads),
        "inter_op_num_threads": 1,
        "intra_op_allow_spinning": 0,
        "seed": seed,
        "passes": passes,
        "warmup_runs": WARMUP_RUNS,
        "repeats_rule": f"per pass, adaptive pairs (layer, reference layer): at least {MIN_REPEATS}, at most "
                        f"{MAX_REPEATS}, stop after {TARGET_SECONDS} s",
        "latency_rule": "median over passes of (median per-pair ratio layer/reference x the reference's median "
                        "latency over the whole run); raw_ms is the unnormalised median",
        "canaries": {t: [dict(zip(FACTORS, c.key(role)[2:])) for c in CANARIES[t]] for t in refs},
        "canary_ref_ms": refs,
        "started_utc": started,
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()),
        "configs_per_type": counts,
        "command": command,
        "note": "",
    }
    meta_path = out / f"{role}.json"
    old = {}
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            pass
    meta["note"] = old.get("note", "")  # keep the note (e.g. "shared VM") across resumed runs
    # one entry per run that wrote into this profile, so a resumed profile keeps the provenance of every run
    runs = [r for r in old.get("runs", []) if r.get("started_utc") != started]
    runs.append({"started_utc": started, "ended_utc": meta["date_utc"], "command": command, "threads": threads,
                 "load_average_end": meta["load_average"], "windows_measured": measured})
    meta["runs"] = runs
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return meta


def default_threads(role: str) -> int:
    return 1 if role == "device" else (os.cpu_count() or 1)


def _check_positive(name: str, value) -> None:
    if value is not None and value < 1:
        raise ProfileError(f"{name} must be >= 1, got {value}")


def run_profile(out: str | Path, role: str, threads: int | None = None, layer_types=None, limit: int | None = None,
                repeats: int | None = None, seed: int = 0, passes: int = PASSES, progress: bool = True,
                command: str | None = None, note: str | None = None) -> Path:
    """Measure every (configuration, pass) window not yet in <out>/<role>.runs.csv; return <out>/<role>.csv.

    Each pass visits the whole sweep (all requested types) in its own seeded shuffled order. Windows are
    appended to the runs CSV as measured; the profile CSV and metadata are rebuilt from it (atomically) after
    every pass, so an interrupted run leaves both files whole and a rerun resumes where it stopped.
    """
    import pandas as pd

    if role not in ROLES:
        raise ProfileError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    threads = default_threads(role) if threads is None else int(threads)
    for name, value in (("threads", threads), ("repeats", repeats), ("limit", limit), ("passes", passes)):
        _check_positive(name, value)
    types = list(LAYER_TYPES) if layer_types is None else list(layer_types)
    for t in types:
        if t not in LAYER_TYPES:
            raise ProfileError(f"unknown layer type {t!r}; valid types: {', '.join(LAYER_TYPES)}")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs_path, csv_path = out / f"{role}.runs.csv", out / f"{role}.csv"
    done = _recover_runs(runs_path) if runs_path.exists() else set()
    if not runs_path.exists() or runs_path.stat().st_size == 0:
        atomic_write_text(runs_path, ",".join(RUN_COLUMNS) + "\n")
    if note is not None:
        meta_path = out / f"{role}.json"
        old = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        atomic_write_text(meta_path, json.dumps({**old, "note": note}, indent=2) + "\n")

    configs = []
    for t in types:
        configs += design(t, seed)[:limit]
    order = [c.key(role) for c in configs]
    todo = []
    for p in range(passes):
        shuffled = [configs[i] for i in np.random.default_rng([seed, p]).permutation(len(configs))]
        todo.append([c for c in shuffled if (*c.key(role), p) not in done])

    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")  # also identifies the run
    rng, canaries = np.random.default_rng(seed), Canaries(threads)
    from tqdm.auto import tqdm

    def publish(measured: int) -> None:
        runs = pd.read_csv(runs_path)
        runs = runs[runs["role"] == role]
        refs = canary_refs(runs)
        profile = aggregate_runs(runs, order, refs)
        write_csv(profile, csv_path)
        _write_metadata(out, role, threads, seed, passes, started, profile, refs, command, measured)

    measured = 0
    with open(runs_path, "a", newline="") as fh, tqdm(total=sum(map(len, todo)), desc=f"profile {role}",
                                                      unit="window", disable=not progress, file=sys.stderr) as bar:
        for p, pass_todo in enumerate(todo):
            bar.set_postfix_str(f"pass {p + 1}/{passes}")
            for c in pass_todo:
                fh.write(_format_run(role, c, p, measure_window(c, threads, canaries, repeats, rng)))
                fh.flush()
                measured += 1
                bar.update(1)
            if pass_todo or not csv_path.exists():
                publish(measured)
    return csv_path


def cli_profile(args) -> int:
    """`dnnpart profile`: measure a role's designed sweep into --out (resumable)."""
    types = None if args.layer_types is None else [t.strip() for t in args.layer_types.split(",") if t.strip()]
    command = "dnnpart " + " ".join(sys.argv[1:])
    path = run_profile(args.out, args.role, threads=args.threads, layer_types=types, limit=args.limit,
                       repeats=args.repeats, seed=args.seed,
                       passes=PASSES if args.passes is None else args.passes, command=command, note=args.note)
    print(path)
    return 0
