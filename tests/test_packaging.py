"""`pip install dnnpart[device]` gets a board only what `dnnpart device` imports, and on such an install the
device client runs while every other command says, in one line, how to get the planner.

Both checks run offline in seconds: pip itself computes the package's metadata (the dependencies an install
would pull), and a bare venv (no pip, no system site-packages) that sees only the device's packages, linked
from this environment, runs `dnnpart device` against a real server."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from runtime_helpers import running_server

from dnnpart import paths

DEVICE = {"numpy", "onnxruntime", "grpcio", "protobuf"}
PLANNER = {"pandas", "statsmodels", "pyomo", "highspy", "matplotlib", "onnx", "tqdm", "pyyaml", "jinja2", "pydantic"}
# what the device's four packages import, as installed here (onnxruntime: flatbuffers, packaging; grpcio:
# typing_extensions); the board venv sees only these
BOARD_PACKAGES = ["numpy", "numpy.libs", "onnxruntime", "grpc", "google", "flatbuffers", "packaging"]
BOARD_MODULES = ["typing_extensions.py"]


def requires_dist(tmp_path) -> list[str]:
    """The Requires-Dist of dnnpart's metadata as pip computes it (pyproject.toml in a copy of the project's
    skeleton, so no egg-info lands in the repository)."""
    root = tmp_path / "project"
    (root / "dnnpart").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(paths.PROJ_ROOT / name, root / name)
    (root / "dnnpart" / "__init__.py").write_text("")
    report = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index", "--no-build-isolation"]
        + ["--ignore-installed", "--quiet", "--report", "-", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    [item] = json.loads(report.stdout)["install"]
    assert item["metadata"]["name"] == "dnnpart"
    return item["metadata"]["requires_dist"]


def _name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()


def test_the_base_install_and_the_device_extra_pull_only_the_devices_packages(tmp_path):
    reqs = requires_dist(tmp_path)
    base = {_name(r) for r in reqs if ";" not in r}
    device = {_name(r) for r in reqs if 'extra == "device"' in r}
    planner = {_name(r) for r in reqs if 'extra == "planner"' in r}
    assert base == DEVICE and device == DEVICE
    assert planner == PLANNER
    study = [r for r in reqs if 'extra == "study"' in r]
    assert any(r.startswith("dnnpart[planner]") for r in study)  # the study needs the planner


@pytest.fixture
def board_python(tmp_path):
    """A venv with no pip and no system site-packages, seeing only the device's packages and dnnpart's source."""
    home = tmp_path / "board"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, symlinks=True).create(home)
    python = home / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    )
    here = Path(sysconfig.get_paths()["purelib"])
    linked = tmp_path / "device-packages"
    linked.mkdir()
    for name in BOARD_PACKAGES + BOARD_MODULES:
        if (here / name).exists():
            (linked / name).symlink_to(here / name)
    (site / "board.pth").write_text(f"{linked}\n{paths.PROJ_ROOT}\n")
    return python


def board(python, *args, timeout=120):
    return subprocess.run(
        [str(python), "-m", "dnnpart", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")},
    )


def test_on_a_board_the_device_runs_and_every_other_command_names_the_planner_extra(board_python, tmp_path):
    check = subprocess.run(
        [
            str(board_python),
            "-c",
            "import importlib.util as u; print([m for m in "
            f"{sorted(PLANNER - {'pyyaml'}) + ['yaml']} if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert check.stdout.strip() == "[]"  # none of the planner's packages is importable there

    for args in (["networks"], ["solve", "--network", "lenet"], ["serve", "--port", "0"], ["schema", "instance"]):
        out = board(board_python, *args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and "pip install 'dnnpart[planner]'" in out.stderr, (args, out.stderr)
        assert out.stderr.startswith(f"dnnpart {args[0]}: error: this command needs the planner extra's packages")

    with running_server(tmp_path / "out", expected=1) as (address, _):
        out = board(
            board_python,
            "device",
            "--server",
            address,
            "--name",
            "pi",
            "--network",
            "lenet",
            "--profile",
            "paper",
            "--uplink-mbps",
            "measured",
            "--save-outputs",
            str(tmp_path / "outputs"),
        )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("pi uplink: ") and "measured by a probe" in lines[0]
    assert lines[1].startswith("pi round 0: cut ") and "predicted" in lines[1]
    assert (tmp_path / "outputs" / "output-0.npy").is_file()
