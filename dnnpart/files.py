"""Small file helpers shared by the library: atomic writes, so no crash leaves a half-written file, and a check
that an output path can be written before any long work starts."""

from __future__ import annotations

import glob
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from dnnpart.errors import DnnpartError

if TYPE_CHECKING:  # the device client writes its outputs with these helpers on a board without pandas
    import pandas as pd


class OutputPathError(DnnpartError):
    """An output path that must not be written: a directory, a device or other non-regular file, a read-only
    file, or a folder that cannot be written to."""


def output_target(path, what: str = "output") -> Path:
    """The regular file an output path names, checked before anything is written.

    A symlink is followed (the file it points to is written, the link stays a link); the target must be a
    regular file or not exist yet, must not be read-only (no write bit set: refused even for root), and its
    nearest existing folder must be writable. Raises OutputPathError with one line otherwise."""
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    if target.exists() or target.is_symlink():
        try:
            st = target.stat()
        except OSError as exc:
            raise OutputPathError(f"{what} {path}: cannot be inspected ({exc.strerror or exc})") from None
        if stat.S_ISDIR(st.st_mode):
            raise OutputPathError(f"{what} {path} is a directory; give a file path")
        if not stat.S_ISREG(st.st_mode):
            raise OutputPathError(f"{what} {path} is not a regular file (a device, pipe or socket); give a file path")
        if not st.st_mode & 0o222:
            raise OutputPathError(f"{what} {path} is read-only; make it writable or choose another path")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: folder {folder} is not writable")
    return target


def check_writable(path, what: str = "output") -> Path:
    """Fail early, with one line, when `path` cannot take an atomic write (see output_target): call it before
    long work, so a bad --report or -o is refused before the solve, not after it."""
    return output_target(path, what)


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete the temporary siblings `.NAME.PID.tmp` that a writer killed mid-write (SIGKILL, power loss) left
    beside `target`: those whose process no longer runs, or that carry our own pid. Returns what it removed."""
    removed = []
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        pid = tmp.name[len(target.name) + 2 : -len(".tmp")]
        if not pid.isdigit() or tmp.is_symlink() or not tmp.is_file():
            continue
        if int(pid) == os.getpid() or not Path(f"/proc/{pid}").exists():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def atomic_write_bytes(path: Path, data: bytes, what: str = "output") -> Path:
    """Write data via a temporary sibling and an atomic rename, so no crash leaves a half-written file.

    Only regular files are written (output_target); a symlink's target is written and the link kept; an
    existing file keeps its permission bits (and, for root, its owner). The temporary file is created
    exclusively (never through a planted link) and removed on any failure, including KeyboardInterrupt and
    the SystemExit the CLI raises on SIGTERM. Returns the path as given."""
    path = Path(path)
    target = output_target(path, what)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.stat() if target.exists() else None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    remove_stale_temporaries(target)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        if old is not None:
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
            if os.geteuid() == 0:
                os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, target)
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
