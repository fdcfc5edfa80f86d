"""Layer delay models (paper Section II-B): OLS fits with statsmodels' formula API on a measured profile.

Two model families per (role, layer type):

* ``paper``   -- the paper's functional form. Conv is exactly the three terms of eq. (1)/(2), no intercept:
  G^2 K^2 O I, G^2 K^2 I, G^2 O (G = out_side, K = kernel, O = out_channels, I = in_channels / groups, the
  channels one filter sees, so the first term is the layer's MACs). Other types get the analogous polynomial in
  their element counts, with an intercept (the per-call overhead).
* ``dnnpart`` -- the project's form, chosen per layer type among candidates by MAPE on a validation split
  carved out of the training rows: OLS in log space (log latency on a polynomial of the logs of the factors;
  for conv and fc optionally plus a piecewise-linear term in log2 of the bytes streamed), and for conv a
  cost model of onnxruntime's convolution, fitted by weighted least squares (see `cost_formula`).

Every fit uses an 80/20 train/test split with a fixed seed; metrics are computed on the test rows only.
Fitted models are cached under paths.CACHE_DIR (formula + parameters), in a file named by the CSV's sha256, the
role, the family, the split seed and CACHE_VERSION: a changed CSV or another seed never reads a stale fit, and
nothing is written into a profile folder. A profile folder holds either measured CSVs (<role>.csv) or fixed models
(<role>.json with a "models" entry, as in the ``paper`` profile, see `build_paper_profile`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dnnpart.delay.profiler import CSV_COLUMNS, FACTORS, OPTIONAL_MEASURES
from dnnpart.errors import MissingModelError, ProfileError
from dnnpart.files import atomic_write_text
from dnnpart.limits import MAX_FILE_BYTES
from dnnpart.paths import CACHE_DIR, PROFILES_DIR
from dnnpart.vocabulary import LAYER_TYPES, ROLES

FAMILIES = ("paper", "dnnpart")
CACHE_VERSION = 6  # bump when fitting changes, so that stale cached fits are not read
FORMULA_ENGINE = "patsy"  # pinned so that term names (and cached parameter names) never change
TEST_SHARE = 0.2
VALIDATION_SHARE = 0.25  # of the training rows, for choosing the dnnpart form
METRIC_COLUMNS = ["role", "layer_type", "family", "r2_test", "mae_ms", "mape", "within10", "n_train", "n_test"]

# Paper eq. (1) (device, 1e-5) and eq. (2) (server, 1e-7): coefficients of G^2K^2OI, G^2K^2I, G^2O, in ms.
PAPER_CONV_FORMULA = "latency_ms ~ I(G**2 * K**2 * O * Cin) + I(G**2 * K**2 * Cin) + I(G**2 * O) - 1"
PAPER_CONV_COEFFICIENTS = {
    "device": {"I(G ** 2 * K ** 2 * O * Cin)": 0.3e-5, "I(G ** 2 * K ** 2 * Cin)": 2.6e-5, "I(G ** 2 * O)": 4.8e-5},
    "server": {"I(G ** 2 * K ** 2 * O * Cin)": 3.0e-7, "I(G ** 2 * K ** 2 * Cin)": 7.4e-7, "I(G ** 2 * O)": 25.8e-7},
}
# The paper's reported conv test metrics (Section II-B).
PAPER_REPORTED = {"r2_test": 0.9958, "mae_ms": 2.78}

PAPER_FORMULAS = {
    "conv": PAPER_CONV_FORMULA,
    "fc": "latency_ms ~ I(O * Cin) + Cin + O",  # eq. (1) with G = K = 1
    "pool": "latency_ms ~ I(G**2 * K**2 * O) + I(L**2 * Cin)",  # window reads + input elements
    "lrn": "latency_ms ~ I(L**2 * K * Cin)",
    "relu": "latency_ms ~ I(L**2 * Cin)",
    "dropout": "latency_ms ~ I(L**2 * Cin)",
    "softmax": "latency_ms ~ Cin",
    # the new types: work counts in elements, with an intercept (the per-call overhead)
    "dwconv": "latency_ms ~ I(G**2 * K**2 * O) + I(L**2 * O)",  # MACs (one input channel per filter) + input
    "batchnorm": "latency_ms ~ I(L**2 * Cin)",
    "add": "latency_ms ~ I(L**2 * O)",  # O output elements per side^2, each two reads and a write
    "clip": "latency_ms ~ I(L**2 * Cin)",
    "gap": "latency_ms ~ I(L**2 * Cin)",
    "concat": "latency_ms ~ I(L**2 * O)",
}

# dnnpart family: log latency on polynomials of these log factors (see `features`).
LOG_VARIABLES = {
    "conv": ["lg", "lk", "lo", "lcin", "ls", "lgroups"],
    "fc": ["lcin", "lo"],
    "pool": ["lg", "lk", "lcin", "ls"],
    "lrn": ["ll", "lk", "lcin"],
    "relu": ["ll", "lcin"],
    "dropout": ["ll", "lcin"],
    "softmax": ["lcin"],
    "dwconv": ["lg", "lk", "lo", "ls"],
    "batchnorm": ["ll", "lcin"],
    "add": ["ll", "lo"],
    "clip": ["ll", "lcin"],
    "gap": ["ll", "lcin"],
    "concat": ["ll", "lo"],
}


# ------------------------------------------------------------------------------------------------ features
def features(layers: pd.DataFrame) -> pd.DataFrame:
    """Model variables from the table factors (works on a profile CSV and on a network layer table alike).

    G = out_side, K = kernel, L = in_side, O = out_channels, Cin = in_channels / groups (the paper's I);
    l* columns are their natural logs (stride and groups too).
    """
    f = pd.DataFrame(index=layers.index)
    groups = layers["groups"].astype(float).clip(lower=1)
    f["G"] = layers["out_side"].astype(float)
    f["K"] = layers["kernel"].astype(float)
    f["L"] = layers["in_side"].astype(float)
    f["O"] = layers["out_channels"].astype(float)
    f["Cin"] = layers["in_channels"].astype(float) / groups
    f["S"] = layers["stride"].astype(float)
    f["groups"] = groups
    for col, src in (
        ("lg", "G"),
        ("lk", "K"),
        ("ll", "L"),
        ("lo", "O"),
        ("lcin", "Cin"),
        ("ls", "S"),
        ("lgroups", "groups"),
    ):
        f[col] = np.log(f[src].clip(lower=1))
    # log2 of bytes streamed per run, for the cache-size hinges: weights (conv: K^2 I O, fc: I O floats) and
    # conv's im2col buffer (K^2 I G^2 floats per group)
    f["lwb"] = np.log2((f["K"] ** 2 * f["Cin"] * f["O"] * groups * 4).clip(lower=1))
    f["lcolb"] = np.log2((f["K"] ** 2 * f["Cin"] * f["G"] ** 2 * 4).clip(lower=1))
    # and of the input map (all its channels, every input of a join): what an element-wise layer streams
    f["lmapb"] = np.log2((f["L"] ** 2 * layers["in_channels"].astype(float) * 4).clip(lower=1))
    f = pd.concat([f, conv_cost_terms(layers, f)], axis=1)
    if "latency_ms" in layers:
        f["latency_ms"] = layers["latency_ms"].astype(float)
        f["log_ms"] = np.log(f["latency_ms"])
    return f


# onnxruntime's CPU Conv (MLAS) takes one of three code paths, and the cost model has separate terms for each:
# a 1x1, stride-1, unpadded conv is one GEMM on the input; any other conv first copies the input into im2col
# columns, with vector copies at stride 1 and element-by-element copies at larger strides.
CONV_PATHS = ("path_gemm", "path_im2col", "path_strided")
# A depthwise conv's cost per output differs between 3x3 filters and larger ones, and between stride 1 and
# larger strides (the measured profile of 2026-12-04: under one polynomial for every kernel, 75 % of the held-out
# 3x3 stride-2 rows were within +-10 %, against 96 % of the stride-1 ones).
DWCONV_PATHS = ("dw_k3", "dw_k3_strided", "dw_kx", "dw_kx_strided")
# With one kernel size on a path, col and col_rows are K^2 times out and out_rows: the 3x3 paths omit them; at
# stride 1 with "same" padding (the profiler's, and every zoo network's) inp equals out: stride 1 omits inp.
DWCONV_TERMS = {
    "dw_k3": ["out", "out_rows", "chan"],
    "dw_k3_strided": ["out", "inp", "out_rows", "chan"],
    "dw_kx": ["out", "col", "out_rows", "col_rows", "chan"],
    "dw_kx_strided": ["out", "col", "inp", "out_rows", "col_rows", "chan"],
}
MIN_ROWS_PER_PATH = 10  # the depthwise cost model is a candidate only when every path has this many rows


def conv_cost_terms(layers: pd.DataFrame, f: pd.DataFrame) -> pd.DataFrame:
    """Work counts of a conv in millions, the terms of the cost model (computed for every row, used for conv).

    With N = G^2 output pixels, Kd = K^2 I values per patch and M = O / groups filters per group: macs; macs
    with N rounded up to 16 (MLAS's SGEMM kernel fills 16 output columns at a time); col, the im2col elements
    (for the GEMM path: the input it packs); col_rows, the rows copied; out and out_rows, the output elements
    and rows; inp, the input elements; w, the weights; k_panels and n_panels, the GEMM's blocks along K (256)
    and N (16) times the other dimension; chan, the output channels (a depthwise conv's per-filter calls).
    """
    g, G, K, O, Cin, L = f["groups"], f["G"], f["K"], f["O"], f["Cin"], f["L"]  # noqa: E741 (the paper's symbols)
    N, Kd, M = G**2, K**2 * Cin, O / g
    c = pd.DataFrame(index=f.index)
    c["macs"] = g * N * Kd * M / 1e6
    c["macs_n16"] = g * np.ceil(N / 16) * 16 * Kd * M / 1e6
    c["col"] = g * Kd * N / 1e6
    c["col_rows"] = g * Kd * G / 1e6
    c["out"] = O * N / 1e6
    c["out_rows"] = O * G / 1e6
    c["inp"] = Cin * g * L**2 / 1e6
    c["w"] = Kd * O / 1e6
    c["k_panels"] = g * np.ceil(Kd / 256) * N / 1e6
    c["n_panels"] = g * np.ceil(N / 16) * Kd / 1e6
    c["chan"] = O / 1e6
    direct = (layers["kernel"] == 1) & (layers["stride"] == 1) & (layers["pad"] == 0)
    c["path_gemm"] = direct.astype(float)
    c["path_im2col"] = (~direct & (layers["stride"] == 1)).astype(float)
    c["path_strided"] = (~direct & (layers["stride"] > 1)).astype(float)
    k3, strided = layers["kernel"] == 3, layers["stride"] > 1
    for name, on in zip(DWCONV_PATHS, (k3 & ~strided, k3 & strided, ~k3 & ~strided, ~k3 & strided), strict=True):
        c[name] = on.astype(float)
    return c


# Cost-model variants: the terms per path. The GEMM path has no separate input term (it is col there).
COST_TERMS = {
    "basic": ["macs", "col", "out", "inp", "w"],
    "rows": ["macs", "macs_n16", "col", "col_rows", "out", "out_rows", "inp", "w"],
    "panels": ["macs", "macs_n16", "col", "col_rows", "out", "out_rows", "inp", "w", "k_panels", "n_panels"],
}
RELATIVE_WEIGHTS = "1/latency_ms^2"  # WLS weights that make the squared errors relative ones


def cost_formula(variant: str, input_knots=()) -> str:
    """'latency_ms ~ 0 + path_gemm + ... + path_gemm:(terms) + ...': a linear cost model per code path.

    Fitted with RELATIVE_WEIGHTS: latency is a sum of costs (call overhead, copies, multiply-adds), which a
    linear model adds up directly, and weighting by 1/latency^2 makes a 10 us layer count as much as a 10 ms one.
    `input_knots` (log2 bytes) add a cost per input element that steps up at each knot of the input map's size,
    where it stops fitting in L2, then L3 (a 1x1 conv on a large map is bound by reading it).
    """
    parts = list(CONV_PATHS)
    for path in CONV_PATHS:
        terms = [t for t in COST_TERMS[variant] if not (path == "path_gemm" and t == "inp")]
        parts.append(f"{path}:({' + '.join(terms)})")
    parts += [f"inp:{h}" for h in hinge_terms("lmapb", input_knots)]
    return "latency_ms ~ 0 + " + " + ".join(parts)


def is_conv_cost_formula(formula: str) -> bool:
    return formula.startswith("latency_ms ~ 0 + " + CONV_PATHS[0])


def dwconv_cost_formula(knots) -> str:
    """A depthwise conv's linear cost model: per path (DWCONV_PATHS) a call overhead and a cost per output
    channel, row and element, im2col element and row and input element (those a path can tell apart:
    DWCONV_TERMS); plus a cost per output element that
    steps up at each knot of log2(input map bytes), where the map stops fitting in L2, then L3 (fitted with
    RELATIVE_WEIGHTS). On the measured device profile (2026-12-04, split seed 0): held-out within +-10 %
    97 % vs 89 % for the best polynomial in the logs."""
    parts = list(DWCONV_PATHS) + [f"{path}:({' + '.join(DWCONV_TERMS[path])})" for path in DWCONV_PATHS]
    parts += [f"out:{h}" for h in hinge_terms("lmapb", knots)]
    return "latency_ms ~ 0 + " + " + ".join(parts)


def polynomial_formula(variables: list[str], degree: int, max_power: dict[str, int] | None = None) -> str:
    """'log_ms ~ ...' with every monomial of the variables up to `degree` (fixed term order).

    `max_power` caps a variable's exponent (a factor with n distinct values supports powers up to n - 1;
    higher ones would be collinear).
    """
    import itertools

    max_power = max_power or {}
    terms = []
    for d in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(variables, d):
            if any(combo.count(v) > max_power.get(v, degree) for v in set(combo)):
                continue
            terms.append(combo[0] if d == 1 else "I(" + " * ".join(combo) + ")")
    return "log_ms ~ " + " + ".join(terms)


# Knots (log2 bytes: 64 KiB .. 256 MiB) of piecewise-linear terms in a byte count: an fc layer streams its
# weights once per run (a conv its im2col buffer), so time per byte steps where they stop fitting in L2, then L3.
BYTE_KNOTS_LOG2 = tuple(range(16, 29))
HINGE_VARIABLES = {"fc": "lwb", "conv": "lcolb"}
# The element-wise DAG types (and depthwise conv, which reads each input element K^2 times) stream their input
# map: time per element steps where it stops fitting in L2, then L3, as the fc's weights do.
HINGE_VARIABLES.update(dict.fromkeys(("dwconv", "batchnorm", "add", "clip", "gap", "concat"), "lmapb"))


def supported_knots(values: pd.Series, knots=BYTE_KNOTS_LOG2) -> list[int]:
    """The knots with at least 5 training rows above them (a hinge's slope needs rows to be estimated)."""
    return [k for k in knots if (values > k).sum() >= 5]


def hinge_terms(variable: str, knots) -> list[str]:
    return [f"I(({variable} - {k}) * ({variable} > {k}))" for k in knots]


# Element-wise DAG types whose time is a call overhead plus a cost per element streamed: their dnnpart
# candidates include that linear form (the paper family's formula, fitted with RELATIVE_WEIGHTS), which a
# polynomial in the logs bends around. Kept to the new types so that the measured profile's fits stay as they are.
LINEAR_COST_TYPES = ("dwconv", "batchnorm", "add", "clip", "gap", "concat")


def candidate_formulas(layer_type: str, train: pd.DataFrame) -> list[tuple[str, str]]:
    """dnnpart candidates as (formula, weights): polynomials of degree 1..3 in the log factors that vary in the
    training rows; for fc and conv also degree-2/3 polynomials plus a piecewise-linear function of log2(bytes
    streamed); for conv also the cost models (`cost_formula`), for LINEAR_COST_TYPES their overhead + work
    form, and for dwconv with every path measured its cost model (`dwconv_cost_formula`), fitted with
    RELATIVE_WEIGHTS."""
    levels = {v: train[v].nunique() for v in LOG_VARIABLES[layer_type]}
    variables = [v for v, n in levels.items() if n > 1]
    if not variables:
        return [("log_ms ~ 1", "")]
    cands = [polynomial_formula(variables, d, {v: levels[v] - 1 for v in variables}) for d in (1, 2, 3)]
    if layer_type in HINGE_VARIABLES:
        hv = HINGE_VARIABLES[layer_type]
        knots = supported_knots(train[hv])
        for d in (2, 3):
            cands.append(
                polynomial_formula(variables, d, {v: levels[v] - 1 for v in variables})
                + " + "
                + " + ".join(hinge_terms(hv, knots))
            )
    weighted = [(cost_formula(v), RELATIVE_WEIGHTS) for v in COST_TERMS] if layer_type == "conv" else []
    if layer_type == "conv":  # the richest variant with the input map's cache steps, every other knot
        weighted.append(
            (cost_formula("panels", supported_knots(train["lmapb"], BYTE_KNOTS_LOG2[::2])), RELATIVE_WEIGHTS)
        )
    if layer_type in LINEAR_COST_TYPES:  # a per-call overhead plus a cost per element, weighted as for conv
        weighted.append((PAPER_FORMULAS[layer_type], RELATIVE_WEIGHTS))
        hv = HINGE_VARIABLES[layer_type]
        knots = supported_knots(train[hv])
        for d in (1, 2, 3):  # the map's bytes alone: a polynomial in their log plus the cache hinges
            cands.append(polynomial_formula([hv], d) + " + " + " + ".join(hinge_terms(hv, knots)))
    if layer_type == "dwconv" and all((train[path] > 0).sum() >= MIN_ROWS_PER_PATH for path in DWCONV_PATHS):
        weighted.append((dwconv_cost_formula(supported_knots(train["lmapb"])), RELATIVE_WEIGHTS))
    return [(c, "") for c in cands] + weighted


# --------------------------------------------------------------------------------------------- profile I/O
def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def available_profiles() -> list[str]:
    if not PROFILES_DIR.is_dir():
        return []
    return sorted(p.name for p in PROFILES_DIR.iterdir() if p.is_dir() and not p.name.startswith("."))


def resolve_profile(profile: str | Path) -> Path:
    """A profile name under data/profiles/ or a folder path -> the folder; ProfileError naming valid names."""
    path = Path(profile)
    if path.is_dir():
        return path
    candidate = PROFILES_DIR / str(profile)
    if isinstance(profile, str) and "/" not in profile and candidate.is_dir():
        return candidate
    raise ProfileError(
        f"profile {str(profile)!r} not found: not a folder and not one of the profiles in "
        f"{PROFILES_DIR}: {', '.join(available_profiles()) or '(none)'}"
    )


def read_profile_csv(path: str | Path) -> pd.DataFrame:
    """Read and validate one profile CSV; ProfileError names the missing column or the offending row."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"profile CSV {path} does not exist")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ProfileError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MB (dnnpart.limits.MAX_FILE_BYTES)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # rows longer than the header are refused
            df = pd.read_csv(path, index_col=False)
    except pd.errors.ParserWarning as exc:
        raise ProfileError(f"{path}: rows do not match the header ({' '.join(str(exc).split())[:200]})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        reason = " ".join(str(exc).split())  # pandas' messages span lines; the CLI shows one
        raise ProfileError(f"{path}: not a readable CSV ({reason[:200]})") from None
    required = [c for c in CSV_COLUMNS if c not in OPTIONAL_MEASURES]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ProfileError(
            f"{path}: missing column(s) {', '.join(missing)}; a profile CSV needs "
            f"{', '.join(required)} (and optionally {', '.join(OPTIONAL_MEASURES)})"
        )
    if df.empty:
        raise ProfileError(f"{path}: no rows")

    def row_no(idx) -> int:  # 1-based line number in the file (header is line 1)
        return int(idx) + 2

    bad_type = ~df["layer_type"].isin(LAYER_TYPES)
    if bad_type.any():
        i = df.index[bad_type][0]
        raise ProfileError(
            f"{path}: line {row_no(i)} has unknown layer_type {df.at[i, 'layer_type']!r}; "
            f"valid types: {', '.join(LAYER_TYPES)}"
        )
    bad_role = ~df["role"].isin(ROLES)
    if bad_role.any():
        i = df.index[bad_role][0]
        raise ProfileError(
            f"{path}: line {row_no(i)} has unknown role {df.at[i, 'role']!r}; valid roles: {', '.join(ROLES)}"
        )
    for col in (*FACTORS, "latency_ms", *OPTIONAL_MEASURES):
        if col not in df.columns:
            df[col] = np.nan
        values = pd.to_numeric(df[col], errors="coerce")
        blank = df[col].isna() if col in OPTIONAL_MEASURES else pd.Series(False, index=df.index)
        positive = col not in ("pad",)
        bad = ~blank & (~np.isfinite(values) | (values <= 0 if positive else values < 0))
        if bad.any():
            i = df.index[bad][0]
            raise ProfileError(
                f"{path}: line {row_no(i)}: column {col} = {df.at[i, col]!r} must be a "
                f"{'positive' if col != 'pad' else 'non-negative'} finite number"
            )
        df[col] = values
    return df


# ------------------------------------------------------------------------------------------------ fitting
@contextlib.contextmanager
def _pinned_formula_engine():
    import statsmodels.formula

    old = statsmodels.formula.options.formula_engine
    statsmodels.formula.options.formula_engine = FORMULA_ENGINE
    try:
        yield
    finally:
        statsmodels.formula.options.formula_engine = old


def aggregate_repeats(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (role, layer type, factors): repeated measurements of a configuration become one row (median
    latency, their 10th and 90th percentiles, repeats summed), so that no test row has its twin in training.

    `dnnpart import-profile` applies it to the timings it maps; the profiler writes one row per configuration
    already. A frame without repeats is returned as it is."""
    keys = ["role", "layer_type", *FACTORS]
    if not df.duplicated(keys).any():
        return df
    groups = df.groupby(keys, sort=False)
    out = groups["latency_ms"].median().rename("latency_ms").reset_index()
    many = groups["latency_ms"].count().to_numpy() > 1
    for col, q in (("p10_ms", 0.1), ("p90_ms", 0.9)):
        own = groups[col].first().to_numpy() if col in df else np.full(len(out), np.nan)
        out[col] = np.where(many, groups["latency_ms"].quantile(q).to_numpy(), own)
    counts = df["repeats"].fillna(1) if "repeats" in df else pd.Series(1, index=df.index)
    out["repeats"] = counts.groupby([df[k] for k in keys], sort=False).sum().to_numpy()
    return out


def split_train_test(df: pd.DataFrame, seed: int = 0, test_share: float = TEST_SHARE):
    """Seeded split independent of row order: rows are sorted by their factors before the permutation."""
    order = df.sort_values(["layer_type", *FACTORS, "latency_ms"], kind="mergesort").index
    perm = np.random.default_rng(seed).permutation(len(order))
    n_test = int(round(test_share * len(order)))
    test_idx = order[perm[:n_test]]
    train_idx = order[perm[n_test:]]
    return df.loc[sorted(train_idx)], df.loc[sorted(test_idx)]


@dataclass
class LayerModel:
    """One fitted formula: prediction = exp(X b) for log models, max(X b, floor_ms) otherwise; times `scale`.

    A linear fit (the paper family, the conv cost model) can go negative on tiny layers outside its training
    range; `floor_ms` (the smallest latency in its training rows) keeps such predictions at the smallest delay
    ever measured.
    """

    formula: str
    params: dict[str, float]
    log_response: bool
    scale: float = 1.0
    info: dict = field(default_factory=dict)
    floor_ms: float = 0.0
    weights: str = ""  # how it was fitted: "" (OLS) or RELATIVE_WEIGHTS (WLS); recorded, not used to predict

    def predict(self, feats: pd.DataFrame) -> pd.Series:
        import patsy

        rhs = self.formula.split("~", 1)[1]
        X = patsy.dmatrix(rhs, feats, return_type="dataframe", NA_action="raise")
        names = list(self.params)
        if list(X.columns) != names:
            raise ProfileError(
                f"cached model terms {names} do not match the formula's terms {list(X.columns)}; "
                "delete the cached fit under paths.CACHE_DIR to refit"
            )
        eta = X.to_numpy() @ np.array([self.params[n] for n in names])
        pred = np.exp(eta) if self.log_response else np.maximum(eta, self.floor_ms)
        return pd.Series(pred * self.scale, index=feats.index)

    def to_dict(self) -> dict:
        return {
            "formula": self.formula,
            "log_response": self.log_response,
            "params": self.params,
            "scale": self.scale,
            "floor_ms": self.floor_ms,
            **({"weights": self.weights} if self.weights else {}),
            **({"info": self.info} if self.info else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> LayerModel:
        return cls(
            d["formula"],
            {k: float(v) for k, v in d["params"].items()},
            bool(d["log_response"]),
            float(d.get("scale", 1.0)),
            d.get("info", {}),
            float(d.get("floor_ms", 0.0)),
            d.get("weights", ""),
        )


def fit_formula(formula: str, train_feats: pd.DataFrame, weights: str = "") -> LayerModel:
    """OLS with statsmodels' formula API (patsy engine pinned); WLS when `weights` is RELATIVE_WEIGHTS.

    A rank-deficient design (too few distinct factor values for the formula, e.g. a small profile) is not an
    error -- OLS uses the minimum-norm solution -- but it is recorded as info["rank_deficient"] instead of
    warning, so that model selection can prefer identifiable candidates.
    """
    import warnings

    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import SingularMatrixWarning

    with _pinned_formula_engine(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SingularMatrixWarning)
        if weights == RELATIVE_WEIGHTS:
            res = smf.wls(formula, data=train_feats, weights=1.0 / train_feats["latency_ms"] ** 2).fit()
        elif not weights:
            res = smf.ols(formula, data=train_feats).fit()
        else:
            raise ValueError(f"unknown weights {weights!r}; valid: '' (OLS), {RELATIVE_WEIGHTS!r}")
    rank_deficient = any(issubclass(w.category, SingularMatrixWarning) for w in caught)
    log_response = formula.startswith("log_ms")
    floor = 0.0 if log_response else float(train_feats["latency_ms"].min())
    return LayerModel(
        formula,
        {k: float(v) for k, v in res.params.items()},
        log_response,
        floor_ms=floor,
        info={"rank_deficient": True} if rank_deficient else {},
        weights=weights,
    )


def metrics(measured: np.ndarray, predicted: np.ndarray) -> dict:
    """Held-out metrics in linear ms: R^2, MAE, MAPE (a fraction), share within +-10 % (a fraction)."""
    y, p = np.asarray(measured, float), np.asarray(predicted, float)
    rel = np.abs(p - y) / y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {
        "r2_test": 1.0 - float(((y - p) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
        "mae_ms": float(np.abs(p - y).mean()),
        "mape": float(rel.mean()),
        "within10": float((rel <= 0.10).mean()),
    }


def select_dnnpart_formula(layer_type: str, train_feats: pd.DataFrame, seed: int) -> tuple[str, str, dict]:
    """Choose among the candidates by MAPE on a validation split of the training rows (never the test rows).

    Returns (formula, weights, validation MAPE per formula)."""
    cands = candidate_formulas(layer_type, train_feats)
    n_val = int(round(VALIDATION_SHARE * len(train_feats)))
    perm = np.random.default_rng([seed, 1]).permutation(len(train_feats))
    val, fit_part = train_feats.iloc[np.sort(perm[:n_val])], train_feats.iloc[np.sort(perm[n_val:])]
    scores, deficient = {}, set()
    weights_of = dict(cands)
    for formula, weights in cands:
        n_terms = formula.count("+") + 2
        if n_terms >= len(fit_part):  # not enough rows to estimate this many terms
            continue
        model = fit_formula(formula, fit_part, weights)
        if model.info.get("rank_deficient"):
            deficient.add(formula)
        scores[formula] = metrics(val["latency_ms"].to_numpy(), model.predict(val).to_numpy())["mape"]
    if not scores:
        return (*cands[0], {})
    eligible = {f: v for f, v in scores.items() if f not in deficient} or scores
    best = min(eligible, key=eligible.get)
    return best, weights_of[best], scores


def fit_layer_type(df_type: pd.DataFrame, layer_type: str, family: str, seed: int = 0) -> LayerModel:
    """Fit one (role, layer type) on the training split; attach held-out metrics in .info."""
    if family not in FAMILIES:
        raise ProfileError(f"unknown model family {family!r}; valid families: {', '.join(FAMILIES)}")
    train, test = split_train_test(df_type, seed)
    ftrain, ftest = features(train), features(test)
    if family == "paper":
        formula, weights, scores = PAPER_FORMULAS[layer_type], "", {}
    else:
        formula, weights, scores = select_dnnpart_formula(layer_type, ftrain, seed)
    model = fit_formula(formula, ftrain, weights)
    m = metrics(ftest["latency_ms"].to_numpy(), model.predict(ftest).to_numpy()) if len(test) else {}
    model.info = {
        **model.info,
        **m,
        "n_train": len(train),
        "n_test": len(test),
        **({"validation_mape": scores} if scores else {}),
    }
    return model


MIN_ROWS_PER_TYPE = 10  # enough to fit the largest paper-family formula and hold 2 rows out for testing


def fit_profile_role(df_role: pd.DataFrame, family: str, seed: int = 0) -> dict[str, LayerModel]:
    """Fit every layer type present; each needs MIN_ROWS_PER_TYPE measured configurations."""
    counts = df_role["layer_type"].value_counts()
    short = {t: int(counts[t]) for t in LAYER_TYPES if 0 < counts.get(t, 0) < MIN_ROWS_PER_TYPE}
    if short:
        role = str(df_role["role"].iloc[0]) if "role" in df_role and len(df_role) else "?"
        raise ProfileError(
            f"role {role}: too few measured configurations to fit and test a model "
            f"({', '.join(f'{t}: {n}' for t, n in short.items())}; each layer type needs at least "
            f"{MIN_ROWS_PER_TYPE}); measure more with `dnnpart profile`"
        )
    return {
        t: fit_layer_type(df_role[df_role["layer_type"] == t], t, family, seed)
        for t in LAYER_TYPES
        if (df_role["layer_type"] == t).any()
    }


# ------------------------------------------------------------------------------------------- delay model
class DelayModel:
    """Per-role, per-layer-type delay models; `predict(layers, role)` gives per-layer ms."""

    def __init__(self, models: dict[str, dict[str, LayerModel]], name: str = "", family: str = ""):
        self.models = models
        self.name = name
        self.family = family

    def __repr__(self) -> str:
        cover = {r: sorted(m) for r, m in self.models.items()}
        return f"DelayModel(profile={self.name!r}, family={self.family!r}, types={cover})"

    def layer_model(self, role: str, layer_type: str) -> LayerModel:
        if role not in self.models:
            raise ProfileError(f"profile {self.name!r} has no {role!r} role; roles: {', '.join(sorted(self.models))}")
        by_type = self.models[role]
        if layer_type not in by_type:
            raise MissingModelError(
                f"no {role} delay model for layer type {layer_type!r} in profile "
                f"{self.name!r}; covered types: {', '.join(sorted(by_type)) or '(none)'}"
            )
        return by_type[layer_type]

    def predict(self, layers: pd.DataFrame, role: str) -> pd.Series:
        """Predicted execution delay (ms, > 0) of every layer of a network table, index = layers.index."""
        if role not in ROLES:
            raise ProfileError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
        need = ["type", *FACTORS]
        missing = [c for c in need if c not in layers.columns]
        if missing:
            raise ProfileError(f"layer table lacks column(s) {', '.join(missing)}")
        out = pd.Series(np.nan, index=layers.index, dtype=float, name=f"{role}_ms")
        for layer_type in pd.unique(layers["type"]):
            model = self.layer_model(role, layer_type)
            mask = layers["type"] == layer_type
            out[mask] = model.predict(features(layers[mask])).to_numpy()
        if not (np.isfinite(out) & (out > 0)).all():
            bad = out[~(np.isfinite(out) & (out > 0))]
            raise ProfileError(f"non-positive or non-finite predictions for layers {list(bad.index)}")
        return out


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def cache_path(fingerprint: str, role: str, family: str, seed: int) -> Path:
    """Where the fit of one role's CSV (by its sha256) with one family and split seed is cached."""
    return CACHE_DIR / "fits" / f"{fingerprint[:20]}.{role}.{family}.seed{seed}.v{CACHE_VERSION}.json"


def _read_cache(cache: Path, fingerprint: str, seed: int):
    """The cached models, or None when the cache is missing, unreadable or for other inputs (then refit)."""
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if (
            cached.get("csv_sha256") == fingerprint
            and cached.get("seed") == seed
            and cached.get("formula_engine") == FORMULA_ENGINE
            and cached.get("cache_version") == CACHE_VERSION
        ):
            return {t: LayerModel.from_dict(d) for t, d in cached["models"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing, garbage bytes, wrong shape
        pass
    return None


def fitted_role_models(folder: Path, role: str, family: str, seed: int = 0):
    """Fit (or load the cached fit of) every layer type of one role's CSV in a profile folder."""
    csv_path = folder / f"{role}.csv"
    fingerprint = sha256_file(csv_path)
    cache = cache_path(fingerprint, role, family, seed)
    models = _read_cache(cache, fingerprint, seed)
    if models is not None:
        return models
    df = read_profile_csv(csv_path)
    df = df[df["role"] == role]
    if df.empty:
        raise ProfileError(f"{csv_path}: no rows with role {role!r}")
    models = fit_profile_role(df, family, seed)
    import statsmodels

    try:
        write_json(
            cache,
            {
                "cache_version": CACHE_VERSION,
                "csv": str(csv_path),
                "csv_sha256": fingerprint,
                "seed": seed,
                "family": family,
                "formula_engine": FORMULA_ENGINE,
                "statsmodels": statsmodels.__version__,
                "models": {t: m.to_dict() for t, m in models.items()},
            },
        )
    except OSError:
        pass  # an unwritable cache folder still works, just without the cache
    return models


def load_delay_model(profile: str | Path, family: str = "dnnpart", seed: int = 0) -> DelayModel:
    """The delay model of a profile (name under data/profiles/ or folder).

    Measured profiles (<role>.csv) are fitted with `family` (cached). Fixed-model profiles (<role>.json with
    "models", e.g. ``paper``) are loaded as stored; `family` does not apply to them.
    """
    if family not in FAMILIES:
        raise ProfileError(f"unknown model family {family!r}; valid families: {', '.join(FAMILIES)}")
    folder = resolve_profile(profile)
    models = {}
    for role in ROLES:
        if (folder / f"{role}.csv").is_file():
            models[role] = fitted_role_models(folder, role, family, seed)
        elif (folder / f"{role}.json").is_file():
            meta = json.loads((folder / f"{role}.json").read_text())
            if "models" in meta:
                models[role] = {t: LayerModel.from_dict(d) for t, d in meta["models"].items()}
    if not models:
        raise ProfileError(f"profile folder {folder} holds neither device/server CSVs nor fixed models")
    return DelayModel(models, name=str(profile), family=family)


def fit_report(profile: str | Path, seed: int = 0) -> pd.DataFrame:
    """Tidy held-out metrics: one row per (role, layer_type, family)."""
    folder = resolve_profile(profile)
    rows = []
    roles = [r for r in ROLES if (folder / f"{r}.csv").is_file()]
    if not roles:
        raise ProfileError(f"profile {str(profile)!r} has no measured CSV (device.csv/server.csv) to fit")
    for role in roles:
        for family in FAMILIES:
            for t, m in fitted_role_models(folder, role, family, seed).items():
                rows.append(
                    {
                        "role": role,
                        "layer_type": t,
                        "family": family,
                        **{k: m.info.get(k, float("nan")) for k in METRIC_COLUMNS[3:]},
                    }
                )
    df = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    return df.astype({"n_train": int, "n_test": int})


OUTLIER_FACTOR = 3.0  # a row whose latency is this far (either way) from its type's fit is flagged


def flagged_rows(profile: str | Path, seed: int = 0, factor: float = OUTLIER_FACTOR) -> pd.DataFrame:
    """Rows whose latency is far outside what their work implies: measured more than `factor` times above or
    below the dnnpart fit of their role and layer type (held-out and training rows alike). Typos in imported
    timings (us for ms, a missing zero) and disturbed measurements show up here; they are reported, not
    removed. Columns as `heldout_predictions`."""
    pred = heldout_predictions(profile, seed, families=("dnnpart",))
    ratio = pred["measured_ms"] / pred["predicted_ms"]
    return pred[(ratio > factor) | (ratio < 1 / factor)].reset_index(drop=True)


def conv_coefficients(profile: str | Path, seed: int = 0) -> pd.DataFrame:
    """Eq. (1)/(2) coefficients beside the same three-term form fitted on a measured profile's conv rows."""
    folder = resolve_profile(profile)
    rows = []
    for role in [r for r in ROLES if (folder / f"{r}.csv").is_file()]:
        fitted = fitted_role_models(folder, role, "paper", seed)["conv"].params
        for term, paper in PAPER_CONV_COEFFICIENTS[role].items():
            rows.append(
                {
                    "role": role,
                    "term": term,
                    "paper_coef": paper,
                    "fitted_coef": fitted[term],
                    "fitted_over_paper": fitted[term] / paper,
                }
            )
    if not rows:
        raise ProfileError(f"profile {str(profile)!r} has no measured CSV (device.csv/server.csv)")
    return pd.DataFrame(rows)


def heldout_predictions(profile: str | Path, seed: int = 0, roles=ROLES, families=FAMILIES) -> pd.DataFrame:
    """Tidy measured-vs-predicted table of every profile row: role, layer_type, family, split (train/test),
    the factors, measured_ms, predicted_ms, rel_error (= predicted / measured - 1).

    `roles` and `families` restrict the table (a role without a measured CSV is skipped)."""
    folder = resolve_profile(profile)
    frames = []
    for role in [r for r in roles if (folder / f"{r}.csv").is_file()]:
        df = read_profile_csv(folder / f"{role}.csv")
        df = df[df["role"] == role]
        for family in families:
            models = fitted_role_models(folder, role, family, seed)
            for t, model in models.items():
                train, test = split_train_test(df[df["layer_type"] == t], seed)
                for split, part in (("train", train), ("test", test)):
                    pred = model.predict(features(part)).to_numpy()
                    frames.append(
                        part[["role", "layer_type", *FACTORS]].assign(
                            family=family,
                            split=split,
                            measured_ms=part["latency_ms"].to_numpy(),
                            predicted_ms=pred,
                            rel_error=pred / part["latency_ms"].to_numpy() - 1.0,
                        )
                    )
    if not frames:
        raise ProfileError(f"profile {str(profile)!r} has no measured CSV (device.csv/server.csv)")
    cols = ["role", "layer_type", "family", "split", *FACTORS, "measured_ms", "predicted_ms", "rel_error"]
    return pd.concat(frames, ignore_index=True)[cols]


CONV_SUBSETS = ("1x1", "grouped", "kxk")  # the conv shapes residual and mobile networks rely on, told apart


def conv_subset(layers: pd.DataFrame) -> pd.Series:
    """Which CONV_SUBSETS a conv row belongs to: grouped (groups > 1), else 1x1 (kernel 1), else kxk."""
    return pd.Series(
        np.where(layers["groups"] > 1, "grouped", np.where(layers["kernel"] == 1, "1x1", "kxk")), index=layers.index
    )


def conv_shape_report(profile: str | Path, seed: int = 0) -> pd.DataFrame:
    """The conv model's accuracy per conv shape (CONV_SUBSETS), on two kinds of unseen rows: the profile's own
    held-out conv rows (`source` = "held-out") and, where the profile ships `modern-conv-<role>.csv`
    (`profiler.validation_sweep`: ResNet/MobileNet 1x1 and grouped convs measured beside the profile, never
    fitted), those rows (`source` = "modern-conv"). Columns: role, family, source, subset, n and the metrics."""
    folder = resolve_profile(profile)
    held = heldout_predictions(profile, seed)
    held = held[(held["layer_type"] == "conv") & (held["split"] == "test")].assign(source="held-out")
    frames = [held]
    for role in [r for r in ROLES if (folder / f"modern-conv-{r}.csv").is_file()]:
        extra = read_profile_csv(folder / f"modern-conv-{role}.csv")
        for family in FAMILIES:
            model = fitted_role_models(folder, role, family, seed)["conv"]
            pred = model.predict(features(extra)).to_numpy()
            frames.append(
                extra[["role", "layer_type", *FACTORS]].assign(
                    family=family, source="modern-conv", measured_ms=extra["latency_ms"].to_numpy(), predicted_ms=pred
                )
            )
    df = pd.concat(frames, ignore_index=True)
    df["subset"] = conv_subset(df)
    rows = []
    for (role, family, source, subset), part in df.groupby(["role", "family", "source", "subset"], sort=True):
        m = metrics(part["measured_ms"].to_numpy(), part["predicted_ms"].to_numpy())
        rows.append({"role": role, "family": family, "source": source, "subset": subset, "n": len(part), **m})
    return pd.DataFrame(rows)
