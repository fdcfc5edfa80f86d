"""Scenario files: a server and groups of heterogeneous devices, each group with its own network (zoo name or
.onnx file), delay profile (name or folder) and uplink. See examples/heterogeneous.yaml and docs/deployment.md.

`load_scenario` reads and validates a file; dnnpart.planning.compile turns it into an optimiser instance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dnnpart import networks, paths
from dnnpart.errors import DnnpartError, ScenarioError
from dnnpart.input_files import read_capped_text, shorten, show
from dnnpart.optimiser.instance_schema import MAX_DEVICES
from dnnpart.planning.scenario_schema import (
    DEFAULT_FAMILY,
    ScenarioFile,
    ScenarioLoader,
    validate_scenario,
)
from dnnpart.vocabulary import LAYER_TYPES


@dataclass(frozen=True)
class ProfileRef:
    """A delay profile as a scenario names it: `spec` is what load_delay_model gets (a name or a folder)."""

    label: str  # as written in the file, for messages and reports
    spec: str | Path  # a name under data/profiles/ or an absolute folder path
    folder: Path


@dataclass(frozen=True)
class DeviceGroup:
    """`count` identical devices: one network, one device profile, one uplink."""

    name: str
    count: int
    network: str  # as written in the file (a zoo name or a path)
    layers: pd.DataFrame = field(repr=False, compare=False)
    profile: ProfileRef
    uplink_mbps: float
    downlink_mbps: float | None = None
    cpu_quota: float | str = "native"  # the testbed's emulated board: a fraction of one core, or "native"
    link_delay_ms: float = 0.0  # the testbed's one-way link delay

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


def checker(label: str):
    """Raise ScenarioError prefixed with the file's label and the place (e.g. 'devices[1].uplink_mbps')."""

    def fail(place: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{label}: {place}: {problem}" if place else f"{label}: {problem}")

    return fail


def has_role(folder: Path, role: str) -> bool:
    """A profile folder serves a role with measurements (<role>.csv) or fixed models (<role>.json "models")."""
    if (folder / f"{role}.csv").is_file():
        return True
    meta = folder / f"{role}.json"
    try:
        return meta.is_file() and "models" in json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _profile_ref(label: str, role: str, base: Path, place: str, fail) -> ProfileRef:
    """A bare name is looked up under data/profiles/ first; anything else is a folder relative to the file."""
    from dnnpart.delay import available_profiles

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
                raise fail(
                    place,
                    f"profile folder {path} has no {role}.csv (nor fixed models in {role}.json; "
                    f"found: {', '.join(present)}); "
                    f"measure it with `dnnpart profile --role {role} --out {path}`",
                )
            return ProfileRef(label=label, spec=spec, folder=path)
    raise fail(
        place,
        f"no profile {label!r}: neither a name under {paths.PROFILES_DIR} "
        f"(available: {', '.join(available_profiles()) or 'none'}) nor a folder at {folder}",
    )


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
            raise fail(
                place,
                f"profile {profile.label!r} has no {role} measurements of layer type "
                f"{row.type!r}, needed by layer {row.name!r} of {layers.attrs.get('network')}; "
                f"covered types: {', '.join(covered) or 'none'}",
            )


def _network(spec: str, base: Path, place: str, fail) -> pd.DataFrame:
    if spec.lower().endswith(".onnx"):
        path = Path(spec).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise fail(place, f"ONNX file not found: {path}")
        try:
            return networks.from_onnx(path)
        except DnnpartError as exc:
            raise fail(place, f"{exc} (covered layer types: {', '.join(LAYER_TYPES)})") from None
    try:
        return networks.get(spec)
    except DnnpartError:
        zoo = ", ".join(networks.names(include_dag=True))
        raise fail(place, f"unknown network {spec!r}; valid zoo names: {zoo} (or a path to a .onnx file)") from None


def read_yaml(path: Path, label: str, fail=None, what: str = "scenario file"):
    """The file parsed as YAML 1.2 (JSON is YAML): bounded in size, no anchors or aliases, one-line errors
    (`fail(place, problem)` makes the exception; by default a ScenarioError prefixed with `label`)."""
    import yaml

    fail = fail or checker(label)
    if not path.is_file():
        raise fail("", f"{what} not found ({path.resolve()})")
    try:
        text = read_capped_text(path, lambda problem: fail("", problem))
    except OSError as exc:
        raise fail("", f"cannot read the file: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=ScenarioLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise fail(where, f"not valid YAML/JSON: {problem}") from None
    except RecursionError:
        raise fail("", "not readable: nested too deeply") from None
    except ValueError as exc:  # an integer longer than Python converts (4300 digits)
        raise fail("", f"not readable: {shorten(exc)}") from None


def load_scenario(path) -> Scenario:
    """Read and validate a scenario file (YAML or JSON); relative paths resolve against its folder.

    Raises ScenarioError naming the file and the place in it (e.g. 'devices[1].uplink_mbps') for any
    problem: what the declared schema (scenario_schema.ScenarioFile) refuses — unknown or missing keys,
    counts and rates out of range — then what needs the file system: unknown networks, missing profile
    folders or role files, layer types a profile did not measure, ONNX operators the table cannot describe.
    """
    path = Path(path)
    label = str(path)
    fail = checker(label)
    spec: ScenarioFile = validate_scenario(read_yaml(path, label), label)
    base = path.resolve().parent

    total = sum(g.count for g in spec.devices)
    if total > MAX_DEVICES:
        raise fail("devices", f"{total} devices in all groups, more than the limit of {MAX_DEVICES}")
    names = {}
    for i, group in enumerate(spec.devices):
        name = group.name if group.name is not None else f"group{i}"
        if name in names:
            raise fail(
                f"devices[{i}].name",
                f"{show(name)} is already the name of devices[{names[name]}]; names must be unique",
            )
        names[name] = i

    server_profile = _profile_ref(spec.server.profile, "server", base, "server.profile", fail)
    groups = []
    for (name, i), group in zip(names.items(), spec.devices):
        at = f"devices[{i}]"
        profile = _profile_ref(group.profile, "device", base, f"{at}.profile", fail)
        layers = _network(group.network, base, f"{at}.network", fail)
        _check_coverage(layers, profile, "device", f"{at}.profile", fail)
        _check_coverage(layers, server_profile, "server", "server.profile", fail)
        groups.append(
            DeviceGroup(
                name=name,
                count=group.count,
                network=group.network,
                layers=layers,
                profile=profile,
                uplink_mbps=group.uplink_mbps,
                downlink_mbps=group.downlink_mbps,
                cpu_quota=group.cpu_quota,
                link_delay_ms=group.link_delay_ms,
            )
        )
    return Scenario(
        path=path.resolve(),
        server_profile=server_profile,
        load=spec.server.load,
        groups=tuple(groups),
        family=spec.family,
    )
