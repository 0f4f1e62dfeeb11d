"""What decides a run's result besides its specification, as hashes for cache keys and page fingerprints.

A trained model depends on its specification (data, sizes, seeds, settings, starting model) and on
the *environment*: the code that prepares data, trains and predicts, the versions of the libraries
that code calls, and the device type and numeric precision it ran in. `run_env` describes the
environment in a few fields that every model specification carries, so the run cache never serves a
result made by other code or on another kind of device.

Code is compared by its syntax tree with docstrings removed, so editing a comment, a docstring or the
layout keeps every key (and the finished grid); changing what the code does changes them all.
This module imports neither torch nor fastai.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import textwrap
import threading
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# The roots of the code that turns a run specification into its result: data generation and preparation,
# the splits, Learn / Transfer / Predict, G, and the Runner methods that connect them. The run key hashes
# them and every lesionlib definition they reach (`training_sources`), so a helper cannot be left out.
TRAINING_CODE = (
    "lesionlib.config",
    "lesionlib.learner",
    "lesionlib.device",
    "lesionlib.trainstep",
    "lesionlib.generic",
    "lesionlib.data.lesions",
    "lesionlib.data.prep",
    "lesionlib.data.phantom",
    "lesionlib.data.registry",
    "lesionlib.data.splits",
    "lesionlib.runner:Runner.dataset",
    "lesionlib.runner:Runner.training_set",
    "lesionlib.runner:Runner.test_set",
    "lesionlib.runner:Runner.config",
    "lesionlib.runner:Runner.model",
    "lesionlib.runner:Runner._train",
    "lesionlib.runner:Runner._train_generic",
)
# Reached from that code but not deciding what a run stores: its scores (recomputed from the stored probabilities
# whenever a result is read: a scoring change must not retrain the grid), log text, and the cache lookups that
# fetch (or train, through `_train`) a parent. `training_sources` follows everything else the roots reach.
NOT_TRAINING = ("lesionlib.runner:scored", "lesionlib.experiment:describe", "lesionlib.runner:Runner.result",
                "lesionlib.runner:Runner.ensure")
# Distributions whose version can change a trained model (kernels, initialisers, resampling, generators).
LIBRARIES = ("torch", "torchvision", "fastai", "numpy", "scipy", "scikit-image")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Remove the docstring of the module and of every class and function (they document, not compute)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


# CPython 3.11's parser is not safe in two threads at once ("SystemError: AST constructor recursion depth
# mismatch", seen when `lesionlib grid` fingerprinted two pages side by side): one parse at a time.
_PARSE = threading.Lock()


def normalised(source: str) -> str:
    """The syntax tree of `source` without comments, docstrings or layout, as text."""
    with _PARSE:
        tree = _strip_docstrings(ast.parse(textwrap.dedent(source)))
        return ast.dump(tree, annotate_fields=False, include_attributes=False)


def code_fingerprint(sources: dict) -> str:
    """A SHA-256 over {name: source text}, insensitive to comments, docstrings and formatting."""
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + normalised(sources[name]).encode() + b"\0")
    return h.hexdigest()


def _source_of(entry: str) -> str:
    """Source text of a module ('pkg.mod') or of one of its classes or functions ('pkg.mod:Class.method').

    Read from the module's file, not imported: a page that only computes run keys never loads fastai."""
    modname, _, qual = entry.partition(":")
    spec = importlib.util.find_spec(modname)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ImportError(f"training code {entry!r}: no Python source file for module {modname}")
    text = Path(spec.origin).read_text()
    if not qual:
        return text
    with _PARSE:
        body = ast.parse(text).body
    for part in qual.split("."):
        node = next((n for n in reversed(body)  # the last definition of a name is the one that runs
                     if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == part), None)
        if node is None:
            raise ImportError(f"training code {entry!r}: {modname} defines no class or function {part}")
        body = node.body
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])  # decorators, as inspect.getsource
    return "".join(text.splitlines(keepends=True)[first - 1:node.end_lineno])


# ------------------------------------------------------------------ the closure of the training code

PACKAGE = Path(__file__).resolve().parent


class _Module:
    """One lesionlib module read from its file: its top-level definitions and the names it imports."""

    def __init__(self, name: str, root: Path):
        rel = root.joinpath(*name.split(".")[1:])
        self.path = rel / "__init__.py" if (rel / "__init__.py").is_file() else rel.with_suffix(".py")
        self.name, self.text = name, self.path.read_text()
        self.package = name if self.path.name == "__init__.py" else name.rpartition(".")[0]
        with _PARSE:
            self.tree = ast.parse(self.text)
        self.defs: dict = {}
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defs[node.name] = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(t, ast.Name):
                        self.defs[t.id] = node
        self.imports = self.bindings(self.tree.body)

    def bindings(self, nodes) -> dict:
        """{local name: (lesionlib module, attribute or None)} bound by the import statements in `nodes`."""
        out = {}
        for node in (n for top in nodes for n in ast.walk(top)):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = self.package.split(".")
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.split(".")[0] == "lesionlib":
                    out.update({a.asname or a.name: (mod, a.name) for a in node.names})
            elif isinstance(node, ast.Import):
                out.update({a.asname or a.name.split(".")[0]: (a.name if a.asname else a.name.split(".")[0], None)
                            for a in node.names if a.name.split(".")[0] == "lesionlib"})
        return out

    def source(self, node) -> str:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return "".join(self.text.splitlines(keepends=True)[first - 1:node.end_lineno])


def _annotation(node) -> ast.AST:
    """The type annotation a node carries (an empty tuple node when none)."""
    note = getattr(node, "annotation", None) if isinstance(node, (ast.arg, ast.AnnAssign)) else \
        getattr(node, "returns", None) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
    return note if note is not None else ast.Tuple(elts=[], ctx=ast.Load())


class _Closure:
    """The lesionlib code statically reachable from roots: names they use, resolved through imports and
    re-exports, methods reached through `self.`, module constants; read from the files, never imported."""

    def __init__(self, root: Path):
        self.root, self.modules, self.sources, self.whole = root, {}, {}, set()

    def module(self, name: str) -> _Module | None:
        if name not in self.modules:
            rel = self.root.joinpath(*name.split(".")[1:])
            found = (rel / "__init__.py").is_file() or rel.with_suffix(".py").is_file()
            self.modules[name] = _Module(name, self.root) if found else None
        return self.modules[name]

    def resolve(self, mod: _Module, name: str, local: dict, seen=()) -> None:
        """Include what `name` means in `mod` (with `local` import bindings)."""
        if name in mod.defs and name not in local:
            return self.include(mod, name)
        target = local.get(name) or mod.imports.get(name)
        if target is None or (mod.name, name) in seen:
            return
        where, attr = target
        sub = self.module(f"{where}.{attr}") if attr else None
        if attr is None or sub is not None:
            return  # a module: its attributes are resolved where they are used (see `walk`)
        other = self.module(where)
        if other is not None:
            self.resolve(other, attr, {}, (*seen, (mod.name, name)))

    def module_of(self, mod: _Module, name: str, local: dict) -> _Module | None:
        """The lesionlib module a name stands for in `mod`, if it stands for one."""
        where, attr = local.get(name) or mod.imports.get(name) or (None, None)
        return None if where is None else self.module(f"{where}.{attr}" if attr else where)

    def include(self, mod: _Module, qual: str) -> None:
        key = f"{mod.name}:{qual}" if qual else mod.name
        if key in self.sources or key in NOT_TRAINING or (qual and mod.name in self.whole):
            return
        if not qual:
            self.sources[key] = mod.text
            return self.walk(mod, mod.tree.body, None)
        node = mod.defs.get(qual.split(".")[0])
        cls = node if isinstance(node, ast.ClassDef) else None
        for part in qual.split(".")[1:]:
            node = next((n for n in reversed(node.body) if getattr(n, "name", None) == part), None)
        if node is None:
            raise ImportError(f"training code {key!r}: {mod.name} defines no class or function {qual}")
        self.sources[key] = mod.source(node)
        self.walk(mod, [node], cls)

    def walk(self, mod: _Module, nodes, cls) -> None:
        """Include every lesionlib definition the code in `nodes` refers to (type annotations aside: they
        compute nothing)."""
        local = mod.bindings(nodes)
        notes = {id(n) for top in nodes for a in ast.walk(top) for n in ast.walk(_annotation(a))}
        for top in nodes:
            for node in ast.walk(top):
                if id(node) in notes:
                    continue
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    if node.value.id in ("self", "cls") and cls is not None and \
                            any(getattr(n, "name", None) == node.attr for n in cls.body):
                        self.include(mod, f"{cls.name}.{node.attr}")
                    elif (other := self.module_of(mod, node.value.id, local)) is not None:
                        self.resolve(other, node.attr, {})
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                    self.resolve(mod, node.id, local)


def training_sources(root: Path | None = None) -> dict:
    """{entry: source text} of the code that decides a run's result: `TRAINING_CODE` and every lesionlib
    definition it reaches (so a helper it calls cannot be forgotten), as installed (or under `root`)."""
    closure = _Closure(Path(root or PACKAGE))
    closure.whole = {e for e in TRAINING_CODE if ":" not in e}  # their definitions are in them already
    for entry in TRAINING_CODE:
        modname, _, qual = entry.partition(":")
        mod = closure.module(modname)
        if mod is None:
            raise ImportError(f"training code {entry!r}: no Python source file for module {modname}")
        closure.include(mod, qual)
    return closure.sources


@lru_cache(maxsize=1)
def training_code() -> str:
    """The fingerprint of the code that decides a run's result (computed once per process)."""
    return code_fingerprint(training_sources())[:16]


def package_sources(root: Path | None = None) -> dict:
    """{relative path: text} of every module of the lesionlib package (what a book page may run)."""
    root = Path(root or Path(__file__).resolve().parent)
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.py"))}


@lru_cache(maxsize=1)
def package_code() -> str:
    """The fingerprint of the whole lesionlib package: a page is executed again when it changes."""
    return code_fingerprint(package_sources())[:16]


@lru_cache(maxsize=1)
def library_versions() -> dict:
    """{distribution: version} of `LIBRARIES` ('absent' for one that is not installed)."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def run_env(device_type: str, precision: str, hardware: str | None = None, threads: int | None = None) -> dict:
    """The environment part of a model specification: code, libraries, device type and precision, and where
    given the hardware (CPU instruction set or GPU model: they pick other kernels) and the CPU thread count
    (reductions split over other thread counts round differently, so a run is not bit-identical across them)."""
    env = {"code": training_code(), "libraries": library_versions(), "device": device_type, "precision": precision}
    env.update({k: v for k, v in (("hardware", hardware), ("threads", threads)) if v is not None})
    return env


_FILE_HASHES: dict = {}


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes, remembered per (path, size, mtime) so a page hashes a big file once."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]
