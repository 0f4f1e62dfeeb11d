"""One comparison, one interval, one sign: paired bootstrap replicates and the Controls page's verdicts.

A comparison is a difference between two cells (say F2 of LesAug minus F2 of LesAgn in one row of Fig 1).
It gets a 95 % interval (`interval`), and its sign is +1 when the interval lies above 0, -1 below, 0 when
it straddles 0 (`sign`); a comparison the paper says is positive is then decided on its own
(`sign_verdict`). The paper's findings combine several comparisons with rules (`lesionlib.verdicts`);
the Controls page decides each comparison alone (`control_verdicts`).

The intervals come from bootstrap replicates that are drawn jointly for every cell of one direction,
so differences between arms are paired:

* ours (`run_replicates`, `auc_replicates`): resample the test **patients** (all runs of a direction
  share one test set) and, with several seeds, the seeds too; F2 of a cell is the F2 of the mean R and
  P over its (drawn) seeds;
* the paper's (`paper_replicates`): it reports one R and P per cell. We give each cell the sampling error
  of the paper's 200-lesion test set (binomial counts at the organ's malignant fraction; arms
  independent, as the paper gives no joint counts). Cells the paper prints with identical numbers in
  Fig 1 and Fig 2 are the same run and share replicates.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .experiment import ARM_LABELS
from .runner import THRESHOLD

LEVEL = 0.95

# The paper's test sets: 200 lesions of the target organ. Malignant fraction of each organ's set:
# Cheng's 1426 gliomas of 3064 slices; LIDC nodules with >= 3 readers: 38 % (lesionlib's table).
PAPER_TEST_SIZE = 200
PAPER_MALIGNANT_FRACTION = {"brain": 1426 / 3064, "lung": 0.38}


# --- signs and intervals ---------------------------------------------------------------------------

def sign(lo: float, hi: float) -> int:
    """+1 when the interval lies above 0, -1 when below, 0 when it holds 0 (or is undefined)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def sign_verdict(s: int) -> str:
    """One comparison the paper says is positive: holds (+), does not hold (-), inconclusive (0)."""
    return {1: "holds", -1: "does not hold", 0: "inconclusive"}[s]


def interval(point: float, reps, level: float = LEVEL) -> tuple[float, float, float]:
    """(point, lo, hi): the percentile interval of bootstrap replicates around a point estimate."""
    reps = np.asarray(reps, dtype=float)
    reps = reps[np.isfinite(reps)]
    if not len(reps):
        return float(point), float("nan"), float("nan")
    a = (1 - level) / 2
    return float(point), float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


# --- bootstrap replicates: ours (paired over test patients and seeds) and the paper's --------------

def _f2(r, p):
    den = 4 * p + r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 5 * p * r / np.where(den > 0, den, 1), 0.0)


def _rp(tp, pos, called):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pos > 0, tp / np.maximum(pos, 1), 0.0), np.where(called > 0, tp / np.maximum(called, 1), 0.0)


def _draws(cells: dict, n_boot: int, seed: int):
    """The resampling shared by every statistic of one set of cells: each test patient's weight per replicate
    (row 0: the data as observed) and which seeds each replicate draws."""
    n_seeds = len(next(iter(cells.values())))
    first = next(iter(cells.values()))[0]
    ids = np.asarray(first["test_ids"])
    _, cluster = np.unique(np.asarray(first["test_patients"]), return_inverse=True)
    n_pat = cluster.max() + 1
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n_pat, np.full(n_pat, 1 / n_pat), size=n_boot).astype(float)
    w = np.vstack([np.ones(n_pat), w])
    pick = np.vstack([np.arange(n_seeds), rng.integers(0, n_seeds, (n_boot, n_seeds))]) if n_seeds > 1 else \
        np.zeros((n_boot + 1, 1), int)
    for key, results in cells.items():
        if len(results) != n_seeds:
            raise ValueError(f"cell {key} has {len(results)} seeds, others {n_seeds}")
        for res in results:
            if not np.array_equal(np.asarray(res["test_ids"]), ids):
                raise ValueError(f"cell {key}: runs scored on different test sets cannot be compared pairwise")
    return cluster, n_pat, w, pick


def run_replicates(cells: dict, n_boot: int, seed: int = 0) -> dict:
    """cell -> (F2 of the mean R and P over seeds, `n_boot` replicates) for runs that share a test set.

    `cells` maps any key to the list of a cell's results, one per seed (the same seeds, in the same
    order, in every cell). Each replicate resamples the test patients (all cells alike: paired) and,
    with several seeds, the seeds (all cells alike).
    """
    cluster, n_pat, w, pick = _draws(cells, n_boot, seed)
    rows = np.arange(n_boot + 1)[:, None]
    out = {}
    for key, results in cells.items():
        r_all, p_all = [], []
        for res in results:
            y = np.asarray(res["labels"]) == 1
            called = np.asarray(res["probs"]) >= THRESHOLD
            count = lambda m: np.bincount(cluster, weights=m, minlength=n_pat)  # noqa: E731
            r, p = _rp(w @ count(y & called), w @ count(y), w @ count(called))
            r_all.append(r)
            p_all.append(p)
        r_all, p_all = np.stack(r_all, 1), np.stack(p_all, 1)  # (B+1, seeds)
        f2 = _f2(r_all[rows, pick].mean(1), p_all[rows, pick].mean(1))
        out[key] = (float(f2[0]), f2[1:])
    return out


def _weighted_auc(y, score, w):
    """ROC AUC of `score` for labels `y` under each row of lesion weights `w` (ties count one half)."""
    order = np.argsort(score, kind="mergesort")
    y, score, w = y[order], score[order], w[:, order]
    pos, neg = w * y, w * ~y
    _, first = np.unique(score, return_index=True)  # groups of tied scores, in ascending order
    pos_g, neg_g = np.add.reduceat(pos, first, axis=1), np.add.reduceat(neg, first, axis=1)
    below = np.cumsum(neg_g, axis=1) - neg_g  # negatives scored strictly lower than each group
    den = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (pos_g * (below + 0.5 * neg_g)).sum(1) / den, np.nan)


def auc_replicates(cells: dict, n_boot: int, seed: int = 0) -> dict:
    """cell -> (AUC averaged over seeds, `n_boot` replicates), resampled exactly as `run_replicates` does.

    The AUC needs no threshold, so it still ranks a run that called every test lesion one class; for
    small runs it is a more sensitive comparison than F2 at 0.5.
    """
    cluster, _, w, pick = _draws(cells, n_boot, seed)
    rows = np.arange(n_boot + 1)[:, None]
    out = {}
    for key, results in cells.items():
        a = np.stack([_weighted_auc(np.asarray(res["labels"]) == 1, np.asarray(res["probs"], float), w[:, cluster])
                      for res in results], 1)  # (B+1, seeds)
        auc = np.nanmean(a[rows, pick], axis=1)
        out[key] = (float(auc[0]), auc[1:])
    return out


def paper_replicates(cells: dict, organ: str, n_boot: int, seed: int = 0) -> dict:
    """cell -> (F2 of the paper's R and P, `n_boot` replicates of a 200-lesion test set of `organ`).

    `cells` maps a key to the paper's (R, P). Cells with the same arm and the same (R, P) are one run.
    """
    n_pos = round(PAPER_TEST_SIZE * PAPER_MALIGNANT_FRACTION[organ])
    n_neg = PAPER_TEST_SIZE - n_pos
    rng = np.random.default_rng(seed)
    runs: dict = {}
    out = {}
    for key, (r, p) in cells.items():
        run = (key[-1], r, p)
        if run not in runs:
            # false-positive rate that gives precision p at recall r on this test set
            fpr = min(1.0, r * n_pos * (1 - p) / (p * n_neg)) if p > 0 else 1.0
            tp = rng.binomial(n_pos, r, n_boot)
            fp = rng.binomial(n_neg, fpr, n_boot)
            rr, pp = _rp(tp, np.full(n_boot, n_pos), tp + fp)
            runs[run] = _f2(rr, pp)
        out[key] = (float(_f2(np.array(r), np.array(p))), runs[run])
    return out


# --- the controls ----------------------------------------------------------------------------------

CONTROL_COMPARISONS = (  # (arm, arm it must beat, what a win would show)
    ("lesaug", "lesshuf", "the source labels carry knowledge (beyond a warm start)"),
    ("lesaug", "lesstat", "the source model's features matter (beyond its weight scale)"),
    ("lesagn", "agnstat", "G's features matter (beyond its weight scale)"),
    ("lesaug", "lesagn", "lesion-augmented beats lesion-agnostic transfer at this size"),
    ("lesaug", "base", "lesion-augmented transfer beats training from scratch at this size"),
)


def condition_cells(specs: dict, results: list, condition) -> dict:
    """arm -> its results over seeds, for the Controls runs of one data condition ({(shared, arm, seed): spec})."""
    cells: dict = {}
    for (c, arm, _), res in zip(specs, results):
        if c == condition:
            cells.setdefault(arm, []).append(res)
    return cells


def compare_controls(cells: dict, n_boot: int = 1000) -> list[dict]:
    """Every control comparison on one condition's cells: F2 and AUC differences, intervals, verdicts."""
    f2, auc = run_replicates(cells, n_boot), auc_replicates(cells, n_boot)
    rows = []
    for a, b, what in CONTROL_COMPARISONS:
        v = interval(f2[a][0] - f2[b][0], f2[a][1] - f2[b][1])
        u = interval(auc[a][0] - auc[b][0], auc[a][1] - auc[b][1])
        rows.append({"comparison": f"{ARM_LABELS[a]} − {ARM_LABELS[b]}", "a win shows": what,
                     "F2 difference": v[0], "lo": v[1], "hi": v[2], "verdict": sign_verdict(sign(*v[1:])),
                     "AUC difference": u[0], "AUC lo": u[1], "AUC hi": u[2], "AUC verdict": sign_verdict(sign(*u[1:]))})
    return rows


def control_verdicts(runner, direction: str, n_boot: int = 1000) -> pd.DataFrame:
    """Each control comparison in each data condition of the Controls page: the difference of F2 (the
    paper's measure) and of AUC (threshold-free), each with its interval and verdict."""
    from .analysis import figure_runs

    specs, results = figure_runs(runner, "controls", direction)
    return pd.DataFrame([{"direction": direction, "shared": cond, **row}
                         for cond in dict.fromkeys(k[0] for k in specs)
                         for row in compare_controls(condition_cells(specs, results, cond), n_boot)])
