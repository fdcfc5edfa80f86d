"""The index page's headline: the largest Case-1 reduction against each baseline, from the saved sweep tables."""
import pandas as pd
import pytest

from dnnpart.files import write_csv
from dnnpart.study import report_index
from dnnpart.study.report_index import build_index


def sweep(x_name, xs, case1, case2, case3):
    rows = []
    for method, ys in [("case1", case1), ("case2", case2), ("case3", case3), ("independent", case2)]:
        for x, y in zip(xs, ys):
            row = {"profile": "paper", "network": "alexnet", "n_devices": 4, "bandwidth_mbps": 5.0, "load": 0.0,
                   "method": method, "avg_delay_ms": y, "transmitted_bytes": 0, "per_device_bytes": 0}
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
    # vs case2: fig4 at load 0.5 gives 1 - 30/80 = 62.5 %, the largest; vs case3: 1 - 20/60 = 66.7 %, first found in fig1
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


def test_index_without_kinds_has_one_claims_table(tmp_path):
    page = build_index(reports_folder(tmp_path)).read_text()
    claims = sections(page)["The paper's statements about Figs. 1–5, checked on our data"]
    assert claims.count("<table>") == 1 and "<h3>" not in claims
    # 6 claims for fig1, 3 for fig2, 4 each for figs. 4 and 5; two differ: at fig1's lowest bandwidth Case 1 is
    # 50/60 of Case 3 (not >= 0.9), and fig2's Case 2 (relative speed 60 at alexnet) beats Case 1 (30)
    assert claims.count("<tr") == 1 + 17
    assert "<p>15 of 17 hold.</p>" in claims
    assert claims.count("✗ differs") == 2 and claims.count("✓ holds") == 15
    assert claims.count('<tr class="differs">') == 2
    differs = [row for row in claims.split("<tr")[2:] if "✗ differs" in row]
    assert "At the lowest bandwidth" in differs[0] and "highest relative speed" in differs[1]


def test_index_splits_claims_by_kind(tmp_path, monkeypatch):
    original = report_index.check_claims

    def with_kind(figure, df):
        claims = original(figure, df)
        built = claims["claim"].str.contains("always")
        return claims.assign(kind=built.map({True: "holds by construction", False: "depends on the data"}))

    monkeypatch.setattr(report_index, "check_claims", with_kind)
    page = build_index(reports_folder(tmp_path)).read_text()
    claims = sections(page)["The paper's statements about Figs. 1–5, checked on our data"]
    heads = [h.split("</h3>")[0] for h in claims.split("<h3>")[1:]]
    tables = claims.split("<table>")[1:]
    assert len(tables) == 2
    # each table holds only its kind: the "always" claims (one per figure 1, 2, 4, 5) in the first
    assert tables[0].count("<tr") == 1 + 4 and all("always" in row for row in tables[0].split("<tr")[2:])
    assert tables[1].count("<tr") == 1 + 13 and "always" not in tables[1]
    # fig2's "Case 1 always has the highest relative speed" differs in the first, fig1's lowest bandwidth in the second
    assert heads == ["Holds by construction: 3 of 4 hold", "Depends on the data: 12 of 13 hold"]
    assert [t.count("✗ differs") for t in tables] == [1, 1]


def test_index_sensitivity_section(tmp_path):
    folder = reports_folder(tmp_path)
    title = "How the headline depends on the study's choices"
    assert "Not computed: data/headline-sensitivity.csv is missing." in sections(build_index(folder).read_text())[title]

    rows = [{"profile": "paper", "variant": v, "sweep_low_mbps": lo, "sweep_high_mbps": 50.0, "input_encoding": enc,
             "versus": vs, "reduction_pct": red, "paper_reduction_pct": paper}
            for v, lo, enc, reds in [("as run", 0.25, "float32", (72.81, 73.8)), ("uint8 input", 0.25, "uint8", (80.0, 61.25))]
            for vs, paper, red in zip(["case2", "case3"], [90.5, 69.5], reds)]
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
