"""A complete schedule: every device's cut plus the server's order of layer-subtasks, timed and checked.

Timing rule (the model in docs/optimiser.md): a device runs layers 1..c back to back from time 0, then
uploads the input of layer c+1 over its own uplink, and the server runs the subtasks in the given order,
each as early as possible (after the server is free and after the device's previous server layer or its
upload), without preemption. A download of the result follows the last server layer. A device's
completion is its last finish; the objective is the average completion (paper eq. 4).

Rows of `to_frame()`: device (name), layer (1-based; an upload row carries the layer whose input it sends,
a download row the last layer), where in {local, upload, server, download}, start_ms, finish_ms.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dnnpart.errors import DnnpartError
from dnnpart.optimiser.instance import Instance

WHERE = ("local", "upload", "server", "download")
COLUMNS = ["device", "layer", "where", "start_ms", "finish_ms"]
COLOURS = {"local": "#4C72B0", "upload": "#DD8452", "server": "#55A868", "download": "#8172B3"}
TOL_MS = 1e-6
REL_TOL = 1e-9  # the checker's relative tolerance: float sums of long chains lose digits with the clock's size


class ScheduleError(DnnpartError):
    """A schedule that breaks the model: wrong cuts or server order, overlap, precedence, objective."""


def check_cuts(instance: Instance, cuts: Sequence[int]) -> list[int]:
    cuts = list(cuts)
    if len(cuts) != len(instance):
        raise ScheduleError(f"need one cut per device ({len(instance)}), got {len(cuts)}")
    out = []
    for d, c in zip(instance.devices, cuts):
        if isinstance(c, bool) or int(c) != c or not 0 <= c <= d.n_layers:
            raise ScheduleError(f"device {d.name!r}: cut must be an integer in 0..{d.n_layers}, got {c!r}")
        out.append(int(c))
    return out


def block_order(instance: Instance, cuts: Sequence[int], device_order: Sequence[int] | None = None):
    """The server order that runs each device's server layers as one block, devices in the given order."""
    device_order = range(len(instance)) if device_order is None else device_order
    return [(i, j) for i in device_order for j in range(cuts[i] + 1, instance.devices[i].n_layers + 1)]


class Schedule:
    """Cuts + server order -> every start and finish, as early as possible."""

    def __init__(self, instance: Instance, cuts: Sequence[int], server_order: Sequence[tuple] | None = None):
        self.instance = instance
        self.cuts = check_cuts(instance, cuts)
        if server_order is None:
            server_order = block_order(instance, self.cuts)
        self.server_order = self._check_order(server_order)
        self.rows = self._compute()
        self.completion_ms = self._completions(self.rows)
        self.avg_delay_ms = sum(self.completion_ms) / len(self.completion_ms)

    def _device_index(self, key) -> int:
        names = self.instance.names
        if isinstance(key, str):
            if key not in names:
                raise ScheduleError(f"unknown device {key!r} in server order; devices: {names}")
            return names.index(key)
        if isinstance(key, bool) or int(key) != key or not 0 <= key < len(names):
            raise ScheduleError(f"device index {key!r} out of range 0..{len(names) - 1}")
        return int(key)

    def _check_order(self, order) -> list[tuple[int, int]]:
        order = [(self._device_index(i), int(j)) for i, j in order]
        for i, d in enumerate(self.instance.devices):
            got = [j for k, j in order if k == i]
            want = list(range(self.cuts[i] + 1, d.n_layers + 1))
            if got != want:
                raise ScheduleError(
                    f"device {d.name!r} with cut {self.cuts[i]}: the server order must hold its "
                    f"layers {want} in that order, got {got}"
                )
        return order

    def _compute(self) -> list[tuple]:
        rows = []
        ready = []  # when each device's next server layer may start
        for d, c in zip(self.instance.devices, self.cuts):
            t = 0.0
            for j in range(1, c + 1):
                rows.append((d.name, j, "local", t, t + d.local_ms[j - 1]))
                t += d.local_ms[j - 1]
            if c < d.n_layers:
                rows.append((d.name, c + 1, "upload", t, t + d.upload_ms[c]))
                t += d.upload_ms[c]
            ready.append(t)
        server_free = 0.0
        for i, j in self.server_order:
            d = self.instance.devices[i]
            start = max(server_free, ready[i])
            server_free = ready[i] = start + d.server_ms[j - 1]
            rows.append((d.name, j, "server", start, server_free))
        for i, (d, c) in enumerate(zip(self.instance.devices, self.cuts)):
            if c < d.n_layers:
                rows.append((d.name, d.n_layers, "download", ready[i], ready[i] + d.download_ms))
        return rows

    def _completions(self, rows) -> list[float]:
        last = {}
        for name, _, _, _, finish in rows:
            last[name] = max(last.get(name, 0.0), finish)
        return [last.get(n, 0.0) for n in self.instance.names]

    def to_frame(self) -> pd.DataFrame:
        """Tidy rows, sorted by device (instance order), then start time."""
        df = pd.DataFrame(self.rows, columns=COLUMNS)
        df["_dev"] = df["device"].map({n: k for k, n in enumerate(self.instance.names)})
        df["_where"] = df["where"].map({w: k for k, w in enumerate(WHERE)})
        df = df.sort_values(["_dev", "start_ms", "_where", "layer"], kind="stable")
        return df.drop(columns=["_dev", "_where"]).reset_index(drop=True)

    def completions(self) -> pd.DataFrame:
        """Per device: cut, local, upload and server time used, and completion."""
        out = []
        for d, c, done in zip(self.instance.devices, self.cuts, self.completion_ms):
            up = d.upload_ms[c] if c < d.n_layers else 0.0
            out.append(
                {
                    "device": d.name,
                    "cut": c,
                    "local_ms": d.local_prefix_ms(c),
                    "upload_ms": up,
                    "server_ms": d.server_work_ms(c),
                    "completion_ms": done,
                }
            )
        return pd.DataFrame(out)

    def validate(
        self, timing: pd.DataFrame | None = None, avg_delay_ms: float | None = None, tol: float = TOL_MS
    ) -> float:
        """Re-check a timing (default: our own) against the model; raise ScheduleError on any violation.

        Checks, independently of how the timing was produced: the subtasks are exactly those implied by the
        cuts, each lasts its given time, local layers run in order from 0, the upload follows the local
        part, the first server layer follows the upload and each next one its predecessor, the download
        follows the last server layer, no two server subtasks overlap, and the objective is the mean of the
        last finishes (compared with avg_delay_ms when given). Returns the recomputed average.

        Times are compared within max(tol, REL_TOL * |time|): an absolute tolerance alone fails valid schedules
        whose times reach 1e12 ms (float64 keeps about 16 significant digits).
        """

        def slack(*times) -> float:
            return max(tol, REL_TOL * max(abs(x) for x in times))

        df = self.to_frame() if timing is None else pd.DataFrame(timing)
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise ScheduleError(f"timing lacks columns {missing}")
        problems = []
        completions = []
        by_device = dict(list(df.groupby("device", sort=False)))  # one pass, not one filter per device
        empty = df.iloc[:0]
        for d, c in zip(self.instance.devices, self.cuts):
            rows = by_device.get(d.name, empty)
            want = [("local", j) for j in range(1, c + 1)]
            if c < d.n_layers:
                want += [("upload", c + 1)] + [("server", j) for j in range(c + 1, d.n_layers + 1)]
                want += [("download", d.n_layers)]
            got = sorted(zip(rows["where"], rows["layer"].astype(int)))
            if got != sorted(want):
                raise ScheduleError(f"device {d.name!r} with cut {c}: subtasks {got} differ from {sorted(want)}")
            at = {
                (w, int(j)): (s, f)
                for w, j, s, f in zip(rows["where"], rows["layer"], rows["start_ms"], rows["finish_ms"])
            }
            prev_finish = 0.0
            for w, j in want:  # `want` lists a device's subtasks in precedence order
                s, f = at[(w, j)]
                length = {
                    "local": d.local_ms[j - 1],
                    "upload": d.upload_ms[j - 1] if w == "upload" else 0.0,
                    "server": d.server_ms[j - 1],
                    "download": d.download_ms,
                }[w]
                if abs((f - s) - length) > slack(s, f, length):
                    problems.append(f"{d.name} {w} layer {j}: lasts {f - s} ms, should last {length} ms")
                if s < prev_finish - slack(s, prev_finish):
                    problems.append(
                        f"{d.name} {w} layer {j}: starts at {s} before its predecessor ends at {prev_finish}"
                    )
                prev_finish = f
            completions.append(prev_finish)
        server = df[df["where"] == "server"].sort_values(["start_ms", "finish_ms"], kind="stable")
        starts, finishes = server["start_ms"].to_numpy(), server["finish_ms"].to_numpy()
        for k in range(1, len(starts)):
            if starts[k] < finishes[k - 1] - slack(starts[k], finishes[k - 1]):
                a, b = server.iloc[k - 1], server.iloc[k]
                problems.append(
                    f"server overlap: {a['device']} layer {a['layer']} ends at {finishes[k - 1]} "
                    f"after {b['device']} layer {b['layer']} starts at {starts[k]}"
                )
        if problems:
            raise ScheduleError("invalid schedule: " + "; ".join(problems[:5]))
        avg = sum(completions) / len(completions)
        if avg_delay_ms is not None and abs(avg - avg_delay_ms) > slack(avg, avg_delay_ms):
            raise ScheduleError(f"objective mismatch: timing gives average {avg} ms, claimed {avg_delay_ms} ms")
        return avg

    def plot(self, ax=None, title: str | None = None):
        """A Gantt chart: the server lane on top, then one lane per device (local, upload, server, download)."""
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        df = self.to_frame()
        lanes = ["server"] + self.instance.names
        if ax is None:
            _, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * len(lanes)))
        for k, lane in enumerate(lanes):
            rows = df[df["where"] == "server"] if lane == "server" else df[df["device"] == lane]
            for r in rows.itertuples():
                if r.finish_ms <= r.start_ms:
                    continue
                ax.broken_barh(
                    [(r.start_ms, r.finish_ms - r.start_ms)],
                    (k - 0.4, 0.8),
                    facecolors=COLOURS[r.where],
                    edgecolors="white",
                    linewidth=0.5,
                )
                if lane == "server" and len(rows) <= 40:
                    ax.text(
                        (r.start_ms + r.finish_ms) / 2,
                        k,
                        f"{r.device}:{r.layer}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white",
                        clip_on=True,
                    )
        ax.set_yticks(range(len(lanes)), lanes)
        ax.invert_yaxis()
        ax.set_xlabel("time (ms)")
        ax.set_title(title or f"average completion {self.avg_delay_ms:.1f} ms, cuts {self.cuts}")
        ax.legend(handles=[Patch(color=COLOURS[w], label=w) for w in WHERE], loc="lower right", fontsize=7, ncols=4)
        return ax


def suffix_sums(values) -> list[float]:
    """out[j] = values[j] + values[j + 1] + ... (out[len(values)] = 0): e.g. server work left from layer j on."""
    out = [0.0] * (len(values) + 1)
    for j in range(len(values) - 1, -1, -1):
        out[j] = out[j + 1] + values[j]
    return out
