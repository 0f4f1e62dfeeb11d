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

# The code that turns a run specification into its result: data generation and preparation, the
# splits, Learn / Transfer / Predict, G, and the Runner methods that connect them. Scores are not
# listed: they are recomputed from the stored probabilities whenever a result is read.
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


def training_sources() -> dict:
    """{entry: source text} of `TRAINING_CODE` as installed."""
    return {entry: _source_of(entry) for entry in TRAINING_CODE}


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
