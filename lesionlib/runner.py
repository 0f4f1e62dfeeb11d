"""Executing run specifications (`lesionlib.experiment`) through the run cache: `Runner`.

A Runner trains what the cache lacks, in this process or through the executor it is given (Dask:
`lesionlib.dispatch.runner_for`), parents before children, each run under a file lock so that two
processes never train it twice, and stores results atomically. Results keep probabilities; scores are
computed from them whenever a result is read (`scored`).
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cache import RunCache, spec_key
from .config import TrainConfig
from .data import PreparedSetError, build_lesions, load_lesions, save_lesions
from .data.lesions import LesionSet
from .data.splits import permuted_patient_labels, sample_indices
from .experiment import (_source_params, describe, env_spec, prepared_sha256, trained_here, trained_parent,
                         unique_runs)
from .fingerprint import training_code
from .metrics import bootstrap_interval, degenerate, scores
from .profile import Profile

if TYPE_CHECKING:  # fastai: imported where a run trains (below), not by every page that reads runs
    from .learner import Model

THRESHOLD = 0.5  # a lesion is called malignant when Predict gives a probability >= 0.5

def run_lock(cache: RunCache, name: str):
    """An inter-process lock on one run (or data set) of `cache`, so that it is produced only once."""
    from filelock import FileLock

    path = cache.root / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


class Runner:
    """Executes specifications, reusing finished runs from the cache.

    `run_all` trains what is missing in this process, or hands it to `executor` (`lesionlib.dispatch`
    gives the Dask one a profile asks for: `executor_for`). A file lock per run makes sure that two
    processes asking for the same run at once train it only once.
    """

    def __init__(self, P: Profile, cache: RunCache | None = None, log=None, executor=None):
        self.P = P
        self.executor = executor  # executor(P, specs, log) -> runs trained (e.g. on Dask); None: this process
        self.cache = cache or RunCache(P.cache_root())
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._data: dict = {}
        self.trained = 0  # runs trained by this runner or its workers (not found in the cache)
        self.reused = 0

    # data
    def dataset(self, dspec: dict) -> LesionSet:
        """The lesion set of a data spec (phantom sets are generated once and kept in the run cache)."""
        key = spec_key(dspec)
        if key not in self._data:
            params = _source_params(dspec)
            if dspec["source"] == "phantom":
                # generated once, kept in the prepared format; a changed generator makes a new set
                path = self.cache.root / "data" / spec_key({**dspec, "code": training_code()})
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
            elif dspec["source"] == "prepared":
                path = Path(self.P.data_dir).expanduser() / dspec["organ"]
                found = prepared_sha256(path)
                if found != dspec["sha256"]:  # the files changed after the spec was made: never mix the two
                    raise PreparedSetError(f"the prepared {dspec['organ']} set at {path} has changed since this "
                                           f"run was specified (content hash {found[:12]}, expected "
                                           f"{dspec['sha256'][:12]}); run the page again")
                ds = build_lesions("prepared", dspec["organ"], data_dir=self.P.data_dir, **params)
            else:
                ds = build_lesions(dspec["source"], dspec["organ"], **params)
            self._data[key] = ds
        return self._data[key]

    def training_set(self, sspec: dict, valid_frac: float | None = None, seed: int = 0):
        """(training set, validation set) of a sample spec: Fig 3's fold, or `valid_frac` of it held out by
        patient (the split early stopping watches); without either, the validation set is None.

        With shuffled labels (LesShuf's source), the training patients trade their labels among themselves,
        all slices of a patient alike (`permuted_patient_labels`); the validation patients keep their true
        labels, so that early stopping and the best epoch watch the true task, as for LesAug's source."""
        ds = self.dataset(sspec["data"])
        train, valid, _ = sample_indices(ds, sspec, valid_frac, seed)
        if sspec.get("labels") == "shuffled":
            ds = ds.with_labels(permuted_patient_labels(ds.labels, ds.patients, train, sspec["sample_seed"]))
        return ds.subset(train), None if valid is None else ds.subset(valid)

    def test_set(self, sspec: dict) -> LesionSet:
        """The target organ's test set of a (target) sample spec."""
        ds = self.dataset(sspec["data"])
        return ds.subset(sample_indices(ds, sspec)[2])

    def config(self, spec: dict) -> TrainConfig:
        """How `spec` trains here: its recipe, on this profile's device, with the thread count its `env` names."""
        return TrainConfig(**spec["train"], device=self.P.device, threads=spec.get("env", {}).get("threads"))

    # models
    def model(self, spec: dict) -> Model:
        """The trained model of `spec` (training it, and its parents, if not cached)."""
        from . import generic as generic_mod, learner

        if spec["role"] == "generic" and spec["name"] == "imagenet":
            return generic_mod.imagenet_model()
        if spec["role"] == "generic" and spec["name"] == "file":
            return generic_mod.file_model(spec["path"])
        if spec["role"] == "weight-stats":
            return learner.moment_matched(self.model(spec["of"]), spec["seed"])
        result = self.ensure(spec)
        return learner.Model(self.cache.state_dict(spec), n_out=result["n_out"], arch=spec["train"]["arch"])

    def result(self, spec: dict) -> dict:
        """The stored result of a finished run, with its scores computed now from its probabilities."""
        return scored(self.cache.result(spec))

    def ensure(self, spec: dict) -> dict:
        """The result of `spec`: from the cache, or trained now and stored atomically."""
        if self.cache.has(spec):
            self.reused += 1
            return self.result(spec)
        check_env(spec, env_spec(self.P))
        parent = trained_parent(spec)
        if parent is not None and trained_here(parent):
            self.ensure(parent)  # parents first, outside this run's lock; its weights are loaded once, in _train
        with run_lock(self.cache, spec_key(spec)):
            if self.cache.has(spec):  # another process finished it while we waited
                self.reused += 1
                return self.result(spec)
            self._train_generic(spec) if spec["role"] == "generic" else self._train(spec)
        self.trained += 1
        return self.result(spec)

    def _train(self, spec: dict) -> dict:
        from . import learner

        init = None if spec["init"] is None else self.model(spec["init"])
        t0 = time.perf_counter()
        self.log(f"training {describe(spec)} ...")
        cfg = self.config(spec)
        # the early-stopping split is made here (not inside Learn / Transfer), so that a source model
        # can be scored on it afterwards
        d, valid = self.training_set(spec["sample"], cfg.valid_frac, spec["seed"])
        m = (learner.learn(d, cfg, spec["seed"], valid) if init is None
             else learner.transfer(d, init, cfg, spec["seed"], valid))
        # A target model is scored on its organ's test set; a source model keeps its predictions on its
        # validation patients instead (it has no test set: its sample may use the whole organ).
        if spec["role"] == "target":
            scored_on, prefix = self.test_set(spec["sample"]), ""
        else:
            scored_on, prefix = valid, "valid_"
        probs = learner.predict(scored_on, m, cfg)
        result = {f"{prefix}probs": probs.round(6).tolist(), f"{prefix}labels": scored_on.labels.tolist(),
                  f"{prefix}ids" if prefix else "test_ids": scored_on.ids.tolist(),
                  f"{prefix}patients" if prefix else "test_patients": scored_on.patients.tolist(),
                  "history": m.history, "fit": m.fit_info, "n_out": m.n_out, "train_counts": d.counts(),
                  "valid_counts": valid.counts(), "seconds": time.perf_counter() - t0}
        keep = spec["role"] == "source"  # only models that others start from keep their weights
        self.cache.put(spec, result, m.state_dict if keep else None)
        s = scored(result)["scores" if not prefix else "valid_scores"]
        self.log(f"  done in {result['seconds']:.0f}s: {'test' if not prefix else 'validation'} "
                 f"R={s['recall']:.2f} P={s['precision']:.2f} ({m.fit_info['epochs_run']} epochs)")
        return result

    def _train_generic(self, spec: dict) -> dict:
        from . import generic as generic_mod, learner

        t0 = time.perf_counter()
        self.log(f"training {describe(spec)} on {spec['n']} natural crops ...")
        d = generic_mod.natural_crops(spec["n"], spec["image_size"], spec["seed"])
        m = learner.learn(d, self.config(spec), spec["seed"])
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
        if missing and self.executor is not None:
            self.trained += self.executor(self.P, missing, self.log)
        elif missing:
            for i, spec in enumerate(missing, 1):
                self.log(f"[{i}/{len(missing)}] {describe(spec)}")
                self.ensure(spec)
        self.reused = reused  # parents looked up again while training their children are not reuses
        return [self.result(s) for s in specs]


def scored(result: dict, threshold: float = THRESHOLD) -> dict:
    """`result` with `scores` (test set) or `valid_scores` (a source model's validation patients) computed
    from its stored probabilities at `threshold`: the cache keeps probabilities, never thresholded scores."""
    out = dict(result)
    for prefix, name in (("", "scores"), ("valid_", "valid_scores")):
        if f"{prefix}probs" in result:
            out[name] = scores(result[f"{prefix}labels"], np.asarray(result[f"{prefix}probs"]) >= threshold)
    return out


def check_env(spec: dict, here: dict) -> None:
    """Refuse to train a run specified for another environment (a Dask worker with other code or versions).

    The thread count is not compared (the run sets the one its spec names), nor the GPU model and precision
    of a spec made on a client that could not see the GPU."""
    env = spec.get("env", here)
    unseen = {"hardware", "precision"} if env.get("hardware") == "cuda-unknown" else set()
    keys = set(here) - {"threads"} - unseen
    if any(env.get(k) != here.get(k) for k in keys):
        diff = {k: (env.get(k), here.get(k)) for k in sorted(keys) if env.get(k) != here.get(k)}
        raise RuntimeError(f"run {spec_key(spec)} was specified for another environment than this process's "
                           f"(spec vs here: {diff}); install the same lesionlib and libraries on every worker, "
                           "and set `device` in the profile when client and workers have different devices")


def results_frame(specs: dict, results: list, names=("size", "arm", "seed"), bootstrap: int = 0):
    """One row per spec key (its parts named by `names`) with recall, precision, F2, AUC and fit details.

    With `bootstrap` > 0, each run also gets a 95 % percentile-bootstrap interval of R and P over its
    test patients (columns recall_lo, recall_hi, precision_lo, precision_hi). `degenerate` names a run
    that called (nearly) every test lesion one class, >= 90 %: its R and P say little about ranking (see AUC).
    """
    import pandas as pd

    from sklearn.metrics import roc_auc_score

    rows = []
    for key, res in zip(specs, results):
        spec, s = specs[key], scored(res)["scores"]
        parent = trained_parent(spec)
        n_s = parent["sample"]["n"] if parent is not None and parent["role"] == "source" else None
        # AUC needs no threshold: it shows whether a model ranks lesions at all when R/P are degenerate.
        auc = roc_auc_score(res["labels"], res["probs"]) if len(set(res["labels"])) == 2 else float("nan")
        rows.append({**dict(zip(names, key)), **({} if "arm" in names else {"arm": "lesaug"}),
                     "n_t": spec["sample"]["n"], "n_s": n_s, "n_test": s["n"], "positives": s["positives"],
                     "recall": s["recall"], "precision": s["precision"],
                     "f2": s["f2"], "auc": auc, "predicted malignant": s["predicted_positive"],
                     "degenerate": degenerate(s["predicted_positive"], s["n"]),
                     "epochs": res["fit"]["epochs_run"], "best epoch": res["fit"]["best_epoch"],
                     "seconds": res["seconds"]})
        if bootstrap:  # resample test patients, not lesions: one patient's slices are not independent
            ci = bootstrap_interval(res["labels"], np.asarray(res["probs"]) >= THRESHOLD, bootstrap,
                                    groups=res["test_patients"])
            rows[-1].update({f"{m}_{end}": ci[m][j] for m in ci for j, end in enumerate(("lo", "hi"))})
    return pd.DataFrame(rows)
