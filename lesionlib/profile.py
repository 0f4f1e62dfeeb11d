"""Profiles: every size and setting of a run of the book, one parameter per `Profile` field with its default
(the paper's setting), its meaning and its check. The profiles shipped live in `lesionlib/profiles/<name>.yaml`
(package data; the checkout's `params/`) and give what differs from the defaults.

A profile file may name a `base` profile and give only what differs from it (``base: quick`` and
``epochs: 3``). Each notebook's `parameters` cell holds the profile's name and optional `overrides`, so
``papermill book/fig1.ipynb out.ipynb -p profile quick -p direction lung_to_brain`` runs a page on a
profile; ``-f my.yaml`` and ``-p epochs 3`` work too (see `Profile.from_namespace`).
"""
from __future__ import annotations

import copy
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import yaml

from .config import ARCH_NAMES, TrainConfig

ORGANS = ("brain", "lung")
DIRECTIONS = {"brain_to_lung": ("brain", "lung"), "lung_to_brain": ("lung", "brain")}
SIZE_NAMES = ("High", "Medium", "Low", "VLow")


def size_order(names) -> list:
    """`names` in the paper's size order (High ... VLow); names that are not size names (folds), sorted."""
    present = set(names)
    return [s for s in SIZE_NAMES if s in present] or sorted(present)


class ProfileError(ValueError):
    """A profile parameter that is missing, unknown or out of range."""


def param(default, help: str, check=None, must: str = ""):
    """A profile parameter: its default (the paper's setting), what it means, and the check its value must pass
    (`check(value)` true, else the error says it `must` ...). Cross-parameter checks live in `Profile.validate`."""
    mutable = isinstance(default, (dict, list))
    return field(**({"default_factory": lambda: copy.deepcopy(default)} if mutable else {"default": default}),
                 metadata={"help": help, "check": check, "must": must})


def _int(lo=None, hi=None):
    """A check: an integer (not a bool) in [lo, hi]."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo) and (hi is None or v <= hi)


def _seeds(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(s, int) for s in v)


def _arch_names():
    return ARCH_NAMES


@dataclass(frozen=True)
class Profile:
    """One validated profile. Every parameter's default is the paper's setting (`paper`); a profile file gives
    what differs (`lesionlib profile show NAME` prints one resolved, with each parameter's help)."""

    profile: str = param("paper", "the profile's name, shown on every page")
    data_source: str = param("prepared", "where the lesions come from: `phantom` (the offline generator) or "
                             "`prepared` (real sets written by `lesionlib data prepare`)")
    data_dir: str | None = param("data/prepared", "the prepared sets' folder (`<organ>/index.csv`); null for phantom data")
    image_size: int = param(224, "side in pixels of the square crop the network sees (the paper: not given)",
                            _int(16, 1024), "must be an integer in [16, 1024]")
    crop_margin: float = param(0.25, "context around the lesion: the crop's side is the box side x (1 + 2 x margin)",
                               lambda v: isinstance(v, (int, float)) and 0 <= v <= 2, "must lie in [0, 2]")
    test_size: int = param(200, "lesions of the target organ held out as its test set, by patient",
                           _int(1), "must be a positive integer")
    test_seed: int = param(1234, "seed of the test-set draw (the same test set for every arm and seed)", _int(),
                           "must be an integer")
    target_sizes: dict = param({"High": 400, "Medium": 335, "Low": 250, "VLow": 165},
                               "|d_t|: the target training sizes by name (High ... VLow), the paper's Section 4")
    source_sizes: dict = param({"brain": {"High": 3000, "Medium": 2000, "Low": 1000, "VLow": 500},
                                "lung": {"High": 700, "Medium": 500, "Low": 300, "VLow": 100}},
                               "|d_s|: the source training sizes by organ and name")
    seeds: list = param([0, 1, 2], "training seeds of every figure's runs (intervals are over seeds)", _seeds,
                        "must be a non-empty list of integers")
    cv_folds: int = param(5, "Fig 3: folds of the cross-validation at High/High (the paper: 5)", _int(2),
                          "must be an integer >= 2 (folds of Fig 3's cross-validation)")
    bootstrap: int = param(1000, "test-set resamples behind each single run's 95 % interval (0: none)", _int(0),
                           "must be an integer >= 0 (test-set resamples for single-run intervals; 0: none)")
    arch: str = param("densenet201", "the network: the paper's DenseNet-201 (test_densenet: a tiny one, for "
                      "bookkeeping tests only)", lambda v: v in _arch_names(), f"must be one of {ARCH_NAMES}")
    epochs: int = param(50, "most epochs of a fit (the paper: not given)", _int(1), "must be an integer >= 1")
    patience: int = param(5, "early stopping: epochs without a better validation loss before a fit stops",
                          _int(1), "must be an integer >= 1")
    min_steps: int = param(0, "gradient steps every lesion fit takes at least, whatever early stopping says "
                           "(0: no minimum; the paper has no such rule)", _int(0),
                           "must be an integer >= 0 (gradient steps every lesion fit takes at least; 0: no minimum)")
    lr: float = param(1.0e-4, "Adam's learning rate", lambda v: isinstance(v, (int, float)) and 0 < v < 1,
                      "must lie in (0, 1)")
    batch_size: int = param(64, "training batch size", _int(2), "must be an integer >= 2")
    valid_frac: float = param(0.2, "share of each training set held out, by patient, for early stopping",
                              lambda v: isinstance(v, (int, float)) and 0 < v < 1, "must lie in (0, 1)")
    transfer_head: bool = param(True, "Transfer keeps the source's classifier head (false: a fresh head)")
    max_rotate: float = param(20.0, "augmentation: largest rotation in degrees")
    max_shift: float = param(0.1, "augmentation: largest shift, a share of the side")
    flip: bool = param(True, "augmentation: random flips")
    generic: str = param("imagenet", "the generic weights G: `imagenet`, `natural-crops` (G trained here on natural "
                         "image crops) or the path of a DenseNet-201 state dict")
    generic_size: int = param(0, "natural-crops: how many crops G trains on")
    generic_epochs: int = param(0, "natural-crops: G's epochs")
    phantom_pool: dict = param({"brain": 3064, "lung": 729}, "phantom data: slices generated per organ (the real "
                               "sets' sizes: Cheng's 3064 slices, the paper's 729 nodules)")
    phantom_overlap: float = param(0.6, "phantom data: how much the benign and malignant cue distributions overlap")
    phantom_malignant_fraction: dict = param({"brain": 0.47, "lung": 0.38}, "phantom data: malignant share per "
                                             "organ (Cheng: 47 % glioma; LIDC under readers>=3: 38 % malignant)")
    phantom_slice_size: int = param(256, "phantom data: side of a generated slice before cropping")
    phantom_shared: float = param(1.0, "phantom data: share of the malignancy signal carried by cues both organs "
                                  "have (0: none)")
    phantom_slices_per_patient: dict = param({"brain": 13, "lung": 2}, "phantom data: slices per synthetic patient "
                                             "(Cheng: ~13 per patient; LIDC readers>=3: ~2 nodules)")
    control_seeds: list = param([0, 1, 2], "the Controls page's seeds (its arms at Fig 5's target size)", _seeds,
                                "must be a non-empty list of integers (the Controls page's seeds)")
    control_shared: list = param([1.0, 0.0], "phantom_shared of the Controls page's conditions (phantom data only)")
    brain_dir: str | None = param(None, "Cheng's .mat files for the Materials page; null: a stand-in in the same format")
    lidc_dir: str | None = param(None, "the LIDC-IDRI DICOM folder for the Materials page; null: a synthetic series "
                                 "for a real LIDC patient")
    lung_rule: str = param("readers>=3", "which LIDC nodules are lesions and how they are labelled "
                           "(`lesionlib.data.lung_nodules.CANDIDATE_RULES`)")
    lidc_table_patients: int | None = param(None, "the Materials page's nodule table: null (every LIDC patient; the "
                                            "table ships with lesionlib) or the first N patients",
                                            lambda v: v is None or _int(1)(v),
                                            "must be null (every LIDC patient) or a positive integer")
    cache_dir: str | None = param(None, "the run cache; null: $LESIONLIB_CACHE, else the project's .cache/lesionlib")
    device: str = param("auto", "where runs train: auto, cpu, cuda[:N] or mps",
                        lambda v: isinstance(v, str) and (v == "auto" or v.split(":")[0] in ("cpu", "cuda", "mps")),
                        "must be 'auto', 'cpu', 'cuda[:N]' or 'mps'")
    threads: int | None = param(None, "torch threads per CPU run (in its cache key: other counts give other bits); "
                                "null: cores / workers, or this process's count", lambda v: v is None or _int(1)(v),
                                "must be null or an integer >= 1 (torch threads of each CPU training run)")
    workers: int = param(0, "Dask worker processes for training runs (0: in the notebook's process; one per GPU "
                         "on a machine with several)", _int(0),
                         "must be an integer >= 0 (Dask worker processes; 0: train in the notebook's process)")
    runs_per_gpu: int = param(1, "on a machine with GPUs: training runs at once on each GPU (Dask workers per GPU; "
                              "a small network leaves a large GPU idle between kernels)", _int(1),
                              "must be an integer >= 1")
    scheduler: str | None = param(None, "a Dask scheduler address such as tcp://host:8786 "
                                  "($LESIONLIB_SCHEDULER wins over it); null: a local cluster on loopback",
                                  lambda v: v is None or (isinstance(v, str) and "://" in v),
                                  "must be null or a Dask scheduler address like 'tcp://host:8786'")

    @classmethod
    def keys(cls) -> tuple:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> dict:
        """Every parameter's default: the paper's settings."""
        return {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(cls)}

    @classmethod
    def help(cls) -> dict:
        """What each parameter means, by name."""
        return {f.name: f.metadata["help"] for f in fields(cls)}

    @classmethod
    def from_mapping(cls, values: dict) -> "Profile":
        """Validate `values` (none unknown; a parameter not given takes its default) into a Profile."""
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ProfileError(f"unknown profile parameter(s) {unknown}; allowed: {', '.join(cls.keys())}")
        p = cls(**{**cls.defaults(), **values})
        p.validate()
        return p

    @classmethod
    def from_namespace(cls, ns: dict) -> "Profile":
        """The Profile of a notebook's globals: `profile` (a name or a .yaml path; with `base`, the profile's
        name and `base` the file it builds on), then any profile key papermill injected (`-p epochs 3`,
        `-f my.yaml`), then the `overrides` mapping. A whole profile supplied (the grid) is taken as it is."""
        given = {k: ns[k] for k in cls.keys() if k in ns}
        overrides = ns.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise ProfileError(f"overrides must be a mapping of profile parameter: value, got {overrides!r}")
        supplied = {**given, **overrides}
        if set(supplied) >= set(cls.keys()):  # a whole profile supplied (the grid does this): nothing to read
            return cls.from_mapping(supplied)
        return cls.from_mapping({**profile_values(ns.get("base") or given.get("profile", "smoke")), **supplied})

    def validate(self) -> None:
        """Check every parameter; raise one ProfileError naming the parameter and what is allowed."""
        from .data.registry import SOURCES
        from .generic import GENERIC_NAMES

        def need(cond, key, msg):
            if not cond:
                raise ProfileError(f"profile {self.profile!r}: parameter {key!r} {msg}")

        for f in fields(self):  # each parameter's own check (see `param`)
            value = getattr(self, f.name)
            need(f.metadata["check"] is None or f.metadata["check"](value), f.name, f"{f.metadata['must']}, got {value!r}")

        both = sorted(n for n, s in SOURCES.items() if set(ORGANS) <= set(s.organs))
        need(self.data_source in both, "data_source", f"must be one of {both} (a source of both organs), got "
             f"{self.data_source!r}" + ("; the brain and lung readers give one organ each: prepare both with "
                                        "`lesionlib data prepare` and use data_source: prepared"
                                        if self.data_source in SOURCES else ""))
        need(isinstance(self.target_sizes, dict) and self.target_sizes, "target_sizes",
             f"must map size names {SIZE_NAMES} to integers")
        for name, sizes in [("target_sizes", self.target_sizes)] + [
                (f"source_sizes.{o}", self.source_sizes.get(o)) for o in ORGANS]:
            need(isinstance(sizes, dict) and sizes, name, f"must map size names {SIZE_NAMES} to integers")
            need(set(sizes) <= set(SIZE_NAMES), name, f"has unknown size names {sorted(set(sizes) - set(SIZE_NAMES))}; "
                 f"allowed: {SIZE_NAMES}")
            need("High" in sizes, name, "must include 'High' (the fixed size of Fig 1 and Fig 2)")
            vals = [sizes[k] for k in SIZE_NAMES if k in sizes]
            need(all(isinstance(v, int) and v > 0 for v in vals), name, f"must hold positive integers, got {vals}")
            need(vals == sorted(vals, reverse=True), name, f"must decrease from High to VLow, got {vals}")
        need(self.arch == "densenet201" or self.generic == "natural-crops", "arch",
             f"{self.arch!r} has no ImageNet weights or weight files (G is DenseNet-201's): use generic: natural-crops")
        need(self.generic in GENERIC_NAMES or Path(str(self.generic)).suffix in (".pt", ".pth"), "generic",
             f"must be one of {GENERIC_NAMES} or the path of a .pt/.pth DenseNet-201 state dict, got {self.generic!r}")
        if self.generic == "natural-crops":
            need(isinstance(self.generic_size, int) and self.generic_size >= 30, "generic_size",
                 "must be an integer >= 30 for natural-crops")
            need(isinstance(self.generic_epochs, int) and self.generic_epochs >= 1, "generic_epochs",
                 "must be an integer >= 1 for natural-crops")
        from .data.lung_nodules import CANDIDATE_RULES

        need(self.lung_rule in CANDIDATE_RULES, "lung_rule", f"must be one of {list(CANDIDATE_RULES)}, got {self.lung_rule!r}")
        for key in ("brain_dir", "lidc_dir", "data_dir" if self.data_source != "phantom" else None):
            value = getattr(self, key) if key else None
            need(value is None or Path(value).expanduser().is_dir(), key,
                 f"names a directory that does not exist: {value!r}")
        if self.data_source == "phantom":
            for o in ORGANS:
                pool = self.phantom_pool.get(o) if isinstance(self.phantom_pool, dict) else None
                need(isinstance(pool, int) and pool > 0, "phantom_pool", f"must give a positive integer pool size "
                     f"for {o}")
            need(0 <= self.phantom_overlap <= 2, "phantom_overlap", "must lie in [0, 2]")
            need(isinstance(self.phantom_shared, (int, float)) and 0 <= self.phantom_shared <= 1, "phantom_shared",
                 f"must lie in [0, 1] (the share of the malignancy signal both organs' cues carry), got "
                 f"{self.phantom_shared!r}")
            for o in ORGANS:
                k = self.phantom_slices_per_patient.get(o) if isinstance(self.phantom_slices_per_patient, dict) else None
                need(isinstance(k, int) and k >= 1, "phantom_slices_per_patient",
                     f"must give a positive integer number of slices per synthetic patient for {o}, got {k!r}")
            need(isinstance(self.control_shared, list) and self.control_shared and
                 all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in self.control_shared), "control_shared",
                 f"must be a non-empty list of values in [0, 1] (phantom_shared of each control condition), got "
                 f"{self.control_shared!r}")
        else:
            need(self.data_dir is not None, "data_dir", f"is required for data_source {self.data_source!r}")
            if self.data_source == "prepared":
                for o in ORGANS:
                    need((Path(self.data_dir).expanduser() / o / "index.csv").is_file(), "data_dir",
                         f"must hold {o}/index.csv (a prepared {o} set): run `lesionlib data prepare {o} "
                         f"--out {self.data_dir} ...` first")

    # --- derived views --------------------------------------------------------------------

    def train_config(self) -> TrainConfig:
        """The settings of Learn and Transfer for lesion models."""
        return TrainConfig(arch=self.arch, epochs=self.epochs, patience=self.patience, min_steps=self.min_steps,
                           lr=self.lr, batch_size=self.batch_size, valid_frac=self.valid_frac,
                           transfer_head=self.transfer_head, max_rotate=self.max_rotate, max_shift=self.max_shift,
                           flip=self.flip, device=self.device)

    def source_size(self, organ: str, name: str = "High") -> int:
        return int(self.source_sizes[organ][name])

    def cache_root(self) -> Path:
        """This profile's run cache (see `cache_root`)."""
        return cache_root(self.cache_dir)

    def scheduler_address(self) -> str | None:
        """The Dask scheduler the runs go to (see `scheduler_address`)."""
        return scheduler_address(self.scheduler)


SCHEDULER_ENV = "LESIONLIB_SCHEDULER"  # a Dask scheduler's address, for every kernel and worker of a grid
LOCAL_CLUSTER_ENV = "LESIONLIB_LOCAL_CLUSTER"  # set with it when the scheduler is the grid's own local cluster


def scheduler_address(named: str | None) -> str | None:
    """The Dask scheduler the runs go to: $LESIONLIB_SCHEDULER, else the profile's `named` one, else None."""
    return os.environ.get(SCHEDULER_ENV) or named or None


def cache_root(explicit: str | None = None) -> Path:
    """The run cache: `explicit` (a profile's `cache_dir`, `--cache`), else $LESIONLIB_CACHE, else the project's
    `.cache/lesionlib`."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("LESIONLIB_CACHE"):
        return Path(os.environ["LESIONLIB_CACHE"]).expanduser()
    try:
        return project_root() / ".cache" / "lesionlib"
    except ProfileError:  # lesionlib installed, used outside a checkout
        return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "lesionlib"


def project_root(start=None) -> Path:
    """The checkout holding `pyproject.toml` and `params/` (searched upwards from `start` or the cwd)."""
    here = Path(start or Path.cwd()).resolve()
    for p in [here, *here.parents]:
        if (p / "pyproject.toml").is_file() and (p / "params").is_dir():
            return p
    pkg = Path(__file__).resolve().parent.parent
    if (pkg / "params").is_dir():
        return pkg
    raise ProfileError(f"cannot find the lesionlib project (pyproject.toml and params/) above {here}")


PROFILES = Path(__file__).resolve().parent / "profiles"  # package data: smoke, quick, paper and their variants
# (the checkout's params/ is this folder)


def profile_path(name_or_path: str) -> Path:
    """The profile `name` shipped with lesionlib (`lesionlib/profiles/<name>.yaml`, the checkout's params/), or
    a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p
    path = PROFILES / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(q.stem for q in PROFILES.glob("*.yaml"))
        raise ProfileError(f"unknown profile {name_or_path!r}; allowed: {', '.join(known)} or a path to a .yaml file")
    return path


def profile_values(name_or_path: str, _seen: tuple = ()) -> dict:
    """Every parameter of a profile file: the defaults (the paper's settings), under its `base` profile's
    values, under its own."""
    path = profile_path(name_or_path)
    if not path.is_file():
        raise ProfileError(f"profile file {path} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ProfileError(f"{path} must hold a mapping of parameter: value")
    base = values.pop("base", None)
    if base is None:
        return {**Profile.defaults(), **values}
    if str(base) in _seen:
        raise ProfileError(f"{path}: base profiles form a loop: {' -> '.join(_seen + (str(base),))}")
    return {**profile_values(str(base), _seen + (str(name_or_path),)), **values}


def load_profile(name_or_path: str) -> Profile:
    """Read and validate a profile."""
    return Profile.from_mapping(profile_values(name_or_path))


def load_params(name_or_path: str) -> dict:
    """Every parameter of a profile, its base's included (what papermill injects), after validation."""
    load_profile(name_or_path)
    return profile_values(name_or_path)


def show_profile(name_or_path: str) -> str:
    """A profile resolved, as a complete YAML profile file: every parameter, what it means, and whether the
    profile sets it or takes the default (`lesionlib profile show NAME`)."""
    values, defaults, help_ = load_params(name_or_path), Profile.defaults(), Profile.help()
    lines = [f"# profile {values['profile']} ({profile_path(name_or_path)}), resolved: every parameter, "
             "'*' where it differs from the default (the paper's setting)"]
    for key, value in values.items():
        text = yaml.safe_dump({key: value}, default_flow_style=True, sort_keys=False, width=10_000).strip()[1:-1]
        mark = "*" if value != defaults[key] else " "
        lines.append(f"{text:<44} #{mark} {help_[key]}")
    return "\n".join(lines)
