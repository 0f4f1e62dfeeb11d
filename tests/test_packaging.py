"""Packaging: every package lesionlib imports is declared, and environment.yml says what pyproject.toml says."""
import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    """The distribution name of a requirement string, lower case, without extras or version."""
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> tuple[list, list]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"], project["optional-dependencies"]["test"]


def _imports(folder: Path) -> set:
    """Top-level modules imported (absolutely) anywhere under `folder`."""
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def _undeclared(folder: Path, declared: set) -> set:
    local = {p.stem for d in (folder, ROOT / "tools") for p in d.glob("*.py")} | {"lesionlib", "benchmarks", "__future__"}
    third_party = _imports(folder) - set(sys.stdlib_module_names) - local
    dists = packages_distributions()
    return {m for m in third_party
            if not {d.lower().replace("_", "-") for d in dists.get(m, [m])} & declared}


def test_every_package_lesionlib_imports_is_a_declared_dependency():
    runtime, test = _pyproject()
    assert not _undeclared(ROOT / "lesionlib", {_name(r) for r in runtime}), "declare them in pyproject.toml"
    for folder in ("tests", "tools", "benchmarks"):
        assert not _undeclared(ROOT / folder, {_name(r) for r in runtime + test}), f"{folder}: declare them in the test extra"


def test_environment_yml_lists_what_pyproject_lists_with_the_same_versions():
    runtime, test = _pyproject()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in env if isinstance(d, dict))
    listed = {}
    for entry in [d for d in env if isinstance(d, str) and _name(d) not in ("python", "pip")] + \
            [p for p in pip if not p.startswith("-")]:
        listed[_name(entry)] = re.sub(r"\s+#.*", "", entry).replace(" ", "")
    for requirement in runtime + test:
        name = _name(requirement)
        assert name in listed, f"environment.yml lacks {name} (pyproject: {requirement})"
        assert listed[name].lower() == requirement.replace(" ", "").lower(), \
            f"environment.yml: {listed[name]!r}, pyproject: {requirement!r}"
    assert set(listed) == {_name(r) for r in runtime + test}, "environment.yml lists packages pyproject does not"
