"""Delay prediction (paper Section II-B): measure layer delays, fit a model per layer type and side, predict.

- `profiler`: times single layers with onnxruntime into a profile folder (`dnnpart profile`);
- `models`: fits statsmodels formulas per (role, layer type) and predicts a layer table's delays;
- `paper_profile`: the ``paper`` profile, eq. (1)/(2) for convolutions;
- `additivity`: sum of predicted layer delays against a whole-network run (recorded with the profile, or now).
"""

from dnnpart.delay.additivity import (
    additivity_check,
    covered_networks,
    measure_network,
    profile_threads,
    record_additivity,
    recorded_additivity,
)
from dnnpart.delay.models import (
    FAMILIES,
    METRIC_COLUMNS,
    DelayModel,
    LayerModel,
    available_profiles,
    conv_coefficients,
    conv_shape_report,
    features,
    fit_report,
    heldout_predictions,
    load_delay_model,
    read_profile_csv,
    resolve_profile,
    split_train_test,
)
from dnnpart.delay.paper_profile import PAPER_PROFILE, build_paper_profile

__all__ = [
    "FAMILIES",
    "METRIC_COLUMNS",
    "PAPER_PROFILE",
    "DelayModel",
    "LayerModel",
    "additivity_check",
    "available_profiles",
    "build_paper_profile",
    "conv_coefficients",
    "conv_shape_report",
    "covered_networks",
    "features",
    "fit_report",
    "heldout_predictions",
    "load_delay_model",
    "measure_network",
    "profile_threads",
    "record_additivity",
    "recorded_additivity",
    "read_profile_csv",
    "resolve_profile",
    "split_train_test",
]
