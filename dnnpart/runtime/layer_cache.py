"""A folder of per-layer ONNX models named by their sha256 (`dnnpart serve --layer-cache`, `dnnpart device
--layer-cache`), so that a process that starts again does not build or download AlexNet's 244 MB of layers again.

A real board keeps its model installed between sessions; the testbed starts a server and every device for each
case and round, and without a cache each start spent seconds drawing the weights (the server) and receiving
them (the devices) before the first measured round. The cache is content-addressed: a file is used only when
its bytes hash to its name, so a partial, altered or foreign file is rebuilt or fetched again, never run. Files
are written atomically (a temporary sibling, then a rename), so the server and the devices can share a folder.
Imports only the standard library and dnnpart.files: the device client uses it on a board.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from dnnpart.errors import DnnpartError, RuntimeConfigError
from dnnpart.files import atomic_write_bytes

SHA256 = re.compile(r"^[0-9a-f]{64}$")
SUFFIX = ".onnx"


class LayerCache:
    """Layer models in `folder`, one file <sha256>.onnx each."""

    def __init__(self, folder):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise RuntimeConfigError(f"--layer-cache {folder}: not a folder")

    def path(self, sha256: str) -> Path:
        if not SHA256.match(sha256):
            raise RuntimeConfigError(f"not a sha256 digest: {sha256[:80]!r}")
        return self.folder / f"{sha256}{SUFFIX}"

    def digests(self) -> list[str]:
        """The digests the folder's file names claim, sorted (the files are checked when read)."""
        return sorted(p.name[: -len(SUFFIX)] for p in self.folder.glob(f"*{SUFFIX}") if SHA256.match(p.stem))

    def get(self, sha256: str) -> bytes | None:
        """The model whose bytes hash to sha256, or None (missing, unreadable or not what its name says)."""
        try:
            data = self.path(sha256).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    def put(self, data: bytes) -> str:
        """Keep data under its digest (unless a valid copy is there already); returns the digest. A folder that
        cannot be written still works, as no cache: the caller has the data either way."""
        sha256 = hashlib.sha256(data).hexdigest()
        if self.get(sha256) is None:
            try:
                atomic_write_bytes(self.path(sha256), data, "layer cache file")
            except (OSError, DnnpartError):
                pass
        return sha256
