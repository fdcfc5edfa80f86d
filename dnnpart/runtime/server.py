"""The edge server (`dnnpart serve`): the MEC loop of the paper over gRPC.

register -> plan -> rounds of (start, run, report). Devices register their network, local times and uplink;
once the expected number has registered (or the plan deadline passes) the server solves the joint problem with
dnnpart's optimiser and answers every device with its cut. Each round starts at one server time for all devices
(the optimiser's time 0); devices run their head, upload the cut tensor, and the scheduler runs the offloaded
layers one at a time (each in its device's ModelInfer thread), in the plan's order (`plan`), by arrival
(`fifo`) or shortest predicted remaining work first (`srpt`). The server time-stamps every layer and keeps the
devices' own reports, and writes everything as tidy rows into its output folder (timeline.csv, plan.csv,
completions.csv, server.log).

Every refusal is a gRPC status with a one-line reason and a line in server.log; nothing is written outside the
output folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pandas as pd

from dnnpart.errors import DnnpartError, RuntimeConfigError
from dnnpart.files import atomic_write_bytes, atomic_write_text, write_csv
from dnnpart.runtime import protocol
from dnnpart.runtime.layer_cache import LayerCache
from dnnpart.runtime.layers import LayerRunner
from dnnpart.runtime.proto import runtime_pb2 as pb
from dnnpart.runtime.proto import runtime_pb2_grpc as pb_grpc
from dnnpart.runtime.split import (
    DATATYPE,
    SplitNetwork,
    cached_split_network,
    onnx_model_name,
    split_network,
    split_onnx,
)
from dnnpart.vocabulary import cut_name

POLICIES = ("plan", "fifo", "srpt")
TIMELINE_COLUMNS = ["round", "device", "layer", "where", "start_ms", "finish_ms", "clock"]
INFER_TIMEOUT_S = 600  # a run waits at most this long for its layers (bounds every handler)
PROBE_MAX_S = 60.0  # a probe that has not ended this long after its first chunk is refused
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MODELS_FOLDER = "models"  # uploaded ONNX models are kept in OUT/models/<sha256>.onnx


class Refused(Exception):
    """A request the server turns down: a gRPC status code and a one-line reason."""

    def __init__(self, code: grpc.StatusCode, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass
class ServeConfig:
    out: Path
    expected: int = 1  # plan once this many devices have registered
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (printed and written to server.json)
    policy: str = "plan"
    threads: int | None = None  # onnxruntime intra-op threads of the server's sessions
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    max_message_bytes: int = 16 << 20  # larger tensors are refused (VGG's largest layer input is 12.8 MB)
    max_model_bytes: int = 600 << 20  # larger uploaded ONNX models are refused (VGG16's file: 553 MB)
    models_dir: Path | None = None  # ONNX models the server holds from the start (besides OUT/models)
    layer_cache: LayerCache | None = None  # zoo networks' layer models kept between runs (runtime.layer_cache)
    plan_deadline_s: float | None = None  # plan with whoever registered this long after the first one
    barrier_timeout_s: float = 60.0  # a round starts without devices that are this late
    stall_s: float = 30.0  # plan policy: a device whose turn came but whose upload has not, is skipped
    server_profile: str = "measured"
    server_scale: float = 1.0  # multiplies every predicted server time: this machine now against the profile
    load: float = 0.0
    time_limit_s: float = 10.0  # the optimiser's time limit
    start_lead_ms: float = 50.0  # a round starts this long after its barrier releases

    def __post_init__(self):
        self.out = Path(self.out)
        if self.policy not in POLICIES:
            raise RuntimeConfigError(f"unknown policy {self.policy!r}; valid policies: {', '.join(POLICIES)}")
        if isinstance(self.expected, bool) or int(self.expected) != self.expected or self.expected < 1:
            raise RuntimeConfigError(f"--devices must be a positive integer, got {self.expected}")
        if not 0 <= int(self.port) < 65536:
            raise RuntimeConfigError(f"--port must be in 0..65535, got {self.port}")
        if self.threads is not None and self.threads < 1:
            raise RuntimeConfigError(f"--threads must be >= 1, got {self.threads}")
        if not (self.max_message_bytes >= 1024):
            raise RuntimeConfigError(
                f"the message size limit must be at least 1 KB, got {self.max_message_bytes} bytes"
            )
        if not (self.max_model_bytes >= 1024):
            raise RuntimeConfigError(f"the model size limit must be at least 1 KB, got {self.max_model_bytes} bytes")
        if self.models_dir is not None and not Path(self.models_dir).is_dir():
            raise RuntimeConfigError(f"--models {self.models_dir}: not a folder")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise RuntimeConfigError("TLS needs both --tls-cert and --tls-key")
        for what, value in (
            ("--plan-deadline", self.plan_deadline_s),
            ("--stall", self.stall_s),
            ("--barrier-timeout", self.barrier_timeout_s),
            ("--time-limit", self.time_limit_s),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise RuntimeConfigError(f"{what} must be a positive number of seconds, got {value}")
        if not (math.isfinite(self.server_scale) and self.server_scale > 0):
            raise RuntimeConfigError(f"--server-scale must be a positive number, got {self.server_scale}")


@dataclass
class Registered:
    name: str
    network: str  # the model's name: a zoo network, or onnx_model_name(sha256) of a device's ONNX model
    seed: int
    uplink_mbps: float
    local_ms: list[float]
    cut: int | None
    peer: str
    probe: str = ""  # how the device measured uplink_mbps, when it did (for the log)
    version: str = "0"  # the weight seed, or the ONNX file's sha256

    @property
    def key(self) -> tuple[str, str]:
        return (self.network, self.version)


@dataclass
class Job:
    """One device's offloaded layers in one round."""

    device: str
    round: int
    next_layer: int
    last_layer: int
    x: np.ndarray
    arrival_ns: int
    remaining_ms: list[float]  # predicted server ms of layers next_layer..last_layer
    done: threading.Event = field(default_factory=threading.Event)
    stamps: list = field(default_factory=list)  # (layer, start_ns, finish_ns)
    error: str | None = None


class Scheduler:
    """Runs every offloaded layer, one at a time, chosen by the policy at each layer boundary.

    There is no scheduler thread: each ModelInfer call's own thread waits until the policy picks its job and then
    runs the layer itself, so a device whose layers follow one another runs them without a hand-off between
    threads; when the policy picks another device's layer, that call's thread is woken to run it.
    """

    def __init__(self, server: EdgeServer):
        self.server = server
        self.cond = threading.Condition()
        self.jobs: dict[str, Job] = {}
        self.order: list[tuple[str, int]] = []
        self.pos = 0
        self.waiting_since: float | None = None
        self.skipped: set[str] = set()
        self.ran: set[tuple[str, int]] = set()  # (device, layer) run this round
        self.stopping = False
        self.running = False  # a layer is running (in some call's thread)
        self.busy_ns = 0  # time spent inside onnxruntime

    def new_round(self, order: list[tuple[str, int]]):
        with self.cond:
            self.order, self.pos, self.waiting_since, self.skipped = list(order), 0, None, set()
            self.ran = set()
            self.jobs = {d: j for d, j in self.jobs.items() if not j.done.is_set()}

    def cancel(self, device: str, reason: str):
        with self.cond:
            job = self.jobs.pop(device, None)
            if job is not None and not job.done.is_set():
                job.error = reason
                job.done.set()
            self.skipped.add(device)
            self.cond.notify_all()

    def stop(self):
        with self.cond:
            self.stopping = True
            for job in self.jobs.values():
                if not job.done.is_set():
                    job.error = "the server is shutting down"
                    job.done.set()
            self.cond.notify_all()

    def _end(self, job: Job, error: str | None = None):
        """Called with the lock held: the job is finished (or failed); the next pick is another thread's."""
        if not job.done.is_set():
            job.error = error
            job.done.set()
        if self.jobs.get(job.device) is job:
            del self.jobs[job.device]
        self.cond.notify_all()

    def run(self, job: Job, timeout_s: float):
        """Run the job's layers in this (the calling RPC's) thread, each when the policy picks it; returns when
        the job is done, failed, cancelled, or not finished within timeout_s (job.error says which)."""
        runner = self.server.runner(job)
        deadline = time.monotonic() + timeout_s
        with self.cond:
            self.jobs[job.device] = job
            while True:
                while not job.done.is_set() and not self.stopping:
                    if not self.running:
                        picked = self._pick()
                        if picked is job:
                            break
                        if picked is not None:  # its thread waits: wake it
                            self.cond.notify_all()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return self._end(job, f"layers not run within {timeout_s:g} s")
                    self.cond.wait(timeout=min(left, 0.05 if self.waiting_since is not None else 0.5))
                if job.done.is_set() or self.stopping:
                    return self._end(job, "the server is shutting down")
                layer = job.next_layer
                self.running = True
                self.cond.release()
                error = None
                try:
                    start = time.perf_counter_ns()
                    y = runner.run(layer, job.x)
                    finish = time.perf_counter_ns()
                except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types; the job must end
                    error = f"layer {layer} failed: {str(exc).splitlines()[0][:200]}"
                finally:
                    self.cond.acquire()
                    self.running = False
                if error is not None or job.done.is_set():  # failed, or cancelled while it ran
                    return self._end(job, error)
                self.busy_ns += finish - start
                job.stamps.append((layer, start, finish))
                self.ran.add((job.device, layer))
                job.x = y
                job.next_layer += 1
                job.remaining_ms.pop(0)
                if job.next_layer > job.last_layer:
                    return self._end(job)

    def _pick(self) -> Job | None:
        ready = [j for j in self.jobs.values() if not j.done.is_set()]
        if not ready:
            return None
        policy = self.server.config.policy
        if policy == "fifo":
            return min(ready, key=lambda j: (j.arrival_ns, j.device))
        if policy == "srpt":
            return min(ready, key=lambda j: (sum(j.remaining_ms), j.arrival_ns, j.device))
        while self.pos < len(self.order):  # policy plan: the next subtask in the plan's order, or wait for it
            device, layer = self.order[self.pos]
            job = self.jobs.get(device)
            if device in self.skipped or (device, layer) in self.ran:
                self.pos += 1
                self.waiting_since = None
                continue
            if job is not None and job.next_layer == layer:
                self.waiting_since = None
                return job
            now = time.monotonic()
            if self.waiting_since is None:
                self.waiting_since = now
            if now - self.waiting_since > self.server.config.stall_s:
                self.server.event(
                    f"stall: {device} had not uploaded {self.server.config.stall_s:g} s after its "
                    f"turn (layer {layer}); its layers leave the plan's order this round"
                )
                self.skipped.add(device)
                continue
            return None
        # devices outside the order (skipped after a stall, or late): first come first served
        return min(ready, key=lambda j: (j.arrival_ns, j.device))


class EdgeServer(pb_grpc.EdgeInferenceServicer):
    """The service's state and handlers; `serve()` wraps it in a gRPC server."""

    def __init__(self, config: ServeConfig):
        self.config = config
        config.out.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Condition()
        self.devices: dict[str, Registered] = {}
        self.splits: dict[tuple[str, str], SplitNetwork] = {}  # (model name, version) -> its layers
        self.runners: dict[tuple[str, str], LayerRunner] = {}
        self.onnx_files = self._held_models()  # sha256 -> an ONNX file the server holds
        self.build_lock = threading.Lock()
        self.predict_lock = threading.Lock()
        self.local_predictions: dict[tuple[str, str, str], list[float]] = {}  # (profile, model, version) -> ms
        self.write_lock = threading.Lock()
        self.plan = None  # dict once solved
        self.plan_error: str | None = None
        self.first_registration: float | None = None
        self.round = -1  # the last round started
        self.round_start_ns: dict[int, int] = {}
        self.participants: dict[int, list[str]] = {}
        self.arrivals: dict[int, set[str]] = {}
        self.ran: set[tuple[int, str]] = set()
        self.gone: set[str] = set()
        self.reported: dict[int, set[str]] = {}
        self.timeline: list[tuple] = []
        self.events: list[str] = []
        self.event_lock = threading.Lock()
        self.t0 = time.perf_counter_ns()
        self.log_file = open(config.out / "server.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed by close()
        self.scheduler = Scheduler(self)
        self.planner = threading.Thread(target=self._plan_when_ready, name="planner", daemon=True)
        self.stopping = False
        self.planner.start()
        threading.Thread(target=self._import_planner, name="import-planner", daemon=True).start()

    # --- bookkeeping -------------------------------------------------------------------------------------
    def event(self, line: str):
        stamp = (time.perf_counter_ns() - self.t0) / 1e9
        text = f"{stamp:10.3f} {line}"
        with self.event_lock:  # not self.lock: the scheduler logs a stall holding its own lock
            self.events.append(text)
            self.log_file.write(text + "\n")

    def refuse(self, context, method: str, refusal: Refused):
        self.event(f"refused {method} from {context.peer()}: {refusal.code.name}: {refusal.reason}")
        context.abort(refusal.code, refusal.reason)

    def _held_models(self) -> dict[str, Path]:
        """sha256 -> path of every .onnx file in --models and in OUT/models (uploads of an earlier run)."""
        held = {}
        for folder in (self.config.models_dir, self.config.out / MODELS_FOLDER):
            if folder is None or not Path(folder).is_dir():
                continue
            for path in sorted(Path(folder).glob("*.onnx")):
                digest = hashlib.sha256()
                with open(path, "rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        digest.update(block)
                held.setdefault(digest.hexdigest(), path)
        return held

    def _built(self, key: tuple[str, str], build) -> SplitNetwork:
        with self.build_lock:  # one build per model: AlexNet's layers take seconds to draw
            if key not in self.splits:
                split = build()
                self.runners[key] = LayerRunner(split.models, threads=self.config.threads).warm_up()
                self.splits[key] = split
            return self.splits[key]

    def split(self, network: str, seed: int) -> SplitNetwork:
        """A zoo network's layers drawn with `seed` (read from --layer-cache when it holds them)."""
        cache = self.config.layer_cache
        if cache is not None:
            return self._built((network, str(seed)), lambda: cached_split_network(network, seed, cache))
        return self._built((network, str(seed)), lambda: split_network(network, seed))

    def onnx_split(self, sha256: str) -> SplitNetwork | None:
        """The layers of a held ONNX model (built on first use), or None when the server does not hold it.
        A model that is not a chain, or that from_onnx refuses, raises DnnpartError."""
        with self.lock:
            path = self.onnx_files.get(sha256)
        if path is None:
            return None
        try:
            return self._built((onnx_model_name(sha256), sha256), lambda: split_onnx(path, sha256))
        except OSError as exc:
            raise DnnpartError(f"{onnx_model_name(sha256)}: cannot read {path.name}: {exc.strerror or exc}") from None
        except DnnpartError as exc:  # name the model, not the server's path
            raise DnnpartError(str(exc).replace(str(path), path.name)) from None
        except Exception as exc:  # noqa: BLE001 - onnx's and onnxruntime's own errors on a model from_onnx read
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise DnnpartError(f"{onnx_model_name(sha256)}: cannot be split into runnable layers: {detail}") from None

    def runner(self, job: Job) -> LayerRunner:
        return self.runners[self.devices[job.device].key]

    # --- planning ----------------------------------------------------------------------------------------
    def _import_planner(self):
        """Import the optimiser and the delay models, and predict once from the server's profile, while the
        devices start: done on the first registration and the plan, these took about a second of every start
        (pyomo, statsmodels, the first prediction). Errors are left for the plan to report."""
        try:
            import dnnpart.optimiser.solver  # noqa: F401 - imported for its side effect: the module cache
            from dnnpart.delay import load_delay_model
            from dnnpart.networks.zoo import get

            load_delay_model(self.config.server_profile).predict(get("lenet"), "server")
        except Exception:  # noqa: BLE001, S110 - the plan (or the registration) reports it, with context
            pass

    def _plan_when_ready(self):
        deadline = self.config.plan_deadline_s
        with self.lock:
            while not self.stopping:
                n = len(self.devices)
                due = (
                    deadline is not None
                    and self.first_registration is not None
                    and time.monotonic() - self.first_registration >= deadline
                )
                if n >= self.config.expected or (due and n > 0):
                    break
                self.lock.wait(timeout=0.1)
            if self.stopping:
                return
            devices = list(self.devices.values())
        try:
            plan = self._solve(devices)
        except DnnpartError as exc:
            with self.lock:
                self.plan_error = str(exc)
                self.lock.notify_all()
            self.event(f"plan failed: {exc}")
            return
        with self.lock:
            self.plan = plan
            self.lock.notify_all()
        self.event(
            f"plan: {len(devices)} devices, cuts {plan['cuts']}, predicted average "
            f"{plan['avg_delay_ms']:.3f} ms ({plan['status']}, policy {self.config.policy})"
        )
        write_csv(plan["frame"], self.config.out / "plan.csv")

    def _solve(self, devices: list[Registered]) -> dict:
        from dnnpart.delay import load_delay_model
        from dnnpart.optimiser.instance import Instance
        from dnnpart.optimiser.solver import solve
        from dnnpart.planning.compile import device_from_times

        model = load_delay_model(self.config.server_profile)
        server_ms = {}
        for d in devices:
            if d.key not in server_ms:
                predicted = model.predict(self.splits[d.key].table, "server").to_numpy(dtype=float)
                server_ms[d.key] = predicted * self.config.server_scale
        instance = Instance(
            tuple(
                device_from_times(
                    d.name, self.splits[d.key].table, d.local_ms, server_ms[d.key], d.uplink_mbps, self.config.load
                )
                for d in devices
            )
        )
        given = [d.cut for d in devices]
        if all(c is None for c in given):
            solution = solve(instance, time_limit=self.config.time_limit_s)
            schedule, status = solution.schedule, solution.status
        elif all(c is not None for c in given):
            solution = solve(instance, time_limit=self.config.time_limit_s, fixed_cuts=given)
            schedule, status = solution.schedule, solution.status
        else:  # some cuts fixed, the others free: solve() takes all or none, the heuristic takes cut sets
            from dnnpart.optimiser.cuts import candidate_cuts
            from dnnpart.optimiser.heuristic import heuristic

            sets = [[c] if c is not None else candidate_cuts(dev) for c, dev in zip(given, instance.devices)]
            schedule, status = heuristic(instance, sets, time_budget_s=self.config.time_limit_s), "heuristic"
        schedule.validate()
        names = instance.names
        return {
            "instance": instance,
            "cuts": list(schedule.cuts),
            "avg_delay_ms": schedule.avg_delay_ms,
            "status": status,
            "order": [(names[i], j) for i, j in schedule.server_order],
            "completion_ms": dict(zip(names, schedule.completion_ms)),
            "frame": schedule.to_frame(),
            "devices": names,
        }

    # --- the Open Inference Protocol ---------------------------------------------------------------------
    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True, server_time_ns=time.perf_counter_ns())

    def ServerReady(self, request, context):
        with self.lock:
            return pb.ServerReadyResponse(ready=self.plan is not None)

    def ModelMetadata(self, request, context):
        try:
            with self.lock:
                known = [s for s in self.splits.values() if request.version in ("", s.version)]
            found = [s for s in known if s.network == request.name]
            if not found:
                names = ", ".join(sorted({s.network for s in known})) or "(none)"
                raise Refused(grpc.StatusCode.NOT_FOUND, f"no model {request.name!r}; registered networks: {names}")
            s = found[0]
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=s.network,
                versions=[s.version],
                platform="onnxruntime",
                inputs=[
                    tensor(name=s.table.attrs.get("onnx_input", "data"), datatype=DATATYPE, shape=list(s.shapes[0]))
                ],
                outputs=[tensor(name=s.layer_names[-1], datatype=DATATYPE, shape=list(s.shapes[-1]))],
                layers=list(s.layer_names),
                sha256=s.sha256,
            )
        except Refused as refusal:
            self.refuse(context, "ModelMetadata", refusal)

    def ModelInfer(self, request, context):
        received_ns = time.perf_counter_ns()
        try:
            job, split = self._accept_infer(request, received_ns)
        except Refused as refusal:
            self.refuse(context, "ModelInfer", refusal)
            return None

        def on_end():  # called when the RPC ends for any reason; only a job still waiting was abandoned
            if not job.done.is_set():
                self.scheduler.cancel(job.device, "the device disconnected")
                self.event(f"disconnected: {job.device} left round {job.round} before its result")

        context.add_callback(on_end)
        self.scheduler.run(job, INFER_TIMEOUT_S)
        if job.error:
            self.refuse(context, "ModelInfer", Refused(grpc.StatusCode.ABORTED, f"{job.device}: {job.error}"))
            return None
        start_ns = self.round_start_ns[job.round]
        rows = [
            pb.TimelineRow(layer=j, where="server", start_ms=(a - start_ns) / 1e6, finish_ms=(b - start_ns) / 1e6)
            for j, a, b in job.stamps
        ]
        with self.lock:
            self.timeline += [
                (job.round, job.device, r.layer, "server", r.start_ms, r.finish_ms, "server") for r in rows
            ]
        out, raw = protocol.tensor_message(job.x, split.layer_names[-1])
        response = pb.ModelInferResponse(
            model_name=split.network,
            model_version=split.version,
            id=request.id,
            outputs=[pb.ModelInferResponse.InferOutputTensor(name=out.name, datatype=out.datatype, shape=out.shape)],
            raw_output_contents=[raw],
            server_rows=rows,
        )
        response.parameters["received_ns"].CopyFrom(protocol.param(received_ns))
        response.parameters["sent_ns"].CopyFrom(protocol.param(time.perf_counter_ns()))
        return response

    def _accept_infer(self, request, received_ns: int) -> tuple[Job, SplitNetwork]:
        size = sum(len(r) for r in request.raw_input_contents)
        if size > self.config.max_message_bytes:
            raise Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"tensor of {size} bytes is over the server's limit of {self.config.max_message_bytes} bytes",
            )
        device = protocol.param_value(request.parameters, "device", "")
        rnd = protocol.param_value(request.parameters, "round", -1)
        first = protocol.param_value(request.parameters, "first_layer", -1)
        with self.lock:
            d = self.devices.get(device)
            if d is None:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"device {device!r} has not registered")
            if self.plan is None:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"{device} runs before the plan is made")
            if device not in self.plan["devices"]:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"{device} is not in the plan")
            if rnd != self.round or device not in self.participants.get(rnd, ()):
                raise Refused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"{device} runs round {rnd} but round {self.round} is the one started with it",
                )
            if (rnd, device) in self.ran:
                raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"{device} already ran round {rnd}")
            cut = self.plan["cuts"][self.plan["devices"].index(device)]
            split = self.splits[d.key]
            if cut == split.n_layers:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"{device} runs all local: nothing to offload")
            if request.model_name != split.network:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"model {request.model_name!r} is not {device}'s network {split.network!r}",
                )
            if first != cut + 1:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{device} has cut {cut}: its first server layer is {cut + 1}, got first_layer {first}",
                )
            want = list(split.shapes[cut])
            if len(request.inputs) != 1 or len(request.raw_input_contents) != 1:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"need exactly one input tensor with raw contents, got {len(request.inputs)} inputs",
                )
            tensor = request.inputs[0]
            if tensor.datatype != DATATYPE or list(tensor.shape) != want:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"tensor {tensor.datatype} {list(tensor.shape)} does not match cut {cut} of "
                    f"{split.network}: expected {DATATYPE} {want}",
                )
            try:
                x = protocol.tensor_from(tensor.datatype, tensor.shape, request.raw_input_contents[0])
            except ValueError as exc:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
            self.ran.add((rnd, device))
            server_ms = list(self.plan["instance"].devices[self.plan["devices"].index(device)].server_ms[cut:])
        return Job(device, rnd, cut + 1, split.n_layers, x, received_ns, server_ms), split

    # --- the MEC loop ------------------------------------------------------------------------------------
    def Probe(self, request_iterator, context):
        """Time a stream of filler chunks on the server's clock: the uplink rate the device then registers.
        The first chunk only starts the clock (its bytes were sent before it), so at least two are needed."""
        limit = self.config.max_message_bytes
        received = chunks = first_bytes = 0
        first_ns = last_ns = 0
        try:
            for chunk in request_iterator:
                now = time.perf_counter_ns()
                if not chunks:
                    first_ns, first_bytes = now, len(chunk.data)
                last_ns, received, chunks = now, received + len(chunk.data), chunks + 1
                if received > limit:
                    raise Refused(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"probe of more than {limit} bytes is over the server's limit of {limit} bytes",
                    )
                if now - first_ns > PROBE_MAX_S * 1e9:
                    raise Refused(grpc.StatusCode.DEADLINE_EXCEEDED, f"probe still running after {PROBE_MAX_S:g} s")
            elapsed = last_ns - first_ns
            if chunks < 2 or elapsed <= 0 or received == first_bytes:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"probe of {received} bytes in {chunks} chunk(s) is too short to time: send at least two "
                    "non-empty chunks",
                )
        except Refused as refusal:
            self.refuse(context, "Probe", refusal)
            return None
        mbps = (received - first_bytes) * 8e3 / elapsed
        self.event(
            f"probe from {context.peer()}: {received} bytes in {chunks} chunks, {elapsed / 1e6:.1f} ms: {mbps:.2f} Mbps"
        )
        return pb.ProbeResponse(
            received_bytes=received, chunks=chunks, first_chunk_bytes=first_bytes, elapsed_ns=elapsed, mbps=mbps
        )

    def Register(self, request, context):
        try:
            d, split = self._register(request, context.peer())
        except Refused as refusal:
            self.refuse(context, "Register", refusal)
            return None
        with self.lock:
            n = len(self.devices)
            self.lock.notify_all()
        self.event(
            f"registered {d.name}: {d.network} ({'ONNX model' if d.version != str(d.seed) else 'seed'} {d.version}), "
            f"uplink {d.uplink_mbps:g} Mbps{d.probe}, "
            f"cut {'free' if d.cut is None else d.cut}, from {d.peer} ({n}/{self.config.expected})"
        )
        return pb.RegisterResponse(
            registered=n,
            expected=self.config.expected,
            model_sha256=split.sha256,
            n_layers=split.n_layers,
            model_name=split.network,
        )

    def _register(self, request, peer: str) -> tuple[Registered, SplitNetwork]:
        from dnnpart.networks.zoo import names

        invalid = grpc.StatusCode.INVALID_ARGUMENT
        try:
            protocol.check_device_name(request.device)
        except RuntimeConfigError as exc:
            raise Refused(invalid, str(exc)) from None
        with self.lock:
            if request.device in self.devices:
                raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"device {request.device!r} is already registered")
            if self.plan is not None or self.plan_error is not None:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "registration is closed: the plan is made")
        if not (math.isfinite(request.uplink_mbps) and request.uplink_mbps > 0):
            raise Refused(invalid, f"uplink_mbps must be a positive number of Mbps, got {request.uplink_mbps}")
        if request.onnx_sha256:
            split = self._onnx_for(request)
        elif request.network not in names():
            raise Refused(
                invalid,
                f"unknown network {request.network!r}; valid choices: {', '.join(names())} (or an ONNX model's sha256)",
            )
        else:
            split = self.split(request.network, int(request.seed))
        if request.model_sha256 and request.model_sha256 != split.sha256:
            raise Refused(
                invalid,
                f"{split.network} {split.version[:12]}: the device expects weights "
                f"{request.model_sha256[:12]}..., the server has {split.sha256[:12]}...",
            )
        m = split.n_layers
        cut = request.cut if request.HasField("cut") else None
        if cut is not None and not 0 <= cut <= m:
            raise Refused(invalid, f"cut must be in 0..{m} for {split.network}, got {cut}")
        if request.local_ms:
            local = list(request.local_ms)
            if len(local) != m or not all(math.isfinite(t) and t >= 0 for t in local):
                raise Refused(
                    invalid,
                    f"local_ms needs {m} finite non-negative times (one per layer of "
                    f"{split.network}), got {len(local)}",
                )
        else:
            scale = request.local_scale or 1.0  # unset (0): the profile as it is
            if not (math.isfinite(scale) and scale > 0):
                raise Refused(invalid, f"local_scale must be a positive number, got {scale}")
            local = [t * scale for t in self._predict_local(request.profile or "measured", split)]
        probe = ""
        if request.HasField("uplink_probe"):
            p = request.uplink_probe
            probe = f" (measured by a probe: {p.received_bytes} bytes in {p.elapsed_ns / 1e6:.1f} ms)"
        d = Registered(
            request.device,
            split.network,
            split.seed,
            float(request.uplink_mbps),
            local,
            cut,
            peer,
            probe,
            split.version,
        )
        with self.lock:  # checked again: the build above ran without the lock
            if request.device in self.devices:
                raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"device {request.device!r} is already registered")
            if self.plan is not None or self.plan_error is not None:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "registration is closed: the plan is made")
            self.devices[d.name] = d
            if self.first_registration is None:
                self.first_registration = time.monotonic()
        return d, split

    def _onnx_for(self, request) -> SplitNetwork:
        """The registering device's ONNX model, by its file's sha256; NOT_FOUND asks the device to upload it."""
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        sha = request.onnx_sha256
        if request.network or request.seed:
            raise Refused(invalid, "give either a zoo network (and seed) or an ONNX model's sha256, not both")
        if not SHA256.match(sha):
            raise Refused(invalid, f"onnx_sha256 must be 64 lower-case hex digits, got {sha[:80]!r}")
        try:
            split = self.onnx_split(sha)
        except DnnpartError as exc:
            raise Refused(invalid, str(exc)) from None
        if split is None:
            raise Refused(
                grpc.StatusCode.NOT_FOUND,
                f"ONNX model {sha[:12]}... is not held by the server: upload it (UploadModel)",
            )
        return split

    def UploadModel(self, request_iterator, context):
        """Receive a device's ONNX model in chunks, check its size and sha256, cut it into layers and keep it
        (OUT/models/<sha256>.onnx). Refused: over --max-model-mb, a hash mismatch, a model that is not a chain."""
        limit = self.config.max_model_bytes
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        claimed, parts, size = None, [], 0
        try:
            for chunk in request_iterator:
                if claimed is None:
                    claimed = chunk.sha256
                    if not SHA256.match(claimed):
                        raise Refused(
                            invalid, "the first chunk must carry the model's sha256 (64 lower-case hex digits)"
                        )
                    if chunk.total_bytes > limit:
                        raise Refused(
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"model of {chunk.total_bytes} bytes is over the server's limit of {limit} bytes",
                        )
                size += len(chunk.data)
                if size > limit:
                    raise Refused(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"model of more than {limit} bytes is over the server's limit of {limit} bytes",
                    )
                parts.append(chunk.data)
            if claimed is None or not size:
                raise Refused(invalid, "no model bytes received")
            data = b"".join(parts)
            del parts
            got = hashlib.sha256(data).hexdigest()
            if got != claimed:
                raise Refused(
                    invalid, f"the model's {size} bytes hash to {got[:12]}..., not {claimed[:12]}... as announced"
                )
            split = self._keep_model(data, got)
        except Refused as refusal:
            self.refuse(context, "UploadModel", refusal)
            return None
        self.event(f"model {split.network}: {size} bytes, {split.n_layers} layers, uploaded from {context.peer()}")
        return pb.UploadModelResponse(
            model_name=split.network, sha256=got, n_layers=split.n_layers, model_sha256=split.sha256
        )

    def _keep_model(self, data: bytes, sha: str) -> SplitNetwork:
        with self.lock:
            held = sha in self.onnx_files
        if not held:
            path = self.config.out / MODELS_FOLDER / f"{sha}.onnx"
            atomic_write_bytes(path, data)
            with self.lock:
                self.onnx_files.setdefault(sha, path)
        try:
            return self.onnx_split(sha)
        except DnnpartError as exc:
            if not held:  # keep only models the runtime can run
                with self.lock:
                    path = self.onnx_files.pop(sha)
                path.unlink(missing_ok=True)
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

    def _predict_local(self, profile: str, split: SplitNetwork) -> list[float]:
        """The profile's device times for the split's layers, predicted once per profile and model (a prediction
        takes 0.2 s for AlexNet, and identical devices register at once)."""
        from dnnpart.delay import load_delay_model

        key = (profile, split.network, split.version)
        with self.predict_lock:
            if key not in self.local_predictions:
                try:
                    model = load_delay_model(profile)
                    self.local_predictions[key] = model.predict(split.table, "device").astype(float).tolist()
                except DnnpartError as exc:
                    raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"profile {profile!r}: {exc}") from None
            return list(self.local_predictions[key])

    def _planned(self, device: str, context, method: str):
        """(device's index in the plan, the plan), waiting for the plan; refuses unknown devices."""
        with self.lock:
            if device not in self.devices:
                self.refuse(
                    context,
                    method,
                    Refused(grpc.StatusCode.FAILED_PRECONDITION, f"device {device!r} has not registered"),
                )
            while self.plan is None and self.plan_error is None and not self.stopping and context.is_active():
                self.lock.wait(timeout=0.5)
            if self.plan is None:
                self.refuse(
                    context,
                    method,
                    Refused(grpc.StatusCode.UNAVAILABLE, f"no plan: {self.plan_error or 'the server is stopping'}"),
                )
            if device not in self.plan["devices"]:
                self.refuse(
                    context,
                    method,
                    Refused(grpc.StatusCode.FAILED_PRECONDITION, f"{device} registered after the plan was made"),
                )
            return self.plan["devices"].index(device), self.plan

    def Plan(self, request, context):
        i, plan = self._planned(request.device, context, "Plan")
        d = self.devices[request.device]
        split = self.splits[d.key]
        cut = plan["cuts"][i]
        frame = plan["frame"]
        mine = frame[frame["device"] == request.device]
        return pb.PlanResponse(
            cut=cut,
            cut_name=cut_name(split.layer_names, cut),
            n_layers=split.n_layers,
            cut_shape=list(split.shapes[cut]),
            predicted_completion_ms=plan["completion_ms"][request.device],
            predicted_avg_ms=plan["avg_delay_ms"],
            policy=self.config.policy,
            status=plan["status"],
            model_sha256=split.sha256,
            devices=plan["devices"],
            planned=[
                pb.TimelineRow(layer=int(r.layer), where=r.where, start_ms=r.start_ms, finish_ms=r.finish_ms)
                for r in mine.itertuples()
            ],
        )

    def FetchLayers(self, request, context):
        i, plan = self._planned(request.device, context, "FetchLayers")
        d = self.devices[request.device]
        split = self.splits[d.key]
        cached = set(request.cached_sha256)
        for j in range(1, plan["cuts"][i] + 1):
            data = split.models[j - 1]
            digest = split.layer_sha256[j - 1]
            if digest in cached:
                yield pb.LayerChunk(layer=j, last=True, sha256=digest, cached=True)
                continue
            for k in range(0, len(data), protocol.CHUNK_BYTES):
                last = k + protocol.CHUNK_BYTES >= len(data)
                yield pb.LayerChunk(
                    layer=j, data=data[k : k + protocol.CHUNK_BYTES], last=last, sha256=digest if last else ""
                )

    def Start(self, request, context):
        self._planned(request.device, context, "Start")
        rnd = request.round
        with self.lock:
            if rnd != self.round + 1:
                self.refuse(
                    context,
                    "Start",
                    Refused(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"{request.device} asks to start round {rnd}; the next round is {self.round + 1}",
                    ),
                )
            arrived = self.arrivals.setdefault(rnd, set())
            if request.device in arrived:
                self.refuse(
                    context,
                    "Start",
                    Refused(grpc.StatusCode.ALREADY_EXISTS, f"{request.device} already waits for round {rnd}"),
                )
            arrived.add(request.device)
            self.lock.notify_all()
            deadline = time.monotonic() + self.config.barrier_timeout_s
            while self.round < rnd and not self.stopping:
                active = [d for d in self.plan["devices"] if d not in self.gone]
                if set(active) <= arrived or time.monotonic() >= deadline:
                    self._release(rnd, arrived)
                    break
                if not context.is_active():
                    arrived.discard(request.device)
                    return None
                self.lock.wait(timeout=0.05)
            if self.stopping:
                self.refuse(context, "Start", Refused(grpc.StatusCode.UNAVAILABLE, "the server is stopping"))
            if request.device not in self.participants[rnd]:
                self.refuse(
                    context,
                    "Start",
                    Refused(grpc.StatusCode.DEADLINE_EXCEEDED, f"{request.device} came after round {rnd} started"),
                )
            return pb.StartResponse(start_server_ns=self.round_start_ns[rnd], round=rnd, devices=self.participants[rnd])

    def _release(self, rnd: int, arrived: set[str]):
        """Start round rnd (called with the lock held): its devices, start time and server order."""
        members = [d for d in self.plan["devices"] if d in arrived]
        late = [d for d in self.plan["devices"] if d not in arrived]
        self.participants[rnd] = members
        self.round_start_ns[rnd] = time.perf_counter_ns() + int(self.config.start_lead_ms * 1e6)
        self.round = rnd
        self.gone.update(late)
        self.scheduler.new_round([(d, j) for d, j in self.plan["order"] if d in members])
        self.lock.notify_all()
        self.event(f"round {rnd}: {len(members)} devices" + (f", without late {late}" if late else ""))

    def Report(self, request, context):
        with self.lock:
            if request.device not in self.participants.get(request.round, ()):
                self.refuse(
                    context,
                    "Report",
                    Refused(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"{request.device} did not take part in round {request.round}",
                    ),
                )
            allowed = {"local", "upload", "download"}
            bad = sorted({r.where for r in request.rows} - allowed)
            if bad or len(request.rows) > 10_000:
                self.refuse(
                    context,
                    "Report",
                    Refused(grpc.StatusCode.INVALID_ARGUMENT, f"report rows must be {sorted(allowed)}, got {bad}"),
                )
            self.timeline += [
                (request.round, request.device, r.layer, r.where, r.start_ms, r.finish_ms, "device")
                for r in request.rows
            ]
            reported = self.reported.setdefault(request.round, set())
            reported.add(request.device)
            round_over = set(self.participants[request.round]) - self.gone <= reported
        # The log is written once a round's last device has reported, not at every report: building and writing
        # the frames takes tens of ms of the server's core, and an early report would take them from the layers
        # other devices' jobs are running on it (bench_testbed 2026-12-03: AlexNet's conv2-4 ran 2x slower in the
        # jobs after the first). The next round cannot start before: its barrier waits for this device.
        if round_over:
            self.write_log()
        return pb.ReportResponse(accepted=True)

    # --- output ------------------------------------------------------------------------------------------
    def timeline_frame(self) -> pd.DataFrame:
        """The measured rows (Schedule.to_frame() columns plus round and the clock that took them), sorted."""
        with self.lock:
            rows = list(self.timeline)
            order = {d: k for k, d in enumerate(self.plan["devices"])} if self.plan else {}
        df = pd.DataFrame(rows, columns=TIMELINE_COLUMNS)
        where = {"local": 0, "upload": 1, "server": 2, "download": 3}
        df["_d"], df["_w"] = df["device"].map(order), df["where"].map(where)
        df = df.sort_values(["round", "_d", "start_ms", "_w", "layer"], kind="stable")
        return df.drop(columns=["_d", "_w"]).reset_index(drop=True)

    def completions_frame(self) -> pd.DataFrame:
        df = self.timeline_frame()
        with self.lock:
            predicted = dict(self.plan["completion_ms"]) if self.plan else {}
            cuts = dict(zip(self.plan["devices"], self.plan["cuts"])) if self.plan else {}
            uplink = {d.name: d.uplink_mbps for d in self.devices.values()}
            probed = {d.name: "probe" if d.probe else "configured" for d in self.devices.values()}
        out = df.groupby(["round", "device"], sort=False)["finish_ms"].max().rename("measured_ms").reset_index()
        out["cut"] = out["device"].map(cuts)
        out["uplink_mbps"] = out["device"].map(uplink)
        out["uplink_from"] = out["device"].map(probed)
        out["predicted_ms"] = out["device"].map(predicted)
        return out[["round", "device", "cut", "uplink_mbps", "uplink_from", "predicted_ms", "measured_ms"]]

    def write_log(self):
        with self.write_lock:  # one writer at a time: the atomic writes share a temporary name per process
            self._write_log()

    def _write_log(self):
        out = self.config.out
        write_csv(self.timeline_frame(), out / "timeline.csv")
        write_csv(self.completions_frame(), out / "completions.csv")
        busy = self.scheduler.busy_ns / 1e6
        atomic_write_text(out / "stats.json", json.dumps({"onnxruntime_busy_ms": busy}, indent=1) + "\n")

    def close(self):
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        self.scheduler.stop()
        self.write_log()
        self.event("stopped")
        self.log_file.close()


class _TokenInterceptor(grpc.ServerInterceptor):
    """Refuses every call without the shared secret (constant-time comparison), before any handler runs."""

    def __init__(self, server: EdgeServer, token: str):
        self.server, self.token = server, token

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None or protocol.token_matches(self.token, details.invocation_metadata):
            return handler
        reason = "missing or wrong token"
        method = details.method.rsplit("/", 1)[-1]
        self.server.event(f"refused {method}: UNAUTHENTICATED: {reason}")

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

        kind = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(handler.request_streaming, handler.response_streaming)]
        return kind(deny)


def start_server(config: ServeConfig) -> tuple[grpc.Server, EdgeServer, int]:
    """Build and start the gRPC server; returns (grpc server, service, bound port)."""
    tls = None
    if config.tls_cert is not None:
        try:
            tls = grpc.ssl_server_credentials([(Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())])
        except OSError as exc:
            raise RuntimeConfigError(f"cannot read TLS key or certificate: {exc.strerror or exc}") from None
    service = EdgeServer(config)
    # gRPC itself drops anything over twice the limit; between the two the handler refuses and logs it
    hard_limit = max(2 * config.max_message_bytes, protocol.CHUNK_BYTES) + (64 << 10)  # ...and model chunks fit
    options = [
        ("grpc.max_receive_message_length", hard_limit),
        ("grpc.max_send_message_length", 1 << 30),
        ("grpc.so_reuseport", 0),
    ]
    interceptors = [_TokenInterceptor(service, config.token)] if config.token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max(16, 4 * config.expected + 8)),
        interceptors=interceptors,
        options=options,
    )
    pb_grpc.add_EdgeInferenceServicer_to_server(service, server)
    address = f"{config.host}:{config.port}"
    try:
        port = server.add_secure_port(address, tls) if tls else server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if not port:
        service.close()
        raise RuntimeConfigError(f"cannot listen on {address} (in use, or not an address of this host)")
    server.start()
    info = {
        "host": config.host,
        "port": port,
        "policy": config.policy,
        "expected": config.expected,
        "tls": tls is not None,
        "token": config.token is not None,
    }
    atomic_write_text(config.out / "server.json", json.dumps(info, indent=1) + "\n")
    service.event(
        f"listening on {config.host}:{port} (policy {config.policy}, expecting {config.expected} devices"
        f"{', TLS' if tls else ''}{', token' if config.token else ''})"
    )
    return server, service, port


def serve(config: ServeConfig, ready=print, stop_event: threading.Event | None = None, started=None) -> int:
    """Run until SIGINT/SIGTERM (or stop_event); then stop, write the log and return 0.

    `ready` gets the "listening on" line; `started(service, port)`, if given, the running service (tests)."""
    import signal

    stop_event = stop_event or threading.Event()
    server, service, port = start_server(config)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop_event.set())
    try:
        if started is not None:
            started(service, port)
        ready(f"dnnpart serve: listening on {config.host}:{port}, output in {config.out}")
        while not stop_event.wait(timeout=0.2):
            pass
    finally:
        server.stop(grace=1.0).wait(timeout=5)
        service.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
