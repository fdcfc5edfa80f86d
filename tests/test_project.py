"""Project hygiene: environment.yml mirrors pyproject.toml, notebooks are committed clean, paths are absolute."""

import json
import re
import subprocess
import tomllib

import yaml

from dnnpart import paths


def _split(requirement: str) -> tuple[str, str]:
    """'pyomo>=6.9.2' -> ('pyomo', '>=6.9.2'), names normalised as pip does."""
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2).replace(" ", "")


def _lock() -> dict[str, str]:
    pins = {}
    for line in (paths.PROJ_ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pins[_split(name)[0]] = version.strip()
    return pins


def test_lock_pins_every_declared_dependency_within_its_range():
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((paths.PROJ_ROOT / "pyproject.toml").read_text())["project"]
    # every extra but `bench` (the benchmark's optional peer, installed by `make benchmark`, never by `make`)
    extras = {name: reqs for name, reqs in project["optional-dependencies"].items() if name != "bench"}
    declared = project["dependencies"] + [r for reqs in extras.values() for r in reqs]
    pins = _lock()
    for requirement in declared:
        name, spec = _split(requirement)
        if name == "dnnpart":  # an extra that includes others (study: the planner's packages), as dnnpart[x,y]
            wanted = set(re.fullmatch(r"\[([a-z,]+)\]", spec).group(1).split(","))
            assert wanted <= set(extras), f"{requirement}: no such extra in pyproject.toml"
            continue
        name = name.split("[")[0]
        assert name in pins, f"{name} is declared in pyproject.toml but not pinned in requirements.lock (make lock)"
        assert pins[name] in SpecifierSet(spec), f"{name}=={pins[name]} is outside {spec} (make lock)"


def test_environment_yml_installs_the_lock():
    env = yaml.safe_load((paths.PROJ_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section == ["-r requirements.lock", "-e ."]
    assert "python=3.11" in env["dependencies"]


def test_committed_notebooks_have_no_outputs():
    listed = subprocess.run(
        ["git", "ls-files", "*.ipynb"], cwd=paths.PROJ_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    notebooks = [paths.PROJ_ROOT / f for f in listed] or sorted(paths.NOTEBOOKS_DIR.glob("*.ipynb"))
    dirty = []
    for nb_path in notebooks:
        cells = json.loads(nb_path.read_text())["cells"]
        if any(c.get("outputs") or c.get("execution_count") for c in cells if c["cell_type"] == "code"):
            dirty.append(nb_path.name)
    assert dirty == []


def test_generated_outputs_are_ignored():
    probe = [
        "reports/index.html",
        "reports/executed/02-bandwidth.ipynb",
        ".venv/bin/python",
        "benchmarks/results/milp.csv",
    ]
    out = subprocess.run(
        ["git", "check-ignore", *probe], cwd=paths.PROJ_ROOT, capture_output=True, text=True
    ).stdout.split()
    assert out == probe


def test_paths_do_not_depend_on_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert paths.PROJ_ROOT.is_absolute()
    assert (paths.PROJ_ROOT / "pyproject.toml").is_file()
    assert paths.PROFILES_DIR == paths.PROJ_ROOT / "data" / "profiles"


def test_make_help_lists_every_documented_target():
    out = subprocess.run(["make", "-s", "help"], cwd=paths.PROJ_ROOT, capture_output=True, text=True, check=True).stdout
    listed = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert listed == ["help", "venv", "lock", "lint", "test", "reproduce", "lab", "benchmark", "clean"]


def test_reproduce_runs_only_the_sweep_notebooks_side_by_side():
    """make reproduce renders the sweep notebooks JOBS at a time, then every other notebook one at a time: the
    notebooks that time real executions (delay model, solver, testbed) or solve with a time limit never share
    the machine with another notebook."""
    out = subprocess.run(["make", "-n", "reproduce", "JOBS=3"], cwd=paths.PROJ_ROOT, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    submakes = [line.split() for line in out.splitlines() if "--no-print-directory" in line]
    parallel, one_at_a_time = submakes[0], submakes[1]
    assert "-j3" in parallel and "-j1" in one_at_a_time
    side_by_side = sorted(w for w in parallel if w.startswith("reports/"))
    assert side_by_side == [
        f"reports/{n}.html" for n in ("02-bandwidth", "03-networks", "04-server-load", "05-devices")
    ]
    every_report = sorted(f"reports/{p.stem}.html" for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]-*.ipynb"))
    assert sorted(w for w in one_at_a_time if w.startswith("reports/")) == [*every_report, "reports/index.html"]
    assert {"reports/01-delay-model.html", "reports/06-solver.html", "reports/08-testbed.html"}.isdisjoint(side_by_side)
