"""`LesionSet`: prepared lesion crops with their labels, patients and ids."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LesionSet:
    """Prepared lesions of one organ: crops in [0, 1], masks, labels (1 = malignant), patients, ids."""

    images: np.ndarray  # (N, H, W) float32
    masks: np.ndarray  # (N, H, W) bool
    labels: np.ndarray  # (N,) int64
    patients: np.ndarray  # (N,) str
    ids: np.ndarray  # (N,) str
    organ: str
    source: str
    meta: dict = field(default_factory=dict)
    origins: np.ndarray | None = None  # (N,) str: where each lesion came from (file, scan, slice)

    def __post_init__(self):
        n = len(self.images)
        if self.origins is None:
            self.origins = np.asarray(self.ids).astype(str)
        for name in ("masks", "labels", "patients", "ids", "origins"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"LesionSet: {name} has {len(getattr(self, name))} entries but images has {n}")
        if self.images.ndim != 3:
            raise ValueError(f"LesionSet: images must be (N, H, W), got shape {self.images.shape}")
        if np.shape(self.masks) != self.images.shape:
            raise ValueError(f"LesionSet: masks have shape {np.shape(self.masks)} but images {self.images.shape}")
        # NaN pixels would train to NaN losses and silently useless models: refuse them here, at the source.
        bad = np.flatnonzero(~np.isfinite(self.images).reshape(n, -1).all(axis=1)) if n else []
        if len(bad):
            raise ValueError(f"LesionSet: {len(bad)} of {n} images hold NaN or infinite values (e.g. lesion "
                             f"{self.ids[bad[0]]}); fix or drop those lesions")
        if n and (self.labels.min() < 0):
            raise ValueError("LesionSet: labels must be non-negative class indices (lesions: 0 benign, 1 malignant)")

    def __len__(self):
        return len(self.images)

    def subset(self, idx) -> "LesionSet":
        """The lesions at positions `idx`, same organ and source."""
        idx = np.asarray(idx, dtype=int)
        return LesionSet(self.images[idx], self.masks[idx], self.labels[idx], self.patients[idx], self.ids[idx],
                         self.organ, self.source, dict(self.meta), self.origins[idx])

    def with_labels(self, labels) -> "LesionSet":
        """The same lesions with other labels (for a control that permutes them)."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != self.labels.shape:
            raise ValueError(f"LesionSet.with_labels: {labels.shape[0]} labels for {len(self)} lesions")
        return LesionSet(self.images, self.masks, labels, self.patients, self.ids, self.organ, self.source,
                         dict(self.meta), self.origins)

    @property
    def n_classes(self) -> int:
        """Number of classes (2 for lesions; more for a generic pretraining set)."""
        return max(2, int(self.labels.max()) + 1) if len(self) else 2

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def counts(self) -> dict:
        """Number of lesions, patients and lesions per class."""
        return {"lesions": len(self), "patients": int(len(np.unique(self.patients))),
                "benign": int((self.labels == 0).sum()), "malignant": int((self.labels == 1).sum())}


@dataclass
class LesionIndex:
    """Labels and patients of a lesion set without its images: all that drawing splits needs."""

    labels: np.ndarray  # (N,) int64
    patients: np.ndarray  # (N,) str
    organ: str

    def __len__(self):
        return len(self.labels)

    @classmethod
    def of(cls, ds: LesionSet) -> "LesionIndex":
        return cls(np.asarray(ds.labels), np.asarray(ds.patients), ds.organ)
