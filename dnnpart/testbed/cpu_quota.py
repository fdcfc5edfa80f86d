"""CPU-bandwidth quotas in their own cgroups: an emulated device runs at a fraction of one core.

cgroup v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us` under the mounted cpu controller) and cgroup v2 (`cpu.max`
in the unified hierarchy, cpu controller enabled) are detected at run time. The period is short (10 ms; longer
only for quotas below 0.1, to hold the kernel's 1 ms minimum), so a layer is slowed evenly instead of running at
full speed for 100 ms and then stopping for 900. A quota limits a group's total CPU time over its threads; a
device runs one onnxruntime thread, so quota q is a device at least 1/q times slower than one core (somewhat
more: it resumes each period with cold caches; `slowdown.calibrate_quota` finds the quota for a factor).
Groups are named `dnnpart-tb-<pid>-<label>` so parallel runs never share one, and a group
whose creating process is gone is removed by `remove_stale()`.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from dnnpart.errors import TestbedError

PERIOD_US = 10_000
PREFIX = "dnnpart-tb-"
MOUNTS = Path("/proc/mounts")


@dataclass(frozen=True)
class Hierarchy:
    """Where quota groups are made: `version` 1 or 2, `root` the folder holding them."""

    version: int
    root: Path


def detect(mounts: Path = MOUNTS) -> Hierarchy | None:
    """The cgroup hierarchy with a usable cpu controller (v2 preferred, then v1), or None."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return None
    v1 = None
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        where, kind, options = Path(parts[1]), parts[2], parts[3].split(",")
        if kind == "cgroup2" and "cpu" in _read(where / "cgroup.controllers").split():
            return Hierarchy(2, where)
        if kind == "cgroup" and "cpu" in options and v1 is None:
            v1 = Hierarchy(1, where)
    return v1


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise TestbedError(f"cannot write {text.strip()!r} to {path}: {exc.strerror or exc}") from None


def join(procs_files, pid: int) -> None:
    """Move process `pid` into the groups of these cgroup.procs files (TestbedError naming a file it cannot write)."""
    for procs in procs_files:
        _write(Path(procs), f"{pid}\n")


MIN_QUOTA_US, MAX_PERIOD_US = 1000, 1_000_000  # the kernel's bounds on cfs_quota_us and cfs_period_us


def period_us(quota: float | None) -> int:
    """The period of a group limited to `quota` cores: PERIOD_US, or for a quota below 0.1 the shortest period
    holding the kernel's 1 ms minimum quota (0.09 cores: 11.1 ms)."""
    if quota is None or quota * PERIOD_US >= MIN_QUOTA_US:
        return PERIOD_US
    return -(-MIN_QUOTA_US * 1_000_000 // round(quota * 1_000_000))  # ceil(1 ms / quota), in whole microseconds


def check_quota(quota: float | None, what: str = "quota") -> float | None:
    """A quota is a fraction of one core in [0.001, 64]; None is no limit (a group only for pinning)."""
    if quota is None:
        return None
    if isinstance(quota, bool) or not isinstance(quota, (int, float)) or not (0 < quota <= 64):
        raise TestbedError(f"{what} must be a fraction of one core in [0.001, 64], got {quota!r}")
    if quota * MAX_PERIOD_US < MIN_QUOTA_US:
        raise TestbedError(f"{what} {quota} is below 0.001, the kernel's 1 ms minimum per 1 s longest period")
    return float(quota)


class CpuQuota:
    """One cgroup limiting its processes to `quota` cores (None: unlimited), optionally pinned to `cpus`;
    created by `create()`, removed by `remove()`."""

    def __init__(self, label: str, quota: float | None, hierarchy: Hierarchy, cpus: str | None = None):
        self.quota, self.hierarchy, self.cpus = check_quota(quota), hierarchy, cpus
        self.name = f"{PREFIX}{os.getpid()}-{label}"
        self.path = hierarchy.root / self.name
        self.cpuset_path = None
        self.home = hierarchy.root  # where `leave()` puts the calling process back

    def create(self) -> CpuQuota:
        period = period_us(self.quota)
        quota_us = -1 if self.quota is None else max(MIN_QUOTA_US, round(self.quota * period))
        try:
            self.path.mkdir()
        except OSError as exc:
            raise TestbedError(f"cannot create cgroup {self.path}: {exc.strerror or exc}") from None
        if self.hierarchy.version == 2:
            _write(self.path / "cpu.max", f"{'max' if quota_us < 0 else quota_us} {period}\n")
            if self.cpus is not None and (self.path / "cpuset.cpus").exists():
                _write(self.path / "cpuset.cpus", self.cpus)
        else:
            _write(self.path / "cpu.cfs_period_us", f"{period}\n")
            _write(self.path / "cpu.cfs_quota_us", f"{quota_us}\n")
            if self.cpus is not None:
                self.cpuset_path = cpuset_group(self.name, self.cpus)
        return self

    def limits(self) -> dict:
        """The limit as the kernel holds it: quota_us and period_us read back from the group."""
        if self.hierarchy.version == 2:
            quota, period = _read(self.path / "cpu.max").split()
            return {"quota_us": -1 if quota == "max" else int(quota), "period_us": int(period)}
        return {
            "quota_us": int(_read(self.path / "cpu.cfs_quota_us")),
            "period_us": int(_read(self.path / "cpu.cfs_period_us")),
        }

    def throttled_ms(self) -> float:
        """Time the group spent throttled (cpu.stat), ms."""
        stat = dict(line.split() for line in _read(self.path / "cpu.stat").splitlines() if " " in line)
        if "throttled_usec" in stat:
            return int(stat["throttled_usec"]) / 1e3
        return int(stat.get("throttled_time", 0)) / 1e6

    def procs_files(self) -> list[Path]:
        """The cgroup.procs files a new process writes its pid into (the quota group, and the cpuset group)."""
        return [g / "cgroup.procs" for g in (self.path, self.cpuset_path) if g is not None]

    def attach(self, pid: int) -> None:
        join(self.procs_files(), pid)

    def remove(self) -> None:
        for group in (self.path, self.cpuset_path):
            if group is not None:
                remove_group(group, self.hierarchy.root if group == self.path else group.parent)


def cpuset_group(name: str, cpus: str) -> Path | None:
    """A v1 cpuset group pinning to `cpus` (None when no cpuset hierarchy is mounted)."""
    root = next((h for h in _v1_roots("cpuset")), None)
    if root is None:
        return None
    path = root / name
    try:
        path.mkdir()
    except OSError as exc:
        raise TestbedError(f"cannot create cgroup {path}: {exc.strerror or exc}") from None
    _write(path / "cpuset.cpus", cpus)
    _write(path / "cpuset.mems", _read(root / "cpuset.mems").strip() or "0")
    return path


def _v1_roots(controller: str):
    for line in _read(MOUNTS).splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "cgroup" and controller in parts[3].split(","):
            yield Path(parts[1])


def remove_group(path: Path, parent: Path, timeout_s: float = 5.0) -> None:
    """Move any process left in the group to its parent, then remove the group (bounded retries)."""
    deadline = time.monotonic() + timeout_s
    while path.exists():
        for pid in _read(path / "cgroup.procs").split():
            try:
                (parent / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # the process ended meanwhile
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TestbedError(f"cannot remove cgroup {path}: {exc.strerror or exc}") from None
            time.sleep(0.05)


def owner_pid(name: str) -> int | None:
    """The pid in a `dnnpart-tb-<pid>-<label>` group name (None for other names)."""
    try:
        return int(name[len(PREFIX) :].split("-")[0]) if name.startswith(PREFIX) else None
    except ValueError:
        return None


def pid_alive(pid: int | None) -> bool:
    """Whether process `pid` still runs (None: not ours to judge, so yes)."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def groups(hierarchy: Hierarchy | None = None, pid: int | None = None) -> list[Path]:
    """The quota and cpuset groups of this testbed (all runs, or the run of `pid`)."""
    roots = [hierarchy.root] if hierarchy else []
    roots += [r for r in _v1_roots("cpuset") if r not in roots]
    prefix = PREFIX if pid is None else f"{PREFIX}{pid}-"
    found = []
    for root in roots:
        try:
            found += sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix))
        except OSError:
            pass
    return found


def remove_stale(hierarchy: Hierarchy | None) -> list[str]:
    """Remove the groups of testbed runs whose process is gone (a run killed with SIGKILL cannot clean up)."""
    removed = []
    for path in groups(hierarchy):
        if not pid_alive(owner_pid(path.name)):
            for pid in _read(path / "cgroup.procs").split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            remove_group(path, path.parent)
            removed.append(str(path))
    return removed


def current_group(hierarchy: Hierarchy) -> Path:
    """The calling process's group in `hierarchy` (from /proc/self/cgroup)."""
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        num, controllers, where = line.split(":", 2)
        if (hierarchy.version == 2 and num == "0") or (hierarchy.version == 1 and "cpu" in controllers.split(",")):
            return hierarchy.root / where.lstrip("/")
    return hierarchy.root


def enter(quota: float, label: str = "profile") -> CpuQuota:
    """Put the calling process under a new quota (for `dnnpart profile --cpu-quota`); `remove()` it after."""
    hierarchy = detect()
    if hierarchy is None or os.geteuid() != 0:
        raise TestbedError(
            "--cpu-quota needs root and a cgroup hierarchy with the cpu controller (v1 or v2); none is usable here"
        )
    group = CpuQuota(label, quota, hierarchy).create()
    group.home = current_group(hierarchy)
    try:
        group.attach(os.getpid())
    except TestbedError:
        group.remove()
        raise
    return group


def leave(group: CpuQuota) -> None:
    """Move the calling process back to the group it came from and remove its quota group."""
    _write(group.home / "cgroup.procs", f"{os.getpid()}\n")
    group.remove()
