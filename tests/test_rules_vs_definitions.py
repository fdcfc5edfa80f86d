"""Fast versions of the optimiser's rules (candidate cuts in O(M), dispatch with heaps) against their definitions."""

import random

import pytest

from dnnpart.optimiser import candidate_cuts
from dnnpart.optimiser.instance import Device
from dnnpart.optimiser.schedule import TOL_MS
from dnnpart.planning.compile import network_instance


def candidate_cuts_by_definition(d: Device) -> list[int]:
    """c is dropped if a later cut arrives no later than c's server could finish it, or if c alone is not
    faster than all-local (docs/optimiser.md)."""
    m, local = d.n_layers, d.local_prefix_ms(d.n_layers)
    return [
        c
        for c in range(m + 1)
        if not (
            any(d.release_ms(c2) <= d.release_ms(c) + sum(d.server_ms[c:c2]) + TOL_MS for c2 in range(c + 1, m + 1))
            or (c < m and d.alone_ms(c) >= local)
        )
    ]


def random_device(rng: random.Random, m: int) -> Device:
    return Device(
        "d",
        [rng.choice([0.0, rng.uniform(0, 50)]) for _ in range(m)],
        [rng.choice([0.0, rng.uniform(0, 10)]) for _ in range(m)],
        [rng.uniform(0, 80) for _ in range(m)],
        rng.choice([0.0, rng.uniform(0, 5)]),
    )


def test_equals_the_definition_on_random_devices():
    rng = random.Random(7)
    for _ in range(300):
        d = random_device(rng, rng.randint(1, 25))
        assert candidate_cuts(d) == candidate_cuts_by_definition(d)


@pytest.mark.parametrize("network", ["lenet", "alexnet", "vgg16"])
@pytest.mark.parametrize("mbps", [0.25, 2.5, 50.0])
def test_equals_the_definition_on_the_zoo(network, mbps):
    d = network_instance(network, 1, mbps, 0.0, "paper").devices[0]
    assert candidate_cuts(d) == candidate_cuts_by_definition(d)


def test_the_longest_accepted_network():
    """The cubic rule took seconds per device at 2,000 layers; the linear one handles the largest device an
    instance accepts (dnnpart.limits.MAX_LAYERS) and still keeps all-local and drops dominated cuts."""
    from dnnpart.limits import MAX_LAYERS

    d = random_device(random.Random(1), MAX_LAYERS)
    cuts = candidate_cuts(d)
    assert cuts[-1] == MAX_LAYERS and cuts == sorted(set(cuts)) and len(cuts) < MAX_LAYERS + 1


def dispatch_by_scanning(instance, cuts):
    """The list-scheduling rule written as a scan of every device per layer (the definition)."""
    from dnnpart.optimiser.schedule import Schedule, suffix_sums

    devs = instance.devices
    release = [d.release_ms(c) for d, c in zip(devs, cuts)]
    nxt = {i: c for i, (d, c) in enumerate(zip(devs, cuts)) if c < d.n_layers}
    tail = {i: suffix_sums(devs[i].server_ms) for i in nxt}
    ready = {i: release[i] for i in nxt}
    t, order = 0.0, []
    while nxt:
        avail = [i for i in nxt if ready[i] <= t + TOL_MS]
        if not avail:
            t = min(ready[i] for i in nxt)
            continue
        i = min(avail, key=lambda k: (tail[k][nxt[k]], release[k], k))
        j = nxt[i]
        t = max(t, ready[i]) + devs[i].server_ms[j]
        ready[i] = t
        order.append((i, j + 1))
        nxt[i] += 1
        if nxt[i] == devs[i].n_layers:
            del nxt[i]
    return Schedule(instance, cuts, order)


def test_dispatch_with_heaps_equals_the_scan():
    from dnnpart.optimiser.heuristic import dispatch
    from dnnpart.optimiser.instance import Instance

    rng = random.Random(11)
    for _ in range(200):
        devs = [random_device(rng, rng.randint(1, 8)) for _ in range(rng.randint(1, 9))]
        inst = Instance(
            [Device(f"d{i}", d.local_ms, d.server_ms, d.upload_ms, d.download_ms) for i, d in enumerate(devs)]
        )
        if rng.random() < 0.3:  # twins: ties broken by release, then device order
            inst = Instance([Device(f"t{i}", devs[0].local_ms, devs[0].server_ms, devs[0].upload_ms) for i in range(5)])
        cuts = [rng.randint(0, d.n_layers) for d in inst.devices]
        assert dispatch(inst, cuts).server_order == dispatch_by_scanning(inst, cuts).server_order
