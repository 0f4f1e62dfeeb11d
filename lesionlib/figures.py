"""The paper's figures (and our Controls page) as registered sets of run specifications, and the whole grid.

A `Figure` names its runs' specifications (a function of the profile and direction), what each part of a run's
key means, which arms it shows, what it varies (for the Method page) and the findings its page states. Adding
a figure is one `@register_figure` function here (and its page in `lesionlib.pages.GRID`). `grid_specs`,
`book_runs` and `check_samples` work on every registered figure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .arms import arm_names, arm_spec, label
from .data.splits import SplitError, sample_indices
from .experiment import control_conditions, control_profile, data_index, data_spec, describe, unique_runs
from .profile import DIRECTIONS, Profile, ProfileError, size_order


@dataclass(frozen=True)
class Figure:
    """One figure: its run specifications, the meaning of its keys, its arms, what it varies, its findings."""

    name: str
    title: str
    keys: tuple  # what each part of a run's key means, e.g. ("size", "arm", "seed")
    arms: tuple  # the arms it shows
    varies: Callable  # P -> what the figure varies, in a few words
    claims: tuple  # the findings its page states, e.g. ("(a)", "(b)")
    specs: Callable  # (P, direction) -> {key: spec}

    def arm_labels(self) -> str:
        """'Base, LesAgn, LesAug, LesOnly'."""
        return ", ".join(label(a) for a in self.arms)


FIGURES: dict[str, Figure] = {}


def register_figure(name: str, title: str, keys: tuple, arms, varies: Callable, claims: tuple = ()):
    """Register the decorated spec function as figure `name`; `arms` is an arm group ('figures', 'controls')
    or a tuple of arm names."""
    def wrap(specs):
        if name in FIGURES:
            raise ValueError(f"figure {name!r} is registered twice")
        FIGURES[name] = Figure(name, title, tuple(keys), arm_names(arms) if isinstance(arms, str) else tuple(arms),
                               varies, tuple(claims), specs)
        return specs
    return wrap


def claim_page(letter: str) -> str:
    """The page that states finding `letter`: the figure that claims it, else the Conclusions page."""
    return next((f.name for f in FIGURES.values() if letter in f.claims), "conclusions")


def _control_varies(P: Profile) -> str:
    return f"seeds {P.control_seeds}" + (f", phantom_shared {P.control_shared}" if P.data_source == "phantom" else "")


# --- the figures of Section 5 and the Controls page: {key: spec}, the key's first element names the row ----

@register_figure("fig1", "Fig 1", ("size", "arm", "seed"), "figures", lambda P: "|d_t|; |d_s| = High",
                 claims=("(a)", "(b)"))
def fig1_specs(P: Profile, direction: str) -> dict:
    """Fig 1: fixed source size (High), every target size -> {(target size, arm, seed): spec}."""
    source, target = DIRECTIONS[direction]
    n_s = P.source_size(source, "High")
    return {(name, arm, seed): arm_spec(P, arm, direction, P.target_sizes[name], n_s, seed)
            for name in size_order(P.target_sizes) for arm in arm_names("figures") for seed in P.seeds}


@register_figure("fig2", "Fig 2", ("source size", "arm", "seed"), "figures", lambda P: "|d_s|; |d_t| = High",
                 claims=("(c)", "(g)"))
def fig2_specs(P: Profile, direction: str) -> dict:
    """Fig 2: fixed target size (High), every source size -> {(source size, arm, seed): spec}.

    Base and LesAgn do not depend on the source, so every row holds the same two runs (trained once).
    """
    source, _ = DIRECTIONS[direction]
    n_t = P.target_sizes["High"]
    return {(name, arm, seed): arm_spec(P, arm, direction, n_t, P.source_size(source, name), seed)
            for name in size_order(P.source_sizes[source]) for arm in arm_names("figures") for seed in P.seeds}


@register_figure("fig3", "Fig 3", ("fold", "arm", "seed"), "figures", lambda P: f"{P.cv_folds} folds at High/High",
                 claims=("(d)",))
def fig3_specs(P: Profile, direction: str) -> dict:
    """Fig 3: `cv_folds`-fold cross-validation at |d_s| = |d_t| = High -> {(fold, arm, seed): spec}."""
    source, _ = DIRECTIONS[direction]
    n_t, n_s = P.target_sizes["High"], P.source_size(source, "High")
    return {(k, arm, seed): arm_spec(P, arm, direction, n_t, n_s, seed, fold=k)
            for k in range(P.cv_folds) for arm in arm_names("figures") for seed in P.seeds}


@register_figure("fig4", "Fig 4", ("size", "source size", "seed"), ("lesaug",), lambda P: "|d_t| × |d_s|")
def fig4_specs(P: Profile, direction: str) -> dict:
    """Fig 4: the full LesAug grid -> {(target size, source size, seed): spec}."""
    source, _ = DIRECTIONS[direction]
    return {(t, s, seed): arm_spec(P, "lesaug", direction, P.target_sizes[t], P.source_size(source, s), seed)
            for t in size_order(P.target_sizes) for s in size_order(P.source_sizes[source])
            for seed in P.seeds}


@register_figure("fig5", "Fig 5", ("arm", "seed"), "figures", lambda P: "loss per epoch at the smallest |d_t|",
                 claims=("(e)",))
def fig5_specs(P: Profile, direction: str) -> dict:
    """Fig 5: the arms at the smallest target size (VLow), whose loss curves are compared -> {(arm, seed): spec}."""
    smallest = size_order(P.target_sizes)[-1]
    return {(arm, seed): spec for (size, arm, seed), spec in fig1_specs(P, direction).items() if size == smallest}


@register_figure("controls", "Controls", ("shared", "arm", "seed"), "controls", _control_varies, claims=("(h)",))
def controls_specs(P: Profile, direction: str) -> dict:
    """Controls: every control arm at Fig 5's target size (the smallest) and High source size, over
    `control_seeds` and, on phantom data, each `control_shared` -> {(shared, arm, seed): spec}."""
    source, _ = DIRECTIONS[direction]
    smallest = size_order(P.target_sizes)[-1]
    out = {}
    for shared in control_conditions(P):
        Q = control_profile(P, shared)
        n_t, n_s = Q.target_sizes[smallest], Q.source_size(source, "High")
        out.update({(shared, arm, seed): arm_spec(Q, arm, direction, n_t, n_s, seed)
                    for arm in arm_names("controls") for seed in P.control_seeds})
    return out


# --- the whole grid ------------------------------------------------------------------------------

def grid_specs(P: Profile, directions=tuple(DIRECTIONS), figures=None) -> dict:
    """Every figure's specs -> {(figure, direction): {key: spec}}."""
    return {(f, d): FIGURES[f].specs(P, d) for d in directions for f in (figures or FIGURES)}


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


def sample_plan(P: Profile, directions=tuple(DIRECTIONS), figures=None) -> list[dict]:
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


def runs_per_figure(P: Profile, directions=tuple(DIRECTIONS)) -> list[dict]:
    """One row per (figure, direction), in grid order: its arms, what it varies, its cells, its distinct runs
    (parents included) and how many of them no earlier figure needs (the runs it adds to the grid)."""
    from .cache import spec_key

    rows, seen = [], set()
    for (name, d), specs in grid_specs(P, directions).items():
        fig, runs = FIGURES[name], unique_runs(specs.values())
        new = [spec_key(s) for s in runs if spec_key(s) not in seen]
        seen.update(new)
        rows.append({"figure": name, "direction": d.replace("_to_", " → "), "arms": fig.arm_labels(),
                     "varies": fig.varies(P), "cells": len(specs), "runs incl. parents": len(runs),
                     "new runs": len(new)})
    return rows
