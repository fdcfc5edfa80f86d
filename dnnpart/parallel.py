"""Where sweeps run: in this process, on a Dask LocalCluster on this machine, or on an existing Dask cluster.

One function, `map_points(func, points, scheduler=...)`, evaluates `func(point)` for every point and returns the
results in the order of `points`, whatever order the workers finish in, so a sweep writes the same CSV serially
and on any cluster. The scheduler is named by a string:

  "serial"            every point in this process (no Dask);
  "local"             a LocalCluster of worker processes (one thread each) on this machine, `workers` of them
                      (default: one per core);
  "tcp://HOST:PORT"   an existing Dask scheduler (`dask scheduler` and `dask worker tcp://HOST:PORT`).

None means the environment variable DNNPART_SCHEDULER, or "serial" when it is unset. Dask is imported only when
a cluster is used, so the serial path needs no Dask.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence

from dnnpart.errors import DnnpartError

SCHEDULER_ENV = "DNNPART_SCHEDULER"
WORKERS_ENV = "DNNPART_WORKERS"
SCHEDULER_CHOICES = "serial, local, or a Dask scheduler address tcp://HOST:PORT"

# One client per (scheduler, workers) per process: a notebook's sweeps share one LocalCluster instead of paying
# its start-up (a few seconds) for every sweep. Closed at exit, or by shutdown().
_clients: dict[tuple[str, int | None], object] = {}
_scratch: list[str] = []  # the LocalClusters' worker folders, removed with them (Dask's default stays in /tmp)


class SchedulerError(DnnpartError):
    """A scheduler name or worker count that cannot be used."""


def resolve_scheduler(scheduler: str | None = None) -> str:
    """The scheduler to use: `scheduler`, else $DNNPART_SCHEDULER, else "serial"; checked."""
    name = scheduler if scheduler is not None else os.environ.get(SCHEDULER_ENV, "serial")
    name = str(name).strip()
    if name in ("serial", "local") or name.startswith(("tcp://", "tls://", "inproc://")):
        return name
    raise SchedulerError(f"unknown scheduler {name!r}; choose {SCHEDULER_CHOICES}")


def resolve_workers(workers: int | str | None = None) -> int:
    """Worker processes for a LocalCluster: `workers`, else $DNNPART_WORKERS, else one per core."""
    value = workers if workers is not None else os.environ.get(WORKERS_ENV) or os.cpu_count() or 1
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise SchedulerError(f"workers must be a whole number >= 1, got {value!r}") from None
    if n < 1 or n > 1024:
        raise SchedulerError(f"workers must be between 1 and 1024, got {n}")
    return n


def check_scheduler(scheduler: str | None = None, workers: int | str | None = None) -> None:
    """Fail fast (SchedulerError, one line) on a scheduler name or worker count that cannot be used."""
    if resolve_scheduler(scheduler) == "local":
        resolve_workers(workers)


def client(scheduler: str, workers: int | None = None):
    """The process's Dask client for a "local" cluster or an address (created on first use, then reused)."""
    key = (scheduler, resolve_workers(workers) if scheduler == "local" else None)
    if key not in _clients:
        from distributed import Client, LocalCluster

        if scheduler == "local":
            # Processes, one thread each: the solves are pure Python and would share one GIL in threads.
            # No dashboard: it would take a port nobody asked for. The workers' scratch folder is ours, so that
            # shutdown() removes it (Dask's default, /tmp/dask-scratch-space, outlives the cluster).
            import dask

            _scratch.append(tempfile.mkdtemp(prefix="dnnpart-dask-"))
            with dask.config.set({"temporary-directory": _scratch[-1]}):
                cluster = LocalCluster(
                    n_workers=key[1], threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
                )
            _clients[key] = Client(cluster)
        else:
            try:
                _clients[key] = Client(scheduler, timeout=10)
            except OSError as exc:
                raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    return _clients[key]


def shutdown() -> None:
    """Close every client this process opened (and the LocalClusters behind them)."""
    while _clients:
        _, c = _clients.popitem()
        cluster = getattr(c, "cluster", None)
        c.close()
        if cluster is not None:
            cluster.close()
    while _scratch:
        shutil.rmtree(_scratch.pop(), ignore_errors=True)


atexit.register(shutdown)


def iter_points(func: Callable, points: Sequence, scheduler: str | None = None, workers: int | None = None):
    """Yield (index, func(points[index])) as each point finishes, where `scheduler` says (in order when serial).

    `func` and the points must be picklable (module-level functions, plain values) to reach worker processes.
    An exception in any point is raised here, in the caller."""
    name = resolve_scheduler(scheduler)
    points = list(points)
    if name == "serial" or not points:
        for i, p in enumerate(points):
            yield i, func(p)
        return
    from distributed import as_completed

    futures = client(name, workers).map(func, points, pure=False)
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for future, result in as_completed(futures, with_results=True):
            yield index[future.key], result
    finally:
        for f in futures:  # an interrupted caller leaves no work queued on the cluster
            f.cancel()


def map_points(func: Callable, points: Sequence, scheduler: str | None = None, workers: int | None = None) -> list:
    """[func(p) for p in points], evaluated where `scheduler` says; results in the order of `points`."""
    points = list(points)
    results: list = [None] * len(points)
    for i, result in iter_points(func, points, scheduler, workers):
        results[i] = result
    return results
