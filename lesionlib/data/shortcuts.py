"""Shortcut statistics of prepared lesion crops: what a network gets for free, and whether it carries the label.

A negative control (phantom ``shared`` = 0) is only negative if nothing that separates the classes in
one organ also separates them in the other. This module measures that on the crops a run trains on
(`registry.phantom_lesions`, or any `LesionSet`):

* simple statistics of each crop (`crop_statistics`): the lesion's fill fraction of the crop, mean and
  sd of the intensity inside the lesion mask, gradient energy (mean squared Sobel gradient) inside the
  lesion and over the whole crop, the crop's mean and sd;
* the pooled features of a randomly initialised DenseNet-201 (`random_features`: the network the
  paper trains, before any training: what its architecture alone hands a linear read-out).

`shortcut_rows` scores them: each simple statistic alone (its raw ROC AUC in each organ, not oriented:
0.14 is a strong inverted separation), and two linear probes (logistic regression after
standardisation), one on all simple statistics and one on the random features, each with its
own-organ cross-validated AUC (folds by patient) and its cross-organ AUC (fit on one organ, scored on
the other). `shortcut_table` draws phantom sets at several ``shared`` values and tabulates all of it;
`cross_organ_shortcuts` lists what carries the label across organs (at ``shared`` = 0: nothing).

A single statistic's AUC is as noisy as its sample: about 0.033 sd with no signal at 300 independent
lesions per organ, but more with several slices per patient (they share the lesion's nuisance draws):
use one slice per lesion (``slices_per_patient=1``) to judge a generator.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

STATISTICS = ("fill", "lesion_mean", "lesion_sd", "lesion_gradient", "crop_gradient", "crop_mean", "crop_sd")
PROBES = ("statistics probe", "random DenseNet probe")
COLUMNS = ("brain", "lung", "brain->lung", "lung->brain")
# The quick profile's phantom settings (params/quick.yaml): what the book's runs train on.
QUICK = {"image_size": 32, "margin": 0.25, "slice_size": 96, "overlap": 0.6,
         "malignant_fraction": {"brain": 0.47, "lung": 0.38}, "slices_per_patient": {"brain": 4, "lung": 2}}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # fastai's imagenet_stats, as the learner normalises


def crop_statistics(images: np.ndarray, masks: np.ndarray):
    """DataFrame, one row per crop, of the simple `STATISTICS` of crops `images` ([0, 1]) and their lesion `masks`."""
    import pandas as pd

    images = np.asarray(images, dtype=np.float64)
    masks = np.asarray(masks).astype(bool)
    if images.ndim != 3 or images.shape != masks.shape:
        raise ValueError(f"images and masks must be N x H x W and the same shape, got {images.shape} and {masks.shape}")
    rows = []
    for img, msk in zip(images, masks):
        grad = ndimage.sobel(img, 0) ** 2 + ndimage.sobel(img, 1) ** 2
        inside = img[msk] if msk.any() else np.array([np.nan])
        rows.append({"fill": msk.mean(), "lesion_mean": inside.mean(), "lesion_sd": inside.std(),
                     "lesion_gradient": grad[msk].mean() if msk.any() else np.nan, "crop_gradient": grad.mean(),
                     "crop_mean": img.mean(), "crop_sd": img.std()})
    return pd.DataFrame(rows, columns=list(STATISTICS))


def random_features(images: np.ndarray, seed: int = 0, threads: int | None = 1, batch_size: int = 100) -> np.ndarray:
    """N x 1920 globally average-pooled features of a randomly initialised (seeded) DenseNet-201 in eval mode.

    Crops (N x H x W in [0, 1]) are repeated to 3 channels and normalised with ImageNet's statistics, as
    the learner feeds them. `threads` limits torch's CPU threads for the call (None: leave as is).
    """
    import torch
    from torchvision.models import densenet201

    images = np.asarray(images, dtype=np.float32)
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = densenet201(weights=None).eval()
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET_STATS)
        out = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                x = torch.from_numpy(images[i:i + batch_size])[:, None].repeat(1, 3, 1, 1)
                f = torch.relu(model.features((x - mean) / std))
                out.append(torch.nn.functional.adaptive_avg_pool2d(f, 1).flatten(1).numpy())
        return np.concatenate(out).astype(np.float64)
    finally:
        torch.set_num_threads(previous)


def _auc(y, score) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def _probe(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))


def probe_aucs(X: dict, y: dict, groups: dict, c: float = 1.0, folds: int = 5) -> dict:
    """Own-organ cross-validated AUC (folds by `groups`) and cross-organ AUC of a linear probe on features `X`.

    `X`, `y`, `groups`: {organ: array} for two organs. Returns {organ: own AUC, "a->b": AUC of the probe
    fit on all of a and scored on b}.
    """
    from sklearn.model_selection import GroupKFold, cross_val_predict

    out = {}
    for organ in X:
        score = cross_val_predict(_probe(c), X[organ], y[organ], groups=groups[organ],
                                  cv=GroupKFold(folds), method="decision_function")
        out[organ] = _auc(y[organ], score)
    for src in X:
        model = _probe(c).fit(X[src], y[src])
        for dst in X:
            if dst != src:
                out[f"{src}->{dst}"] = _auc(y[dst], model.decision_function(X[dst]))
    return out


def shortcut_rows(sets: dict, features: bool = True, seed: int = 0, threads: int | None = 1,
                  feature_c: float = 0.01):
    """DataFrame (statistic x `COLUMNS`) of the label AUCs of two organs' prepared sets `sets` ({organ: LesionSet}).

    A simple statistic's row gives its raw AUC in each organ (cross-organ columns empty); a probe's row its
    own-organ cross-validated AUC in each organ's column and its cross-organ AUCs. `features`: also the
    random DenseNet-201 probe (a few seconds per 100 crops at 32 x 32 on one CPU thread).
    """
    import pandas as pd

    if len(sets) != 2:
        raise ValueError(f"shortcut_rows compares two organs, got {sorted(sets)}")
    stats = {organ: crop_statistics(ds.images, ds.masks) for organ, ds in sets.items()}
    y = {organ: np.asarray(ds.labels) for organ, ds in sets.items()}
    groups = {organ: np.asarray(ds.patients) for organ, ds in sets.items()}
    rows = {name: {organ: _auc(y[organ], stats[organ][name]) for organ in sets} for name in STATISTICS}
    rows["statistics probe"] = probe_aucs({o: s.to_numpy() for o, s in stats.items()}, y, groups)
    if features:
        X = {organ: random_features(ds.images, seed, threads) for organ, ds in sets.items()}
        rows["random DenseNet probe"] = probe_aucs(X, y, groups, c=feature_c)
    organs = list(sets)
    columns = organs + [f"{a}->{b}" for a in organs for b in organs if a != b]
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns)


def cross_organ_shortcuts(rows, tolerance: float = 0.1) -> dict:
    """{row: its AUCs} of the rows of `shortcut_rows` that carry the label from one organ to the other.

    A simple statistic does when its AUC is off 0.5 by more than `tolerance` in both organs the same way
    (a network that learnt it on one organ would score the other); a probe does when a cross-organ AUC is off
    0.5 by more than `tolerance` (either way: an inverted transfer is transfer too). At phantom ``shared`` = 0
    this should be empty.
    """
    organs = [c for c in rows.columns if "->" not in c]
    cross = [c for c in rows.columns if "->" in c]
    out = {}
    for name, row in rows.iterrows():
        if name in PROBES:
            if any(abs(row[c] - 0.5) > tolerance for c in cross):
                out[name] = row[cross].to_dict()
        else:
            off = [row[o] - 0.5 for o in organs]
            if all(abs(d) > tolerance for d in off) and len({np.sign(d) for d in off}) == 1:
                out[name] = row[organs].to_dict()
    return out


def phantom_sets(shared: float, n: int = 300, seed: int = 0, build: Callable | None = None, **settings) -> dict:
    """{organ: LesionSet} of `n` phantom crops per organ at `shared`, with the quick profile's settings unless given."""
    from .registry import phantom_lesions

    build = build or phantom_lesions
    kw = {**QUICK, **settings}
    per_organ = {k: v for k, v in kw.items() if isinstance(v, dict)}
    common = {k: v for k, v in kw.items() if not isinstance(v, dict)}
    return {organ: build(organ, n=n, seed=seed, shared=shared, **common, **{k: v[organ] for k, v in per_organ.items()})
            for organ in ("brain", "lung")}


def shortcut_table(shared_values=(0.0, 1.0), n: int = 300, seed: int = 0, features: bool = True,
                   build: Callable | None = None, threads: int | None = 1, **settings):
    """DataFrame indexed by (shared, statistic) of `shortcut_rows` on `n` phantom crops per organ at each `shared`.

    `build(organ, n=, seed=, shared=, ...)` makes a set (default `registry.phantom_lesions`); `settings`
    override the quick profile's (`QUICK`). At shared = 0 every cross-organ AUC should be near 0.5, and
    no single statistic should separate both organs' classes the same way.
    """
    import pandas as pd

    tables = {float(s): shortcut_rows(phantom_sets(s, n, seed, build, **settings), features, seed, threads)
              for s in shared_values}
    return pd.concat(tables, names=["shared", "statistic"])
