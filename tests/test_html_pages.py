"""The HTML pages (plan report, report index) from Jinja2 templates: names are escaped, renders repeat exactly,
one stylesheet is inlined and the templates ship with the package."""

import dataclasses
import fnmatch
import tomllib
from html.parser import HTMLParser

import jinja2
import pandas as pd
import pytest
import yaml

from dnnpart import pages, paths
from dnnpart.planning.compile import compile_scenario
from dnnpart.planning.plan_report import plan_html, solve_plans, write_html

HOSTILE_GROUP = "<script>alert(1)</script>"
HOSTILE_FILE = "<img src=x onerror=alert(1)>.yaml"
HOSTILE_COMMENT = "# </pre><script>alert(2)</script>"


class Page(HTMLParser):
    """The tags, attributes and text a browser would see."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A two-device LeNet scenario whose group name, file name and a comment are markup, compiled and solved."""
    folder = tmp_path_factory.mktemp("hostile")
    path = folder / HOSTILE_FILE
    data = {
        "server": {"profile": "paper"},
        "devices": [{"name": HOSTILE_GROUP, "count": 2, "network": "lenet", "profile": "paper", "uplink_mbps": 2}],
    }
    path.write_text(HOSTILE_COMMENT + "\n" + yaml.safe_dump(data), encoding="utf-8")
    compiled = compile_scenario(path)
    return compiled, solve_plans(compiled)


def test_plan_page_escapes_every_name(hostile):
    compiled, solutions = hostile
    page = plan_html(compiled, solutions)
    seen = Page(page)
    assert "script" not in seen.tags and "img" not in seen.tags
    assert not [a for a, _ in seen.attrs if a.startswith("on")]
    assert "<script" not in page.lower() and "<img" not in page.lower()
    text = "".join(seen.text)
    # the reader sees the names as written: device rows, the title, the scenario file
    assert f"{HOSTILE_GROUP}-0" in text and f"{HOSTILE_GROUP}-1" in text
    assert f"Deployment plan for {HOSTILE_FILE}" in text
    assert HOSTILE_COMMENT in text
    assert f"<td>{HOSTILE_GROUP.replace('<', '&lt;').replace('>', '&gt;')}-0</td>" in page


def test_plan_page_renders_identically_twice(hostile, tmp_path):
    compiled, solutions = hostile
    first = write_html(compiled, solutions, tmp_path / "a.html").read_bytes()
    second = write_html(compiled, solutions, tmp_path / "b.html").read_bytes()
    assert first == second
    assert list(tmp_path.glob(".*.tmp")) == []  # written through a temporary file, none left over


def test_plan_page_is_one_file_with_the_shared_stylesheet(hostile):
    compiled, solutions = hostile
    page = plan_html(compiled, solutions)
    css = (paths.PROJ_ROOT / "dnnpart" / "templates" / "style.css").read_text(encoding="utf-8")
    assert css.strip() in page
    assert page.count("<style>") == 1 and page.count("<svg") == 1
    seen = Page(page)
    assert "link" not in seen.tags and "script" not in seen.tags
    # nothing fetched: the only references are the SVG's own ids
    assert [v for a, v in seen.attrs if a in ("src", "href", "xlink:href") and not v.startswith("#")] == []


def test_tables_mark_numeric_columns_and_format_cells():
    df = pd.DataFrame({"device": ["a", "b"], "local_ms": [1.25, 10.0], "holds": [True, False]})
    table = pages.table(df, {"local_ms": "{:.1f}".format})
    assert table.columns == ["device", "local_ms", "holds"]
    assert table.numeric == [False, True, False]
    assert table.rows == [["a", "1.2", "True"], ["b", "10.0", "False"]]


def test_plan_page_flags_a_plan_not_proven_optimal(hostile):
    compiled, solutions = hostile
    sol = solutions["case1"]
    unproven = {**solutions, "case1": dataclasses.replace(sol, proven_optimal=False)}
    assert '<p class="warn">' in plan_html(compiled, unproven)
    assert '<p class="warn">' not in plan_html(compiled, solutions)


def test_undefined_template_variables_fail():
    with pytest.raises(jinja2.UndefinedError, match="scenario_name"):
        pages.render("plan.html.j2")


def test_templates_ship_in_the_wheel():
    config = tomllib.loads((paths.PROJ_ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["dnnpart"]
    templates = sorted(
        p.relative_to(paths.PROJ_ROOT / "dnnpart").as_posix()
        for p in (paths.PROJ_ROOT / "dnnpart" / "templates").iterdir()
        if p.is_file()
    )
    assert "templates/style.css" in templates and "templates/plan.html.j2" in templates
    assert [t for t in templates if not any(fnmatch.fnmatch(t, g) for g in globs)] == []
