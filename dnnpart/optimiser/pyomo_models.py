"""The two Pyomo MILPs of the partitioning and offloading problem (docs/optimiser.md): "exact" and "paper".

Each model is written in Pyomo's own idiom: upper-case Sets name what is indexed, lower-case Vars, and one
named, indexed Constraint per family of rows (skipped where a row does not apply), so `model.pprint()` and an
LP dump with symbolic labels read like the formulations in docs/optimiser.md.
"""

from __future__ import annotations

import itertools

import pyomo.environ as pyo

from dnnpart.optimiser.instance import Instance
from dnnpart.optimiser.schedule import TOL_MS


def classes_root(twin: dict, i: int) -> int:
    """The lowest-index device identical to device i."""
    while i in twin:
        i = twin[i]
    return i


def build_exact(instance: Instance, cut_sets) -> tuple[pyo.ConcreteModel, callable]:
    """The "exact" formulation: one-hot cuts z, server start times s, completions, laminar pair patterns v.

    Sets: DEVICES; CUTS (device, candidate cut); SERVER_LAYERS (device, layer that may run on the server);
    TWINS (lowest-index identical device, device); CLASS_NEIGHBOURS (consecutive identical devices);
    CLASS_RELEASES (device, q-th distinct release of its class); PAIRS of offloading-capable devices;
    PATTERNS (a, b, k): b's server part runs between a's layers k and k+1 (k = first cut: b entirely before
    a; k = M_a: a entirely before b).
    """
    devs = instance.devices
    n = len(devs)
    m = pyo.ConcreteModel("dnnpart_exact")
    horizon = [d.local_prefix_ms(d.n_layers) for d in devs]  # no optimal completion is later (docs)
    first = [min(cs) for cs in cut_sets]  # layers first[i]+1..M_i may run on the server
    last = [d.n_layers for d in devs]

    m.DEVICES = pyo.Set(initialize=range(n))
    m.CUTS = pyo.Set(dimen=2, initialize=[(i, c) for i in range(n) for c in cut_sets[i]])
    m.SERVER_LAYERS = pyo.Set(dimen=2, initialize=[(i, j) for i in range(n) for j in range(first[i] + 1, last[i] + 1)])

    m.z = pyo.Var(m.CUTS, domain=pyo.Binary)  # z[i, c] = 1: device i cuts after layer c
    m.completion_ms = pyo.Var(
        m.DEVICES, bounds=lambda _, i: (min(devs[i].alone_ms(c) for c in cut_sets[i]), horizon[i])
    )
    m.s = pyo.Var(m.SERVER_LAYERS, bounds=lambda _, i, j: (0.0, horizon[i]))  # start of server layer j
    local_all = {i: (m.z[i, last[i]] if last[i] in cut_sets[i] else 0) for i in range(n)}

    def on_server(i, j):  # 1 if layer j of device i runs on the server
        return sum(m.z[i, c] for c in cut_sets[i] if c < j)

    def finish(i, j):  # finish of server layer j (equals its start when j runs locally)
        return m.s[i, j] + devs[i].server_ms[j - 1] * on_server(i, j)

    @m.Constraint(m.DEVICES)
    def one_cut(m, i):
        return sum(m.z[i, c] for c in cut_sets[i]) == 1

    @m.Constraint(m.DEVICES)
    def completion_alone(m, i):  # no device finishes before it would with the server to itself
        return m.completion_ms[i] >= sum(m.z[i, c] * devs[i].alone_ms(c) for c in cut_sets[i])

    @m.Constraint(m.SERVER_LAYERS)
    def release(m, i, j):  # earliest start of layer j given the cut: release plus the server work before it
        d = devs[i]
        return m.s[i, j] >= sum(
            m.z[i, c] * (d.release_ms(c) + sum(d.server_ms[c : j - 1])) for c in cut_sets[i] if c < j
        )

    @m.Constraint(m.SERVER_LAYERS)
    def precedence(m, i, j):
        if j == last[i]:
            return pyo.Constraint.Skip
        return m.s[i, j + 1] >= finish(i, j)

    @m.Constraint(m.DEVICES)
    def completion(m, i):
        if first[i] == last[i]:  # all-local is the only candidate
            return pyo.Constraint.Skip
        return m.completion_ms[i] >= finish(i, last[i]) + devs[i].download_ms * (1 - local_all[i])

    # Identical devices are interchangeable: twin[i] is the lowest-index device identical to i (same task,
    # same candidates); completions are ordered within such a class (then only "i first" patterns remain).
    twin = {}
    for i in range(n):
        for p in range(i):
            if devs[p].same_task(devs[i]) and cut_sets[p] == cut_sets[i]:
                twin[i] = p
                break
    classes = {}
    for i in range(n):
        classes.setdefault(i if i not in twin else classes_root(twin, i), []).append(i)
    # Energy cuts per class (members ordered by completion): every member up to the k-th that is released at
    # or after t0 is served within [t0, C_k]. Row (i, q): i is the k-th member, t0 the class's q-th release.
    energy = {}
    for members in classes.values():
        d = devs[members[0]]
        offl = [c for c in cut_sets[members[0]] if c < d.n_layers]
        for q, t0 in enumerate(sorted({d.release_ms(c) for c in offl})):
            late = [c for c in offl if d.release_ms(c) >= t0 - TOL_MS]
            for k, i in enumerate(members):
                energy[i, q] = (members[: k + 1], late, t0)
    m.TWINS = pyo.Set(dimen=2, initialize=[(p, i) for i, p in twin.items()])
    m.CLASS_NEIGHBOURS = pyo.Set(
        dimen=2, initialize=[(prev, i) for members in classes.values() for prev, i in itertools.pairwise(members)]
    )
    m.CLASS_RELEASES = pyo.Set(dimen=2, initialize=list(energy))

    @m.Constraint(m.TWINS)
    def twin_order(m, p, i):
        return m.completion_ms[p] <= m.completion_ms[i]

    @m.Constraint(m.CLASS_RELEASES)
    def energy_cut(m, i, q):
        members, late, t0 = energy[i, q]
        d = devs[members[0]]
        work = sum(m.z[g, c] * d.server_work_ms(c) for g in members for c in late)
        return m.completion_ms[i] >= work + (t0 + d.download_ms) * sum(m.z[i, c] for c in late)

    @m.Constraint(m.CLASS_NEIGHBOURS)
    def twin_last_layer(m, prev, i):  # both offload: i's last server layer runs after prev's completion
        d = devs[classes_root(twin, i)]
        return m.completion_ms[i] >= m.completion_ms[prev] + d.server_ms[-1] * (
            on_server(i, d.n_layers) + on_server(prev, d.n_layers) - 1
        )

    def nest_fits(a, b, k):
        """Can b's whole server part run between a's layers k and k+1 with both done by their all-local
        times? (Time windows only; a pattern that fails here cannot be optimal.)"""
        da, db = devs[a], devs[b]
        offload_b = [c for c in cut_sets[b] if c < db.n_layers]
        earliest_end_b = min(db.release_ms(c) + db.server_work_ms(c) for c in offload_b)
        latest_resume_a = horizon[a] - da.download_ms - da.server_work_ms(k)
        earliest_k_a = min(da.release_ms(c) + sum(da.server_ms[c:k]) for c in cut_sets[a] if c < k)
        latest_start_b = max(horizon[b] - db.download_ms - db.server_work_ms(c) for c in offload_b)
        return earliest_end_b <= latest_resume_a + TOL_MS and earliest_k_a <= latest_start_b + TOL_MS

    pairs, patterns = [], {}  # patterns[i, p]: the (a, b, k) left for the pair
    for i in range(n):
        if first[i] == last[i]:
            continue
        for p in range(i + 1, n):
            if first[p] == last[p]:
                continue
            # Mirror patterns (a = p) need only interior k.
            options = [(i, p, k) for k in range(first[i], last[i] + 1)]
            options += [(p, i, k) for k in range(first[p] + 1, last[p])]
            if classes_root(twin, p) == classes_root(twin, i):  # C_i <= C_p: "i before p" and "i inside p"
                options = [(a, b, k) for a, b, k in options if a == p or k == last[i]]
            options = [(a, b, k) for a, b, k in options if k in (first[a], last[a]) or nest_fits(a, b, k)]
            pairs.append((i, p))
            patterns[i, p] = options
    m.PAIRS = pyo.Set(dimen=2, initialize=pairs)
    m.PATTERNS = pyo.Set(dimen=3, initialize=[abk for pair in pairs for abk in patterns[pair]])
    m.v = pyo.Var(m.PATTERNS, domain=pyo.Binary)  # v[a, b, k] = 1: the pair follows this pattern

    def relax(a, b):  # the pair's pattern rows are void when either device runs all-local
        return local_all[a] + local_all[b]

    @m.Constraint(m.PAIRS)
    def pattern_choice(m, i, p):
        return sum(m.v[a, b, k] for a, b, k in patterns[i, p]) == 1

    # Big-M values: every (phantom) start or finish of a device lies within its all-local time.
    @m.Constraint(m.PATTERNS)
    def pattern_before(m, a, b, k):  # b runs before a's layer k+1: that layer waits for b's last server layer
        if k == last[a]:
            return pyo.Constraint.Skip
        return m.s[a, k + 1] >= finish(b, last[b]) - horizon[b] * (1 - m.v[a, b, k] + relax(a, b))

    @m.Constraint(m.PATTERNS)
    def pattern_after(m, a, b, k):  # b runs after a's layer k: b's first server layer waits for it
        if k == first[a]:
            return pyo.Constraint.Skip
        return m.s[b, first[b] + 1] >= finish(a, k) - horizon[a] * (1 - m.v[a, b, k] + relax(a, b))

    m.mean_completion = pyo.Objective(expr=sum(m.completion_ms[i] for i in m.DEVICES) / n, sense=pyo.minimize)

    def extract():
        cuts = [max(cut_sets[i], key=lambda c: pyo.value(m.z[i, c])) for i in range(n)]
        starts = {(i, j): pyo.value(m.s[i, j]) for i, j in m.SERVER_LAYERS if j > cuts[i]}
        return cuts, starts

    return m, extract


def build_paper(instance: Instance, cut_sets) -> tuple[pyo.ConcreteModel, callable]:
    """The "paper" formulation: eq. 10-16 of Gao et al. as written, one constraint family per equation.

    Sets: DEVICES; JOBS (device, layer), every layer of every device; LAYER_PAIRS (i, j, p, q), layers of
    different devices, each pair once; ORDERS, the two sides of eq. 16's disjunction ("ij_first": o = 1,
    layer (i, j) ends before (p, q) starts; "pq_first": o = 0).
    """
    devs = instance.devices
    n = len(devs)
    m = pyo.ConcreteModel("dnnpart_paper")
    last = [d.n_layers for d in devs]
    jobs = [(i, j) for i in range(n) for j in range(1, last[i] + 1)]
    # eq. 16's big-M: no optimal schedule needs a start or finish later than this (docs/optimiser.md)
    big = max(d.local_prefix_ms(d.n_layers) for d in devs) + max(max(d.server_ms) for d in devs)

    m.DEVICES = pyo.Set(initialize=range(n))
    m.JOBS = pyo.Set(dimen=2, initialize=jobs)
    m.LAYER_PAIRS = pyo.Set(
        dimen=4, initialize=[(i, j, p, q) for a, (i, j) in enumerate(jobs) for p, q in jobs[a + 1 :] if p != i]
    )
    m.ORDERS = pyo.Set(initialize=["ij_first", "pq_first"])

    m.x = pyo.Var(m.JOBS, domain=pyo.Binary)  # x[i, j] = 1: layer j of device i runs on the server
    m.s = pyo.Var(m.JOBS, domain=pyo.NonNegativeReals)  # eq. 5
    m.f = pyo.Var(m.JOBS, domain=pyo.NonNegativeReals)
    for i, j in jobs:
        if len(cut_sets[i]) == 1:  # fixed cuts
            m.x[i, j].fix(1 if cut_sets[i][0] < j else 0)

    @m.Constraint(m.JOBS)
    def cut_pattern(m, i, j):  # a partition pattern is a cut: once on the server, the rest follows
        return pyo.Constraint.Skip if j == last[i] else m.x[i, j] <= m.x[i, j + 1]

    @m.Constraint(m.JOBS)
    def eq11_start_order(m, i, j):  # non-strict
        return pyo.Constraint.Skip if j == last[i] else m.s[i, j + 1] >= m.s[i, j]

    @m.Constraint(m.JOBS)
    def eq12_finish_order(m, i, j):
        return pyo.Constraint.Skip if j == last[i] else m.f[i, j + 1] >= m.f[i, j]

    @m.Constraint(m.JOBS)
    def eq13_precedence(m, i, j):
        return pyo.Constraint.Skip if j == last[i] else m.s[i, j + 1] >= m.f[i, j]

    @m.Constraint(m.JOBS)
    def eq14_finish(m, i, j):
        d = devs[i]
        return m.f[i, j] >= m.s[i, j] + (1 - m.x[i, j]) * d.local_ms[j - 1] + m.x[i, j] * d.server_ms[j - 1]

    @m.Constraint(m.JOBS)
    def eq15_upload(m, i, j):  # the condition linearised: x[i, j] - x[i, j-1] is 1 exactly at the cut
        prev_x = m.x[i, j - 1] if j > 1 else 0
        prev_f = m.f[i, j - 1] if j > 1 else 0
        return m.s[i, j] >= prev_f + devs[i].upload_ms[j - 1] * (m.x[i, j] - prev_x)

    m.o = pyo.Var(m.LAYER_PAIRS, domain=pyo.Binary)  # o = 1: layer (i, j) runs before layer (p, q)

    @m.Constraint(m.LAYER_PAIRS, m.ORDERS)
    def eq16_no_overlap(m, i, j, p, q, order):  # void unless both layers run on the server
        both_off = 2 - m.x[i, j] - m.x[p, q]
        if order == "ij_first":
            return m.f[i, j] <= m.s[p, q] + big * (1 - m.o[i, j, p, q]) + big * both_off
        return m.f[p, q] <= m.s[i, j] + big * m.o[i, j, p, q] + big * both_off

    completion = [m.f[i, last[i]] + d.download_ms * m.x[i, last[i]] for i, d in enumerate(devs)]
    m.mean_completion = pyo.Objective(expr=sum(completion) / n, sense=pyo.minimize)  # eq. 4 / 10

    def extract():
        cuts = [sum(1 for j in range(1, d.n_layers + 1) if pyo.value(m.x[i, j]) < 0.5) for i, d in enumerate(devs)]
        starts = {(i, j): pyo.value(m.s[i, j]) for i, j in jobs if j > cuts[i]}
        return cuts, starts

    return m, extract
