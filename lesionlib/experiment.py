"""The paper's experiment as run specifications (`lesionlib.runner` executes them through the run cache).

Every trained model is described by a nested, JSON-able specification: its data (source, organ,
sample size, seeds), its training settings and the specification of the model it starts from
(`init`). The arms of Section 3.1 are then three ways of filling `init`:

* ``base``   -- Learn(d_t):                            init = None (random weights)
* ``lesagn`` -- Transfer(d_t | Learn(d_g)):            init = G
* ``lesaug`` -- Transfer(d_t | Transfer(d_s | Learn(d_g))): init = the source model, itself started from G
* ``lesonly`` -- Transfer(d_t | Learn(d_s)):           init = a source model from random weights (ours,
  not in the paper: lesion knowledge without G)

and three controls of ours (the Controls page), which LesAug must beat for a win to mean lesion knowledge:

* ``lesshuf`` -- LesAug whose source model learnt the source organ with its labels permuted among its
  training patients (early stopping still watches true labels): the same images and gradient steps, no
  label knowledge (separates lesion knowledge from a warm start)
* ``lesstat`` -- random weights with each parameter tensor's mean and variance of LesAug's source model
  (Raghu et al. 2019, "Transfusion": separates feature reuse from better-scaled initial weights)
* ``agnstat`` -- the same with G's statistics

Because a specification contains its parents, the cache key of LesAug changes whenever anything about
its source model or G changes, and each source model is trained once and reused by every target run.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .cache import spec_key
from .config import cores_per
from .data.lesions import LesionIndex
from .data.registry import lesion_index
from .data.splits import SplitError, sample_indices
from .fingerprint import file_sha256, run_env
from .device import hardware, precision, resolve_device
from .profile import DIRECTIONS, LOCAL_CLUSTER_ENV, SIZE_NAMES, Profile, ProfileError

SPEC_VERSION = 2  # the layout of a specification; code, libraries and device are in its `env`
PREPARED_FILES = ("index.csv", "crops.npz")  # what decides a prepared set's content (meta.json only describes it)
ARMS = ("base", "lesagn", "lesaug", "lesonly")  # the figures' arms
PAPER_ARMS = ("base", "lesagn", "lesaug")  # the arms the paper reports; LesOnly is ours
CONTROL_ARMS = ("base", "lesagn", "lesaug", "lesshuf", "lesstat", "agnstat")  # the Controls page's arms
ARM_LABELS = {"base": "Base", "lesagn": "LesAgn", "lesaug": "LesAug", "lesonly": "LesOnly",
              "lesshuf": "LesShuf", "lesstat": "LesStat", "agnstat": "AgnStat"}


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


def lesshuf(P: Profile, source: str, target: str, n_t: int, n_s: int, seed: int, fold=None) -> dict:
    """LesShuf = Transfer(d_t | Transfer(d_s' | G)), d_s' with permuted labels (control)."""
    return model_spec(P, "target", target, n_t, seed, shuffled_source_model(P, source, n_s, seed), fold)


def lesstat(P: Profile, source: str, target: str, n_t: int, n_s: int, seed: int, fold=None) -> dict:
    """LesStat = Learn(d_t) from random weights scaled like LesAug's source model (control)."""
    return model_spec(P, "target", target, n_t, seed, weight_stats(source_model(P, source, n_s, seed), seed), fold)


def agnstat(P: Profile, target: str, n_t: int, seed: int, fold=None) -> dict:
    """AgnStat = Learn(d_t) from random weights scaled like G (control)."""
    return model_spec(P, "target", target, n_t, seed, weight_stats(generic_spec(P), seed), fold)


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
    if arm == "lesshuf":
        return lesshuf(P, source, target, n_t, n_s, seed, fold)
    if arm == "lesstat":
        return lesstat(P, source, target, n_t, n_s, seed, fold)
    if arm == "agnstat":
        return agnstat(P, target, n_t, seed, fold)
    raise ValueError(f"unknown arm {arm!r}; allowed: {', '.join(ARMS + CONTROL_ARMS[3:])}")


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


def control_profile(P: Profile, shared: float | None) -> Profile:
    """`P` with phantom data sharing `shared` of the malignancy signal between organs (real data: `P`)."""
    if P.data_source != "phantom" or shared is None or float(shared) == float(P.phantom_shared):
        return P
    return replace(P, phantom_shared=float(shared))


def control_conditions(P: Profile) -> list:
    """The data conditions of the Controls page: each `control_shared` value on phantom data, else one."""
    return [float(s) for s in P.control_shared] if P.data_source == "phantom" else [None]


def controls_specs(P: Profile, direction: str) -> dict:
    """Controls: every control arm at Fig 5's target size (the smallest) and High source size, over
    `control_seeds` and, on phantom data, each `control_shared` -> {(shared, arm, seed): spec}."""
    source, _ = DIRECTIONS[direction]
    smallest = [s for s in SIZE_NAMES if s in P.target_sizes][-1]
    out = {}
    for shared in control_conditions(P):
        Q = control_profile(P, shared)
        n_t, n_s = Q.target_sizes[smallest], Q.source_size(source, "High")
        out.update({(shared, arm, seed): arm_spec(Q, arm, direction, n_t, n_s, seed)
                    for arm in CONTROL_ARMS for seed in P.control_seeds})
    return out


FIGURES = {"fig1": fig1_specs, "fig2": fig2_specs, "fig3": fig3_specs, "fig4": fig4_specs, "fig5": fig5_specs,
           "controls": controls_specs}
KEY_NAMES = {"fig1": ("size", "arm", "seed"), "fig2": ("source size", "arm", "seed"), "fig3": ("fold", "arm", "seed"),
             "fig4": ("size", "source size", "seed"), "fig5": ("arm", "seed"),
             "controls": ("shared", "arm", "seed")}  # what each part of a key means


def grid_specs(P: Profile, directions=tuple(DIRECTIONS), figures=tuple(FIGURES)) -> dict:
    """Every figure's specs -> {(figure, direction): {key: spec}}."""
    return {(f, d): FIGURES[f](P, d) for d in directions for f in figures}


def counting_profile(values: dict) -> Profile:
    """A profile's parameters as a Profile whose grid has the same runs but needs no data files (to count them).

    The runs do not depend on where the data is, so the profile is validated on phantom data (its
    parameters only: nothing is drawn). One thing does depend on the data: on phantom data the Controls
    page has one condition per `control_shared` value, on real data one (`control_conditions`). So for
    a profile of real data `control_shared` keeps only `phantom_shared`, whose condition is the profile.
    """
    v = {**values, "data_source": "phantom", "data_dir": None}
    if values.get("data_source") != "phantom":
        v["control_shared"] = [Profile.from_mapping(v).phantom_shared]
    return Profile.from_mapping(v)


def book_runs(P: Profile) -> list:
    """Every distinct training run of the whole book on `P`, parents first."""
    return unique_runs(s for specs in grid_specs(P).values() for s in specs.values())


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


def sample_plan(P: Profile, directions=tuple(DIRECTIONS), figures=tuple(FIGURES)) -> list[dict]:
    """Every training sample of the grid, drawn as the runs will draw it but on labels and patients alone.

    One row per distinct lesion model: the size asked for, and how many lesions it trains on,
    validates on (early stopping) and is tested on. A draw the data cannot give raises one
    `ProfileError` naming the parameter at fault, so a profile that passes never fails mid-grid.
    """
    specs = [s for fs in grid_specs(P, directions, figures).values() for s in fs.values()]
    index, rows = {}, []
    for spec in unique_runs(specs):
        if spec["role"] == "generic":
            continue
        s, organ = spec["sample"], spec["sample"]["data"]["organ"]
        if organ not in index:
            index[organ] = data_index(P, organ)
        ds = index[organ]
        sizes = "target_sizes" if spec["role"] == "target" else f"source_sizes.{organ}"
        try:
            train, valid, test = sample_indices(ds, s, P.valid_frac, spec["seed"])
        except SplitError as err:
            key = sizes if err.parameter == "size" else err.parameter
            hint = f" (or raise phantom_pool.{organ})" if P.data_source == "phantom" and key != "cv_folds" else ""
            raise ProfileError(f"profile {P.profile!r}: parameter {key!r}: {describe(spec)}: {err}{hint}") from None
        if len(np.unique(ds.labels[train])) < 2:
            raise ProfileError(f"profile {P.profile!r}: parameter {sizes!r}: {describe(spec)}: its {len(train)} "
                               f"training lesions hold one class only; use a larger size")
        rows.append({"run": describe(spec), "role": spec["role"], "organ": organ, "n": s["n"], "train": len(train),
                     "valid": len(valid), "test": None if test is None else len(test),
                     "train malignant": int(ds.labels[train].sum())})
    return rows


_CHECKED: set = set()


def check_samples(P: Profile) -> Profile:
    """`P` once its whole grid's samples are drawn on the data (`sample_plan`; once per process for each
    profile and data content): a profile that passes never fails mid-grid for lack of lesions.

    Pages (`page.setup`) and the grid call it before any work; `Profile` itself checks parameters only.
    """
    from dataclasses import asdict

    from .cache import canonical
    from .data.store import PreparedSetError

    try:
        key = canonical([asdict(P)] + [data_spec(P, o) for o in ("brain", "lung")])
        if key not in _CHECKED:
            sample_plan(P)
            _CHECKED.add(key)
    except PreparedSetError as err:
        raise ProfileError(f"profile {P.profile!r}: parameter 'data_dir': {err}") from None
    return P


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
