"""Compile networks, delay profiles, uplink rates and server load into an optimiser instance.

The paper's Algorithm 1, step 1: per device and layer, local time T^l, server time T^s (from the delay
models) and transmission time T^t = O / r (eq. 3) of each layer's input.

Two ways in:
- `network_instance`: the paper's experiments, n identical devices running one zoo network;
- a scenario file (`load_scenario`, `compile_scenario`): a server and groups of heterogeneous devices, each
  group with its own network (zoo name or .onnx file), delay profile (name or folder) and uplink. See
  examples/heterogeneous.yaml and docs/deployment.md.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart import networks, paths
from dnnpart.errors import DnnpartError, ScenarioError
from dnnpart.instance import Device, Instance



def upload_ms(n_bytes, bandwidth_mbps: float):
    """Eq. (3): time in ms to send n_bytes over an uplink of bandwidth_mbps (10^6 bit/s)."""
    check_rate(bandwidth_mbps, "bandwidth_mbps")
    return np.asarray(n_bytes, dtype=float) * 8.0 / (bandwidth_mbps * 1000.0)


def check_rate(rate_mbps: float, what: str) -> None:
    if not np.isfinite(rate_mbps) or rate_mbps <= 0:
        raise DnnpartError(f"{what} must be a positive number of Mbps, got {rate_mbps}")


def check_load(load: float, what: str = "server load level") -> None:
    if not np.isfinite(load) or not 0.0 <= load < 1.0:
        raise DnnpartError(f"{what} must be in [0, 1), got {load}")


def check_n_devices(n_devices, what: str = "number of devices") -> None:
    if int(n_devices) != n_devices or n_devices < 1:
        raise DnnpartError(f"{what} must be a positive integer, got {n_devices}")


def device_for_table(name: str, layers: pd.DataFrame, device_model, server_model, bandwidth_mbps: float,
                     load: float = 0.0, downlink_mbps: float | None = None) -> Device:
    """One device running `layers`: local and server delays predicted, uploads from the layers' input sizes.

    A server at load level rho serves our layers at (1 - rho) of its speed, so server times scale by
    1 / (1 - rho) — the model behind the paper's Fig. 4. The result download (the last layer's output)
    costs nothing unless a downlink rate is given.
    """
    check_load(load)
    return device_from_times(name, layers, device_model.predict(layers, "device"),
                             server_model.predict(layers, "server"), bandwidth_mbps, load, downlink_mbps)


def device_from_times(name: str, layers: pd.DataFrame, local_ms, server_ms, bandwidth_mbps: float,
                      load: float = 0.0, downlink_mbps: float | None = None) -> Device:
    """`device_for_table` with the per-layer delays already predicted (server times at load 0)."""
    check_load(load)
    local = np.asarray(local_ms, dtype=float)
    server = np.asarray(server_ms, dtype=float) / (1.0 - load)
    upload = upload_ms(layers["in_bytes"].to_numpy(), bandwidth_mbps)
    download = 0.0
    if downlink_mbps is not None:
        check_rate(downlink_mbps, "downlink_mbps")
        download = float(upload_ms(layers["out_bytes"].iloc[-1], downlink_mbps))
    return Device(name=name, local_ms=local.tolist(), server_ms=server.tolist(), upload_ms=upload.tolist(),
                  download_ms=download)


def predict_tables(model, tables: list[pd.DataFrame], role: str) -> list[np.ndarray]:
    """model.predict over several layer tables in one call (one design matrix per layer type, not per table)."""
    stacked = pd.concat(tables, ignore_index=True)
    times = model.predict(stacked, role).to_numpy(dtype=float)
    bounds = np.cumsum([0] + [len(t) for t in tables])
    return [times[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def network_instance(network: str, n_devices: int, bandwidth_mbps: float, load: float = 0.0,
                     profile: str = "paper", family: str = "dnnpart") -> Instance:
    """The paper's experiments: n identical devices running one zoo network over identical uplinks."""
    check_n_devices(n_devices)
    check_load(load)
    local, server, in_bytes = _zoo_delays(network, str(profile), family)
    upload = upload_ms(in_bytes, bandwidth_mbps)
    return Instance([Device(name=f"d{i}", local_ms=list(local), server_ms=[t / (1.0 - load) for t in server],
                            upload_ms=upload.tolist(), download_ms=0.0)
                     for i in range(int(n_devices))])


@functools.lru_cache(maxsize=64)
def _zoo_delays(network: str, profile: str, family: str) -> tuple[tuple, tuple, tuple]:
    """Predicted local and server ms and input bytes per layer of a zoo network, computed once per process:
    a sweep builds hundreds of instances from the same few (network, profile) pairs, and prediction is the
    slow part (patsy evaluates every formula)."""
    from dnnpart.delay import load_delay_model

    layers = networks.get(network)
    model = load_delay_model(profile, family=family)
    return (tuple(model.predict(layers, "device").astype(float)), tuple(model.predict(layers, "server").astype(float)),
            tuple(layers["in_bytes"].astype(float)))


# --- scenario files --------------------------------------------------------------------------------------

TOP_KEYS = {"server": True, "devices": True, "family": False}           # key -> required
SERVER_KEYS = {"profile": True, "load": False}
GROUP_KEYS = {"name": False, "count": True, "network": True, "profile": True, "uplink_mbps": True,
              "downlink_mbps": False}
DEFAULT_FAMILY = "dnnpart"


@dataclass(frozen=True)
class ProfileRef:
    """A delay profile as a scenario names it: `spec` is what load_delay_model gets (a name or a folder)."""

    label: str              # as written in the file, for messages and reports
    spec: str | Path        # a name under data/profiles/ or an absolute folder path
    folder: Path


@dataclass(frozen=True)
class DeviceGroup:
    """`count` identical devices: one network, one device profile, one uplink."""

    name: str
    count: int
    network: str            # as written in the file (a zoo name or a path)
    layers: pd.DataFrame = field(repr=False, compare=False)
    profile: ProfileRef
    uplink_mbps: float
    downlink_mbps: float | None = None

    @property
    def network_name(self) -> str:
        return str(self.layers.attrs.get("network", self.network))


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file: one MEC server and groups of devices."""

    path: Path
    server_profile: ProfileRef
    load: float
    groups: tuple[DeviceGroup, ...]
    family: str = DEFAULT_FAMILY

    @property
    def n_devices(self) -> int:
        return sum(g.count for g in self.groups)


def _checker(label: str):
    """Raise ScenarioError prefixed with the file's label and the place (e.g. 'devices[1].uplink_mbps')."""
    def fail(place: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{label}: {place}: {problem}" if place else f"{label}: {problem}")
    return fail


def _check_keys(data, spec: dict, place: str, fail) -> None:
    if not isinstance(data, dict):
        raise fail(place, f"must be a mapping with keys {sorted(spec)}, got {type(data).__name__} {data!r}")
    for key in data:
        if key not in spec:
            raise fail(place, f"unknown key {key!r} (valid keys: {', '.join(spec)})")
    for key, required in spec.items():
        if required and key not in data:
            raise fail(place, f"missing key {key!r} (valid keys: {', '.join(spec)})")


def _number(value, place: str, fail, *, lower: float, lower_inclusive: bool, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise fail(place, f"must be a finite number, got {value!r}")
    value = float(value)
    if (value < lower) if lower_inclusive else (value <= lower):
        raise fail(place, f"must be {'>=' if lower_inclusive else '>'} {lower:g}, got {value:g}")
    if upper is not None and value >= upper:
        raise fail(place, f"must be in [{lower:g}, {upper:g}), got {value:g}")
    return value


def _string(value, place: str, fail) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(place, f"must be a non-empty string, got {value!r}")
    return value.strip()


def has_role(folder: Path, role: str) -> bool:
    """A profile folder serves a role with measurements (<role>.csv) or fixed models (<role>.json "models")."""
    if (folder / f"{role}.csv").is_file():
        return True
    meta = folder / f"{role}.json"
    try:
        return meta.is_file() and "models" in json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _profile_ref(value, role: str, base: Path, place: str, fail) -> ProfileRef:
    """A bare name is looked up under data/profiles/ first; anything else is a folder relative to the file."""
    from dnnpart.delay import available_profiles

    label = _string(value, place, fail)
    candidates = []
    if "/" not in label and "\\" not in label:
        candidates.append((label, paths.PROFILES_DIR / label))
    folder = Path(label).expanduser()
    folder = (folder if folder.is_absolute() else base / folder).resolve()
    candidates.append((folder, folder))
    for spec, path in candidates:
        if path.is_dir():
            if not has_role(path, role):
                present = sorted(p.name for p in path.iterdir() if p.suffix in (".csv", ".json")) or ["nothing"]
                raise fail(place, f"profile folder {path} has no {role}.csv (nor fixed models in {role}.json; "
                                  f"found: {', '.join(present)}); "
                                  f"measure it with `dnnpart profile --role {role} --out {path}`")
            return ProfileRef(label=label, spec=spec, folder=path)
    raise fail(place, f"no profile {label!r}: neither a name under {paths.PROFILES_DIR} "
                      f"(available: {', '.join(available_profiles()) or 'none'}) nor a folder at {folder}")


def profile_layer_types(folder: Path, role: str) -> list[str]:
    """The layer types a profile covers for one role: the measured CSV's layer_type values, else the
    fixed models' keys. The fitter fits exactly the types its CSV holds, so this is what predict() accepts."""
    folder = Path(folder)
    csv = folder / f"{role}.csv"
    try:
        if csv.is_file():
            return sorted(set(pd.read_csv(csv, usecols=["layer_type"])["layer_type"].astype(str)))
        return sorted(json.loads((folder / f"{role}.json").read_text(encoding="utf-8"))["models"])
    except (OSError, ValueError, KeyError) as exc:
        raise DnnpartError(f"cannot read the layer types of profile {folder} ({role}): {exc}") from None


def _check_coverage(layers: pd.DataFrame, profile: ProfileRef, role: str, place: str, fail) -> None:
    covered = profile_layer_types(profile.folder, role)
    for row in layers.itertuples(index=False):
        if row.type not in covered:
            raise fail(place, f"profile {profile.label!r} has no {role} measurements of layer type "
                              f"{row.type!r}, needed by layer {row.name!r} of {layers.attrs.get('network')}; "
                              f"covered types: {', '.join(covered) or 'none'}")


def _network(value, base: Path, place: str, fail) -> pd.DataFrame:
    spec = _string(value, place, fail)
    if spec.lower().endswith(".onnx"):
        path = Path(spec).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise fail(place, f"ONNX file not found: {path}")
        try:
            return networks.from_onnx(path)
        except DnnpartError as exc:
            raise fail(place, f"{exc} (covered layer types: {', '.join(networks.LAYER_TYPES)})") from None
    try:
        return networks.get(spec)
    except DnnpartError:
        raise fail(place, f"unknown network {spec!r}; valid zoo names: {', '.join(networks.names())} "
                          f"(or a path to a .onnx file)") from None


def _read(path: Path, label: str):
    import yaml

    fail = _checker(label)
    if not path.is_file():
        raise fail("", f"scenario file not found ({path.resolve()})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail("", f"cannot read the file: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise fail(where, f"not valid YAML/JSON: {problem}") from None


def load_scenario(path) -> Scenario:
    """Read and validate a scenario file (YAML or JSON); relative paths resolve against its folder.

    Raises ScenarioError naming the file and the place in it (e.g. 'devices[1].uplink_mbps') for any
    problem: unknown or missing keys, counts and rates out of range, unknown networks, missing profile
    folders or role files, layer types a profile did not measure, ONNX operators the table cannot describe.
    """
    path = Path(path)
    label = str(path)
    fail = _checker(label)
    data = _read(path, label)
    base = path.resolve().parent

    _check_keys(data, TOP_KEYS, "", fail)
    family = _string(data.get("family", DEFAULT_FAMILY), "family", fail)
    from dnnpart.delay import FAMILIES

    if family not in FAMILIES:
        raise fail("family", f"unknown delay-model family {family!r} (valid: {', '.join(FAMILIES)})")

    server = data["server"]
    _check_keys(server, SERVER_KEYS, "server", fail)
    server_profile = _profile_ref(server["profile"], "server", base, "server.profile", fail)
    load = _number(server.get("load", 0.0), "server.load", fail, lower=0.0, lower_inclusive=True, upper=1.0)

    devices = data["devices"]
    if not isinstance(devices, list) or not devices:
        raise fail("devices", f"must be a non-empty list of device groups, got {devices!r}")
    groups, names = [], {}
    for i, group in enumerate(devices):
        at = f"devices[{i}]"
        _check_keys(group, GROUP_KEYS, at, fail)
        name = _string(group.get("name", f"group{i}"), f"{at}.name", fail)
        if name in names:
            raise fail(f"{at}.name", f"{name!r} is already the name of devices[{names[name]}]; names must be unique")
        names[name] = i
        count = group["count"]
        if isinstance(count, bool) or not isinstance(count, int):
            raise fail(f"{at}.count", f"must be a positive integer, got {count!r}")
        if count <= 0:
            raise fail(f"{at}.count", f"must be > 0, got {count}")
        uplink = _number(group["uplink_mbps"], f"{at}.uplink_mbps", fail, lower=0.0, lower_inclusive=False)
        downlink = group.get("downlink_mbps")
        if downlink is not None:
            downlink = _number(downlink, f"{at}.downlink_mbps", fail, lower=0.0, lower_inclusive=False)
        profile = _profile_ref(group["profile"], "device", base, f"{at}.profile", fail)
        layers = _network(group["network"], base, f"{at}.network", fail)
        _check_coverage(layers, profile, "device", f"{at}.profile", fail)
        _check_coverage(layers, server_profile, "server", "server.profile", fail)
        groups.append(DeviceGroup(name=name, count=count, network=str(group["network"]).strip(), layers=layers,
                                  profile=profile, uplink_mbps=uplink, downlink_mbps=downlink))
    return Scenario(path=path.resolve(), server_profile=server_profile, load=load, groups=tuple(groups),
                    family=family)


@dataclass(frozen=True)
class CompiledScenario:
    """A scenario turned into an optimiser instance, remembering which group and layers each device has.

    Devices are named '<group>-<k>' (k = 0..count-1) in the file's group order.
    """

    scenario: Scenario
    instance: Instance
    device_group: tuple[int, ...]           # per device: index into scenario.groups

    def group(self, device: int) -> DeviceGroup:
        return self.scenario.groups[self.device_group[device]]

    def layers(self, device: int) -> pd.DataFrame:
        return self.group(device).layers

    @property
    def layer_names(self) -> list[list[str]]:
        """Per device, its layer names in execution order."""
        return [self.layers(i)["name"].astype(str).tolist() for i in range(len(self.instance))]

    def cut_name(self, device: int, cut: int) -> str:
        """'input' for cut 0 (upload the raw input), 'all local' for cut M, else the last local layer's name."""
        names = self.layer_names[device]
        if not 0 <= cut <= len(names):
            raise DnnpartError(f"cut {cut} out of range 0..{len(names)} for device {self.instance.names[device]}")
        return "input" if cut == 0 else "all local" if cut == len(names) else names[cut - 1]

    def to_dict(self) -> dict:
        """The instance JSON, with provenance and layer names under '_' keys (ignored by instance readers)."""
        data = self.instance.to_dict()
        data["_scenario"] = str(self.scenario.path)
        for i, device in enumerate(data["devices"]):
            group = self.group(i)
            device["_group"] = group.name
            device["_network"] = group.network_name
            device["_layers"] = self.layer_names[i]
        return data


def compile_scenario(path_or_scenario) -> CompiledScenario:
    """Validate a scenario file (or take a loaded Scenario) and predict every device's layer times.

    Local times come from the group's device profile, server times from the server profile scaled by
    1 / (1 - load), uploads by eq. (3) from each layer's input bytes and the group's uplink; the download is
    the last layer's output over the downlink when one is given (else free).
    """
    from dnnpart.delay import load_delay_model

    scenario = path_or_scenario if isinstance(path_or_scenario, Scenario) else load_scenario(path_or_scenario)
    models = {}
    fail = _checker(str(scenario.path))

    def model(profile: ProfileRef, place: str):
        key = str(profile.folder)
        if key not in models:
            try:
                models[key] = load_delay_model(profile.spec, family=scenario.family)
            except DnnpartError as exc:  # e.g. a malformed CSV: its own message names the line
                raise fail(place, str(exc)) from None
        return models[key]

    # Predict per profile over all the tables it serves at once: the delay models' cost is per call.
    groups = scenario.groups
    server_ms = predict_tables(model(scenario.server_profile, "server.profile"), [g.layers for g in groups], "server")
    local_ms = [None] * len(groups)
    for folder in dict.fromkeys(str(g.profile.folder) for g in groups):
        members = [k for k, g in enumerate(groups) if str(g.profile.folder) == folder]
        dev_model = model(groups[members[0]].profile, f"devices[{members[0]}].profile")
        for k, times in zip(members, predict_tables(dev_model, [groups[k].layers for k in members], "device")):
            local_ms[k] = times

    devices, owner = [], []
    for g, group in enumerate(groups):
        first = device_from_times(f"{group.name}-0", group.layers, local_ms[g], server_ms[g], group.uplink_mbps,
                                  scenario.load, group.downlink_mbps)
        for k in range(group.count):
            devices.append(Device(f"{group.name}-{k}", first.local_ms, first.server_ms, first.upload_ms,
                                  first.download_ms))
            owner.append(g)
    return CompiledScenario(scenario=scenario, instance=Instance(tuple(devices)), device_group=tuple(owner))


def cli_compile(args) -> int:
    """`dnnpart compile --scenario FILE -o instance.json`: write the instance any solver can read."""
    from dnnpart.io import atomic_write_text

    compiled = compile_scenario(args.scenario)
    out = atomic_write_text(Path(args.output), json.dumps(compiled.to_dict(), indent=1) + "\n")
    print(f"wrote {out}: {len(compiled.instance)} devices in {len(compiled.scenario.groups)} groups")
    return 0


def cli_solve_scenario(args) -> int:
    """`dnnpart solve --scenario FILE [--json] [--report out.html]`: see dnnpart.plan_report."""
    from dnnpart.plan_report import cli_solve_scenario as solve_and_print

    return solve_and_print(args)
