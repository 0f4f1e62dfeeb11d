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


def lexicographic_key(rp) -> tuple[float, float]:
    """Sort key of the paper's order: (R1, P1) beats (R2, P2) iff R1 > R2, or R1 = R2 and P1 > P2."""
    r, p = rp
    return (float(r), float(p))


def best_arm(scores: dict, decimals: int | None = None) -> str:
    """Name of the arm whose (recall, precision) is best in the lexicographic order.

    `decimals` rounds before comparing (the paper compares two-decimal values). A full tie in both
    recall and precision returns the arms joined by '=' in their given order, e.g. 'base=lesagn'.
    """
    if not scores:
        raise ValueError("best_arm needs at least one arm")
    def key(rp):
        r, p = lexicographic_key(rp)
        return (round(r, decimals), round(p, decimals)) if decimals is not None else (r, p)
    top = max(key(v) for v in scores.values())
    return "=".join(name for name, v in scores.items() if key(v) == top)
