"""Notebook tests share one kernel, one notebook folder and one way to run a notebook (the recommenders pattern).

The kernel is the Makefile's: `make venv` installs it into .venv (`ipykernel install --sys-prefix --name dnnpart`),
so a test executes a notebook as `make reproduce` does, and then renders the HTML report `make reproduce` would
render from it and checks that every figure the notebook saved is shown in it once, as an image.
"""

from __future__ import annotations

import base64
import html
import re
import sys
from pathlib import Path

import pytest

from dnnpart import paths

NOTEBOOKS_DIR = paths.NOTEBOOKS_DIR
KERNEL_NAME = "dnnpart"  # the Makefile's KERNEL
EXECUTION_TIMEOUT_S = 600

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_DATA_URI = "data:image/png;base64,"
IMG_SRC = re.compile(r'<img\b[^>]*?\bsrc="([^"]*)"')


def kernel_problem(name: str = KERNEL_NAME) -> str | None:
    """Why the notebooks cannot run on kernel `name` in this environment, or None when they can."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    install = f"{sys.executable} -m ipykernel install --sys-prefix --name {name}"
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return f"Jupyter kernel {name!r} is not installed; `make venv` installs it ({install})"
    python = Path(spec.argv[0])
    # A kernel registered by another environment would run the notebooks against other packages.
    prefix, folder = Path(sys.prefix).resolve(), python.parent.resolve()
    if python.is_absolute() and folder != prefix and prefix not in folder.parents:
        return f"Jupyter kernel {name!r} runs {python}, not this environment's Python; reinstall it: {install}"
    return None


def render_html(executed: Path) -> str:
    """The report `make reproduce` renders: `jupyter nbconvert --to html --no-input`."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_filename(str(executed))
    return body


def figure_problems(body: str, n_figures: int) -> list[str]:
    """What is wrong with the figures of a rendered report that should show `n_figures` figures ([] = nothing).

    Every image must be an embedded PNG, no output may be a figure's text repr (what an Agg backend leaves in a
    notebook), and there must be one image per figure: two means a figure was shown twice (inline auto-display
    and the returned object), fewer means one was not shown.
    """
    problems = []
    images = IMG_SRC.findall(body)
    for src in images:
        if not src.startswith(PNG_DATA_URI):
            problems.append(f"an image is not an embedded PNG: {src[:60]!r}")
        elif not base64.b64decode(src[len(PNG_DATA_URI) :]).startswith(PNG_MAGIC):
            problems.append("an embedded image does not decode to a PNG")
    text = html.unescape(body)
    problems += [f"a figure rendered as text: {m!r}" for m in re.findall(r"<Figure size [^>]*>", text)]
    if len(images) != n_figures:
        problems.append(f"{len(images)} images in the report for {n_figures} saved figures")
    return problems


@pytest.fixture(scope="session")
def notebook_kernel() -> str:
    problem = kernel_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    return KERNEL_NAME


@pytest.fixture
def run_notebook(notebook_kernel):
    """run(name, out_dir, **parameters) executes notebooks/<name>.ipynb with papermill, writing into out_dir
    (the notebook's out_dir parameter), renders <out_dir>/<name>.html and checks its figures against the PNGs
    the notebook saved in <out_dir>/figures; returns <out_dir>/data, where the notebook writes its CSVs."""
    import papermill as pm

    def run(name: str, out_dir: Path, **parameters) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        executed = out_dir / f"{name}.ipynb"
        pm.execute_notebook(
            str(NOTEBOOKS_DIR / f"{name}.ipynb"),
            str(executed),
            parameters={"out_dir": str(out_dir), **parameters},
            kernel_name=notebook_kernel,
            cwd=str(NOTEBOOKS_DIR),
            execution_timeout=EXECUTION_TIMEOUT_S,
            progress_bar=False,
        )
        body = render_html(executed)
        (out_dir / f"{name}.html").write_text(body, encoding="utf-8")
        saved = sorted((out_dir / "figures").glob("*.png"))
        problems = figure_problems(body, len(saved))
        assert not problems, f"{name}.html: {'; '.join(problems)} (saved: {', '.join(p.name for p in saved)})"
        return out_dir / "data"

    return run
