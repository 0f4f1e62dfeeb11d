"""The paper's performance measure: recall and precision of the malignant class, F2, and the
lexicographic order (recall first, precision breaks ties) used to pick the best arm."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import fbeta_score, precision_score, recall_score


def recall_precision(y_true, y_pred) -> tuple[float, float]:
    """(R, P) of the malignant class (label 1); precision is 0 when nothing is called malignant."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    r = recall_score(y_true, y_pred, pos_label=1, zero_division=0)
    p = precision_score(y_true, y_pred, pos_label=1, zero_division=0)
    return float(r), float(p)


def f2(y_true, y_pred) -> float:
    """F-beta with beta = 2: recall weighs four times as much as precision."""
    return float(fbeta_score(np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int), beta=2,
                             pos_label=1, zero_division=0))


def f2_from_rp(recall: float, precision: float) -> float:
    """F2 from a (recall, precision) pair."""
    den = 4 * precision + recall
    return 0.0 if den == 0 else float(5 * precision * recall / den)


def scores(y_true, y_pred) -> dict:
    """Recall, precision and F2 on one test set, plus the counts they come from."""
    r, p = recall_precision(y_true, y_pred)
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    return {"recall": r, "precision": p, "f2": f2(y_true, y_pred), "n": int(len(y_true)),
            "positives": int(y_true.sum()), "predicted_positive": int(y_pred.sum()),
            "accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan")}


def best_arm(scores: dict, decimals: int | None = None) -> str:
    """Name of the arm whose (recall, precision) is best in the paper's lexicographic order: (R1, P1)
    beats (R2, P2) iff R1 > R2, or R1 = R2 and P1 > P2 (Python's tuple order).

    `decimals` rounds before comparing (the paper compares two-decimal values). A full tie in both
    recall and precision returns the arms joined by '=' in their given order, e.g. 'base=lesagn'.
    """
    if not scores:
        raise ValueError("best_arm needs at least one arm")
    def key(rp):
        r, p = float(rp[0]), float(rp[1])
        return (round(r, decimals), round(p, decimals)) if decimals is not None else (r, p)
    top = max(key(v) for v in scores.values())
    return "=".join(name for name, v in scores.items() if key(v) == top)


ONE_SIDED = 0.9  # a run that calls at least this share of the test set one class is flagged


def degenerate(predicted_positive: int, n: int, share: float = ONE_SIDED) -> str:
    """'all malignant' / 'none malignant' for a run that called every test lesion one class, '≥ 90 % malignant'
    / '≥ 90 % benign' for one that called at least `share` of them one class, else ''.

    At threshold 0.5 such a run gets R near 1 (and wins the lexicographic order, and an F2 near that of
    calling everything malignant, `f2_floor`) or R near 0, whatever its ranking of the lesions: tables flag
    it, and its AUC tells whether it learned anything.
    """
    if not n:
        return ""
    if predicted_positive == n:
        return "all malignant"
    if predicted_positive == 0:
        return "none malignant"
    pct = f"≥ {100 * share:.0f} %"
    if predicted_positive >= share * n:
        return f"{pct} malignant"
    if n - predicted_positive >= share * n:
        return f"{pct} benign"
    return ""


def f2_floor(prevalence: float) -> float:
    """F2 of calling every lesion malignant when a share `prevalence` is: 5p / (4p + 1), the score any F2 must beat
    to show more than a threshold below every probability (0.754 at lung's 38 %, 0.816 at brain's 47 %)."""
    p = float(prevalence)
    return 5 * p / (4 * p + 1) if p > 0 else 0.0


def _rp_from_counts(tp, pos, called, axis=-1):
    """Recall and precision from per-cluster counts summed along `axis` (0 where undefined, as above)."""
    tp, pos, called = np.sum(tp, axis=axis), np.sum(pos, axis=axis), np.sum(called, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pos > 0, tp / np.maximum(pos, 1), 0.0), np.where(called > 0, tp / np.maximum(called, 1), 0.0)


def bootstrap_interval(y_true, y_pred, n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                       groups=None) -> dict:
    """Percentile bootstrap intervals of R and P of one run -> {'recall': (lo, hi), 'precision': (lo, hi)}.

    With `groups` (each test lesion's patient), whole patients are resampled (a cluster bootstrap):
    the slices of one patient are correlated, and resampling them one by one gives intervals that are
    too narrow. Without `groups`, every lesion is its own cluster.
    """
    import warnings

    from scipy.stats import bootstrap

    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    groups = np.arange(len(y_true)) if groups is None else np.asarray(groups)
    if len(groups) != len(y_true):
        raise ValueError(f"groups has {len(groups)} entries but there are {len(y_true)} test lesions")
    _, cluster = np.unique(groups, return_inverse=True)
    # Per-patient counts: resampling patients and summing their counts is the cluster bootstrap.
    tp = np.bincount(cluster, weights=(y_true == 1) & (y_pred == 1))
    pos = np.bincount(cluster, weights=y_true == 1)
    called = np.bincount(cluster, weights=y_pred == 1)
    out = {}
    for i, name in enumerate(("recall", "precision")):
        with warnings.catch_warnings():  # a run that calls nothing malignant has a degenerate, but valid, interval
            warnings.simplefilter("ignore")
            res = bootstrap((tp, pos, called), lambda a, b, c, axis=-1: _rp_from_counts(a, b, c, axis)[i],
                            paired=True, vectorized=True, n_resamples=n_resamples, confidence_level=level,
                            method="percentile", random_state=np.random.default_rng(seed))
        out[name] = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    return out


def seed_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a Student-t interval of the mean over seeds (low = high = mean for one seed)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if len(v) < 2 or np.all(v == v[0]):
        return m, m, m
    lo, hi = stats.t.interval(level, len(v) - 1, loc=m, scale=stats.sem(v))
    return m, float(lo), float(hi)
