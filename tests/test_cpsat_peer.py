"""The benchmark's peer, OR-Tools CP-SAT on the same interleaving model (benchmarks/cpsat_peer.py): it must
find the same optima as dnnpart, or the benchmark compares against a different problem."""

import random
import sys

import pandas as pd
import pytest

pytest.importorskip("ortools", reason="the CP-SAT peer is a benchmark extra: pip install 'dnnpart[bench]'")

from dnnpart.optimiser import solve  # noqa: E402
from dnnpart.optimiser.instance import Device, Instance, load_instance  # noqa: E402
from dnnpart.paths import BENCHMARKS_DIR, PROJ_ROOT  # noqa: E402

sys.path.insert(0, str(BENCHMARKS_DIR))
import bench_milp  # noqa: E402
from cpsat_peer import SCALE, solve_cpsat  # noqa: E402

LIMIT_S = 120.0  # generous: the small instances below prove in well under a second


def random_instance(seed: int, n: int = 3, m: int = 4, zero_server_layer: bool = False) -> Instance:
    rng = random.Random(seed)
    devices = []
    for i in range(n):
        server = [rng.uniform(0.5, 8) for _ in range(m)]
        if zero_server_layer and i == 0:
            server[1] = 0.0  # a zero-length server layer still takes its turn on the server
        devices.append(
            Device(
                f"d{i}",
                [rng.uniform(2, 20) for _ in range(m)],
                server,
                [rng.uniform(0, 25) for _ in range(m)],
                download_ms=rng.choice([0.0, 1.5]),
            )
        )
    return Instance(tuple(devices))


def test_interleaving_example_documented_optimum():
    inst = load_instance(PROJ_ROOT / "tests" / "data" / "interleaving-example.json")
    peer = solve_cpsat(inst, LIMIT_S)
    assert peer.proven_optimal and peer.status == "optimal"
    assert peer.cuts == [0, 2]
    assert peer.avg_delay_ms == pytest.approx(71.0, abs=1e-9)
    assert peer.objective_ms == pytest.approx(71.0, abs=1e-9)
    # the order the start times imply interleaves B's layer 3 between A's layers 3 and 4
    assert peer.schedule.server_order == [(0, 1), (0, 2), (0, 3), (1, 3), (0, 4)]


@pytest.mark.parametrize("seed, zero", [(1, False), (2, False), (3, False), (4, True), (5, True)])
def test_agrees_with_dnnpart_on_small_random_instances(seed, zero):
    inst = random_instance(seed, zero_server_layer=zero)
    ours = solve(inst, "exact", time_limit=LIMIT_S)
    peer = solve_cpsat(inst, LIMIT_S)
    assert ours.proven_optimal and peer.proven_optimal
    # CP-SAT optimises durations rounded to 1 us: the optima agree within that rounding
    assert peer.avg_delay_ms == pytest.approx(ours.avg_delay_ms, abs=peer.tolerance_ms)
    assert abs(peer.objective_ms - peer.avg_delay_ms) <= peer.tolerance_ms
    assert peer.tolerance_ms == 0.5 / SCALE * (3 * 4 + 2)
    peer.schedule.validate(avg_delay_ms=peer.avg_delay_ms)


def test_bench_milp_peer_scenario_writes_both_results_and_ratios(tmp_path, capsys):
    out = tmp_path / "milp.csv"
    code = bench_milp.main(
        [
            "--scenarios",
            "peer",
            "--peer-n",
            "3",
            "--peer-seeds",
            "1",
            "--peer-sweep-n",
            "2",
            "--peer-limit",
            str(LIMIT_S),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    df = pd.read_csv(out)
    assert list(df.network) == ["heldout", "alexnet"] and list(df.n_devices) == [3, 2]
    assert df.proven_optimal.all() and df.cpsat_proven_optimal.all()
    # both proven: the same optimum, so the objective ratio is 1 up to CP-SAT's rounding
    assert df.objective_ratio.to_numpy() == pytest.approx([1.0, 1.0], abs=1e-6)
    assert (df.cpsat_avg_delay_ms / df.avg_delay_ms).to_numpy() == pytest.approx(df.objective_ratio.to_numpy())
    assert df.time_to_proof_ratio.to_numpy() == pytest.approx(
        (df.cpsat_solve_time_s / df.solve_time_s.clip(lower=1e-3)).to_numpy()
    )


def test_bench_milp_rejects_unknown_scenario(tmp_path, capsys):
    assert bench_milp.main(["--scenarios", "peers", "--out", str(tmp_path / "x.csv")]) == 2
    assert "unknown scenario(s) ['peers']" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
