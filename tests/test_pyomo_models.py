"""The Pyomo MILPs read like docs/optimiser.md: named Sets and constraint families (no anonymous ConstraintList),
visible in an LP dump, and both still reach the interleaving example's documented optimum."""

import json
import re

import pyomo.environ as pyo
import pytest

from dnnpart.optimiser import solve
from dnnpart.optimiser.cuts import cut_sets_for
from dnnpart.optimiser.instance import load_instance
from dnnpart.optimiser.pyomo_models import build_exact, build_paper
from dnnpart.paths import PROJ_ROOT

EXAMPLE = PROJ_ROOT / "tests" / "data" / "interleaving-example.json"

EXACT_SETS = ["DEVICES", "CUTS", "SERVER_LAYERS", "TWINS", "CLASS_NEIGHBOURS", "CLASS_RELEASES", "PAIRS", "PATTERNS"]
EXACT_FAMILIES = [
    "one_cut",
    "completion_alone",
    "release",
    "precedence",
    "completion",
    "twin_order",
    "energy_cut",
    "twin_last_layer",
    "pattern_choice",
    "pattern_before",
    "pattern_after",
]
PAPER_SETS = ["DEVICES", "JOBS", "LAYER_PAIRS", "ORDERS"]
PAPER_FAMILIES = [
    "cut_pattern",
    "eq11_start_order",
    "eq12_finish_order",
    "eq13_precedence",
    "eq14_finish",
    "eq15_upload",
    "eq16_no_overlap",
]


@pytest.fixture(scope="module")
def inst():
    return load_instance(EXAMPLE)


def build(inst, formulation):
    if formulation == "exact":
        return build_exact(inst, cut_sets_for(inst, None))[0]
    return build_paper(inst, [list(range(d.n_layers + 1)) for d in inst.devices])[0]


def family_sizes(model) -> dict:
    return {c.local_name: len(c) for c in model.component_objects(pyo.Constraint, active=True)}


@pytest.mark.parametrize(
    "formulation,sets,families", [("exact", EXACT_SETS, EXACT_FAMILIES), ("paper", PAPER_SETS, PAPER_FAMILIES)]
)
def test_named_sets_and_constraint_families(inst, formulation, sets, families):
    model = build(inst, formulation)
    assert [
        s.local_name for s in model.component_objects(pyo.Set) if s.parent_component() is s and s.local_name.isupper()
    ] == sets
    assert list(family_sizes(model)) == families
    assert not any(isinstance(c, pyo.ConstraintList) for c in model.component_objects(pyo.Constraint))
    # every family is indexed by the named Sets (eq. 16: layer pairs x the two sides of the disjunction)
    for family in model.component_objects(pyo.Constraint):
        assert {s.local_name for s in family.index_set().subsets()} <= set(sets), family.local_name


def test_exact_model_rows_on_the_example(inst):
    # A (4 layers) keeps every cut, B (3 layers) cuts 2 or 3 (docs: dominance), so A's layers 1-4 and B's
    # layer 3 may run on the server; one pair of devices, no identical devices (no twin rows)
    model = build(inst, "exact")
    assert list(model.CUTS) == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (1, 3)]
    assert list(model.SERVER_LAYERS) == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 3)]
    assert list(model.PAIRS) == [(0, 1)]
    sizes = family_sizes(model)
    assert sizes["one_cut"] == 2 and sizes["release"] == 5 and sizes["precedence"] == 3  # no row after a last layer
    assert sizes["twin_order"] == sizes["twin_last_layer"] == 0
    # each pattern has a "before" row unless b runs after a's last layer, an "after" row unless b runs first
    patterns = list(model.PATTERNS)
    assert sizes["pattern_before"] == sum(k < (4 if a == 0 else 3) for a, _, k in patterns)
    assert sizes["pattern_after"] == sum(k > (0 if a == 0 else 2) for a, _, k in patterns)
    assert (0, 1, 3) in patterns  # the optimum: B's server part between A's layers 3 and 4


def test_paper_model_rows_on_the_example(inst):
    model = build(inst, "paper")
    assert len(model.JOBS) == 7 and len(model.LAYER_PAIRS) == 4 * 3  # layers of different devices, once
    sizes = family_sizes(model)
    assert sizes["eq14_finish"] == sizes["eq15_upload"] == 7
    assert sizes["eq11_start_order"] == sizes["eq13_precedence"] == sizes["cut_pattern"] == 7 - 2
    assert sizes["eq16_no_overlap"] == 2 * 12  # both sides of the disjunction per pair


@pytest.mark.parametrize("formulation,families", [("exact", EXACT_FAMILIES), ("paper", PAPER_FAMILIES)])
def test_lp_dump_names_the_families(inst, formulation, families, tmp_path):
    model = build(inst, formulation)
    path = tmp_path / f"{formulation}.lp"
    model.write(str(path), io_options={"symbolic_solver_labels": True})
    text = path.read_text()
    rows = set(re.findall(r"^c_[a-z]_([a-z0-9_]+?)\(", text, flags=re.MULTILINE))
    assert rows == {f for f, size in family_sizes(model).items() if size} and rows <= set(families)
    assert "c_e_one_cut(0)_" in text or formulation == "paper"
    assert "c_u_eq16_no_overlap(0_1_1_2_ij_first)_" in text or formulation == "exact"


@pytest.mark.parametrize("formulation", ["exact", "paper"])
def test_documented_optimum(inst, formulation):
    documented = json.loads(EXAMPLE.read_text())["optimum_avg_delay_ms"]
    sol = solve(inst, formulation, warm_start=False)  # the MILP itself, without the heuristic's help
    assert documented == 71.0
    assert sol.avg_delay_ms == pytest.approx(documented, abs=1e-6) and sol.proven_optimal
    assert sol.cuts == [0, 2]
