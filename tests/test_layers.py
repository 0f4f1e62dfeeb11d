"""The package's import structure: no cycle at module level, known function-level cycles only, and
light commands that stay light."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "lesionlib"
BENCHMARKS = ROOT / "benchmarks"
# Cycles through imports inside functions: none (the last two went with issue 14: Runner takes an executor,
# and the grid's sample check runs above Profile). A new one fails the test below.
KNOWN_CYCLES: set = set()


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(top_level_only: bool, pkg: Path = PKG) -> dict:
    """{module: {modules of the package `pkg` it imports}}, from the source (nothing is imported)."""
    graph, modules = {}, _modules(pkg)
    for path in sorted(pkg.rglob("*.py")):
        mod, deps = _module(path), set()
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{a.name}" for a in node.names]
                deps |= {n for n in names if (ROOT / (n.replace(".", "/") + ".py")).exists()}
                deps.add(target)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[mod] = {d for d in deps if d != mod and d in modules}
    return graph


def _modules(pkg: Path = PKG) -> set:
    return {_module(p) for p in pkg.rglob("*.py")}


def _cycles(graph: dict) -> set:
    """Pairs of modules that reach each other."""
    reach = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reach[start] = seen
    return {frozenset({a, b}) for a in graph for b in reach[a] if a != b and a in reach.get(b, ())}


def test_module_level_imports_have_no_cycle():
    assert _cycles(import_graph(top_level_only=True)) == set()


def test_no_new_cycle_through_function_level_imports():
    graph = import_graph(False)  # parsed once (it was re-parsed per edge: 17 s)
    direct = {frozenset({a, b}) for a, deps in graph.items() for b in deps if a in graph.get(b, ())}
    assert direct <= KNOWN_CYCLES, direct - KNOWN_CYCLES


def test_the_benchmarks_import_each_other_without_a_cycle():
    """benchmarks/ too, imports inside functions included (compute and throughput imported each other)."""
    graph = import_graph(False, BENCHMARKS)
    assert "benchmarks.compute" in graph["benchmarks.__main__"]  # the graph sees the package's own imports
    assert _cycles(graph) == set()


# The layers of docs/ARCHITECTURE.md, bottom first. A module imports only its own layer and those below,
# and the leaves (which import no lesionlib module). A new module needs a place here (and in the doc).
LEAVES = {"lesionlib", "lesionlib._quiet", "lesionlib.config", "lesionlib.costs", "lesionlib.fingerprint",
          "lesionlib.sphinxext"}
LAYERS = [
    {"data", "fixtures"},  # and every module below them
    {"device", "learner", "trainstep", "generic", "metrics", "cache"},
    {"profile"},
    {"experiment", "arms", "figures"},
    {"runner"},
    {"dispatch"},
    {"analysis", "report", "plots", "reference"},
    {"comparisons"},
    {"verdicts", "simulation"},
    {"grid", "pages", "plan", "buildlog", "cli", "notebooks", "page", "__main__"},
]


def layer(module: str) -> int:
    """The index in LAYERS of a lesionlib module."""
    name = module.removeprefix("lesionlib.")
    for i, names in enumerate(LAYERS):
        if name in names or name.split(".")[0] in names:
            return i
    raise AssertionError(f"{module} has no layer: add it to LAYERS here and to docs/ARCHITECTURE.md")


def upward_imports(graph: dict) -> dict:
    """{module: the modules of higher layers it imports}."""
    return {m: up for m, deps in graph.items() if m not in LEAVES
            and (up := {d for d in deps if d not in LEAVES and layer(d) > layer(m)})}


def test_every_import_points_down_the_layers_of_the_architecture():
    graph = import_graph(False)
    assert all(not graph[m] for m in LEAVES if m in graph and m != "lesionlib"), "a leaf imports lesionlib"
    assert all(layer(m) >= 0 for m in graph if m not in LEAVES)  # every module has its place
    assert upward_imports(graph) == {}
    # the test can fail: an upward import is caught
    assert upward_imports({**graph, "lesionlib.data.splits": {"lesionlib.learner"}}) == {
        "lesionlib.data.splits": {"lesionlib.learner"}}


@pytest.mark.parametrize("argv", [["cache", "check", "--cache", "CACHE"], ["grid", "--help"]])
def test_light_commands_do_not_import_torch(argv, tmp_path):
    from lesionlib.cache import RunCache
    RunCache(tmp_path).put({"role": "target", "x": 1}, {"recall": 1.0}, None)
    code = ("import sys\nfrom lesionlib.cli import main\n"
            f"try:\n    main({[a.replace('CACHE', str(tmp_path)) for a in argv]!r})\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nprint('light')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "light" in done.stdout, done.stderr[-2000:]


def test_a_page_whose_runs_are_finished_loads_no_fastai(tmp_path):
    """A figure page reads finished runs (cached, or trained by its Dask workers): fastai and torchvision load only
    in a process that trains (they were 3 of every page kernel's 5 s of imports)."""
    code = f"""
import sys
from lesionlib import analysis, page, plots, report, verdicts  # a figure page's imports
from lesionlib.arms import arm_spec
from lesionlib.profile import Profile, profile_values
from lesionlib.runner import Runner
P = Profile.from_mapping({{**profile_values("smoke"), "cache_dir": {str(tmp_path)!r}}})
spec = arm_spec(P, "base", "brain_to_lung", 24, 32, 0)  # no parent runs
runner = Runner(P, log=lambda m: None)
runner.cache.put(spec, {{"probs": [0.9, 0.2], "labels": [1, 0], "n_out": 1}}, None)
assert runner.run_all([spec])[0]["scores"]["recall"] == 1.0 and runner.trained == 0
heavy = sorted(m for m in ("fastai", "torchvision") if m in sys.modules)
assert not heavy, f"imported {{heavy}}"
print("light")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "light" in done.stdout, done.stderr[-2000:]
