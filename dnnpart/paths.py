"""Every project path, derived from this file's location so nothing depends on the working directory."""
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJ_ROOT / "data"
PROFILES_DIR = DATA_DIR / "profiles"
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
REPORTS_DIR = PROJ_ROOT / "reports"
REPORTS_DATA_DIR = REPORTS_DIR / "data"
FIGURES_DIR = REPORTS_DIR / "figures"
EXAMPLES_DIR = PROJ_ROOT / "examples"
BENCHMARKS_DIR = PROJ_ROOT / "benchmarks"
