"""The ``paper`` profile: the paper's eq. (1)/(2) for convolutions, our measured models rescaled for the rest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dnnpart import networks
from dnnpart.delay.models import (
    PAPER_CONV_COEFFICIENTS,
    PAPER_CONV_FORMULA,
    LayerModel,
    features,
    load_delay_model,
    resolve_profile,
    sha256_file,
    write_json,
)
from dnnpart.paths import PROFILES_DIR
from dnnpart.vocabulary import ROLES

PAPER_PROFILE = "paper"


def zoo_layers(layer_type: str | None = None) -> pd.DataFrame:
    """Every layer of every zoo network (with a `network` column), optionally of one type."""
    frames = []
    for name in networks.names():
        t = networks.get(name)
        frames.append(t.assign(network=name))
    df = pd.concat(frames, ignore_index=True)
    return df if layer_type is None else df[df["type"] == layer_type].reset_index(drop=True)


def paper_conv_model(role: str) -> LayerModel:
    """Eq. (1) (device) or eq. (2) (server) verbatim, in ms; I = in_channels / groups."""
    return LayerModel(
        PAPER_CONV_FORMULA,
        dict(PAPER_CONV_COEFFICIENTS[role]),
        log_response=False,
        info={"source": "Gao et al., eq. (1)" if role == "device" else "Gao et al., eq. (2)"},
    )


def build_paper_profile(
    source: str | Path = "measured", family: str = "dnnpart", seed: int = 0, out: str | Path | None = None
) -> Path:
    """Write the ``paper`` profile: conv from eq. (1)/(2), every other type the measured model rescaled.

    The paper gives coefficients only for conv. For each role, s_role = (sum over the zoo's conv layers of the
    eq. (1)/(2) prediction) / (sum of the measured conv model's prediction on the same layers); every non-conv
    model of `source` is multiplied by s_role, i.e. we assume the paper's hardware is uniformly s_role times
    slower (or faster) than ours on every layer type. Returns the folder.
    """
    out = Path(out) if out is not None else PROFILES_DIR / PAPER_PROFILE
    measured = load_delay_model(source, family, seed)
    source_folder = resolve_profile(source)
    convs = zoo_layers("conv")
    for role in ROLES:
        eq = paper_conv_model(role)
        eq_sum = float(eq.predict(features(convs)).sum())
        measured_sum = float(measured.predict(convs, role).sum())
        scale = eq_sum / measured_sum
        models = {"conv": eq.to_dict()}
        for t, m in measured.models[role].items():
            if t != "conv":
                models[t] = LayerModel(
                    m.formula,
                    m.params,
                    m.log_response,
                    m.scale * scale,
                    {"source": f"{source} profile, {family} family, x s_{role}"},
                    m.floor_ms,
                    m.weights,
                ).to_dict()
        csv_path = source_folder / f"{role}.csv"
        meta = {
            "role": role,
            "profile": PAPER_PROFILE,
            "description": (
                "conv: Gao et al. eq. (1)/(2) verbatim in ms with G=out_side, K=kernel, O=out_channels, "
                "I=in_channels/groups. Other types: the measured model rescaled by s_role = sum of the "
                "equation over the zoo's conv layers / sum of the measured conv model over them."
            ),
            "derived_from": {
                "profile": str(source),
                "family": family,
                "seed": seed,
                "csv_sha256": sha256_file(csv_path) if csv_path.is_file() else None,
            },
            "zoo_conv_layers": int(len(convs)),
            "zoo_conv_equation_ms": eq_sum,
            "zoo_conv_measured_model_ms": measured_sum,
            "scale": scale,
            "regenerate": "python -c 'from dnnpart.delay import build_paper_profile; build_paper_profile()'",
            "models": models,
        }
        write_json(out / f"{role}.json", meta)
    return out
