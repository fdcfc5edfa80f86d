"""Checks of a measured timeline (the server's timeline.csv): the model's rules, as Schedule.validate applies
them to a planned one, but with measured durations. Server rows share the server's clock, so overlap and the
order of a device's server layers are checked exactly; rows the device took (local, upload start, download end)
carry its clock-offset error, so comparisons that mix the clocks get a tolerance."""

from __future__ import annotations

import pandas as pd

from dnnpart.optimiser.schedule import ScheduleError

TOL_MS = 1e-6


def timeline_problems(frame: pd.DataFrame, cuts: dict[str, tuple[int, int]], clock_tol_ms: float = 1.0) -> list[str]:
    """Every violation in one round's rows; `cuts` maps device -> (cut, number of layers)."""
    problems = []
    for device, (cut, m) in cuts.items():
        rows = frame[frame["device"] == device]
        got = sorted(zip(rows["where"], rows["layer"].astype(int)))
        want = [("local", j) for j in range(1, cut + 1)]
        if cut < m:
            want += [("upload", cut + 1)] + [("server", j) for j in range(cut + 1, m + 1)] + [("download", m)]
        if got != sorted(want):
            problems.append(f"{device}: rows {got} are not those of cut {cut} of {m} layers")
            continue
        at = {
            (w, int(j)): (a, b) for w, j, a, b in zip(rows["where"], rows["layer"], rows["start_ms"], rows["finish_ms"])
        }
        chain = [("local", j) for j in range(1, cut + 1)]
        if cut < m:
            chain += [("upload", cut + 1)] + [("server", j) for j in range(cut + 1, m + 1)] + [("download", m)]
        for k, key in enumerate(chain):
            start, finish = at[key]
            # an upload starts on the device's clock and ends on the server's, a download the other way round
            own_tol = clock_tol_ms if key[0] in ("upload", "download") else TOL_MS
            if finish < start - own_tol:
                problems.append(f"{device}: {key} finishes before it starts")
            if k:
                prev = chain[k - 1]
                tol = TOL_MS if prev[0] == key[0] == "server" else clock_tol_ms
                if start < at[prev][1] - tol:
                    problems.append(
                        f"{device}: {key} starts at {start:.3f} ms, before {prev} finishes at {at[prev][1]:.3f} ms"
                    )
    server = frame[frame["where"] == "server"].sort_values("start_ms")
    for (d1, j1, f1), (d2, j2, s2) in zip(
        zip(server["device"], server["layer"], server["finish_ms"]),
        zip(server["device"].iloc[1:], server["layer"].iloc[1:], server["start_ms"].iloc[1:]),
    ):
        if s2 < f1 - TOL_MS:
            problems.append(
                f"server: {d2} layer {j2} starts at {s2:.3f} ms while {d1} layer {j1} runs until {f1:.3f} ms"
            )
    return problems


def check_timeline(frame: pd.DataFrame, cuts: dict[str, tuple[int, int]], clock_tol_ms: float = 1.0) -> None:
    problems = timeline_problems(frame, cuts, clock_tol_ms)
    if problems:
        raise ScheduleError(f"{len(problems)} problem(s) in the measured timeline; first: {problems[0]}")


def server_order(frame: pd.DataFrame) -> list[tuple[str, int]]:
    """The order in which the server ran (device, layer) subtasks."""
    server = frame[frame["where"] == "server"].sort_values("start_ms", kind="stable")
    return [(str(d), int(j)) for d, j in zip(server["device"], server["layer"])]
