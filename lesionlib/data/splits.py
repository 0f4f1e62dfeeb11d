"""Patient-level sampling: the test set first, nested training samples, validation splits.

Every split works on patients, never on slices, so that neighbouring slices of one patient can
never sit on both sides of a split.
"""
from __future__ import annotations

import numpy as np


def _patient_order(patients, labels, idx, seed):
    """Patients of `idx` in a seeded order that keeps class proportions along every prefix."""
    idx = np.asarray(idx)
    pats, first = np.unique(patients[idx], return_index=True)
    plab = labels[idx][first]  # a patient's class = the class of its first lesion
    rng = np.random.default_rng(seed)
    keys = np.empty(len(pats))
    for c in (0, 1):
        sel = np.flatnonzero(plab == c)
        # Stratified interleaving: the k-th patient of class c sits at (k + u) / n_c.
        keys[sel] = (rng.permutation(len(sel)) + rng.uniform(size=len(sel))) / max(len(sel), 1)
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
        raise ValueError(f"test_size={n_test} leaves nothing to train on: the {ds.organ} set has {len(ds)} lesions")
    all_idx = np.arange(len(ds))
    order = _patient_order(ds.patients, ds.labels, all_idx, seed)
    # Take whole patients for the test set (it may exceed n_test by part of one patient; trim it).
    test, count, test_pats = [], 0, set()
    for p in order:
        if count >= n_test:
            break
        members = np.flatnonzero(ds.patients == p)
        test_pats.add(p)
        test.extend(members)
        count += len(members)
    test = np.asarray(test[:n_test], dtype=int)
    pool = np.flatnonzero(~np.isin(ds.patients, list(test_pats)))
    return pool, test


def nested_sample(ds, pool, n: int, seed: int):
    """`n` lesions from `pool`; for one seed, smaller samples are prefixes of larger ones."""
    if n > len(pool):
        raise ValueError(f"asked for {n} {ds.organ} training lesions but only {len(pool)} remain after the test set")
    order = _patient_order(ds.patients, ds.labels, pool, seed)
    return _take(ds.patients, pool, order, n)


def patient_split(ds, idx, valid_frac: float, seed: int):
    """Split `idx` into (train, valid) by patient with about `valid_frac` of the lesions in valid."""
    if not 0.0 < valid_frac < 1.0:
        raise ValueError(f"valid_frac must lie strictly between 0 and 1, got {valid_frac}")
    idx = np.asarray(idx)
    order = _patient_order(ds.patients, ds.labels, idx, seed + 7919)
    n_valid = max(1, int(round(valid_frac * len(idx))))
    valid = _take(ds.patients, idx, order, n_valid)
    vpats = set(ds.patients[valid])
    valid = idx[np.isin(ds.patients[idx], list(vpats))]
    train = idx[~np.isin(ds.patients[idx], list(vpats))]
    if len(train) == 0:
        raise ValueError(f"{len(idx)} lesions are too few to hold out a validation split of {valid_frac:.0%}")
    return train, valid


def patient_folds(ds, idx, k: int, seed: int):
    """`k` patient-disjoint, class-stratified folds of `idx` -> list of (train, valid) index arrays."""
    from sklearn.model_selection import StratifiedGroupKFold

    idx = np.asarray(idx)
    if len(np.unique(ds.patients[idx])) < k:
        raise ValueError(f"{len(idx)} {ds.organ} lesions of {len(np.unique(ds.patients[idx]))} patients "
                         f"cannot be split into {k} patient-disjoint folds; lower cv_folds or raise the size")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(idx[tr], idx[va]) for tr, va in cv.split(idx, ds.labels[idx], ds.patients[idx])]
