"""Sweeps on Dask give the same rows as serial sweeps (dnnpart.parallel), and schedulers are checked."""

from __future__ import annotations

import os

import psutil
import pytest

from dnnpart import parallel
from dnnpart.files import write_csv
from dnnpart.study import headline_sensitivity, sweeps


@pytest.fixture(scope="module")
def local_cluster():
    """A 2-worker LocalCluster for this module; afterwards no worker process and no scratch folder may be left."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield "local"
    scratch = list(parallel._scratch)
    parallel.shutdown()
    assert scratch and not any(os.path.exists(s) for s in scratch)  # the workers' folders went with the cluster
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and not _resource_tracker(p)]
    gone, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, f"worker processes left behind: {[' '.join(p.cmdline()) for p in alive]}"


def _resource_tracker(proc) -> bool:
    """multiprocessing's resource tracker: started with the first spawned process, it ends with this process."""
    try:
        return any("resource_tracker" in part for part in proc.cmdline())
    except psutil.NoSuchProcess:
        return True


def test_bandwidth_sweep_on_two_workers_writes_the_serial_csv_bytes(local_cluster, tmp_path):
    kw = dict(profiles=["paper"], network="alexnet", n_devices=3, bandwidths_mbps=[0.5, 2.5, 10.0, 40.0])
    serial = sweeps.bandwidth_sweep(**kw, scheduler="serial")
    on_dask = sweeps.bandwidth_sweep(**kw, scheduler=local_cluster, workers=2)
    assert parallel.client("local", 2).cluster.workers, "the sweep did not run on the LocalCluster"
    assert len(parallel.client("local", 2).scheduler_info()["workers"]) == 2
    a = write_csv(serial, tmp_path / "serial.csv").read_bytes()
    b = write_csv(on_dask, tmp_path / "dask.csv").read_bytes()
    assert a == b
    # 4 bandwidths x 4 methods, in the order asked for (not the order workers finished in)
    assert serial["bandwidth_mbps"].tolist() == [b for b in kw["bandwidths_mbps"] for _ in range(4)]


def test_headline_sensitivity_points_on_two_workers_equal_serial(local_cluster):
    kw = dict(profile="paper", variants=["fitted"], input_encodings=["float32"], bandwidths_mbps=[1.0, 20.0])
    serial = headline_sensitivity.sensitivity_delays(**kw, scheduler="serial")
    on_dask = headline_sensitivity.sensitivity_delays(**kw, scheduler=local_cluster, workers=2)
    assert serial.equals(on_dask)
    assert len(serial) == 2 * 3


def test_map_points_keeps_the_order_of_the_points(local_cluster):
    points = list(range(20))[::-1]
    assert parallel.map_points(abs, [-p for p in points], scheduler=local_cluster, workers=2) == points


def test_an_error_in_a_point_reaches_the_caller(local_cluster):
    with pytest.raises(Exception, match="unknown network"):
        sweeps.bandwidth_sweep(
            profiles="paper", network="nope", bandwidths_mbps=[1.0], scheduler=local_cluster, workers=2
        )


@pytest.mark.parametrize("name", ["", "threads", "http://x:8786", "locals"])
def test_unknown_scheduler_is_refused_with_the_choices(name):
    with pytest.raises(parallel.SchedulerError, match="choose serial, local"):
        parallel.resolve_scheduler(name)


@pytest.mark.parametrize("workers", [0, -1, "two", 5000])
def test_bad_worker_count_is_refused(workers):
    with pytest.raises(parallel.SchedulerError, match="workers must"):
        parallel.check_scheduler("local", workers)


def test_environment_names_the_default_scheduler(monkeypatch):
    monkeypatch.delenv(parallel.SCHEDULER_ENV, raising=False)
    assert parallel.resolve_scheduler(None) == "serial"
    monkeypatch.setenv(parallel.SCHEDULER_ENV, "tcp://10.0.0.1:8786")
    assert parallel.resolve_scheduler(None) == "tcp://10.0.0.1:8786"
    assert parallel.resolve_scheduler("serial") == "serial"  # an explicit choice wins
    monkeypatch.setenv(parallel.WORKERS_ENV, "3")
    assert parallel.resolve_workers(None) == 3
    monkeypatch.delenv(parallel.WORKERS_ENV)
    assert parallel.resolve_workers(None) == os.cpu_count()


def test_unreachable_cluster_is_one_line():
    # port 9 (discard) on loopback: nothing listens there in the test environment
    with pytest.raises(parallel.SchedulerError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        parallel.map_points(abs, [1], scheduler="tcp://127.0.0.1:9")
