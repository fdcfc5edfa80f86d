"""The paper's statements are checked on sweep tables: a trend must move, and must never move the other way."""
import pandas as pd

from dnnpart.study.claims import check_claims


def sweep(case1, case2, case3, x="load"):
    rows = []
    for method, ys in [("case1", case1), ("case2", case2), ("case3", case3), ("independent", case2)]:
        rows += [{"profile": "p", x: xv, "method": method, "avg_delay_ms": y} for xv, y in zip([0.0, 0.5, 0.9], ys)]
    return pd.DataFrame(rows)


def verdicts(df, figure="fig4"):
    return dict(zip(check_claims(figure, df)["claim"], check_claims(figure, df)["holds"]))


def test_trends_that_hold():
    v = verdicts(sweep([1.0, 2.0, 3.0], [2.0, 4.0, 9.0], [5.0, 5.0, 5.0]))
    assert all(v.values()), v


def test_a_flat_series_is_not_an_increase():
    # all-local optimum everywhere: Case 1 equals Case 3 and does not grow with load, unlike the paper's Fig. 4
    v = verdicts(sweep([5.0, 5.0, 5.0], [6.0, 8.0, 20.0], [5.0, 5.0, 5.0]))
    assert v["Case 1 increases with server load"] is False
    assert v["Case 2 increases with server load"] is True
    assert v["Case 1 is always the minimum"] is True


def test_a_case1_worse_than_a_baseline_is_reported():
    v = verdicts(sweep([1.0, 2.5, 3.0], [2.0, 2.0, 9.0], [5.0, 5.0, 5.0]))
    assert v["Case 1 is always the minimum"] is False
    assert v["Case 2 increases with server load"] is True   # 2 -> 2 -> 9 stalls but never falls: a rise
