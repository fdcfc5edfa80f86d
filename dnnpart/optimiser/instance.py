"""An optimiser instance: per device, the local, server and upload time of every layer of its chain DNN.

Device i runs layers 1..M_i. With cut c (0 <= c <= M_i) it runs layers 1..c locally, uploads the input
of layer c+1 (upload_ms[c]; index 0 is the raw input), the server runs layers c+1..M_i, and an optional
result download (download_ms) follows the last server layer. c = M_i is all-local: no upload, no download.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

from dnnpart.errors import InstanceError
from dnnpart.files import atomic_write_text
from dnnpart.input_files import read_capped_text, shorten, show
from dnnpart.optimiser.instance_schema import (
    LIST_FIELDS,
    DeviceSpec,
    validate_device,
    validate_instance,
)


@dataclass(frozen=True)
class Device:
    """One device's chain DNN; the three lists have one entry per layer, in execution order."""

    name: str
    local_ms: tuple[float, ...]
    server_ms: tuple[float, ...]
    upload_ms: tuple[float, ...]
    download_ms: float = 0.0

    def __post_init__(self):
        # The instance file's schema checks devices built in code too: one set of rules, one message format.
        spec = validate_device(self.name, self.local_ms, self.server_ms, self.upload_ms, self.download_ms)
        for field in LIST_FIELDS:
            object.__setattr__(self, field, tuple(getattr(spec, field)))
        object.__setattr__(self, "download_ms", spec.download_ms)

    @property
    def n_layers(self) -> int:
        return len(self.local_ms)

    def local_prefix_ms(self, cut: int) -> float:
        """Time to run layers 1..cut on the device."""
        return float(sum(self.local_ms[:cut]))

    def release_ms(self, cut: int) -> float:
        """When the server may start layer cut+1: local part plus upload (cut = M: the all-local finish)."""
        if cut == self.n_layers:
            return self.local_prefix_ms(cut)
        return self.local_prefix_ms(cut) + self.upload_ms[cut]

    def server_work_ms(self, cut: int) -> float:
        """Server time of layers cut+1..M."""
        return float(sum(self.server_ms[cut:]))

    def alone_ms(self, cut: int) -> float:
        """Completion with this cut if the device had the server to itself."""
        if cut == self.n_layers:
            return self.local_prefix_ms(cut)
        return self.release_ms(cut) + self.server_work_ms(cut) + self.download_ms

    def same_task(self, other: Device) -> bool:
        """Identical times (names may differ): such devices are interchangeable."""
        return (self.local_ms, self.server_ms, self.upload_ms, self.download_ms) == (
            other.local_ms,
            other.server_ms,
            other.upload_ms,
            other.download_ms,
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "local_ms": list(self.local_ms),
            "server_ms": list(self.server_ms),
            "upload_ms": list(self.upload_ms),
            "download_ms": self.download_ms,
        }

    @classmethod
    def from_spec(cls, spec: DeviceSpec) -> Device:
        return cls(
            name=spec.name,
            local_ms=spec.local_ms,
            server_ms=spec.server_ms,
            upload_ms=spec.upload_ms,
            download_ms=spec.download_ms,
        )


@dataclass(frozen=True)
class Instance:
    """The devices sharing one MEC server."""

    devices: tuple[Device, ...]

    def __post_init__(self):
        devices = tuple(self.devices)
        if not devices:
            raise InstanceError("an instance needs at least one device")
        for d in devices:
            if not isinstance(d, Device):
                raise InstanceError(f"devices must be Device objects, got {d!r}")
        names = [d.name for d in devices]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise InstanceError(f"device names must be unique, repeated: {show(duplicated)}")
        object.__setattr__(self, "devices", devices)

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.devices]

    def to_dict(self) -> dict:
        return {"devices": [d.to_dict() for d in self.devices]}

    def to_json(self, path) -> Path:
        return atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data) -> Instance:
        """An instance from parsed JSON, checked against the declared schema (optimiser.instance_schema)."""
        return cls(tuple(Device.from_spec(d) for d in validate_instance(data).devices))


def read_instance_json(path) -> tuple[Instance, dict]:
    """Read and validate an instance JSON file; also return the raw data (its '_' annotations name groups,
    networks and layers for reports). Every problem is one InstanceError line naming the file."""
    path = Path(path)

    def fail(problem: str) -> InstanceError:
        return InstanceError(f"instance file {path}: {problem}")

    try:
        text = read_capped_text(path, fail)
    except OSError as exc:
        raise InstanceError(f"cannot read instance file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise fail("not readable: nested too deeply") from None
    except ValueError as exc:  # an integer longer than Python converts (4300 digits)
        raise fail(f"not readable: {shorten(exc)}") from None
    try:
        return Instance.from_dict(data), data
    except InstanceError as exc:
        raise InstanceError(f"{path}: {exc}") from None


def load_instance(path) -> Instance:
    """Read and validate an instance JSON file."""
    return read_instance_json(path)[0]


def check_load(load, what: str = "server load level") -> float:
    """A server load level rho in [0, 1), as a float; InstanceError otherwise."""
    if isinstance(load, bool) or not isinstance(load, Real) or not math.isfinite(load) or not 0 <= load < 1:
        raise InstanceError(f"{what} must be in [0, 1), got {load!r}")
    return float(load)


def apply_server_load(server_ms, load: float) -> list[float]:
    """The one place server load is applied: at load level rho the server serves our layers at (1 - rho) of
    its speed, so every server time becomes t / (1 - rho) (the model behind the paper's Fig. 4)."""
    load = check_load(load)
    return [float(t) / (1.0 - load) for t in server_ms]


def scale_server(instance: Instance, load: float) -> Instance:
    """The instance with its server at load level rho (apply_server_load on every device)."""
    return Instance(
        tuple(
            Device(d.name, d.local_ms, tuple(apply_server_load(d.server_ms, load)), d.upload_ms, d.download_ms)
            for d in instance.devices
        )
    )
