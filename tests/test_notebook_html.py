"""The HTML reports show their figures: embedded PNGs, once each, never the text '<Figure size ...>'.

Until the plots module stopped switching matplotlib to Agg at import, every figure of every report rendered as
'<Figure size 1052x360 with 2 Axes>'. The end-to-end test runs a notebook as `make reproduce` does; the others
show that the check in tests/conftest.py catches a text-only figure and a figure shown twice; the last ones that
the notebooks, the Makefile, the README and the tests name one kernel, installed for this environment.
"""

import base64
import io
import re

import matplotlib.pyplot as plt
import nbformat
import pytest
from conftest import (
    KERNEL_NAME,
    NOTEBOOKS_DIR,
    PNG_DATA_URI,
    PNG_MAGIC,
    figure_problems,
    kernel_problem,
    render_html,
)
from nbformat.v4 import new_code_cell, new_notebook, new_output

from dnnpart import paths


def test_report_embeds_each_figure_once_as_png(run_notebook, tmp_path):
    """Notebook 05's figure cell ends with `fig`: the report must show it once, as an image."""
    run_notebook("05-devices", tmp_path, profiles=["paper"], n_devices=[1, 2])
    body = (tmp_path / "05-devices.html").read_text(encoding="utf-8")
    assert body.count(f'src="{PNG_DATA_URI}') == 1
    assert [p.name for p in (tmp_path / "figures").glob("*.png")] == ["fig5-delay-vs-devices.png"]
    assert "Figure size" not in body
    assert "fig = plots.fig5_delay_vs_devices" not in body  # --no-input: the report shows no code


def _png() -> str:
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    assert buf.getvalue().startswith(PNG_MAGIC)
    return base64.b64encode(buf.getvalue()).decode()


def _report(tmp_path, outputs) -> str:
    """The HTML report of a one-cell notebook holding `outputs`."""
    path = tmp_path / "synthetic.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("fig", outputs=outputs)]), str(path))
    return render_html(path)


def test_check_accepts_one_embedded_figure(tmp_path):
    figure = new_output(
        "execute_result", data={"image/png": _png(), "text/plain": "<Figure size 100x100>"}, execution_count=1
    )
    assert figure_problems(_report(tmp_path, [figure]), n_figures=1) == []


def test_check_rejects_a_figure_rendered_as_text(tmp_path):
    text_only = new_output(
        "execute_result", data={"text/plain": "<Figure size 1052x360 with 2 Axes>"}, execution_count=1
    )
    problems = figure_problems(_report(tmp_path, [text_only]), n_figures=1)
    assert problems == [
        "a figure rendered as text: '<Figure size 1052x360 with 2 Axes>'",
        "0 images in the report for 1 saved figures",
    ]


def test_check_rejects_a_figure_shown_twice(tmp_path):
    """Inline auto-display of an open figure plus the cell's returned `fig` gives two images of one figure."""
    png = _png()
    shown = new_output("display_data", data={"image/png": png, "text/plain": "<Figure size 100x100>"})
    returned = new_output(
        "execute_result", data={"image/png": png, "text/plain": "<Figure size 100x100>"}, execution_count=1
    )
    assert figure_problems(_report(tmp_path, [shown, returned]), n_figures=1) == [
        "2 images in the report for 1 saved figures"
    ]


@pytest.mark.parametrize(
    "src, problem",
    [
        ("data:image/svg+xml;base64,PHN2Zz4=", "an image is not an embedded PNG"),
        ("data:image/png;base64," + base64.b64encode(b"GIF89a").decode(), "an embedded image does not decode to a PNG"),
    ],
)
def test_check_rejects_images_that_are_not_embedded_pngs(src, problem):
    problems = figure_problems(f'<div><img alt="" class="" src="{src}"/></div>', n_figures=1)
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_one_kernel_name_everywhere():
    """The Makefile, every notebook's metadata, the README's papermill example and the tests name one kernel."""
    makefile = (paths.PROJ_ROOT / "Makefile").read_text()
    assert re.search(r"^KERNEL\s*:=\s*(\S+)$", makefile, re.MULTILINE).group(1) == KERNEL_NAME
    assert "--kernel $(KERNEL)" in makefile and "--name $(KERNEL)" in makefile
    for path in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        assert nbformat.read(str(path), as_version=4).metadata.kernelspec.name == KERNEL_NAME, path.name
    readme = (paths.PROJ_ROOT / "README.md").read_text()
    assert re.findall(r"papermill --kernel (\S+)", readme) == [KERNEL_NAME]


def test_the_kernel_is_installed_for_this_environment():
    """`make venv` installs it; a missing kernel is named with the command that installs it."""
    assert kernel_problem() is None
    assert kernel_problem("no-such-kernel").startswith("Jupyter kernel 'no-such-kernel' is not installed; `make venv`")
