"""GPU benchmark, parts b to d: a paper-size Fig 1 grid of one direction trained through lesionlib's
`Runner` on phantom data (c), the fixed costs of its runs by phase (b), and the whole paper grid's wall
time projected from those measured runs (d).

The projection fits each run's wall time as fixed + a * (training image-epochs) + b * (forward images)
by non-negative least squares over the measured runs, then applies it to the paper grid's distinct runs
as `benchmarks.estimate` lists them (lesionlib's own `grid_specs` and `unique_runs`).
"""
import statistics
import sys
import time
from contextlib import redirect_stdout

from lesionlib.costs import fit_run_time, predicted_s  # noqa: F401 (fit_run_time: tests import it here)

from .common import log
from .runcost import PhaseTimer, median_phases

DIRECTION = "brain_to_lung"


# ------------------------------------------------------------------------------------- the profile

def write_generic(path) -> str:
    """A random DenseNet-201 state dict in torchvision's layout (1000 classes) at `path`: G in place of the
    paper's ImageNet weights (same shapes and loading path; no download on a machine that is offline)."""
    import torch
    from torchvision.models import densenet201

    torch.save(densenet201().state_dict(), path)
    return str(path)


def grid_profile(base: str, cache_dir: str, generic: str, device: str, epochs: int, image_size: int | None = None,
                 slice_size: int | None = None, seeds: int = 0):
    """The profile `base` (a name or .yaml path) on phantom data in `cache_dir`, trained in this process on
    `device` (with the profile's `threads` on a CPU) with G from the file `generic`, at most `epochs` epochs;
    optionally another image size, phantom slice size and only the first `seeds` seeds."""
    from lesionlib.figures import check_samples
    from lesionlib.profile import Profile, profile_values

    v = profile_values(base)
    v.update(data_source="phantom", data_dir=None, cache_dir=cache_dir, generic=generic, generic_size=0,
             generic_epochs=0, device=device, workers=0, scheduler=None,
             epochs=min(v["epochs"], epochs))
    # paper.yaml's phantom_pool is the real sets' sizes (brain 3064, lung 729): large enough for every draw
    # of the paper grid (`check_samples` below draws them all), so the pools stay as they are.
    if image_size:
        v["image_size"] = image_size
    if slice_size:
        v["phantom_slice_size"] = slice_size
    if seeds:
        v["seeds"] = v["seeds"][:seeds]
    P = Profile.from_mapping(v)
    check_samples(P)  # every sample of the grid drawn on the phantom labels now, not in the middle of part c
    return P


def make_data(job) -> str:
    """Generate one phantom set of (profile, organ) into the profile's run cache (for a process pool)."""
    from lesionlib.experiment import data_spec
    from lesionlib.runner import Runner

    P, organ = job
    Runner(P, log=lambda m: None).dataset(data_spec(P, organ))
    return organ


def prepare_data(P, parallel: bool):
    """Start generating both organs' phantom sets into the run cache: an async pool result to wait on
    (`parallel`, one process per organ), else done now (None)."""
    jobs = [(P, o) for o in ("brain", "lung")]
    if not parallel:
        for j in jobs:
            make_data(j)
        return None
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(len(jobs))  # spawn: no fork of a CUDA process
    res = pool.map_async(make_data, jobs)
    pool.close()
    return res


# ------------------------------------------------------------------------------------- part c

def fig1_order(P) -> list:
    """The distinct runs of Fig 1 (parents first, as `run_all` trains them), seed by seed, so that a run
    cut short by the time budget still has every size and arm of the first seeds."""
    from lesionlib.experiment import unique_runs
    from lesionlib.figures import fig1_specs

    specs = fig1_specs(P, DIRECTION)
    return unique_runs([specs[k] for k in sorted(specs, key=lambda k: k[2])])


def run_row(spec: dict, result: dict, timing: dict) -> dict:
    """One trained run: what it was, its sizes and epochs (its result's `fit`), its seconds and phases."""
    from lesionlib.experiment import describe

    fit = result["fit"]
    scored = len(result.get("probs") or result.get("valid_probs") or [])
    return {"run": describe(spec), "role": spec["role"], "n_train": fit["n_train"], "n_valid": fit["n_valid"],
            "n_scored": scored, "epochs_run": fit["epochs_run"], "seconds": result["seconds"], **timing}


def fig1_grid(P, sync, deadline: float) -> dict:
    """Part c: train Fig 1 of `DIRECTION` run by run through `Runner.ensure` (what `run_all` does in this
    process) under a `PhaseTimer`, starting no run expected to end after `deadline` (perf_counter); then
    `run_all` over every spec (all cached by then) for their results."""
    from lesionlib.experiment import data_spec
    from lesionlib.figures import fig1_specs
    from lesionlib.runner import Runner

    runner = Runner(P, log=lambda m: None)
    t0 = time.perf_counter()
    for organ in ("brain", "lung"):
        runner.dataset(data_spec(P, organ))  # from the run cache, where prepare_data put them
    load_s = time.perf_counter() - t0
    todo, rows, timer = fig1_order(P), [], PhaseTimer(sync)
    t0 = time.perf_counter()
    with timer.watching(runner), redirect_stdout(sys.stderr):  # fastai prints early stopping: not the report
        for i, spec in enumerate(todo, 1):
            done = [r["wall_s"] for r in rows if r["role"] == spec["role"]]
            if time.perf_counter() + (max(done) if done else 0.0) > deadline:
                log(f"    time budget reached: {len(todo) - i + 1} of {len(todo)} runs not trained")
                break
            t = timer.time_run(runner, spec)
            rows.append(run_row(spec, runner.cache.result(spec), t))
            log(f"    [{i}/{len(todo)}] {rows[-1]['run']}: {t['wall_s']:.1f} s, {t['epochs']} epochs")
    train_s = time.perf_counter() - t0
    cut = len(rows) < len(todo)
    t1 = time.perf_counter()
    if not cut:
        runner.run_all(fig1_specs(P, DIRECTION).values())  # every run is cached: results only
    return {"direction": DIRECTION, "image_size": P.image_size, "epochs_cap": P.epochs, "seeds": list(P.seeds),
            "batch_size": P.batch_size, "runs_total": len(todo), "runs_trained": len(rows), "cut": cut,
            "data_load_s": load_s, "train_s": train_s, "run_all_s": time.perf_counter() - t1,
            "wall_s": train_s + time.perf_counter() - t1, "runs": rows}


def fixed_costs(rows: list) -> dict:
    """Part b: the median seconds of each phase of the source and of the target runs."""
    return {role: median_phases([r for r in rows if r["role"] == role])
            for role in ("source", "target") if any(r["role"] == role for r in rows)}


# ------------------------------------------------------------------------------------- part d

def kind(what: str) -> str:
    """The epoch-fraction group of a run: 'source', 'generic' or 'target' (a figure's run)."""
    return what if what in ("source", "generic") else "target"


def epoch_fractions(rows: list, cap: int) -> dict:
    """The mean share of its `cap` epochs a run ran, by group (source, target) and over all runs."""
    out = {"all": statistics.mean(r["epochs_run"] / cap for r in rows)}
    for k in ("source", "target"):
        sub = [r["epochs_run"] / cap for r in rows if kind(r["role"]) == k]
        if sub:
            out[k] = statistics.mean(sub)
    return out


def scored_on(run: dict) -> int:
    """How many lesions a listed run is scored on: a target its test set, a source its validation set."""
    return run["n_test"] or (run["n_valid"] if run["what"] == "source" else 0)


def project_runs(coef: dict, runs: list, epochs_of) -> float:
    """Seconds of `runs` (`benchmarks.estimate` rows) by the fitted model, each running epochs_of(run) epochs."""
    return sum(predicted_s(coef, r["n_train"], r["n_valid"], scored_on(r), epochs_of(r)) for r in runs)


def projection(rows: list, cap: int, paper: str, epoch_rows: list | None = None) -> dict:
    """Part d: the paper grid's hours from the fit over `rows`, each run taking its group's measured epoch
    fraction of the paper's epochs (also: every epoch, an upper bound; and the epochs measured here).

    The fractions come from `epoch_rows` (default `rows`), runs measured under at most `cap` epochs."""
    from lesionlib.figures import counting_profile
    from lesionlib.profile import profile_values

    from .estimate import estimate_runs, runs_by_kind

    coef = fit_run_time(rows)
    if coef is None:
        return {"skipped": f"{len(rows)} measured runs: need at least three to fit"}
    P = counting_profile(profile_values(paper))
    runs, frac = estimate_runs(P), epoch_fractions(epoch_rows or rows, cap)
    measured = {k: f * cap for k, f in frac.items()}

    def share(r):
        return frac.get(kind(r["what"]), frac["all"]) * r["epochs"]

    def as_here(r):
        return min(r["epochs"], measured.get(kind(r["what"]), measured["all"]))

    hours = {name: project_runs(coef, runs, f) / 3600 for name, f in
             (("hours", share), ("hours_all_epochs", lambda r: r["epochs"]), ("hours_measured_epochs", as_here))}
    return {**hours, "fit": coef, "epoch_fractions": frac, "epochs_cap_measured": cap, "paper_epochs": P.epochs,
            "paper_image_size": P.image_size, "runs": len(runs), "runs_by_kind": runs_by_kind(runs),
            "assumption": "each run of the paper grid runs its group's (source / target) mean share of the epochs "
                          f"it may run, as measured here under a cap of {cap} (of {P.epochs})"}


def tiny_note(P, paper_size: int) -> str | None:
    """Why a --tiny projection means nothing, or None at the paper's image size."""
    if P.image_size == paper_size:
        return None
    return (f"measured at {P.image_size}x{P.image_size}, projected onto the paper's {paper_size}x{paper_size} runs: "
            "a check of the code only")


# --------------------------------------------------------------------- several results as one

def combine(results: list, paper: str) -> dict:
    """Results of `python -m benchmarks.gpu` on one device as one result: part a from the first that has it,
    the Fig 1 runs of all of them for part b and the run-time fit of part d, the epoch fractions from the runs
    measured under the largest epoch cap (the paper's own when one was: a run allowed 10 epochs says little of
    how many of 50 it takes before early stopping)."""
    devices = {R["device"] for R in results}
    if len(devices) != 1 or any(R["tiny"] for R in results):
        raise ValueError(f"combine results of one device at the paper's sizes only; got devices {sorted(devices)}"
                         f", tiny {[R['tiny'] for R in results]}")
    rows = [dict(r, epochs_cap=R["fig1"]["epochs_cap"]) for R in results for r in R["fig1"]["runs"]]
    cap = max(r["epochs_cap"] for r in rows)
    first = next((R for R in results if R.get("rates")), results[0])
    out = {**first, "fig1_more": [R["fig1"] for R in results if R is not first],
           "combined_from": [{"when": R["when"], "epochs_cap": R["fig1"]["epochs_cap"], "runs": len(R["fig1"]["runs"]),
                              "seconds": R["seconds"]} for R in results],
           "fixed_costs": fixed_costs(rows),
           "projection": projection(rows, cap, paper, [r for r in rows if r["epochs_cap"] == cap])}
    out["projection"]["assumption"] += (f"; run times fitted over the {len(rows)} runs of "
                                        f"{len(results)} measurements")
    out["seconds"] = sum(R["seconds"] for R in results)
    return out
