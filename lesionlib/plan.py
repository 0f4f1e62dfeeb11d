"""The dry run (`lesionlib grid --dry-run`): what a grid build would execute and train, and an estimate of
the training time, computed without executing or training anything.
"""
from __future__ import annotations

from pathlib import Path

from .pages import UP_TO_DATE, grid_jobs, input_files, page_fingerprint, page_status
from .profile import Profile, load_params, profile_path, project_root


def split_cached(cache, runs: list) -> tuple[list, list]:
    """`runs` as (those in the run cache, those still to train)."""
    have = [cache.has(r) for r in runs]
    return [r for r, h in zip(runs, have) if h], [r for r, h in zip(runs, have) if not h]


def plan_grid(profile: str, sections=None, directions=None, output=None) -> dict:
    """What `run_grid` would do, executing and training nothing: each page's status and why, its runs (each
    counted on the first page that needs it) cached or missing, and the missing runs' estimated seconds.

    The estimate fits `lesionlib.costs`' run-time model to this build's finished runs (at least three), else
    takes the committed benchmark of this kind of device; each missing run takes all its epochs at most, and
    the finished runs' mean share of their epochs as the estimate. A profile of real data whose files are
    absent is planned on its parameters (`counting_profile`): its runs are counted, none can be cached."""
    from .cache import RunCache
    from .figures import check_samples, counting_profile
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
        inputs = [f for pattern in page.inputs for f in input_files(root, pattern.format(profile=name))]
        status = page_status(stage / page.staged(d), page_fingerprint(root / page.notebook, p, inputs))
        if page.summary and before_summary and status == UP_TO_DATE:
            status = "a page before it executes"
        before_summary |= not page.summary and status != UP_TO_DATE
        done, todo = split_cached(cache, runs) if data_note is None else ([], runs)
        finished += done
        missing += todo
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
    from .experiment import unique_runs
    from .figures import FIGURES

    seen, out = set(), []
    for page, d in jobs:
        runs = []
        if page.section in FIGURES:
            runs = [r for r in unique_runs(FIGURES[page.section].specs(P, d).values()) if spec_key(r) not in seen]
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
    from .figures import FIGURES

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


def book_runs_cached(P: Profile) -> int:
    """How many of the training runs of the whole book on `P` are in its run cache already."""
    from .cache import RunCache
    from .figures import book_runs

    cache = RunCache(P.cache_root())
    return sum(cache.has(s) for s in book_runs(P))

