"""The paper's findings (a)-(i) as *holds*, *does not hold* or *inconclusive*, from intervals.

A finding reads comparisons (say F2 of LesAug minus F2 of LesAgn in one row of Fig 1), each with a 95 %
interval and a sign (+1 above 0, -1 below, 0 when it straddles 0; see `lesionlib.comparisons`, which also
draws the paired bootstrap replicates behind the intervals). A rule turns the signs into a verdict
(`majority`, `every`, `some_below`, `sign_verdict`).

This module owns the rules, the evidence they read for one direction (`Evidence`: ours from the run
cache, `run_evidence`; the paper's from its printed numbers, `paper_evidence`), the findings and the
tables the figure pages and the Conclusions page show. The same rules run on both (`findings`), so a
rule can be checked against the paper's own numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import reference
from .comparisons import interval, paper_replicates, run_replicates, sign, sign_verdict
from .experiment import ARM_LABELS
from .metrics import seed_interval
from .profile import DIRECTIONS, SIZE_NAMES

VERDICTS = ("holds", "does not hold", "inconclusive")


# --- rules: signs -> verdict -----------------------------------------------------------------------

def majority(signs) -> str:
    """'In most cases': holds when more than half are +; does not hold when even counting every
    undecided one as + would not make a majority; inconclusive otherwise."""
    signs = list(signs)
    plus, zero = signs.count(1), signs.count(0)
    if plus > len(signs) / 2:
        return "holds"
    return "does not hold" if plus + zero <= len(signs) / 2 else "inconclusive"


def every(signs) -> str:
    """'In all cases': holds when all are +, does not hold when any is -, inconclusive otherwise."""
    signs = list(signs)
    if signs and all(s == 1 for s in signs):
        return "holds"
    return "does not hold" if any(s == -1 for s in signs) else "inconclusive"


def some_below(signs) -> str:
    """'Sometimes worse': holds when any is -, does not hold when all are +, inconclusive otherwise."""
    signs = list(signs)
    if any(s == -1 for s in signs):
        return "holds"
    return "does not hold" if signs and all(s == 1 for s in signs) else "inconclusive"


def spread_null(k: int, sims: int = 20000, seed: int = 0) -> tuple[float, float]:
    """2.5 % and 97.5 % quantiles of (range R + range P of arm 1) / (the same of arm 2) when both arms'
    R and P are `k` independent normal draws with one common spread (the null of 'equal variance')."""
    z = np.random.default_rng(seed).standard_normal((sims, 4, k))
    r = np.ptp(z, axis=2)
    ratio = (r[:, 0] + r[:, 1]) / (r[:, 2] + r[:, 3])
    return float(np.quantile(ratio, 0.025)), float(np.quantile(ratio, 0.975))


def spread_verdict(ratio: float, k: int) -> tuple[str, tuple]:
    """(d): LesAug's ranges over `k` runs narrower than LesAgn's beyond what equal variances give."""
    lo, hi = spread_null(k)
    if not np.isfinite(ratio):
        return "inconclusive", (lo, hi)
    return ("holds" if ratio < lo else "does not hold" if ratio > hi else "inconclusive"), (lo, hi)


# --- evidence: F2 of every cell with joint bootstrap replicates -----------------------------------

@dataclass
class Evidence:
    """What the rules read for one direction.

    `f2`: (figure, row, arm) -> (point, replicates); `ranges`: Fig 3's min/max of R and P per arm and
    `k`, the runs behind them; `per_seed`: one row per (arm, seed) of the loss-curve and budget runs.
    """

    direction: str
    f2: dict
    ranges: pd.DataFrame | None = None
    k: int = 0
    per_seed: pd.DataFrame | None = None
    source: str = "ours"
    notes: list = field(default_factory=list)

    def point(self, cell) -> float:
        return self.f2[cell][0]

    def diff(self, a, b) -> tuple[float, float, float]:
        """(point, lo, hi) of F2(a) - F2(b)."""
        return interval(self.point(a) - self.point(b), self.f2[a][1] - self.f2[b][1])

    def rows(self, fig: str) -> list:
        return [s for s in SIZE_NAMES if (fig, s, "lesaug") in self.f2]


def paper_evidence(direction: str, reported: dict, n_boot: int = 2000) -> Evidence:
    """The paper's Fig 1-3 numbers for one direction, as `Evidence` (no loss curves or budgets: the paper
    reports none as numbers)."""
    target = DIRECTIONS[direction][1]
    cells = {(fig, row, arm): tuple(rp) for fig in ("fig1", "fig2") for row, arms in reported[fig][direction].items()
             for arm, rp in arms.items() if arm != "best"}
    f3 = reported["fig3"][direction]
    ranges = pd.DataFrame({arm: {"R min": v["R"][0], "R max": v["R"][1], "P min": v["P"][0], "P max": v["P"][1]}
                           for arm, v in f3.items()}).T
    return Evidence(direction, paper_replicates(cells, target, n_boot), ranges, k=5, source="paper",
                    notes=["intervals: binomial sampling error of a 200-lesion test set; arms independent"])


def run_evidence(runner, direction: str, n_boot: int = 1000, figs=("fig1", "fig2", "fig3", "controls")) -> Evidence:
    """Our runs of one direction as `Evidence`: Fig 1 and Fig 2 cells, Fig 3 ranges, and the Controls
    page's runs at the profile's own data (Fig 5's arms and size over `control_seeds`) per seed; `figs`
    limits it to some of these (a figure page reads only its own runs)."""
    from .analysis import figure_frame, figure_runs, fold_ranges

    P = runner.P
    cells = {}
    for fig in [f for f in ("fig1", "fig2") if f in figs]:
        specs, results = figure_runs(runner, fig, direction)
        by_cell: dict = {}
        for (row, arm, seed), res in zip(specs, results):
            by_cell.setdefault((fig, row, arm), []).append(res)
        cells.update(by_cell)
    ranges, k = None, 0
    if "fig3" in figs:
        f3 = figure_frame(runner, "fig3", direction, bootstrap=0)
        ranges, k = fold_ranges(f3), int(f3.groupby("arm").size().min())
    return Evidence(direction, run_replicates(cells, n_boot) if cells else {}, ranges, k,
                    per_seed(runner, direction, main_condition(P)) if "controls" in figs else None, notes=["intervals: bootstrap over test patients" + (" and seeds" if len(P.seeds) > 1 else "")])


def main_condition(P):
    """The Controls page's condition that matches the figures' data (`phantom_shared`; None on real data)."""
    return float(P.phantom_shared) if P.data_source == "phantom" else None


def convergence_finding(runner, direction: str) -> dict:
    """Finding (e) alone (for the Fig 5 page): read from the Controls page's runs in the figures' data."""
    ev = Evidence(direction, {}, per_seed=per_seed(runner, direction, main_condition(runner.P)))
    return _seed_findings(ev)[0]


def per_seed(runner, direction: str, condition) -> pd.DataFrame:
    """One row per (arm, seed) of the Controls page's runs in one data condition: the loss before training
    divided by Base's, the best epoch, and the budget (see `analysis.control_runs`)."""
    from .analysis import control_runs

    df = control_runs(runner, direction)
    df = df[df["shared"].apply(lambda c: c == condition)].copy()
    base = df[df.arm == "base"].set_index("seed")["start"]
    df["start"] = df["start"] / df["seed"].map(base)
    return df


# --- the findings ----------------------------------------------------------------------------------

def _row(claim, direction, verdict, evidence, rule):
    return {"claim": claim, "direction": direction, "verdict": verdict, "evidence": evidence, "rule": rule}


def _fmt(d) -> str:
    return f"{d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}]"


def _slope(ev: Evidence, fig: str, a: str, b: str) -> tuple[float, float, float]:
    """Least-squares slope of the F2 gap a - b against size rank (VLow = 0 ... High = 3), with interval."""
    rows = ev.rows(fig)
    if len(rows) < 2:  # one size: no trend to measure
        return float("nan"), float("nan"), float("nan")
    x = np.array([len(SIZE_NAMES) - 1 - SIZE_NAMES.index(r) for r in rows], float)
    x = x - x.mean()
    gap = lambda i: np.array([ev.f2[(fig, r, a)][i] - ev.f2[(fig, r, b)][i] for r in rows])  # noqa: E731
    point = float(x @ gap(0) / (x @ x))
    reps = np.tensordot(x, np.stack([ev.f2[(fig, r, a)][1] - ev.f2[(fig, r, b)][1] for r in rows]), 1) / (x @ x)
    return interval(point, reps)


def claim_a(ev: Evidence) -> dict:
    diffs = {r: ev.diff(("fig1", r, "lesaug"), ("fig1", r, "lesagn")) for r in ev.rows("fig1")}
    return _row("(a) LesAug beats LesAgn in most rows of Fig 1", ev.direction,
                majority(sign(*v[1:]) for v in diffs.values()),
                "F2 LesAug − LesAgn: " + "; ".join(f"{r} {_fmt(v)}" for r, v in diffs.items()),
                "holds if more than half the rows are above 0; does not hold if they cannot be")


def claim_b(ev: Evidence) -> dict:
    s = _slope(ev, "fig1", "lesaug", "lesagn")
    return _row("(b) the benefit grows as the target set shrinks", ev.direction, sign_verdict(-sign(*s[1:])),
                f"slope of the F2 gap per size step up: {_fmt(s)}", "holds if the slope is below 0")


def claim_c(ev: Evidence) -> dict:
    s = _slope(ev, "fig2", "lesaug", "lesagn")
    return _row("(c) the benefit shrinks as the source set shrinks", ev.direction, sign_verdict(sign(*s[1:])),
                f"slope of the F2 gap per source size step up: {_fmt(s)}", "holds if the slope is above 0")


def claim_d(ev: Evidence) -> dict | None:
    r = ev.ranges
    if r is None or not {"lesaug", "lesagn"} <= set(r.index):
        return None
    spread = lambda a: (r.loc[a, "R max"] - r.loc[a, "R min"]) + (r.loc[a, "P max"] - r.loc[a, "P min"])  # noqa
    ratio = spread("lesaug") / spread("lesagn") if spread("lesagn") > 0 else float("nan")
    verdict, (lo, hi) = spread_verdict(ratio, ev.k)
    return _row("(d) LesAug varies less across folds than LesAgn", ev.direction, verdict,
                f"(R range + P range) of LesAug / of LesAgn = {ratio:.2f} over {ev.k} runs each; "
                f"equal variances give [{lo:.2f}, {hi:.2f}]",
                "holds if the ratio is below what equal variances give 97.5 % of the time")


def claim_f(ev: Evidence) -> dict:
    base = [ev.diff((f, r, "lesaug"), (f, r, "base")) for f in ("fig1", "fig2") for r in ev.rows(f)]
    return _row("(f) lesion models beat Base in all cases (abstract)", ev.direction, every(sign(*v[1:]) for v in base),
                f"F2 LesAug − Base above 0 in {sum(sign(*v[1:]) == 1 for v in base)} of {len(base)} rows of "
                f"Fig 1 and Fig 2, below in {sum(sign(*v[1:]) == -1 for v in base)}",
                "holds if every row is above 0; does not hold if any is below")


def claim_g(ev: Evidence) -> dict:
    small = [r for r in ev.rows("fig2") if r != "High"]
    worse = {(r, b): ev.diff(("fig2", r, "lesaug"), ("fig2", r, b)) for r in small for b in ("base", "lesagn")}
    return _row("(g) with less source data LesAug is sometimes worse than a baseline", ev.direction,
                some_below(sign(*v[1:]) for v in worse.values()),
                "F2 LesAug − baseline: " + "; ".join(f"{r} vs {ARM_LABELS[b]} {_fmt(v)}" for (r, b), v in worse.items()),
                "holds if any row below High is below 0; does not hold if all are above")


def findings(ev: Evidence) -> list[dict]:
    """The paper's findings (a)-(h) for one direction, each with its verdict, the numbers behind it and its rule."""
    seed_e, seed_h = _seed_findings(ev)
    rows = [claim_a(ev), claim_b(ev), claim_c(ev), claim_d(ev), seed_e, claim_f(ev), claim_g(ev), seed_h]
    return [r for r in rows if r is not None]


# The findings each figure page states, read from that figure's runs alone ((e) and (h) read the Controls
# runs, (f) and (i) two figures or two directions: the Conclusions page states those).
FIGURE_CLAIMS = {"fig1": (claim_a, claim_b), "fig2": (claim_c, claim_g), "fig3": (claim_d,)}


def figure_verdicts(runner, fig: str, direction: str, n_boot: int = 1000) -> pd.DataFrame:
    """The findings that `fig` shows, on our runs and on the paper's numbers: claim, ours, paper, evidence."""
    if fig == "fig5":
        ours = [convergence_finding(runner, direction)]
        paper = [_seed_findings(Evidence(direction, {}))[0]]
    else:
        ours = [c(run_evidence(runner, direction, n_boot, figs=(fig,))) for c in FIGURE_CLAIMS[fig]]
        paper = [c(paper_evidence(direction, reference.reported(), 2000)) for c in FIGURE_CLAIMS[fig]]
    return pd.DataFrame([{"claim": o["claim"], "ours": o["verdict"], "paper": p["verdict"], "evidence": o["evidence"],
                          "rule": o["rule"]} for o, p in zip(ours, paper) if o is not None])


def _seed_findings(ev: Evidence) -> list[dict]:
    """(e) and (h): read runs per seed; with fewer than two seeds they cannot be decided."""
    d, df = ev.direction, ev.per_seed
    rule_e = "holds if both intervals (over seeds) lie below 0"
    rule_h = "holds if the interval (over seeds) lies below 0"
    if df is None or df.empty:
        why = "the paper shows Fig 5 as a plot and reports no training times"
        return [_row("(e) LesAug starts from a lower loss and converges sooner", d, "not computable", why, rule_e),
                _row("(h) LesAug takes less time to build, counting its source model", d, "not computable", why, rule_h)]
    w = df.pivot(index="seed", columns="arm")
    others = ["base", "lesagn"]
    start = seed_interval(w["start"]["lesaug"] - w["start"][others].min(axis=1))
    epoch = seed_interval(w["best epoch"]["lesaug"] - w["best epoch"][others].min(axis=1))
    n = len(w)
    wide = (lambda t: t if n > 1 else (t[0], float("-inf"), float("inf")))  # one seed: no interval
    start, epoch = wide(start), wide(epoch)
    signs = [sign(*start[1:]), sign(*epoch[1:])]
    verdict_e = "holds" if signs == [-1, -1] else "does not hold" if 1 in signs else "inconclusive"
    total = w["steps"]["lesaug"] + w["source steps"]["lesaug"] - w["steps"]["lesagn"]
    own = w["steps"]["lesaug"] - w["steps"]["lesagn"]
    secs = w["seconds"]["lesaug"] + w["source seconds"]["lesaug"] - w["seconds"]["lesagn"]
    t, o, sec = wide(seed_interval(total)), seed_interval(own), seed_interval(secs)
    return [_row("(e) LesAug starts from a lower loss and converges sooner", d, verdict_e,
                 f"normalised start loss LesAug − best other {_fmt(start)}; best epoch LesAug − earliest other "
                 f"{_fmt(epoch)} ({n} seed{'s' if n > 1 else ''})", rule_e),
            _row("(h) LesAug takes less time to build, counting its source model", d, sign_verdict(-sign(*t[1:])),
                 f"gradient steps LesAug + its source − LesAgn {t[0]:+.0f} [{t[1]:+.0f}, {t[2]:+.0f}] "
                 f"(without the source: {o[0]:+.0f}); seconds {sec[0]:+.1f} ({n} seed{'s' if n > 1 else ''})",
                 rule_h)]


def gain_by_direction(b2l: Evidence, l2b: Evidence) -> dict:
    """(i) the gain of LesAug over LesAgn (mean F2 gap over Fig 1's rows) is smaller for lung → brain."""
    def gap(ev):
        rows = ev.rows("fig1")
        pts = np.mean([ev.point(("fig1", r, "lesaug")) - ev.point(("fig1", r, "lesagn")) for r in rows])
        reps = np.mean([ev.f2[("fig1", r, "lesaug")][1] - ev.f2[("fig1", r, "lesagn")][1] for r in rows], axis=0)
        return pts, reps
    (pa, ra), (pb, rb) = gap(b2l), gap(l2b)
    n = min(len(ra), len(rb))
    d = interval(pa - pb, ra[:n] - rb[:n])  # the two directions' test sets are independent
    return _row("(i) the gain is smaller for lung → brain than for brain → lung", "both", sign_verdict(sign(*d[1:])),
                f"mean F2 gap brain → lung {pa:+.2f}, lung → brain {pb:+.2f}; difference {_fmt(d)}",
                "holds if the difference (brain → lung minus lung → brain) is above 0")


def verdict_table(b2l: Evidence, l2b: Evidence) -> pd.DataFrame:
    """Every finding for both directions, plus (i), as one table."""
    rows = findings(b2l) + findings(l2b) + [gain_by_direction(b2l, l2b)]
    return pd.DataFrame(rows)


def our_verdicts(runner, n_boot: int = 1000) -> pd.DataFrame:
    """`verdict_table` on this profile's runs."""
    return verdict_table(*(run_evidence(runner, d, n_boot) for d in DIRECTIONS))


def paper_verdicts(reported: dict, n_boot: int = 2000) -> pd.DataFrame:
    """`verdict_table` on the paper's own numbers (see `lesionlib.reference`)."""
    return verdict_table(*(paper_evidence(d, reported, n_boot) for d in DIRECTIONS))
