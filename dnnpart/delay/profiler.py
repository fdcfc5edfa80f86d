"""Measure single-layer execution delays with onnxruntime: the data behind the delay models.

Each configuration is one layer type with one set of factors (the layer-table columns kernel, stride, pad,
groups, in_channels, out_channels, in_side, out_side), so a model fitted on a profile predicts a network table
directly. Every configuration becomes a one-node ONNX graph built with onnx.helper and runs in onnxruntime with
graph optimisations off, so the node measured is the node that runs.

Timing on a shared machine: each configuration gets one window per pass over the shuffled sweep (PASSES),
minutes apart, and its latency is the fastest window's median. A slowdown (another process on the core, a
session whose buffers landed badly) only ever makes a window slower, and does not last from one pass to the
next, so the minimum over passes is what reproduces: split in halves of two passes each, the device profile's
minima agree within 10 % for 92 % (conv) and 88 % (fc) of configurations, the medians for 66 % and 48 %.
Every window also times a small fixed reference layer first (REFERENCE_LAYER): a record of how fast the machine
was at that moment, kept in the runs file but not used to correct the layer's time (see measure_window).

A profile folder holds <role>.runs.csv (one row per configuration and pass, appended and flushed as measured),
<role>.csv (one row per configuration, rebuilt from the runs after every pass) and <role>.json (metadata,
including the reference layer's latency). Both are written atomically. An interrupted run resumes: windows already
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
from dnnpart.files import atomic_write_text, write_csv
from dnnpart.networks.layers import Layer
from dnnpart.networks.onnx_nodes import OPSET, layer_nodes
from dnnpart.vocabulary import LAYER_TYPES, ROLES

FACTORS = ("kernel", "stride", "pad", "groups", "in_channels", "out_channels", "in_side", "out_side")
MEASURES = ("latency_ms", "p10_ms", "p90_ms", "repeats")
CSV_COLUMNS = ("role", "layer_type", *FACTORS, *MEASURES)  # what a profile CSV holds (delay.read_profile_csv)
OPTIONAL_MEASURES = ("p10_ms", "p90_ms", "repeats")  # may be missing or blank, e.g. in imported profiles
PROFILE_COLUMNS = (*CSV_COLUMNS, "raw_ms")  # what the profiler writes: also the median over passes
# <role>.runs.csv: one row per configuration and pass, written as measured
RUN_COLUMNS = ("role", "layer_type", *FACTORS, "pass", "raw_ms", "p10_ms", "p90_ms", "repeats", "reference_ms")

# Each configuration is timed in PASSES windows, one per pass over the whole (shuffled) sweep, so that passing
# slowdowns can be left out. A window times REFERENCE_RUNS runs of the reference layer (after untimed ones),
# then the layer: adaptive runs, at least MIN_REPEATS, at most MAX_REPEATS, stop after TARGET_SECONDS.
PASSES, MIN_REPEATS, MAX_REPEATS, TARGET_SECONDS, WARMUP_RUNS = 5, 5, 25, 0.06, 2
REFERENCE_WARMUP_RUNS, REFERENCE_RUNS = 3, 5
# Largest sizes drawn at random. The zoo's biggest conv (VGG, 224x224, 64->64, 1.85 GMAC) is inside CONV_MAX_MACS;
# VGG's fc6 (25088x4096 = 103 M weights, 411 MB) appears only in the fixed sweep, random fc stay below FC_MAX_WEIGHTS.
CONV_MAX_MACS = 2.0e9
FC_MAX_WEIGHTS = 4.0e7
ELEMENTWISE_MAX = 224 * 224 * 64  # VGG's largest activation


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


def dwconv(k, s, p, c, side) -> Config:
    """Depthwise conv: c channels, one k x k filter each (groups = c)."""
    return Config("dwconv", k, s, p, c, c, c, side, _out_side(side, k, s, p))


def join(layer_type, c, side) -> Config:
    """add: two c-channel maps into one (in_channels 2c, as the layer table counts a join's inputs);
    concat: two c-channel maps into 2c channels."""
    return Config(layer_type, 1, 1, 0, 1, 2 * c, c if layer_type == "add" else 2 * c, side, side)


def gap(c, side) -> Config:
    """Global average pooling of a c x side x side map (kernel = side, as in the layer table)."""
    return Config("gap", side, 1, 0, 1, c, c, side, 1)


# The reference layer: small (36 KB of weights, 25 KB in, 25 KB out), compute-bound, the same for every layer
# type, timed at the start of every window as a record of the machine's speed at that moment.
REFERENCE_LAYER = conv(3, 1, 1, 1, 32, 32, 14)


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
    return c.out_side**2 * c.kernel**2 * c.out_channels * c.in_channels / c.groups


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
    return [
        fc(n_in, n_out)
        for n_in in (10240, 12544, 14336, 16384, 18432, 20480, 22528, 25088)
        for n_out in (2048, 2560, 3072, 3584, 4096)
        if n_in * n_out > FC_MAX_WEIGHTS
    ]


def _fc_random(rng, n) -> list[Config]:
    out = []
    while len(out) < n:
        c = fc(_log_uniform_int(rng, 8, 25088), _log_uniform_int(rng, 8, 4096))
        if c.in_channels * c.out_channels <= FC_MAX_WEIGHTS:
            out.append(c)
    return out


def _pool_designs(rng, n) -> list[Config]:
    out = [
        pool(k, s, 0, c, side)
        for k, s in ((2, 2), (3, 2))
        for c in (6, 16, 64, 96, 256, 512)
        for side in (14, 28, 55, 112, 224)
        if c * side * side <= ELEMENTWISE_MAX
    ]
    while len(out) < n:
        k = int(rng.choice([2, 3, 3, 5]))
        s = int(rng.choice([1, 2, 2, 2, 3]))
        c, side = _log_uniform_int(rng, 1, 512), _log_uniform_int(rng, 4, 224)
        if side >= k and c * side * side <= ELEMENTWISE_MAX:
            out.append(pool(k, s, 0, c, side))
    return out


def _elementwise_designs(layer_type, rng, n) -> list[Config]:
    """relu / dropout on both conv maps (C x L x L) and fc vectors (C features, side 1)."""
    out = [
        elementwise(layer_type, c, side)
        for c in (16, 64, 256, 512)
        for side in (7, 14, 28, 56, 112, 224)
        if c * side * side <= ELEMENTWISE_MAX
    ]
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


def _conv_modern(rng) -> list[Config]:
    """Convs of residual and mobile networks, appended after the random ones (so every earlier configuration,
    and profiles measured with them, stay as they were): 1x1 convs (ResNet's bottlenecks, MobileNet's expansions
    and projections, strided shortcuts) over the channel counts they use, then grouped convs (ResNeXt-style,
    4 to 64 groups)."""
    out = [
        conv(1, 1, 0, 1, cin, cout, side)
        for side in (7, 14, 28, 56, 112)
        for cin, cout in (
            (16, 96),
            (24, 144),
            (32, 192),
            (64, 384),
            (96, 576),
            (160, 960),
            (320, 1280),
            (96, 24),
            (144, 32),
            (384, 64),
            (576, 160),
            (960, 320),
            (64, 256),
            (256, 64),
            (128, 512),
            (512, 128),
            (256, 1024),
            (1024, 256),
            (512, 2048),
            (2048, 512),
        )
    ]
    out += [conv(1, 2, 0, 1, cin, 2 * cin, side) for cin in (64, 128, 256, 512, 1024) for side in (14, 28, 56)]
    out = [c for c in out if _conv_macs(c) <= CONV_MAX_MACS]
    while len(out) < 300:
        side = _log_uniform_int(rng, 4, 112)
        c = conv(1, int(rng.choice([1, 1, 1, 1, 2])), 0, 1, _channels(rng, 8, 2048), _channels(rng, 8, 2048), side)
        if _conv_macs(c) <= CONV_MAX_MACS:
            out.append(c)
    grouped = []
    while len(grouped) < 150:
        g = int(rng.choice([4, 8, 16, 32, 64]))
        k, side = int(rng.choice([1, 3, 3])), _log_uniform_int(rng, 4, 112)
        per_group_in, per_group_out = int(rng.choice([2, 4, 8, 16, 32])), int(rng.choice([2, 4, 8, 16, 32]))
        c = conv(k, int(rng.choice([1, 1, 2])), k // 2, g, g * per_group_in, g * per_group_out, side)
        if c.out_side >= 1 and _conv_macs(c) <= CONV_MAX_MACS:
            grouped.append(c)
    return out + grouped


DWCONV_LARGE = 120  # dwconv configurations drawn among the largest maps, after the others


def _dwconv_designs(rng, n) -> list[Config]:
    """Variable-controlling sweeps around MobileNetV2's depthwise convs (3x3, 96..960 channels), then random."""
    out = []
    for base in (dict(k=3, s=1, p=1, c=144, side=56), dict(k=3, s=1, p=1, c=384, side=14)):
        for k in (3, 5, 7):
            out.append(dwconv(**{**base, "k": k, "p": k // 2}))
        for c in (8, 16, 32, 64, 96, 144, 192, 384, 576, 960, 1280):
            out.append(dwconv(**{**base, "c": c}))
        for side in (4, 7, 10, 14, 20, 28, 40, 56, 80, 112):
            out.append(dwconv(**{**base, "side": side}))
        out.append(dwconv(**{**base, "s": 2}))
    out = [c for c in out if c.in_channels * c.in_side**2 <= ELEMENTWISE_MAX]
    while len(out) < n:
        k = int(rng.choice([3, 3, 3, 5, 7]))
        c, side = _channels(rng, 8, 1920), _log_uniform_int(rng, 3, 224)
        if side >= k and c * side * side <= ELEMENTWISE_MAX:
            out.append(dwconv(k, int(rng.choice([1, 1, 2])), k // 2, c, side))
    # Large maps are rare under those draws (few channels-and-side pairs come near the cap), yet they decide a
    # fit's R^2 and the first layers of a mobile network sit there: a stratum of maps of 1/4 to all of the cap,
    # as many of each kernel and stride (the code paths differ) as of any other.
    large, paths = [], [(k, s) for k in (3, 5, 7) for s in (1, 2)]
    while len(large) < DWCONV_LARGE:
        (k, s), side = paths[len(large) % len(paths)], _log_uniform_int(rng, 14, 224)
        c = int(round(float(np.exp(rng.uniform(np.log(ELEMENTWISE_MAX / 4), np.log(ELEMENTWISE_MAX)))) / side**2))
        if c >= 8:
            large.append(dwconv(k, s, k // 2, c, side))
    return out + large


def _map_designs(make, rng, n, lo=1, hi=2048) -> list[Config]:
    """C x L x L maps (add, concat, gap, batchnorm): a grid, then random, all within ELEMENTWISE_MAX."""
    out = [
        make(c, side)
        for c in (16, 64, 256, 512, 1024, 2048)
        for side in (1, 7, 14, 28, 56, 112)
        if c * side * side <= ELEMENTWISE_MAX
    ]
    while len(out) < n:
        c, side = _log_uniform_int(rng, lo, hi), _log_uniform_int(rng, 1, 224)
        if c * side * side <= ELEMENTWISE_MAX:
            out.append(make(c, side))
    return out


# Configurations per layer type: >= 1,000 for conv and fc (the paper's "over 1000"), fewer for cheap types.
DESIGN_SIZES = {
    "conv": 1100,
    "fc": 1050,
    "pool": 200,
    "relu": 200,
    "lrn": 120,
    "softmax": 80,
    "dropout": 120,
    "dwconv": 600,
    "batchnorm": 200,
    "add": 200,
    "clip": 200,
    "gap": 120,
    "concat": 120,
}


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
        configs += _conv_modern(rng)
    elif layer_type == "fc":
        fixed = _fc_sweep()
        configs = fixed + _fc_random(rng, n - len(fixed)) + _fc_large()
    elif layer_type == "pool":
        configs = _pool_designs(rng, n)
    elif layer_type == "lrn":
        configs = _lrn_designs(rng, n)
    elif layer_type == "softmax":
        configs = _softmax_designs(rng, n)
    elif layer_type == "dwconv":
        configs = _dwconv_designs(rng, n)
    elif layer_type in ("add", "concat"):
        configs = _map_designs(lambda c, side: join(layer_type, c, side), rng, n, hi=1024)
    elif layer_type == "gap":
        configs = _map_designs(lambda c, side: gap(c, side), rng, n)
    elif layer_type == "batchnorm":
        configs = _map_designs(lambda c, side: elementwise("batchnorm", c, side), rng, n)
    else:
        configs = _elementwise_designs(layer_type, rng, n)
    seen, unique = set(), []
    for c in configs:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


def modern_conv_design(seed: int = 0) -> list[Config]:
    """The conv sweep's residual/mobile part (1x1 and grouped convs, `_conv_modern`) without the configurations
    the classic part already holds: what `validation_sweep` measures beside a profile without changing its fit."""
    rng = np.random.default_rng([seed, LAYER_TYPES.index("conv")])
    fixed = _conv_sweep()
    classic = set(fixed + _conv_random(rng, DESIGN_SIZES["conv"] - len(fixed)))
    seen, out = set(classic), []
    for c in _conv_modern(rng):
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


# ------------------------------------------------------------------------------------------- one-node graphs
def config_layer(config: Config) -> Layer:
    """The `Layer` spec of a configuration, for the shared ONNX node builder (pools round down, as measured)."""
    c = config
    out = c.out_channels if c.layer_type in ("conv", "dwconv", "fc") else None
    return Layer(
        f"{c.layer_type}_layer",
        c.layer_type,
        out=out,
        kernel=c.kernel,
        stride=c.stride,
        pad=c.pad,
        groups=c.groups,
        ceil=False,
    )


def build_layer_model(config: Config, rng=None):
    """A one-node ONNX model for a configuration (networks.onnx_nodes builds the node, as for whole networks).
    Returns (model, input feed dict)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = rng if rng is not None else np.random.default_rng(0)
    c = config
    if c.layer_type not in LAYER_TYPES:
        raise ProfileError(f"unknown layer type {c.layer_type!r}; valid types: {', '.join(LAYER_TYPES)}")
    if c.in_side == 1 and c.layer_type in ("fc", "softmax", "relu", "dropout", "clip"):
        x_shape = [1, c.in_channels]
    else:
        x_shape = [1, c.in_channels, c.in_side, c.in_side]
    names = ["x"]
    if c.layer_type in ("add", "concat"):  # two inputs of half the counted channels each
        x_shape[1] //= 2
        names = ["x0", "x1"]
    nodes, weights = layer_nodes(config_layer(c), c.in_channels, names if len(names) > 1 else names[0], "y", rng)
    inits = [numpy_helper.from_array(w, name) for name, w in weights.items()]
    graph = helper.make_graph(
        nodes,
        f"{c.layer_type}_layer",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, x_shape) for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    feed = {n: rng.standard_normal(size=x_shape, dtype=np.float32) for n in names}
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
    # Pool threads spin while idle (onnxruntime's default), as on a dedicated server: on this VM, with the
    # machine otherwise idle, 2-thread runs were 1.1-2.6x faster than with sleeping threads (conv 256->64 at
    # 14x14: 0.044 vs 0.068 ms). A spinning pool competes with any other process, so a multi-threaded role
    # must be profiled on an otherwise idle machine.
    return so


SCHEDSTAT = Path("/proc/thread-self/schedstat")
# Under a CPU-bandwidth quota (an emulated device, `dnnpart profile --cpu-quota`) the kernel counts throttled
# time as run-queue wait, so subtracting it would erase the very slowdown being measured: wall time it is.
_UNDER_QUOTA = False


def _runqueue_wait_ns() -> int:
    """Nanoseconds the calling thread has spent runnable but waiting for a CPU (Linux schedstat), else 0."""
    try:
        return int(SCHEDSTAT.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def timing_clock(threads: int) -> str:
    """How runs are timed: 1-thread sessions subtract the calling thread's run-queue wait where Linux reports
    it; multi-threaded sessions use plain wall time."""
    if threads == 1 and not _UNDER_QUOTA and (_runqueue_wait_ns() > 0 or SCHEDSTAT.exists()):
        return "wall-minus-runqueue-wait"
    return "wall"


def _timed_run_ms(session, feed, threads: int) -> float:
    """One run's latency in ms.

    A 1-thread session runs on the calling thread, so the time that thread sat in the run queue while other
    processes had the CPU is not the layer's and is subtracted. With more threads the pool keeps working while
    the caller waits (subtracting produced reference runs 10x too fast on the server role), so wall time it is.
    """
    subtract = threads == 1 and not _UNDER_QUOTA
    w0 = _runqueue_wait_ns() if subtract else 0
    t0 = time.perf_counter()
    session.run(None, feed)
    t1 = time.perf_counter()
    waited_ms = (_runqueue_wait_ns() - w0) / 1e6 if subtract else 0.0
    return max((t1 - t0) * 1e3 - waited_ms, 1e-6)


# Under a quota a run shorter than the quota left in its period runs at full speed and a later one waits for
# the next period: the median run is too fast. A window then spans many periods (QUOTA_WINDOW_SECONDS, no run
# cap) and its latency is the mean run, the steady-state rate at which back-to-back layers progress.
QUOTA_WINDOW_SECONDS = 0.25


def _enough(n: int, start: float, repeats: int | None) -> bool:
    if repeats is not None:
        return n >= repeats
    if _UNDER_QUOTA:
        return n >= MIN_REPEATS and time.perf_counter() - start >= QUOTA_WINDOW_SECONDS
    return n >= MAX_REPEATS or (n >= MIN_REPEATS and time.perf_counter() - start >= TARGET_SECONDS)


def time_session(session, feed, repeats: int | None = None, threads: int = 1) -> dict:
    """Warm up, then time runs; `repeats` None means adaptive (MIN..MAX_REPEATS, stop after TARGET_SECONDS)."""
    for _ in range(WARMUP_RUNS):
        session.run(None, feed)
    times, start = [], time.perf_counter()
    while not _enough(len(times), start, repeats):
        times.append(_timed_run_ms(session, feed, threads))
    arr = np.asarray(times)
    return {
        "latency_ms": float(np.mean(arr) if _UNDER_QUOTA else np.median(arr)),
        "p10_ms": float(np.percentile(arr, 10)),
        "p90_ms": float(np.percentile(arr, 90)),
        "repeats": len(arr),
    }


def time_reference(reference, threads: int = 1) -> float:
    """The median of a block of reference-layer runs (ms), after untimed runs. `reference` is (session, feed)."""
    session, feed = reference
    for _ in range(REFERENCE_WARMUP_RUNS):
        session.run(None, feed)
    return float(np.median([_timed_run_ms(session, feed, threads) for _ in range(REFERENCE_RUNS)]))


def make_session(config: Config, threads: int, rng=None):
    import onnxruntime as ort

    model, feed = build_layer_model(config, rng)
    session = ort.InferenceSession(
        model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"]
    )
    return session, feed


def reference_session(threads: int):
    """(session, feed) of REFERENCE_LAYER, built the same way in every run."""
    return make_session(REFERENCE_LAYER, threads, np.random.default_rng(0))


def measure_window(config: Config, threads: int, reference, repeats: int | None = None, rng=None) -> dict:
    """One timing window: a block of the reference layer, then the layer's own session, built and timed.

    The reference block is a record of the machine's speed, not a correction. An earlier version timed each
    layer against reference layers run alternately with it and scaled by their ratio; the references' times
    then depended on the layer they ran next to (the device's 8 MB fc reference took 0.14 ms after small
    layers and 0.42 ms after large ones), which scaled whole ranges of the profile by up to 2x. Dividing by
    this block's time instead (smoothed over neighbouring windows) made the profile less reproducible than the
    plain minimum over passes: the reference has slow spells of its own that the layers do not share.
    """
    reference_ms = time_reference(reference, threads)
    session, feed = make_session(config, threads, rng)
    stats = time_session(session, feed, repeats, threads)
    return {
        "raw_ms": stats["latency_ms"],
        "p10_ms": stats["p10_ms"],
        "p90_ms": stats["p90_ms"],
        "repeats": stats["repeats"],
        "reference_ms": reference_ms,
    }


def measure_fastest(configs: list[Config], threads: int, seed: int = 0, passes: int = PASSES, progress=False):
    """Each configuration's fastest window median (ms) over `passes`, each pass in its own shuffled order (as the
    profile is measured)."""
    from tqdm.auto import tqdm

    rng, reference = np.random.default_rng(seed), reference_session(threads)
    best = np.full(len(configs), np.inf)
    with tqdm(total=passes * len(configs), unit="window", disable=not progress, file=sys.stderr) as bar:
        for p in range(passes):
            for i in np.random.default_rng([seed, p]).permutation(len(configs)):
                best[i] = min(best[i], measure_window(configs[i], threads, reference, rng=rng)["raw_ms"])
                bar.update(1)
    return best


def validation_sweep(role: str, threads: int | None = None, seed: int = 0, passes: int = PASSES, progress=True):
    """Measure `modern_conv_design` (ResNet/MobileNet 1x1 convs, grouped convs) as the profile is measured: an
    out-of-sample test of a profile's conv model on shapes its fit never saw, kept apart from the profile so its
    conv rows and fit stay as they were. Returns a DataFrame (role, layer_type, the factors, latency_ms)."""
    import pandas as pd

    if role not in ROLES:
        raise ProfileError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    threads = default_threads(role) if threads is None else threads
    configs = modern_conv_design(seed)
    best = measure_fastest(configs, threads, seed, passes, progress)
    out = pd.DataFrame([c.key(role) for c in configs], columns=["role", "layer_type", *FACTORS])
    out["latency_ms"] = np.round(best, 6)
    return out


def retest(
    profile_dir: str | Path,
    role: str,
    layer_type: str = "conv",
    n: int = 100,
    threads: int | None = None,
    seed: int = 0,
    passes: int = PASSES,
):
    """Test-retest: re-measure `n` random rows of a profile and compare with the stored latencies.

    Each row is re-measured as the profile was: one window per pass, each pass over the sample in its own
    shuffled order, the fastest window's median kept. Returns a DataFrame (the factors, stored_ms, retest_ms,
    rel_diff). The share of |rel_diff| <= 10 % shows how far the data agree with themselves: roughly an upper
    bound for any delay model's within-10 % share on that profile.
    """
    import pandas as pd

    profile_dir = Path(profile_dir)
    df = pd.read_csv(profile_dir / f"{role}.csv")
    df = df[df["layer_type"] == layer_type]
    if df.empty:
        raise ProfileError(f"{profile_dir / f'{role}.csv'}: no {layer_type!r} rows to re-test")
    threads = default_threads(role) if threads is None else threads
    sample = df.sample(min(n, len(df)), random_state=seed).sort_index()
    configs = [Config(layer_type, *(int(r[f]) for f in FACTORS)) for _, r in sample.iterrows()]
    best = measure_fastest(configs, threads, seed, passes)
    out = sample[["role", "layer_type", *FACTORS]].copy()
    out["stored_ms"] = sample["latency_ms"].to_numpy()
    out["retest_ms"] = best
    out["rel_diff"] = out["retest_ms"] / out["stored_ms"] - 1.0
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------- CSV I/O
def _run_key(row) -> tuple:
    """(role, layer_type, factors..., pass) of a runs-CSV row (strings)."""
    return (row[0], row[1], *(int(v) for v in row[2 : 2 + len(FACTORS)]), int(row[2 + len(FACTORS)]))


def _recover_runs(path: Path) -> set[tuple]:
    """Check the header, drop a half-written trailing line, return the (config, pass) keys already measured.

    Any other malformed line (wrong field count, a non-numeric factor) is refused with its line number: it
    was not written by the profiler, and silently dropping measurements would bias the profile."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text:
        return set()
    header, _, body = text.partition("\n")
    if header.split(",") != list(RUN_COLUMNS):
        raise ProfileError(f"{path}: header {header[:200]!r} is not the runs header {','.join(RUN_COLUMNS)}")
    lines = body.split("\n")
    # A complete file ends with "\n" so the last element is "". Anything else is a line cut off mid-write.
    if lines[-1] != "":
        atomic_write_text(path, header + "\n" + "".join(ln + "\n" for ln in lines[:-1]))
    keys = set()
    for number, row in enumerate(csv.reader(io.StringIO("\n".join(lines[:-1]))), start=2):
        try:
            if len(row) != len(RUN_COLUMNS):
                raise ValueError(f"{len(row)} fields instead of {len(RUN_COLUMNS)}")
            [float(v) for v in row[3 + len(FACTORS) :]]  # the measurements must be numbers too
            keys.add(_run_key(row))
        except ValueError as exc:
            raise ProfileError(
                f"{path}: line {number} is not a profiler run ({exc}); fix or delete that line and rerun to resume"
            ) from None
    return keys


def _format_run(role: str, config: Config, pass_: int, w: dict) -> str:
    values = [
        role,
        config.layer_type,
        *(str(int(getattr(config, f))) for f in FACTORS),
        str(pass_),
        f"{w['raw_ms']:.6f}",
        f"{w['p10_ms']:.6f}",
        f"{w['p90_ms']:.6f}",
        str(w["repeats"]),
        f"{w['reference_ms']:.6f}",
    ]
    return ",".join(values) + "\n"


def aggregate_runs(runs, order: list[tuple] | None = None):
    """The profile table from the windows: each configuration's fastest window (lowest median) over the passes.

    latency_ms, p10_ms and p90_ms are that window's median and percentiles; repeats counts every timed run;
    raw_ms is the median over passes of the window medians, kept for comparison.
    Rows follow `order` (config keys without the pass) when given, else first appearance in `runs`.
    """
    keys = ["role", "layer_type", *FACTORS]
    runs = runs.reset_index(drop=True)
    fastest = runs.loc[runs.groupby(keys, sort=False)["raw_ms"].idxmin()]
    out = fastest[keys].reset_index(drop=True)
    out["latency_ms"] = fastest["raw_ms"].to_numpy()
    out["p10_ms"] = fastest["p10_ms"].to_numpy()
    out["p90_ms"] = fastest["p90_ms"].to_numpy()
    totals = runs.groupby(keys, sort=False).agg(repeats=("repeats", "sum"), raw_ms=("raw_ms", "median"))
    out = out.join(totals, on=keys)
    if order is not None:
        rank = {k: i for i, k in enumerate(order)}
        pos = [rank.get((r, t, *f), len(rank)) for r, t, *f in out[keys].itertuples(index=False)]
        out = out.iloc[np.argsort(pos, kind="stable")].reset_index(drop=True)
    for col in ("latency_ms", "p10_ms", "p90_ms", "raw_ms"):
        out[col] = out[col].round(6)
    return out[list(PROFILE_COLUMNS)]


def half_agreement(runs, tolerance: float = 0.10):
    """How far a profile agrees with itself: per (role, layer_type), the share of configurations whose fastest
    window in the first half of the passes is within `tolerance` of the fastest in the second half (the first
    floor(passes/2) passes against the rest). Roughly the best within-10 % any model can score on these data."""
    import pandas as pd

    keys = ["role", "layer_type", *FACTORS]
    half = runs["pass"] < (runs["pass"].max() + 1) // 2
    first = runs[half].groupby(keys)["raw_ms"].min()
    second = runs[~half].groupby(keys)["raw_ms"].min()
    both = pd.concat({"first": first, "second": second}, axis=1).dropna()
    close = ((both["first"] / both["second"] - 1).abs() <= tolerance).rename("halves_within10")
    return (
        close.groupby(["role", "layer_type"])
        .agg(["size", "mean"])
        .rename(columns={"size": "n", "mean": "halves_within10"})
        .reset_index()
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _write_metadata(
    out: Path,
    role: str,
    threads: int,
    seed: int,
    passes: int,
    started: str,
    profile,
    reference_ms: float,
    command: str | None,
    measured: int = 0,
    cpu_quota: float | None = None,
) -> dict:
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
        "intra_op_allow_spinning": 1,
        "seed": seed,
        "passes": passes,
        "warmup_runs": WARMUP_RUNS,
        "repeats_rule": f"per pass, {REFERENCE_RUNS} reference-layer runs after {REFERENCE_WARMUP_RUNS} untimed, "
        f"then adaptive layer runs: at least {MIN_REPEATS}, at most {MAX_REPEATS}, stop after "
        f"{TARGET_SECONDS} s",
        "latency_rule": "the fastest window (lowest median) over the passes: its median, p10 and p90; raw_ms is "
        "the median over passes of the window medians; reference_ms in the runs file records the "
        "machine's speed per window and is not applied",
        "reference_layer": {
            "layer_type": REFERENCE_LAYER.layer_type,
            **dict(zip(FACTORS, REFERENCE_LAYER.key(role)[2:])),
        },
        "reference_ms": reference_ms,
        "started_utc": started,
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()),
        "configs_per_type": counts,
        "command": command,
        "note": "",
    }
    if cpu_quota is not None:
        meta["cpu_quota"] = cpu_quota  # fraction of one core (an emulated device)
        meta["clock"] = "wall"
        meta["quota_rule"] = (
            f"under the quota each window lasts at least {QUOTA_WINDOW_SECONDS} s (many 10 ms periods) and its "
            "latency is the mean run, not the median: see QUOTA_WINDOW_SECONDS"
        )
    meta_path = out / f"{role}.json"
    old = {}
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            pass
    meta["note"] = old.get("note", "")  # keep the note (e.g. "shared VM") across resumed runs
    # one entry per run that wrote into this profile, so a resumed profile keeps the provenance of every run
    # The VM may move to another host between runs (2026-12-02: an Intel Xeon where 2026-11-27 had an AMD EPYC),
    # so every run records its own CPU; earlier entries without one inherit the previous top-level record.
    runs = [
        {**r, "cpu_model": r.get("cpu_model", old.get("cpu_model")), "platform": r.get("platform", old.get("platform"))}
        for r in old.get("runs", [])
        if r.get("started_utc") != started
    ]
    runs.append(
        {
            "started_utc": started,
            "ended_utc": meta["date_utc"],
            "cpu_model": meta["cpu_model"],
            "platform": meta["platform"],
            "command": command,
            "threads": threads,
            "load_average_end": meta["load_average"],
            "windows_measured": measured,
        }
    )
    meta["runs"] = runs
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return meta


def default_threads(role: str) -> int:
    return 1 if role == "device" else (os.cpu_count() or 1)


def _check_positive(name: str, value) -> None:
    if value is not None and value < 1:
        raise ProfileError(f"{name} must be >= 1, got {value}")


def _check_resume(meta_path: Path, role: str, threads: int) -> None:
    """A resumed profile must be measured as it was begun: mixing thread counts would mix two machines."""
    if not meta_path.exists():
        return
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{meta_path}: unreadable metadata of the profile being resumed ({exc})") from None
    if not isinstance(meta, dict):
        raise ProfileError(f"{meta_path}: the metadata must be a JSON object")
    if meta.get("role", role) != role:
        raise ProfileError(f"{meta_path}: this folder holds a {meta.get('role')!r} profile, not {role!r}")
    if "threads" in meta and int(meta["threads"]) != threads:
        raise ProfileError(
            f"{meta_path}: the profile was begun with --threads {meta['threads']}; resume it with "
            f"the same count (got {threads}) or measure into another --out folder"
        )


def run_profile(
    out: str | Path,
    role: str,
    threads: int | None = None,
    layer_types=None,
    limit: int | None = None,
    repeats: int | None = None,
    seed: int = 0,
    passes: int = PASSES,
    progress: bool = True,
    command: str | None = None,
    note: str | None = None,
    cpu_quota: float | None = None,
) -> Path:
    """Measure every (configuration, pass) window not yet in <out>/<role>.runs.csv; return <out>/<role>.csv.

    Each pass visits the whole sweep (all requested types) in its own seeded shuffled order. Windows are
    appended to the runs CSV as measured; the profile CSV and metadata are rebuilt from it (atomically) after
    every pass, so an interrupted run leaves both files whole and a rerun resumes where it stopped.
    `cpu_quota`: the caller runs under that CPU quota (recorded in the metadata; runs are timed by wall clock).
    """
    global _UNDER_QUOTA
    previous, _UNDER_QUOTA = _UNDER_QUOTA, cpu_quota is not None
    try:
        return _run_profile(
            out, role, threads, layer_types, limit, repeats, seed, passes, progress, command, note, cpu_quota
        )
    finally:
        _UNDER_QUOTA = previous


def _run_profile(out, role, threads, layer_types, limit, repeats, seed, passes, progress, command, note, cpu_quota):
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
    if out.exists() and not out.is_dir():
        raise ProfileError(f"--out {out} is a file; give a folder for the profile")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProfileError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ProfileError(f"--out {out}: the folder is not writable")
    runs_path, csv_path = out / f"{role}.runs.csv", out / f"{role}.csv"
    _check_resume(out / f"{role}.json", role, threads)
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
    # The profile's rows follow every type's sweep (LAYER_TYPES order), not only the types measured now: new
    # types measured into an existing profile come after its earlier rows, which stay where they were.
    order = [c.key(role) for t in LAYER_TYPES for c in (design(t, seed)[:limit] if t in types else design(t, seed))]
    todo = []
    for p in range(passes):
        shuffled = [configs[i] for i in np.random.default_rng([seed, p]).permutation(len(configs))]
        todo.append([c for c in shuffled if (*c.key(role), p) not in done])

    started = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")  # also identifies the run
    rng, reference = np.random.default_rng(seed), reference_session(threads)
    from tqdm.auto import tqdm

    def publish(measured: int) -> None:
        runs = pd.read_csv(runs_path)
        runs = runs[runs["role"] == role]
        reference_ms = round(float(np.median(runs["reference_ms"])), 6)
        profile = aggregate_runs(runs, order)
        write_csv(profile, csv_path)
        _write_metadata(out, role, threads, seed, passes, started, profile, reference_ms, command, measured, cpu_quota)

    measured = 0
    with (
        open(runs_path, "a", newline="") as fh,
        tqdm(
            total=sum(map(len, todo)), desc=f"profile {role}", unit="window", disable=not progress, file=sys.stderr
        ) as bar,
    ):
        for p, pass_todo in enumerate(todo):
            bar.set_postfix_str(f"pass {p + 1}/{passes}")
            for c in pass_todo:
                fh.write(_format_run(role, c, p, measure_window(c, threads, reference, repeats, rng)))
                fh.flush()
                measured += 1
                bar.update(1)
            if pass_todo or not csv_path.exists():
                publish(measured)
    return csv_path
