"""`dnnpart sweep`: grid files validated, points drawn reproducibly, Parquet results, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from dnnpart.study import grid_sweep
from dnnpart.study.sweeps import scenario_rows

SMALL_GRID = """
networks: [lenet, alexnet]
n_devices: [1, 3]
bandwidths_mbps: [1, 10]
loads: [0.0, 0.2]
"""


def write(tmp_path, text, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def sweep_cli(*args, check=True, **kw):
    res = subprocess.run(
        [sys.executable, "-m", "dnnpart", "sweep", *map(str, args)], capture_output=True, text=True, timeout=600, **kw
    )
    if check:
        assert res.returncode == 0, res.stderr
    return res


def test_a_grid_is_the_cartesian_product_in_a_fixed_order(tmp_path):
    grid = grid_sweep.read_grid(write(tmp_path, SMALL_GRID))
    points = grid_sweep.grid_points(grid)
    assert len(points) == grid_sweep.n_points(grid) == 2 * 2 * 2 * 2
    assert points[0] == dict(profile="paper", network="lenet", n_devices=1, bandwidth_mbps=1.0, load=0.0)
    assert points[-1] == dict(profile="paper", network="alexnet", n_devices=3, bandwidth_mbps=10.0, load=0.2)
    assert len({tuple(p.values()) for p in points}) == len(points)


def test_draws_are_reproducible_and_inside_their_ranges(tmp_path):
    text = """
networks: [alexnet, vgg16, lenet]
n_devices: {min: 1, max: 8}
bandwidths_mbps: {min: 0.5, max: 50, log: true}
loads: {min: 0, max: 0.5}
draws: 500
seed: 7
"""
    a = grid_sweep.grid_points(grid_sweep.read_grid(write(tmp_path, text)))
    b = grid_sweep.grid_points(grid_sweep.read_grid(write(tmp_path, text, "again.yaml")))
    assert a == b and len(a) == 500
    df = pd.DataFrame(a)
    assert df["n_devices"].between(1, 8).all() and set(df["n_devices"]) == set(range(1, 9))
    assert df["bandwidth_mbps"].between(0.5, 50).all() and df["load"].between(0, 0.5).all()
    assert set(df["network"]) == {"alexnet", "vgg16", "lenet"}
    # log-uniform: about half of the draws below the geometric mean sqrt(0.5 * 50) = 5 Mbps
    assert 0.4 < (df["bandwidth_mbps"] < 5.0).mean() < 0.6
    other = grid_sweep.grid_points(grid_sweep.read_grid(write(tmp_path, text.replace("seed: 7", "seed: 8"), "o.yaml")))
    assert other != a


@pytest.mark.parametrize(
    "text, message",
    [
        ("networks: [alexnet]\nn_devices: {min: 1, max: 4}\nbandwidths_mbps: [1]\n", "needs `draws: K`"),
        ("networks: [resnet]\nn_devices: [1]\nbandwidths_mbps: [1]\n", "unknown network 'resnet'; valid zoo names"),
        ("networks: [alexnet]\nn_devices: [0]\nbandwidths_mbps: [1]\n", "n_devices"),
        ("networks: [alexnet]\nn_devices: [1]\nbandwidths_mbps: [-1]\n", "bandwidths_mbps"),
        ("networks: [alexnet]\nn_devices: [1]\nbandwidths_mbps: [1]\nloads: [1.0]\n", "loads"),
        ("networks: [alexnet]\nn_devices: [1]\nbandwidths_mbps: [1]\nprofiles: [nope]\n", "profiles[0]"),
        ("networks: [alexnet]\nn_devices: [1]\nbandwidths_mbps: [1]\nbandwidth: 3\n", "bandwidth"),
        (
            "networks: [alexnet]\nn_devices: {min: 5, max: 2}\nbandwidths_mbps: [1]\ndraws: 3\n",
            "min 5 is above max 2",
        ),
        ("networks: [a\n", "not valid YAML"),
    ],
)
def test_bad_grid_files_are_refused_with_one_line(tmp_path, text, message):
    with pytest.raises(grid_sweep.GridError) as err:
        grid_sweep.read_grid(write(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_refuses_a_bad_grid_with_exit_2_and_one_line(tmp_path):
    res = sweep_cli("--grid", tmp_path / "missing.yaml", "--out", tmp_path / "r.parquet", check=False)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "grid file not found" in res.stderr
    res = sweep_cli(
        "--grid", write(tmp_path, SMALL_GRID), "--out", tmp_path / "r.parquet", "--scheduler", "x", check=False
    )
    assert res.returncode == 2 and "unknown scheduler 'x'; choose serial, local" in res.stderr
    assert not (tmp_path / "r.parquet").exists() and not (tmp_path / "r.parquet.parts").exists()


def test_results_are_every_method_of_every_point(tmp_path):
    grid = write(tmp_path, SMALL_GRID)
    summary = grid_sweep.run_sweep(grid, tmp_path / "r.parquet", scheduler="serial", chunk_points=3)
    assert summary == dict(
        points=16, chunks=6, chunks_resumed=0, chunks_solved=6, out=str(tmp_path / "r.parquet"), complete=True
    )
    df = pd.read_parquet(tmp_path / "r.parquet")
    assert len(df) == 16 * 4 and df["point"].tolist() == [p for p in range(16) for _ in range(4)]
    assert not (tmp_path / "r.parquet.parts").exists()
    points = grid_sweep.grid_points(grid_sweep.read_grid(grid))
    expected = pd.DataFrame(scenario_rows(**points[11]))
    got = df[df["point"] == 11].drop(columns="point").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)


def test_an_output_of_another_grid_is_refused(tmp_path):
    out = tmp_path / "r.parquet"
    grid_sweep.run_sweep(write(tmp_path, SMALL_GRID), out, scheduler="serial")
    before = out.read_bytes()
    # the same grid again: already complete, nothing recomputed
    assert grid_sweep.run_sweep(write(tmp_path, SMALL_GRID, "same.yaml"), out, scheduler="serial")["chunks_solved"] == 0
    other = write(tmp_path, SMALL_GRID.replace("[1, 10]", "[1, 20]"), "other.yaml")
    res = sweep_cli("--grid", other, "--out", out, "--scheduler", "serial", check=False)
    assert res.returncode == 2 and "holds another grid's results" in res.stderr and res.stderr.count("\n") == 1
    assert out.read_bytes() == before
    (tmp_path / "text.parquet").write_text("not parquet")
    res = sweep_cli("--grid", other, "--out", tmp_path / "text.parquet", "--scheduler", "serial", check=False)
    assert res.returncode == 2 and "is not a dnnpart sweep's Parquet file" in res.stderr


def test_a_killed_sweep_resumes_without_recomputing_its_finished_chunks(tmp_path):
    # Enough points (36 of alexnet, 6-8 devices, about 75 ms each on 2026-12-04) that the sweep is still running
    # when it is killed after its third chunk: with 12 such points a fresh clone's run once finished first.
    text = "networks: [alexnet]\nn_devices: [6, 8]\nbandwidths_mbps: [0.5, 1, 2, 4, 8, 16]\nloads: [0.0, 0.2, 0.4]\n"
    n_points = 2 * 6 * 3
    grid = write(tmp_path, text)
    out, parts = tmp_path / "r.parquet", tmp_path / "r.parquet.parts"
    args = [sys.executable, "-m", "dnnpart", "sweep", "--grid", grid, "--out", out, "--scheduler", "serial"]
    proc = subprocess.Popen([*map(str, args), "--chunk-points", "1"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while len(list(parts.glob("chunk-*.parquet"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep finished before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and not out.exists()
    finished = sorted(parts.glob("chunk-*.parquet"))
    assert len(finished) >= 3 and not list(parts.glob(".*.tmp")), "a killed write left a temporary file"
    res = sweep_cli(*args[4:], "--chunk-points", "1", "--json")
    summary = json.loads(res.stdout)
    assert summary["chunks_resumed"] == len(finished) and summary["chunks_solved"] == n_points - len(finished)
    # the same points in one uninterrupted run give the same table
    whole = tmp_path / "whole.parquet"
    sweep_cli("--grid", grid, "--out", whole, "--scheduler", "serial", "--chunk-points", "1")
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(whole))
    assert os.path.getsize(out) == os.path.getsize(whole)
