"""The whole book on one GPU: `python -m benchmarks.gpu_book` (issue 26), about 6 minutes on an H100 (a target
until a GPU has run it). Every page of `params/gpu-check.yaml` executes through `lesionlib grid` from empty
caches, training runs go to Dask workers that each hold one GPU (resource GPU=1), the HTML book is built
strictly (-W), and the book's invariants are checked. The JSON (pages and their seconds, runs with their device,
precision and seconds, what failed) goes to benchmarks/results/gpu-book-<device>.json.

`--tiny --device cpu` runs the same on a CPU with the tiny test network at 32x32 (a check of the script, seconds
per page); `--sections` / `--directions` run part of the book.
"""
import argparse
import json
import re
import tempfile
import time
import traceback
from pathlib import Path

import yaml

from .common import ROOT, log, machine, table, write_json


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_book", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="gpu-check", help="the profile checked (default: %(default)s)")
    p.add_argument("--device", default="cuda", help="torch device of the runs (default: %(default)s; cpu allowed)")
    p.add_argument("--tiny", action="store_true", help="the tiny test network at 32x32 (a check on a CPU)")
    p.add_argument("--runs-per-gpu", type=int, default=1, help="training runs at once on each GPU (default: 1)")
    p.add_argument("--sections", nargs="+", help="only these sections of the book")
    p.add_argument("--directions", nargs="+", help="only these directions")
    p.add_argument("--out", type=Path, help="JSON results (default: benchmarks/results/gpu-book-<device>.json)")
    p.add_argument("--no-build", action="store_true", help="execute the pages but build no HTML (a GPU machine without "
                   "Jupyter Book: build the returned stage folder elsewhere with `jupyter-book build -W`)")
    p.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary folder)")
    return p.parse_args(argv)


def check_profile(a, folder: Path) -> Path:
    """The profile file the check runs: `a.profile` on `a.device`, its run cache in `folder` (empty caches),
    `a.runs_per_gpu` runs per GPU and, with --tiny, the test network at 32x32."""
    values = {"profile": "gpu-check", "base": a.profile, "device": a.device, "runs_per_gpu": a.runs_per_gpu,
              "workers": a.runs_per_gpu, "cache_dir": str(folder / "cache")}  # one GPU: its runs at once are the workers
    if a.tiny:
        values.update(arch="test_densenet", image_size=32, phantom_slice_size=64, generic_size=60)
    path = folder / "gpu-check.yaml"  # the stage folder is named after the file: _build/stage/gpu-check
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU {machine()['cpu']}"


def run_rows(cache_root: Path) -> list:
    """One row per finished run in the check's cache: what it was, where and in which precision it trained."""
    rows = []
    for entry in sorted((cache_root / "runs").glob("[!.]*")):
        spec, result = (json.loads((entry / f"{n}.json").read_text()) for n in ("spec", "result"))
        env = spec.get("env", {})
        rows.append({"key": entry.name, "role": spec["role"], "device": env.get("device"),
                     "precision": env.get("precision"), "hardware": env.get("hardware"),
                     "seconds": result.get("seconds"), "epochs_run": result.get("fit", {}).get("epochs_run")})
    return rows


def invariants(folder: Path, P, sections, directions, html_built: bool = True) -> list:
    """What a sound book of this check shows, as a list of what is wrong (empty: all holds). A part of the book
    (`sections`) is not built into HTML (its pages link to pages it did not execute): only its pages are checked."""
    import nbformat

    from lesionlib.pages import grid_jobs
    from lesionlib.plan import job_runs

    problems = []
    stage, html = folder / "_build" / "stage" / "gpu-check", folder / "_build" / "html"
    jobs = grid_jobs(sections, directions)
    for page, d in jobs:
        staged = stage / page.staged(d)
        if not staged.is_file() or nbformat.read(staged, 4).metadata.get("lesionlib", {}).get("complete") is not True:
            problems.append(f"{staged.name}: not executed to the end")
            continue
        page_html = html / staged.relative_to(stage).with_suffix(".html")
        if sections or not html_built:
            continue
        if not page_html.is_file():
            problems.append(f"{page_html.name}: not in the built book")
        elif "Traceback" in page_html.read_text():
            problems.append(f"{page_html.name}: shows a traceback")
    wanted = sum(len(r) for r in job_runs(P, jobs))
    trained = len(run_rows(Path(P.cache_root())))
    if trained < wanted:
        problems.append(f"{trained} runs in the cache, {wanted} needed")
    return problems


def main(argv=None) -> int:
    a = parse_args(argv)
    from lesionlib.grid import run_grid
    from lesionlib.profile import load_profile

    with tempfile.TemporaryDirectory(prefix="gpu-book-") as tmp:
        folder = a.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = check_profile(a, folder)
        P = load_profile(str(path))
        log(f"gpu_book: profile {a.profile} on {a.device} ({device_name(a.device)}), build in {folder}")
        t0, timings, error = time.perf_counter(), {}, None
        try:
            timings = run_grid(str(path), a.sections, a.directions, output=folder, quiet=True, build=not a.no_build)
        except Exception:  # the JSON says what failed; the build log and the failed page stay in --keep
            error = traceback.format_exc(limit=5)
        wall = time.perf_counter() - t0
        runs = run_rows(Path(P.cache_root()))
        problems = ([f"the build failed: {error.strip().splitlines()[-1]}"] if error else []) + \
            invariants(folder, P, a.sections, a.directions, html_built=not a.no_build)
        R = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "device": device_name(a.device), "tiny": a.tiny,
             "machine": machine(), "profile": a.profile, "runs_per_gpu": a.runs_per_gpu,
             "sections": a.sections, "directions": a.directions, "wall_s": wall, "pages_s": timings,
             "runs": len(runs), "run_seconds": sum(r["seconds"] or 0 for r in runs),
             "precisions": sorted({str(r["precision"]) for r in runs}), "devices": sorted({str(r["device"]) for r in runs}),
             "run_rows": runs, "ok": not problems, "problems": problems, "error": error}
    slug = re.sub(r"[^a-z0-9]+", "-", R["device"].lower()).strip("-")
    out = a.out or ROOT / "benchmarks" / "results" / f"gpu-book-{slug}{'-tiny' if a.tiny else ''}.json"
    write_json(out, R)
    pages = [k for k in timings if k not in ("notebooks", "html", "total")]
    print(table([("device", R["device"]), ("pages executed", str(len(pages))),
                 ("runs trained", str(R["runs"])), ("precision", ", ".join(R["precisions"])),
                 ("wall", f"{wall:.0f} s"), ("runs' own seconds", f"{R['run_seconds']:.0f} s"),
                 ("invariants", "hold" if R["ok"] else "; ".join(problems))]))
    print(f"results: {out}")
    return 0 if R["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
