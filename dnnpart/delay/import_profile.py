"""Profiles from other tools: timings measured elsewhere (PyTorch on a board, a vendor's benchmark tool) mapped
into a profile folder that `load_delay_model` fits like a measured one (`dnnpart import-profile`).

The minimal schema (one row per timed layer; docs/deployment.md) is a layer type, its input shape and its
latency; the factors the layer table has beyond those default as described in IMPORT_DEFAULTS. Repeated
configurations are aggregated (models.aggregate_repeats) so that the fit's test rows have no twin in training,
and rows far from their type's fit are flagged (models.flagged_rows) in the metadata, not dropped.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart.delay.models import aggregate_repeats, flagged_rows, read_profile_csv, sha256_file
from dnnpart.delay.profiler import CSV_COLUMNS, FACTORS, OPTIONAL_MEASURES
from dnnpart.errors import ProfileError
from dnnpart.files import atomic_write_text, write_csv
from dnnpart.limits import MAX_FILE_BYTES
from dnnpart.networks.onnx_import import SUPPORTED_OPS
from dnnpart.vocabulary import LAYER_TYPES, ROLES

IMPORT_REQUIRED = ("layer_type", "in_channels", "in_side", "latency_ms")
IMPORT_DEFAULTS = {
    "out_channels": "in_channels (add: half of it); required for conv and fc",
    "kernel": "1 (gap: in_side)",
    "stride": "1",
    "pad": "0",
    "groups": "1 (dwconv: in_channels)",
    "out_side": "from in_side, kernel, stride and pad (conv, dwconv, pool rounding down); 1 for fc and gap; "
    "else in_side",
}
FORMATS = ("csv",)
# ONNX operator names are accepted for layer_type too (a vendor tool reports operators), mapped as from_onnx does
OPERATOR_TYPES = {op: t for op, t in SUPPORTED_OPS.items() if t != "fold"}


def _layer_type(value: str) -> str | None:
    value = str(value).strip()
    if value in LAYER_TYPES:
        return value
    return OPERATOR_TYPES.get(value)


def map_rows(raw: pd.DataFrame, role: str, source: str) -> pd.DataFrame:
    """Rows of the minimal schema -> profile rows (CSV_COLUMNS); ProfileError names the line and column."""
    missing = [c for c in IMPORT_REQUIRED if c not in raw.columns]
    if missing:
        raise ProfileError(
            f"{source}: missing column(s) {', '.join(missing)}; the import schema needs "
            f"{', '.join(IMPORT_REQUIRED)} (optional: {', '.join(IMPORT_DEFAULTS)}, "
            f"{', '.join(OPTIONAL_MEASURES)}, role)"
        )
    if raw.empty:
        raise ProfileError(f"{source}: no rows")
    df = pd.DataFrame(index=raw.index)
    types = raw["layer_type"].map(_layer_type)
    if types.isna().any():
        i = raw.index[types.isna()][0]
        raise ProfileError(
            f"{source}: line {i + 2}: unknown layer_type {raw.at[i, 'layer_type']!r}; valid: "
            f"{', '.join(LAYER_TYPES)} or an ONNX operator ({', '.join(OPERATOR_TYPES)})"
        )
    if "role" in raw.columns and (raw["role"].astype(str) != role).any():
        i = raw.index[raw["role"].astype(str) != role][0]
        raise ProfileError(f"{source}: line {i + 2} has role {raw.at[i, 'role']!r} but --role is {role!r}")

    def number(col: str, default=None) -> pd.Series:
        if col not in raw.columns:
            return pd.Series(default, index=raw.index, dtype=float)
        values = pd.to_numeric(raw[col], errors="coerce")
        if default is not None:
            values = values.fillna(default)
        return values

    cin, side = number("in_channels"), number("in_side")
    for col, values in (("in_channels", cin), ("in_side", side), ("latency_ms", number("latency_ms"))):
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            i = raw.index[bad][0]
            raise ProfileError(f"{source}: line {i + 2}: column {col} = {raw.at[i, col]!r} must be a positive number")
    weighted = types.isin(["conv", "fc"])
    cout = number("out_channels")
    if (weighted & cout.isna()).any():
        i = raw.index[weighted & cout.isna()][0]
        raise ProfileError(f"{source}: line {i + 2}: a {types[i]} row needs out_channels")
    cout = cout.fillna(pd.Series(np.where(types == "add", cin // 2, cin), index=raw.index))
    groups = number("groups").fillna(pd.Series(np.where(types == "dwconv", cin, 1), index=raw.index))
    # a conv with one group per input channel is depthwise, as in the layer table
    types = types.where(~((types == "conv") & (groups > 1) & (groups == cin)), "dwconv")
    kernel = number("kernel").fillna(pd.Series(np.where(types == "gap", side, 1), index=raw.index))
    stride, pad = number("stride", 1), number("pad", 0)
    windowed = types.isin(["conv", "dwconv", "pool"])
    computed = np.where(windowed, (side + 2 * pad - kernel) // stride + 1, np.where(types.isin(["fc", "gap"]), 1, side))
    df["role"] = role
    df["layer_type"] = types
    for col, values in (
        ("kernel", kernel),
        ("stride", stride),
        ("pad", pad),
        ("groups", groups),
        ("in_channels", cin),
        ("out_channels", cout),
        ("in_side", side),
        ("out_side", number("out_side").fillna(pd.Series(computed, index=raw.index))),
    ):
        df[col] = values
    df["latency_ms"] = number("latency_ms")
    for col in OPTIONAL_MEASURES:
        df[col] = number(col)
    return df[list(CSV_COLUMNS)]


def import_profile(path: str | Path, role: str, out: str | Path, fmt: str = "csv", seed: int = 0) -> Path:
    """Map a file of timings into <out>/<role>.csv (+ <role>.json metadata); return the CSV's path.

    Refuses an --out folder that already holds that role's profile. The metadata records the source file and
    its sha256, the rows read, the configurations kept after aggregating repeats, and the flagged rows.
    """
    if fmt not in FORMATS:
        raise ProfileError(f"unknown --from format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if role not in ROLES:
        raise ProfileError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise ProfileError(f"{path}: no such file to import")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ProfileError(
            f"{path}: {path.stat().st_size:,} bytes; at most {MAX_FILE_BYTES:,} are read "
            "(dnnpart.limits.MAX_FILE_BYTES)"
        )
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    rows = aggregate_repeats(map_rows(raw, role, str(path)))
    if out.exists() and not out.is_dir():
        raise ProfileError(f"--out {out} is a file; give a folder for the profile")
    if (out / f"{role}.csv").exists():
        raise ProfileError(f"--out {out} already holds a {role} profile; import into another folder")
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(rows, out / f"{role}.csv")
    read_profile_csv(csv_path)  # what was written is what the fitter accepts
    meta = {
        "role": role,
        "source": "imported",
        "imported_from": str(path),
        "format": fmt,
        "sha256": sha256_file(path),
        "rows_read": int(len(raw)),
        "configurations": int(len(rows)),
        "configs_per_type": {
            t: int(n) for t, n in rows["layer_type"].value_counts().reindex(LAYER_TYPES).dropna().items()
        },
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        flagged = flagged_rows(out, seed)
        meta["flagged"] = [
            {k: (v if isinstance(v, str) else float(v)) for k, v in r.items()}
            for r in flagged[["layer_type", *FACTORS, "measured_ms", "predicted_ms"]].to_dict(orient="records")
        ]
    except ProfileError as exc:  # e.g. too few rows of a type to fit: the profile is written, the fit says why
        meta["flagged"] = None
        meta["fit_error"] = str(exc)
    atomic_write_text(out / f"{role}.json", json.dumps(meta, indent=2) + "\n")
    return csv_path
