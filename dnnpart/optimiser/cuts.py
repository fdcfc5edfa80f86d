"""Which cuts a device may take: dominance-pruned candidates, and each device's selfish best cut."""

from __future__ import annotations

import math
from itertools import accumulate

from dnnpart.optimiser.instance import Device, Instance
from dnnpart.optimiser.schedule import TOL_MS, check_cuts


def candidate_cuts(device: Device) -> list[int]:
    """Cuts that no larger cut dominates.

    Cut c' > c dominates c when release(c') <= release(c) + server work of layers c+1..c': with cut c the
    server could not finish layer c' before c' would have arrived anyway, so cutting at c' frees server
    time and delays nothing. The all-local cut M is always kept, and it dominates every cut whose stand-alone
    completion is not below the all-local time H: a device with such a cut finishes at or after H, and
    switching it to all-local never makes it later and only removes server work (docs/optimiser.md).

    The test runs in O(M) per device: with S(c) the server time of layers 1..c, c is dominated when
    min over c' > c of release(c') - S(c') <= release(c) - S(c), a running minimum from the last cut down.
    """
    m = device.n_layers
    local_prefix = list(accumulate(device.local_ms, initial=0.0))  # = local_prefix_ms(c), same summation order
    server_prefix = list(accumulate(device.server_ms, initial=0.0))
    local = local_prefix[m]
    keep = []
    later = math.inf  # min over c' > c of release(c') - S(c')
    for c in range(m, -1, -1):
        release = local_prefix[c] + (device.upload_ms[c] if c < m else 0.0)
        alone = release + (server_prefix[m] - server_prefix[c]) + device.download_ms
        if not (later <= release - server_prefix[c] + TOL_MS or (c < m and alone >= local)):
            keep.append(c)
        later = min(later, release - server_prefix[c])
    return keep[::-1]


def cut_sets_for(instance: Instance, fixed_cuts) -> list[list[int]]:
    if fixed_cuts is None:
        return [candidate_cuts(d) for d in instance.devices]
    return [[c] for c in check_cuts(instance, fixed_cuts)]


def independent_cuts(instance: Instance) -> list[int]:
    """Each device's best cut if it had the server to itself (smallest cut on ties)."""
    return [min(range(d.n_layers + 1), key=lambda c: (d.alone_ms(c), c)) for d in instance.devices]
