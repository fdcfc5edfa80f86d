"""best_server_order's fast path against the implementation it replaced (kept here, verbatim but for its name,
as the reference): the same nodes visited, so the same node count, the same best total to the last bit and
the same order, on random small instances (zeros and ties included) and on zoo networks."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_oracle_property import SETTINGS, instances

from dnnpart.optimiser import best_server_order
from dnnpart.optimiser.instance import Device, Instance
from dnnpart.optimiser.relaxation import BudgetExhausted, srpt_total_ms
from dnnpart.optimiser.schedule import suffix_sums
from dnnpart.planning.compile import network_instance


def reference_best_server_order(instance, cuts, cutoff_ms, counter, max_nodes, clock=None):
    """dnnpart.optimiser.exact_search.best_server_order as of commit 809b4f5 (devices and dicts per node)."""
    devs = instance.devices
    active = [i for i, (d, c) in enumerate(zip(devs, cuts)) if c < d.n_layers]
    done0 = sum(d.local_prefix_ms(c) for d, c in zip(devs, cuts) if c == d.n_layers)
    tail = {i: suffix_sums(devs[i].server_ms) for i in active}
    nxt = {i: cuts[i] for i in active}
    ready = {i: devs[i].release_ms(cuts[i]) for i in active}
    best = [cutoff_ms, None]
    order, seen = [], {}

    def enter(t, done, left):
        """Count a node and bound it; its children (device, layer index, ready time before, finish, sum of
        finished completions) in visiting order, or None for a leaf or a pruned node."""
        counter[0] += 1
        if counter[0] > max_nodes:
            raise BudgetExhausted("nodes")
        if clock is not None:
            clock.check(counter[0])
        if left == 0:
            if done < best[0]:
                best[0], best[1] = done, list(order)
            return None
        live = [i for i in active if nxt[i] < devs[i].n_layers]
        rest = srpt_total_ms([(max(t, ready[i]), tail[i][nxt[i]]) for i in live])
        if done + rest + sum(devs[i].download_ms for i in live) >= best[0]:
            return None
        front = seen.setdefault(tuple(nxt[i] for i in active), [])
        if any(t2 <= t and d2 <= done for t2, d2 in front):
            return None
        front.append((t, done))
        first_end = min(max(t, ready[i]) + devs[i].server_ms[nxt[i]] for i in live)
        branch = [
            i for i in live if max(t, ready[i]) < first_end or max(t, ready[i]) + devs[i].server_ms[nxt[i]] == first_end
        ]
        branch.sort(key=lambda i: (ready[i] > t, tail[i][nxt[i]], i))  # dispatch's choice first
        children = []
        for i in branch:
            j = nxt[i]
            finish = max(t, ready[i]) + devs[i].server_ms[j]
            last = j + 1 == devs[i].n_layers
            children.append((i, j, ready[i], finish, done + (finish + devs[i].download_ms if last else 0.0)))
        return children

    # Depth-first with an explicit stack (one server layer per level: deep chains would overflow Python's
    # recursion limit); each frame is [children, next child, layers left]; the child in progress is applied
    # to nxt/ready/order and undone when the stack returns to its frame.
    layers = sum(devs[i].n_layers - cuts[i] for i in active)
    root = enter(0.0, done0, layers)
    stack = [] if root is None else [[root, 0, layers]]
    while stack:
        frame = stack[-1]
        children, k, left = frame
        if k > 0:  # undo the previous child
            i, j, saved = children[k - 1][:3]
            order.pop()
            nxt[i], ready[i] = j, saved
        if k == len(children):
            stack.pop()
            continue
        frame[1] = k + 1
        i, j, _, finish, done = children[k]
        nxt[i], ready[i] = j + 1, finish
        order.append((i, j + 1))
        grandchildren = enter(finish, done, left - 1)
        if grandchildren is not None:
            stack.append([grandchildren, 0, left - 1])
    return None if best[1] is None else (best[0], best[1])


def both(inst, cuts, cutoff=float("inf"), max_nodes=10**7):
    """(result, nodes counted) of the reference and of the library, or ("budget", nodes) if it ran out."""
    out = []
    for search in (reference_best_server_order, best_server_order):
        counter = [0]
        try:
            out.append((search(inst, cuts, cutoff, counter, max_nodes), counter[0]))
        except BudgetExhausted:
            out.append(("budget", counter[0]))
    return out


@settings(max_examples=150, **SETTINGS)
@given(instances(), st.randoms(use_true_random=False), st.sampled_from([float("inf"), 0.9, 1.0]))
def test_same_nodes_and_result_as_the_reference(inst, rnd, cutoff_share):
    cuts = [rnd.randint(0, d.n_layers) for d in inst.devices]
    ref, _ = both(inst, cuts)
    # a cutoff at or just below the reference's optimum (nothing strictly better: both return None)
    cutoff = cutoff_share if cutoff_share == float("inf") else cutoff_share * (ref[0][0] if ref[0] else 1.0)
    ref, new = both(inst, cuts, cutoff)
    assert new == ref


def test_same_nodes_and_result_on_zoo_networks():
    # different zoo devices at different rates, random cuts; a node budget cuts the biggest searches short at
    # the same node in both
    rng = random.Random(0)
    for trial in range(12):
        devices = []
        for k in range(rng.randint(2, 5)):
            one = network_instance(
                rng.choice(["lenet", "alexnet", "resnet18", "mobilenet_v2"]),
                1,
                rng.choice([1.0, 5.0, 20.0]),
                rng.choice([0.0, 0.3]),
                "paper",
            ).devices[0]
            devices.append(Device(f"d{k}", one.local_ms, one.server_ms, one.upload_ms, one.download_ms))
        inst = Instance(tuple(devices))
        cuts = [rng.randint(0, min(4, d.n_layers)) for d in inst.devices]
        ref, new = both(inst, cuts, max_nodes=200_000)
        assert new == ref, trial
        assert ref[1] > 1


def test_zero_work_devices_take_the_general_path():
    # a device with no server work left (zero-time layers) finishes as soon as it is ready, in both versions
    inst = Instance((Device("a", [1, 1], [0, 0], [0, 0]), Device("b", [1, 1], [3, 4], [0, 0])))
    ref, new = both(inst, [0, 0])
    assert new == ref and ref[0][0] == pytest.approx(0.0 + 7.0)
