"""How much to trust a deployment plan: its sensitivity to bandwidth and its robustness to prediction error.

- `bandwidth_sensitivity`: re-solve with one group's uplink scaled by each factor (0.1x-10x), one group at a
  time; record the average delay and every device's chosen cut by layer name.
- `robustness`: keep each method's plan fixed (its cuts and its server order), perturb every predicted layer
  delay by a multiplicative factor measured/predicted drawn from the delay models' held-out rows (per role
  and layer type), re-time the plan as early as possible, and record the realised average delay.
  Transmission times are not perturbed: eq. (3) is not a fitted model.

Both return tidy DataFrames; `plot_sensitivity` and `plot_robustness` draw them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dnnpart import delay, networks
from dnnpart.errors import DnnpartError, ProfileError
from dnnpart.optimiser.baselines import solve_all_methods
from dnnpart.optimiser.instance import Device, Instance
from dnnpart.optimiser.solver import solve
from dnnpart.planning.compile import CompiledScenario, compile_scenario
from dnnpart.planning.scenario import ProfileRef

SENSITIVITY_FACTORS = np.geomspace(0.1, 10.0, 9)
ROBUSTNESS_DRAWS = 1000
FALLBACK_PROFILE = "measured"


def _compiled(compiled_or_path) -> CompiledScenario:
    return compiled_or_path if isinstance(compiled_or_path, CompiledScenario) else compile_scenario(compiled_or_path)


# --- bandwidth sensitivity ---------------------------------------------------------------------------------


def scale_uplink(compiled: CompiledScenario, group: int, factor: float) -> Instance:
    """The instance with group `group`'s uplink multiplied by `factor` (eq. 3: upload times divided by it)."""
    if not (isinstance(factor, (int, float, np.floating)) and math.isfinite(factor) and factor > 0):
        raise DnnpartError(f"bandwidth factor must be a positive number, got {factor!r}")
    devices = []
    for i, d in enumerate(compiled.instance.devices):
        up = d.upload_ms if compiled.device_group[i] != group else tuple(u / factor for u in d.upload_ms)
        devices.append(Device(d.name, d.local_ms, d.server_ms, up, d.download_ms))
    return Instance(tuple(devices))


def bandwidth_sensitivity(
    compiled_or_path, factors=SENSITIVITY_FACTORS, formulation: str = "exact", time_limit: float | None = None
) -> pd.DataFrame:
    """Re-solve with each group's uplink scaled by each factor, one group at a time.

    Tidy rows, one per (varied group, factor, device): group (the varied group), factor, uplink_mbps (the
    varied group's rate), avg_delay_ms, proven_optimal, gap, then device, device_group, cut and cut_layer (the
    device's cut by name: 'input', a layer name, or 'all local'). Filter device_group == group for the cuts of
    the devices whose bandwidth varies.
    """
    compiled = _compiled(compiled_or_path)
    factors = [float(f) for f in factors]
    rows = []
    for g, group in enumerate(compiled.scenario.groups):
        for factor in factors:
            sol = solve(scale_uplink(compiled, g, factor), formulation=formulation, time_limit=time_limit)
            for i, cut in enumerate(sol.cuts):
                rows.append(
                    {
                        "group": group.name,
                        "factor": factor,
                        "uplink_mbps": group.uplink_mbps * factor,
                        "avg_delay_ms": float(sol.avg_delay_ms),
                        "proven_optimal": bool(sol.proven_optimal),
                        "gap": float("nan") if sol.gap is None else float(sol.gap),
                        "device": compiled.instance.names[i],
                        "device_group": compiled.group(i).name,
                        "cut": int(cut),
                        "cut_layer": compiled.cut_name(i, int(cut)),
                    }
                )
    return pd.DataFrame(rows)


# --- held-out residuals ---------------------------------------------------------------------------------------


def held_out_ratios(profile, role: str, family: str = "dnnpart", seed: int = 0) -> dict[str, np.ndarray]:
    """Per layer type, measured / predicted on the profile's held-out test rows (the fit's own 80/20 split;
    `seed` is the fit's split seed, as in dnnpart.delay.load_delay_model).

    Taken from dnnpart.delay.heldout_predictions, so the ratios are exactly the out-of-sample errors its
    metrics report. Raises ProfileError when the profile has no measured CSV for the role (fixed models
    such as the `paper` profile have no held-out rows).
    """
    spec = profile.spec if isinstance(profile, ProfileRef) else profile
    folder = delay.resolve_profile(spec)
    csv = folder / f"{role}.csv"
    if not csv.is_file():
        raise ProfileError(f"profile {str(spec)!r} has no measured {role}.csv, so no held-out residuals")
    rows = delay.heldout_predictions(spec, seed, roles=[role], families=[family])
    test = rows[rows["split"] == "test"]
    return {
        str(t): np.sort(part["measured_ms"].to_numpy(dtype=float) / part["predicted_ms"].to_numpy(dtype=float))
        for t, part in test.groupby("layer_type", sort=True)
    }


@dataclass(frozen=True)
class NoiseSource:
    """Where one (role, profile)'s error distribution came from: its own held-out rows, or a fallback."""

    role: str
    profile: str
    source: str


def _residual_tables(compiled: CompiledScenario, fallback_profile: str | None):
    """Per (role, profile folder): {layer_type: ratios}, and a note of which profiles used the fallback."""
    family = compiled.scenario.family
    wanted = [("server", compiled.scenario.server_profile)] + [("device", g.profile) for g in compiled.scenario.groups]
    tables, notes = {}, []
    for role, ref in wanted:
        key = (role, str(ref.folder))
        if key in tables:
            continue
        try:
            tables[key] = held_out_ratios(ref, role, family)
            notes.append(NoiseSource(role, ref.label, "own held-out rows"))
        except ProfileError:
            if fallback_profile is None:
                raise
            tables[key] = held_out_ratios(fallback_profile, role, family)
            notes.append(NoiseSource(role, ref.label, f"fallback: held-out rows of profile {fallback_profile!r}"))
    return tables, notes


# --- robustness -------------------------------------------------------------------------------------------


def _draw_factors(ratios: dict[str, np.ndarray], types, n_draws: int, rng, what: str) -> np.ndarray:
    """(n_draws, n_layers) multiplicative factors, each layer's drawn from its type's held-out ratios."""
    out = np.ones((n_draws, len(types)))
    for j, t in enumerate(types):
        if t not in ratios:
            raise DnnpartError(f"{what}: no held-out residuals for layer type {t!r}; covered: {', '.join(ratios)}")
        out[:, j] = rng.choice(ratios[t], size=n_draws, replace=True)
    return out


def simulate(instance: Instance, cuts, server_order, local: list[np.ndarray], server: list[np.ndarray]) -> np.ndarray:
    """Average completion of a fixed plan under many timings at once (the rule of dnnpart.optimiser.schedule.Schedule).

    local[i], server[i]: (n_draws, M_i) layer times of device i. Devices run their local layers back to back
    from 0, upload, and the server runs `server_order` ((device, 1-based layer) pairs) as early as possible.
    Returns (n_draws,) average completion times.
    """
    n = local[0].shape[0]
    ready, done = [], []
    for i, (d, c) in enumerate(zip(instance.devices, cuts)):
        t = local[i][:, :c].sum(axis=1)
        if c < d.n_layers:
            t = t + d.upload_ms[c]
        ready.append(t)
    free = np.zeros(n)
    for i, j in server_order:
        free = np.maximum(free, ready[i]) + server[i][:, j - 1]
        ready[i] = free
    for i, (d, c) in enumerate(zip(instance.devices, cuts)):
        done.append(ready[i] + (d.download_ms if c < d.n_layers else 0.0))
    return np.mean(done, axis=0)


def _block_factors(layers: pd.DataFrame, predicted_ms, factors: np.ndarray) -> np.ndarray:
    """(n_draws, n_layers) layer factors -> (n_draws, n_blocks) block factors: a block's realised time is the sum
    of its layers' predicted times times their factors, i.e. its predicted time times their weighted mean."""
    predicted = np.asarray(predicted_ms, dtype=float)
    totals = networks.block_sums(layers, predicted)
    out = np.empty((factors.shape[0], len(totals)))
    for b, (start, stop) in enumerate(networks.block_bounds(layers)):
        out[:, b] = factors[:, start:stop] @ predicted[start:stop] / totals[b]
    return out


def robustness(
    compiled_or_path,
    n_draws: int = ROBUSTNESS_DRAWS,
    seed: int = 0,
    solutions: dict | None = None,
    fallback_profile: str | None = FALLBACK_PROFILE,
) -> pd.DataFrame:
    """Realised average delay of each method's fixed plan when layer delays deviate from their predictions.

    Every draw multiplies each predicted layer time (local and server) by a factor measured/predicted sampled
    with replacement from the held-out rows of the same role and layer type (`held_out_ratios`). All methods
    see the same draws (common random numbers), so their differences are paired. A profile without measured
    rows for a role (fixed models, e.g. `paper`) borrows the held-out ratios of `fallback_profile`; the
    sources used are in df.attrs["noise_sources"].

    Rows: draw, method, realised_avg_delay_ms, predicted_avg_delay_ms. Deterministic for a fixed seed.
    """
    if isinstance(n_draws, bool) or int(n_draws) != n_draws or n_draws < 1:
        raise DnnpartError(f"n_draws must be a positive integer, got {n_draws!r}")
    compiled = _compiled(compiled_or_path)
    solutions = solutions or solve_all_methods(compiled.instance)
    tables, notes = _residual_tables(compiled, fallback_profile)  # the fits' own split, not the draws' seed
    rng = np.random.default_rng(seed)
    inst = compiled.instance
    server_key = ("server", str(compiled.scenario.server_profile.folder))
    local, server = [], []
    for i, d in enumerate(inst.devices):
        layers = compiled.layers(i)
        types = layers["type"].tolist()
        group = compiled.group(i)
        dev_key = ("device", str(group.profile.folder))
        dev = _draw_factors(tables[dev_key], types, n_draws, rng, f"{d.name} device")
        srv = _draw_factors(tables[server_key], types, n_draws, rng, f"{d.name} server")
        if networks.is_dag(layers):  # one time per block: its layers' factors, weighted by their predicted times
            family = compiled.scenario.family
            dev = _block_factors(
                layers, delay.load_delay_model(group.profile.spec, family).predict(layers, "device"), dev
            )
            srv_model = delay.load_delay_model(compiled.scenario.server_profile.spec, family)
            srv = _block_factors(layers, srv_model.predict(layers, "server"), srv)
        local.append(np.asarray(d.local_ms) * dev)
        server.append(np.asarray(d.server_ms) * srv)
    frames = []
    for method, sol in solutions.items():
        realised = simulate(inst, sol.schedule.cuts, sol.schedule.server_order, local, server)
        frames.append(
            pd.DataFrame(
                {
                    "draw": np.arange(n_draws),
                    "method": method,
                    "realised_avg_delay_ms": realised,
                    "predicted_avg_delay_ms": float(sol.avg_delay_ms),
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    df.attrs["noise_sources"] = [vars(n) for n in notes]
    return df


def robustness_summary(df: pd.DataFrame, reference: str = "case1") -> pd.DataFrame:
    """Per method: predicted and realised (mean, p5, median, p95) delay, and the share of draws in which
    the reference plan (default: the optimum) is at least as fast as this method's plan (paired draws)."""
    wide = df.pivot(index="draw", columns="method", values="realised_avg_delay_ms")
    rows = []
    for method, part in df.groupby("method", sort=False):
        r = part["realised_avg_delay_ms"]
        rows.append(
            {
                "method": method,
                "predicted_avg_delay_ms": float(part["predicted_avg_delay_ms"].iloc[0]),
                "mean_ms": float(r.mean()),
                "p5_ms": float(r.quantile(0.05)),
                "median_ms": float(r.median()),
                "p95_ms": float(r.quantile(0.95)),
                f"{reference}_wins_share": float((wide[reference] <= wide[method] + 1e-9).mean()),
                f"mean_gain_of_{reference}_pct": float(100 * (1 - (wide[reference] / wide[method]).mean())),
            }
        )
    return pd.DataFrame(rows)


# --- plots -----------------------------------------------------------------------------------------------------


def plot_sensitivity(df: pd.DataFrame):
    """Top: average delay vs each group's bandwidth factor. Bottom, one panel per group: the cut layer each of
    that group's devices chooses as its own bandwidth varies."""
    from matplotlib.figure import Figure

    groups = list(dict.fromkeys(df["group"]))
    fig = Figure(figsize=(max(8.0, 4.2 * len(groups)), 7.5), layout="constrained")
    mosaic = fig.subplot_mosaic([["top"] * len(groups), [f"cut:{g}" for g in groups]], height_ratios=[1, 1.2])
    top = mosaic["top"]
    per_run = df.drop_duplicates(["group", "factor"])
    for g in groups:
        part = per_run[per_run["group"] == g]
        top.plot(part["factor"], part["avg_delay_ms"], marker="o", label=f"{g} uplink varied")
    top.set_xscale("log")
    top.axvline(1.0, color="grey", lw=0.8, ls=":")
    top.set_xlabel("bandwidth factor (x the scenario's uplink)")
    top.set_ylabel("average delay (ms)")
    top.set_title("Average delay when one group's uplink changes")
    top.legend(fontsize=8)
    for g in groups:
        ax = mosaic[f"cut:{g}"]
        part = df[(df["group"] == g) & (df["device_group"] == g)]
        labels = {}
        for device, dev in part.groupby("device", sort=False):
            ax.step(dev["factor"], dev["cut"], where="mid", marker=".", label=device)
            labels.update(dict(zip(dev["cut"], dev["cut_layer"])))
        ax.set_xscale("log")
        ax.set_yticks(sorted(labels), [labels[c] for c in sorted(labels)], fontsize=7)
        ax.set_xlabel(f"{g}: bandwidth factor")
        ax.set_title(f"cut chosen by {g} devices", fontsize=9)
        ax.legend(fontsize=7)
    return fig


def plot_robustness(df: pd.DataFrame):
    """Distributions of the realised average delay per method, the predicted value marked."""
    from matplotlib.figure import Figure

    methods = list(dict.fromkeys(df["method"]))
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    data = [df.loc[df["method"] == m, "realised_avg_delay_ms"].to_numpy() for m in methods]
    ax.violinplot(data, showmedians=True)
    for k, m in enumerate(methods, start=1):
        pred = df.loc[df["method"] == m, "predicted_avg_delay_ms"].iloc[0]
        ax.plot([k - 0.3, k + 0.3], [pred, pred], color="black", lw=1, ls="--")
    ax.set_xticks(range(1, len(methods) + 1), methods)
    ax.set_ylabel("realised average delay (ms)")
    ax.set_title(f"Plans under prediction error ({df['draw'].nunique()} draws; dashed: predicted)")
    fig.tight_layout()
    return fig
