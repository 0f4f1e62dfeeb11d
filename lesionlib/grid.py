"""The papermill grid: execute the book's notebooks on a profile, then build the HTML book.

Notebooks are executed into a staging copy of the book under `_build/stage/<profile>/`; the
committed notebooks in `book/` (which carry the `smoke` outputs for nbval) are never modified.
Finished notebooks are not executed again unless their inputs changed, and finished training runs
come from the run cache, so an interrupted grid resumes where it stopped.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import nbformat

from .buildlog import Progress, tail
from .buildlog import quiet as quiet_output
from .config import cores_per
from .pages import GRID, grid_jobs, input_files, is_current, page_fingerprint, record_timings
from .plan import book_runs_cached, estimate_training, job_runs, split_cached
from .profile import (DIRECTIONS, LOCAL_CLUSTER_ENV, SCHEDULER_ENV, Profile, load_params, profile_path,
                      project_root, scheduler_address)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
    nb.metadata["lesionlib"] = {"fingerprint": page_fingerprint(src, params, inputs), "complete": True}
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
        inputs = [f for pattern in page.inputs for f in input_files(root, pattern.format(profile=name))]
        done = progress.page_done if progress else _log
        if not force and not stale and is_current(out, page_fingerprint(src, p, inputs)):
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
    from .figures import check_samples  # (torch: not for `lesionlib grid --help`)

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
            record_timings(stage, timings, cached)  # the pages that did finish keep their times
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
        record_timings(stage, timings, cached)
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
    finished, missing = split_cached(cache, runs)
    estimate = estimate_training(P, cache, finished, missing, root) if missing else None
    return Progress(terminal.write, pages=len(jobs), runs=len(runs), count_runs=lambda: sum(cache.has(r) for r in runs),
                    estimate_s=estimate["wall_s"] if estimate else None, tty=terminal.tty)


