"""Command line: `lesionlib grid` (notebooks + book), `lesionlib notebooks` (refresh smoke outputs),
`lesionlib data` (fetch, prepare) and `lesionlib cache check` (verify the run cache)."""
from __future__ import annotations

import argparse
import sys


def _grid(args) -> int:
    from .grid import run_grid

    t = run_grid(args.profile, args.sections, args.directions, build=not args.no_build, force=args.force,
                 output=args.output, parallel=args.parallel)
    print(" ".join(f"{k}={v:.0f}s" for k, v in t.items()))
    return 0


def _notebooks(args) -> int:
    from .notebooks import refresh

    refresh(args.paths or None)
    return 0


def _data_fetch(args) -> int:
    from .data import brain_fetch

    def progress(name, done, total):
        print(f"\r{name}: {done / 1e6:.0f} / {total / 1e6:.0f} MB", end="", file=sys.stderr, flush=True)

    out = brain_fetch.fetch(args.dir, progress=progress)
    print(f"\nbrain tumour dataset ready in {out}", file=sys.stderr)
    return 0


def _data_prepare(args) -> int:
    import time

    from .data import build_lesions, save_lesions

    if args.source in ("brain", "lung") and args.organ not in (None, args.source):
        raise ValueError(f"--organ {args.organ} does not apply to --source {args.source}, which gives {args.source} "
                         "lesions only; --organ chooses the organ of --source phantom")
    organ = {"brain": "brain", "lung": "lung"}.get(args.source, args.organ or "lung")
    kwargs = {"image_size": args.image_size, "margin": args.margin}
    if args.source == "brain":
        kwargs.update(data_dir=args.dir, limit=args.limit)
    elif args.source == "lung":
        kwargs.update(data_dir=args.lidc_dir)
        if args.patients:
            kwargs["patients"] = args.patients
    elif args.source == "phantom":
        kwargs.update(n=args.n, seed=args.seed)
    t0 = time.perf_counter()
    ds = build_lesions(args.source, organ, **kwargs)
    path = save_lesions(ds, f"{args.out}/{organ}", params=dict(kwargs, source=args.source))
    c = ds.counts()
    print(f"{path}: {c['lesions']} lesions of {c['patients']} patients ({c['malignant']} malignant, "
          f"{c['benign']} benign) in {time.perf_counter() - t0:.0f} s")
    return 0


def _cache_check(args) -> int:
    from .cache import RunCache
    from .profile import cache_root

    cache = RunCache(cache_root(args.cache))
    bad = cache.check(load=args.weights)
    n = len(cache.entries())
    if not bad:
        print(f"{cache.root}: {n} runs, all sound")
        return 0
    for key, problems in bad.items():
        print(f"{key}: {'; '.join(problems)}", file=sys.stderr)
        if args.fix:
            cache.remove(key)
    if args.fix:
        print(f"{cache.root}: removed {len(bad)} bad entries or temporary directories; {len(cache.entries())} "
              "sound runs remain")
        return 0
    print(f"{cache.root}: {len(bad)} of {n} entries unsound or left over; `lesionlib cache check --fix` deletes them "
          "(they are retrained when needed)", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lesionlib", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid", help="execute the book's notebook grid on a profile with papermill, then build the book")
    g.add_argument("--profile", default="quick", help="smoke, quick, paper, or a path to a .yaml profile")
    g.add_argument("--sections", nargs="+", help="only these sections (e.g. data fig1)")
    g.add_argument("--directions", nargs="+", help="only these directions (brain_to_lung, lung_to_brain)")
    g.add_argument("--no-build", action="store_true", help="execute notebooks but do not build the HTML")
    g.add_argument("--force", action="store_true", help="execute notebooks even when up to date")
    g.add_argument("--output", help="where _build/stage and _build/html go (default: the project folder)")
    g.add_argument("--parallel", type=int, default=None, metavar="N",
                   help="execute up to N pages at once (each in its own kernel with cores/N OpenMP threads; summary "
                        "pages last); each run still trains with its profile's `threads`. Default: 2 when Dask "
                        "workers train the runs (the profile's `workers` or a scheduler), else 1")
    g.set_defaults(func=_grid)
    n = sub.add_parser("notebooks", help="re-execute book/*.ipynb in place with their smoke defaults (for nbval)")
    n.add_argument("paths", nargs="*")
    n.set_defaults(func=_notebooks)
    data = sub.add_parser("data", help="download and prepare lesion data sets").add_subparsers(dest="data_cmd",
                                                                                            required=True)
    f = data.add_parser("fetch", help="download a data set (resumable, MD5-verified)")
    f.add_argument("dataset", choices=["brain"], help="brain: Cheng's figshare brain tumour dataset")
    f.add_argument("--dir", required=True, help="where the files go (or already are)")
    f.set_defaults(func=_data_fetch)
    p = data.add_parser("prepare", help="extract lesion crops into the prepared format: OUT/<organ>/")
    p.add_argument("--source", required=True, choices=["brain", "lung", "phantom"])
    p.add_argument("--out", required=True, help="prepared data directory (the profile's data_dir)")
    p.add_argument("--dir", help="brain: the folder with Cheng's .mat files (or its mat/ subfolder)")
    p.add_argument("--lidc-dir", help="lung: the LIDC-IDRI DICOM folder (classic or NBIA layout)")
    p.add_argument("--patients", nargs="+", help="lung: only these LIDC patient ids")
    p.add_argument("--organ", choices=["brain", "lung"], help="phantom: which organ (default lung)")
    p.add_argument("--n", type=int, default=500, help="phantom: number of slices")
    p.add_argument("--seed", type=int, default=0, help="phantom: generator seed")
    p.add_argument("--limit", type=int, help="brain: only the first N slices")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--margin", type=float, default=0.25)
    p.set_defaults(func=_data_prepare)
    c = sub.add_parser("cache", help="inspect the run cache").add_subparsers(dest="cache_cmd", required=True)
    k = c.add_parser("check", help="verify every finished run (files parse, key matches, weights load)")
    k.add_argument("--cache", help="run cache root (default: $LESIONLIB_CACHE or .cache/lesionlib in the project)")
    k.add_argument("--weights", action="store_true", help="also load every model.pt with torch (slower; the "
                   "default check reads every byte against the files' checksums)")
    k.add_argument("--fix", action="store_true", help="delete bad entries and leftover temporary directories "
                   "(not while a run is writing to the cache)")
    k.set_defaults(func=_cache_check)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"lesionlib: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
