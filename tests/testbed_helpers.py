"""Shared by the testbed tests: a small scenario file, the unsplit model's output, and what a run left behind."""

import functools
import os
from pathlib import Path

import numpy as np

from dnnpart.runtime.layers import LayerRunner, random_input
from dnnpart.runtime.split import split_network
from dnnpart.testbed import cpu_quota, links
from dnnpart.testbed.run import temporary_caches

SHAPES = {"lenet": [1, 1, 28, 28], "alexnet": [1, 3, 227, 227]}


def write_scenario(path: Path, groups: list[dict], server_profile: str = "measured") -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"server": {"profile": server_profile}, "devices": groups}, sort_keys=False))
    return path


@functools.cache
def runner(network: str) -> LayerRunner:
    return LayerRunner(split_network(network).models)


def unsplit(network: str, x):
    r = runner(network)
    return r.run_range(x, 1, len(r.sessions))[0]


def check_outputs(folder: Path, devices, repeats: int) -> int:
    """Every saved output of every device equals the unsplit model's on the same input; returns the count."""
    checked = 0
    for k, d in enumerate(devices):
        for r in range(repeats):
            got = np.load(folder / d.name / f"output-{r}.npy")
            want = unsplit(d.network, random_input(SHAPES[d.network], 10 * k + r))
            assert np.allclose(got, want, rtol=1e-4, atol=1e-5), (d.name, r)
            checked += 1
    return checked


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text` (e.g. a run's unique output folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def leftovers(pid: int, out: Path) -> dict:
    """What the testbed run of process `pid` (writing into `out`) left: namespaces, cgroups, processes."""
    return {
        "namespaces": links.namespaces(pid),
        "cgroups": [str(p) for p in cpu_quota.groups(cpu_quota.detect(), pid)],
        "processes": processes_mentioning(str(out)),
        "layer caches": [str(p) for p in temporary_caches(pid)],
    }


NOTHING = {"namespaces": [], "cgroups": [], "processes": [], "layer caches": []}
