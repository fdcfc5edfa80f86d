"""dnnpart: split deep neural networks between mobile devices and an edge server (Gao et al., reproduced).

The parts, in the order data flows through them (profile -> delay model -> instance -> schedule -> tidy
results -> figure):

- `dnnpart.networks`  the zoo and ONNX models as layer tables;
- `dnnpart.delay`     layer delay profiles and the models fitted on them (paper Section II-B);
- `dnnpart.optimiser` instances, schedules, the exact optimiser and the baselines (Section III);
- `dnnpart.planning`  scenario files, compiling them into instances, plan reports, sensitivity;
- `dnnpart.study`     the paper's sweeps, its claims checked, plots and the report index (Section IV);
- `dnnpart.cli`       the `dnnpart` command.

The most used entry points are importable from here (loaded on first use, so `import dnnpart` stays light).
"""

from __future__ import annotations

import importlib

# name -> module that defines it
_EXPORTS = {
    "solve": "dnnpart.optimiser.solver",
    "Solution": "dnnpart.optimiser.solver",
    "solve_all_methods": "dnnpart.optimiser.baselines",
    "Instance": "dnnpart.optimiser.instance",
    "Device": "dnnpart.optimiser.instance",
    "load_instance": "dnnpart.optimiser.instance",
    "Schedule": "dnnpart.optimiser.schedule",
    "load_delay_model": "dnnpart.delay.models",
    "network_instance": "dnnpart.planning.compile",
    "compile_scenario": "dnnpart.planning.compile",
    "load_scenario": "dnnpart.planning.scenario",
    "METHODS": "dnnpart.vocabulary",
    "METHOD_LABELS": "dnnpart.vocabulary",
    "LAYER_TYPES": "dnnpart.vocabulary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dnnpart' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
