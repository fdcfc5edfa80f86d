"""`dnnpart solve` on the interleaving example and on bad input (one line, exit status 2)."""

import json
import subprocess
import sys

import pytest

from dnnpart import cli
from dnnpart.paths import PROJ_ROOT

EXAMPLE = str(PROJ_ROOT / "tests" / "data" / "interleaving-example.json")


def test_json_output(capsys):
    assert cli.main(["solve", "--instance", EXAMPLE, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["avg_delay_ms"] == pytest.approx(71.0) and out["cuts"] == [0, 2]
    assert out["proven_optimal"] is True and out["status"] == "optimal" and out["gap"] == 0
    assert out["formulation"] == "exact" and out["solve_time_s"] >= 0
    rows = {(r["device"], r["layer"], r["where"]): (r["start_ms"], r["finish_ms"]) for r in out["schedule"]}
    assert rows[("B", 3, "upload")] == (50.0, 51.0) and rows[("B", 3, "server")] == (60.0, 61.0)
    assert rows[("A", 4, "server")] == (61.0, 81.0)
    assert out["baselines"]["case2"]["avg_delay_ms"] == 90.5
    assert out["baselines"]["case3"]["avg_delay_ms"] == 120.0
    assert out["baselines"]["independent"]["avg_delay_ms"] == pytest.approx(71.0)


def test_readable_plan_via_subprocess():
    res = subprocess.run(
        [sys.executable, "-m", "dnnpart", "solve", "--instance", EXAMPLE, "--formulation", "paper"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert res.returncode == 0, res.stderr
    assert "average completion: 71.0 ms" in res.stdout
    assert "status optimal (proven optimal)" in res.stdout and "(formulation paper)" in res.stdout
    for method in ("case1", "case2", "case3", "independent"):
        assert method in res.stdout


def test_json_keys_agree_for_network_instance_and_scenario(capsys, tmp_path):
    """One vocabulary: --network, --instance and --scenario print the same keys and method names."""
    scenario = PROJ_ROOT / "examples" / "heterogeneous.yaml"
    compiled = tmp_path / "instance.json"
    assert cli.main(["compile", "--scenario", str(scenario), "-o", str(compiled)]) == 0
    capsys.readouterr()
    outputs = {}
    for kind, args in {
        "network": ["--network", "lenet", "--devices", "2"],
        "instance": ["--instance", str(compiled)],
        "scenario": ["--scenario", str(scenario)],
    }.items():
        assert cli.main(["solve", *args, "--json", "--time-limit", "30"]) == 0
        outputs[kind] = json.loads(capsys.readouterr().out)
    keys = {kind: sorted(out) for kind, out in outputs.items()}
    assert keys["network"] == keys["instance"] == keys["scenario"], keys
    for kind, out in outputs.items():
        assert out["method"] == "case1" and out["source"]["kind"] == kind
        assert sorted(out["baselines"]) == ["case2", "case3", "independent"]
        assert sorted(out["devices"][0]) == sorted(outputs["network"]["devices"][0])
    # the compiled instance keeps the scenario's layer names, so its plan names the same cuts
    assert outputs["instance"]["cut_layers"] == outputs["scenario"]["cut_layers"]
    assert outputs["instance"]["avg_delay_ms"] == pytest.approx(outputs["scenario"]["avg_delay_ms"])


@pytest.mark.parametrize(
    "content, message",
    [
        ({"devices": [{"name": "a", "local_ms": [1, 2], "server_ms": [1], "upload_ms": [1, 1]}]}, "lengths"),
        ({"devices": [{"name": "a", "local_ms": [-1], "server_ms": [1], "upload_ms": [1]}]}, "non-negative"),
        ({"devices": [{"name": "a", "local_ms": [1], "server_ms": [1]}]}, "missing"),
        ({"devices": []}, "at least one device"),
    ],
)
def test_malformed_instance_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    assert cli.main(["solve", "--instance", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("dnnpart solve: error:")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bandwidth-mbps", "0"], "bandwidth"),
        (["--bandwidth-mbps", "-3"], "bandwidth"),
        (["--load", "1"], "load"),
        (["--load", "-0.1"], "load"),
        (["--devices", "0"], "devices"),
        (["--devices", "1000000"], "at most 10,000"),
    ],
)
def test_bad_scenario_parameters_exit_2(capsys, args, message):
    assert cli.main(["solve", "--network", "alexnet", *args]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_exit_2(capsys):
    assert cli.main(["solve", "--instance", "/nonexistent/x.json"]) == 2
    assert "cannot read" in capsys.readouterr().err
