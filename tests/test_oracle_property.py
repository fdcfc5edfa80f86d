"""Property tests: the MILP's optimum equals the brute-force oracle's on random heterogeneous instances,
is never worse than a baseline, and every result passes the independent checker."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnnpart.optimiser import baselines, preemptive_bound, solve
from dnnpart.optimiser.instance import Device, Instance
from dnnpart.optimiser.oracle import brute_force

# small integers and many zeros/ties: the cases where precedence and tie-breaking go wrong
times = st.one_of(
    st.just(0.0), st.integers(0, 30).map(float), st.floats(0, 40, allow_nan=False).map(lambda x: round(x, 2))
)


@st.composite
def devices(draw, name):
    m = draw(st.integers(1, 4))
    lists = [draw(st.lists(times, min_size=m, max_size=m)) for _ in range(3)]
    return Device(name, *lists, download_ms=draw(st.sampled_from([0.0, 0.0, 2.0, 7.5])))


@st.composite
def instances(draw):
    n = draw(st.integers(1, 3))
    return Instance(tuple(draw(devices(f"d{i}")) for i in range(n)))


SETTINGS = {
    "derandomize": True,
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@settings(max_examples=80, **SETTINGS)
@given(instances())
def test_exact_equals_oracle_and_beats_baselines(inst):
    oracle = brute_force(inst)
    oracle.validate(avg_delay_ms=oracle.avg_delay_ms)
    sol = solve(inst, "exact", warm_start=False)  # the MILP alone, without the heuristic's help
    assert sol.proven_optimal
    assert sol.avg_delay_ms == pytest.approx(oracle.avg_delay_ms, abs=1e-6)
    sol.schedule.validate(avg_delay_ms=sol.avg_delay_ms)
    warm = solve(inst, "exact")
    assert warm.avg_delay_ms == pytest.approx(oracle.avg_delay_ms, abs=1e-6)
    for name, base in baselines.evaluate_all(inst).items():
        base.schedule.validate(avg_delay_ms=base.avg_delay_ms)
        assert sol.avg_delay_ms <= base.avg_delay_ms + 1e-6, name


@settings(max_examples=25, **SETTINGS)
@given(instances())
def test_paper_formulation_equals_oracle(inst):
    sol = solve(inst, "paper")
    assert sol.proven_optimal
    assert sol.avg_delay_ms == pytest.approx(brute_force(inst).avg_delay_ms, abs=1e-6)
    sol.schedule.validate(avg_delay_ms=sol.avg_delay_ms)


@st.composite
def identical_instances(draw):
    dev = draw(devices("d0"))
    n = draw(st.integers(2, 3))
    return Instance(
        tuple(Device(f"d{i}", dev.local_ms, dev.server_ms, dev.upload_ms, dev.download_ms) for i in range(n))
    )


@settings(max_examples=60, **SETTINGS)
@given(st.one_of(instances(), identical_instances()))
def test_preemptive_bound_never_exceeds_the_optimum(inst):
    opt = brute_force(inst).avg_delay_ms
    exact = preemptive_bound(inst)
    assert exact is not None and exact <= opt + 1e-9
    # with the optimum as cutoff the search may stop early, but still returns a valid bound
    assert preemptive_bound(inst, cutoff_ms=opt) <= opt + 1e-9
    # and a bound that meets the heuristic's value means the heuristic is optimal
    sol = solve(inst, "exact")
    assert sol.avg_delay_ms == pytest.approx(opt, abs=1e-6) and sol.bound_ms <= opt + 1e-6
