"""Command line: `lesionlib grid` (notebooks + book) and `lesionlib notebooks` (refresh smoke outputs)."""
from __future__ import annotations

import argparse
import sys


def _grid(args) -> int:
    from .grid import run_grid

    t = run_grid(args.profile, args.sections, args.directions, build=not args.no_build, force=args.force)
    print(" ".join(f"{k}={v:.0f}s" for k, v in t.items()))
    return 0


def _notebooks(args) -> int:
    from .notebooks import refresh

    refresh(args.paths or None)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lesionlib", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid", help="execute the book's notebook grid on a profile with papermill, then build the book")
    g.add_argument("--profile", default="quick", help="smoke, quick, paper, or a path to a .yaml profile")
    g.add_argument("--sections", nargs="+", help="only these sections (e.g. data fig1)")
    g.add_argument("--directions", nargs="+", help="only these directions (brain_to_lung, lung_to_brain)")
    g.add_argument("--no-build", action="store_true", help="execute notebooks but do not build the HTML")
    g.add_argument("--force", action="store_true", help="execute notebooks even when up to date")
    g.set_defaults(func=_grid)
    n = sub.add_parser("notebooks", help="re-execute book/*.ipynb in place with their smoke defaults (for nbval)")
    n.add_argument("paths", nargs="*")
    n.set_defaults(func=_notebooks)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"lesionlib: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
