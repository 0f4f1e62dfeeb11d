"""The book's pages: which notebooks the grid executes (and per direction or once), what each one's staged
copy depends on (its fingerprint), whether it is up to date and why not, and the per-page timings file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .fingerprint import library_versions, package_code
from .profile import DIRECTIONS


@dataclass(frozen=True)
class Page:
    """One notebook of the grid, executed once per direction (or once if `directions` is empty).

    `summary` pages read the runs of the pages before them: they are executed again whenever one of
    those was.
    """

    section: str
    notebook: str
    directions: tuple = ()
    summary: bool = False
    inputs: tuple = ()  # files or globs (relative to the project) whose content the page shows

    def staged(self, direction: str | None) -> str:
        """Where the executed notebook goes in the staged book: one file per direction."""
        return self.notebook if direction is None else self.notebook.replace(".ipynb", f"_{direction}.ipynb")


BOTH = tuple(DIRECTIONS)


GRID = (
    Page("method", "book/method.ipynb", inputs=("benchmarks/results/controls-*.json",)),  # the measured power
    Page("data", "book/data_phantom.ipynb"),
    Page("brain", "book/data_brain.ipynb"),
    Page("lung", "book/data_lung.ipynb"),
    Page("fig1", "book/fig1.ipynb", BOTH),
    Page("fig2", "book/fig2.ipynb", BOTH),
    Page("fig3", "book/fig3.ipynb", BOTH),
    Page("fig4", "book/fig4.ipynb", BOTH),
    Page("controls", "book/controls.ipynb", BOTH),  # before Fig 5, whose finding (e) reads its seeds
    Page("fig5", "book/fig5.ipynb", BOTH),
    Page("conclusions", "book/conclusions.ipynb", summary=True),
    Page("intro", "book/intro.ipynb", summary=True),  # the findings at a glance: after every run exists
    Page("appendix", "book/reproducibility.ipynb", summary=True,
         inputs=("benchmarks/results/latest.json", "benchmarks/results/gpu-*.json")),
)


SECTIONS = tuple(p.section for p in GRID)


def grid_jobs(sections=None, directions=None) -> list:
    """The (page, direction) jobs of the grid, in GRID order, limited to `sections` and `directions`."""
    bad = sorted(set(sections or []) - set(SECTIONS))
    if bad:
        raise ValueError(f"unknown section(s) {bad}; allowed: {', '.join(SECTIONS)}")
    bad = sorted(set(directions or []) - set(DIRECTIONS))
    if bad:
        raise ValueError(f"unknown direction(s) {bad}; allowed: {', '.join(DIRECTIONS)}")
    return [(p, d) for p in GRID if not sections or p.section in sections
            for d in (p.directions or (None,)) if d is None or not directions or d in directions]


def input_files(root: Path, pattern: str) -> list:
    """The files a page's `inputs` entry names: one path, or every match of a glob (sorted; none is fine)."""
    return sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]


def page_fingerprint(src: Path, params: dict, inputs=()) -> dict:
    """What a staged notebook depends on: its cells' sources (not their stored outputs), its parameters,
    the lesionlib code and library versions it runs with, and the files it reads."""
    import hashlib

    cells = [[c.cell_type, c.source] for c in nbformat.read(src, as_version=4).cells]
    digest = hashlib.sha256(json.dumps(cells).encode()).hexdigest()
    files = {str(f): hashlib.sha256(Path(f).read_bytes()).hexdigest() if Path(f).is_file() else None for f in inputs}
    # The library the page imports: a changed lesionlib (not a comment) or library version re-executes it.
    library = {"lesionlib": package_code(), **library_versions()}
    return {"source_sha256": digest, "parameters": params, "library": library, **({"inputs": files} if files else {})}


UP_TO_DATE = "up to date"


_PARTS = {"source_sha256": "its cells", "library": "lesionlib's code or a library version", "inputs": "a file it reads"}


def page_status(out: Path, fp: dict) -> str:
    """'up to date', or why the staged notebook `out` would be executed again (against fingerprint `fp`)."""
    if not out.is_file():
        return "never executed on this profile"
    try:
        meta = nbformat.read(out, as_version=4).metadata.get("lesionlib", {})
    except Exception:
        return "its staged notebook is unreadable"
    if meta.get("complete") is not True:
        return "its last execution did not finish"
    old, new = meta.get("fingerprint") or {}, json.loads(json.dumps(fp))
    if old == new:
        return UP_TO_DATE
    why = [_PARTS.get(part, part) for part in ("source_sha256", "library", "inputs") if old.get(part) != new.get(part)]
    params = sorted(k for k in {*old.get("parameters", {}), *new["parameters"]}
                    if old.get("parameters", {}).get(k) != new["parameters"].get(k))
    if params:
        why.append("parameter " + ", ".join(params))
    return "changed: " + "; ".join(why or ["its fingerprint"])


def is_current(out: Path, fp: dict) -> bool:
    return page_status(out, fp) == UP_TO_DATE


def record_timings(stage: Path, timings: dict, runs_cached: int | None = None) -> None:
    """Write `timings.json`: this run's seconds, and each page's seconds when it last executed.

    A resumed grid executes only some pages; `pages` keeps the others' last times, `complete` once every page
    has one, and `book_total` adds them up with the HTML build. Pages that ran side by side overlap, so that
    sum exceeds the wall time: `book_wall` is the wall time
    of the last grid run that executed every page and built the HTML, and `book_wall_runs_cached` how many of
    the book's runs its run cache held when it started (`runs_cached`; 0: from empty caches).
    """
    path = stage / "timings.json"
    try:
        before = json.loads(path.read_text()) if path.is_file() else {}
        old = before.get("pages", {})
    except (ValueError, AttributeError):
        before, old = {}, {}
    labels = [p.section + (f" [{d}]" if d else "") for p in GRID for d in (p.directions or (None,))]
    pages = {k: timings.get(k, old.get(k)) for k in labels if k in timings or k in old}
    if "html" in timings or "html" in old:
        pages["html"] = timings.get("html", old.get("html"))
    whole = all(k in timings for k in labels + ["html", "total"])
    record = {"this_run": timings, "pages": pages, "complete": all(k in pages for k in labels + ["html"]),
              "book_total": sum(pages.values()), "book_wall": timings["total"] if whole else before.get("book_wall"),
              "book_wall_runs_cached": runs_cached if whole else before.get("book_wall_runs_cached")}
    tmp = path.with_suffix(".tmp")
    stage.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)

