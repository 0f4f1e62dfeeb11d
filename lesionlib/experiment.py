"""The paper's experiment as run specifications, executed through the run cache.

Every trained model is described by a nested, JSON-able specification: its data (source, organ,
sample size, seeds), its training settings and the specification of the model it starts from
(`init`). The arms of Section 3.1 are then three ways of filling `init`:

* ``base``   -- Learn(d_t):                            init = None (random weights)
* ``lesagn`` -- Transfer(d_t | Learn(d_g)):            init = G
* ``lesaug`` -- Transfer(d_t | Transfer(d_s | Learn(d_g))): init = the source model, itself started from G

Because a specification contains its parents, the cache key of LesAug changes whenever anything about
its source model or G changes, and each source model is trained once and reused by every target run.
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import generic as generic_mod
from .cache import RunCache, spec_key
from .data import build_lesions, draw_test, load_lesions, nested_sample, save_lesions
from .data.lesions import LesionSet
from .learner import Model, TrainConfig, learn, predict, transfer
from .metrics import scores
from .profile import DIRECTIONS, SIZE_NAMES, Profile

SPEC_VERSION = 1
ARMS = ("base", "lesagn", "lesaug")
ARM_LABELS = {"base": "Base", "lesagn": "LesAgn", "lesaug": "LesAug"}
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


def sample_spec(P: Profile, organ: str, n: int, seed: int) -> dict:
    """A training sample of `n` lesions of `organ`, drawn after the test set is set aside."""
    return {"data": data_spec(P, organ), "test_size": P.test_size, "test_seed": P.test_seed, "n": int(n),
            "sample_seed": int(seed)}


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


def model_spec(P: Profile, role: str, organ: str, n: int, seed: int, init: dict | None) -> dict:
    """A lesion model trained on `n` lesions of `organ`, starting from `init` (None: random weights)."""
    return {"role": role, "sample": sample_spec(P, organ, n, seed), "init": init,
            "train": P.train_config().as_spec(), "seed": int(seed), "v": SPEC_VERSION}


def source_model(P: Profile, source: str, n_s: int, seed: int) -> dict:
    """Transfer(d_s | G): the lesion-augmented source model."""
    return model_spec(P, "source", source, n_s, seed, generic_spec(P))


def base(P: Profile, target: str, n_t: int, seed: int) -> dict:
    """Base = Learn(d_t)."""
    return model_spec(P, "target", target, n_t, seed, None)


def lesagn(P: Profile, target: str, n_t: int, seed: int) -> dict:
    """LesAgn = Transfer(d_t | Learn(d_g))."""
    return model_spec(P, "target", target, n_t, seed, generic_spec(P))


def lesaug(P: Profile, source: str, target: str, n_t: int, n_s: int, seed: int) -> dict:
    """LesAug = Transfer(d_t | Transfer(d_s | Learn(d_g)))."""
    return model_spec(P, "target", target, n_t, seed, source_model(P, source, n_s, seed))


def arm_spec(P: Profile, arm: str, direction: str, n_t: int, n_s: int, seed: int) -> dict:
    """The specification of one arm for one direction, target size, source size and seed."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; allowed: {', '.join(DIRECTIONS)}")
    source, target = DIRECTIONS[direction]
    if arm == "base":
        return base(P, target, n_t, seed)
    if arm == "lesagn":
        return lesagn(P, target, n_t, seed)
    if arm == "lesaug":
        return lesaug(P, source, target, n_t, n_s, seed)
    raise ValueError(f"unknown arm {arm!r}; allowed: {', '.join(ARMS)}")


def fig1_specs(P: Profile, direction: str) -> dict:
    """Fig 1: fixed source size (High), every target size of the profile -> {(size, arm, seed): spec}."""
    source, _ = DIRECTIONS[direction]
    n_s = P.source_size(source, "High")
    return {(name, arm, seed): arm_spec(P, arm, direction, P.target_sizes[name], n_s, seed)
            for name in SIZE_NAMES if name in P.target_sizes for arm in ARMS for seed in P.seeds}


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
        start = f"source({init['sample']['data']['organ']})"
    return f"{spec['role']} {s['data']['organ']} n={s['n']} seed={spec['seed']} from {start}"


# --- execution ---------------------------------------------------------------------------------

class Runner:
    """Executes specifications, reusing finished runs from the cache."""

    def __init__(self, P: Profile, cache: RunCache | None = None, log=None):
        self.P = P
        self.cache = cache or RunCache(P.cache_root())
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._data: dict = {}
        self.trained = 0  # runs trained by this runner (not found in the cache)
        self.reused = 0

    # data
    def dataset(self, dspec: dict) -> LesionSet:
        """The prepared lesion set of a data spec (phantom sets are cached on disk once generated)."""
        key = spec_key(dspec)
        if key not in self._data:
            params = {k: v for k, v in dspec.items() if k not in ("source", "organ", "file")}
            if dspec["source"] == "phantom":
                path = self.cache.root / "data" / key  # generated once, kept in the prepared format
                if path.is_dir():
                    ds = load_lesions(path)
                else:
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

    def training_set(self, sspec: dict) -> LesionSet:
        ds, pool, _ = self.split(sspec)
        return ds.subset(nested_sample(ds, pool, sspec["n"], sspec["sample_seed"]))

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
        if spec["role"] == "generic":
            return self._train_generic(spec)
        init = None if spec["init"] is None else self.model(spec["init"])
        t0 = time.perf_counter()
        self.log(f"training {describe(spec)} ...")
        d, cfg = self.training_set(spec["sample"]), self.config(spec)
        m = learn(d, cfg, spec["seed"]) if init is None else transfer(d, init, cfg, spec["seed"])
        test = self.test_set(spec["sample"])
        probs = predict(test, m, cfg)
        result = {"scores": scores(test.labels, probs >= THRESHOLD), "probs": probs.round(6).tolist(),
                  "labels": test.labels.tolist(), "test_ids": test.ids.tolist(), "history": m.history,
                  "fit": m.fit_info, "n_out": m.n_out, "train_counts": d.counts(),
                  "seconds": time.perf_counter() - t0}
        keep = spec["role"] == "source"  # only models that others start from keep their weights
        self.cache.put(spec, result, m.state_dict if keep else None)
        self.trained += 1
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
        self.trained += 1
        self.log(f"  done in {result['seconds']:.0f}s")
        return result

    def run_all(self, specs) -> list:
        """Ensure every spec (in order), logging progress; returns their results."""
        specs = list(specs)
        out = []
        for i, spec in enumerate(specs, 1):
            if not self.cache.has(spec):
                self.log(f"[{i}/{len(specs)}] {describe(spec)}")
            out.append(self.ensure(spec))
        return out


def unique_runs(specs) -> list:
    """Every distinct run needed by `specs`, parents included (each counted once)."""
    seen: dict = {}

    def walk(s):
        if s is None or (s["role"] == "generic" and s["name"] != "natural-crops"):
            return
        seen.setdefault(spec_key(s), s)
        if s["role"] != "generic":
            walk(s["init"])

    for s in specs:
        walk(s)
    return list(seen.values())


def results_frame(specs: dict, results: list):
    """One row per (size, arm, seed) with recall, precision, F2 and fit details."""
    import pandas as pd

    from sklearn.metrics import roc_auc_score

    rows = []
    for (size, arm, seed), res in zip(specs, results):
        s = res["scores"]
        # AUC needs no threshold: it shows whether a model ranks lesions at all when R/P are degenerate.
        auc = roc_auc_score(res["labels"], res["probs"]) if len(set(res["labels"])) == 2 else float("nan")
        rows.append({"size": size, "n": specs[(size, arm, seed)]["sample"]["n"], "arm": arm, "seed": seed,
                     "recall": s["recall"], "precision": s["precision"], "f2": s["f2"], "auc": auc,
                     "predicted malignant": s["predicted_positive"], "epochs": res["fit"]["epochs_run"],
                     "best epoch": res["fit"]["best_epoch"], "seconds": res["seconds"]})
    return pd.DataFrame(rows)
