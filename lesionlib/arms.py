"""The arms of Section 3.1 and our controls: one registry entry per arm (timm's `register_model` pattern).

An `Arm` is everything a page needs to know about one way of starting the target model: its label and
notation, how its specification is built, whether the paper reports it, where it appears (the figures, the
Controls page) and how the plots draw it. Adding an arm is one `@register_arm` function here.

Each arm fills the target model's `init` its own way:

* ``base``    -- Learn(d_t): random weights
* ``lesagn``  -- Transfer(d_t | Learn(d_g)): G
* ``lesaug``  -- Transfer(d_t | Transfer(d_s | Learn(d_g))): the source model, itself started from G
* ``lesonly`` -- Transfer(d_t | Learn(d_s)): a source model from random weights (ours: lesion knowledge without G)

and three controls of ours (the Controls page), which LesAug must beat for a win to mean lesion knowledge:

* ``lesshuf`` -- LesAug whose source model learnt the source organ with its labels permuted among its
  training patients (early stopping still watches true labels): the same images and gradient steps, no
  label knowledge (separates lesion knowledge from a warm start)
* ``lesstat`` -- random weights with each parameter tensor's mean and variance of LesAug's source model
  (Raghu et al. 2019, "Transfusion": separates feature reuse from better-scaled initial weights)
* ``agnstat`` -- the same with G's statistics
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .experiment import (generic_spec, model_spec, shuffled_source_model, source_model, source_only_model,
                         weight_stats)
from .profile import DIRECTIONS, Profile


@dataclass(frozen=True)
class Arm:
    """One arm: names, notation, where it appears, its plot style, and how its specification is built."""

    name: str
    label: str
    formula: str  # in the paper's notation
    in_paper: bool  # the paper reports it (Base, LesAgn, LesAug)
    in_figures: bool  # an arm of Fig 1-3 and 5
    in_controls: bool  # an arm of the Controls page
    colour: str  # Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies
    marker: str
    hatch: str
    build: Callable  # (P, source, target, n_t, n_s, seed, fold) -> the target model's specification


ARMS: dict[str, Arm] = {}


def register_arm(name: str, label: str, formula: str, colour: str, marker: str, hatch: str, *,
                 paper: bool = False, figures: bool = False, controls: bool = False):
    """Register the decorated spec builder as arm `name` (names are unique; registration order is display order)."""
    def wrap(build):
        if name in ARMS:
            raise ValueError(f"arm {name!r} is registered twice")
        ARMS[name] = Arm(name, label, formula, paper, figures, controls, colour, marker, hatch, build)
        return build
    return wrap


def arm_names(where: str = "all") -> tuple:
    """The registered arms of `where`: 'all', 'figures', 'paper' or 'controls', in registration order."""
    pick = {"all": lambda a: True, "figures": lambda a: a.in_figures, "paper": lambda a: a.in_paper,
            "controls": lambda a: a.in_controls}
    if where not in pick:
        raise ValueError(f"unknown arm group {where!r}; allowed: {', '.join(pick)}")
    return tuple(a.name for a in ARMS.values() if pick[where](a))


def label(name: str) -> str:
    """An arm's display label ('lesaug' -> 'LesAug'); other names unchanged."""
    return ARMS[name].label if name in ARMS else name


def labels() -> dict:
    """{name: label} of every arm (for `DataFrame.rename`)."""
    return {a.name: a.label for a in ARMS.values()}


def arm_of_label(text: str) -> str:
    """The arm whose label is `text` ('LesShuf' -> 'lesshuf')."""
    return next(a.name for a in ARMS.values() if a.label == text)


def arm_spec(P: Profile, arm: str, direction: str, n_t: int, n_s: int, seed: int, fold: int | None = None) -> dict:
    """The specification of one arm for one direction, target size, source size and seed."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; allowed: {', '.join(DIRECTIONS)}")
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; allowed: {', '.join(ARMS)}")
    source, target = DIRECTIONS[direction]
    return ARMS[arm].build(P, source, target, n_t, n_s, seed, fold)


# --- the arms: the paper's three, LesOnly (ours), and the Controls page's three controls -----------

@register_arm("base", "Base", "Learn(d_t)", "#999999", "o", "", paper=True, figures=True, controls=True)
def base(P: Profile, source, target, n_t, n_s, seed, fold=None) -> dict:
    """Base = Learn(d_t): random weights."""
    return model_spec(P, "target", target, n_t, seed, None, fold)


@register_arm("lesagn", "LesAgn", "Transfer(d_t | Learn(d_g))", "#0072B2", "s", "//", paper=True, figures=True,
              controls=True)
def lesagn(P: Profile, source, target, n_t, n_s, seed, fold=None) -> dict:
    """LesAgn = Transfer(d_t | Learn(d_g)): the generic weights G."""
    return model_spec(P, "target", target, n_t, seed, generic_spec(P), fold)


@register_arm("lesaug", "LesAug", "Transfer(d_t | Transfer(d_s | Learn(d_g)))", "#D55E00", "^", "", paper=True,
              figures=True, controls=True)
def lesaug(P: Profile, source, target, n_t, n_s, seed, fold=None) -> dict:
    """LesAug = Transfer(d_t | Transfer(d_s | Learn(d_g))): G, then the source organ's lesions."""
    return model_spec(P, "target", target, n_t, seed, source_model(P, source, n_s, seed), fold)


@register_arm("lesonly", "LesOnly", "Transfer(d_t | Learn(d_s))", "#CC79A7", "D", "..", figures=True)
def lesonly(P: Profile, source, target, n_t, n_s, seed, fold=None) -> dict:
    """LesOnly = Transfer(d_t | Learn(d_s)): lesion knowledge without generic weights (not in the paper)."""
    return model_spec(P, "target", target, n_t, seed, source_only_model(P, source, n_s, seed), fold)


@register_arm("lesshuf", "LesShuf", "Transfer(d_t | Transfer(d_s' | Learn(d_g))), d_s' with permuted labels",
              "#E69F00", "v", "xx", controls=True)
def lesshuf(P: Profile, source, target, n_t, n_s, seed, fold=None) -> dict:
    """LesShuf = Transfer(d_t | Transfer(d_s' | G)), d_s' with permuted labels (control)."""
    return model_spec(P, "target", target, n_t, seed, shuffled_source_model(P, source, n_s, seed), fold)


@register_arm("lesstat", "LesStat", "Learn(d_t) from random weights scaled like LesAug's source model",
              "#009E73", "P", "\\\\", controls=True)
def lesstat(P: Profile, source, target, n_t, n_s, seed, fold=None) -> dict:
    """LesStat = Learn(d_t) from random weights scaled like LesAug's source model (control)."""
    return model_spec(P, "target", target, n_t, seed, weight_stats(source_model(P, source, n_s, seed), seed), fold)


@register_arm("agnstat", "AgnStat", "Learn(d_t) from random weights scaled like G", "#56B4E9", "X", "--",
              controls=True)
def agnstat(P: Profile, source, target, n_t, n_s, seed, fold=None) -> dict:
    """AgnStat = Learn(d_t) from random weights scaled like G (control)."""
    return model_spec(P, "target", target, n_t, seed, weight_stats(generic_spec(P), seed), fold)
