"""Emulated links: one network namespace per device joined to the server's namespace by a veth pair, shaped with tc.

Layout of a run with pid P (names carry the pid, so parallel runs never collide; addresses live only inside
the run's own namespaces, so every run may use the same private range):

    namespace dtb-P-s (the server)            namespace dtb-P-dK (device K)
    tbPsK  10.77.K.1/24  <---- veth ---->     tbPdK  10.77.K.2/24
    egress: downlink (tbf [+ netem])          egress: uplink (tbf [+ netem])

Shaping follows Mininet's TCIntf (tbf as the root qdisc, netem as its child for the delay). Two choices matter
for the achieved rate: tbf counts whole Ethernet frames while an upload's time is its payload over the rate, so
the configured rate is raised by the frame overhead of a full TCP segment (1514 / 1448 bytes); and the burst is
small (two frames, or 1 ms of the rate) so that a tensor of a few KB is not sent at line speed. The queue is deep
(QUEUE_BYTES), so that tbf delays a device's packets but never drops them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dnnpart.errors import TestbedError

NETNS_DIR = Path("/run/netns")
PREFIX = "dtb-"
SUBNET = "10.77"
MTU = 1500
FRAME_OVERHEAD = (MTU + 14) / (MTU - 52)  # Ethernet frame of a full segment / its TCP payload (with timestamps)
COMMAND_TIMEOUT_S = 20
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
# A link carries one device's traffic, so its queue never needs to drop: a drop costs TCP a retransmission, and a
# tail drop a timeout of 200 ms or more that the probe or an upload then measures as a slow link. Twice the
# kernel's default send-buffer cap (tcp_wmem, 4 MiB) is more than one connection can have in flight (a 1 s probe at
# 2.5 Mbps, 15 times: 154 drops with a 0.5 s queue, none with this one; 2026-12-03).
QUEUE_BYTES = 8 << 20


def tool(name: str) -> str | None:
    """The path of `ip` or `tc` (they live in /usr/sbin, often not on a user's PATH)."""
    return shutil.which(name) or next((f"{d}/{name}" for d in ("/usr/sbin", "/sbin") if Path(d, name).exists()), None)


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ip/tc with a checked return code; a failure is one line naming the command and its error."""
    exe = tool(args[0])
    if exe is None:
        raise TestbedError(f"{args[0]} (iproute2) is not installed")
    try:
        done = subprocess.run([exe, *args[1:]], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise TestbedError(f"`{' '.join(args)}` did not finish within {COMMAND_TIMEOUT_S} s") from None
    if check and done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise TestbedError(f"`{' '.join(args)}` failed: {reason[0] if reason else f'exit {done.returncode}'}")
    return done


def can_shape() -> str | None:
    """None if namespaces and tc are usable here, else the reason they are not."""
    if os.geteuid() != 0:
        return "not root"
    for name in ("ip", "tc"):
        if tool(name) is None:
            return f"{name} (iproute2) is not installed"
    return None


def tbf_args(rate_mbps: float) -> list[str]:
    """tbf parameters for a payload rate: the rate raised by the frame overhead, a small burst, and a queue
    longer than a TCP sender can have in flight."""
    rate_bps = rate_mbps * 1e6 * FRAME_OVERHEAD
    burst = max(2 * (MTU + 14), int(rate_bps / 8 * 1e-3))
    limit = max(QUEUE_BYTES, int(rate_bps / 8 * 0.5))
    return ["rate", f"{rate_bps:.0f}bit", "burst", str(burst), "limit", str(limit)]


@dataclass
class Link:
    """Device k's link: its namespace, the two ends and their addresses, and the shaping asked for."""

    index: int
    uplink_mbps: float
    downlink_mbps: float | None = None
    delay_ms: float = 0.0

    def names(self, pid: int) -> dict:
        k = self.index
        return {
            "netns": f"{PREFIX}{pid}-d{k}",
            "server_end": f"tb{pid}s{k}",
            "device_end": f"tb{pid}d{k}",
            "server_ip": f"{SUBNET}.{k}.1",
            "device_ip": f"{SUBNET}.{k}.2",
        }


def shape(netns: str, dev: str, rate_mbps: float | None, delay_ms: float) -> None:
    """Root qdisc of one end: tbf at the rate (if any), netem delay under it (or alone) if delay_ms > 0."""
    base = ["ip", "netns", "exec", netns, "tc", "qdisc", "add", "dev", dev]
    if rate_mbps is not None:
        run(*base, "root", "handle", "5:", "tbf", *tbf_args(rate_mbps))
        if delay_ms > 0:
            run(*base, "parent", "5:1", "handle", "10:", "netem", "delay", f"{delay_ms}ms", "limit", "100000")
    elif delay_ms > 0:
        run(*base, "root", "handle", "10:", "netem", "delay", f"{delay_ms}ms", "limit", "100000")


class Network:
    """The namespaces, veth pairs and qdiscs of one testbed run; `close()` removes them (idempotent)."""

    def __init__(self, links: list[Link], pid: int | None = None):
        self.pid = os.getpid() if pid is None else pid
        self.links = links
        self.server_netns = f"{PREFIX}{self.pid}-s"
        self.made: list[str] = []  # namespaces created, removed in reverse order

    def _add_netns(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.made.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        # an upload after an idle round must not restart TCP slow start (the sysctl is per namespace)
        in_netns(name, ["sysctl", "-q", "-w", "net.ipv4.tcp_slow_start_after_idle=0"])

    def open(self) -> Network:
        try:
            self._add_netns(self.server_netns)
            for link in self.links:
                n = link.names(self.pid)
                self._add_netns(n["netns"])
                run(
                    "ip", "link", "add", n["server_end"], "netns", self.server_netns, "mtu", str(MTU),
                    "type", "veth", "peer", "name", n["device_end"], "netns", n["netns"], "mtu", str(MTU),
                )  # fmt: skip
                for ns, dev, ip in (
                    (self.server_netns, "server_end", "server_ip"),
                    (n["netns"], "device_end", "device_ip"),
                ):
                    run("ip", "-n", ns, "addr", "add", f"{n[ip]}/24", "dev", n[dev])
                    run("ip", "-n", ns, "link", "set", n[dev], "up")
                shape(n["netns"], n["device_end"], link.uplink_mbps, link.delay_ms)
                shape(self.server_netns, n["server_end"], link.downlink_mbps, link.delay_ms)
        except BaseException:
            self.close()
            raise
        return self

    def qdiscs(self) -> dict[str, str]:
        """`tc qdisc show` of every shaped end, for the report."""
        shown = {}
        for link in self.links:
            n = link.names(self.pid)
            for ns, dev in ((n["netns"], n["device_end"]), (self.server_netns, n["server_end"])):
                shown[dev] = run("ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev", dev).stdout.strip()
        return shown

    def close(self) -> None:
        """Delete the namespaces (their veth ends and qdiscs go with them), newest first."""
        errors = []
        while self.made:
            name = self.made.pop()
            kill_netns_processes(name)
            done = run("ip", "netns", "delete", name, check=False)
            if done.returncode != 0 and (NETNS_DIR / name).exists():
                errors.append(f"{name}: {done.stderr.strip()}")
        if errors:
            raise TestbedError(f"could not remove namespaces: {'; '.join(errors)}")

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()


def kill_netns_processes(name: str) -> None:
    """SIGKILL whatever still runs in a namespace (a device left behind), so deleting it frees everything."""
    done = run("ip", "netns", "pids", name, check=False)
    for pid in done.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def namespaces(pid: int | None = None) -> list[str]:
    """The testbed's namespaces (all runs, or the run of `pid`)."""
    prefix = PREFIX if pid is None else f"{PREFIX}{pid}-"
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def remove_stale() -> list[str]:
    """Delete the namespaces of testbed runs whose process is gone (a run killed by SIGKILL cannot clean up)."""
    from dnnpart.testbed.cpu_quota import pid_alive

    removed = []
    for name in namespaces():
        try:
            pid = int(name[len(PREFIX) :].split("-")[0])
        except ValueError:
            continue
        if not pid_alive(pid):
            kill_netns_processes(name)
            run("ip", "netns", "delete", name, check=False)
            removed.append(name)
    return removed


# --- starting processes inside a namespace and a cgroup --------------------------------------------------


# The signals that stop a testbed (Ctrl-C, kill): blocked while a child is started (run.Testbed._start).
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def child_setup(netns: str | None, cgroup_procs: list[Path]):
    """A preexec_fn: join the namespace and the cgroups, and die with the testbed (PR_SET_PDEATHSIG), before
    the child runs anything, so no instant of the device runs outside its emulated board."""
    libc = ctypes.CDLL(None, use_errno=True)
    netns_path = str(NETNS_DIR / netns) if netns else None
    parent = os.getpid()

    def setup():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the parent while it forks
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the testbed died before prctl took effect
            os._exit(1)
        for procs in cgroup_procs:
            with open(procs, "w") as fh:
                fh.write(str(os.getpid()))
        if netns_path:
            fd = os.open(netns_path, os.O_RDONLY)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                os._exit(1)
            os.close(fd)

    return setup


def popen(cmd: list[str], netns: str | None = None, cgroup_procs: list[Path] = (), **kwargs) -> subprocess.Popen:
    """Start cmd in a namespace and cgroups (both optional); it is killed if the testbed dies."""
    return subprocess.Popen(cmd, preexec_fn=child_setup(netns, list(cgroup_procs)), **kwargs)  # noqa: PLW1509


def in_netns(netns: str, cmd: list[str]) -> None:
    """Run a short command inside a namespace (checked)."""
    exe = tool(cmd[0]) or cmd[0]
    proc = popen([exe, *cmd[1:]], netns, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise TestbedError(f"`{' '.join(cmd)}` in {netns} did not finish within {COMMAND_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise TestbedError(f"`{' '.join(cmd)}` in {netns} failed: {(err or out).strip()[:200]}")


def wait_all(procs, timeout_s: float) -> None:
    """Wait for every process, bounded by one deadline."""
    deadline = time.monotonic() + timeout_s
    for p in procs:
        p.wait(timeout=max(0.1, deadline - time.monotonic()))
