"""Planning a deployment (paper Algorithm 1, step 1, and beyond): scenario files, their compilation into an
optimiser instance, the plan report, and how far a plan can be trusted (sensitivity and robustness)."""

from dnnpart.planning.compile import (
    CompiledScenario,
    check_n_devices,
    check_rate,
    compile_scenario,
    device_for_table,
    device_from_times,
    network_instance,
    upload_ms,
)
from dnnpart.planning.scenario import Scenario, load_scenario, profile_layer_types

__all__ = [
    "CompiledScenario",
    "Scenario",
    "check_n_devices",
    "check_rate",
    "compile_scenario",
    "device_for_table",
    "device_from_times",
    "load_scenario",
    "network_instance",
    "profile_layer_types",
    "upload_ms",
]
