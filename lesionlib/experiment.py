"""Run specifications: the building blocks the arms (`lesionlib.arms`) and figures (`lesionlib.figures`) are
made of; `lesionlib.runner` executes specifications through the run cache.

Every trained model is described by a nested, JSON-able specification: its data (source, organ,
sample size, seeds), its training settings and the specification of the model it starts from
(`init`: None for random weights, G, a source model, or weight statistics of one). Because a
specification contains its parents, the cache key of LesAug changes whenever anything about
its source model or G changes, and each source model is trained once and reused by every target run.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path


from .cache import spec_key
from .config import cores_per
from .data.lesions import LesionIndex
from .data.registry import lesion_index
from .fingerprint import file_sha256, run_env
from .device import hardware, precision, resolve_device
from .profile import LOCAL_CLUSTER_ENV, Profile

SPEC_VERSION = 2  # the layout of a specification; code, libraries and device are in its `env`
PREPARED_FILES = ("index.csv", "crops.npz")  # what decides a prepared set's content (meta.json only describes it)


# --- specifications ----------------------------------------------------------------------------

def data_spec(P: Profile, organ: str) -> dict:
    """Which lesion set of `organ` a profile uses: generator settings, or the content hash of a prepared set.

    A prepared set is named by the SHA-256 of its files, not by its path: an edited index.csv gives
    new runs, and an identical copy elsewhere reuses the finished ones.
    """
    if P.data_source == "phantom":
        return {"source": "phantom", "organ": organ, "n": P.phantom_pool[organ], "seed": 0,
                "image_size": P.image_size, "margin": P.crop_margin, "slice_size": P.phantom_slice_size,
                "overlap": P.phantom_overlap, "malignant_fraction": P.phantom_malignant_fraction[organ],
                "shared": float(P.phantom_shared), "slices_per_patient": P.phantom_slices_per_patient[organ]}
    return {"source": P.data_source, "organ": organ, "image_size": P.image_size,
            "sha256": prepared_sha256(Path(P.data_dir).expanduser() / organ)}


def prepared_sha256(path: Path) -> str:
    """The content hash of the prepared set at `path` ('missing' when its files are not there)."""
    files = [path / f for f in PREPARED_FILES]
    if not all(f.is_file() for f in files):
        return "missing"
    return file_sha256(files[0])[:32] + file_sha256(files[1])[:32]


def sample_spec(P: Profile, organ: str, n: int, seed: int, fold: int | None = None, role: str = "target",
                labels: str = "true") -> dict:
    """A training sample of `n` lesions of `organ`.

    A target sample is drawn after the organ's test set is set aside; a source sample comes from the
    whole set (the paper scores source models on no test set of their own organ).
    With `fold` = k, the sample is cut into `cv_folds` patient folds: fold k is the validation set
    for early stopping and the other folds are trained on (Fig 3's cross-validation).
    With `labels` = "shuffled" (LesShuf's source), the training patients of the drawn sample trade their
    labels among themselves, all slices of a patient alike; its validation patients keep their true labels
    (`Runner.training_set`, `splits.permuted_patient_labels`).
    """
    if labels not in ("true", "shuffled"):
        raise ValueError(f"labels must be 'true' or 'shuffled', got {labels!r}")
    s = {"data": data_spec(P, organ), "n": int(n), "sample_seed": int(seed)}
    if labels == "shuffled":
        s["labels"] = "shuffled"
    if role == "target":
        s.update(test_size=P.test_size, test_seed=P.test_seed)
    if fold is not None:
        s.update(fold=int(fold), folds=int(P.cv_folds))
    return s


def env_spec(P: Profile) -> dict:
    """The environment a model of this profile is trained in (see `lesionlib.fingerprint`)."""
    device = resolve_device(P.device)
    threads = training_threads(P) if device.type == "cpu" else None  # GPU kernels do not use them
    return run_env(device.type, precision(device), hardware(device), threads)


def training_threads(P: Profile) -> int:
    """Torch threads of a CPU run: the profile's `threads`, else the cores shared among its local Dask
    workers, else this process's count ($OMP_NUM_THREADS or torch's default)."""
    import torch

    if P.threads:
        return int(P.threads)
    local = not P.scheduler_address() or os.environ.get(LOCAL_CLUSTER_ENV) == P.scheduler_address()
    if P.workers and local:  # the grid's own cluster too: its pages and the grid itself name the same runs
        return cores_per(P.workers)
    return torch.get_num_threads()


def generic_spec(P: Profile) -> dict:
    """The generic model G."""
    if P.generic == "imagenet":
        return {"role": "generic", "name": "imagenet"}
    if P.generic == "natural-crops":
        cfg = replace(P.train_config(), epochs=P.generic_epochs)
        return {"role": "generic", "name": "natural-crops", "n": P.generic_size, "image_size": P.image_size,
                "train": cfg.as_spec(), "seed": 0, "v": SPEC_VERSION, "env": env_spec(P)}
    path = Path(P.generic).expanduser().resolve()
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    return {"role": "generic", "name": "file", "path": str(path), "sha256": digest}


def model_spec(P: Profile, role: str, organ: str, n: int, seed: int, init: dict | None,
               fold: int | None = None, labels: str = "true") -> dict:
    """A lesion model trained on `n` lesions of `organ`, starting from `init` (None: random weights)."""
    return {"role": role, "sample": sample_spec(P, organ, n, seed, fold, role, labels), "init": init,
            "train": P.train_config().as_spec(), "seed": int(seed), "v": SPEC_VERSION, "env": env_spec(P)}


def source_model(P: Profile, source: str, n_s: int, seed: int) -> dict:
    """Transfer(d_s | G): the lesion-augmented source model."""
    return model_spec(P, "source", source, n_s, seed, generic_spec(P))


def source_only_model(P: Profile, source: str, n_s: int, seed: int) -> dict:
    """Learn(d_s): a source model from random weights (the start of LesOnly)."""
    return model_spec(P, "source", source, n_s, seed, None)


def shuffled_source_model(P: Profile, source: str, n_s: int, seed: int) -> dict:
    """Transfer(d_s' | G), d_s' = d_s with its labels permuted: the start of LesShuf."""
    return model_spec(P, "source", source, n_s, seed, generic_spec(P), labels="shuffled")


def weight_stats(of: dict, seed: int) -> dict:
    """Random weights with the per-tensor mean and variance of the model `of` (derived, never trained)."""
    return {"role": "weight-stats", "of": of, "seed": int(seed)}


def trained_parent(spec: dict) -> dict | None:
    """The trained model a run starts from (through a weight-statistics init to its model), or None."""
    init = spec.get("init") if spec["role"] != "generic" else None
    return init["of"] if init is not None and init["role"] == "weight-stats" else init


def control_profile(P: Profile, shared: float | None) -> Profile:
    """`P` with phantom data sharing `shared` of the malignancy signal between organs (real data: `P`)."""
    if P.data_source != "phantom" or shared is None or float(shared) == float(P.phantom_shared):
        return P
    return replace(P, phantom_shared=float(shared))


def control_conditions(P: Profile) -> list:
    """The data conditions of the Controls page: each `control_shared` value on phantom data, else one."""
    return [float(s) for s in P.control_shared] if P.data_source == "phantom" else [None]


def _source_params(dspec: dict) -> dict:
    """The keyword arguments a data spec passes to its source's builder (or index)."""
    return {k: v for k, v in dspec.items() if k not in ("source", "organ", "sha256")}


def data_index(P: Profile, organ: str) -> LesionIndex:
    """Labels and patients of the lesion set `data_spec(P, organ)` names, without loading its images."""
    dspec = data_spec(P, organ)
    params = _source_params(dspec)
    if dspec["source"] == "prepared":
        params["data_dir"] = P.data_dir
    return lesion_index(dspec["source"], organ, **params)


def describe(spec: dict) -> str:
    """A short human label for a spec, for progress lines."""
    if spec["role"] == "generic":
        return f"G={spec['name']}"
    if spec["role"] == "weight-stats":
        return f"stats of {describe(spec['of']) if spec['of']['role'] == 'generic' else 'source'}"
    s, init = spec["sample"], spec["init"]
    if init is None:
        start = "random"
    elif init["role"] == "generic":
        start = describe(init)
    elif init["role"] == "weight-stats":
        src = init["of"]
        start = "random, scaled as " + (describe(src) if src["role"] == "generic" else
                                       f"source({src['sample']['data']['organ']} n={src['sample']['n']})")
    else:
        start = f"source({init['sample']['data']['organ']} n={init['sample']['n']}" + (
            ", random" if init["init"] is None else "") + (
            ", shuffled labels" if init["sample"].get("labels") == "shuffled" else "") + ")"
    fold = f" fold={s['fold']}/{s['folds']}" if "fold" in s else ""
    return f"{spec['role']} {s['data']['organ']} n={s['n']}{fold} seed={spec['seed']} from {start}"


def trained_here(spec: dict) -> bool:
    """Whether lesionlib trains the model `spec` names (not ImageNet or a weights file, not weight statistics)."""
    return spec["role"] not in ("weight-stats",) and not (spec["role"] == "generic" and spec["name"] != "natural-crops")


def unique_runs(specs) -> list:
    """Every distinct run needed by `specs`, parents included (each counted once)."""
    seen: dict = {}

    def walk(s):  # parents before children, so the list is also an order to train in
        if s is None or (s["role"] == "generic" and not trained_here(s)):
            return
        if s["role"] == "weight-stats":  # derived from its model when needed, never trained or stored
            return walk(s["of"])
        if s["role"] != "generic":
            walk(s["init"])
        seen.setdefault(spec_key(s), s)

    for s in specs:
        walk(s)
    return list(seen.values())
