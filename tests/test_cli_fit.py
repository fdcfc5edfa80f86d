"""`dnnpart fit` and `dnnpart profile` through the command line."""

from __future__ import annotations

import json

import pandas as pd

from dnnpart.cli import main
from dnnpart.delay import FAMILIES, METRIC_COLUMNS
from dnnpart.delay.profiler import PASSES, PROFILE_COLUMNS
from dnnpart.vocabulary import LAYER_TYPES, ROLES


def test_fit_json_has_the_documented_keys(capsys):
    assert main(["fit", "--profile", "measured", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records and all(list(r) == METRIC_COLUMNS for r in records)
    combos = {(r["role"], r["layer_type"], r["family"]) for r in records}
    # the measured profile covers every layer type, the DAG types (added 2026-12-02) included
    assert combos == {(r, t, f) for r in ROLES for t in LAYER_TYPES for f in FAMILIES}
    for r in records:
        assert r["n_test"] == round(0.2 * (r["n_train"] + r["n_test"]))
        assert 0 <= r["within10"] <= 1 and r["mae_ms"] >= 0
    conv = [r for r in records if r["layer_type"] == "conv"]
    assert all(r["n_train"] + r["n_test"] >= 1000 for r in conv)


def test_fit_table_and_errors(capsys):
    assert main(["fit", "--profile", "measured"]) == 0
    out = capsys.readouterr().out
    assert "r2_test" in out and "within10" in out and "dnnpart" in out
    assert main(["fit", "--profile", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "measured" in err and "paper" in err
    assert main(["fit", "--profile", "paper"]) == 2  # fixed models, nothing to fit
    assert "no measured CSV" in capsys.readouterr().err


def test_profile_cli_tiny_run(tmp_path, capsys):
    out = tmp_path / "prof"
    assert (
        main(
            [
                "profile",
                "--role",
                "server",
                "--threads",
                "1",
                "--out",
                str(out),
                "--layer-types",
                "softmax",
                "--limit",
                "2",
                "--repeats",
                "3",
            ]
        )
        == 0
    )
    df = pd.read_csv(out / "server.csv")
    assert list(df.columns) == list(PROFILE_COLUMNS) and len(df) == 2 and (df["role"] == "server").all()
    assert (df["repeats"] == 3 * PASSES).all()  # the default number of passes, 3 pairs each
    meta = json.loads((out / "server.json").read_text())
    assert meta["threads"] == 1 and meta["command"].startswith("dnnpart ") and meta["passes"] == PASSES
    assert main(["profile", "--role", "server", "--out", str(out), "--passes", "0"]) == 2
    assert "passes must be >= 1" in capsys.readouterr().err
    assert main(["profile", "--role", "server", "--out", str(out), "--layer-types", "gelu"]) == 2
    assert "valid types" in capsys.readouterr().err


def test_fit_json_is_strict_json_when_a_metric_is_undefined(tmp_path, capsys):
    """Constant latencies make the held-out R² undefined: it is printed as null, not as a bare NaN."""
    from dnnpart.delay.profiler import CSV_COLUMNS, design

    rows = [
        {
            "role": "device",
            "layer_type": "relu",
            **{f: getattr(c, f) for f in CSV_COLUMNS[2:10]},
            "latency_ms": 0.5,
            "p10_ms": 0.5,
            "p90_ms": 0.5,
            "repeats": 5,
        }
        for c in design("relu")[:20]
    ]
    folder = tmp_path / "flat"
    folder.mkdir()
    pd.DataFrame(rows)[list(CSV_COLUMNS)].to_csv(folder / "device.csv", index=False)
    assert main(["fit", "--profile", str(folder), "--json"]) == 0
    out = capsys.readouterr().out

    def refuse(name):
        raise AssertionError(f"{name} in JSON output")

    records = json.loads(out, parse_constant=refuse)
    assert {r["layer_type"] for r in records} == {"relu"} and any(r["r2_test"] is None for r in records)


def test_profile_refuses_bad_folders_garbage_runs_and_another_thread_count(tmp_path, capsys):
    args = [
        "profile",
        "--role",
        "server",
        "--layer-types",
        "softmax",
        "--limit",
        "2",
        "--repeats",
        "3",
        "--passes",
        "1",
    ]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main([*args, "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    out = tmp_path / "prof"
    assert main([*args, "--threads", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*args, "--threads", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "begun with --threads 1" in err[0]
    runs = out / "server.runs.csv"
    runs.write_text(runs.read_text() + "server,softmax,not,a,run,at,all,!,!,!,0,1,1,1,3,1\n")
    assert main([*args, "--threads", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 4 is not a profiler run" in err[0]
