"""The index page's headline: the largest Case-1 reduction against each baseline, from the saved sweep tables."""

import pandas as pd
import pytest

from dnnpart.files import write_csv
from dnnpart.study import report_index
from dnnpart.study.claims import check_claims
from dnnpart.study.report_index import build_index


def sweep(x_name, xs, case1, case2, case3):
    rows = []
    for method, ys in [("case1", case1), ("case2", case2), ("case3", case3), ("independent", case2)]:
        for x, y in zip(xs, ys):
            row = {
                "profile": "paper",
                "network": "alexnet",
                "n_devices": 4,
                "bandwidth_mbps": 5.0,
                "load": 0.0,
                "method": method,
                "avg_delay_ms": y,
                "transmitted_bytes": 0,
                "per_device_bytes": 0,
            }
            row[x_name] = x
            rows.append(row)
    return pd.DataFrame(rows)


def test_headline_picks_the_largest_reduction_and_where(tmp_path):
    data = tmp_path / "data"
    write_csv(sweep("bandwidth_mbps", [1.0, 10.0], [50.0, 20.0], [100.0, 40.0], [60.0, 60.0]), data / "fig1.csv")
    fig2 = sweep("network", ["alexnet", "lenet"], [30.0, 10.0], [60.0, 11.0], [40.0, 10.0])
    write_csv(fig2.assign(relative_speed=1.0), data / "fig2.csv")
    write_csv(sweep("load", [0.0, 0.5], [20.0, 30.0], [40.0, 80.0], [60.0, 60.0]), data / "fig4.csv")
    write_csv(sweep("n_devices", [1, 2], [20.0, 25.0], [20.0, 30.0], [60.0, 60.0]), data / "fig5.csv")

    page = build_index(tmp_path)
    head = pd.read_csv(data / "headline.csv").set_index("versus")
    # vs case2: fig4 at load 0.5 gives 1 - 30/80 = 62.5 %, the largest;
    # vs case3: 1 - 20/60 = 66.7 %, first found in fig1
    assert head.loc["case2", "reduction_pct"] == pytest.approx(62.5)
    assert (head.loc["case2", "figure"], head.loc["case2", "load"]) == ("fig4", 0.5)
    assert head.loc["case3", "reduction_pct"] == pytest.approx(100 * (1 - 20 / 60))
    assert head.loc["case3", "paper_reduction_pct"] == 69.5
    html = page.read_text()
    assert "62.5 %" in html and "✓ holds" in html


def test_index_needs_the_sweeps(tmp_path):
    with pytest.raises(FileNotFoundError, match="fig1.csv"):
        build_index(tmp_path)


def reports_folder(tmp_path):
    """The four delay sweeps of the headline test, a report and a figure: what build_index reads."""
    data = tmp_path / "data"
    write_csv(sweep("bandwidth_mbps", [1.0, 10.0], [50.0, 20.0], [100.0, 40.0], [60.0, 60.0]), data / "fig1.csv")
    fig2 = sweep("network", ["alexnet", "lenet"], [30.0, 10.0], [60.0, 11.0], [40.0, 10.0])
    write_csv(fig2.assign(relative_speed=fig2["avg_delay_ms"]), data / "fig2.csv")
    write_csv(sweep("load", [0.0, 0.5], [20.0, 30.0], [40.0, 80.0], [60.0, 60.0]), data / "fig4.csv")
    write_csv(sweep("n_devices", [1, 2], [20.0, 25.0], [20.0, 30.0], [60.0, 60.0]), data / "fig5.csv")
    (tmp_path / "02-bandwidth.html").write_text("<html></html>")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / 'odd "name" <b>.png').write_bytes(b"")
    return tmp_path


def sections(page: str) -> dict[str, str]:
    """The page's text between one <h2> heading and the next, by heading."""
    parts = page.split("<h2>")[1:]
    return {p.split("</h2>")[0]: p.split("</h2>", 1)[1] for p in parts}


def test_index_renders_identically_twice(tmp_path):
    folder = reports_folder(tmp_path)
    first = build_index(folder).read_bytes()
    assert build_index(folder).read_bytes() == first
    assert list(folder.rglob(".*.tmp")) == []


def all_claims(folder):
    """The claims the index should show, computed the way it does (check_claims on each figure table)."""
    frames = [
        check_claims(name, pd.read_csv(folder / "data" / f"{name}.csv"))
        for name in ["fig1", "fig2", "fig3", "fig4", "fig5"]
        if (folder / "data" / f"{name}.csv").is_file()
    ]
    return pd.concat(frames, ignore_index=True)


def test_index_without_kinds_has_one_claims_table(tmp_path, monkeypatch):
    original = report_index.check_claims
    monkeypatch.setattr(report_index, "check_claims", lambda figure, df: original(figure, df).drop(columns="kind"))
    folder = reports_folder(tmp_path)
    page = build_index(folder).read_text()
    claims = sections(page)["The paper's statements about Figs. 1–5, checked on our data"]
    expected = all_claims(folder)
    held = int(expected["holds"].sum())
    assert claims.count("<table>") == 1 and "<h3>" not in claims
    assert claims.count("<tr") == 1 + len(expected)
    assert f"<p>{held} of {len(expected)} hold.</p>" in claims
    assert claims.count("✗ differs") == len(expected) - held == claims.count('<tr class="differs">')
    # at fig1's lowest bandwidth Case 1 is 50/60 of Case 3 (not >= 0.9): a claim these tables make fail
    assert any("At the lowest bandwidth" in row for row in claims.split("<tr")[2:] if "✗ differs" in row)


def test_index_splits_claims_by_kind(tmp_path):
    folder = reports_folder(tmp_path)
    page = build_index(folder).read_text()
    claims = sections(page)["The paper's statements about Figs. 1–5, checked on our data"]
    heads = [h.split("</h3>")[0] for h in claims.split("<h3>")[1:]]
    tables = claims.split("<table>")[1:]
    expected = all_claims(folder)
    kinds = ["holds by construction", "depends on the data"]
    assert len(tables) == 2 and set(expected["kind"]) == set(kinds)
    for kind, head, table in zip(kinds, heads, tables):
        part = expected[expected["kind"] == kind]
        assert head == f"{kind.capitalize()}: {int(part['holds'].sum())} of {len(part)} hold"
        assert table.count("<tr") == 1 + len(part)
        assert all(claim.replace("'", "&#39;") in table for claim in part["claim"])


def test_index_sensitivity_section(tmp_path):
    folder = reports_folder(tmp_path)
    title = "How the headline depends on the study's choices"
    assert "Not computed: data/headline-sensitivity.csv is missing." in sections(build_index(folder).read_text())[title]

    rows = [
        {
            "profile": "paper",
            "variant": v,
            "sweep_low_mbps": lo,
            "sweep_high_mbps": 50.0,
            "input_encoding": enc,
            "versus": vs,
            "reduction_pct": red,
            "paper_reduction_pct": paper,
        }
        for v, lo, enc, reds in [
            ("as run", 0.25, "float32", (72.81, 73.8)),
            ("uint8 input", 0.25, "uint8", (80.0, 61.25)),
        ]
        for vs, paper, red in zip(["case2", "case3"], [90.5, 69.5], reds)
    ]
    write_csv(pd.DataFrame(rows), folder / "data" / "headline-sensitivity.csv")
    section = sections(build_index(folder).read_text())[title]
    assert "Not computed" not in section
    # pivoted: one row per variant, a column per baseline with the paper's value in its header
    assert section.count("<tr") == 1 + 2
    assert "vs Case 2 (all on server), paper 90.5 %" in section and "vs Case 3 (all local), paper 69.5 %" in section
    uint8_row = section.split("<tr")[3]
    assert "uint8 input" in uint8_row and "80.0 %" in uint8_row and "61.2 %" in uint8_row

    write_csv(pd.DataFrame(rows).drop(columns="versus"), folder / "data" / "headline-sensitivity.csv")
    section = sections(build_index(folder).read_text())[title]
    assert section.count("<tr") == 1 + 4 and "paper_reduction_pct" in section  # shown as it is, not pivoted


def test_index_links_reports_and_escapes_figure_names(tmp_path):
    page = build_index(reports_folder(tmp_path)).read_text()
    assert '<a href="02-bandwidth.html">02-bandwidth</a>' in page
    assert '<img src="figures/odd%20%22name%22%20%3Cb%3E.png" alt="odd &#34;name&#34; &lt;b&gt;">' in page
    assert "<b>" not in page
