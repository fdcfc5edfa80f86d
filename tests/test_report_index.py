"""The index page's headline: the largest Case-1 reduction against each baseline, from the saved sweep tables."""
import pandas as pd
import pytest

from dnnpart.files import write_csv
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
