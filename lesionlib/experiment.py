"""The paper's experiment as run specifications, executed through the run cache.

Every trained model is described by a nested, JSON-able specification: its data (source, organ,
sample size, seeds), its training settings and the specification of the model it starts from
(`init`). The arms of Section 3.1 are then three ways of filling `init`:

* ``base``   -- Learn(d_t):                            init = None (random weights)
* ``lesagn`` -- Transfer(d_t | Learn(d_g)):            init = G
* ``lesaug`` -- Transfer(d_t | Transfer(d_s | Learn(d_g))): init = the source model, itself started from G
* ``lesonly`` -- Transfer(d_t | Learn(d_s)):           init = a source model from random weights (ours,
  not in the paper: lesion knowledge without G)

Because a specification contains its parents, the cache key of LesAug changes whenever anything about
its source model or G changes, and each source model is trained once and reused by every target run.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import generic as generic_mod
from .cache import RunCache, spec_key
from .data import (PreparedSetError, build_lesions, draw_test, load_lesions, nested_sample, patient_folds,
                   save_lesions)
from .data.lesions import LesionSet
from .learner import Model, TrainConfig, learn, predict, transfer
from .metrics import bootstrap_interval, scores
from .profile import DIRECTIONS, SIZE_NAMES, Profile

SPEC_VERSION = 1
ARMS = ("base", "lesagn", "lesaug", "lesonly")
PAPER_ARMS = ("base", "lesagn", "lesaug")  # the arms the paper reports; LesOnly is ours
ARM_LABELS = {"base": "Base", "lesagn": "LesAgn", "lesaug": "LesAug", "lesonly": "LesOnly"}
THRESHOLD = 0.5  # a lesion is called malignant when Predict gives a probability >= 0.5


# --- specifications ----------------------------------------------------------------------------

def data_spec(P: Profile, organ: str) -> dict:
    """Which prepared lesion set of `organ` a profile uses."""
    if P.data_source == "phantom":
        return {"source": "phantom", "organ": organ, "n": P.phantom_pool[organ], "seed": 0,
                "image_size": P.image_size, "margin": P.crop_margin, "slice_size": P.phantom_slice_size,
                "overlap": P.phantom_overlap, "malignant_fraction": P.phantom_malignant_fraction[organ]}
    path = Path(P.data_dir).expanduser().resolve() / organ / "crops.npz"
    stamp = f"{path.stat().st_size}-{path.stat().st_mtime_ns}" if path.is_file() else "missing"
    return {"source": P.data_source, "organ": organ, "data_dir": str(path.parent.parent), "image_size": P.image_size,
            "file": stamp}


def sample_spec(P: Profile, organ: str, n: int, seed: int, fold: int | None = None) -> dict:
    """A training sample of `n` lesions of `organ`, drawn after the test set is set aside.

    With `fold` = k, the sample is cut into `cv_folds` patient folds: fold k is the validation set
    for early stopping and the other folds are trained on (Fig 3's cross-validation).
    """
    s = {"data": data_spec(P, organ), "test_size": P.test_size, "test_seed": P.test_seed, "n": int(n),
         "sample_seed": int(seed)}
    if fold is not None:
        s.update(fold=int(fold), folds=int(P.cv_folds))
    return s


def generic_spec(P: Profile) -> dict:
    """The generic model G."""
    if P.generic == "imagenet":
        return {"role": "generic", "name": "imagenet"}
    if P.generic == "natural-crops":
        cfg = replace(P.train_config(), epochs=P.generic_epochs)
        return {"role": "generic", "name": "natural-crops", "n": P.generic_size, "image_size": P.image_size,
                "train": cfg.as_spec(), "seed": 0, "v": SPEC_VERSION}
    path = Path(P.generic).expanduser().resolve()
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    return {"role": "generic", "name": "file", "path": str(path), "sha256": digest}


def model_spec(P: Profile, role: str, organ: str, n: int, seed: int, init: dict | None,
               fold: int | None = None) -> dict:
    """A lesion model trained on `n` lesions of `organ`, starting from `init` (None: random weights)."""
    return {"role": role, "sample": sample_spec(P, organ, n, seed, fold), "init": init,
            "train": P.train_config().as_spec(), "seed": int(seed), "v": SPEC_VERSION}


def source_model(P: Profile, source: str, n_s: int, seed: int) -> dict:
    """Transfer(d_s | G): the lesion-augmented source model."""
    return model_spec(P, "source", source, n_s, seed, generic_spec(P))


def source_only_model(P: Profile, source: str, n_s: int, seed: int) -> dict:
    """Learn(d_s): a source model from random weights (the start of LesOnly)."""
    return model_spec(P, "source", source, n_s, seed, None)


def base(P: Profile, target: str, n_t: int, seed: int, fold=None) -> dict:
    """Base = Learn(d_t)."""
    return model_spec(P, "target", target, n_t, seed, None, fold)


def lesagn(P: Profile, target: str, n_t: int, seed: int, fold=None) -> dict:
    """LesAgn = Transfer(d_t | Learn(d_g))."""
    return model_spec(P, "target", target, n_t, seed, generic_spec(P), fold)


def lesaug(P: Profile, source: str, target: str, n_t: int, n_s: int, seed: int, fold=None) -> dict:
    """LesAug = Transfer(d_t | Transfer(d_s | Learn(d_g)))."""
    return model_spec(P, "target", target, n_t, seed, source_model(P, source, n_s, seed), fold)


def lesonly(P: Profile, source: str, target: str, n_t: int, n_s: int, seed: int, fold=None) -> dict:
    """LesOnly = Transfer(d_t | Learn(d_s)): lesion knowledge without generic weights (not in the paper)."""
    return model_spec(P, "target", target, n_t, seed, source_only_model(P, source, n_s, seed), fold)


def arm_spec(P: Profile, arm: str, direction: str, n_t: int, n_s: int, seed: int, fold: int | None = None) -> dict:
    """The specification of one arm for one direction, target size, source size and seed."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; allowed: {', '.join(DIRECTIONS)}")
    source, target = DIRECTIONS[direction]
    if arm == "base":
        return base(P, target, n_t, seed, fold)
    if arm == "lesagn":
        return lesagn(P, target, n_t, seed, fold)
    if arm == "lesaug":
        return lesaug(P, source, target, n_t, n_s, seed, fold)
    if arm == "lesonly":
        return lesonly(P, source, target, n_t, n_s, seed, fold)
    raise ValueError(f"unknown arm {arm!r}; allowed: {', '.join(ARMS)}")


# --- the figures of Section 5: {key: spec}, the key's first element names the row ----------------

def fig1_specs(P: Profile, direction: str) -> dict:
    """Fig 1: fixed source size (High), every target size -> {(target size, arm, seed): spec}."""
    source, target = DIRECTIONS[direction]
    n_s = P.source_size(source, "High")
    return {(name, arm, seed): arm_spec(P, arm, direction, P.target_sizes[name], n_s, seed)
            for name in SIZE_NAMES if name in P.target_sizes for arm in ARMS for seed in P.seeds}


def fig2_specs(P: Profile, direction: str) -> dict:
    """Fig 2: fixed target size (High), every source size -> {(source size, arm, seed): spec}.

    Base and LesAgn do not depend on the source, so every row holds the same two runs (trained once).
    """
    source, _ = DIRECTIONS[direction]
    n_t = P.target_sizes["High"]
    return {(name, arm, seed): arm_spec(P, arm, direction, n_t, P.source_size(source, name), seed)
            for name in SIZE_NAMES if name in P.source_sizes[source] for arm in ARMS for seed in P.seeds}


def fig3_specs(P: Profile, direction: str) -> dict:
    """Fig 3: `cv_folds`-fold cross-validation at |d_s| = |d_t| = High -> {(fold, arm, seed): spec}."""
    source, _ = DIRECTIONS[direction]
    n_t, n_s = P.target_sizes["High"], P.source_size(source, "High")
    return {(k, arm, seed): arm_spec(P, arm, direction, n_t, n_s, seed, fold=k)
            for k in range(P.cv_folds) for arm in ARMS for seed in P.seeds}


def fig4_specs(P: Profile, direction: str) -> dict:
    """Fig 4: the full LesAug grid -> {(target size, source size, seed): spec}."""
    source, _ = DIRECTIONS[direction]
    return {(t, s, seed): arm_spec(P, "lesaug", direction, P.target_sizes[t], P.source_size(source, s), seed)
            for t in SIZE_NAMES if t in P.target_sizes for s in SIZE_NAMES if s in P.source_sizes[source]
            for seed in P.seeds}


def fig5_specs(P: Profile, direction: str) -> dict:
    """Fig 5: the arms at the smallest target size (VLow), whose loss curves are compared -> {(arm, seed): spec}."""
    smallest = [s for s in SIZE_NAMES if s in P.target_sizes][-1]
    return {(arm, seed): spec for (size, arm, seed), spec in fig1_specs(P, direction).items() if size == smallest}


FIGURES = {"fig1": fig1_specs, "fig2": fig2_specs, "fig3": fig3_specs, "fig4": fig4_specs, "fig5": fig5_specs}
KEY_NAMES = {"fig1": ("size", "arm", "seed"), "fig2": ("source size", "arm", "seed"), "fig3": ("fold", "arm", "seed"),
             "fig4": ("size", "source size", "seed"), "fig5": ("arm", "seed")}  # what each part of a key means


def grid_specs(P: Profile, directions=tuple(DIRECTIONS), figures=tuple(FIGURES)) -> dict:
    """Every figure's specs -> {(figure, direction): {key: spec}}."""
    return {(f, d): FIGURES[f](P, d) for d in directions for f in figures}


def describe(spec: dict) -> str:
    """A short human label for a spec, for progress lines."""
    if spec["role"] == "generic":
        return f"G={spec['name']}"
    s, init = spec["sample"], spec["init"]
    if init is None:
        start = "random"
    elif init["role"] == "generic":
        start = describe(init)
    else:
        start = f"source({init['sample']['data']['organ']} n={init['sample']['n']}" + (
            ", random" if init["init"] is None else "") + ")"
    fold = f" fold={s['fold']}/{s['folds']}" if "fold" in s else ""
    return f"{spec['role']} {s['data']['organ']} n={s['n']}{fold} seed={spec['seed']} from {start}"


# --- execution ---------------------------------------------------------------------------------

def run_lock(cache: RunCache, name: str):
    """An inter-process lock on one run (or data set) of `cache`, so that it is produced only once."""
    from filelock import FileLock

    path = cache.root / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


class Runner:
    """Executes specifications, reusing finished runs from the cache.

    `run_all` trains what is missing in this process, or on a Dask cluster when the profile asks for
    workers or names a scheduler (see `lesionlib.dispatch`). A file lock per run makes sure that two
    processes asking for the same run at once train it only once.
    """

    def __init__(self, P: Profile, cache: RunCache | None = None, log=None):
        self.P = P
        self.cache = cache or RunCache(P.cache_root())
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._data: dict = {}
        self.trained = 0  # runs trained by this runner or its workers (not found in the cache)
        self.reused = 0

    # data
    def dataset(self, dspec: dict) -> LesionSet:
        """The prepared lesion set of a data spec (phantom sets are cached on disk once generated)."""
        key = spec_key(dspec)
        if key not in self._data:
            params = {k: v for k, v in dspec.items() if k not in ("source", "organ", "file")}
            if dspec["source"] == "phantom":
                path = self.cache.root / "data" / key  # generated once, kept in the prepared format
                with run_lock(self.cache, f"data-{key}"):
                    try:
                        ds = load_lesions(path) if path.is_dir() else None
                    except PreparedSetError as err:  # a damaged copy: it is a cache, so make it again
                        self.log(f"regenerating the phantom set in {path}: {err}")
                        shutil.rmtree(path)
                        ds = None
                    if ds is None:
                        ds = build_lesions("phantom", dspec["organ"], **params)
                        save_lesions(ds, path, params=dspec)
            else:
                ds = build_lesions(dspec["source"], dspec["organ"], **params)
            self._data[key] = ds
        return self._data[key]

    def split(self, sspec: dict):
        """(dataset, pool indices, test indices) of a sample spec; the test set is drawn first."""
        ds = self.dataset(sspec["data"])
        pool, test = draw_test(ds, sspec["test_size"], sspec["test_seed"])
        return ds, pool, test

    def training_set(self, sspec: dict):
        """(training set, validation set or None) of a sample spec; None: `valid_frac` is held out later."""
        ds, pool, _ = self.split(sspec)
        idx = nested_sample(ds, pool, sspec["n"], sspec["sample_seed"])
        if "fold" not in sspec:
            return ds.subset(idx), None
        train, valid = patient_folds(ds, idx, sspec["folds"], sspec["sample_seed"])[sspec["fold"]]
        return ds.subset(train), ds.subset(valid)

    def test_set(self, sspec: dict) -> LesionSet:
        ds, _, test = self.split(sspec)
        return ds.subset(test)

    def config(self, spec: dict) -> TrainConfig:
        return TrainConfig(**spec["train"], device=self.P.device)

    # models
    def model(self, spec: dict) -> Model:
        """The trained model of `spec` (training it, and its parents, if not cached)."""
        if spec["role"] == "generic" and spec["name"] == "imagenet":
            return generic_mod.imagenet_model()
        if spec["role"] == "generic" and spec["name"] == "file":
            return generic_mod.file_model(spec["path"])
        result = self.ensure(spec)
        return Model(self.cache.state_dict(spec), n_out=result["n_out"])

    def ensure(self, spec: dict) -> dict:
        """The result of `spec`: from the cache, or trained now and stored atomically."""
        if self.cache.has(spec):
            self.reused += 1
            return self.cache.result(spec)
        if spec["role"] != "generic" and spec["init"] is not None:
            self.model(spec["init"])  # parents first, outside this run's lock
        with run_lock(self.cache, spec_key(spec)):
            if self.cache.has(spec):  # another process finished it while we waited
                self.reused += 1
                return self.cache.result(spec)
            result = self._train_generic(spec) if spec["role"] == "generic" else self._train(spec)
        self.trained += 1
        return result

    def _train(self, spec: dict) -> dict:
        init = None if spec["init"] is None else self.model(spec["init"])
        t0 = time.perf_counter()
        self.log(f"training {describe(spec)} ...")
        (d, valid), cfg = self.training_set(spec["sample"]), self.config(spec)
        m = learn(d, cfg, spec["seed"], valid) if init is None else transfer(d, init, cfg, spec["seed"], valid)
        test = self.test_set(spec["sample"])
        probs = predict(test, m, cfg)
        result = {"scores": scores(test.labels, probs >= THRESHOLD), "probs": probs.round(6).tolist(),
                  "labels": test.labels.tolist(), "test_ids": test.ids.tolist(), "history": m.history,
                  "fit": m.fit_info, "n_out": m.n_out, "train_counts": d.counts(),
                  "seconds": time.perf_counter() - t0}
        keep = spec["role"] == "source"  # only models that others start from keep their weights
        self.cache.put(spec, result, m.state_dict if keep else None)
        self.log(f"  done in {result['seconds']:.0f}s: R={result['scores']['recall']:.2f} "
                 f"P={result['scores']['precision']:.2f} ({m.fit_info['epochs_run']} epochs)")
        return result

    def _train_generic(self, spec: dict) -> dict:
        t0 = time.perf_counter()
        self.log(f"training {describe(spec)} on {spec['n']} natural crops ...")
        d = generic_mod.natural_crops(spec["n"], spec["image_size"], spec["seed"])
        m = learn(d, self.config(spec), spec["seed"])
        result = {"history": m.history, "fit": m.fit_info, "n_out": m.n_out, "classes": d.n_classes,
                  "seconds": time.perf_counter() - t0}
        self.cache.put(spec, result, m.state_dict)
        self.log(f"  done in {result['seconds']:.0f}s")
        return result

    def run_all(self, specs) -> list:
        """Ensure every spec, in this process or on the profile's Dask cluster; returns their results in order."""
        specs = list(specs)
        needed = unique_runs(specs)
        missing = [s for s in needed if not self.cache.has(s)]
        reused = self.reused + len(needed) - len(missing)
        if missing and (self.P.workers > 0 or self.P.scheduler or os.environ.get("LESIONLIB_SCHEDULER")):
            from .dispatch import run_on_cluster

            self.trained += run_on_cluster(self.P, missing, self.log)
        elif missing:
            for i, spec in enumerate(missing, 1):
                self.log(f"[{i}/{len(missing)}] {describe(spec)}")
                self.ensure(spec)
        self.reused = reused  # parents looked up again while training their children are not reuses
        return [self.cache.result(s) for s in specs]


def unique_runs(specs) -> list:
    """Every distinct run needed by `specs`, parents included (each counted once)."""
    seen: dict = {}

    def walk(s):  # parents before children, so the list is also an order to train in
        if s is None or (s["role"] == "generic" and s["name"] != "natural-crops"):
            return
        if s["role"] != "generic":
            walk(s["init"])
        seen.setdefault(spec_key(s), s)

    for s in specs:
        walk(s)
    return list(seen.values())


def results_frame(specs: dict, results: list, names=("size", "arm", "seed"), bootstrap: int = 0):
    """One row per spec key (its parts named by `names`) with recall, precision, F2, AUC and fit details.

    With `bootstrap` > 0, each run also gets a 95 % percentile-bootstrap interval of R and P over its
    test lesions (columns recall_lo, recall_hi, precision_lo, precision_hi).
    """
    import pandas as pd

    from sklearn.metrics import roc_auc_score

    rows = []
    for key, res in zip(specs, results):
        spec, s = specs[key], res["scores"]
        init = spec["init"]
        n_s = init["sample"]["n"] if init is not None and init["role"] == "source" else None
        # AUC needs no threshold: it shows whether a model ranks lesions at all when R/P are degenerate.
        auc = roc_auc_score(res["labels"], res["probs"]) if len(set(res["labels"])) == 2 else float("nan")
        rows.append({**dict(zip(names, key)), **({} if "arm" in names else {"arm": "lesaug"}),
                     "n_t": spec["sample"]["n"], "n_s": n_s, "recall": s["recall"], "precision": s["precision"],
                     "f2": s["f2"], "auc": auc, "predicted malignant": s["predicted_positive"],
                     "epochs": res["fit"]["epochs_run"], "best epoch": res["fit"]["best_epoch"],
                     "seconds": res["seconds"]})
        if bootstrap:
            ci = bootstrap_interval(res["labels"], np.asarray(res["probs"]) >= THRESHOLD, bootstrap)
            rows[-1].update({f"{m}_{end}": ci[m][j] for m in ci for j, end in enumerate(("lo", "hi"))})
    return pd.DataFrame(rows)
