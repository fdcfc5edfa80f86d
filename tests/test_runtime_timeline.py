"""The measured-timeline checker: rows on one clock are exact, rows that span two clocks get the offset tolerance."""

import pandas as pd

from dnnpart.runtime.timeline import timeline_problems


def rows(upload_finish_ms: float, local_finish_ms: float = 2.0) -> pd.DataFrame:
    """Device a, cut 1 of 2 layers: local 0-2 (device clock), upload 2-? (device start, server finish), ..."""
    data = [
        ("a", 1, "local", 0.0, local_finish_ms),
        ("a", 2, "upload", 2.0, upload_finish_ms),
        ("a", 2, "server", 3.0, 4.0),
        ("a", 2, "download", 4.0, 4.5),
    ]
    return pd.DataFrame(data, columns=["device", "layer", "where", "start_ms", "finish_ms"])


def test_an_upload_that_seems_to_end_before_it_starts_is_clock_offset_within_the_tolerance():
    # a 0.2 ms upload measured with 0.5 ms of offset error: finish 1.7 on the server's clock, start 2.0 on the device's
    assert timeline_problems(rows(1.7), {"a": (1, 2)}, clock_tol_ms=1.0) == []
    assert timeline_problems(rows(0.5), {"a": (1, 2)}, clock_tol_ms=1.0) == [
        "a: ('upload', 2) finishes before it starts"
    ]


def test_a_row_on_one_clock_gets_no_tolerance():
    problems = timeline_problems(rows(3.0, local_finish_ms=-0.5), {"a": (1, 2)}, clock_tol_ms=1.0)
    assert "a: ('local', 1) finishes before it starts" in problems
