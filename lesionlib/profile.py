"""Profiles: every size and setting of a run of the book lives in `params/<name>.yaml`.

A profile file may name a `base` profile and give only what differs (``base: quick`` and
``epochs: 3``). Each notebook's `parameters` cell holds the profile's name and optional `overrides`, so
``papermill book/fig1.ipynb out.ipynb -p profile quick -p direction lung_to_brain`` runs a page on a
profile; ``-f my.yaml`` and ``-p epochs 3`` work too (see `Profile.from_namespace`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from .config import ARCH_NAMES, TrainConfig

ORGANS = ("brain", "lung")
DIRECTIONS = {"brain_to_lung": ("brain", "lung"), "lung_to_brain": ("lung", "brain")}
SIZE_NAMES = ("High", "Medium", "Low", "VLow")


class ProfileError(ValueError):
    """A profile parameter that is missing, unknown or out of range."""


@dataclass(frozen=True)
class Profile:
    """One validated profile (see params/*.yaml for the meaning of each key)."""

    profile: str
    data_source: str
    data_dir: str | None
    image_size: int
    crop_margin: float
    test_size: int
    test_seed: int
    target_sizes: dict
    source_sizes: dict
    seeds: list
    cv_folds: int
    bootstrap: int
    arch: str
    epochs: int
    patience: int
    min_steps: int
    lr: float
    batch_size: int
    valid_frac: float
    transfer_head: bool
    max_rotate: float
    max_shift: float
    flip: bool
    generic: str
    generic_size: int
    generic_epochs: int
    phantom_pool: dict
    phantom_overlap: float
    phantom_malignant_fraction: dict
    phantom_slice_size: int
    phantom_shared: float
    phantom_slices_per_patient: dict
    control_seeds: list
    control_shared: list
    brain_dir: str | None
    lidc_dir: str | None
    lung_rule: str
    lidc_table_patients: int | None
    cache_dir: str | None
    device: str
    threads: int | None
    workers: int
    scheduler: str | None

    @classmethod
    def keys(cls) -> tuple:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, values: dict) -> "Profile":
        """Validate `values` (all keys required, none unknown) into a Profile."""
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ProfileError(f"unknown profile parameter(s) {unknown}; allowed: {', '.join(cls.keys())}")
        missing = [k for k in cls.keys() if k not in values]
        if missing:
            raise ProfileError(f"profile is missing parameter(s) {missing}")
        p = cls(**{k: values[k] for k in cls.keys()})
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

        both = sorted(n for n, s in SOURCES.items() if set(ORGANS) <= set(s.organs))
        need(self.data_source in both, "data_source", f"must be one of {both} (a source of both organs), got "
             f"{self.data_source!r}" + ("; the brain and lung readers give one organ each: prepare both with "
                                        "`lesionlib data prepare` and use data_source: prepared"
                                        if self.data_source in SOURCES else ""))
        need(isinstance(self.image_size, int) and 16 <= self.image_size <= 1024, "image_size",
             f"must be an integer in [16, 1024], got {self.image_size!r}")
        need(0 <= self.crop_margin <= 2, "crop_margin", f"must lie in [0, 2], got {self.crop_margin!r}")
        need(isinstance(self.test_size, int) and self.test_size > 0, "test_size", "must be a positive integer")
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
        need(isinstance(self.seeds, list) and self.seeds and all(isinstance(s, int) for s in self.seeds), "seeds",
             f"must be a non-empty list of integers, got {self.seeds!r}")
        need(isinstance(self.control_seeds, list) and self.control_seeds and
             all(isinstance(s, int) for s in self.control_seeds), "control_seeds",
             f"must be a non-empty list of integers (the Controls page's seeds), got {self.control_seeds!r}")
        need(isinstance(self.cv_folds, int) and self.cv_folds >= 2, "cv_folds",
             f"must be an integer >= 2 (folds of Fig 3's cross-validation), got {self.cv_folds!r}")
        need(isinstance(self.bootstrap, int) and self.bootstrap >= 0, "bootstrap",
             f"must be an integer >= 0 (test-set resamples for single-run intervals; 0: none), got {self.bootstrap!r}")
        need(isinstance(self.workers, int) and self.workers >= 0, "workers",
             f"must be an integer >= 0 (Dask worker processes; 0: train in the notebook's process), got {self.workers!r}")
        need(self.scheduler is None or (isinstance(self.scheduler, str) and "://" in self.scheduler), "scheduler",
             f"must be null or a Dask scheduler address like 'tcp://host:8786', got {self.scheduler!r}")
        need(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", "must be an integer >= 1")
        need(isinstance(self.patience, int) and self.patience >= 1, "patience", "must be an integer >= 1")
        need(isinstance(self.min_steps, int) and not isinstance(self.min_steps, bool) and self.min_steps >= 0,
             "min_steps", f"must be an integer >= 0 (gradient steps every lesion fit takes at least; 0: no minimum), "
             f"got {self.min_steps!r}")
        need(0 < self.lr < 1, "lr", f"must lie in (0, 1), got {self.lr!r}")
        need(isinstance(self.batch_size, int) and self.batch_size >= 2, "batch_size", "must be an integer >= 2")
        need(0 < self.valid_frac < 1, "valid_frac", f"must lie in (0, 1), got {self.valid_frac!r}")
        need(self.arch in ARCH_NAMES, "arch", f"must be one of {ARCH_NAMES}, got {self.arch!r}")
        need(self.arch == "densenet201" or self.generic == "natural-crops", "arch",
             f"{self.arch!r} has no ImageNet weights or weight files (G is DenseNet-201's): use generic: natural-crops")
        need(self.generic in GENERIC_NAMES or Path(str(self.generic)).suffix in (".pt", ".pth"), "generic",
             f"must be one of {GENERIC_NAMES} or the path of a .pt/.pth DenseNet-201 state dict, got {self.generic!r}")
        if self.generic == "natural-crops":
            need(isinstance(self.generic_size, int) and self.generic_size >= 30, "generic_size",
                 "must be an integer >= 30 for natural-crops")
            need(isinstance(self.generic_epochs, int) and self.generic_epochs >= 1, "generic_epochs",
                 "must be an integer >= 1 for natural-crops")
        need(self.threads is None or (isinstance(self.threads, int) and self.threads >= 1), "threads",
             f"must be null or an integer >= 1 (torch threads of each CPU training run), got {self.threads!r}")
        need(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"), "device",
             f"must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got {self.device!r}")
        from .data.lung_nodules import CANDIDATE_RULES

        need(self.lung_rule in CANDIDATE_RULES, "lung_rule", f"must be one of {list(CANDIDATE_RULES)}, got {self.lung_rule!r}")
        need(self.lidc_table_patients is None or (isinstance(self.lidc_table_patients, int) and
                                                  self.lidc_table_patients > 0), "lidc_table_patients",
             "must be null (every LIDC patient) or a positive integer")
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
    return project_root() / ".cache" / "lesionlib"


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


def profile_path(name_or_path: str) -> Path:
    """`params/<name>.yaml` of the project, or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p
    path = project_root() / "params" / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(q.stem for q in path.parent.glob("*.yaml"))
        raise ProfileError(f"unknown profile {name_or_path!r}; allowed: {', '.join(known)} or a path to a .yaml file")
    return path


# Parameters added after the first profiles, with the value a profile file written before them meant.
ADDED_LATER = {"arch": "densenet201", "min_steps": 0}


def profile_values(name_or_path: str, _seen: tuple = ()) -> dict:
    """The parameter mapping of a profile file, with its `base` profile's values under its own."""
    path = profile_path(name_or_path)
    if not path.is_file():
        raise ProfileError(f"profile file {path} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ProfileError(f"{path} must hold a mapping of parameter: value")
    base = values.pop("base", None)
    if base is None:
        return {**ADDED_LATER, **values}
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
