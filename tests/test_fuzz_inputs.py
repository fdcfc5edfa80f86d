"""Fuzzing the file loaders: malformed and extreme instance JSON, scenario YAML/JSON and profile CSVs.

For every generated file the loader either returns a validated result or raises the project's error type with
one line; never another exception (a traceback for the user). 2,000 inputs per format, seeded (derandomize),
so a failure reproduces on every run.
"""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnnpart.delay.models import read_profile_csv
from dnnpart.delay.profiler import CSV_COLUMNS
from dnnpart.errors import DnnpartError
from dnnpart.optimiser.heuristic import dispatch
from dnnpart.optimiser.instance import load_instance
from dnnpart.planning.scenario import load_scenario

FUZZ = settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

EXTREME_NUMBERS = st.sampled_from(
    [
        0,
        -1,
        1,
        0.5,
        -0.0,
        1e-300,
        1e308,
        1e12,
        1e13,
        10**400,
        2**63,
        float("nan"),
        float("inf"),
        -float("inf"),
        True,
        False,
        None,
        "1",
        "1e1",
        "",
        "ms",
    ]
)
NUMBERS = st.one_of(EXTREME_NUMBERS, st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**30), 10**30))
SCALARS = st.one_of(NUMBERS, st.text(max_size=20), st.none(), st.booleans())
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=25,
)


def assert_one_line(exc: DnnpartError) -> None:
    message = str(exc)
    assert message and "\n" not in message and len(message) < 2000, message[:300]


# --- instance JSON ---------------------------------------------------------------------------------------------


def number_list(n):
    return st.lists(NUMBERS, min_size=n, max_size=n)


@st.composite
def instance_documents(draw):
    """Mostly near-valid instances (right keys, wrong values), some arbitrary JSON, some broken text."""
    kind = draw(st.sampled_from(["near", "near", "near", "any", "text"]))
    if kind == "text":
        return draw(
            st.one_of(st.text(max_size=200), st.sampled_from(["[" * 5000, '{"devices": [' * 300, "\ud800", "1" * 500]))
        )
    if kind == "any":
        return json.dumps(draw(JSONISH), allow_nan=True)
    devices = []
    for _ in range(draw(st.integers(0, 3))):
        m = draw(st.integers(0, 4))
        device = {
            "name": draw(st.one_of(st.text(max_size=8), st.integers(), st.none())),
            "local_ms": draw(number_list(m)),
            "server_ms": draw(number_list(draw(st.sampled_from([m, m + 1])))),
            "upload_ms": draw(number_list(m)),
        }
        if draw(st.booleans()):
            device["download_ms"] = draw(NUMBERS)
        if draw(st.booleans()):
            device[draw(st.text(max_size=6))] = draw(SCALARS)
        devices.append(device)
    return json.dumps({"devices": devices}, allow_nan=True, default=str)


@FUZZ
@given(text=instance_documents())
def test_instance_files(tmp_path, text):
    path = tmp_path / "instance.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        instance = load_instance(path)
    except DnnpartError as exc:
        assert_one_line(exc)
        return
    # accepted: every time is a finite number in range, and a schedule of it validates
    assert all(math.isfinite(t) and t >= 0 for d in instance.devices for t in (*d.local_ms, *d.server_ms))
    schedule = dispatch(instance, [0] * len(instance))
    assert schedule.validate() == pytest.approx(schedule.avg_delay_ms)


# --- scenario YAML / JSON --------------------------------------------------------------------------------------

GROUP_KEYS = ["name", "count", "network", "profile", "uplink_mbps", "downlink_mbps"]


@st.composite
def scenario_documents(draw):
    kind = draw(st.sampled_from(["near", "near", "near", "any", "text"]))
    if kind == "text":
        return draw(
            st.one_of(
                st.text(max_size=300),
                st.sampled_from(
                    [
                        "a: &a [1, 2]\nb: *a\n",
                        "server: !!python/object/apply:os.system ['true']\n",
                        "- " * 3000,
                        "{" * 3000,
                        "server:\n  profile: paper\n\tload: 0\n",
                        "devices: [1e1, 5e-1]",
                    ]
                ),
            )
        )
    if kind == "any":
        return json.dumps(draw(JSONISH), allow_nan=True)
    groups = []
    for _ in range(draw(st.integers(0, 3))):
        group = {}
        for key in GROUP_KEYS:
            if draw(st.integers(0, 4)) == 0:
                continue  # a missing key
            valid = {
                "name": "g",
                "count": 2,
                "network": "lenet",
                "profile": "paper",
                "uplink_mbps": 5,
                "downlink_mbps": 50,
            }[key]
            group[key] = draw(
                st.one_of(
                    st.just(valid), SCALARS, st.sampled_from(["vgg99", "../x.onnx", "/dev/null", 10**6, -3, "nope"])
                )
            )
        groups.append(group)
    document = {
        "server": {"profile": draw(st.sampled_from(["paper", "measured", "nope", 3, None])), "load": draw(NUMBERS)},
        "devices": groups,
    }
    if draw(st.booleans()):
        document["family"] = draw(st.sampled_from(["paper", "dnnpart", "other", 1]))
    if draw(st.integers(0, 5)) == 0:
        document[draw(st.text(max_size=6))] = draw(SCALARS)
    return json.dumps(document, allow_nan=True, default=str)


@FUZZ
@given(text=scenario_documents())
def test_scenario_files(tmp_path, text):
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        scenario = load_scenario(path)
    except DnnpartError as exc:
        assert_one_line(exc)
        return
    assert 0 <= scenario.load < 1 and scenario.n_devices >= 1
    assert all(g.uplink_mbps > 0 and math.isfinite(g.uplink_mbps) for g in scenario.groups)


# --- profile CSVs ----------------------------------------------------------------------------------------------


@st.composite
def profile_csvs(draw):
    columns = list(CSV_COLUMNS)
    if draw(st.integers(0, 4)) == 0:
        columns = draw(st.permutations(columns))[: draw(st.integers(0, len(columns)))]
    cells = st.one_of(
        st.sampled_from(
            [
                "conv",
                "fc",
                "relu",
                "device",
                "server",
                "gelu",
                "",
                "1",
                "3",
                "0.5",
                "-1",
                "nan",
                "inf",
                "1e400",
                '"',
                ",",
                "x",
            ]
        ),
        st.text(max_size=5),
    )
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(CSV_COLUMNS) + 2), max_size=12))
    lines = [",".join(columns)] + [",".join(r) for r in rows]
    text = "\n".join(lines)
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    return text.encode("utf-8", errors="surrogatepass")


@FUZZ
@given(data=profile_csvs())
def test_profile_csvs(tmp_path, data):
    path = tmp_path / "device.csv"
    path.write_bytes(data)
    try:
        df = read_profile_csv(path)
    except DnnpartError as exc:
        assert_one_line(exc)
        return
    assert len(df) >= 1 and (df["latency_ms"] > 0).all()
