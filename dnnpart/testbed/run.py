"""`dnnpart testbed`: a scenario's server and devices on this host, each case of the paper run for real.

`Testbed` sets up the emulation (one namespace and shaped veth link per device, one CPU-quota cgroup per
device, the server pinned to its own core), probes every link's achieved rate, then `run_case` starts
`dnnpart serve` and one `dnnpart device` process per device inside them and collects the server's tidy rows.
Without root (or with `fallback=True`, or DNNPART_TESTBED_FALLBACK=1) the devices run on loopback with a token
bucket for the uplink and no quota; `mechanism` says which was used. Everything the testbed made (processes,
namespaces, cgroups) is removed by `close()`, which runs on success, on error, on Ctrl-C and on SIGTERM (the
CLI turns it into SystemExit); children die with the testbed (PR_SET_PDEATHSIG) if it is killed outright,
and the next run removes what a killed run left (`remove_stale`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart import paths
from dnnpart.errors import TestbedError
from dnnpart.files import atomic_write_text, write_csv
from dnnpart.testbed import cpu_quota, links, probe
from dnnpart.vocabulary import METHODS

FALLBACK_ENV = "DNNPART_TESTBED_FALLBACK"
SERVER_PORT = 50051  # inside the server's own namespace, so parallel runs never compete for it
PROBE_PORT = 50052
CACHE_PREFIX = "dnnpart-layers-"  # temporary layer caches: dnnpart-layers-<pid>-<random> in the temp folder
START_TIMEOUT_S = 180
CASE_TIMEOUT_S = 900
LINK_COLUMNS = ["device", "requested_mbps", "achieved_mbps", "rtt_ms", "probe_bytes", "link"]
SPEED_COLUMNS = ["who", "network", "runs", "predicted_ms", "measured_ms", "scale"]
SPEED_TIMEOUT_S = 300
SPEED_CASE = "speed-check"  # the calibration start's folder under OUT/cases
SERVER_SPEED_RUNS = 5  # the server's speed check runs this many times speed_runs: its runs are short, and 3 of
# them (AlexNet, ~60 ms each) once gave a factor of 1.39 where the next point's gave 1.10


@dataclass(frozen=True)
class TestbedDevice:
    """One emulated device: its name, zoo network, delay profile, link and quota."""

    __test__ = False

    name: str
    network: str
    n_layers: int
    profile: str
    uplink_mbps: float
    downlink_mbps: float | None
    cpu_quota: float | None  # None: native speed
    link_delay_ms: float


def board_of(device: TestbedDevice) -> tuple:
    """What makes two emulated devices the same board: network, delay profile and CPU quota."""
    return (device.network, device.profile, device.cpu_quota)


def devices_of(scenario) -> list[TestbedDevice]:
    """The scenario's devices, group by group (names <group>-<k>, as the planner names them)."""
    from dnnpart import networks

    zoo = set(networks.names())
    out = []
    for i, g in enumerate(scenario.groups):
        if g.network not in zoo:
            raise TestbedError(
                f"devices[{i}].network: the testbed runs zoo networks only, got {g.network!r}; "
                f"valid: {', '.join(sorted(zoo))}"
            )
        quota = None if g.cpu_quota == "native" else cpu_quota.check_quota(g.cpu_quota, f"devices[{i}].cpu_quota")
        for k in range(g.count):
            out.append(
                TestbedDevice(
                    f"{g.name}-{k}",
                    g.network,
                    len(g.layers),
                    str(g.profile.spec),
                    g.uplink_mbps,
                    g.downlink_mbps,
                    quota,
                    g.link_delay_ms,
                )
            )
    return out


@dataclass
class Mechanism:
    """How links and CPUs are emulated in this run, and why (for the report)."""

    link: str  # "tc" or "token-bucket"
    cpu: str  # "cgroup-v1", "cgroup-v2" or "none"
    pinning: str  # e.g. "server cpu 0, devices cpu 1", or "none"
    reason: str = ""  # why a fallback was used

    @property
    def real(self) -> bool:
        return self.link == "tc" and self.cpu != "none"

    def line(self) -> str:
        if self.real:
            return f"real emulation: links shaped with tc (tbf) in network namespaces, CPU quotas in {self.cpu}"
        return (
            f"fallback emulation ({self.reason}): uplinks limited by a token bucket in the device client, "
            f"CPU {'quotas in ' + self.cpu if self.cpu != 'none' else 'not limited (native speed)'}"
        )


def choose_mechanism(fallback: bool) -> Mechanism:
    reason = "forced" if fallback or os.environ.get(FALLBACK_ENV) == "1" else links.can_shape()
    hierarchy = cpu_quota.detect()
    if reason is None and hierarchy is None:
        reason = "no cgroup hierarchy with the cpu controller"
    if reason is not None:
        return Mechanism("token-bucket", "none", "none", reason)
    n = os.cpu_count() or 1
    pinning = f"server cpu 0, devices cpu {'1' if n == 2 else f'1-{n - 1}'}" if n >= 2 else "none"
    return Mechanism("tc", f"cgroup-v{hierarchy.version}", pinning)


def temporary_caches(pid: int | None = None) -> list[Path]:
    """The temporary layer caches of testbed runs (of process `pid` only, if given)."""
    pattern = f"{CACHE_PREFIX}*" if pid is None else f"{CACHE_PREFIX}{pid}-*"
    return sorted(Path(tempfile.gettempdir()).glob(pattern))


def remove_stale_caches() -> list[str]:
    """Delete the temporary layer caches of testbed runs whose process is gone (killed before its clean-up)."""
    removed = []
    for folder in temporary_caches():
        pid = folder.name[len(CACHE_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not cpu_quota.pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


@dataclass
class Case:
    """One run of the scenario: a method of the paper (case1, case2, case3, independent) under a policy."""

    method: str
    policy: str
    cuts: list[int] | None  # None: the optimiser chooses (case1)

    @property
    def label(self) -> str:
        return self.method if self.policy == "plan" else f"{self.method}-{self.policy}"


@dataclass
class Testbed:
    """The emulated MEC system of one scenario; use as a context manager (`with Testbed(...) as tb`)."""

    __test__ = False

    scenario_path: Path
    out: Path
    fallback: bool = False
    server_threads: int = 1
    time_limit_s: float = 10.0
    probe_s: float = 1.0  # each link's probe upload lasts about this long
    speed_runs: int = 3  # whole-network runs of the speed check per device and server network; 0: no check
    layer_cache: Path | None = None  # shared by every process (runtime.layer_cache); None: a temporary folder
    use_layer_cache: bool = True  # False: every start draws and sends the layers (bench_testbed_startup.py)
    devices: list[TestbedDevice] = field(init=False)
    mechanism: Mechanism = field(init=False)
    procs: list[subprocess.Popen] = field(default_factory=list, init=False)

    def __post_init__(self):
        from dnnpart.planning.scenario import load_scenario

        self.scenario = load_scenario(self.scenario_path)
        self.devices = devices_of(self.scenario)
        self.out = Path(self.out)
        self.network = None
        self.groups: dict[str, cpu_quota.CpuQuota] = {}
        self.links_frame = None
        self.speed_frame = None
        self.own_cache = None  # the temporary layer cache open() made, removed by close()
        self.lock = threading.Lock()

    # --- set-up and clean-up -----------------------------------------------------------------------------
    def open(self) -> Testbed:
        self.mechanism = choose_mechanism(self.fallback)
        try:
            remove_stale_caches()
            # every start of the server and the devices reads its layers from the cache
            if self.layer_cache is None and self.use_layer_cache:
                prefix = f"{CACHE_PREFIX}{os.getpid()}-"  # the pid: remove_stale_caches knows a killed run's
                self.layer_cache = self.own_cache = Path(tempfile.mkdtemp(prefix=prefix))
            if self.mechanism.link == "tc":
                links.remove_stale()
                cpu_quota.remove_stale(cpu_quota.detect())
                self._make_groups()
                self.network = links.Network(
                    [links.Link(k, d.uplink_mbps, d.downlink_mbps, d.link_delay_ms) for k, d in enumerate(self.devices)]
                ).open()
            self.links_frame = self.probe_links()
            if self.layer_cache is not None:
                self.fill_layer_cache()
            self.speed_frame = self.check_speed()
        except BaseException:
            self.close()
            raise
        return self

    def _make_groups(self):
        hierarchy = cpu_quota.detect()
        n = os.cpu_count() or 1
        server_cpus, device_cpus = ("0", "1" if n == 2 else f"1-{n - 1}") if n >= 2 else (None, None)
        self.groups["server"] = cpu_quota.CpuQuota("server", None, hierarchy, server_cpus).create()
        for k, d in enumerate(self.devices):
            self.groups[d.name] = cpu_quota.CpuQuota(f"d{k}", d.cpu_quota, hierarchy, device_cpus).create()

    def close(self):
        """Stop every process, then remove the cgroups and the namespaces; every step runs even if one fails."""
        errors = []
        with self.lock:
            procs, self.procs = self.procs, []
        for p in procs:
            _stop(p)
        for group in self.groups.values():
            try:
                group.remove()
            except TestbedError as exc:
                errors.append(str(exc))
        self.groups = {}
        if self.network is not None:
            try:
                self.network.close()
            except TestbedError as exc:
                errors.append(str(exc))
            self.network = None
        if self.own_cache is not None:
            shutil.rmtree(self.own_cache, ignore_errors=True)
            self.layer_cache = self.own_cache = None
        if errors:
            raise TestbedError("; ".join(errors))

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    # --- processes ---------------------------------------------------------------------------------------
    def _start(self, cmd: list[str], where: str | None, group: str | None, **kwargs) -> subprocess.Popen:
        procs = self.groups[group].procs_files() if group in self.groups else []
        env = {**os.environ, "PYTHONPATH": str(paths.PROJ_ROOT), "OMP_NUM_THREADS": "1"}
        # A Ctrl-C or SIGTERM between the fork and the append would leave a child close() does not know: the
        # stop signals wait (blocked) until the child is recorded; the child unblocks them (links.child_setup).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, links.STOP_SIGNALS)
        try:
            proc = links.popen(cmd, where, procs, env=env, **kwargs)
            with self.lock:
                self.procs.append(proc)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return proc

    def _netns(self, k: int | None) -> str | None:
        if self.network is None:
            return None
        return self.network.server_netns if k is None else self.network.links[k].names(self.network.pid)["netns"]

    def server_address(self, k: int, port: int) -> str:
        if self.network is None:
            return f"127.0.0.1:{port}"
        return f"{self.network.links[k].names(self.network.pid)['server_ip']}:{port}"

    def probe_links(self) -> pd.DataFrame:
        """The achieved rate of every uplink, by a timed upload through it (tc), or the bucket's rate."""
        rows = []
        if self.network is None:
            for d in self.devices:
                rows.append([d.name, d.uplink_mbps, d.uplink_mbps, float("nan"), 0, "token-bucket"])
            return pd.DataFrame(rows, columns=LINK_COLUMNS)
        py = sys.executable
        sink = self._start(
            [py, "-m", "dnnpart.testbed.probe", "sink", str(PROBE_PORT)],
            self._netns(None),
            None,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            if "listening" not in _read_line(sink.stdout, START_TIMEOUT_S):
                raise TestbedError("the link probe's sink did not start")
            for k, d in enumerate(self.devices):  # one at a time: the probes would share the CPU
                nbytes = probe.probe_bytes(d.uplink_mbps, self.probe_s)
                sender = self._start(
                    [py, "-m", "dnnpart.testbed.probe", "send", self.server_address(k, PROBE_PORT).split(":")[0]]
                    + [str(PROBE_PORT), str(nbytes)],
                    self._netns(k),
                    None,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                try:
                    out, err = sender.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    raise TestbedError(f"the link probe of {d.name} did not finish within 120 s") from None
                if sender.returncode != 0:
                    raise TestbedError(f"the link probe of {d.name} failed: {err.strip().splitlines()[-1:]}")
                r = json.loads(out)
                rows.append([d.name, d.uplink_mbps, r["achieved_mbps"], r["rtt_ms"], nbytes, "tc"])
        finally:
            _stop(sink)
        return pd.DataFrame(rows, columns=LINK_COLUMNS)

    def _cache_args(self) -> list[str]:
        return ["--layer-cache", str(self.layer_cache)] if self.layer_cache is not None else []

    def fill_layer_cache(self):
        """Build every network's layers once, here, rather than in each process that starts without them."""
        from dnnpart.runtime.layer_cache import LayerCache
        from dnnpart.runtime.split import cached_split_network

        for network in sorted({d.network for d in self.devices}):
            cached_split_network(network, 0, LayerCache(self.layer_cache))

    def check_speed(self) -> pd.DataFrame:
        """How fast the emulated devices and the server run now against their profiles, as factors that scale
        every prediction of the run (`scale`; 1 with `speed_runs` = 0).

        The server runs each network on its core alone, SERVER_SPEED_RUNS * `speed_runs` times (the median).
        The devices run a calibration start: the runtime's own server and device processes, every device all
        local for `speed_runs` rounds, exactly as Case 3 runs (its files under OUT/cases/speed-check). A
        separate timing process that ran whole networks back to back under the quota timed the boards a median
        7 % (0-15 %) slower than Case 3's rounds a minute later (2026-12-04), enough to make offloading look
        better than it was where the plan's margin was smaller. Identical boards (same network, profile and
        quota) share one factor, the median over all their rounds: they differ only by noise (an AlexNet board's
        all-local time spread over up to 19 % of its median in three Case 3 rounds, 2026-12-07), which a median
        of more rounds damps.

        This VM's speed moves by tens of per cent within minutes (and by 2x between the CPUs it has moved
        between), so a profile measured on another day predicts a different machine. Like the links' achieved
        rates, the factors are measured right before the cases. They make the predicted all-local time of a
        board its measured one, by construction; what stays tested is the rest: the split, the uploads, the
        server's order and contention, and the drift since the check.
        """
        from dnnpart.delay import load_delay_model
        from dnnpart.networks import get

        server_model = load_delay_model(self.scenario.server_profile.spec)
        networks = sorted({d.network for d in self.devices})
        predicted = [float(load_delay_model(d.profile).predict(get(d.network), "device").sum()) for d in self.devices]
        predicted += [float(server_model.predict(get(n), "server").sum()) for n in networks]
        who = [d.name for d in self.devices] + ["server"] * len(networks)
        runs = [self.speed_runs] * len(self.devices) + [SERVER_SPEED_RUNS * self.speed_runs] * len(networks)
        frame = pd.DataFrame({"who": who, "network": [d.network for d in self.devices] + networks, "runs": runs})
        frame["predicted_ms"] = predicted
        frame["measured_ms"] = float("nan")
        frame["scale"] = 1.0
        if self.speed_runs == 0:
            return frame[SPEED_COLUMNS]
        server = frame["who"] == "server"
        for n in networks:
            proc = self._time_network(n, "server", self.server_threads, SERVER_SPEED_RUNS * self.speed_runs)
            frame.loc[server & (frame["network"] == n), "measured_ms"] = self._speed_result(proc, f"server ({n})")
        # one factor for the server: its networks' summed time
        frame.loc[server, "scale"] = frame.loc[server, "measured_ms"].sum() / frame.loc[server, "predicted_ms"].sum()
        self.speed_frame = frame  # the calibration start's devices predict with factor 1: the profile's sum
        done = self.run_case(Case(SPEED_CASE, "plan", [d.n_layers for d in self.devices]), self.speed_runs)
        measured = done["completions"].groupby("device")["measured_ms"]
        ratios: dict[tuple, list[float]] = {}  # per board: every round of every device, measured / predicted
        for d, want in zip(self.devices, predicted):
            ratios.setdefault(board_of(d), []).extend(measured.get_group(d.name) / want)
        frame.loc[~server, "measured_ms"] = [float(measured.get_group(d.name).median()) for d in self.devices]
        frame.loc[~server, "scale"] = [float(np.median(ratios[board_of(d)])) for d in self.devices]
        self.speed_frame = None
        return frame[SPEED_COLUMNS]

    def _time_network(self, network: str, group: str, threads: int, runs: int) -> subprocess.Popen:
        procs = [str(f) for f in self.groups[group].procs_files()] if group in self.groups else []
        cmd = [sys.executable, "-m", "dnnpart.testbed.slowdown", network, str(runs), str(threads)]
        cmd += [*self._cache_args(), *procs]
        return self._start(cmd, None, None, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def _speed_result(self, proc: subprocess.Popen, what: str) -> float:
        try:
            out, err = proc.communicate(timeout=SPEED_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise TestbedError(f"the speed check of {what} did not finish within {SPEED_TIMEOUT_S} s") from None
        with self.lock:
            self.procs.remove(proc)
        if proc.returncode != 0:
            raise TestbedError(f"the speed check of {what} failed: {err.strip().splitlines()[-1:]}")
        return float(json.loads(out)["median_ms"])

    def scales(self) -> dict[str, float]:
        """The speed check's factor per device name and for "server"."""
        return dict(zip(self.speed_frame["who"], self.speed_frame["scale"]))

    def achieved(self) -> dict[str, float]:
        return dict(zip(self.links_frame["device"], self.links_frame["achieved_mbps"]))

    # --- the cases ---------------------------------------------------------------------------------------
    def predicted_instance(self):
        """The optimiser's instance as the server builds it: profiles' predictions, the achieved link rates."""
        from dnnpart.delay import load_delay_model
        from dnnpart.networks.zoo import get
        from dnnpart.optimiser.instance import Instance
        from dnnpart.planning.compile import device_from_times

        server = load_delay_model(self.scenario.server_profile.spec).predict
        rate, scale = self.achieved(), self.scales()
        devices = []
        for d in self.devices:
            table = get(d.network)
            local = load_delay_model(d.profile).predict(table, "device").to_numpy(dtype=float) * scale[d.name]
            srv = server(table, "server").to_numpy(dtype=float) * scale["server"]
            devices.append(device_from_times(d.name, table, local, srv, rate[d.name], self.scenario.load))
        return Instance(tuple(devices))

    def cases(self, policy: str = "plan") -> list[Case]:
        """Case 1 under `policy`, then cases 2 and 3 and independent cuts (the plan's order for fixed cuts)."""
        from dnnpart.optimiser.cuts import independent_cuts

        out = [Case("case1", policy, None)]
        out.append(Case("case2", "plan", [0] * len(self.devices)))
        out.append(Case("case3", "plan", [d.n_layers for d in self.devices]))
        out.append(Case("independent", "plan", independent_cuts(self.predicted_instance())))
        assert [c.method for c in out] == list(METHODS)
        return out

    def _wait_devices(self, case: Case, devices: list[subprocess.Popen]) -> None:
        """Until every device has finished (bounded); a device that fails ends the case at once, so the others
        do not wait at the server's barrier for one that is gone."""
        deadline = time.monotonic() + CASE_TIMEOUT_S
        running = dict(zip(devices, self.devices))
        while running:
            for proc, d in list(running.items()):
                if proc.poll() is None:
                    continue
                if proc.returncode != 0:
                    raise TestbedError(
                        f"{case.label}: device {d.name} exited with status {proc.returncode}: {_tail(proc.stderr)}"
                    )
                del running[proc]
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"{case.label}: devices {[d.name for d in running.values()]} did not finish "
                    f"within {CASE_TIMEOUT_S} s"
                )
            time.sleep(0.05)

    def run_case(self, case: Case, repeats: int, first_round: int = 0) -> dict[str, pd.DataFrame]:
        """Start the server and every device for one case and run `repeats` rounds, numbered from `first_round`
        (the devices' inputs follow the round); return its tidy frames (timeline, completions, plan)."""
        folder = self.out / "cases" / case.label / f"r{first_round}"
        py = sys.executable
        tc = self.network is not None
        server_cmd = [py, "-m", "dnnpart", "serve", "--host", "0.0.0.0" if tc else "127.0.0.1"]
        server_cmd += ["--port", str(SERVER_PORT if tc else 0), "--devices", str(len(self.devices))]
        server_cmd += ["--policy", case.policy, "--server-profile", str(self.scenario.server_profile.spec)]
        server_cmd += ["--load", str(self.scenario.load), "--threads", str(self.server_threads)]
        scale = self.scales()
        server_cmd += ["--server-scale", f"{scale['server']:.6g}"]
        server_cmd += ["--time-limit", str(self.time_limit_s), "--out", str(folder / "server")]
        server_cmd += self._cache_args()
        server = self._start(server_cmd, self._netns(None), "server", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = _read_line(server.stdout, START_TIMEOUT_S, binary=True)
        if "listening on" not in line:
            _stop(server)
            raise TestbedError(f"{case.label}: the server did not start: {_tail(server.stderr)}")
        port = int(line.split("listening on ", 1)[1].split(",")[0].rsplit(":", 1)[1])
        rate = self.achieved()
        devices = []
        for k, d in enumerate(self.devices):
            procs = [str(f) for f in self.groups[d.name].procs_files()] if d.name in self.groups else []
            cmd = [py, "-m", "dnnpart", "device", "--server", self.server_address(k, port), "--name", d.name]
            cmd += [arg for f in procs for arg in ("--cgroup-procs", f)]  # joined once its layers are warm
            cmd += ["--network", d.network, "--profile", d.profile, "--uplink-mbps", f"{rate[d.name]:.6g}"]
            cmd += ["--local-scale", f"{scale[d.name]:.6g}"]
            cmd += ["--repeats", str(repeats), "--input-seed", str(10 * k + first_round), "--json", "--timeout", "300"]
            cmd += ["--save-outputs", str(folder / "devices" / d.name), *self._cache_args()]
            if case.cuts is not None:
                cmd += ["--cut", str(case.cuts[k])]
            if not tc:
                cmd += ["--token-bucket-mbps", f"{d.uplink_mbps:.6g}"]
            # stdout unread: its results are in --save-outputs, and a pipe nobody drains would block a long run's
            # JSON (1000 rounds are about 200 KB, a pipe holds 64 KB)
            devices.append(self._start(cmd, self._netns(k), None, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        try:
            self._wait_devices(case, devices)
        finally:
            for proc in [*devices, server]:
                _stop(proc)
                with self.lock:
                    if proc in self.procs:
                        self.procs.remove(proc)
        if server.returncode not in (0, -signal.SIGTERM):
            raise TestbedError(f"{case.label}: the server exited with {server.returncode}: {_tail(server.stderr)}")
        frames = {}
        for name in ("timeline", "completions", "plan"):
            df = pd.read_csv(folder / "server" / f"{name}.csv")
            if "round" in df:
                df["round"] += first_round
            df.insert(0, "policy", case.policy)
            df.insert(0, "method", case.method)
            df.insert(0, "case", case.label)
            frames[name] = df
        return frames


def _read_line(stream, timeout_s: float, binary: bool = False) -> str:
    box = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout=timeout_s)
    line = box[0] if box else ""
    return line.decode(errors="replace") if binary and isinstance(line, bytes) else line


def _tail(stream) -> str:
    """The last line of a finished process's stderr (its one-line error)."""
    try:
        text = stream.read() if stream else ""
    except (OSError, ValueError):
        return "(no output)"
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    lines = [s for s in text.strip().splitlines() if s.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after grace_s; always reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class TestbedResult:
    """Every case's tidy frames, the links and the mechanism (what `report.py` draws)."""

    __test__ = False

    timeline: pd.DataFrame  # case, method, policy, round, device, layer, where, start_ms, finish_ms, clock
    completions: pd.DataFrame  # case, method, policy, round, device, cut, predicted_ms, measured_ms
    plans: pd.DataFrame  # case, method, policy, device, layer, where, start_ms, finish_ms (planned)
    links: pd.DataFrame
    info: dict
    speed: pd.DataFrame  # the speed check: who, network, runs, predicted_ms, measured_ms, scale


def round_order(cases: list, repeats: int) -> list[tuple[int, object]]:
    """(round, case) in the order they run. Round r of every case runs before round r + 1 of any: this host's
    speed drifts by several per cent within a minute, and cases compared on one point should see the same drift,
    not one case each minute's. Odd rounds run the cases in reverse (A B C, C B A, A B C, ...), so that a steady
    drift does not favour the case that always runs first."""
    return [(r, case) for r in range(repeats) for case in (cases if r % 2 == 0 else cases[::-1])]


def run_testbed(
    scenario_path,
    out,
    policy: str = "plan",
    repeats: int = 3,
    fallback: bool = False,
    compare_policies: bool = False,
    server_threads: int = 1,
    probe_s: float = 1.0,
    methods=METHODS,
    progress=None,
    speed_runs: int = 3,
    layer_cache=None,
) -> TestbedResult:
    """Set up, run Case 1 (under `policy`), Case 2, Case 3 and independent cuts (or the `methods` given),
    write the CSVs, clean up. `speed_runs` whole-network runs per device and server network calibrate the
    predictions to this machine's speed now (`Testbed.check_speed`); 0 predicts from the profiles as they are.
    `layer_cache` (a folder) keeps the layer models between runs; by default a temporary one per run."""
    from dnnpart.runtime.server import POLICIES

    if policy not in POLICIES:
        raise TestbedError(f"unknown policy {policy!r}; valid policies: {', '.join(POLICIES)}")
    if isinstance(repeats, bool) or int(repeats) != repeats or not 1 <= repeats <= 1000:
        raise TestbedError(f"--repeats must be an integer in 1..1000, got {repeats}")
    out = Path(out)
    frames: dict[str, list] = {"timeline": [], "completions": [], "plan": []}
    load_before = os.getloadavg()
    started = time.time()
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or "case1" not in methods and compare_policies:
        raise TestbedError(f"methods must be some of {', '.join(METHODS)} (case1 to compare policies), got {methods}")
    if not 0.05 <= probe_s <= 60:
        raise TestbedError(f"--probe-seconds must be in 0.05..60, got {probe_s}")
    if isinstance(speed_runs, bool) or int(speed_runs) != speed_runs or not 0 <= speed_runs <= 100:
        raise TestbedError(f"--speed-runs must be an integer in 0..100, got {speed_runs}")
    testbed = Testbed(
        Path(scenario_path),
        out,
        fallback,
        server_threads,
        probe_s=probe_s,
        speed_runs=int(speed_runs),
        layer_cache=Path(layer_cache) if layer_cache is not None else None,
    )
    with testbed as tb:
        plan_cuts = None
        cases = [c for c in tb.cases(policy) if c.method in methods]
        runs = {}  # (case's index, round): its frames, written case by case, round by round, whatever ran first
        for r, case in round_order(cases, repeats):
            if progress:
                progress(f"{case.label}: {len(tb.devices)} devices, round {r + 1} of {repeats}")
            got = runs[cases.index(case), r] = tb.run_case(case, 1, first_round=r)
            if case.method == "case1" and r == 0:
                plan_cuts = got["completions"].drop_duplicates("device").set_index("device")["cut"]
                plan_cuts = [int(plan_cuts[d.name]) for d in tb.devices]
        for (_, r), got in sorted(runs.items()):
            for k in frames:
                if k != "plan" or r == 0:  # every start solves the same instance: one plan per case
                    frames[k].append(got[k])
        for other in [p for p in POLICIES if p != policy] if compare_policies else []:
            case = Case("case1", other, plan_cuts)
            if progress:
                progress(f"{case.label}: the plan's cuts under policy {other}")
            got = tb.run_case(case, repeats)
            for k in frames:
                frames[k].append(got[k])
        info = {
            "scenario": str(Path(scenario_path).resolve()),
            "mechanism": tb.mechanism.__dict__ | {"line": tb.mechanism.line(), "real": tb.mechanism.real},
            "qdiscs": tb.network.qdiscs() if tb.network else {},
            "cgroups": {name: g.limits() | {"cpus": g.cpus} for name, g in tb.groups.items()},
            "devices": [d.__dict__ for d in tb.devices],
            "server_profile": str(tb.scenario.server_profile.spec),
            "server_threads": server_threads,
            "speed_runs": int(speed_runs),
            "repeats": repeats,
            "policy": policy,
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "seconds": round(time.time() - started, 1),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        links_frame, speed_frame = tb.links_frame, tb.speed_frame
    result = TestbedResult(
        timeline=pd.concat(frames["timeline"], ignore_index=True),
        completions=pd.concat(frames["completions"], ignore_index=True),
        plans=pd.concat(frames["plan"], ignore_index=True),
        links=links_frame,
        info=info,
        speed=speed_frame,
    )
    write_csv(result.timeline, out / "subtasks.csv")
    write_csv(result.completions, out / "completions.csv")
    write_csv(result.plans, out / "plans.csv")
    write_csv(result.links, out / "links.csv")
    write_csv(result.speed, out / "speed.csv")
    atomic_write_text(out / "testbed.json", json.dumps(info, indent=1, default=str) + "\n")
    return result


def load_result(out) -> TestbedResult:
    """A finished run's result, read back from its output folder (e.g. to redraw its report)."""
    out = Path(out)
    try:
        return TestbedResult(
            timeline=pd.read_csv(out / "subtasks.csv"),
            completions=pd.read_csv(out / "completions.csv"),
            plans=pd.read_csv(out / "plans.csv"),
            links=pd.read_csv(out / "links.csv"),
            info=json.loads((out / "testbed.json").read_text(encoding="utf-8")),
            speed=pd.read_csv(out / "speed.csv"),
        )
    except (OSError, ValueError) as exc:
        raise TestbedError(f"{out}: not a finished testbed run ({exc})") from None
