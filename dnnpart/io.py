"""Small file helpers shared by the library: atomic writes, so no crash leaves a half-written file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd


def atomic_write_text(path: Path, text: str) -> Path:
    """Write text to path via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """A deterministic CSV (no index, 10 significant digits) written atomically."""
    return atomic_write_text(path, df.to_csv(index=False, float_format="%.10g", lineterminator="\n"))
