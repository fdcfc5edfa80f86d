"""Run per-layer ONNX models with onnxruntime. Imports only numpy and onnxruntime, so the device client
(dnnpart.runtime.device) can use it on a board without pandas, Pyomo or Jupyter."""

from __future__ import annotations

import time

import numpy as np


def random_input(shape, seed: int = 0) -> np.ndarray:
    """A reproducible float32 input in [0, 1) (the device's and the tests' input for a round)."""
    return np.random.default_rng(seed).random(size=tuple(int(s) for s in shape), dtype=np.float32)


def session_options(threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    # Idle intra-op threads sleep instead of spinning: on a shared or busy host their spinning takes the cores from
    # the thread doing the work and from gRPC's (bench_runtime, 2026-12-02 at load ~15: AlexNet's 23 layers 107-174
    # ms instead of 690-970 ms, a 618 KB upload 2 ms instead of 24-55 ms).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # onnxruntime warnings (e.g. unused initialisers) are not ours to show
    return options


class LayerRunner:
    """One onnxruntime session per layer model; `run(j, x)` runs layer j (1-based) on x."""

    def __init__(self, models, threads: int | None = None, first: int = 1):
        import onnxruntime as ort

        options = session_options(threads)
        self.first = first
        self.sessions = [ort.InferenceSession(m, options, providers=["CPUExecutionProvider"]) for m in models]
        self.input_names = [s.get_inputs()[0].name for s in self.sessions]

    def warm_up(self):
        """Run every layer once on zeros: onnxruntime allocates and pre-packs weights on a session's first run,
        which would otherwise land in the first measured round."""
        for session, name in zip(self.sessions, self.input_names):
            shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]  # a dynamic batch: 1
            session.run(None, {name: np.zeros(shape, np.float32)})
        return self

    def run(self, layer: int, x: np.ndarray) -> np.ndarray:
        k = layer - self.first
        return self.sessions[k].run(None, {self.input_names[k]: x})[0]

    def run_range(self, x: np.ndarray, first: int, last: int, clock=time.perf_counter_ns):
        """Run layers first..last in order; returns the output and [(layer, start_ns, finish_ns)]."""
        stamps = []
        for j in range(first, last + 1):
            start = clock()
            x = self.run(j, x)
            stamps.append((j, start, clock()))
        return x, stamps
