"""The layout's promises: no import cycles, data flowing one way between the parts, a light `import dnnpart`."""

import ast
import subprocess
import sys

from dnnpart import paths

PACKAGE = paths.PROJ_ROOT / "dnnpart"
# The parts in the order data flows through them; a part may import only parts listed before it.
# `cli` sits on top of everything; the shared modules (errors, paths, files, vocabulary) below everything.
SHARED = [
    "dnnpart.errors",
    "dnnpart.paths",
    "dnnpart.files",
    "dnnpart.vocabulary",
    "dnnpart.pages",
    "dnnpart.limits",
    "dnnpart.input_files",
    "dnnpart.parallel",
]
FLOW = ["networks", "delay", "optimiser", "planning", "runtime", "testbed", "study"]


def module_name(path) -> str:
    parts = list(path.relative_to(paths.PROJ_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path) -> set[str]:
    """Every dnnpart module a file imports, at module level or inside functions (`from a import b` counts as
    importing a.b when a.b is a module, else a)."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dnnpart")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dnnpart"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def find_cycle(graph: dict[str, set[str]]):
    """A list of modules that import each other in a ring, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt not in graph:
                continue
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (ring := visit(nxt)):
                return ring
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (ring := visit(node)):
            return ring
    return None


def test_find_cycle_finds_a_ring():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_imports_a_module_that_imports_it_back():
    graph = import_graph()
    assert "dnnpart.optimiser.solver" in graph and "dnnpart.study.sweeps" in graph  # the walk found the tree
    assert find_cycle(graph) is None


def part_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FLOW else None


def test_data_flows_one_way_between_the_parts():
    backwards = []
    for module, imported in import_graph().items():
        here = part_of(module)
        if here is None:
            continue
        for target in imported:
            there = part_of(target)
            if target == "dnnpart.cli" or (there is not None and FLOW.index(there) > FLOW.index(here)):
                backwards.append(f"{module} -> {target}")
    assert backwards == []


def test_shared_modules_import_no_part():
    graph = import_graph()
    for module in SHARED:
        assert all(target in SHARED for target in graph[module]), (module, graph[module])


def test_import_dnnpart_is_light():
    """No notebook, Jupyter, plotting or solver package is loaded by `import dnnpart` (entry points load lazily)."""
    code = (
        "import sys, dnnpart; heavy = ['IPython', 'jupyter_client', 'papermill', 'nbformat', 'matplotlib', "
        "'seaborn', 'pyomo', 'statsmodels', 'onnx', 'onnxruntime', 'dask', 'distributed', 'pyarrow']; "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
    code = "import dnnpart, sys; dnnpart.solve; print('pyomo' in sys.modules, 'IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]  # the optimiser needs Pyomo, never Jupyter
