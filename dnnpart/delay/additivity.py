"""Additivity: does the sum of a network's predicted layer delays match a measured whole-network run?"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart import networks
from dnnpart.delay.models import load_delay_model, resolve_profile
from dnnpart.delay.profiler import (
    PASSES,
    default_threads,
    reference_session,
    session_options,
    time_reference,
    time_session,
)
from dnnpart.errors import ProfileError
from dnnpart.files import write_csv
from dnnpart.vocabulary import ROLES


def profile_threads(profile: str | Path, role: str) -> int:
    """Threads a profile's role was measured with (its metadata), else the role's default."""
    meta_path = resolve_profile(profile) / f"{role}.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if "threads" in meta:
            return int(meta["threads"])
        source = meta.get("derived_from", {}).get("profile")
        if source and source != str(profile):
            return profile_threads(source, role)
    return default_threads(role)


def covered_networks(profile: str | Path, family: str = "dnnpart", seed: int = 0) -> list[str]:
    """The zoo networks (the paper's four, then the DAG networks) whose every layer type the profile has a model
    for on every role it serves: a profile measured before the DAG types were added prices only the chains."""
    model = load_delay_model(profile, family, seed)
    return [
        n
        for n in networks.names(include_dag=True)
        if all(set(networks.get(n)["type"]) <= set(types) for types in model.models.values())
    ]


def measure_network(name: str, threads: int, repeats: int | None = None, seed: int = 0) -> dict:
    """Whole-network onnxruntime latency of a zoo network (same session options as the layer profiler).

    Timed as the profiler times a layer: PASSES timing blocks, each warmed up, and the fastest block's median,
    p10 and p90 kept.
    The ONNX file (VGG16: ~530 MB of weights) lives in a temporary folder deleted afterwards.
    """
    import tempfile

    import onnxruntime as ort

    table = networks.get(name)
    with tempfile.TemporaryDirectory(prefix="dnnpart-additivity-") as tmp:
        path = networks.to_onnx(name, Path(tmp) / f"{name}.onnx", seed=seed, layer_outputs=False)
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    feed = {input_name: np.random.default_rng(seed).standard_normal(table.attrs["input_shape"], dtype=np.float32)}
    blocks = [time_session(session, feed, repeats, threads) for _ in range(PASSES)]
    del session
    fastest = min(blocks, key=lambda b: b["latency_ms"])
    return {**fastest, "repeats": sum(b["repeats"] for b in blocks)}


# The columns of `additivity_check` and `recorded_additivity` (CHECK_COLUMNS: with how fast the machine was and
# when), and of the whole-network runs recorded with a profile, `additivity-<role>.csv` (RECORD_COLUMNS).
ADDITIVITY_COLUMNS = (
    "network", "role", "threads", "layers", "predicted_ms", "measured_ms", "measured_p10_ms", "measured_p90_ms",
    "repeats", "ratio",
)  # fmt: skip
CHECK_COLUMNS = (*ADDITIVITY_COLUMNS, "reference_ms", "measured_utc")
RECORD_COLUMNS = (
    "network", "role", "threads", "layers", "measured_ms", "measured_p10_ms", "measured_p90_ms", "repeats",
    "reference_ms", "measured_utc",
)  # fmt: skip


def record_path(profile: str | Path, role: str) -> Path:
    return resolve_profile(profile) / f"additivity-{role}.csv"


def record_additivity(
    folder: str | Path, role: str, network_names: list[str] | None = None, threads: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """Measure the whole zoo networks right after a role's profile, on the same machine, and write them to
    `folder/additivity-<role>.csv`.

    A profile describes the machine it was measured on: this VM has moved between CPUs whose speeds differ by 2x
    (data/README.md), so comparing its layer sums with a whole run on another day tests the machine, not the
    model. The record keeps the runs that belong to the profile, each with the reference layer's time just
    before it (the machine's speed then). Networks default to every one the profile covers.
    """
    if role not in ROLES:
        raise ProfileError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    folder = Path(folder)
    threads = profile_threads(folder, role) if threads is None else threads
    reference = reference_session(threads)
    rows = []
    for name in network_names or covered_networks(folder):
        reference_ms = time_reference(reference, threads)
        run = measure_network(name, threads, seed=seed)
        rows.append(
            [name, role, threads, len(networks.get(name)), run["latency_ms"], run["p10_ms"], run["p90_ms"]]
            + [run["repeats"], reference_ms, datetime.now(UTC).isoformat(timespec="seconds")]
        )
    df = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    write_csv(df, record_path(folder, role))
    return df


def recorded_additivity(profile: str | Path, role: str, family: str = "dnnpart", seed: int = 0) -> pd.DataFrame:
    """The profile's own additivity: its model's layer sums against the whole runs recorded with it
    (`record_additivity`), with the columns of `additivity_check`; empty if the profile has no record."""
    path = record_path(profile, role)
    if not path.is_file():
        return pd.DataFrame(columns=list(CHECK_COLUMNS))
    runs = pd.read_csv(path)
    missing = sorted(set(RECORD_COLUMNS) - set(runs.columns))
    if missing:
        raise ProfileError(f"{path}: missing columns {missing}; expected {', '.join(RECORD_COLUMNS)}")
    model = load_delay_model(profile, family, seed)
    runs["predicted_ms"] = [float(model.predict(networks.get(n), role).sum()) for n in runs["network"]]
    runs["ratio"] = runs["predicted_ms"] / runs["measured_ms"]
    return runs[list(CHECK_COLUMNS)]


def additivity_check(
    profile: str | Path,
    role: str,
    network_names: list[str] | None = None,
    family: str = "dnnpart",
    threads: int | None = None,
    repeats: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Per zoo network: sum of predicted layer delays vs a whole-network run measured now, and their ratio.

    ratio = predicted_ms / measured_ms (1 = layer delays add up exactly). The whole network runs with the
    threads the profile's role was measured with, unless `threads` is given. `reference_ms` is the reference
    layer's time just before each run: set beside the profile's own (its JSON, `reference_ms`), it says how much
    faster or slower this machine is now than when the profile was measured. The profile's own additivity, from
    runs measured with it, is `recorded_additivity`.
    """
    if role not in ROLES:
        raise ProfileError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    model = load_delay_model(profile, family, seed)
    threads = profile_threads(profile, role) if threads is None else threads
    reference = reference_session(threads)
    rows = []
    for name in network_names or networks.names():
        table = networks.get(name)
        predicted = float(model.predict(table, role).sum())
        reference_ms = time_reference(reference, threads)
        run = measure_network(name, threads, repeats, seed)
        rows.append(
            [name, role, threads, len(table), predicted, run["latency_ms"], run["p10_ms"], run["p90_ms"]]
            + [run["repeats"], predicted / run["latency_ms"], reference_ms]
            + [datetime.now(UTC).isoformat(timespec="seconds")]
        )
    return pd.DataFrame(rows, columns=list(CHECK_COLUMNS))
