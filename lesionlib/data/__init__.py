"""Lesion data: one in-memory format (`LesionSet`) for every source, and a registry of sources."""
from __future__ import annotations

from .lesions import LesionSet
from .registry import SOURCES, build_lesions, register_source
from .splits import draw_test, nested_sample, patient_folds, patient_split
from .store import PreparedSetError, load_lesions, save_lesions

# The real-data readers register themselves into the registry (a leaf they import) when imported.
from . import brain, lung  # noqa: E402,F401

__all__ = ["LesionSet", "SOURCES", "build_lesions", "register_source", "draw_test", "nested_sample", "patient_folds",
           "patient_split", "load_lesions", "save_lesions", "PreparedSetError"]
