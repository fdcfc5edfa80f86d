"""Blocks: what the optimiser sees of a network whose layers form a DAG (ResNet, MobileNetV2).

A *cut point* is a place in the layer table's (topological) order where exactly one activation tensor crosses
from the layers before it to the layers after it: the output of a residual block, the input of a branch. The
layers between consecutive cut points form a *block*, one subtask of the optimiser: its local and server times
are the sums of its layers' predicted times, its upload the one tensor that crosses into it.

A chain network (every layer reads the previous one) has a cut point after every layer, so its blocks are its
layers and everything here returns the layer table's own values. DAG layer tables carry two more columns,
`inputs` (the comma-separated names of the layers a layer reads; "data" is the network input) and `block`
(1-based); chain tables do not, so the paper's networks keep their tables exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

BLOCK_COLUMNS = ["block", "name", "first", "layers", "types", "in_bytes", "out_bytes", "macs", "params"]


def cut_points(sources: Sequence[Sequence[str]], names: Sequence[str], network_input: str) -> list[int]:
    """Cuts k in 1..M-1 after which only one tensor crosses, for layers that read `sources[i]` in this order.

    Every layer but the last must be read by a later one (build_table checks), so the tensor crossing at a cut
    point k is always layer k's output.
    """
    last_use = {network_input: -1}
    for i, srcs in enumerate(sources):
        for s in srcs:
            last_use[s] = i
    live = 1  # tensors produced so far that a later layer still reads: the network input
    cuts = []
    for i, name in enumerate(names):
        live -= sum(1 for s in set(sources[i]) if last_use[s] == i)
        live += 1 if last_use.get(name, -1) > i else 0
        if live == 1 and i < len(names) - 1:
            cuts.append(i + 1)
    return cuts


def is_dag(table: pd.DataFrame) -> bool:
    """True for a DAG layer table (it has the `block` column); chain tables do not."""
    return "block" in table.columns


def layer_blocks(table: pd.DataFrame) -> np.ndarray:
    """1-based block of every row: the `block` column, or 1..M for a chain."""
    return table["block"].to_numpy(dtype=np.int64) if is_dag(table) else np.arange(1, len(table) + 1)


def block_bounds(table: pd.DataFrame) -> list[tuple[int, int]]:
    """Each block's [start, stop) rows, in order."""
    blocks = layer_blocks(table)
    starts = [0] + [i for i in range(1, len(blocks)) if blocks[i] != blocks[i - 1]]
    return list(zip(starts, starts[1:] + [len(blocks)]))


def block_names(table: pd.DataFrame) -> list[str]:
    """A block is named by its last layer (so vocabulary.cut_name names a cut by the last local layer)."""
    names = table["name"].astype(str).tolist()
    return [names[stop - 1] for _, stop in block_bounds(table)]


def block_in_bytes(table: pd.DataFrame) -> np.ndarray:
    """Bytes of the one tensor that enters each block: the network input, then the previous block's output."""
    if not is_dag(table):
        return table["in_bytes"].to_numpy(dtype=float)
    bounds = block_bounds(table)
    # the first layer can read only the network input (a join: several times)
    first = float(table["in_bytes"].iloc[0]) / len(str(table["inputs"].iloc[0]).split(","))
    out_bytes = table["out_bytes"].to_numpy(dtype=float)
    return np.array([first] + [out_bytes[stop - 1] for _, stop in bounds[:-1]])


def block_sums(table: pd.DataFrame, values) -> np.ndarray:
    """Per-layer values (e.g. predicted ms) summed per block; for a chain, the values themselves."""
    values = np.asarray(values, dtype=float)
    if len(values) != len(table):
        raise ValueError(f"{len(values)} values for {len(table)} layers")
    if not is_dag(table):
        return values
    return np.array([values[start:stop].sum() for start, stop in block_bounds(table)])


def block_table(table: pd.DataFrame) -> pd.DataFrame:
    """The block view: one row per block with its last and first layer, layer count, layer types (in order,
    '+'-joined, repeats kept), the bytes crossing into and out of it, and its MACs and parameters."""
    names, types = table["name"].astype(str).tolist(), table["type"].astype(str).tolist()
    rows = []
    in_bytes = block_in_bytes(table)
    for b, (start, stop) in enumerate(block_bounds(table)):
        rows.append(
            {
                "block": b + 1,
                "name": names[stop - 1],
                "first": names[start],
                "layers": stop - start,
                "types": "+".join(types[start:stop]),
                "in_bytes": int(in_bytes[b]),
                "out_bytes": int(table["out_bytes"].iloc[stop - 1]),
                "macs": int(table["macs"].iloc[start:stop].sum()),
                "params": int(table["params"].iloc[start:stop].sum()),
            }
        )
    out = pd.DataFrame(rows, columns=BLOCK_COLUMNS)
    out.attrs = dict(table.attrs)
    return out
