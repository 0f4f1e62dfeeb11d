"""The papermill grid: execute the book's notebooks on a profile, then build the HTML book.

Notebooks are executed into a staging copy of the book under `_build/stage/<profile>/`; the
committed notebooks in `book/` (which carry the `smoke` outputs for nbval) are never modified.
Finished notebooks are not executed again unless their inputs changed, and finished training runs
come from the run cache, so an interrupted grid resumes where it stopped.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .profile import DIRECTIONS, load_params, profile_path, project_root


@dataclass(frozen=True)
class Page:
    """One notebook of the grid, executed once per direction (or once if `directions` is empty)."""

    section: str
    notebook: str
    directions: tuple = ()


GRID = (
    Page("data", "book/data_phantom.ipynb"),
    Page("brain", "book/data_brain.ipynb"),
    Page("lung", "book/data_lung.ipynb"),
    Page("fig1", "book/fig1.ipynb", ("brain_to_lung",)),
)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fingerprint(src: Path, params: dict) -> dict:
    """What a staged notebook depends on: its cells' sources (not their stored outputs) and its parameters."""
    import hashlib

    cells = [[c.cell_type, c.source] for c in nbformat.read(src, as_version=4).cells]
    digest = hashlib.sha256(json.dumps(cells).encode()).hexdigest()
    return {"source_sha256": digest, "parameters": params}


def _is_current(out: Path, fp: dict) -> bool:
    if not out.is_file():
        return False
    try:
        meta = nbformat.read(out, as_version=4).metadata.get("lesionlib", {})
    except Exception:
        return False
    return meta.get("fingerprint") == json.loads(json.dumps(fp)) and meta.get("complete") is True


def execute_page(src: Path, out: Path, params: dict, root: Path) -> float:
    """Run one notebook with papermill into `out` atomically; returns seconds taken."""
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.running.ipynb")
    t0 = time.perf_counter()
    # The notebook's stderr (training progress from the runner) streams to ours as it happens.
    pm.execute_notebook(str(src), str(tmp), parameters=params, cwd=str(root), kernel_name="python3",
                        progress_bar=False, report_mode=False, stderr_file=sys.stderr)
    nb = nbformat.read(tmp, as_version=4)
    for cell in nb.cells:  # the injected parameters are shown only on request
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            cell.metadata["tags"] = tags + ["hide-cell"]
    nb.metadata["lesionlib"] = {"fingerprint": _fingerprint(src, params), "complete": True}
    nbformat.write(nb, tmp)
    os.replace(tmp, out)
    return time.perf_counter() - t0


def stage_book(stage: Path, root: Path) -> list:
    """Copy the book's text pages and configuration into the staging folder.

    Pages whose notebook has not been executed on this profile are left out of the staged table of
    contents (and listed in the return value): a partial grid builds a partial book, never a book
    that mixes profiles.
    """
    import yaml

    (stage / "book").mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "_config.yml", stage / "_config.yml")
    for md in (root / "book").glob("*.md"):
        shutil.copy2(md, stage / "book" / md.name)
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    left_out = []
    for part in toc.get("parts", []):
        keep = []
        for ch in part["chapters"]:
            exists = (stage / f"{ch['file']}.md").exists() or (stage / f"{ch['file']}.ipynb").exists()
            (keep if exists else left_out).append(ch if exists else ch["file"])
        part["chapters"] = keep
    toc["parts"] = [p for p in toc.get("parts", []) if p["chapters"]]
    (stage / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    return left_out


def build_html(stage: Path, output: Path) -> Path:
    """Jupyter Book 1 build of the staged book, warnings as errors, into `<output>/_build/html`."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(stage), "--path-output", str(output),
           "-W", "-n", "--keep-going"]
    _log("$ " + " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-20000:] + done.stderr[-20000:])
        raise RuntimeError(f"jupyter-book build failed (exit {done.returncode}); see the messages above")
    return output / "_build" / "html"


def run_grid(profile: str, sections=None, directions=None, build: bool = True, force: bool = False,
             output=None) -> dict:
    """Execute the notebook grid of `profile` (optionally a subset), then build the book.

    Staged notebooks go to `<output>/_build/stage/<profile>/`, the HTML to `<output>/_build/html`
    (`output` defaults to the project root).
    """
    root = project_root()
    output = Path(output) if output else root
    params = load_params(profile)  # validates before any work starts
    name = Path(profile_path(profile)).stem
    stage = output / "_build" / "stage" / name
    known = {p.section for p in GRID}
    bad = sorted(set(sections or []) - known)
    if bad:
        raise ValueError(f"unknown section(s) {bad}; allowed: {', '.join(sorted(known))}")
    bad = sorted(set(directions or []) - set(DIRECTIONS))
    if bad:
        raise ValueError(f"unknown direction(s) {bad}; allowed: {', '.join(DIRECTIONS)}")
    jobs = [(p, d) for p in GRID if not sections or p.section in sections
            for d in (p.directions or (None,)) if d is None or not directions or d in directions]
    timings = {}
    t_all = time.perf_counter()
    for i, (page, direction) in enumerate(jobs, 1):
        src = root / page.notebook
        out = stage / page.notebook
        p = dict(params, **({"direction": direction} if direction else {}))
        label = page.section + (f" [{direction}]" if direction else "")
        if not force and _is_current(out, _fingerprint(src, p)):
            _log(f"[{i}/{len(jobs)}] {label}: up to date")
            continue
        _log(f"[{i}/{len(jobs)}] {label}: executing {page.notebook} on profile {name} ...")
        timings[label] = execute_page(src, out, p, root)
        _log(f"[{i}/{len(jobs)}] {label}: done in {timings[label]:.0f} s")
    timings["notebooks"] = time.perf_counter() - t_all
    if build:
        left_out = stage_book(stage, root)
        if left_out:
            _log(f"book: pages not executed on this profile are left out: {', '.join(left_out)}")
        t0 = time.perf_counter()
        html = build_html(stage, output)
        timings["html"] = time.perf_counter() - t0
        _log(f"book: {html / 'index.html'}")
    timings["total"] = time.perf_counter() - t_all
    (stage / "timings.json").write_text(json.dumps(timings, indent=1))
    return timings
