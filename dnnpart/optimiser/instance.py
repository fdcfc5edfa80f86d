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

LIST_FIELDS = ("local_ms", "server_ms", "upload_ms")
DEVICE_FIELDS = ("name", *LIST_FIELDS, "download_ms")


def _time(value, where: str) -> float:
    """One time in ms: a finite, non-negative real number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InstanceError(f"{where} must be a number of ms, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InstanceError(f"{where} must be finite, got {value}")
    if value < 0:
        raise InstanceError(f"{where} must be non-negative, got {value}")
    return value


@dataclass(frozen=True)
class Device:
    """One device's chain DNN; the three lists have one entry per layer, in execution order."""

    name: str
    local_ms: tuple[float, ...]
    server_ms: tuple[float, ...]
    upload_ms: tuple[float, ...]
    download_ms: float = 0.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise InstanceError(f"device name must be a non-empty string, got {self.name!r}")
        for field in LIST_FIELDS:
            values = getattr(self, field)
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise InstanceError(f"device {self.name!r}: {field} must be a list of ms, got {values!r}")
            values = tuple(_time(v, f"device {self.name!r}: {field}[{j}]") for j, v in enumerate(values))
            object.__setattr__(self, field, values)
        lengths = {field: len(getattr(self, field)) for field in LIST_FIELDS}
        if len(set(lengths.values())) != 1:
            raise InstanceError(f"device {self.name!r}: local_ms, server_ms and upload_ms must have one entry "
                                f"per layer, got lengths {lengths}")
        if lengths["local_ms"] == 0:
            raise InstanceError(f"device {self.name!r}: needs at least one layer")
        object.__setattr__(self, "download_ms", _time(self.download_ms, f"device {self.name!r}: download_ms"))

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
            other.local_ms, other.server_ms, other.upload_ms, other.download_ms)

    def to_dict(self) -> dict:
        return {"name": self.name, "local_ms": list(self.local_ms), "server_ms": list(self.server_ms),
                "upload_ms": list(self.upload_ms), "download_ms": self.download_ms}

    @classmethod
    def from_dict(cls, data, index: int = 0) -> Device:
        where = f"device {index}"
        if not isinstance(data, dict):
            raise InstanceError(f"{where} must be an object with keys {list(DEVICE_FIELDS)}, got {data!r}")
        if isinstance(data.get("name"), str):
            where = f"device {data['name']!r}"
        unknown = sorted(k for k in data if k not in DEVICE_FIELDS and not str(k).startswith("_"))
        if unknown:
            raise InstanceError(f"{where}: unknown keys {unknown}; valid keys are {list(DEVICE_FIELDS)} "
                                f"(comments may use keys starting with '_')")
        missing = [k for k in ("name", *LIST_FIELDS) if k not in data]
        if missing:
            raise InstanceError(f"{where}: missing key(s) {missing}")
        return cls(name=data["name"], local_ms=data["local_ms"], server_ms=data["server_ms"],
                   upload_ms=data["upload_ms"], download_ms=data.get("download_ms", 0.0))


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
            raise InstanceError(f"device names must be unique, repeated: {duplicated}")
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
        if not isinstance(data, dict) or "devices" not in data:
            raise InstanceError('an instance must be an object {"devices": [...]}')
        # Other top-level keys are annotations (e.g. a known optimum); device objects are checked strictly.
        devices = data["devices"]
        if not isinstance(devices, list):
            raise InstanceError(f"instance: devices must be a list, got {type(devices).__name__}")
        return cls(tuple(Device.from_dict(d, i) for i, d in enumerate(devices)))


def read_instance_json(path) -> tuple[Instance, dict]:
    """Read and validate an instance JSON file; also return the raw data (its '_' annotations name groups,
    networks and layers for reports)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InstanceError(f"cannot read instance file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InstanceError(f"instance file {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InstanceError(f"instance file {path} is not valid JSON: {exc}") from None
    except (RecursionError, ValueError) as exc:  # 100k-deep nesting; integers longer than Python converts
        raise InstanceError(f"instance file {path} cannot be read: {str(exc)[:200]}") from None
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
    return Instance(tuple(Device(d.name, d.local_ms, tuple(apply_server_load(d.server_ms, load)), d.upload_ms,
                                 d.download_ms) for d in instance.devices))
