"""The device client (`dnnpart device` and `DeviceClient`): register, get the plan and its layers, run rounds.

It needs only numpy, onnxruntime, grpcio and protobuf (`pip install dnnpart[device]`): the server builds the
per-layer models and the predictions; the device receives its layers 1..cut (checked against their sha256),
runs them with onnxruntime, uploads the cut tensor and receives the result. Every layer and transfer is
time-stamped on the device's clock and converted to the server's with an offset estimated on this connection
(the ServerLive exchange with the smallest round trip), so the server can draw one timeline for all devices.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dnnpart.errors import RuntimeConfigError
from dnnpart.runtime import protocol
from dnnpart.runtime.layer_cache import LayerCache
from dnnpart.runtime.layers import LayerRunner, random_input
from dnnpart.runtime.proto import runtime_pb2 as pb
from dnnpart.runtime.proto import runtime_pb2_grpc as pb_grpc

CLOCK_SAMPLES = 9
MEASURED = "measured"  # --uplink-mbps measured: probe the uplink before registering
PROBE_CHUNK_BYTES = 64 << 10  # a few chunks at 1 Mbps in 2 s; fewer per-chunk costs on a fast link
PROBE_BYTES = 1 << 20  # a probe sends at most this much (at 1 Mbps: the time bound ends it first)
PROBE_SECONDS = 2.0  # and stops sending after this long (chunks already in flight still arrive)


class DeviceError(RuntimeConfigError):
    """The server refused a request, or the connection failed: one line with the gRPC status and reason
    (`code`: the status's name, e.g. "NOT_FOUND")."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(protocol.CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ProbeResult:
    """A probe upload as the server timed it (its clock, first chunk's arrival to the last's)."""

    received_bytes: int
    chunks: int
    elapsed_ms: float
    mbps: float


def check_uplink(uplink_mbps) -> float | str:
    """A positive finite rate in Mbps, or MEASURED; RuntimeConfigError naming both choices."""
    if isinstance(uplink_mbps, str) and uplink_mbps.strip().lower() == MEASURED:
        return MEASURED
    try:
        rate = float(uplink_mbps)
    except (TypeError, ValueError):
        rate = float("nan")
    if isinstance(uplink_mbps, bool) or not (np.isfinite(rate) and rate > 0):
        raise RuntimeConfigError(
            f"--uplink-mbps must be a positive number of Mbps or '{MEASURED}' (probe the uplink), got {uplink_mbps!r}"
        )
    return rate


def check_probe(probe_bytes, probe_seconds) -> tuple[int, float]:
    """The probe's bounds: at least two chunks (the first only starts the server's clock), a positive time."""
    low, high = 2 * PROBE_CHUNK_BYTES, 1 << 30
    if isinstance(probe_bytes, bool) or int(probe_bytes) != probe_bytes or not low <= probe_bytes <= high:
        raise RuntimeConfigError(f"--probe-bytes must be an integer in {low}..{high}, got {probe_bytes}")
    if not (np.isfinite(probe_seconds) and 0 < probe_seconds <= 600):
        raise RuntimeConfigError(f"--probe-seconds must be a number of seconds in (0, 600], got {probe_seconds}")
    return int(probe_bytes), float(probe_seconds)


@dataclass
class RoundResult:
    round: int
    cut: int
    cut_name: str
    predicted_ms: float
    measured_ms: float
    output: np.ndarray = field(repr=False)
    rows: list[tuple] = field(repr=False)  # (layer, where, start_ms, finish_ms), ms from the round start


class DeviceClient:
    """One device of the MEC loop. `run(repeats)` does (probe ->) register -> plan -> fetch layers -> rounds.

    `network` is a zoo name (the server draws its weights from `seed`) or the path of the device's own ONNX chain
    model (a .onnx file): the device registers its sha256 and uploads it when the server does not hold it.
    `uplink_mbps` is the rate the plan assumes, or "measured": `probe_uplink()` (run by `run()` before
    registering) streams up to `probe_bytes` for at most `probe_seconds` and the server's timing sets the rate.
    `layer_cache` (a folder) keeps the layers it fetches; those it holds already are not sent again."""

    def __init__(
        self,
        server: str,
        name: str,
        network: str,
        uplink_mbps: float | str,
        profile: str | None = None,
        local_ms=None,
        local_scale: float = 1.0,
        cut: int | None = None,
        seed: int = 0,
        token: str | None = None,
        tls_ca: str | None = None,
        threads: int = 1,
        timeout_s: float = 300.0,
        emulate_uplink: bool = False,
        probe_bytes: int = PROBE_BYTES,
        probe_seconds: float = PROBE_SECONDS,
        uplink_limiter=None,
        on_ready=None,
        layer_cache=None,
    ):
        protocol.check_device_name(name)
        uplink = check_uplink(uplink_mbps)
        self.probe_bytes, self.probe_seconds = check_probe(probe_bytes, probe_seconds)
        if not (np.isfinite(timeout_s) and timeout_s > 0):
            raise RuntimeConfigError(f"--timeout must be a positive number of seconds, got {timeout_s}")
        self.server, self.name, self.network = server, name, str(network)
        self.onnx_path, self.onnx_sha256 = None, ""
        if self.network.lower().endswith(".onnx"):
            if seed:
                raise RuntimeConfigError("--seed draws a zoo network's weights; an ONNX model has its own")
            self.onnx_path = Path(self.network)
            try:
                self.onnx_sha256 = file_sha256(self.onnx_path)
            except OSError as exc:
                raise RuntimeConfigError(f"cannot read ONNX model {self.network}: {exc.strerror or exc}") from None
        self.model_name = None if self.onnx_path else self.network  # the server names an ONNX model
        self.model_version = None
        self.measure_uplink = uplink == MEASURED
        self.uplink_mbps = None if self.measure_uplink else uplink  # set by probe_uplink() when measured
        self.probe_result: ProbeResult | None = None
        self.profile, self.local_ms, self.cut_wanted = profile, local_ms, cut
        if not (np.isfinite(local_scale) and local_scale > 0):
            raise RuntimeConfigError(f"--local-scale must be a positive number, got {local_scale}")
        if local_scale != 1.0 and local_ms is not None:
            raise RuntimeConfigError("--local-scale scales the profile's predicted local times, not given local_ms")
        self.local_scale = float(local_scale)  # the server multiplies its prediction from `profile` by it
        self.seed, self.token, self.threads, self.timeout_s = int(seed), token, threads, float(timeout_s)
        self.emulate_uplink = emulate_uplink
        self.uplink_limiter = uplink_limiter  # anything with wait(nbytes), e.g. the testbed's token bucket
        self.on_ready = on_ready  # called once the layers are warm, before the first round (the testbed's quota)
        self.layer_cache = LayerCache(layer_cache) if layer_cache is not None else None  # keeps fetched layers
        self.channel = protocol.channel(server, tls_ca)
        self.stub = pb_grpc.EdgeInferenceStub(self.channel)
        self.metadata = protocol.call_metadata(token)
        self.offset_ns, self.uncertainty_ms = 0, float("nan")
        self.plan_reply = None
        self.probe_reply = None
        self.runner = None
        self.input_shape = None

    def _call(self, method, request, timeout: float | None = None):
        import grpc

        try:
            return method(request, metadata=self.metadata, timeout=timeout or self.timeout_s)
        except grpc.RpcError as exc:
            code = exc.code().name
            raise DeviceError(f"{self.name}: server {self.server}: {code}: {exc.details()}", code) from None

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the loop ----------------------------------------------------------------------------------------
    def sync_clock(self, samples: int = CLOCK_SAMPLES) -> float:
        """Estimate server_clock - device_clock from ServerLive round trips; returns the uncertainty (ms)."""
        best = None
        for _ in range(samples):
            t0 = time.perf_counter_ns()
            reply = self._call(self.stub.ServerLive, pb.ServerLiveRequest(), timeout=min(self.timeout_s, 30))
            t3 = time.perf_counter_ns()
            if best is None or t3 - t0 < best[0]:
                best = (t3 - t0, reply.server_time_ns - (t0 + t3) // 2)
        self.offset_ns, self.uncertainty_ms = best[1], best[0] / 2e6
        return self.uncertainty_ms

    def probe_uplink(self) -> ProbeResult:
        """Stream filler chunks (at most probe_bytes, for at most probe_seconds) and take the server's timing
        as this device's uplink rate (self.uplink_mbps)."""
        filler = np.random.default_rng(0).bytes(PROBE_CHUNK_BYTES)  # incompressible, should a link compress

        def chunks():
            sent, start = 0, time.perf_counter()
            while sent < self.probe_bytes and (
                sent < 2 * PROBE_CHUNK_BYTES or time.perf_counter() - start < self.probe_seconds
            ):
                n = min(PROBE_CHUNK_BYTES, self.probe_bytes - sent)
                yield pb.ProbeChunk(data=filler[:n])
                sent += n

        reply = self._call(self.stub.Probe, chunks())
        if not (np.isfinite(reply.mbps) and reply.mbps > 0):
            raise DeviceError(f"{self.name}: the probe measured no rate ({reply.received_bytes} bytes)")
        self.probe_result = ProbeResult(reply.received_bytes, reply.chunks, reply.elapsed_ns / 1e6, reply.mbps)
        self.probe_reply = reply
        self.uplink_mbps = float(reply.mbps)
        return self.probe_result

    def upload_model(self):
        """Send the ONNX model in chunks (the first with its sha256 and size); the server checks and keeps it."""
        size = self.onnx_path.stat().st_size

        def chunks():
            with open(self.onnx_path, "rb") as fh:
                first = True
                while block := fh.read(protocol.CHUNK_BYTES):
                    head = {"sha256": self.onnx_sha256, "total_bytes": size} if first else {}
                    yield pb.ModelChunk(data=block, **head)
                    first = False

        reply = self._call(self.stub.UploadModel, chunks())
        if reply.sha256 != self.onnx_sha256:
            raise DeviceError(f"{self.name}: the server kept a model with sha256 {reply.sha256[:12]}..., not ours")
        return reply

    def register(self):
        """Register; an ONNX model the server does not hold (NOT_FOUND) is uploaded, then registered again."""
        if self.uplink_mbps is None:
            raise RuntimeConfigError(f"{self.name}: the uplink is to be measured: call probe_uplink() first")
        request = pb.RegisterRequest(
            device=self.name,
            network="" if self.onnx_path else self.network,
            seed=self.seed,
            uplink_mbps=self.uplink_mbps,
            profile=self.profile or "",
            onnx_sha256=self.onnx_sha256,
            local_scale=self.local_scale,
        )
        if self.local_ms is not None:
            request.local_ms.extend(float(t) for t in self.local_ms)
        if self.cut_wanted is not None:
            request.cut = int(self.cut_wanted)
        if self.probe_result is not None:
            request.uplink_probe.CopyFrom(self.probe_reply)
        try:
            reply = self._call(self.stub.Register, request)
        except DeviceError as exc:
            if not (self.onnx_path and exc.code == "NOT_FOUND"):
                raise
            self.upload_model()
            reply = self._call(self.stub.Register, request)
        self.model_name = reply.model_name or self.network
        return reply

    def plan(self):
        self.plan_reply = self._call(self.stub.Plan, pb.PlanRequest(device=self.name))
        meta = self._call(
            self.stub.ModelMetadata,
            pb.ModelMetadataRequest(name=self.model_name, version=self.onnx_sha256 or str(self.seed)),
        )
        self.input_shape = [int(s) for s in meta.inputs[0].shape]
        self.model_version = meta.versions[0] if meta.versions else ""
        return self.plan_reply

    def fetch_layers(self):
        """Receive layers 1..cut, check each against its sha256, and open their onnxruntime sessions. With a
        layer cache, the layers it holds are not sent; should one of them not read back intact, all are fetched."""
        models = self._receive_layers(self.layer_cache.digests() if self.layer_cache else [])
        if models is None:
            models = self._receive_layers([])
        if len(models) != self.plan_reply.cut:
            raise DeviceError(f"{self.name}: received {len(models)} layers, the plan's cut is {self.plan_reply.cut}")
        self.runner = LayerRunner(models, threads=self.threads).warm_up() if models else None

    def _receive_layers(self, cached: list[str]) -> list[bytes] | None:
        """The FetchLayers stream as layer models; None if a layer announced as cached is not in the cache."""
        models, parts = [], []
        stream = self._call(self.stub.FetchLayers, pb.FetchLayersRequest(device=self.name, cached_sha256=cached))
        for chunk in stream:
            if chunk.layer != len(models) + 1:
                raise DeviceError(f"{self.name}: layer {chunk.layer} arrived out of order")
            if chunk.cached:
                data = self.layer_cache.get(chunk.sha256) if chunk.sha256 in cached else None
                if data is None:
                    stream.cancel()
                    return None
                models.append(data)
                continue
            parts.append(chunk.data)
            if chunk.last:
                data = b"".join(parts)
                if hashlib.sha256(data).hexdigest() != chunk.sha256:
                    raise DeviceError(f"{self.name}: layer {chunk.layer} arrived corrupted")
                if self.layer_cache is not None:
                    self.layer_cache.put(data)
                models.append(data)
                parts = []
        return models

    def _ms(self, local_ns: int, start_server_ns: int) -> float:
        """A device-clock time as ms from the round start on the server's clock."""
        return (local_ns + self.offset_ns - start_server_ns) / 1e6

    def start_round(self, rnd: int) -> int:
        """Wait at the server's barrier for round rnd, then until its start; returns the start (server clock)."""
        start = self._call(self.stub.Start, pb.StartRequest(device=self.name, round=rnd))
        wait_s = (start.start_server_ns - self.offset_ns - time.perf_counter_ns()) / 1e9
        if wait_s > 0:
            time.sleep(wait_s)
        return start.start_server_ns

    def run_round(self, rnd: int, x: np.ndarray) -> RoundResult:
        return self.finish_round(rnd, x, self.start_round(rnd))

    def finish_round(self, rnd: int, x: np.ndarray, s0: int) -> RoundResult:
        """Run the head, upload, receive the result and report the device's rows, once round rnd has started."""
        plan = self.plan_reply
        rows = []
        y = x
        if plan.cut:
            y, stamps = self.runner.run_range(x, 1, plan.cut)
            rows += [(j, "local", self._ms(a, s0), self._ms(b, s0)) for j, a, b in stamps]
        if plan.cut < plan.n_layers:
            tensor, raw = protocol.tensor_message(y, "input" if plan.cut == 0 else plan.cut_name)
            request = pb.ModelInferRequest(
                model_name=self.model_name,
                model_version=self.model_version,
                id=f"{self.name}/{rnd}",
                inputs=[tensor],
                raw_input_contents=[raw],
            )
            for key, value in (("device", self.name), ("round", rnd), ("first_layer", plan.cut + 1)):
                request.parameters[key].CopyFrom(protocol.param(value))
            up_start = time.perf_counter_ns()
            if self.emulate_uplink:  # loopback is far faster than a radio link: hold the upload for its planned time
                time.sleep(len(raw) * 8 / (self.uplink_mbps * 1e6))
            if self.uplink_limiter is not None:
                self.uplink_limiter.wait(len(raw))
            reply = self._call(self.stub.ModelInfer, request)
            done = time.perf_counter_ns()
            received = protocol.param_value(reply.parameters, "received_ns")
            rows.append((plan.cut + 1, "upload", self._ms(up_start, s0), (received - s0) / 1e6))
            server_rows = [(r.layer, "server", r.start_ms, r.finish_ms) for r in reply.server_rows]
            rows += server_rows
            rows.append((plan.n_layers, "download", server_rows[-1][3], self._ms(done, s0)))
            out = reply.outputs[0]
            y = protocol.tensor_from(out.datatype, out.shape, reply.raw_output_contents[0])
        report = pb.ReportRequest(
            device=self.name,
            round=rnd,
            offset_uncertainty_ms=self.uncertainty_ms,
            rows=[pb.TimelineRow(layer=j, where=w, start_ms=a, finish_ms=b) for j, w, a, b in rows if w != "server"],
        )
        self._call(self.stub.Report, report)
        measured = max(b for _, _, _, b in rows) if rows else 0.0
        return RoundResult(rnd, plan.cut, plan.cut_name, plan.predicted_completion_ms, measured, y, rows)

    def run(self, repeats: int = 1, input_seed: int = 0) -> list[RoundResult]:
        """The whole loop; round k's input is random_input(shape, input_seed + k)."""
        if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 1:
            raise RuntimeConfigError(f"--repeats must be a positive integer, got {repeats}")
        self.sync_clock()
        if self.measure_uplink:
            self.probe_uplink()
        self.register()
        self.plan()
        self.fetch_layers()
        if self.on_ready is not None:
            self.on_ready()
        results = []
        for k in range(int(repeats)):
            self.sync_clock()  # re-estimated every round: clocks drift
            results.append(self.run_round(k, random_input(self.input_shape, input_seed + k)))
        return results
