"""Measure single-layer execution delays with onnxruntime: the data behind the delay models.

Each configuration is one layer type with one set of factors (the layer-table columns kernel, stride, pad,
groups, in_channels, out_channels, in_side, out_side), so a model fitted on a profile predicts a network table
directly. Every configuration becomes a one-node ONNX graph built with onnx.helper and runs in onnxruntime with
graph optimisations off, so the node measured is the node that runs.

A profile folder holds <role>.csv (one row per configuration, appended and flushed as measured) and
<role>.json (metadata, written atomically). An interrupted run resumes: configurations already in the CSV are
skipped, and a half-written trailing line left by a crash is dropped first.
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
from dnnpart.io import atomic_write_text

LAYER_TYPES = ("conv", "fc", "pool", "relu", "lrn", "softmax", "dropout")
ROLES = ("device", "server")
FACTORS = ("kernel", "stride", "pad", "groups", "in_channels", "out_channels", "in_side", "out_side")
MEASURES = ("latency_ms", "p10_ms", "p90_ms", "repeats")
CSV_COLUMNS = ("role", "layer_type", *FACTORS, *MEASURES)

# Adaptive repeats: time until TARGET_SECONDS have been spent or MAX_REPEATS runs, never fewer than MIN_REPEATS.
MIN_REPEATS, MAX_REPEATS, TARGET_SECONDS, WARMUP_RUNS = 5, 15, 0.2, 2
# A timing window whose p90 exceeds UNSTABLE_SPREAD x p10 was disturbed (shared CPU) and is re-timed.
UNSTABLE_SPREAD, UNSTABLE_RETRIES = 1.25, 2
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
    return so


SCHEDSTAT = Path("/proc/thread-self/schedstat")


def _runqueue_wait_ns() -> int:
    """Nanoseconds the calling thread has spent runnable but waiting for a CPU (Linux schedstat), else 0."""
    try:
        return int(SCHEDSTAT.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def timing_clock() -> str:
    """How `time_session` measures: wall time minus the calling thread's run-queue wait where Linux reports it."""
    return "wall-minus-runqueue-wait" if _runqueue_wait_ns() > 0 or SCHEDSTAT.exists() else "wall"


def time_session(session, feed, repeats: int | None = None) -> dict:
    """Warm up, then time runs; `repeats` None means adaptive (MIN..MAX_REPEATS, stop after TARGET_SECONDS).

    Each run's latency is its wall time minus the time the calling thread sat in the run queue while other
    processes had the CPU (/proc/thread-self/schedstat). On a shared machine this removes most of the
    contention from single-threaded timings (onnxruntime runs a 1-thread session on the calling thread);
    with more threads, waits of the worker threads are still included.
    """
    for _ in range(WARMUP_RUNS):
        session.run(None, feed)
    times, start = [], time.perf_counter()
    while True:
        w0 = _runqueue_wait_ns()
        t0 = time.perf_counter()
        session.run(None, feed)
        t1 = time.perf_counter()
        waited_ms = (_runqueue_wait_ns() - w0) / 1e6
        times.append(max((t1 - t0) * 1e3 - waited_ms, 1e-6))
        n = len(times)
        if repeats is not None:
            if n >= repeats:
                break
        elif n >= MAX_REPEATS or (n >= MIN_REPEATS and time.perf_counter() - start >= TARGET_SECONDS):
            break
    arr = np.asarray(times)
    return {"latency_ms": float(np.median(arr)), "p10_ms": float(np.percentile(arr, 10)),
            "p90_ms": float(np.percentile(arr, 90)), "repeats": n}


def measure(config: Config, threads: int, repeats: int | None = None, rng=None) -> dict:
    """Median, p10, p90 latency (ms) and repeat count of one configuration.

    On a shared machine another process can steal the CPU during the timing window, which shows as a wide
    p10..p90 spread: such a window is re-timed (up to UNSTABLE_RETRIES times) and the attempt with the lowest
    median is kept, the best estimate of the unloaded latency.
    """
    import onnxruntime as ort

    model, feed = build_layer_model(config, rng)
    session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    best = time_session(session, feed, repeats)
    for _ in range(UNSTABLE_RETRIES):
        if best["p90_ms"] <= UNSTABLE_SPREAD * best["p10_ms"]:
            break
        again = time_session(session, feed, repeats)
        if again["latency_ms"] < best["latency_ms"]:
            best = again
    return best


def retest(csv_path: str | Path, layer_type: str = "conv", n: int = 100, threads: int | None = None,
           seed: int = 0):
    """Test-retest: re-measure `n` random rows of a profile CSV and compare with the stored medians.

    Returns a DataFrame (the factors, stored_ms, retest_ms, rel_diff). The share of |rel_diff| <= 10 % is the
    ceiling any delay model can reach on that profile's within-10 % metric: the data disagree with themselves
    that much.
    """
    import pandas as pd

    df = pd.read_csv(csv_path)
    df = df[df["layer_type"] == layer_type]
    if df.empty:
        raise ProfileError(f"{csv_path}: no {layer_type!r} rows to re-test")
    role = str(df["role"].iloc[0])
    threads = default_threads(role) if threads is None else threads
    sample = df.sample(min(n, len(df)), random_state=seed).sort_index()
    rng = np.random.default_rng(seed)
    retest_ms = [measure(Config(layer_type, *(int(r[f]) for f in FACTORS)), threads, rng=rng)["latency_ms"]
                 for _, r in sample.iterrows()]
    out = sample[["role", "layer_type", *FACTORS]].copy()
    out["stored_ms"] = sample["latency_ms"].to_numpy()
    out["retest_ms"] = retest_ms
    out["rel_diff"] = out["retest_ms"] / out["stored_ms"] - 1.0
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------- CSV I/O
def _recover_csv(path: Path) -> set[tuple]:
    """Check the header, drop a half-written trailing line, return the keys of the rows already measured."""
    text = path.read_text()
    if not text:
        return set()
    header, _, body = text.partition("\n")
    if header.split(",") != list(CSV_COLUMNS):
        raise ProfileError(f"{path}: header {header!r} is not the profile header {','.join(CSV_COLUMNS)}")
    lines = body.split("\n")
    # A complete file ends with "\n" so the last element is "". Anything else is a line cut off mid-write.
    good = [ln for ln in lines[:-1] if len(ln.split(",")) == len(CSV_COLUMNS)]
    if lines[-1] != "" or len(good) != len(lines) - 1:
        atomic_write_text(path, header + "\n" + "".join(ln + "\n" for ln in good))
    keys = set()
    for row in csv.reader(io.StringIO("\n".join(good))):
        keys.add((row[0], row[1], *(int(v) for v in row[2:2 + len(FACTORS)])))
    return keys


def _format_row(role: str, config: Config, result: dict) -> str:
    values = [role, config.layer_type, *(str(int(getattr(config, f))) for f in FACTORS),
              f"{result['latency_ms']:.6f}", f"{result['p10_ms']:.6f}", f"{result['p90_ms']:.6f}",
              str(result["repeats"])]
    return ",".join(values) + "\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _write_metadata(out: Path, role: str, threads: int, seed: int, started: str, csv_path: Path,
                    command: str | None, measured: int = 0) -> dict:
    import onnx
    import onnxruntime as ort
    import pandas as pd

    counts = {}
    if csv_path.exists() and csv_path.stat().st_size:
        counts = pd.read_csv(csv_path)["layer_type"].value_counts().reindex(LAYER_TYPES).dropna().astype(int).to_dict()
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
        "clock": timing_clock(),
        "inter_op_num_threads": 1,
        "seed": seed,
        "warmup_runs": WARMUP_RUNS,
        "repeats_rule": f"adaptive: at least {MIN_REPEATS}, at most {MAX_REPEATS}, stop after {TARGET_SECONDS} s",
        "retry_rule": f"a window with p90 > {UNSTABLE_SPREAD} x p10 is re-timed up to {UNSTABLE_RETRIES} times; "
                      "the attempt with the lowest median is kept",
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
    # one entry per run that wrote into this CSV, so a resumed profile keeps the provenance of every run
    runs = [r for r in old.get("runs", []) if r.get("started_utc") != started]
    runs.append({"started_utc": started, "ended_utc": meta["date_utc"], "command": command, "threads": threads,
                 "load_average_end": meta["load_average"], "configs_measured": measured})
    meta["runs"] = runs
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return meta


def default_threads(role: str) -> int:
    return 1 if role == "device" else (os.cpu_count() or 1)


def run_profile(out: str | Path, role: str, threads: int | None = None, layer_types=None, limit: int | None = None,
                repeats: int | None = None, seed: int = 0, progress: bool = True, command: str | None = None,
                note: str | None = None) -> Path:
    """Measure every configuration of the designed sweep not yet in <out>/<role>.csv; return the CSV path."""
    if role not in ROLES:
        raise ProfileError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    threads = default_threads(role) if threads is None else int(threads)
    if threads < 1:
        raise ProfileError(f"threads must be >= 1, got {threads}")
    if repeats is not None and repeats < 1:
        raise ProfileError(f"repeats must be >= 1, got {repeats}")
    if limit is not None and limit < 1:
        raise ProfileError(f"limit must be >= 1, got {limit}")
    types = list(LAYER_TYPES) if layer_types is None else list(layer_types)
    for t in types:
        if t not in LAYER_TYPES:
            raise ProfileError(f"unknown layer type {t!r}; valid types: {', '.join(LAYER_TYPES)}")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{role}.csv"
    done = _recover_csv(csv_path) if csv_path.exists() else set()
    if not csv_path.exists() or csv_path.stat().st_size == 0:
        atomic_write_text(csv_path, ",".join(CSV_COLUMNS) + "\n")
    if note is not None:
        meta_path = out / f"{role}.json"
        old = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        atomic_write_text(meta_path, json.dumps({**old, "note": note}, indent=2) + "\n")

    todo = []
    for t in types:
        configs = design(t, seed)
        if limit is not None:
            configs = configs[:limit]
        todo += [c for c in configs if c.key(role) not in done]

    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")  # also identifies the run
    rng = np.random.default_rng(seed)
    from tqdm.auto import tqdm

    with open(csv_path, "a", newline="") as fh, tqdm(total=len(todo), desc=f"profile {role}", unit="cfg",
                                                     disable=not progress, file=sys.stderr) as bar:
        last_type = None
        for c in todo:
            if c.layer_type != last_type:
                bar.set_postfix_str(c.layer_type)
                if last_type is not None:
                    _write_metadata(out, role, threads, seed, started, csv_path, command, bar.n)
                last_type = c.layer_type
            result = measure(c, threads, repeats, rng)
            fh.write(_format_row(role, c, result))
            fh.flush()
            bar.update(1)
    _write_metadata(out, role, threads, seed, started, csv_path, command, len(todo))
    return csv_path


def cli_profile(args) -> int:
    """`dnnpart profile`: measure a role's designed sweep into --out (resumable)."""
    types = None if args.layer_types is None else [t.strip() for t in args.layer_types.split(",") if t.strip()]
    command = "dnnpart " + " ".join(sys.argv[1:])
    path = run_profile(args.out, args.role, threads=args.threads, layer_types=types, limit=args.limit,
                       repeats=args.repeats, seed=args.seed, command=command, note=args.note)
    print(path)
    return 0
