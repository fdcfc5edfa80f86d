"""Which cuts a device may take: dominance-pruned candidates, and each device's selfish best cut."""
from __future__ import annotations

from dnnpart.optimiser.instance import Device, Instance
from dnnpart.optimiser.schedule import TOL_MS, check_cuts


def candidate_cuts(device: Device) -> list[int]:
    """Cuts that no larger cut dominates.

    Cut c' > c dominates c when release(c') <= release(c) + server work of layers c+1..c': with cut c the
    server could not finish layer c' before c' would have arrived anyway, so cutting at c' frees server
    time and delays nothing. The all-local cut M is always kept, and it dominates every cut whose stand-alone
    completion is not below the all-local time H: a device with such a cut finishes at or after H, and
    switching it to all-local never makes it later and only removes server work (docs/optimiser.md).
    """
    m = device.n_layers
    local = device.local_prefix_ms(m)
    keep = []
    for c in range(m + 1):
        dominated = any(device.release_ms(c2) <= device.release_ms(c) + sum(device.server_ms[c:c2]) + TOL_MS
                        for c2 in range(c + 1, m + 1)) or (c < m and device.alone_ms(c) >= local)
        if not dominated:
            keep.append(c)
    return keep


def cut_sets_for(instance: Instance, fixed_cuts) -> list[list[int]]:
    if fixed_cuts is None:
        return [candidate_cuts(d) for d in instance.devices]
    return [[c] for c in check_cuts(instance, fixed_cuts)]


def independent_cuts(instance: Instance) -> list[int]:
    """Each device's best cut if it had the server to itself (smallest cut on ties)."""
    return [min(range(d.n_layers + 1), key=lambda c: (d.alone_ms(c), c)) for d in instance.devices]
