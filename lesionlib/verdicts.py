"""The paper's findings (a)-(i) as *holds*, *does not hold* or *inconclusive*, decided on skill.

A finding reads comparisons (say AUC of LesAug minus AUC of LesAgn in one row of Fig 1), each a
`comparisons.Comparison` with a 95 % interval that covers with few seeds. On our runs a finding is
decided on **skill** (the AUC, threshold-free) and, beside it, on the paper's own measure (F2 at the
threshold 0.5, fixed in advance); the paper's published numbers have only R and P, so the same rules run
on their F2. A comparison only counts for the arm it favours when that arm shows skill (its AUC interval
lies above 0.5), and a finding that combines several comparisons adjusts them with Holm.

The rules are fixed in `book/assumptions.md` ("Decision rules"), which also says which of them were
changed after the paper's numbers had been seen, and why. `lesionlib.simulation` measures how often
they err.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np
import pandas as pd

from . import reference
from .comparisons import (UNDECIDED, Comparison, cell_replicates, gated, holm_signs, paper_replicates,
                          paper_spreads, replicate_comparison, seed_comparison, sign_verdict)
from .arms import label
from .figures import FIGURES
from .profile import DIRECTIONS, SIZE_NAMES
from .report import interval_text

VERDICTS = ("holds", "does not hold", "inconclusive")
LEVEL = 0.95


# --- rules: signs -> verdict -----------------------------------------------------------------------

def majority(signs) -> str:
    """'In most cases': holds when more than half are + (Holm-adjusted signs); does not hold when even counting
    every undecided one as + would not make a majority; inconclusive otherwise."""
    signs = list(signs)
    plus, zero = signs.count(1), signs.count(0)
    if plus > len(signs) / 2:
        return "holds"
    return "does not hold" if plus + zero <= len(signs) / 2 else "inconclusive"


def every(signs, adjusted=None) -> str:
    """'In all cases': holds when all are + (each at its own level: all must be, so no adjustment is needed);
    does not hold when any is - after Holm (`adjusted`); inconclusive otherwise."""
    signs = list(signs)
    adjusted = signs if adjusted is None else list(adjusted)
    if signs and all(s == 1 for s in signs):
        return "holds"
    return "does not hold" if any(s == -1 for s in adjusted) else "inconclusive"


def some_below(signs, adjusted=None) -> str:
    """'Sometimes worse': holds when any is - after Holm (`adjusted`); does not hold when all are +;
    inconclusive otherwise."""
    signs = list(signs)
    adjusted = signs if adjusted is None else list(adjusted)
    if any(s == -1 for s in adjusted):
        return "holds"
    return "does not hold" if signs and all(s == 1 for s in signs) else "inconclusive"


def swap_test(frame: pd.DataFrame, a: str = "lesaug", b: str = "lesagn", statistic: str = "rp",
              max_exact: int = 16, sims: int = 8192, seed: int = 0) -> tuple[float, float, float, int]:
    """(ratio, p_low, p_high, pairs): spread of arm `a` over Fig 3's runs divided by arm `b`'s, against
    its distribution when the two arms' runs are swapped at random within each (fold, seed) pair.
    A swap that leaves arm `b` with no spread gives an infinite ratio: it counts, as the largest value.

    `statistic` 'rp': range of R + range of P (the paper's view); 'auc': range of the AUC. Exact over every
    swap for up to `max_exact` pairs (the paper profile's 5 folds x 3 seeds: 2^15), else `sims` random swaps
    with the observed layout counted among them (p >= 1 / (sims + 1)). The null is the arms' exchangeability, so
    the nesting of folds in seeds and any R-P correlation are kept as they are.
    """
    cols = ["recall", "precision"] if statistic == "rp" else ["auc"]
    keys = [c for c in ("fold", "seed") if c in frame]
    w = frame[frame.arm.isin([a, b])].pivot_table(index=keys, columns="arm", values=cols)
    xa = np.stack([w[(c, a)].to_numpy(float) for c in cols])  # (metrics, pairs)
    xb = np.stack([w[(c, b)].to_numpy(float) for c in cols])
    k = xa.shape[1]
    if k <= max_exact:
        swaps = np.array(list(product((False, True), repeat=k)))
    else:
        swaps = np.random.default_rng(seed).random((sims, k)) < 0.5
    sa = np.where(swaps[:, None, :], xb[None], xa[None])  # (perms, metrics, pairs)
    sb = np.where(swaps[:, None, :], xa[None], xb[None])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.ptp(sa, axis=2).sum(1) / np.ptp(sb, axis=2).sum(1)
        obs = np.ptp(xa, axis=1).sum() / np.ptp(xb, axis=1).sum()
    ratios = ratios[~np.isnan(ratios)]
    if not np.isfinite(obs) or not len(ratios):
        return float(obs), 1.0, 1.0, k
    extra = 0 if k <= max_exact else 1  # random swaps: the observed layout is one of the draws
    lo = (np.sum(ratios <= obs) + extra) / (len(ratios) + extra)
    hi = (np.sum(ratios >= obs) + extra) / (len(ratios) + extra)
    return float(obs), float(lo), float(hi), k


# --- evidence: every cell of one direction, with its replicates ----------------------------------

@dataclass
class Evidence:
    """What the rules read for one direction.

    `stats`: (figure, row, arm) -> {'auc', 'f2', ...}: arrays (replicates + 1, seeds), row 0 as observed
    (`comparisons.cell_replicates`; the paper's: only 'f2', one column whose replicates carry every error).
    `fig3`: Fig 3's runs, one row per (fold, arm, seed) (ours); `ranges`: min/max of R and P per arm;
    `per_seed`: one row per (arm, seed) of the Controls runs at the figures' data.
    """

    direction: str
    stats: dict
    ranges: pd.DataFrame | None = None
    fig3: pd.DataFrame | None = None
    per_seed: pd.DataFrame | None = None
    source: str = "ours"
    notes: list = field(default_factory=list)

    @property
    def metric(self) -> str:
        """What decides: skill (AUC) on our runs, F2 on the paper's numbers (it reports no ranking)."""
        return "f2" if self.source == "paper" else "auc"

    def metrics(self) -> tuple:
        return (self.metric,) if self.source == "paper" else ("auc", "f2")

    def point(self, cell, metric=None) -> float:
        return float(np.mean(self.stats[cell][metric or self.metric][0]))

    def contrast(self, weights: dict, metric=None) -> Comparison:
        """sum of weight x cell, as a Comparison (ours: over seeds and test patients; the paper's: replicates)."""
        m = metric or self.metric
        x = sum(w * self.stats[cell][m] for cell, w in weights.items())
        if self.source == "paper":
            return replicate_comparison(float(x[0, 0]), x[1:, 0])
        return seed_comparison(x)

    def skill(self, cells) -> Comparison | None:
        """Mean AUC of `cells` minus 0.5 (ours; None for the paper's numbers, which rank nothing)."""
        if self.source == "paper":
            return None
        cells = list(cells)
        return seed_comparison(sum(self.stats[c]["auc"] for c in cells) / len(cells) - 0.5)

    def diff(self, a, b, metric=None) -> Comparison:
        """a - b, gated on the skill of whichever arm it would favour (ours)."""
        c = self.contrast({a: 1.0, b: -1.0}, metric)
        return c if self.source == "paper" else gated(c, self.skill([a]), self.skill([b]))

    def rows(self, fig: str) -> list:
        return [s for s in SIZE_NAMES if (fig, s, "lesaug") in self.stats]


def paper_evidence(direction: str, reported: dict, n_boot: int = 2000) -> Evidence:
    """The paper's Fig 1-3 numbers for one direction, as `Evidence` (no loss curves or budgets: the paper
    reports none as numbers)."""
    cells = {(fig, row, arm): tuple(rp) for fig in ("fig1", "fig2") for row, arms in reported[fig][direction].items()
             for arm, rp in arms.items() if arm != "best"}
    f3 = reported["fig3"][direction]
    ranges = pd.DataFrame({arm: {"R min": v["R"][0], "R max": v["R"][1], "P min": v["P"][0], "P max": v["P"][1]}
                           for arm, v in f3.items()}).T
    return Evidence(direction, paper_replicates(cells, direction, paper_spreads(f3), n_boot), ranges, source="paper",
                    notes=["intervals: another run of the arm (R and P spread as the paper's Fig 3 ranges imply) "
                           "on another 200-lesion test set; arms independent"])


def run_evidence(runner, direction: str, n_boot: int = 1000, figs=("fig1", "fig2", "fig3", "controls")) -> Evidence:
    """Our runs of one direction as `Evidence`: Fig 1 and Fig 2 cells, Fig 3's runs, and the Controls page's runs
    at the profile's own data per seed; `figs` limits it to some of these (a figure page reads its own runs)."""
    from .analysis import figure_frame, figure_runs, fold_ranges

    P = runner.P
    cells = {}
    for fig in [f for f in ("fig1", "fig2") if f in figs]:
        specs, results = figure_runs(runner, fig, direction)
        for (row, arm, seed), res in zip(specs, results):
            cells.setdefault((fig, row, arm), []).append(res)
    ranges = f3 = None
    if "fig3" in figs:
        f3 = figure_frame(runner, "fig3", direction, bootstrap=0)
        ranges = fold_ranges(f3)
    stream = [0, list(DIRECTIONS).index(direction)]  # each direction its own random stream
    return Evidence(direction, cell_replicates(cells, n_boot, stream) if cells else {}, ranges, f3,
                    per_seed(runner, direction, main_condition(P)) if "controls" in figs else None,
                    notes=["intervals: t over seeds around a paired bootstrap over test patients"])


def main_condition(P):
    """The Controls page's condition that matches the figures' data (`phantom_shared`; None on real data)."""
    return float(P.phantom_shared) if P.data_source == "phantom" else None


def convergence_finding(runner, direction: str) -> dict:
    """Finding (e) alone (for the Fig 5 page): read from the Controls page's runs in the figures' data."""
    ev = Evidence(direction, {}, per_seed=per_seed(runner, direction, main_condition(runner.P)))
    return _seed_findings(ev)[0]


def per_seed(runner, direction: str, condition) -> pd.DataFrame:
    """One row per (arm, seed) of the Controls page's runs in one data condition: the loss before training
    divided by the class-prior loss (predicting the training set's malignant share for every lesion), the best
    epoch, and the budget (see `analysis.control_runs`)."""
    from .analysis import control_runs

    df = control_runs(runner, direction)
    df = df[df["shared"].apply(lambda c: c == condition)].copy()
    df["start"] = df["start"] / df["prior loss"]
    return df


# --- the findings ----------------------------------------------------------------------------------

def _row(claim, direction, verdict, evidence, rule):
    return {"claim": claim, "direction": direction, "verdict": verdict, "evidence": evidence, "rule": rule}


def _fmt(c) -> str:
    return interval_text(c.point, c.lo, c.hi)


NAMES = {"auc": "AUC", "f2": "F2"}


def _slope(ev: Evidence, fig: str, a: str, b: str, metric=None) -> Comparison:
    """Least-squares slope of the gap a - b against size rank (VLow = 0 ... High = 3), with interval."""
    rows = ev.rows(fig)
    if len(rows) < 2:  # one size: no trend to measure
        return UNDECIDED
    x = np.array([len(SIZE_NAMES) - 1 - SIZE_NAMES.index(r) for r in rows], float)
    x = (x - x.mean()) / ((x - x.mean()) @ (x - x.mean()))
    w = {}
    for r, xi in zip(rows, x):
        w[(fig, r, a)] = w.get((fig, r, a), 0.0) + xi
        w[(fig, r, b)] = w.get((fig, r, b), 0.0) - xi
    return ev.contrast(w, metric)


def _trend(ev: Evidence, fig: str, want: int, metric) -> tuple[str, Comparison]:
    """Verdict of a trend the paper claims has sign `want`: it holds only if LesAug shows skill over the figure."""
    s = _slope(ev, fig, "lesaug", "lesagn", metric)
    verdict = sign_verdict(want * s.sign)
    sk = ev.skill([(fig, r, "lesaug") for r in ev.rows(fig)])
    if verdict == "holds" and sk is not None and sk.sign <= 0:
        verdict = "inconclusive"
    return verdict, s


def claim_a(ev: Evidence, metric=None) -> dict:
    m = metric or ev.metric
    diffs = {r: ev.diff(("fig1", r, "lesaug"), ("fig1", r, "lesagn"), m) for r in ev.rows("fig1")}
    return _row("(a) LesAug beats LesAgn in most rows of Fig 1", ev.direction, majority(holm_signs(diffs.values())),
                f"{NAMES[m]} LesAug − LesAgn: " + "; ".join(f"{r} {_fmt(v)}" for r, v in diffs.items()),
                "holds if more than half the rows are above 0 after Holm's adjustment over the rows; does not hold "
                "if they cannot be")


def claim_b(ev: Evidence, metric=None) -> dict:
    m = metric or ev.metric
    verdict, s = _trend(ev, "fig1", -1, m)
    return _row("(b) the benefit grows as the target set shrinks", ev.direction, verdict,
                f"slope of the {NAMES[m]} gap per size step up: {_fmt(s)}",
                "holds if the slope is below 0 and LesAug shows skill")


def claim_c(ev: Evidence, metric=None) -> dict:
    m = metric or ev.metric
    verdict, s = _trend(ev, "fig2", 1, m)
    return _row("(c) the benefit shrinks as the source set shrinks", ev.direction, verdict,
                f"slope of the {NAMES[m]} gap per source size step up: {_fmt(s)}",
                "holds if the slope is above 0 and LesAug shows skill")


def claim_d(ev: Evidence, metric=None) -> dict | None:
    rule = ("holds if swapping LesAug's and LesAgn's runs within each (fold, seed) gives a ratio this small at most "
            "2.5 % of the time; does not hold if one this large at most 2.5 %")
    claim = "(d) LesAug varies less across folds than LesAgn"
    if ev.source == "paper":
        if ev.ranges is None:
            return None
        return _row(claim, ev.direction, "not computable",
                    "the paper gives each arm's range over its 5 folds, not each fold's numbers, which a swap test "
                    "needs (with 5 folds its smallest p is 1/32 anyway)", rule)
    if ev.fig3 is None or not {"lesaug", "lesagn"} <= set(ev.fig3.arm):
        return None
    m = metric or ev.metric
    ratio, lo, hi, n = swap_test(ev.fig3, statistic="auc" if m == "auc" else "rp")
    alpha = (1 - LEVEL) / 2
    verdict = "holds" if lo <= alpha else "does not hold" if hi <= alpha else "inconclusive"
    sk = per_seed_comparison(ev.fig3[ev.fig3.arm == "lesaug"]["auc"] - 0.5)
    if verdict == "holds" and sk.sign <= 0:
        verdict = "inconclusive"  # a model that calls every lesion one class varies little, and knows nothing
    what = "range of the AUC" if m == "auc" else "range of R + range of P"
    return _row(claim, ev.direction, verdict,
                f"{what} of LesAug / of LesAgn = {ratio:.2f} over {n} (fold, seed) pairs; swap test p = {lo:.3f} "
                f"(this small), {hi:.3f} (this large)", rule)


def _rows_against_base(ev: Evidence) -> list:
    """(figure, row) of every Fig 1 and Fig 2 row, counting once the run both show (Fig 2's High is Fig 1's High)."""
    out = [("fig1", r) for r in ev.rows("fig1")]
    return out + [("fig2", r) for r in ev.rows("fig2") if not (r == "High" and ("fig1", "High") in out)]


def claim_f(ev: Evidence, metric=None) -> dict:
    m = metric or ev.metric
    base = [ev.diff((f, r, "lesaug"), (f, r, "base"), m) for f, r in _rows_against_base(ev)]
    signs, adj = [c.sign for c in base], holm_signs(base)
    return _row("(f) lesion models beat Base in all cases (abstract)", ev.direction, every(signs, adj),
                f"{NAMES[m]} LesAug − Base above 0 in {signs.count(1)} of {len(base)} distinct rows of Fig 1 and "
                f"Fig 2, below in {adj.count(-1)} after Holm",
                "holds if every row is above 0; does not hold if any is below after Holm's adjustment")


def claim_g(ev: Evidence, metric=None) -> dict:
    m = metric or ev.metric
    small = [r for r in ev.rows("fig2") if r != "High"]
    worse = {(r, b): ev.diff(("fig2", r, "lesaug"), ("fig2", r, b), m) for r in small for b in ("base", "lesagn")}
    signs, adj = [c.sign for c in worse.values()], holm_signs(worse.values())
    return _row("(g) with less source data LesAug is sometimes worse than a baseline", ev.direction,
                some_below(signs, adj),
                f"{NAMES[m]} LesAug − baseline: " + "; ".join(f"{r} vs {label(b)} {_fmt(v)}"
                                                             for (r, b), v in worse.items()),
                "holds if any row below High is below 0 after Holm's adjustment; does not hold if all are above")


CLAIMS = {"(a)": claim_a, "(b)": claim_b, "(c)": claim_c, "(d)": claim_d, "(f)": claim_f, "(g)": claim_g}


def findings(ev: Evidence) -> list[dict]:
    """The paper's findings (a)-(h) for one direction, each with its verdict (on skill for our runs), the verdict
    on F2 beside it, the numbers behind it and its rule."""
    seed_e, seed_h = _seed_findings(ev)

    def both(c):  # the verdict on skill (ours) with the one on F2 beside it
        row = c(ev)
        if row is None:
            return []
        if ev.source == "paper":  # decided on F2 already: nothing to show beside it
            return [{**row, "F2 verdict": row["verdict"], "F2 evidence": ""}]
        f2 = c(ev, "f2")
        return [{**row, "F2 verdict": f2["verdict"], "F2 evidence": f2["evidence"]}]
    seed = lambda r: [{**r, "F2 verdict": r["verdict"], "F2 evidence": ""}]  # noqa: E731  (no threshold involved)
    return (both(claim_a) + both(claim_b) + both(claim_c) + both(claim_d) + seed(seed_e) + both(claim_f)
            + both(claim_g) + seed(seed_h))


def figure_claims(fig: str) -> tuple:
    """The rules of the findings a figure's page states from that figure's runs alone (`Figure.claims`; (e) and
    (h) are decided on seeds, (f) and (i) on two figures or two directions: the Conclusions page states those)."""
    return tuple(CLAIMS[c] for c in FIGURES[fig].claims if c in CLAIMS)


def figure_verdicts(runner, fig: str, direction: str, n_boot: int = 1000) -> pd.DataFrame:
    """The findings that `fig` shows, on our runs (skill, and F2 beside) and on the paper's numbers:
    claim, ours, ours F2, paper, evidence, rule."""
    if fig == "fig5":
        o = convergence_finding(runner, direction)
        p = _seed_findings(Evidence(direction, {}))[0]
        return pd.DataFrame([{"claim": o["claim"], "ours": o["verdict"], "ours F2": o["verdict"], "paper": p["verdict"],
                              "evidence": o["evidence"], "rule": o["rule"]}])
    ev = run_evidence(runner, direction, n_boot, figs=(fig,))
    pev = paper_evidence(direction, reference.reported(), 2000)
    rows = []
    for c in figure_claims(fig):
        o, p = c(ev), c(pev)
        if o is None:
            continue
        rows.append({"claim": o["claim"], "ours": o["verdict"], "ours F2": c(ev, "f2")["verdict"],
                     "paper": p["verdict"] if p is not None else "not computable", "evidence": o["evidence"],
                     "rule": o["rule"]})
    return pd.DataFrame(rows)


def per_seed_comparison(values) -> Comparison:
    """Mean over seeds of per-seed values that have no test-set error (losses on validation patients, steps):
    `seed_comparison` with no test-patient replicates, i.e. a t interval with n - 1 df; one seed, or seeds that
    all agree, decide nothing."""
    return seed_comparison(np.asarray(values, dtype=float)[None, :])


def _seed_findings(ev: Evidence) -> list[dict]:
    """(e) and (h): read runs per seed; with fewer than two seeds, or no spread between them, undecided."""
    d, df = ev.direction, ev.per_seed
    rule_e = ("holds if the start loss (over the class-prior loss) of LesAug lies below LesShuf's and below the "
              "better fresh start's, and its best epoch before the earlier of Base's and LesAgn's (all three intervals below 0); "
              "does not hold if any lies above 0 after Holm")
    rule_h = "holds if the interval (over seeds) lies below 0"
    if df is None or df.empty:
        why = "the paper shows Fig 5 as a plot and reports no training times"
        return [_row("(e) LesAug starts from a lower loss and converges sooner", d, "not computable", why, rule_e),
                _row("(h) LesAug takes less time to build, counting its source model", d, "not computable", why, rule_h)]
    w = df.pivot(index="seed", columns="arm")
    fresh = ["base", "lesagn"]
    parts = {"start LesAug − best fresh start": per_seed_comparison(w["start"]["lesaug"] - w["start"][fresh].min(axis=1)),
             "best epoch LesAug − earliest other": per_seed_comparison(
                 w["best epoch"]["lesaug"] - w["best epoch"][fresh].min(axis=1))}
    if "lesshuf" in w["start"]:
        parts["start LesAug − LesShuf"] = per_seed_comparison(w["start"]["lesaug"] - w["start"]["lesshuf"])
    signs, adj = [c.sign for c in parts.values()], holm_signs(parts.values())
    verdict_e = "holds" if all(s == -1 for s in signs) else "does not hold" if 1 in adj else "inconclusive"
    n = len(w)
    total = per_seed_comparison(w["steps"]["lesaug"] + w["source steps"]["lesaug"] - w["steps"]["lesagn"])
    own = per_seed_comparison(w["steps"]["lesaug"] - w["steps"]["lesagn"])
    secs = per_seed_comparison(w["seconds"]["lesaug"] + w["source seconds"]["lesaug"] - w["seconds"]["lesagn"])
    seeds = f"({n} seed{'s' if n > 1 else ''})"
    return [_row("(e) LesAug starts from a lower loss and converges sooner", d, verdict_e,
                 "; ".join(f"{k} {_fmt(c)}" for k, c in parts.items()) + f" {seeds}", rule_e),
            _row("(h) LesAug takes less time to build, counting its source model", d, sign_verdict(-total.sign),
                 f"gradient steps LesAug + its source − LesAgn {interval_text(total.point, total.lo, total.hi, 0)} "
                 f"(without the source: {own.point:+.0f}); seconds {secs.point:+.1f} {seeds}", rule_h)]


def gain_by_direction(b2l: Evidence, l2b: Evidence, metric=None) -> dict:
    """(i) the gain of LesAug over LesAgn (mean gap over Fig 1's rows) is smaller for lung → brain."""
    m = metric or b2l.metric

    def gap(ev):
        rows = ev.rows("fig1")
        w = {}
        for r in rows:
            w[("fig1", r, "lesaug")], w[("fig1", r, "lesagn")] = 1 / len(rows), -1 / len(rows)
        return ev.contrast(w, m)
    a, b = gap(b2l), gap(l2b)
    d = a - b  # the two directions' test sets and runs are independent
    verdict = sign_verdict(d.sign)
    skills = [ev.skill([("fig1", r, "lesaug") for r in ev.rows("fig1")]) for ev in (b2l, l2b)]
    if verdict != "inconclusive" and any(s is not None and s.sign <= 0 for s in skills):
        verdict = "inconclusive"  # a gap between directions means nothing where LesAug ranks no better than a coin
    return _row("(i) the gain is smaller for lung → brain than for brain → lung", "both", verdict,
                f"mean {NAMES[m]} gap brain → lung {a.point:+.2f}, lung → brain {b.point:+.2f}; difference {_fmt(d)}",
                "holds if the difference (brain → lung minus lung → brain) is above 0 and LesAug shows skill in both "
                "directions")


def verdict_table(b2l: Evidence, l2b: Evidence) -> pd.DataFrame:
    """Every finding for both directions, plus (i), as one table."""
    i = gain_by_direction(b2l, l2b)
    i_f2 = gain_by_direction(b2l, l2b, "f2") if b2l.source != "paper" else {**i, "evidence": ""}
    rows = findings(b2l) + findings(l2b) + [{**i, "F2 verdict": i_f2["verdict"], "F2 evidence": i_f2["evidence"]}]
    return pd.DataFrame(rows)


def our_verdicts(runner, n_boot: int = 1000) -> pd.DataFrame:
    """`verdict_table` on this profile's runs."""
    return verdict_table(*(run_evidence(runner, d, n_boot) for d in DIRECTIONS))


def paper_verdicts(reported: dict, n_boot: int = 2000) -> pd.DataFrame:
    """`verdict_table` on the paper's own numbers (see `lesionlib.reference`)."""
    return verdict_table(*(paper_evidence(d, reported, n_boot) for d in DIRECTIONS))
