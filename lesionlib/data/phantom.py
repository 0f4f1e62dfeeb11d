"""Offline phantom lesions: brain (T1 contrast-enhanced MRI-like) and lung (CT-like, in HU).

The generator stands in for the real data sets on machines that cannot download them. It draws
2-D slices with one lesion, its mask and a benign (0) / malignant (1) label. The malignant cues the
paper names are shared by both organs, so knowledge about them can transfer:

* margin: benign lesions are smooth and sharp; malignant ones are irregular or spiculated;
* periphery: malignant lesions carry a thicker bright rim;
* interior: malignant lesions are inhomogeneous, benign ones homogeneous.

Each cue's strength is drawn per lesion from a class-dependent normal distribution whose spread is
set by ``overlap``: at 0 the classes are separated by every cue, at 1 the two distributions of each
cue are as wide as the gap between their means, so single lesions are often ambiguous.
Backgrounds, intensity scales and nuisance factors (size, position, contrast, noise) are organ
specific and carry no label information.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

ORGANS = ("brain", "lung")


@dataclass(frozen=True)
class PhantomSlice:
    """One generated slice: image (float32, organ units), boolean lesion mask, label, cue strengths."""

    image: np.ndarray
    mask: np.ndarray
    label: int
    cues: dict


def _smooth_noise(rng, shape, sigma):
    """Zero-mean, unit-std Gaussian-smoothed noise (tissue texture)."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return (n - n.mean()) / (n.std() + 1e-8)


def _cue_strengths(rng, label, overlap):
    """Per-lesion strengths in [0, 1] of the three malignant cues: margin, rim, heterogeneity."""
    # Class means sit at 0.25 (benign) and 0.75 (malignant); the spread grows with `overlap`.
    mean = 0.75 if label else 0.25
    sd = 0.5 * overlap
    return {k: float(np.clip(rng.normal(mean, sd), 0.0, 1.0)) for k in ("margin", "rim", "heterogeneity")}


def _lesion_mask(rng, shape, centre, radius, irregularity):
    """A star-shaped lesion whose radius varies with angle; `irregularity` adds lobes and spicules."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = yy - centre[0], xx - centre[1]
    theta = np.arctan2(dy, dx)
    dist = np.hypot(dy, dx)
    r = np.ones_like(theta)
    # Low-frequency lobulation is present in every lesion (nuisance), amplified by irregularity.
    for k in (2, 3):
        r += (0.04 + 0.10 * irregularity) * rng.uniform(0.3, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    # Spicules: narrow angular spikes whose number and length grow with irregularity.
    n_spikes = int(round(irregularity * rng.uniform(4, 14)))
    for _ in range(n_spikes):
        phi = rng.uniform(-np.pi, np.pi)
        width = rng.uniform(0.05, 0.15)
        length = irregularity * rng.uniform(0.25, 0.7)
        d = np.angle(np.exp(1j * (theta - phi)))
        r += length * np.exp(-0.5 * (d / width) ** 2)
    return dist <= radius * r


def _paint_lesion(rng, image, mask, base, contrast, cues, noise_sd):
    """Fill the lesion: base intensity, an inhomogeneous interior and a peripheral rim."""
    inside = ndimage.distance_transform_edt(mask)
    depth = inside / (inside.max() + 1e-8)
    hetero = _smooth_noise(rng, image.shape, sigma=rng.uniform(1.0, 2.0))
    # Rim: bright band at the periphery, thicker and stronger for malignant-looking lesions.
    rim_width = 0.08 + 0.35 * cues["rim"]
    rim = np.exp(-0.5 * (depth / rim_width) ** 2) * (0.15 + 0.6 * cues["rim"])
    lesion = base + contrast * (rim + (0.04 + 0.4 * cues["heterogeneity"]) * hetero)
    # Soft edge: sharp for smooth margins, blurred for irregular ones.
    edge = ndimage.gaussian_filter(mask.astype(float), 0.4 + 1.2 * cues["margin"])
    out = image * (1 - edge) + lesion * edge
    return out + noise_sd * rng.standard_normal(image.shape)


def _brain_background(rng, size):
    """T1 CE MRI-like head: dark background, bright scalp/skull rim, textured grey/white matter."""
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    a, b = rng.uniform(0.38, 0.45), rng.uniform(0.32, 0.40)
    rr = (yy / a) ** 2 + (xx / b) ** 2
    head = rr <= 1.0
    brain = rr <= 0.80
    img = np.zeros((size, size)) + 20.0
    img[head] = 650.0  # scalp and fat are bright on T1
    white = _smooth_noise(rng, (size, size), size / 12)
    img[brain] = 380.0 + 70.0 * white[brain] + 25.0 * _smooth_noise(rng, (size, size), 1.5)[brain]
    # Ventricles: two dark CSF crescents near the centre.
    for s in (-1, 1):
        v = ((yy - rng.uniform(-0.05, 0.02)) / 0.12) ** 2 + ((xx - s * 0.05) / 0.035) ** 2 <= 1
        img[v] = 120.0
    return img, brain & ~(((yy / 0.16) ** 2 + (xx / 0.12) ** 2) <= 1)


def _lung_background(rng, size):
    """Chest CT-like slice in HU: air, chest wall, two lungs with vessels, mediastinum."""
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    body = (yy / 0.40) ** 2 + (xx / 0.47) ** 2 <= 1
    img = np.full((size, size), -1000.0)
    img[body] = 40.0 + 15.0 * _smooth_noise(rng, (size, size), 2.0)[body]
    lungs = np.zeros((size, size), bool)
    for s in (-1, 1):
        lungs |= ((yy / 0.31) ** 2 + ((xx - s * 0.2) / 0.17) ** 2) <= 1
    img[lungs] = -850.0 + 40.0 * _smooth_noise(rng, (size, size), 3.0)[lungs]
    # Vessels: thin bright branching tubes inside the lungs.
    vessels = np.zeros((size, size))
    for _ in range(rng.integers(10, 18)):
        y0, x0 = rng.uniform(-0.25, 0.25), rng.uniform(-0.35, 0.35)
        ang, ln = rng.uniform(0, np.pi), rng.uniform(0.05, 0.2)
        t = np.linspace(-ln, ln, 60)
        ys = ((y0 + t * np.sin(ang) + 0.5) * size).astype(int).clip(0, size - 1)
        xs = ((x0 + t * np.cos(ang) + 0.5) * size).astype(int).clip(0, size - 1)
        vessels[ys, xs] = 1.0
    vessels = ndimage.gaussian_filter(vessels, 0.7)
    img[lungs] += 900.0 * np.clip(vessels[lungs] * 2.5, 0, 1)
    return img, ndimage.binary_erosion(lungs, iterations=max(2, size // 16))


_ORGAN = {
    # organ: (background fn, lesion base intensity, lesion contrast, noise sd)
    "brain": (_brain_background, (420.0, 560.0), (250.0, 380.0), 12.0),
    "lung": (_lung_background, (0.0, 60.0), (120.0, 220.0), 18.0),
}


def phantom_slice(organ: str, label: int, seed: int, size: int = 128, overlap: float = 0.6) -> PhantomSlice:
    """Generate one slice of `organ` with a lesion of class `label` (1 = malignant), deterministically."""
    if organ not in _ORGAN:
        raise ValueError(f"unknown phantom organ {organ!r}; allowed: {', '.join(ORGANS)}")
    if label not in (0, 1):
        raise ValueError(f"label must be 0 (benign) or 1 (malignant), got {label!r}")
    if not 0.0 <= overlap <= 2.0:
        raise ValueError(f"overlap must lie in [0, 2], got {overlap}")
    rng = np.random.default_rng([seed, ORGANS.index(organ), label])
    background, (lo, hi), (clo, chi), noise_sd = _ORGAN[organ]
    image, allowed = background(rng, size)
    cues = _cue_strengths(rng, label, overlap)
    radius = rng.uniform(0.06, 0.12) * size
    ys, xs = np.nonzero(ndimage.binary_erosion(allowed, iterations=int(radius)))
    if len(ys) == 0:
        ys, xs = np.nonzero(allowed)
    i = rng.integers(len(ys))
    mask = _lesion_mask(rng, image.shape, (ys[i], xs[i]), radius, cues["margin"])
    image = _paint_lesion(rng, image, mask, rng.uniform(lo, hi), rng.uniform(clo, chi), cues, noise_sd)
    return PhantomSlice(image=image.astype(np.float32), mask=mask, label=int(label), cues=cues)


def phantom_labels(n: int, malignant_fraction: float, seed: int) -> np.ndarray:
    """Exactly round(n * fraction) malignant labels in a seeded random order."""
    n_mal = int(round(n * malignant_fraction))
    labels = np.array([1] * n_mal + [0] * (n - n_mal))
    return np.random.default_rng(seed).permutation(labels)


def phantom_slices(organ: str, n: int, seed: int = 0, size: int = 128, overlap: float = 0.6,
                   malignant_fraction: float = 0.5):
    """Yield `n` deterministic slices of `organ`; slice i depends only on (organ, seed, i)."""
    for i, label in enumerate(phantom_labels(n, malignant_fraction, seed)):
        yield phantom_slice(organ, int(label), seed=seed * 1_000_003 + i, size=size, overlap=overlap)
