"""Large sweeps from a grid file: `dnnpart sweep --grid GRID.yaml --out results.parquet`.

A grid file lists, per dimension (networks, device counts, bandwidths, loads, profiles), the values to sweep:
every combination is a point (a cartesian product), or, with `draws: K`, K points drawn at random (seeded) where a
dimension may also be a range {min, max[, log]}. Each point is one identical-devices scenario solved by every
method (sweeps.scenario_rows): the same rows as the figures' sweeps, plus its `point` number.

Points are solved in chunks, on this machine or a Dask cluster (dnnpart.parallel). Each finished chunk is written
at once, atomically, into `<out>.parts/`, beside a copy of the grid it belongs to, so an interrupted sweep resumes
where it stopped: finished chunks are kept, not recomputed. When every chunk is there they are joined into
`<out>` (Parquet, in point order, the grid's digest in its metadata) and the parts folder is removed.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import shutil
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from dnnpart import networks, parallel
from dnnpart.delay import load_delay_model
from dnnpart.errors import DnnpartError
from dnnpart.files import atomic_write_bytes, atomic_write_text, check_writable
from dnnpart.input_files import describe_errors
from dnnpart.limits import MAX_DEVICES
from dnnpart.planning.scenario import read_yaml
from dnnpart.study.sweeps import scenario_rows

MAX_POINTS = 1_000_000
MAX_CHUNK_POINTS = 10_000
METADATA_KEY = b"dnnpart_grid_sha256"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, strict=True)]
Mbps = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]
Load = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=MAX_DEVICES, strict=True)]


class GridError(DnnpartError):
    """A grid file that cannot be swept, or an output that belongs to another grid."""


class FloatRange(BaseModel):
    """Values drawn uniformly between min and max (log: uniformly in log scale); only with `draws`."""

    model_config = ConfigDict(extra="forbid")
    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)
    log: bool = False


class CountRange(BaseModel):
    """Whole numbers drawn uniformly from min to max, both included; only with `draws`."""

    model_config = ConfigDict(extra="forbid")
    min: Count
    max: Count


class GridFile(BaseModel):
    """A dnnpart sweep grid (YAML or JSON)."""

    model_config = ConfigDict(extra="forbid", title="dnnpart sweep grid")

    networks: Annotated[list[Text], Field(min_length=1)] = Field(description="zoo network names")
    n_devices: Annotated[list[Count], Field(min_length=1)] | CountRange = Field(
        description="identical devices per scenario"
    )
    bandwidths_mbps: Annotated[list[Mbps], Field(min_length=1)] | FloatRange = Field(description="uplink (Mbit/s)")
    loads: Annotated[list[Load], Field(min_length=1)] | FloatRange = Field([0.0], description="server load, [0, 1)")
    profiles: Annotated[list[Text], Field(min_length=1)] = Field(["paper"], description="delay profiles")
    draws: Annotated[int, Field(ge=1, le=MAX_POINTS, strict=True)] | None = Field(
        None, description="draw this many random points instead of sweeping every combination"
    )
    seed: Annotated[int, Field(ge=0, le=2**63 - 1, strict=True)] = Field(0, description="seed of the draws")


def read_grid(path) -> GridFile:
    """The grid file validated (schema, then ranges, networks and profiles); GridError with one line otherwise."""
    path = Path(path)
    label = f"grid {path}"

    def fail(place: str, problem: str) -> GridError:
        return GridError(f"{label}: {place}: {problem}" if place else f"{label}: {problem}")

    data = read_yaml(path, label, fail=fail, what="grid file")
    try:
        grid = GridFile.model_validate(data)
    except ValidationError as exc:
        raise GridError(f"{label}: {describe_errors(exc.errors(include_url=False), GridFile, {})}") from None
    ranges = {k: v for k, v in (("n_devices", grid.n_devices), ("bandwidths_mbps", grid.bandwidths_mbps),
                                ("loads", grid.loads)) if not isinstance(v, list)}  # fmt: skip
    if ranges and grid.draws is None:
        raise fail(next(iter(ranges)), "a range {min, max} needs `draws: K` (random points); give a list to sweep")
    for name, r in ranges.items():
        if r.min > r.max:
            raise fail(name, f"min {r.min} is above max {r.max}")
    b = grid.bandwidths_mbps
    if isinstance(b, FloatRange) and not (b.min > 0 and b.max <= 1e6):
        raise fail("bandwidths_mbps", f"the range must lie in (0, 1e6] Mbit/s, got [{b.min}, {b.max}]")
    if isinstance(grid.loads, FloatRange) and not (grid.loads.min >= 0 and grid.loads.max < 1):
        raise fail("loads", f"the range must lie in [0, 1), got [{grid.loads.min}, {grid.loads.max}]")
    zoo = networks.names(include_dag=True)
    for i, name in enumerate(grid.networks):
        if name not in zoo:
            raise fail(f"networks[{i}]", f"unknown network {name!r}; valid zoo names: {', '.join(zoo)}")
    for i, profile in enumerate(grid.profiles):
        try:
            load_delay_model(profile)
        except DnnpartError as exc:
            raise fail(f"profiles[{i}]", str(exc)) from None
    if n_points(grid) > MAX_POINTS:
        raise fail("", f"{n_points(grid):,} points; at most {MAX_POINTS:,} per sweep (split it, or use draws)")
    return grid


def n_points(grid: GridFile) -> int:
    if grid.draws is not None:
        return grid.draws
    dims = [grid.profiles, grid.networks, grid.n_devices, grid.bandwidths_mbps, grid.loads]
    return math.prod(len(d) for d in dims)


def grid_digest(grid: GridFile) -> str:
    """sha256 of the grid's validated content: two files that sweep the same points share it."""
    return hashlib.sha256(json.dumps(grid.model_dump(), sort_keys=True).encode()).hexdigest()


def _draw(values, rng: np.random.Generator, k: int, integer: bool = False) -> list:
    if isinstance(values, list):
        return [values[i] for i in rng.integers(0, len(values), size=k)]
    if integer:
        return [int(x) for x in rng.integers(values.min, values.max + 1, size=k)]
    if values.log:  # min > 0 is checked by read_grid
        drawn = np.exp(rng.uniform(np.log(values.min), np.log(values.max), size=k))
    else:
        drawn = rng.uniform(values.min, values.max, size=k)
    return [float(f"{x:.6g}") for x in drawn]  # six significant digits: stable values and labels


def grid_points(grid: GridFile) -> list[dict]:
    """Every point of the grid as scenario_rows' keyword arguments, in a fixed order."""
    if grid.draws is None:
        combos = itertools.product(grid.profiles, grid.networks, grid.n_devices, grid.bandwidths_mbps, grid.loads)
    else:
        # One stream per dimension (in a fixed order), so adding a dimension's values changes only that one.
        rngs = [np.random.default_rng([grid.seed, d]) for d in range(5)]
        k = grid.draws
        combos = zip(
            _draw(grid.profiles, rngs[0], k),
            _draw(grid.networks, rngs[1], k),
            _draw(grid.n_devices, rngs[2], k, integer=True),
            _draw(grid.bandwidths_mbps, rngs[3], k),
            [min(x, 0.999999) for x in _draw(grid.loads, rngs[4], k)],
        )
    return [
        dict(profile=p, network=n, n_devices=int(d), bandwidth_mbps=float(b), load=float(x)) for p, n, d, b, x in combos
    ]


def _chunk_rows(chunk: tuple[int, list[dict]]) -> list[dict]:
    """Solve one chunk of points (on a worker): scenario_rows for each, tagged with its point number."""
    first, points = chunk
    return [{"point": first + i, **row} for i, point in enumerate(points) for row in scenario_rows(**point)]


def _parquet_bytes(frame: pd.DataFrame, digest: str | None = None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if digest is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: digest.encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def output_digest(path: Path) -> str | None:
    """The grid digest a finished sweep's Parquet file carries (None when it carries none)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise GridError(f"output {path} exists and is not a dnnpart sweep's Parquet file ({exc})") from None
    value = meta.get(METADATA_KEY)
    return value.decode() if value else None


def parts_folder(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def run_sweep(
    grid_path,
    out,
    scheduler: str | None = None,
    workers: int | None = None,
    chunk_points: int | None = None,
    progress: bool = False,
) -> dict:
    """Solve every point of the grid into `out` (Parquet), resuming from `<out>.parts/` if a run was interrupted.

    Returns a summary: points, chunks, chunks_resumed (found finished), chunks_solved (by this run), out.
    Refuses (GridError) an `out` or parts folder that belongs to another grid."""
    out = Path(out)
    grid = read_grid(grid_path)
    digest = grid_digest(grid)
    check_writable(out, "--out")
    parts = parts_folder(out)
    points = grid_points(grid)
    if out.exists():
        found = output_digest(out)
        if found != digest:
            raise GridError(f"output {out} holds another grid's results; choose another --out or remove it")
        return dict(points=len(points), chunks=0, chunks_resumed=0, chunks_solved=0, out=str(out), complete=True)
    size = chunk_points or min(100, max(1, math.ceil(len(points) / 100)))
    if not 1 <= size <= MAX_CHUNK_POINTS:
        raise GridError(f"chunk size must lie in 1..{MAX_CHUNK_POINTS}, got {size}")
    chunks = [(first, points[first : first + size]) for first in range(0, len(points), size)]
    grid_file = parts / "grid.json"
    stamp = json.dumps({"digest": digest, "chunk_points": size, "grid": grid.model_dump()}, sort_keys=True)
    if parts.exists():
        if not grid_file.is_file() or json.loads(grid_file.read_text())["digest"] != digest:
            raise GridError(f"{parts} holds another grid's unfinished sweep; choose another --out or remove it")
        size_before = json.loads(grid_file.read_text())["chunk_points"]
        if size_before != size:
            raise GridError(f"{parts} was written with --chunk-points {size_before}; resume with the same size")
    else:
        parts.mkdir(parents=True)
        atomic_write_text(grid_file, stamp)

    def chunk_file(k: int) -> Path:
        return parts / f"chunk-{k:06d}.parquet"

    todo = [k for k in range(len(chunks)) if not chunk_file(k).is_file()]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(points), initial=len(points) - sum(len(chunks[k][1]) for k in todo), unit="point")
    try:
        for i, rows in parallel.iter_points(_chunk_rows, [chunks[k] for k in todo], scheduler, workers):
            k = todo[i]
            atomic_write_bytes(chunk_file(k), _parquet_bytes(pd.DataFrame(rows)))
            if bar is not None:
                bar.update(len(chunks[k][1]))
    finally:
        if bar is not None:
            bar.close()
    frame = pd.concat([pd.read_parquet(chunk_file(k)) for k in range(len(chunks))], ignore_index=True)
    atomic_write_bytes(out, _parquet_bytes(frame, digest), "--out")
    shutil.rmtree(parts)
    return dict(
        points=len(points),
        chunks=len(chunks),
        chunks_resumed=len(chunks) - len(todo),
        chunks_solved=len(todo),
        out=str(out),
        complete=True,
    )
