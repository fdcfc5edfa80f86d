"""Extreme but valid inputs get a correct result; impossible ones one line and exit 2 (the reliability table)."""

import json

import pandas as pd
import pytest

from dnnpart import cli
from dnnpart.delay.profiler import CSV_COLUMNS, design


def run(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def test_a_near_zero_bandwidth_gives_a_valid_all_local_plan(capsys):
    """1e-8 Mbps: uploading AlexNet's input takes ~4.9e11 ms; the old absolute tolerance refused the schedule."""
    code, out, err = run(
        capsys, "solve", "--network", "alexnet", "--devices", "2", "--bandwidth-mbps", "1e-8", "--json"
    )
    assert code == 0, err
    plan = json.loads(out)
    assert plan["cut_layers"] == ["all local", "all local"] and plan["proven_optimal"] is True
    assert plan["baselines"]["case2"]["avg_delay_ms"] > 4.9e11


def test_layer_times_near_the_limit_are_scheduled(tmp_path, capsys):
    devices = [
        {"name": f"d{i}", "local_ms": [9e11, 3e11 + i], "server_ms": [1e11 / 7, 2e11 / 3], "upload_ms": [1e3, 7.7]}
        for i in range(3)
    ]
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"devices": devices}))
    code, out, err = run(capsys, "solve", "--instance", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["avg_delay_ms"] > 1e11
    devices[0]["local_ms"][0] = 2e12  # past dnnpart.limits.MAX_MS: refused as input, not as an invalid schedule
    path.write_text(json.dumps({"devices": devices}))
    code, _, err = run(capsys, "solve", "--instance", str(path))
    assert code == 2 and len(err) == 1 and "local_ms[0]" in err[0] and "1e+12" in err[0]


def test_a_one_row_profile_is_refused_with_the_counts(tmp_path, capsys):
    c = design("conv")[0]
    row = {
        "role": "device",
        "layer_type": "conv",
        **{f: getattr(c, f) for f in CSV_COLUMNS[2:10]},
        "latency_ms": 1.0,
        "p10_ms": 0.9,
        "p90_ms": 1.1,
        "repeats": 5,
    }
    (tmp_path / "one").mkdir()
    pd.DataFrame([row])[list(CSV_COLUMNS)].to_csv(tmp_path / "one" / "device.csv", index=False)
    code, out, err = run(capsys, "fit", "--profile", str(tmp_path / "one"), "--json")
    assert code == 2 and out == "" and len(err) == 1 and "conv: 1; each layer type needs at least 10" in err[0]


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"[1, 2, 3]" * 3, b""])
def test_a_garbage_onnx_file_is_refused(tmp_path, capsys, content):
    path = tmp_path / "net.onnx"
    path.write_bytes(content)
    code, _, err = run(capsys, "networks", str(path))
    assert code == 2 and len(err) == 1 and "net.onnx" in err[0]
