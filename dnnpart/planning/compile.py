"""Compile networks, delay profiles, uplink rates and server load into an optimiser instance.

The paper's Algorithm 1, step 1: per device and layer, local time T^l, server time T^s (from the delay
models) and transmission time T^t = O / r (eq. 3) of each layer's input.

A DAG network (ResNet, MobileNetV2) reaches the optimiser as the chain of its blocks (dnnpart.networks.blocks):
a block's times are the sums of its layers' predicted times, its upload the one tensor crossing into it. A
chain's blocks are its layers, so its instance is exactly the per-layer one.

Two ways in:
- `network_instance`: the paper's experiments, n identical devices running one zoo network;
- `compile_scenario`: a scenario file (dnnpart.planning.scenario) of heterogeneous device groups.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dnnpart import networks
from dnnpart.errors import DnnpartError
from dnnpart.limits import MAX_DEVICES
from dnnpart.optimiser.instance import Device, Instance, apply_server_load, check_load
from dnnpart.planning.scenario import DeviceGroup, ProfileRef, Scenario, checker, load_scenario
from dnnpart.vocabulary import cut_name


def upload_ms(n_bytes, bandwidth_mbps: float):
    """Eq. (3): time in ms to send n_bytes over an uplink of bandwidth_mbps (10^6 bit/s)."""
    check_rate(bandwidth_mbps, "bandwidth_mbps")
    return np.asarray(n_bytes, dtype=float) * 8.0 / (bandwidth_mbps * 1000.0)


def check_rate(rate_mbps: float, what: str) -> None:
    if not np.isfinite(rate_mbps) or rate_mbps <= 0:
        raise DnnpartError(f"{what} must be a positive number of Mbps, got {rate_mbps}")


def check_n_devices(n_devices, what: str = "number of devices") -> None:
    if isinstance(n_devices, bool) or int(n_devices) != n_devices or n_devices < 1:
        raise DnnpartError(f"{what} must be a positive integer, got {n_devices}")
    if n_devices > MAX_DEVICES:
        raise DnnpartError(f"{what} must be at most {MAX_DEVICES:,} (dnnpart.limits.MAX_DEVICES), got {n_devices:,}")


def device_for_table(
    name: str,
    layers: pd.DataFrame,
    device_model,
    server_model,
    bandwidth_mbps: float,
    load: float = 0.0,
    downlink_mbps: float | None = None,
) -> Device:
    """One device running `layers`: local and server delays predicted, uploads from the layers' input sizes.

    A server at load level rho serves our layers at (1 - rho) of its speed, so server times scale by
    1 / (1 - rho) — the model behind the paper's Fig. 4. The result download (the last layer's output)
    costs nothing unless a downlink rate is given.
    """
    check_load(load)
    return device_from_times(
        name,
        layers,
        device_model.predict(layers, "device"),
        server_model.predict(layers, "server"),
        bandwidth_mbps,
        load,
        downlink_mbps,
    )


def device_from_times(
    name: str,
    layers: pd.DataFrame,
    local_ms,
    server_ms,
    bandwidth_mbps: float,
    load: float = 0.0,
    downlink_mbps: float | None = None,
) -> Device:
    """`device_for_table` with the per-layer delays already predicted (server times at load 0); a DAG
    network's layers are summed into its blocks."""
    local = networks.block_sums(layers, local_ms)
    server = apply_server_load(networks.block_sums(layers, server_ms), load)
    upload = upload_ms(networks.block_in_bytes(layers), bandwidth_mbps)
    download = 0.0
    if downlink_mbps is not None:
        check_rate(downlink_mbps, "downlink_mbps")
        download = float(upload_ms(layers["out_bytes"].iloc[-1], downlink_mbps))
    return Device(name=name, local_ms=local.tolist(), server_ms=server, upload_ms=upload.tolist(), download_ms=download)


def predict_tables(model, tables: list[pd.DataFrame], role: str) -> list[np.ndarray]:
    """model.predict over several layer tables in one call (one design matrix per layer type, not per table)."""
    stacked = pd.concat(tables, ignore_index=True)
    times = model.predict(stacked, role).to_numpy(dtype=float)
    bounds = np.cumsum([0] + [len(t) for t in tables])
    return [times[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def network_instance(
    network: str,
    n_devices: int,
    bandwidth_mbps: float,
    load: float = 0.0,
    profile: str = "paper",
    family: str = "dnnpart",
) -> Instance:
    """The paper's experiments: n identical devices running one zoo network (or .onnx file) over identical
    uplinks. A DAG network's subtasks are its blocks; its profile must cover its layer types (else
    MissingModelError names the first one missing)."""
    check_n_devices(n_devices)
    local, server, in_bytes = _zoo_delays(network, str(profile), family)
    upload = upload_ms(in_bytes, bandwidth_mbps)
    return Instance(
        [
            Device(
                name=f"d{i}",
                local_ms=list(local),
                server_ms=apply_server_load(server, load),
                upload_ms=upload.tolist(),
                download_ms=0.0,
            )
            for i in range(int(n_devices))
        ]
    )


@functools.lru_cache(maxsize=64)
def _zoo_delays(network: str, profile: str, family: str) -> tuple[tuple, tuple, tuple]:
    """Predicted local and server ms and input bytes per subtask (layer, or block of a DAG) of a zoo network or
    .onnx file, computed once per process: a sweep builds hundreds of instances from the same few (network,
    profile) pairs, and prediction is the slow part (patsy evaluates every formula)."""
    from dnnpart.delay import load_delay_model

    layers = networks.load(network)
    model = load_delay_model(profile, family=family)
    local = networks.block_sums(layers, model.predict(layers, "device").astype(float))
    server = networks.block_sums(layers, model.predict(layers, "server").astype(float))
    return tuple(local), tuple(server), tuple(networks.block_in_bytes(layers).astype(float))


@dataclass(frozen=True)
class LabelledInstance:
    """An instance with names for people: each device's group, network and layer names (for plans and reports)."""

    instance: Instance
    groups: tuple[str, ...]
    networks: tuple[str, ...]
    layer_names: tuple[tuple[str, ...], ...]

    def cut_name(self, device: int, cut: int) -> str:
        """The cut by name (vocabulary.cut_name): 'input', 'all local', or the last local layer's name."""
        try:
            return cut_name(self.layer_names[device], cut)
        except ValueError as exc:
            raise DnnpartError(f"device {self.instance.names[device]}: {exc}") from None

    @classmethod
    def of_network(cls, instance: Instance, layers: pd.DataFrame) -> LabelledInstance:
        """Identical devices that all run one layer table (a DAG's subtasks named by their blocks' last layers)."""
        network = str(layers.attrs.get("network", "network"))
        names = tuple(networks.block_names(layers))
        n = len(instance)
        return cls(instance, (network,) * n, (network,) * n, (names,) * n)

    @classmethod
    def of_annotated(cls, instance: Instance, data: dict) -> LabelledInstance:
        """An instance read from JSON: the '_group', '_network' and '_layers' annotations `dnnpart compile`
        writes, where present; otherwise groups and networks are unnamed and layers are 'layer1'..'layerM'."""
        raw = data.get("devices", []) if isinstance(data, dict) else []
        groups, nets, layers = [], [], []
        for i, d in enumerate(instance.devices):
            ann = raw[i] if i < len(raw) and isinstance(raw[i], dict) else {}
            names = ann.get("_layers")
            if not (isinstance(names, list) and len(names) == d.n_layers and all(isinstance(x, str) for x in names)):
                names = [f"layer{j}" for j in range(1, d.n_layers + 1)]
            groups.append(str(ann.get("_group", "")))
            nets.append(str(ann.get("_network", "")))
            layers.append(tuple(names))
        return cls(instance, tuple(groups), tuple(nets), tuple(layers))


@dataclass(frozen=True)
class CompiledScenario:
    """A scenario turned into an optimiser instance, remembering which group and layers each device has.

    Devices are named '<group>-<k>' (k = 0..count-1) in the file's group order.
    """

    scenario: Scenario
    instance: Instance
    device_group: tuple[int, ...]  # per device: index into scenario.groups

    def group(self, device: int) -> DeviceGroup:
        return self.scenario.groups[self.device_group[device]]

    def layers(self, device: int) -> pd.DataFrame:
        return self.group(device).layers

    @property
    def layer_names(self) -> list[list[str]]:
        """Per device, its subtasks' names in execution order: the layers of a chain, the blocks (each named by
        its last layer) of a DAG network."""
        return [networks.block_names(self.layers(i)) for i in range(len(self.instance))]

    def cut_name(self, device: int, cut: int) -> str:
        """The cut by name (vocabulary.cut_name): 'input', 'all local', or the last local layer's name."""
        try:
            return cut_name(self.layer_names[device], cut)
        except ValueError as exc:
            raise DnnpartError(f"device {self.instance.names[device]}: {exc}") from None

    @property
    def labelled(self) -> LabelledInstance:
        return LabelledInstance(
            self.instance,
            tuple(self.group(i).name for i in range(len(self.instance))),
            tuple(self.group(i).network_name for i in range(len(self.instance))),
            tuple(tuple(n) for n in self.layer_names),
        )

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
    fail = checker(str(scenario.path))

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
        first = device_from_times(
            f"{group.name}-0",
            group.layers,
            local_ms[g],
            server_ms[g],
            group.uplink_mbps,
            scenario.load,
            group.downlink_mbps,
        )
        for k in range(group.count):
            devices.append(
                Device(f"{group.name}-{k}", first.local_ms, first.server_ms, first.upload_ms, first.download_ms)
            )
            owner.append(g)
    return CompiledScenario(scenario=scenario, instance=Instance(tuple(devices)), device_group=tuple(owner))
