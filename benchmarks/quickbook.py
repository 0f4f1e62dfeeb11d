"""Section 4: the wall time of the quick book, read from `_build/stage/quick/timings.json` (nothing is run)."""
import json
from pathlib import Path

from .common import fmt, log, table


def book_timings(path: Path) -> dict | None:
    """Per-page seconds of the quick book (each page's last execution, plus the HTML build), their sum, and as
    `total` the wall time of the last grid run that executed every page from empty run caches; None when no
    complete quick book has been timed here (see lesionlib.pages.record_timings)."""
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if not rec.get("complete"):
        log(f"    {path}: not every page of the quick book has a timing yet; run `make book`")
        return None
    out = {**{k: float(v) for k, v in rec["pages"].items()}, "pages added up": float(rec["book_total"])}
    # Pages run side by side, so their seconds added up exceed the wall time: `book_wall` is the whole build's.
    # It is the book's cost only from empty run caches; a build that found runs cached is reported apart.
    if rec.get("book_wall") is not None and rec.get("book_wall_runs_cached") == 0:
        out["total"] = float(rec["book_wall"])
    elif rec.get("book_wall") is not None:
        out["whole build, warm cache"] = float(rec["book_wall"])
        log(f"    {path}: the last whole build found {rec.get('book_wall_runs_cached')} runs cached; for the book's "
            "cost build it from empty caches: LESIONLIB_CACHE=$(mktemp -d) make book")
    else:
        log(f"    {path}: no grid run here executed every page; run `make book` for the book's wall time")
    return out


def measure(a, R: dict, ctx: dict) -> None:
    """Section 4: the timings of --timings, into R['quick_book'] (minutes: NaN when there are none)."""
    log("4/5 quick book timings")
    tm = book_timings(a.timings)
    book_min = tm["total"] / 60 if tm and "total" in tm else float("nan")
    R["quick_book"] = {"path": str(a.timings), "timings_s": tm, "minutes": book_min}


def report(R: dict, a) -> list[str]:
    """Section 4 of the printed report."""
    qb = R["quick_book"]
    out = ["", "4. Quick book (lesionlib grid --profile quick)"]
    if qb["timings_s"]:
        names = {"pages added up": "pages added up (two at a time: they overlap)",
                 "total": "wall time of the book (empty run caches)"}
        out.append(table([(names.get(k, k), fmt(v / 60, "min", 2), f"{v:.0f} s") for k, v in qb["timings_s"].items()]))
    else:
        out.append(f"  {qb['path']} is missing: run `make book` (lesionlib grid --profile quick) to produce it")
    return out
