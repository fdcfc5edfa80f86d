"""`dnnpart networks`: the zoo listing, one network's table (text and JSON), and one-line errors with exit 2."""

import json
import subprocess
import sys

import pytest

from dnnpart import cli, networks


def run(*args, cwd):
    """The real entry point in a fresh interpreter, from an unrelated working directory."""
    return subprocess.run(
        [sys.executable, "-m", "dnnpart", "networks", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_lists_the_zoo(tmp_path):
    done = run(cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["network", "layers", "input_shape", "gmacs", "mparams", "output_shape", "blocks"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert list(rows) == networks.names(include_dag=True)
    assert rows["alexnet"][1:4] == ["23", "1x3x227x227", "0.724407"]
    assert rows["vgg16"][4:] == ["138.3575", "1x1000", "39"]
    assert rows["resnet50"][1:] == ["174", "1x3x224x224", "4.089184", "25.5570", "1x1000", "38"]


def test_prints_one_networks_table(tmp_path):
    done = run("alexnet", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("alexnet: input 1x3x227x227, 23 layers, 0.724407 GMACs, 60.9652 M params")
    assert lines[1].split() == networks.COLUMNS
    assert [line.split()[0] for line in lines[2:]] == list(networks.get("alexnet")["name"])  # all rows, no "..."
    conv2 = lines[2 + 4].split()
    assert conv2 == [
        "conv2",
        "conv",
        "5",
        "1",
        "2",
        "2",
        "96",
        "256",
        "27",
        "27",
        "69984",
        "279936",
        "186624",
        "746496",
        "223948800",
        "307456",
    ]


def test_json_has_one_object_per_layer_with_plain_values(capsys):
    assert cli.main(["networks", "vgg16", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    table = networks.get("vgg16")
    assert rows == table.to_dict(orient="records")
    assert all(list(r) == networks.COLUMNS for r in rows)
    assert all(type(r[c]) is int for r in rows for c in networks.NUMERIC_COLUMNS)
    assert sum(r["macs"] for r in rows) == 15_470_264_320 and sum(r["params"] for r in rows) == 138_357_544


def test_zoo_listing_as_json(capsys):
    assert cli.main(["networks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["network"] for r in rows] == networks.names(include_dag=True) and rows[0]["layers"] == 8


def test_a_dag_shows_its_layers_with_their_blocks_and_the_blocks(tmp_path, capsys):
    done = run("resnet18", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("resnet18: input 1x3x224x224, 68 layers, 1.814073 GMACs, 11.6895 M params")
    assert lines[1].split() == networks.COLUMNS + ["inputs", "block"]
    add = next(line.split() for line in lines if line.split()[:1] == ["layer1.0.add"])
    assert add[-2:] == ["layer1.0.bn2,maxpool", "5"]
    at = lines.index(next(line for line in lines if line.startswith("22 blocks")))
    assert lines[at + 1].split() == networks.BLOCK_COLUMNS
    assert lines[at + 2 + 4].split()[:4] == ["5", "layer1.0.add", "layer1.0.conv1", "6"]
    assert len(lines) == at + 2 + 22
    assert cli.main(["networks", "resnet18", "--blocks", "--json"]) == 0
    blocks = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in blocks[:5]] == ["conv1", "bn1", "relu", "maxpool", "layer1.0.add"]
    assert sum(b["params"] for b in blocks) == 11_689_512 and blocks[4]["in_bytes"] == 64 * 56 * 56 * 4
    assert cli.main(["networks", "mobilenet_v2", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)
    assert len(layers) == 152 and layers[-1]["block"] == 72 and layers[0]["inputs"] == "data"


def test_reads_an_onnx_file(tmp_path, capsys):
    path = networks.to_onnx("lenet", tmp_path / "my lenet.onnx")
    assert cli.main(["networks", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == networks.get("lenet").to_dict(orient="records")


def test_unknown_network_is_one_line_naming_the_choices(tmp_path):
    done = run("resnet", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "unknown network 'resnet'" in done.stderr
    assert all(name in done.stderr for name in networks.names())


@pytest.mark.parametrize("argv", [["networks", "--bogus"], ["networks", "lenet", "vgg16"], ["network"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dnnpart")


def test_malformed_or_missing_onnx_is_one_line(tmp_path, capsys):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage" * 100)
    for path in (garbage, tmp_path / "missing.onnx"):
        assert cli.main(["networks", str(path)]) == 2
        out = capsys.readouterr()
        assert out.out == "" and out.err.count("\n") == 1
        assert out.err.startswith("dnnpart networks: error: ") and path.name in out.err
    done = run(str(garbage), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
