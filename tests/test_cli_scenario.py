"""`dnnpart solve --scenario` and `dnnpart compile` as a user runs them: python -m dnnpart in a subprocess."""

import json
import re
import subprocess
import sys

import pytest
import yaml

from dnnpart import cli, networks, paths
from dnnpart.optimiser.instance import load_instance
from dnnpart.planning.compile import compile_scenario

EXAMPLE = paths.EXAMPLES_DIR / "heterogeneous.yaml"
# The example scenario's devices, in the order compile and the plan list them.
EXAMPLE_DEVICES = ["phone-0", "phone-1", "phone-2", "board-0", "board-1", "sensor-0", "camera-0", "camera-1"]
METHODS = ["case2", "case3", "independent"]


def dnnpart(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dnnpart", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd or paths.PROJ_ROOT,
        timeout=300,
    )


def bad_scenarios(tmp_path):
    """(file, the place its one-line error must name)."""
    good = yaml.safe_load(EXAMPLE.read_text())
    good["devices"][2]["network"] = str(EXAMPLE.parent / "lenet.onnx")
    cases = []
    for tag, mutate, place in [
        ("rate", lambda d: d["devices"][1].update(uplink_mbps=0), "devices[1].uplink_mbps: must be > 0, got 0"),
        ("key", lambda d: d["devices"][0].update(bandwdith=3), "devices[0]: unknown key 'bandwdith'"),
        ("count", lambda d: d["devices"][2].update(count=-1), "devices[2].count: must be > 0, got -1"),
        ("profile", lambda d: d["server"].update(profile="nowhere"), "server.profile: no profile 'nowhere'"),
    ]:
        data = json.loads(json.dumps(good))
        mutate(data)
        path = tmp_path / f"{tag}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        cases.append((path, place))
    cases.append((tmp_path / "missing.yaml", "scenario file not found"))
    return cases


@pytest.mark.parametrize("command", ["solve", "compile"])
def test_bad_scenarios_exit_2_with_one_line_naming_the_place(tmp_path, command):
    cases = bad_scenarios(tmp_path)
    for path, place in cases if command == "solve" else cases[::2]:  # compile shares the validation: a sample
        extra = ["-o", tmp_path / "out.json"] if command == "compile" else []
        res = dnnpart(command, "--scenario", path, *extra)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith(f"dnnpart {command}: error: {path}: ")
        assert place in lines[0]
        assert res.stdout == ""
    assert not (tmp_path / "out.json").exists()


def test_compile_writes_the_instance(tmp_path):
    out = tmp_path / "sub" / "instance.json"
    res = dnnpart("compile", "--scenario", EXAMPLE, "-o", out, cwd=tmp_path)  # relative paths: the file's folder
    assert res.returncode == 0, res.stderr
    instance = load_instance(out)
    assert instance == compile_scenario(EXAMPLE).instance
    data = json.loads(out.read_text())
    assert [d["name"] for d in data["devices"]] == EXAMPLE_DEVICES
    assert data["devices"][5]["_layers"] == networks.get("lenet")["name"].tolist()
    # eq. (3) at the example's 8 Mbps: AlexNet's 3x227x227 float32 input
    assert data["devices"][0]["upload_ms"][0] == pytest.approx(3 * 227 * 227 * 4 * 8 / 8000)
    assert list(tmp_path.rglob(".*.tmp")) == []


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """The example solved once through the CLI with --json and --report."""
    tmp = tmp_path_factory.mktemp("solve")
    report = tmp / "plan.html"
    res = dnnpart("solve", "--scenario", EXAMPLE, "--json", "--report", report, "--time-limit", "60")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), report


def test_solve_json_plan(solved):
    plan, _ = solved
    for key in (
        "avg_delay_ms",
        "cuts",
        "cut_layers",
        "status",
        "proven_optimal",
        "gap",
        "devices",
        "baselines",
        "schedule",
    ):
        assert key in plan
    assert set(plan["baselines"]) == set(METHODS)
    for method in METHODS:  # the optimum is never worse than a baseline
        assert plan["avg_delay_ms"] <= plan["baselines"][method]["avg_delay_ms"] + 1e-6
    devices = plan["devices"]
    assert [d["device"] for d in devices] == EXAMPLE_DEVICES
    assert sum(d["completion_ms"] for d in devices) / 8 == pytest.approx(plan["avg_delay_ms"])
    for d in devices:
        names = networks.block_names(networks.get(d["network"]))  # MobileNetV2's subtasks are its blocks
        want = "input" if d["cut"] == 0 else "all local" if d["cut"] == len(names) else names[d["cut"] - 1]
        assert d["cut_layer"] == want
        assert d["completion_ms"] >= d["local_ms"] + d["upload_ms"] + d["server_ms"] + d["download_ms"] - 1e-6
    # the ONNX-imported LeNet is named by its own layers
    assert devices[5]["network"] == "lenet"
    assert devices[5]["cut_layer"] in set(networks.get("lenet")["name"]) | {"input", "all local"}
    assert plan["baselines"]["case3"]["cut_layers"] == ["all local"] * 8
    assert plan["baselines"]["case2"]["cut_layers"] == ["input"] * 8


def test_solve_report_is_self_contained_html(solved):
    plan, report = solved
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<svg" in page
    for d in plan["devices"]:
        assert f"<td>{d['device']}</td>" in page and f"<td>{d['cut_layer']}</td>" in page
    assert f"{plan['avg_delay_ms']:.1f} ms" in page
    assert not re.search(r'(src|href)="(?!#|data:)', page)  # no external files
    assert "<link" not in page and "<script" not in page


def test_solve_text_plan_names_cut_layers(tmp_path):
    small = {
        "server": {"profile": "measured"},
        "devices": [
            {
                "name": "tag",
                "count": 2,
                "network": str(EXAMPLE.parent / "lenet.onnx"),
                "profile": "measured",
                "uplink_mbps": 1,
            }
        ],
    }
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small))
    res = dnnpart("solve", "--scenario", path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "tag-0" in out and "tag-1" in out and "average completion:" in out
    assert "case2" in out and "case3" in out and "independent" in out
    assert re.search(r"status optimal \(proven optimal\), gap 0\.00 %", out)
    assert any(name in out for name in list(networks.get("lenet")["name"]) + ["input", "all local"])


# --- the published schemas -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["scenario", "instance"])
def test_committed_schema_is_what_the_code_declares(capsys, name):
    assert cli.main(["schema", name]) == 0
    printed = capsys.readouterr().out
    committed = (paths.PROJ_ROOT / "docs" / "schemas" / f"{name}.schema.json").read_text()
    assert printed == committed, f"regenerate with: dnnpart schema {name} > docs/schemas/{name}.schema.json"


def test_unknown_schema_name_exits_2_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["schema", "plan"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "dnnpart schema: error: argument name: invalid choice: 'plan' (choose from 'instance', 'scenario')"
    ]


def test_published_schemas_accept_the_examples_and_refuse_what_the_code_refuses():
    """Other tools validating with the JSON Schema agree with dnnpart on the examples and on typical mistakes."""
    import jsonschema

    from dnnpart.planning.scenario_schema import ScenarioLoader

    schemas = {
        n: json.loads((paths.PROJ_ROOT / "docs" / "schemas" / f"{n}.schema.json").read_text())
        for n in ("scenario", "instance")
    }
    scenario = yaml.load(EXAMPLE.read_text(), Loader=ScenarioLoader)
    instance = json.loads((paths.PROJ_ROOT / "tests" / "data" / "interleaving-example.json").read_text())
    jsonschema.validate(scenario, schemas["scenario"])
    jsonschema.validate(instance, schemas["instance"])
    for mutate in (
        lambda d: d["devices"][1].update(uplink_mbps=0),
        lambda d: d["devices"][0].update(bandwdith=3),
        lambda d: d["devices"][2].update(count=10_001),
        lambda d: d["server"].update(load=1),
        lambda d: d.update(family="cubic"),
    ):
        bad = json.loads(json.dumps(scenario))
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schemas["scenario"])
    for mutate in (
        lambda d: d["devices"][0]["local_ms"].__setitem__(0, -1),
        lambda d: d["devices"][0].update(x=1),
        lambda d: d["devices"][1].update(upload_ms=[]),
    ):
        bad = json.loads(json.dumps(instance))
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schemas["instance"])
    instance["devices"][0]["_note"] = "comments are allowed"
    jsonschema.validate(instance, schemas["instance"])


def test_hostile_scenarios_exit_2_with_one_line(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text('a: &a ["lol", "lol"]\nb: &b [*a, *a]\nserver: {profile: measured}\ndevices: *b\n')
    big = tmp_path / "big.yaml"
    big.write_text(
        "server: {profile: measured}\ndevices:\n"
        "  - {count: 1000000, network: lenet, profile: measured, uplink_mbps: 1}\n"
    )
    for path, problem in [
        (
            bomb,
            (
                "line 1, column 4: not valid YAML/JSON: anchors and aliases (&name, *name) are "
                "not allowed in scenario files"
            ),
        ),
        (big, "devices[0].count: must be <= 10000, got 1000000"),
    ]:
        assert cli.main(["solve", "--scenario", str(path)]) == 2
        assert capsys.readouterr().err.splitlines() == [f"dnnpart solve: error: {path}: {problem}"]


def test_deployment_guide_states_the_limits_the_code_enforces():
    from dnnpart.input_files import MAX_FILE_BYTES, MAX_SHOWN_CHARS
    from dnnpart.optimiser.instance_schema import MAX_DEVICES

    guide = (paths.PROJ_ROOT / "docs" / "deployment.md").read_text()
    assert f"at most {MAX_DEVICES} devices in all groups" in guide
    assert f"files over {MAX_FILE_BYTES // 2**20} MB are refused" in guide
    assert f"cut to {MAX_SHOWN_CHARS} characters" in guide
    assert "dnnpart schema scenario" in guide and "dnnpart schema instance" in guide
