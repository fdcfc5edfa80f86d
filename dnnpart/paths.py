"""Every project path, derived from this file's location so nothing depends on the working directory."""

import os
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJ_ROOT / "data"
PROFILES_DIR = DATA_DIR / "profiles"
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
REPORTS_DIR = PROJ_ROOT / "reports"
EXAMPLES_DIR = PROJ_ROOT / "examples"
BENCHMARKS_DIR = PROJ_ROOT / "benchmarks"
# Fitted delay models are cached here, never under data/ (whose files are measurements); DNNPART_CACHE_DIR
# moves it, e.g. when the project folder is read-only.
CACHE_DIR = Path(os.environ.get("DNNPART_CACHE_DIR") or PROJ_ROOT / ".cache" / "dnnpart")
