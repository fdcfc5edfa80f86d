"""Scenario files: every validation error names the file and the place; compiled numbers match hand computation.

Profiles here are small fixed-model folders (<role>.json with constant per-type models) so that every
predicted time is known exactly and nothing is fitted.
"""

import json
import shutil

import pytest
import yaml

from dnnpart import networks, paths
from dnnpart.errors import ScenarioError
from dnnpart.planning import compile_scenario, load_scenario, profile_layer_types

# Constant per-type delays (ms) of the fixed-model test profile.
DEVICE_MS = {"conv": 3.0, "pool": 1.0, "fc": 2.0, "relu": 0.5, "softmax": 0.25, "lrn": 1.5, "dropout": 0.125}
SERVER_MS = {t: v / 8 for t, v in DEVICE_MS.items()}


def fixed_profile(folder, role_ms: dict, types=None):
    """A profile folder whose models predict a constant per layer type (roles: the keys of role_ms)."""
    folder.mkdir(parents=True, exist_ok=True)
    for role, per_type in role_ms.items():
        models = {
            t: {"formula": "latency_ms ~ 1", "log_response": False, "params": {"Intercept": ms}}
            for t, ms in per_type.items()
            if types is None or t in types
        }
        (folder / f"{role}.json").write_text(json.dumps({"models": models}))
    return folder


def write_scenario(path, data) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.fixture
def base(tmp_path):
    """A valid two-group scenario on the fixed test profile; tests mutate `data` and write it."""
    fixed_profile(tmp_path / "prof", {"device": DEVICE_MS, "server": SERVER_MS})
    data = {
        "server": {"profile": "prof", "load": 0.25},
        "devices": [
            {
                "name": "phone",
                "count": 2,
                "network": "lenet",
                "profile": "./prof",
                "uplink_mbps": 4,
                "downlink_mbps": 2,
            },
            {"name": "cam", "count": 1, "network": "alexnet", "profile": "prof", "uplink_mbps": 10},
        ],
    }
    return tmp_path, data


def error_of(tmp_path, data) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write_scenario(tmp_path / "scenario.yaml", data))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "scenario.yaml") + ": ")
    return message


def test_compile_matches_hand_computation(base):
    tmp_path, data = base
    compiled = compile_scenario(write_scenario(tmp_path / "s.yaml", data))
    inst = compiled.instance
    assert inst.names == ["phone-0", "phone-1", "cam-0"]
    lenet, alexnet = networks.get("lenet"), networks.get("alexnet")
    phone = inst.devices[0]
    assert phone.local_ms == tuple(DEVICE_MS[t] for t in lenet["type"])
    assert phone.server_ms == pytest.approx([SERVER_MS[t] / (1 - 0.25) for t in lenet["type"]], rel=1e-12)
    # eq. (3): bytes * 8 / (Mbps * 1000) ms; LeNet's input is 1x28x28 float32 = 3136 bytes -> 6.272 ms at 4 Mbps
    assert phone.upload_ms[0] == pytest.approx(3136 * 8 / 4000)
    assert phone.upload_ms == pytest.approx([b * 8 / 4000 for b in lenet["in_bytes"]], rel=1e-12)
    assert phone.download_ms == pytest.approx(40 * 8 / 2000)  # 10 softmax outputs back at 2 Mbps
    assert inst.devices[1].local_ms == phone.local_ms
    cam = inst.devices[2]
    assert cam.upload_ms[0] == pytest.approx(3 * 227 * 227 * 4 * 8 / 10_000)
    assert cam.download_ms == 0.0
    assert len(cam.local_ms) == len(alexnet)
    assert compiled.layer_names[2] == alexnet["name"].tolist()
    assert [compiled.cut_name(0, c) for c in (0, 4, 8)] == ["input", "pool2", "all local"]


def test_instance_json_round_trips_with_layer_names(base, tmp_path):
    from dnnpart.optimiser.instance import Instance

    tmp, data = base
    compiled = compile_scenario(write_scenario(tmp / "s.yaml", data))
    as_dict = json.loads(json.dumps(compiled.to_dict()))
    assert Instance.from_dict(as_dict) == compiled.instance
    assert as_dict["devices"][2]["_layers"][:2] == ["conv1", "relu1"]


def test_json_scenario_is_accepted(base):
    tmp_path, data = base
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    assert load_scenario(path).n_devices == 3


def test_defaults(base):
    tmp_path, data = base
    del data["server"]["load"]
    del data["devices"][0]["name"]
    scenario = load_scenario(write_scenario(tmp_path / "s.yaml", data))
    assert scenario.load == 0.0 and scenario.family == "dnnpart"
    assert [g.name for g in scenario.groups] == ["group0", "cam"]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["devices"][1].update(uplink_mbps=0), "devices[1].uplink_mbps: must be > 0, got 0"),
        (lambda d: d["devices"][0].update(uplink_mbps=-3), "devices[0].uplink_mbps: must be > 0, got -3"),
        (lambda d: d["devices"][0].update(downlink_mbps=0), "devices[0].downlink_mbps: must be > 0, got 0"),
        (lambda d: d["devices"][0].update(uplink_mbps="fast"), "devices[0].uplink_mbps: must be a finite number"),
        (lambda d: d["devices"][0].update(bandwdith=5), "devices[0]: unknown key 'bandwdith' (valid keys: name, count"),
        (lambda d: d.update(sever={}), ": unknown key 'sever' (valid keys: server, devices, family)"),
        (lambda d: d["devices"][1].pop("count"), "devices[1]: missing key 'count'"),
        (lambda d: d["devices"][1].update(count=0), "devices[1].count: must be > 0, got 0"),
        (lambda d: d["devices"][1].update(count=2.5), "devices[1].count: must be an integer, got 2.5"),
        (lambda d: d["server"].update(load=1.0), "server.load: must be < 1, got 1.0"),
        (lambda d: d["server"].update(load=-0.1), "server.load: must be non-negative, got -0.1"),
        (
            lambda d: d["devices"][0].update(network="resnet101"),
            (
                "devices[0].network: unknown network 'resnet101'; "
                "valid zoo names: lenet, alexnet, vgg13, vgg16, "
                "resnet18, resnet50, mobilenet_v2"
            ),
        ),
        (lambda d: d["devices"][0].update(network="missing.onnx"), "devices[0].network: ONNX file not found"),
        (lambda d: d["devices"][1].update(profile="nosuch"), "devices[1].profile: no profile 'nosuch'"),
        (lambda d: d["devices"][1].update(name="phone"), "devices[1].name: 'phone' is already the name of devices[0]"),
        (lambda d: d.update(devices=[]), "devices: needs at least one device group, got an empty list"),
        (lambda d: d["devices"].__setitem__(0, "phone"), "devices[0]: must be a mapping"),
        (lambda d: d.update(family="cubic"), "family: must be one of 'paper' or 'dnnpart', got 'cubic'"),
    ],
)
def test_validation_names_the_place(base, mutate, expected):
    tmp_path, data = base
    mutate(data)
    assert expected in error_of(tmp_path, data)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ScenarioError, match=r"nope\.yaml: scenario file not found"):
        load_scenario(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {profile: measured\ndevices: [")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: line \d+, column \d+: not valid YAML/JSON"):
        load_scenario(bad)


def test_profile_folder_without_the_role(base):
    tmp_path, data = base
    fixed_profile(tmp_path / "devonly", {"device": DEVICE_MS})
    data["server"]["profile"] = "devonly"
    msg = error_of(tmp_path, data)
    assert "server.profile: profile folder" in msg and "has no server.csv" in msg


def test_profile_lacking_a_layer_type_names_it_and_the_covered_types(base):
    tmp_path, data = base
    fixed_profile(tmp_path / "nolrn", {"device": DEVICE_MS}, types={"conv", "pool", "fc", "relu", "softmax", "dropout"})
    data["devices"][1]["profile"] = "nolrn"  # AlexNet has LRN layers, LeNet does not
    msg = error_of(tmp_path, data)
    assert "devices[1].profile: profile 'nolrn' has no device measurements of layer type 'lrn'" in msg
    assert "needed by layer 'norm1' of alexnet" in msg
    assert "covered types: conv, dropout, fc, pool, relu, softmax" in msg


def test_measured_csv_profile_types_come_from_the_csv(tmp_path):
    folder = tmp_path / "board"
    folder.mkdir()
    shutil.copy(paths.PROFILES_DIR / "measured" / "device.csv", folder / "device.csv")
    assert profile_layer_types(folder, "device") == sorted(networks.LAYER_TYPES)  # the DAG types included


def test_onnx_network_with_unsupported_operator_is_refused(base):
    from onnx import TensorProto, helper

    tmp_path, data = base
    graph = helper.make_graph(
        [helper.make_node("Relu", ["data"], ["r"], name="r"), helper.make_node("Sigmoid", ["r"], ["s"], name="sig")],
        "odd",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "odd.onnx").write_bytes(model.SerializeToString())
    data["devices"][0]["network"] = "nets/odd.onnx"  # relative to the scenario file's folder
    msg = error_of(tmp_path, data)
    assert "devices[0].network: " in msg and "odd.onnx" in msg and "operator Sigmoid" in msg
    assert f"covered layer types: {', '.join(networks.LAYER_TYPES)}" in msg  # vocabulary.LAYER_TYPES


def test_onnx_network_layers_are_named_in_the_compiled_scenario(base):
    tmp_path, data = base
    networks.to_onnx("lenet", tmp_path / "mine.onnx", layer_outputs=False)
    data["devices"][0]["network"] = "mine.onnx"
    compiled = compile_scenario(write_scenario(tmp_path / "s.yaml", data))
    assert compiled.layer_names[0] == networks.get("lenet")["name"].tolist()
    assert compiled.cut_name(0, 4) == "pool2"


def test_malformed_profile_csv_is_reported_at_its_place(base):
    tmp_path, data = base
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "device.csv").write_text(
        "role,layer_type,latency_ms\n" + "".join(f"device,{t},1.0\n" for t in networks.LAYER_TYPES)
    )
    data["devices"][1]["profile"] = "broken"
    with pytest.raises(ScenarioError, match=r"devices\[1\]\.profile: .*missing column"):
        compile_scenario(write_scenario(tmp_path / "s.yaml", data))


# --- safe reading: YAML 1.2 numbers, no anchors or aliases, bounded sizes ----------------------------------

GROUP = "{{name: {name}, count: {count}, network: lenet, profile: prof, uplink_mbps: {uplink}}}"


def raw_scenario(tmp_path, text: str):
    """Write scenario text as typed (not through yaml.safe_dump, which would normalise the numbers)."""
    fixed_profile(tmp_path / "prof", {"device": DEVICE_MS, "server": SERVER_MS})
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def test_numbers_are_read_as_yaml_1_2_and_json_read_them(tmp_path):
    text = (
        "server: {profile: prof, load: 5e-1}\n"
        "devices:\n  - " + GROUP.format(name="no", count="010", uplink="1e1") + "\n"
    )
    scenario = load_scenario(raw_scenario(tmp_path, text))
    assert scenario.load == 0.5  # YAML 1.1 reads 5e-1 as a string
    (group,) = scenario.groups
    assert group.uplink_mbps == 10.0 and group.count == 10 and group.name == "no"  # 1.1: a string, 8, False
    compiled = compile_scenario(scenario)
    assert compiled.instance.devices[0].upload_ms[0] == pytest.approx(3136 * 8 / 10_000)
    assert compiled.instance.devices[0].server_ms[0] == pytest.approx(SERVER_MS["conv"] / (1 - 0.5))


def test_alias_bomb_is_refused_before_it_expands(tmp_path):
    # "billion laughs": 9 levels of 9 aliases would make `devices` a list of 9**8 lists to validate
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefg", "bcdefgh"):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    text = "server: {profile: prof}\n" + "\n".join(lines) + "\ndevices: *h\n"
    with pytest.raises(ScenarioError) as info:
        load_scenario(raw_scenario(tmp_path, text))
    assert str(info.value) == (
        f"{tmp_path / 'scenario.yaml'}: line 2, column 4: not valid YAML/JSON: anchors and "
        "aliases (&name, *name) are not allowed in scenario files"
    )


def test_a_lone_anchor_or_merge_key_is_refused_too(tmp_path):
    text = "server: &srv {profile: prof}\ndevices:\n  - " + GROUP.format(name="a", count=1, uplink=1) + "\n"
    with pytest.raises(
        ScenarioError,
        match=r"scenario\.yaml: line 1, column 9: not valid YAML/JSON: anchors and "
        r"aliases \(&name, \*name\) are not allowed in scenario files$",
    ):
        load_scenario(raw_scenario(tmp_path, text))


@pytest.mark.parametrize(
    "counts, message",
    [
        ([20_000], "devices[0].count: must be <= 10000, got 20000"),
        ([6_000, 6_000], "devices: 12000 devices in all groups, more than the limit of 10000"),
        ([10**400], "devices[0].count: must be <= 10000, got 100000000000000000...0000000000000000000"),
    ],
)
def test_huge_device_counts_are_refused(tmp_path, counts, message):
    text = "server: {profile: prof}\ndevices:\n" + "".join(
        "  - " + GROUP.format(name=f"g{i}", count=c, uplink=1) + "\n" for i, c in enumerate(counts)
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(raw_scenario(tmp_path, text))
    assert str(info.value) == f"{tmp_path / 'scenario.yaml'}: {message}"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"server: {profile: caf\xe9}\n", "not UTF-8 text: invalid continuation byte at byte 21"),
        (b"#" * (16 * 2**20 + 1), "the file is larger than the limit of 16,777,216 bytes for input files"),
        (b"[" * 20_000, "not readable: nested too deeply"),
        (
            b"devices: [{count: " + b"9" * 5000 + b"}]\n",
            "not readable: Exceeds the limit (4300 digits) for integer string conversion: value has 5000...",
        ),
    ],
)
def test_unreadable_files_are_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "scenario.yaml"
    path.write_bytes(content)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: {message}"


def test_values_quoted_in_messages_are_cut_short(base):
    tmp_path, data = base
    data["devices"][0]["uplink_mbps"] = "x" * 100_000
    message = error_of(tmp_path, data)
    head, shown = message.rsplit(", got ", 1)
    assert head.endswith("devices[0].uplink_mbps: must be a finite number")
    assert shown.startswith("'xxxx") and "..." in shown and shown.endswith("xxxx'") and len(shown) <= 80
