"""How much slower an emulated device is than the server: whole-network inference timed natively and under a
CPU quota, each in its own process and cgroup (`measure_slowdown`).

`python -m dnnpart.testbed.slowdown NETWORK RUNS THREADS [--layer-cache DIR] [PROCS_FILE...]`
builds the network's layers (or reads them from the layer cache), warms them up, joins the given cgroups (after
the imports and the build, which are not measured) and prints the median of RUNS whole-network runs (THREADS
onnxruntime threads; a device runs one) as JSON. `measure_slowdown` and the server's part of the testbed's speed
check (`Testbed.check_speed`) time this way; `calibrate_quota` finds the quota that gives a requested slowdown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np


def time_network(network: str, runs: int, procs_files=(), threads: int = 1, layer_cache=None) -> dict:
    """The median (and min) of `runs` whole-network runs, after the build and warm-up (native speed) and after
    joining `procs_files`' cgroups."""
    from dnnpart.runtime.layer_cache import LayerCache
    from dnnpart.runtime.layers import LayerRunner, random_input
    from dnnpart.runtime.split import cached_split_network, split_network
    from dnnpart.testbed import cpu_quota

    split = cached_split_network(network, 0, LayerCache(layer_cache)) if layer_cache else split_network(network)
    runner = LayerRunner(split.models, threads=threads).warm_up()
    x = random_input(list(split.shapes[0]), 0)
    cpu_quota.join(procs_files, os.getpid())
    runner.run_range(x, 1, split.n_layers)  # one untimed run on the (emulated) CPU
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run_range(x, 1, split.n_layers)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"network": network, "runs": runs, "median_ms": float(np.median(times)), "min_ms": float(min(times))}


def measure_slowdown(network: str, quota: float, runs: int = 5) -> dict:
    """Whole `network` on the emulated server (native, pinned like the testbed's server) and on an emulated
    device (1 thread under `quota`, pinned like the testbed's devices): both medians and their ratio."""

    from dnnpart.errors import TestbedError
    from dnnpart.testbed import cpu_quota

    hierarchy = cpu_quota.detect()
    if hierarchy is None or os.geteuid() != 0:
        raise TestbedError("measuring the emulated slowdown needs root and a cgroup cpu controller")
    n = os.cpu_count() or 1
    server_cpus, device_cpus = ("0", f"1-{n - 1}") if n >= 2 else (None, None)
    out = {}
    # the native runs are short: five times as many of them, like the testbed's speed check
    for role, q, cpus, n_runs in (("server", None, server_cpus, 5 * runs), ("device", quota, device_cpus, runs)):
        group = cpu_quota.CpuQuota(f"slow-{role}", q, hierarchy, cpus).create()
        try:
            cmd = [sys.executable, "-m", "dnnpart.testbed.slowdown", network, str(n_runs), "1"]
            done = subprocess.run(
                [*cmd, *map(str, group.procs_files())], capture_output=True, text=True, timeout=1800, check=False
            )
        finally:
            group.remove()
        if done.returncode != 0:
            raise TestbedError(f"timing {network} ({role}) failed: {done.stderr.strip().splitlines()[-1:]}")
        out[role] = json.loads(done.stdout)
    return {
        "network": network,
        "cpu_quota": quota,
        "requested_factor": 1 / quota,
        "server_ms": out["server"]["median_ms"],
        "device_ms": out["device"]["median_ms"],
        "slowdown": out["device"]["median_ms"] / out["server"]["median_ms"],
    }


def calibrate_quota(network: str, factor: float, runs: int = 5, rounds: int = 4, measure=measure_slowdown) -> dict:
    """The CPU quota that makes an emulated device `factor` times slower than one native core on whole `network`.

    Quota 1/k does not give k: a throttled process finds its caches cold after every period's pause (on this VM
    a tenth of a core costs 5-20 % more CPU time per AlexNet run than a whole one). Each round measures the board's
    work (its median times its quota: full-core milliseconds) and the native median; the next quota is the one
    that the rounds so far, pooled, give `factor` with (sum of work / (sum of native * factor)), so that one noisy
    round moves it by a share only. The first round runs at 1/factor. Returns the last round (cpu_quota,
    slowdown, device_ms, server_ms: a measurement of the quota chosen from the rounds before it) and every round
    in `rounds`."""
    from dnnpart.errors import TestbedError
    from dnnpart.testbed import cpu_quota

    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 1 < factor <= 1000:
        raise TestbedError(f"the slowdown factor must be a number in (1, 1000], got {factor!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise TestbedError(f"rounds must be a positive integer, got {rounds!r}")
    quota, history = 1.0 / factor, []
    for _ in range(rounds):
        m = measure(network, cpu_quota.check_quota(round(quota, 5)), runs=runs)
        history.append({k: m[k] for k in ("cpu_quota", "slowdown", "device_ms", "server_ms")})
        work = sum(h["device_ms"] * h["cpu_quota"] for h in history)
        quota = min(1.0, max(0.001, work / (sum(h["server_ms"] for h in history) * factor)))
    return {"network": network, "factor": float(factor), **history[-1], "rounds": history}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dnnpart.testbed.slowdown")
    parser.add_argument("network")
    parser.add_argument("runs", type=int)
    parser.add_argument("threads", type=int)
    parser.add_argument("procs_files", nargs="*")
    parser.add_argument("--layer-cache", default=None)
    a = parser.parse_intermixed_args()
    result = time_network(a.network, a.runs, a.procs_files, threads=a.threads, layer_cache=a.layer_cache)
    print(json.dumps(result))
