"""Lesion preparation shared by every source: crop around the mask, resize, normalise.

The crop is what the paper calls "extracting the lesion": the network sees the lesion and a
margin of its surroundings, not the whole slice.
"""
from __future__ import annotations

import numpy as np
from skimage.transform import resize

CT_LESION_WINDOW = (-1000.0, 400.0)  # HU mapped to [0, 1] for CT lesion crops (lung)


class LesionPrepError(ValueError):
    """A slice or mask that cannot be turned into a lesion crop."""


def lesion_bbox(mask: np.ndarray, margin: float = 0.25, min_side: int = 8):
    """Square (y0, y1, x0, x1) box around the mask, enlarged by `margin` of its longer side."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise LesionPrepError("the lesion mask is empty: there is no lesion to crop; check the mask/annotation")
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    side = max(int(np.ceil(side * (1 + 2 * margin))), min_side)
    y0, x0 = int(round(cy - side / 2)), int(round(cx - side / 2))
    return y0, y0 + side, x0, x0 + side


def crop(image: np.ndarray, box, fill: float | None = None) -> np.ndarray:
    """Crop `box` from `image`, padding with `fill` (default: the image minimum) outside the slice."""
    y0, y1, x0, x1 = box
    fill = float(image.min()) if fill is None else fill
    out = np.full((y1 - y0, x1 - x0), fill, dtype=np.float32)
    sy0, sy1 = max(y0, 0), min(y1, image.shape[0])
    sx0, sx1 = max(x0, 0), min(x1, image.shape[1])
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def window(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map intensities linearly so that [lo, hi] -> [0, 1], clipping outside."""
    if not hi > lo:
        raise LesionPrepError(f"intensity window must have hi > lo, got [{lo}, {hi}]")
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def percentile_window(image: np.ndarray, p_lo: float = 0.5, p_hi: float = 99.5):
    """Intensity window from the slice's own percentiles (MRI has no absolute scale)."""
    lo, hi = np.percentile(image, [p_lo, p_hi])
    return float(lo), float(max(hi, lo + 1e-6))


def extract_lesion(image: np.ndarray, mask: np.ndarray, size: int, margin: float = 0.25,
                   intensity_window: tuple[float, float] | None = None):
    """Crop the lesion with a margin, resize to `size`×`size`, normalise to [0, 1].

    `intensity_window` is (lo, hi) in the image's units (e.g. HU for CT); None derives it from
    the slice's percentiles, as suits MRI. Returns (crop, crop_mask), float32 and bool.
    """
    image = np.asarray(image)
    mask = np.asarray(mask).astype(bool)
    if image.ndim != 2 or image.shape != mask.shape:
        raise LesionPrepError(f"image and mask must be 2-D and the same shape, got {image.shape} and {mask.shape}")
    if not np.isfinite(image).all():
        raise LesionPrepError("the image contains NaN or infinite values; fix or drop this slice")
    if size < 8:
        raise LesionPrepError(f"image size must be at least 8 pixels, got {size}")
    lo, hi = intensity_window if intensity_window is not None else percentile_window(image)
    box = lesion_bbox(mask, margin)
    img = window(crop(image, box, fill=min(lo, float(image.min()))), lo, hi)
    msk = crop(mask.astype(np.float32), box, fill=0.0)
    img = resize(img, (size, size), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)
    msk = resize(msk, (size, size), order=0, anti_aliasing=False, preserve_range=True) > 0.5
    return img, msk
