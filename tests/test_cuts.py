"""candidate_cuts in O(M) against its definition (quadratic in M, written out here as the oracle)."""
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
    return [c for c in range(m + 1)
            if not (any(d.release_ms(c2) <= d.release_ms(c) + sum(d.server_ms[c:c2]) + TOL_MS
                        for c2 in range(c + 1, m + 1)) or (c < m and d.alone_ms(c) >= local))]


def random_device(rng: random.Random, m: int) -> Device:
    return Device("d", [rng.choice([0.0, rng.uniform(0, 50)]) for _ in range(m)],
                  [rng.choice([0.0, rng.uniform(0, 10)]) for _ in range(m)],
                  [rng.uniform(0, 80) for _ in range(m)], rng.choice([0.0, rng.uniform(0, 5)]))


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
