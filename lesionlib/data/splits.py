"""Patient-level sampling: the test set first, nested training samples, validation splits.

Every split works on patients, never on slices, so that neighbouring slices of one patient can
never sit on both sides of a split.
"""
from __future__ import annotations

import numpy as np


class SplitError(ValueError):
    """A split that the data cannot give; `parameter` names the profile setting at fault
    ('test_size', 'size', 'cv_folds' or 'valid_frac')."""

    def __init__(self, message: str, parameter: str):
        super().__init__(message)
        self.parameter = parameter


def _patient_order(patients, labels, idx, seed):
    """Patients of `idx` in a seeded order that keeps class proportions along every prefix."""
    idx = np.asarray(idx)
    pats, first = np.unique(patients[idx], return_index=True)
    plab = labels[idx][first]  # a patient's class = the class of its first lesion
    rng = np.random.default_rng(seed)
    keys = np.full(len(pats), np.nan)
    for c in np.unique(plab):  # every class (G's natural crops have 15), not only benign/malignant
        sel = np.flatnonzero(plab == c)
        # Stratified interleaving: the k-th patient of class c sits at (k + u) / n_c.
        keys[sel] = (rng.permutation(len(sel)) + rng.uniform(size=len(sel))) / max(len(sel), 1)
    assert not np.isnan(keys).any()  # every patient got a key: the order never depends on stale memory
    return pats[np.argsort(keys, kind="stable")]


def _take(patients, idx, order, n):
    """The first `n` lesions of `idx` when patients are taken in `order`."""
    idx = np.asarray(idx)
    by_patient = {p: [] for p in order}
    for i in idx:
        by_patient[patients[i]].append(i)
    out = [i for p in order for i in by_patient[p]]
    return np.asarray(out[:n], dtype=int)


def draw_test(ds, n_test: int, seed: int):
    """Split all lesions into (pool, test) with `n_test` test lesions, patient-disjoint, stratified."""
    if n_test >= len(ds):
        raise SplitError(f"test_size={n_test} leaves nothing to train on: the {ds.organ} set has {len(ds)} lesions",
                         "test_size")
    order = _patient_order(ds.patients, ds.labels, np.arange(len(ds)), seed)
    rank = np.searchsorted(order, ds.patients, sorter=np.argsort(order))  # position of each lesion's patient
    rank = np.argsort(order)[rank]
    # Take whole patients, in order, until there are n_test lesions; trim the last one's extra lesions
    # (they go to neither side, so no patient is on both).
    m = int(np.searchsorted(np.cumsum(np.bincount(rank, minlength=len(order))), n_test)) + 1
    test = np.argsort(rank, kind="stable")[: n_test]  # by patient order, then by position
    pool = np.flatnonzero(rank >= m)
    return pool, test.astype(int)


def nested_sample(ds, pool, n: int, seed: int):
    """`n` lesions from `pool`; for one seed, smaller samples are prefixes of larger ones."""
    if n > len(pool):
        where = "after the test set" if len(pool) < len(ds) else "in the whole set"
        raise SplitError(f"asked for {n} {ds.organ} training lesions but only {len(pool)} are there {where}", "size")
    order = _patient_order(ds.patients, ds.labels, pool, seed)
    return _take(ds.patients, pool, order, n)


def patient_split(ds, idx, valid_frac: float, seed: int):
    """Split `idx` into (train, valid) by patient with about `valid_frac` of the lesions in valid."""
    if not 0.0 < valid_frac < 1.0:
        raise SplitError(f"valid_frac must lie strictly between 0 and 1, got {valid_frac}", "valid_frac")
    idx = np.asarray(idx)
    order = _patient_order(ds.patients, ds.labels, idx, seed + 7919)
    n_valid = max(1, int(round(valid_frac * len(idx))))
    valid = _take(ds.patients, idx, order, n_valid)
    vpats = set(ds.patients[valid])
    valid = idx[np.isin(ds.patients[idx], list(vpats))]
    train = idx[~np.isin(ds.patients[idx], list(vpats))]
    if len(train) == 0:
        raise SplitError(f"{len(idx)} lesions are too few to hold out a validation split of {valid_frac:.0%}",
                         "valid_frac")
    return train, valid


def patient_folds(ds, idx, k: int, seed: int):
    """`k` patient-disjoint, class-stratified folds of `idx` -> list of (train, valid) index arrays."""
    from sklearn.model_selection import StratifiedGroupKFold

    idx = np.asarray(idx)
    if len(np.unique(ds.patients[idx])) < k:
        raise SplitError(f"{len(idx)} {ds.organ} lesions of {len(np.unique(ds.patients[idx]))} patients "
                         f"cannot be split into {k} patient-disjoint folds; lower cv_folds or raise the size", "cv_folds")
    import hashlib

    # Every fold of a sample asks for the same split (one run per fold and arm): compute it once.
    key = (hashlib.sha256(idx.tobytes() + np.asarray(ds.labels)[idx].tobytes() +
                          "\0".join(map(str, ds.patients[idx])).encode()).hexdigest(), k, seed)
    if key not in _FOLDS:
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        _FOLDS[key] = [(idx[tr], idx[va]) for tr, va in cv.split(idx, ds.labels[idx], ds.patients[idx])]
        if len(_FOLDS) > 64:
            _FOLDS.pop(next(iter(_FOLDS)))
    return [(tr.copy(), va.copy()) for tr, va in _FOLDS[key]]


_FOLDS: dict = {}


def sample_indices(ds, sspec: dict, valid_frac: float | None = None, seed: int = 0):
    """(train, valid, test or None) indices of a sample spec (see `experiment.sample_spec`).

    A target sample is drawn after its organ's test set is set aside; a source sample (no `test_size`)
    is drawn from the whole set, since a source model is never scored on its own organ. With `fold`,
    the sample is cut into patient folds and fold k validates; otherwise `valid_frac` of it is held out
    by patient with `seed` (`valid` is None when `valid_frac` is None).
    `ds` needs only `labels`, `patients` and `organ`: a `LesionIndex` gives the same indices as the set.
    """
    if "test_size" in sspec:
        pool, test = draw_test(ds, sspec["test_size"], sspec["test_seed"])
    else:
        pool, test = np.arange(len(ds)), None
    idx = nested_sample(ds, pool, sspec["n"], sspec["sample_seed"])
    if "fold" not in sspec:
        if valid_frac is None:
            return idx, None, test
        return (*patient_split(ds, idx, valid_frac, seed), test)
    train, valid = patient_folds(ds, idx, sspec["folds"], sspec["sample_seed"])[sspec["fold"]]
    return train, valid, test


def permuted_patient_labels(labels: np.ndarray, patients, idx, seed: int) -> np.ndarray:
    """A copy of `labels` in which the patients of `idx` trade their labels (seeded): LesShuf's source sample.

    The patients of `idx` are put in a seeded random permutation and each takes the class of the patient
    it is mapped to, on every one of its lesions in `idx`: one patient's slices never disagree. A patient's
    class is that of its first lesion in `idx` (as in the splits' stratification). So the class counts over
    the patients of `idx` stay exactly as drawn (lesion counts too where patients have equally many
    lesions); a patient may keep its own class, as in any uniform permutation (forbidding that would make
    the new labels anti-correlated with the true ones). Labels outside `idx` are left as they are.
    """
    out = np.array(labels, copy=True)
    idx = np.asarray(idx, dtype=int)
    if len(idx) == 0:
        return out
    _, first, inverse = np.unique(np.asarray(patients)[idx], return_index=True, return_inverse=True)
    classes = out[idx][first]  # one class per patient, patients in sorted order (deterministic)
    rng = np.random.default_rng([int(seed), 0x5EED, 0xA7])
    out[idx] = rng.permutation(classes)[np.asarray(inverse).reshape(-1)]
    return out
