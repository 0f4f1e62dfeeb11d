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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .buildlog import Progress, tail
from .buildlog import quiet as quiet_output
from .config import cores_per
from .fingerprint import library_versions, package_code
from .profile import (DIRECTIONS, LOCAL_CLUSTER_ENV, SCHEDULER_ENV, Profile, load_params, profile_path,
                      project_root, scheduler_address)


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
    Page("method", "book/method.ipynb"),
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


def _input_files(root: Path, pattern: str) -> list:
    """The files a page's `inputs` entry names: one path, or every match of a glob (sorted; none is fine)."""
    return sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fingerprint(src: Path, params: dict, inputs=()) -> dict:
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


def _is_current(out: Path, fp: dict) -> bool:
    return page_status(out, fp) == UP_TO_DATE


def _title_direction(nb, direction: str) -> None:
    """Put the direction into the page title ('# Fig 1: ...' -> '# Fig 1 (brain → lung): ...')."""
    source, target = DIRECTIONS[direction]
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            head, _, rest = cell.source.partition("\n")
            name, colon, title = head.partition(":")
            cell.source = f"{name} ({source} → {target}){colon}{title}\n{rest}"
            return


def failed_notebook(out: Path) -> Path:
    """Where the executed notebook of a page that failed is kept (the next grid run removes it)."""
    return out.with_name(f"{out.stem}.failed.ipynb")


def execute_page(src: Path, out: Path, params: dict, root: Path, inputs=()) -> float:
    """Run one notebook with papermill into `out` atomically; returns seconds taken."""
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.running.ipynb")
    t0 = time.perf_counter()
    # The parameters cell takes a profile name and overrides: the whole profile goes in as overrides, so the
    # page reads no file and its injected cell records every value it ran with.
    injected = {"profile": params["profile"], **({"direction": params["direction"]} if "direction" in params else {}),
                "overrides": {k: v for k, v in params.items() if k not in ("profile", "direction")}}
    # The notebook's stderr (training progress from the runner) streams to ours as it happens.
    try:
        pm.execute_notebook(str(src), str(tmp), parameters=injected, cwd=str(root), kernel_name="python3",
                            progress_bar=False, report_mode=False, stderr_file=sys.stderr)
    except pm.PapermillExecutionError:
        failed = failed_notebook(out)  # papermill saved the notebook up to the failing cell, traceback included
        os.replace(tmp, failed)
        _log(f"{src.name} failed: the executed notebook, with its traceback, is {failed}")
        raise
    nb = nbformat.read(tmp, as_version=4)
    for cell in nb.cells:  # the injected parameters stay in the notebook, out of the page (its provenance box says them)
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = tags + ["remove-cell"]
    if params.get("direction"):
        _title_direction(nb, params["direction"])
    nb.metadata["lesionlib"] = {"fingerprint": _fingerprint(src, params, inputs), "complete": True}
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
    for old in (stage / "book").glob("*.md"):  # a text page since removed or made a notebook (intro.md ->
        if not (root / "book" / old.name).exists():  # intro.ipynb) would clash with, or outlive, its source
            old.unlink()
    for md in (root / "book").glob("*.md"):
        shutil.copy2(md, stage / "book" / md.name)
    if (root / "_static").is_dir():  # the book's CSS (Jupyter Book adds every .css in it)
        shutil.copytree(root / "_static", stage / "_static", dirs_exist_ok=True)
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    left_out = []
    for part in toc.get("parts", []):
        keep = []
        for ch in part["chapters"]:
            # a page executed per direction becomes one chapter per direction
            variants = [f"{ch['file']}_{d}" for d in DIRECTIONS if (stage / f"{ch['file']}_{d}.ipynb").exists()]
            if (stage / f"{ch['file']}.md").exists() or (stage / f"{ch['file']}.ipynb").exists():
                keep.append(ch)
            elif variants:
                keep.extend({"file": v} for v in variants)
            else:
                left_out.append(ch["file"])
        part["chapters"] = keep
    toc["parts"] = [p for p in toc.get("parts", []) if p["chapters"]]
    (stage / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    return left_out


def build_html(stage: Path, output: Path) -> Path:
    """Jupyter Book 1 build of the staged book, warnings as errors, into `<output>/_build/html`."""
    shutil.rmtree(output / "_build" / "html", ignore_errors=True)  # no pages left over from another build
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(stage), "--path-output", str(output),
           "-W", "-n", "--keep-going"]
    _log("$ " + " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-20000:] + done.stderr[-20000:])
        raise RuntimeError(f"jupyter-book build failed (exit {done.returncode}); see the messages above")
    return output / "_build" / "html"


def _execute(jobs, stage: Path, root: Path, params: dict, name: str, force: bool, timings: dict,
             parallel: int = 1, progress=None) -> None:
    """Execute the grid's (page, direction) jobs, skipping pages that are up to date.

    With `parallel` > 1, up to that many pages run at once (each in its own kernel), in GRID order; the
    `summary` pages, which read the others' runs, only after all of them (and side by side too: they normally
    only read). Two pages that need the same training run never train it twice: the run cache's per-run lock
    makes the second wait for the first.
    """
    executed = []

    def one(i, page, direction, stale=False):
        src = root / page.notebook
        out = stage / page.staged(direction)
        p = dict(params, **({"direction": direction} if direction else {}))
        label = page.section + (f" [{direction}]" if direction else "")
        inputs = [f for pattern in page.inputs for f in _input_files(root, pattern.format(profile=name))]
        done = progress.page_done if progress else _log
        if not force and not stale and _is_current(out, _fingerprint(src, p, inputs)):
            done(f"[{i}/{len(jobs)}] {label}: up to date")
            return
        _log(f"[{i}/{len(jobs)}] {label}: executing {page.notebook} on profile {name} ...")
        timings[label] = execute_page(src, out, p, root, inputs)
        executed.append(label)
        done(f"[{i}/{len(jobs)}] {label}: done in {timings[label]:.0f} s")

    numbered = [(i, page, d) for i, (page, d) in enumerate(jobs, 1)]
    _side_by_side([j for j in numbered if not j[1].summary], one, parallel)
    stale = bool(executed)  # a page re-ran: its runs may have changed what every summary page shows
    _side_by_side([(*j, stale) for j in numbered if j[1].summary], one, parallel)


def _side_by_side(jobs, one, parallel: int) -> None:
    """`one(*job)` for each job, up to `parallel` at once in the order given; the first failure is raised."""
    from concurrent.futures import ThreadPoolExecutor

    if parallel <= 1 or len(jobs) <= 1:
        for j in jobs:
            one(*j)
        return
    # Kernels that train side by side share the cores: without a thread budget each takes them all and
    # OpenMP's spinning threads slow both tenfold. Each kernel inherits this environment.
    threads = str(cores_per(parallel))
    budget = {k: threads for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k not in os.environ}
    os.environ.update(budget)
    try:
        with ThreadPoolExecutor(parallel) as pool:
            for fut in [pool.submit(one, *j) for j in jobs]:
                fut.result()  # re-raises the first failed page's error
    finally:
        for k in budget:
            os.environ.pop(k, None)


@contextmanager
def shared_cluster(params: dict):
    """One Dask LocalCluster for the whole grid when the profile asks for workers and names no scheduler.

    Its address goes to the notebooks' kernels through $LESIONLIB_SCHEDULER, so worker processes (and
    the data sets they loaded) stay warm from page to page.
    """
    from .dispatch import local_cluster

    if not params.get("workers") or scheduler_address(params.get("scheduler")):
        yield
        return
    with local_cluster(params["workers"], per_gpu=params.get("runs_per_gpu", 1)) as cluster:
        os.environ[SCHEDULER_ENV] = os.environ[LOCAL_CLUSTER_ENV] = cluster.scheduler_address
        _log(f"Dask: {params['workers']} local workers at {cluster.scheduler_address}")
        try:
            yield
        finally:
            os.environ.pop(SCHEDULER_ENV, None)
            os.environ.pop(LOCAL_CLUSTER_ENV, None)


def pages_at_once(params: dict, parallel: int | None = None) -> int:
    """How many pages execute at once: `parallel`, else 2 when Dask workers train the runs, else 1.

    With workers a page's kernel mostly waits for them; a second page keeps them busy while the first starts
    its kernel, bootstraps its intervals and draws its figures (the quick book: 9 % of the cores sat idle)."""
    if parallel:
        return int(parallel)
    return 2 if params.get("workers") or scheduler_address(params.get("scheduler")) else 1


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


def run_grid(profile: str, sections=None, directions=None, build: bool = True, force: bool = False,
             output=None, parallel: int | None = None, quiet: bool = False) -> dict:
    """Execute the notebook grid of `profile` (optionally a subset), then build the book.

    Staged notebooks go to `<output>/_build/stage/<profile>/`, the HTML to `<output>/_build/html`
    (`output` defaults to the project root); `parallel` pages execute at once (None: `pages_at_once`; see
    `_execute`). `quiet`: one progress display on the terminal, every other message (training, Dask, Jupyter)
    in `<output>/_build/grid-<profile>.log` (`lesionlib.buildlog`).
    """
    root = project_root()
    output = Path(output) if output else root
    params = load_params(profile)  # validates before any work starts: parameters, then every sample on the data
    from .experiment import check_samples  # (torch: not for `lesionlib grid --help`)

    P = Profile.from_mapping(params)
    check_samples(P)
    name = Path(profile_path(profile)).stem
    stage = output / "_build" / "stage" / name
    jobs = grid_jobs(sections, directions)
    expected = {page.staged(d) for page in GRID for d in (page.directions or (None,))}
    for old in (stage / "book").glob("*.ipynb") if (stage / "book").is_dir() else []:
        if f"book/{old.name}" not in expected:  # a page this grid no longer makes (e.g. before per-direction pages)
            old.unlink()
    timings, cached = {}, book_runs_cached(P)  # cached 0: a build from empty caches (what time targets mean)
    log_path = output / "_build" / f"grid-{name}.log"
    with quiet_output(log_path, verbose=not quiet) as terminal:
        progress = None
        if quiet:
            progress = _progress(P, jobs, terminal, root)
            terminal.write(f"lesionlib grid: profile {name}, {len(jobs)} pages, {progress.runs} training runs "
                           f"({progress.cached} cached); messages go to {log_path} (-v shows them here)\n")
        t_all = time.perf_counter()
        try:
            with shared_cluster(params), (progress or nullcontext()):
                _execute(jobs, stage, root, params, name, force, timings, pages_at_once(params, parallel), progress)
        except BaseException:
            _record_timings(stage, timings, cached)  # the pages that did finish keep their times
            if quiet:
                terminal.write(f"the build failed; the end of {log_path}:\n{tail(log_path)}\n")
            raise
        timings["notebooks"] = time.perf_counter() - t_all
        say = terminal.write if quiet else (lambda text: _log(text.rstrip("\n")))
        first = _root_page(root)
        if build and not any((stage / f"{first}{ext}").exists() for ext in (".ipynb", ".md")):
            say(f"book: not built: its first page ({first}) has not been executed on this profile "
                "(run the whole grid, or its section with the others)\n")
            build = False
        if build:
            left_out = stage_book(stage, root)
            if left_out:
                say(f"book: pages not executed on this profile are left out: {', '.join(left_out)}\n")
            t0 = time.perf_counter()
            html = build_html(stage, output)
            timings["html"] = time.perf_counter() - t0
            say(f"book: {html / 'index.html'} (built in {timings['html']:.0f} s)\n")
        timings["total"] = time.perf_counter() - t_all
        _record_timings(stage, timings, cached)
    return timings


def _root_page(root: Path) -> str:
    """The book's first page (`root` of _toc.yml), e.g. 'book/intro'."""
    import yaml

    return yaml.safe_load((root / "_toc.yml").read_text())["root"]


def _progress(P: Profile, jobs, terminal, root: Path):
    """The build's progress display: the jobs' runs counted in the run cache, the dry run's estimate as a first ETA."""
    from .cache import RunCache

    cache = RunCache(P.cache_root())
    runs = [r for new in job_runs(P, jobs) for r in new]
    finished = [r for r in runs if cache.has(r)]
    missing = [r for r in runs if not cache.has(r)]
    estimate = estimate_training(P, cache, finished, missing, root) if missing else None
    return Progress(terminal.write, pages=len(jobs), runs=len(runs), count_runs=lambda: sum(cache.has(r) for r in runs),
                    estimate_s=estimate["wall_s"] if estimate else None, tty=terminal.tty)


def book_runs_cached(P: Profile) -> int:
    """How many of the training runs of the whole book on `P` are in its run cache already."""
    from .cache import RunCache
    from .experiment import book_runs

    cache = RunCache(P.cache_root())
    return sum(cache.has(s) for s in book_runs(P))


def _record_timings(stage: Path, timings: dict, runs_cached: int | None = None) -> None:
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


# ------------------------------------------------------------------------------------------ dry run

def plan_grid(profile: str, sections=None, directions=None, output=None) -> dict:
    """What `run_grid` would do, executing and training nothing: each page's status and why, its runs (each
    counted on the first page that needs it) cached or missing, and the missing runs' estimated seconds.

    The estimate fits `lesionlib.costs`' run-time model to this build's finished runs (at least three), else
    takes the committed benchmark of this kind of device; each missing run takes all its epochs at most, and
    the finished runs' mean share of their epochs as the estimate. A profile of real data whose files are
    absent is planned on its parameters (`counting_profile`): its runs are counted, none can be cached."""
    from .cache import RunCache
    from .experiment import check_samples, counting_profile
    from .profile import ProfileError, profile_values

    root = project_root()
    output = Path(output) if output else root
    values, data_note = profile_values(profile), None
    try:
        params = load_params(profile)
        P = Profile.from_mapping(params)
        check_samples(P)
    except (ProfileError, ValueError) as err:
        if values.get("data_source", "phantom") == "phantom":
            raise
        params, P = values, counting_profile(values)
        data_note = f"{err} — runs counted on the profile's parameters; none can be cached"
    name = Path(profile_path(profile)).stem
    stage = output / "_build" / "stage" / name
    cache, pages, finished, missing = RunCache(P.cache_root()), [], [], []
    jobs = grid_jobs(sections, directions)
    before_summary = False
    for (page, d), runs in zip(jobs, job_runs(P, jobs)):
        p = dict(params, **({"direction": d} if d else {}))
        inputs = [f for pattern in page.inputs for f in _input_files(root, pattern.format(profile=name))]
        status = page_status(stage / page.staged(d), _fingerprint(root / page.notebook, p, inputs))
        if page.summary and before_summary and status == UP_TO_DATE:
            status = "a page before it executes"
        before_summary |= not page.summary and status != UP_TO_DATE
        done = [r for r in runs if data_note is None and cache.has(r)]
        finished += done
        missing += [r for r in runs if not (data_note is None and cache.has(r))]
        pages.append({"page": page.section + (f" [{d}]" if d else ""), "notebook": page.staged(d), "status": status,
                      "runs": len(runs), "cached": len(done), "missing": len(runs) - len(done)})
    seen = len(finished) + len(missing)
    return {"profile": name, "stage": str(stage), "cache": str(cache.root), "data": data_note, "pages": pages,
            "runs": seen, "cached": len(finished), "missing": len(missing),
            "estimate": estimate_training(P, cache, finished, missing, root),
            "stale": sum(pg["status"] != UP_TO_DATE for pg in pages)}


def job_runs(P: Profile, jobs) -> list:
    """For each (page, direction) job, the distinct training runs it needs that no earlier job does."""
    from .cache import spec_key
    from .experiment import FIGURES, unique_runs

    seen, out = set(), []
    for page, d in jobs:
        runs = []
        if page.section in FIGURES:
            runs = [r for r in unique_runs(FIGURES[page.section](P, d).values()) if spec_key(r) not in seen]
            seen.update(spec_key(r) for r in runs)
        out.append(runs)
    return out


def estimate_training(P: Profile, cache, finished: list, missing: list, root: Path) -> dict | None:
    """Seconds the `missing` runs will train: `lesionlib.costs`' model fitted to the `finished` runs (at least
    three), else the committed benchmark of this kind of device; None without either."""
    from .costs import benchmark_coef, finished_rows, fit_run_time, predicted_s, run_size

    rows = finished_rows(cache.result(r) for r in finished)
    device = next((r["env"]["device"] for r in missing + finished if r.get("env")), "cpu")
    coef, lanes = fit_run_time(rows), max(1, P.workers)  # runs measured in this build's workers, side by side
    if coef is not None:
        source = f"{len(rows)} finished runs of this build in {cache.root}"
    else:  # a benchmark measured one run at a time on the whole machine (or one GPU)
        coef, source = benchmark_coef(root, device, P.image_size) or (None, None)
        lanes = 1
    if coef is None:
        return None
    share = sum(r["epochs_run"] / r["epoch_cap"] for r in rows) / len(rows) if rows else 1.0
    sizes = [run_size(r) for r in missing]
    at_most = sum(predicted_s(coef, z["n_train"], z["n_valid"], z["n_scored"], z["epochs"]) for z in sizes)
    likely = sum(predicted_s(coef, z["n_train"], z["n_valid"], z["n_scored"], max(1, round(share * z["epochs"])))
                 for z in sizes)
    return {"train_s": likely, "train_s_all_epochs": at_most, "lanes": lanes, "wall_s": likely / lanes,
            "epoch_share": share, "from": source, "device": device}


def format_plan(plan: dict, brief: bool = False) -> str:
    """The dry run as a reader wants it: one line per page (`brief`: per page that would execute), then the
    totals and the estimate."""
    from .experiment import FIGURES

    width = max(len(pg["page"]) for pg in plan["pages"])
    lines = [f"profile {plan['profile']}: pages staged in {plan['stage']}, runs cached in {plan['cache']}"]
    if plan["data"]:
        lines.append(f"data: {plan['data']}")
    for pg in plan["pages"]:
        if brief and pg["status"] == UP_TO_DATE:
            continue
        runs = f"{pg['runs']:4d} runs ({pg['cached']} cached, {pg['missing']} to train)" if pg["runs"] else \
            ("runs: all on pages above" if pg["page"].split()[0] in FIGURES else "")
        lines.append(f"  {pg['page']:<{width}}  {runs:<36} {pg['status']}")
    lines.append(f"{len(plan['pages'])} pages ({plan['stale']} to execute); {plan['runs']} distinct training runs: "
                 f"{plan['cached']} cached, {plan['missing']} to train")
    e = plan["estimate"]
    if plan["missing"] and e:
        epochs = (f"each run taking {e['epoch_share']:.0%} of its epochs as the finished ones did, at most "
                  f"{_duration(e['train_s_all_epochs'] / e['lanes'])}" if e["epoch_share"] < 1
                  else "each run taking all its epochs")
        lines.append(f"estimate: {_duration(e['wall_s'])} of training on {e['device']} in {e['lanes']} lane(s) ({epochs}; "
                     f"from {e['from']}), plus page execution and the HTML build")
    elif plan["missing"]:
        lines.append("estimate: none (no finished runs of this build and no benchmark of this device: `make bench`)")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    """'754 s (12.6 min)', '3278546 s (37.9 days)': seconds, and the unit a reader plans in."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds:.0f} s ({seconds / size:.1f} {unit})"
    return f"{seconds:.0f} s"
