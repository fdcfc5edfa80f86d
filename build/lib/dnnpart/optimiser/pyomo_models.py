"""The two Pyomo MILPs of the partitioning and offloading problem (docs/optimiser.md): "exact" and "paper"."""
from __future__ import annotations

import pyomo.environ as pyo

from dnnpart.optimiser.instance import Instance
from dnnpart.optimiser.schedule import TOL_MS


def classes_root(twin: dict, i: int) -> int:
    """The lowest-index device identical to device i."""
    while i in twin:
        i = twin[i]
    return i


def build_exact(instance: Instance, cut_sets) -> tuple[pyo.ConcreteModel, callable]:
    devs = instance.devices
    n = len(devs)
    m = pyo.ConcreteModel("dnnpart_exact")
    horizon = [d.local_prefix_ms(d.n_layers) for d in devs]  # no optimal completion is later (docs)
    m.z = pyo.Var([(i, c) for i in range(n) for c in cut_sets[i]], domain=pyo.Binary)
    m.C = pyo.Var(range(n), bounds=lambda _, i: (min(devs[i].alone_ms(c) for c in cut_sets[i]), horizon[i]))
    m.one_cut = pyo.Constraint(range(n), rule=lambda _, i: sum(m.z[i, c] for c in cut_sets[i]) == 1)
    first = [min(cs) for cs in cut_sets]  # layers first[i]+1..M_i may run on the server
    serv = [(i, j) for i in range(n) for j in range(first[i] + 1, devs[i].n_layers + 1)]
    m.s = pyo.Var(serv, bounds=lambda _, i, j: (0.0, horizon[i]))
    local_all = {i: (m.z[i, devs[i].n_layers] if devs[i].n_layers in cut_sets[i] else 0) for i in range(n)}

    def on_server(i, j):  # 1 if layer j of device i runs on the server
        return sum(m.z[i, c] for c in cut_sets[i] if c < j)

    def finish(i, j):  # finish of server layer j (equals its start when j runs locally)
        return m.s[i, j] + devs[i].server_ms[j - 1] * on_server(i, j)

    m.cons = pyo.ConstraintList()
    for i, d in enumerate(devs):
        m.cons.add(m.C[i] >= sum(m.z[i, c] * d.alone_ms(c) for c in cut_sets[i]))
        if first[i] == d.n_layers:
            continue
        for j in range(first[i] + 1, d.n_layers + 1):
            # earliest start of layer j given the cut: release plus the server work before it
            m.cons.add(m.s[i, j] >= sum(m.z[i, c] * (d.release_ms(c) + sum(d.server_ms[c:j - 1]))
                                        for c in cut_sets[i] if c < j))
            if j < d.n_layers:
                m.cons.add(m.s[i, j + 1] >= finish(i, j))
        m.cons.add(m.C[i] >= finish(i, d.n_layers) + d.download_ms * (1 - local_all[i]))
    # identical devices are interchangeable: order their completions (then only "i first" patterns remain)
    twin = {}
    for i in range(n):
        for p in range(i):
            if devs[p].same_task(devs[i]) and cut_sets[p] == cut_sets[i]:
                twin[i] = p
                break
    for i, p in twin.items():
        m.cons.add(m.C[p] <= m.C[i])
    # Energy cuts for each class of identical devices (ordered by completion): every device of the class up
    # to the k-th that is released at or after t0 is served within [t0, C_k].
    classes = {}
    for i in range(n):
        classes.setdefault(i if i not in twin else classes_root(twin, i), []).append(i)
    for members in classes.values():
        d = devs[members[0]]
        offl = [c for c in cut_sets[members[0]] if c < d.n_layers]
        for t0 in sorted({d.release_ms(c) for c in offl}):
            late = [c for c in offl if d.release_ms(c) >= t0 - TOL_MS]
            for k, i in enumerate(members):
                work = sum(m.z[g, c] * d.server_work_ms(c) for g in members[:k + 1] for c in late)
                m.cons.add(m.C[i] >= work + (t0 + d.download_ms) * sum(m.z[i, c] for c in late))
        for prev, i in zip(members, members[1:]):
            # both offload: the later-finishing one's last server layer runs after the other's completion
            m.cons.add(m.C[i] >= m.C[prev] + (d.server_ms[-1]) * (on_server(i, d.n_layers)
                                                                    + on_server(prev, d.n_layers) - 1))

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

    m.v = pyo.Var(pyo.Any, dense=False, domain=pyo.Binary)
    for i in range(n):
        if first[i] == devs[i].n_layers:
            continue
        for p in range(i + 1, n):
            if first[p] == devs[p].n_layers:
                continue
            symmetric = classes_root(twin, p) == classes_root(twin, i)
            # (a, b, k): b runs inside a's chain after a's layer k; k = first[a] means b entirely before a,
            # k = M_a means a entirely before b. Mirror patterns (a = p) need only interior k.
            options = [(i, p, k) for k in range(first[i], devs[i].n_layers + 1)]
            options += [(p, i, k) for k in range(first[p] + 1, devs[p].n_layers)]
            if symmetric:  # with C_i <= C_p only "i before p" and "i inside p" remain
                options = [(a, b, k) for a, b, k in options if a == p or k == devs[i].n_layers]
            options = [(a, b, k) for a, b, k in options if k in (first[a], devs[a].n_layers) or nest_fits(a, b, k)]
            relax = local_all[i] + local_all[p]
            chosen = []
            for a, b, k in options:
                var = m.v[a, b, k]
                chosen.append(var)
                big_a, big_b = horizon[a], horizon[b]  # bound every (phantom) start/finish of the device
                if k < devs[a].n_layers:  # a's layer k+1 waits for b's last server layer
                    m.cons.add(m.s[a, k + 1] >= finish(b, devs[b].n_layers) - big_b * (1 - var + relax))
                if k > first[a]:  # b's first server layer waits for a's layer k
                    m.cons.add(m.s[b, first[b] + 1] >= finish(a, k) - big_a * (1 - var + relax))
            m.cons.add(sum(chosen) == 1)
    m.obj = pyo.Objective(expr=sum(m.C[i] for i in range(n)) / n, sense=pyo.minimize)

    def extract():
        cuts = [max(cut_sets[i], key=lambda c: pyo.value(m.z[i, c])) for i in range(n)]
        starts = {(i, j): pyo.value(m.s[i, j]) for i, j in serv if j > cuts[i]}
        return cuts, starts

    return m, extract


def build_paper(instance: Instance, cut_sets) -> tuple[pyo.ConcreteModel, callable]:
    devs = instance.devices
    n = len(devs)
    m = pyo.ConcreteModel("dnnpart_paper")
    jobs = [(i, j) for i in range(n) for j in range(1, devs[i].n_layers + 1)]
    big = max(d.local_prefix_ms(d.n_layers) for d in devs) + max(max(d.server_ms) for d in devs)
    m.x = pyo.Var(jobs, domain=pyo.Binary)
    m.s = pyo.Var(jobs, domain=pyo.NonNegativeReals)  # eq. 5
    m.f = pyo.Var(jobs, domain=pyo.NonNegativeReals)
    m.cons = pyo.ConstraintList()
    for i, d in enumerate(devs):
        cs = cut_sets[i]
        for j in range(1, d.n_layers + 1):
            if len(cs) == 1:  # fixed cuts
                m.x[i, j].fix(1 if cs[0] < j else 0)
            if j < d.n_layers:
                m.cons.add(m.x[i, j] <= m.x[i, j + 1])  # a partition pattern is a cut
                m.cons.add(m.s[i, j + 1] >= m.s[i, j])  # eq. 11 (non-strict)
                m.cons.add(m.f[i, j + 1] >= m.f[i, j])  # eq. 12
                m.cons.add(m.s[i, j + 1] >= m.f[i, j])  # eq. 13
            m.cons.add(m.f[i, j] >= m.s[i, j] + (1 - m.x[i, j]) * d.local_ms[j - 1]
                       + m.x[i, j] * d.server_ms[j - 1])  # eq. 14
            # eq. 15 with the condition linearised: x_{i,j} - x_{i,j-1} is 1 exactly at the cut
            prev_x = m.x[i, j - 1] if j > 1 else 0
            prev_f = m.f[i, j - 1] if j > 1 else 0
            m.cons.add(m.s[i, j] >= prev_f + d.upload_ms[j - 1] * (m.x[i, j] - prev_x))
    m.o = pyo.Var(pyo.Any, dense=False, domain=pyo.Binary)
    for a, (i, j) in enumerate(jobs):  # eq. 16 as a big-M disjunction for every pair of server layers
        for (p, q) in jobs[a + 1:]:
            if p == i:
                continue
            both_off = 2 - m.x[i, j] - m.x[p, q]
            o = m.o[i, j, p, q]
            m.cons.add(m.f[i, j] <= m.s[p, q] + big * (1 - o) + big * both_off)
            m.cons.add(m.f[p, q] <= m.s[i, j] + big * o + big * both_off)
    completion = [m.f[i, d.n_layers] + d.download_ms * m.x[i, d.n_layers] for i, d in enumerate(devs)]
    m.obj = pyo.Objective(expr=sum(completion) / n, sense=pyo.minimize)  # eq. 4 / 10

    def extract():
        cuts = [sum(1 for j in range(1, d.n_layers + 1) if pyo.value(m.x[i, j]) < 0.5) for i, d in enumerate(devs)]
        starts = {(i, j): pyo.value(m.s[i, j]) for i, j in jobs if j > cuts[i]}
        return cuts, starts

    return m, extract
