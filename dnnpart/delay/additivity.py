"""Additivity: does the sum of a network's predicted layer delays match a measured whole-network run?"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart import networks
from dnnpart.delay.models import load_delay_model, resolve_profile
from dnnpart.delay.profiler import PASSES, default_threads, session_options, time_session
from dnnpart.errors import ProfileError
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


def additivity_check(
    profile: str | Path,
    role: str,
    network_names: list[str] | None = None,
    family: str = "dnnpart",
    threads: int | None = None,
    repeats: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Per zoo network: sum of predicted layer delays vs a measured whole-network run, and their ratio.

    ratio = predicted_ms / measured_ms (1 = layer delays add up exactly). The whole network runs with the
    threads the profile's role was measured with, unless `threads` is given.
    """
    if role not in ROLES:
        raise ProfileError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    model = load_delay_model(profile, family, seed)
    threads = profile_threads(profile, role) if threads is None else threads
    rows = []
    for name in network_names or networks.names():
        table = networks.get(name)
        predicted = float(model.predict(table, role).sum())
        run = measure_network(name, threads, repeats, seed)
        rows.append(
            {
                "network": name,
                "role": role,
                "threads": threads,
                "layers": len(table),
                "predicted_ms": predicted,
                "measured_ms": run["latency_ms"],
                "measured_p10_ms": run["p10_ms"],
                "measured_p90_ms": run["p90_ms"],
                "repeats": run["repeats"],
                "ratio": predicted / run["latency_ms"],
            }
        )
    return pd.DataFrame(rows)
