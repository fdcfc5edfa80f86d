"""Small file helpers shared by the library: atomic writes, so no crash leaves a half-written file, and a check
that an output path can be written before any long work starts."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from dnnpart.errors import DnnpartError


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write data via a temporary sibling and an atomic rename.

    The temporary file is opened normally (not with mkstemp), so the umask sets its permissions as for any file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write UTF-8 text atomically (see atomic_write_bytes)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """A deterministic CSV (no index, 10 significant digits) written atomically."""
    return atomic_write_text(path, df.to_csv(index=False, float_format="%.10g", lineterminator="\n"))


def check_writable(path, what: str = "output") -> Path:
    """Fail early, with one line, when `path` cannot take an atomic write: it is a directory or another
    non-regular file (a symlink, a device), or its folder cannot be created or written to."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        kind = "a directory" if path.is_dir() else "a symlink" if path.is_symlink() else "not a regular file"
        raise DnnpartError(f"{what} {path} is {kind}; give a file path")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise DnnpartError(f"{what} {path}: folder {folder} is not writable")
    return path
