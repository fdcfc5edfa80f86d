"""The study's shared words, defined once: methods compared, layer types, roles, and how a cut is named.

Every JSON, CSV, report and figure uses these names; human-readable labels live here too.
"""

from __future__ import annotations

from collections.abc import Sequence

# The paper's three cases plus the selfish baseline, in the order every table and legend lists them.
METHODS = ("case1", "case2", "case3", "independent")
METHOD_LABELS = {
    "case1": "Case 1: optimal partition (MILP)",
    "case2": "Case 2: all on server",
    "case3": "Case 3: all local",
    "independent": "Independent cuts (Neurosurgeon-style)",
}
BASELINE_METHODS = METHODS[1:]

# Layer types the layer tables, the profiler and the delay models know, in the profiler's sweep order. New types
# go at the end: the profiler seeds each type's designed sweep with its index here, so measured designs stay put.
# dwconv: depthwise convolution (groups == input channels); gap: global average pooling; add and concat join
# branches of a DAG network (ResNet, MobileNetV2).
LAYER_TYPES = (
    "conv",
    "fc",
    "pool",
    "relu",
    "lrn",
    "softmax",
    "dropout",
    "dwconv",
    "batchnorm",
    "add",
    "clip",
    "gap",
    "concat",
)
ROLES = ("device", "server")

INPUT_CUT = "input"  # cut 0: the raw input is uploaded
LOCAL_CUT = "all local"  # cut M: nothing is offloaded


def cut_name(layer_names: Sequence[str], cut: int) -> str:
    """The one naming rule for a cut: 'input' for 0, 'all local' for M, else the last local layer's name."""
    m = len(layer_names)
    if isinstance(cut, bool) or int(cut) != cut or not 0 <= cut <= m:
        raise ValueError(f"cut {cut!r} out of range 0..{m}")
    cut = int(cut)
    return INPUT_CUT if cut == 0 else LOCAL_CUT if cut == m else str(layer_names[cut - 1])
