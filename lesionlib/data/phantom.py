"""Offline phantom lesions: brain (T1 contrast-enhanced MRI-like) and lung (CT-like, in HU).

The generator stands in for the real data sets on machines that cannot download them. It draws
2-D slices with one lesion, its mask and a benign (0) / malignant (1) label. Four malignant cues
are built in, two of each organ's own:

* spiculation (lung): malignant lesions carry spicules (narrow radial spikes);
* lobulation (lung): malignant lesions are deformed into lobes (low-frequency shape);
* rim (brain): malignant lesions enhance in a peripheral ring about a darker centre, benign ones
  at their centre;
* heterogeneity (brain): malignant lesions' texture holds dark (necrotic) blotches, benign ones'
  bright flecks.

``shared`` in [0, 1] sets how much of the label rides on the other organ's cues: at 1 every cue
carries the label in both organs (knowledge about any cue transfers); at 0 each organ's label rides
only on its own two cues, and the other two are drawn independently of the label (nuisance). The
class-mean gaps are scaled so that the classes are equally far apart (Mahalanobis) in cue space at
every ``shared`` and in both organs: only *which* cues carry the label changes. How far apart that
leaves the classes in the crops depends on how visible each cue is: `cue_table` checks that each cue
changes the crops about equally in both organs. What a network gets from them is measured by
`lesionlib.data.shortcuts`: a linear probe on random DenseNet-201 features separates each organ's
own classes with an AUC of about 0.65-0.8 at either end of ``shared`` (the rim most visible, the
spicules least); a network trained from scratch finds the shape cues, hence the lung at ``shared``
= 0, the hardest.

No shortcuts. A cue changes *what* a lesion looks like, never a simple statistic of its crop that
the other organ's cues could also move (at ``shared`` = 0 such a statistic would carry the label
across organs and the negative control could not come out negative; `lesionlib.data.shortcuts`
measures this):

* shape cues keep the lesion's area (the star is scaled to the area of the disc of its radius), and
  the crop is boxed on the lesion's core (`PhantomSlice.core`, a disc about its centre), not on its
  spicules: the crop's scale and the lesion's fill fraction of it carry no label;
* the edge blur is a nuisance drawn per cut (it used to grow with spiculation and moved every
  intensity statistic), and the lesion is dense inside its mask, its partial-volume edge just outside;
* the intensity cues move the arrangement, not the amount, of the lesion's intensities: each is a
  pattern of zero mean and unit sd in the lesion, and a cue value and its mirror (1 - value) give
  patterns of the same sd and gradient energy (the rim turns between the two smoothest radial
  patterns, orthogonal in values and gradients; the texture's skew changes sign). As the two
  classes' cue strengths are drawn symmetrically about 0.5, the lesion's mean, sd and gradient
  energy are distributed alike in both. Lesions sit mid-window so that no crop's intensity window
  clips one class more than the other.

Each cue's strength is drawn per lesion from a class-dependent normal distribution whose spread is
set by ``overlap`` (sd = 0.5 * overlap), clipped to [0, 1]. Backgrounds, intensity scales and
nuisance factors (size, position, rotation, contrast, edge blur, box size, noise) are organ specific
and carry no label information. Several slices may belong to one synthetic patient
(``slices_per_patient``): they show the same lesion (label, cues, shape) through different cuts.

Every random component draws from its own stream, ``default_rng([seed, organ, component, ...])``,
so that changing one cue's strength changes nothing else (see `cue_visibility`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .prep import CT_LESION_WINDOW

ORGANS = ("brain", "lung")
CUES = ("spiculation", "lobulation", "rim", "heterogeneity")
OWN_CUES = {"brain": ("rim", "heterogeneity"), "lung": ("spiculation", "lobulation")}
GAP = 0.5  # class-mean gap of every cue at shared = 1 (means 0.25 / 0.75)
MAX_SPIKES = 14
# Amplitudes (in units of the lesion's contrast) of its two intensity patterns, each of unit sd in the lesion.
RIM_SD, TEXTURE_SD = 0.3, 0.6
SKEW = 1.0  # of the texture at heterogeneity 0 or 1 (bright flecks, dark blotches)

# Random streams, one per component: (lesion-level ones are shared by a patient's slices).
_CUE_STREAM, _SHAPE_STREAM, _BACKGROUND_STREAM, _CUT_STREAM, _TEXTURE_STREAM, _NOISE_STREAM = range(6)


@dataclass(frozen=True)
class PhantomSlice:
    """One generated slice: image (float32, organ units), boolean lesion mask, label, cue strengths, core mask.

    `core` is the lesion's core (a disc about its centre, see `_lesion_mask`): `crop_slice` boxes it.
    """

    image: np.ndarray
    mask: np.ndarray
    label: int
    cues: dict
    core: np.ndarray | None = None


def _rng(seed, organ, component, cut=0):
    """The random stream of one component of one lesion (and one cut through it)."""
    return np.random.default_rng([seed, ORGANS.index(organ), component, cut])


def _smooth_noise(rng, shape, sigma):
    """Zero-mean, unit-std Gaussian-smoothed noise (tissue texture)."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return (n - n.mean()) / (n.std() + 1e-8)


def check_shared(shared) -> float:
    """`shared` as a float in [0, 1], or a clear ValueError."""
    if isinstance(shared, bool) or not isinstance(shared, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(shared) <= 1.0:
        raise ValueError(f"shared must be a number in [0, 1] (1: every cue carries the label in both organs, "
                         f"0: only each organ's own cues do), got {shared!r}")
    return float(shared)


def check_slices_per_patient(slices_per_patient) -> int:
    """`slices_per_patient` as an int >= 1, or a clear ValueError."""
    if isinstance(slices_per_patient, bool) or not isinstance(slices_per_patient, (int, np.integer)) \
            or slices_per_patient < 1:
        raise ValueError(f"slices_per_patient must be an integer >= 1, got {slices_per_patient!r}")
    return int(slices_per_patient)


def cue_gaps(organ: str, shared: float = 1.0) -> dict:
    """Class-mean gap of each cue in `organ`: own cues weigh 1, the other organ's `shared`, at a fixed norm."""
    shared = check_shared(shared)
    # Norm of the gap vector = GAP * 2 at every `shared`: equal Mahalanobis distance, equal difficulty.
    scale = GAP * np.sqrt(4.0 / (2.0 + 2.0 * shared ** 2))
    return {k: scale * (1.0 if k in OWN_CUES[organ] else shared) for k in CUES}


def _cue_strengths(seed, organ, label, overlap, shared):
    """Per-lesion strengths in [0, 1] of the four cues, drawn around 0.5 +- gap / 2 by class."""
    z = _rng(seed, organ, _CUE_STREAM).standard_normal(len(CUES))
    sign = 1.0 if label else -1.0
    sd = 0.5 * overlap
    return {k: float(np.clip(0.5 + sign * g / 2 + sd * zk, 0.0, 1.0))
            for (k, g), zk in zip(cue_gaps(organ, shared).items(), z)}


def _check_cues(cues) -> dict:
    """Explicit cue strengths: all four cues, each in [0, 1]."""
    if not isinstance(cues, dict) or set(cues) != set(CUES):
        raise ValueError(f"cues must give exactly the cues {', '.join(CUES)}, got {cues!r}")
    bad = {k: v for k, v in cues.items() if not 0.0 <= float(v) <= 1.0}
    if bad:
        raise ValueError(f"cue strengths must lie in [0, 1], got {bad}")
    return {k: float(cues[k]) for k in CUES}


def _lesion_shape(seed, organ):
    """Lesion-level shape and paint parameters, drawn for the most irregular case so no cue shifts them."""
    rng = _rng(seed, organ, _SHAPE_STREAM)
    return {"radius": rng.uniform(0.07, 0.13),
            "lobe_amp": rng.uniform(0.3, 1.0, 2), "lobe_phase": rng.uniform(0, 2 * np.pi, 2),
            "spike_count": rng.uniform(4, MAX_SPIKES), "spike_phi": rng.uniform(-np.pi, np.pi, MAX_SPIKES),
            "spike_width": rng.uniform(0.05, 0.15, MAX_SPIKES), "spike_length": rng.uniform(0.4, 1.12, MAX_SPIKES),
            "base": rng.uniform(0, 1), "contrast": rng.uniform(0, 1), "texture_sigma": rng.uniform(1.0, 2.0)}


def _radial(theta, lesion, cues):
    """Relative radius of the lesion at angles `theta`: lobes (lobulation) and spicules (spiculation) on a unit circle."""
    r = np.ones_like(theta)
    # Low-frequency lobulation is present in every lesion (nuisance), amplified by the cue.
    for k, amp, phase in zip((2, 3), lesion["lobe_amp"], lesion["lobe_phase"]):
        r += (0.04 + 0.4 * cues["lobulation"]) * amp * np.cos(k * theta + phase)
    # Spicules: narrow angular spikes whose number and length grow with the cue (first k of the drawn ones).
    n_spikes = int(round(cues["spiculation"] * lesion["spike_count"]))
    for phi, width, length in list(zip(lesion["spike_phi"], lesion["spike_width"], lesion["spike_length"]))[:n_spikes]:
        d = np.angle(np.exp(1j * (theta - phi)))
        r += cues["spiculation"] * length * np.exp(-0.5 * (d / width) ** 2)
    return r


_THETA = np.linspace(-np.pi, np.pi, 2048, endpoint=False)


def _lesion_mask(shape, centre, radius, rotation, lesion, cues, box=1.0):
    """(lesion, core): a star-shaped lesion of area pi * radius**2 whatever its cues, and its core.

    The radial function is scaled so that lobes and spicules do not change the lesion's area (a
    spiculated lesion has a smaller body); the core is the disc of `radius` * `box` about the centre
    (the lesion without its lobes and spicules, with `box` a label-free nuisance): the crop's box is
    the core's, so that its scale and the lesion's fill fraction of it carry no label.
    """
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = yy - centre[0], xx - centre[1]
    theta = np.arctan2(dy, dx) - rotation
    dist = np.hypot(dy, dx)
    scale = np.sqrt(np.mean(_radial(_THETA, lesion, cues) ** 2))  # the star's area / the unit disc's
    return dist <= radius * _radial(theta, lesion, cues) / scale, dist <= radius * box


def _in_mask(x, mask):
    """`x` less its mean inside `mask`, over its sd there (1 where it is flat)."""
    v = x[mask]
    return (x - v.mean()) / (v.std() if v.std() > 1e-8 else 1.0)


def _radial_modes(mask, inside):
    """The two smoothest radial patterns of a lesion: zero mean and unit sd in it, orthogonal in values and gradients.

    Spanned by polynomials in depth, tapered to 0 at the edge (the lesion's edge keeps its base intensity
    whatever the pattern); solved as an eigenproblem of gradient energy over an orthonormal basis of the
    zero-mean span (lowest first). The first is about monotone in depth, oriented brighter towards the edge
    (a ring); the second a band. A lesion too small to hold two patterns gets the first and a flat second.
    """
    from scipy.linalg import null_space

    depth = inside / (inside.max() + 1e-8)
    taper = 1.0 - np.exp(-0.5 * (inside / 1.5) ** 2)
    basis = np.stack([taper * (1 - depth) ** k for k in range(5)])
    v = basis[:, mask].T
    q = null_space(v.mean(0)[None])  # combinations of zero mean in the lesion (still 0 at its edge and outside)
    _, sv, wt = np.linalg.svd(v @ q, full_matrices=False)
    keep = sv > 1e-6 * sv.max() if sv.size and sv.max() > 0 else np.zeros(0, bool)
    coef = q @ wt[keep].T / sv[keep] * np.sqrt(mask.sum())  # basis -> patterns of unit mean square in the lesion
    patterns = np.tensordot(coef.T, basis, 1)
    if len(patterns) < 2:
        return _in_mask(-depth, mask), np.zeros_like(depth)
    grads = np.stack([np.stack(np.gradient(p))[:, mask].reshape(-1) for p in patterns], 1)
    _, vecs = np.linalg.eigh(grads.T @ grads)
    modes = [np.tensordot(vecs[:, i], patterns, 1) for i in (0, 1)]
    return [m if (m[mask] * depth[mask]).mean() < 0 else -m for m in modes]


def _paint_lesion(image, mask, base, contrast, cues, texture, noise, blur):
    """Fill the lesion: base intensity, an enhancement pattern (rim) and a textured interior (heterogeneity)."""
    inside = ndimage.distance_transform_edt(mask)
    # Rim: where the enhancement sits, not how much of it: brightest at the centre (0) through a mid-depth
    # band to a peripheral ring about a darker centre (1). A turn in the plane of the two smoothest radial
    # patterns: zero mean, unit sd and the same gradient energy at rim and 1 - rim.
    ring, band = _radial_modes(mask, inside)
    phi = np.pi * cues["rim"]
    rim = -np.cos(phi) * ring + np.sin(phi) * band
    # Heterogeneity: the texture's skew, not its amount: bright flecks (0), an even grain (0.5), dark
    # (necrotic) blotches (1); a value and its mirror 1 - value give textures that are each other's negatives
    # in distribution (the same sd and gradient energy). Bounded, so that no crop's window clips it.
    g = np.clip(_in_mask(texture, mask), -2.5, 2.5)
    tex = _in_mask(g + SKEW * (1 - 2 * cues["heterogeneity"]) * (g ** 2 - 1) / 2, mask)
    # Uncorrelated with the rim's patterns in the lesion, so that the two add up to the same sd whatever the cues.
    for mode in (ring, band):
        tex = tex - (tex[mask] * mode[mask]).mean() * mode
    tex = _in_mask(tex, mask)
    lesion = base + contrast * (RIM_SD * rim + TEXTURE_SD * tex)
    # Soft edge: a blur drawn per cut, whatever the cues (a label-dependent blur moved every intensity
    # statistic); the lesion is dense inside its mask, its partial-volume edge just outside.
    edge = np.clip(2.0 * ndimage.gaussian_filter(ndimage.binary_dilation(mask).astype(float), blur), 0, 1)
    return image * (1 - edge) + lesion * edge + noise


def _brain_background(rng, size):
    """T1 CE MRI-like head: dark background, bright scalp/skull rim, textured grey/white matter."""
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    a, b = rng.uniform(0.38, 0.45), rng.uniform(0.32, 0.40)
    rr = (yy / a) ** 2 + (xx / b) ** 2
    head = rr <= 1.0
    brain = rr <= 0.80
    img = np.zeros((size, size)) + 20.0
    img[head] = 1200.0  # scalp and fat are bright on T1 (the slice's window reaches up to them)
    white = _smooth_noise(rng, (size, size), size / 12)
    img[brain] = 150.0 + 30.0 * white[brain] + 12.0 * _smooth_noise(rng, (size, size), 1.5)[brain]
    # Ventricles: two dark CSF crescents near the centre.
    for s in (-1, 1):
        v = ((yy - rng.uniform(-0.05, 0.02)) / 0.12) ** 2 + ((xx - s * 0.05) / 0.035) ** 2 <= 1
        img[v] = 60.0
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
    # Tuned so that each cue changes the prepared crops about equally in both organs (`cue_table`), and
    # so that the lesion sits mid-window (its patterns are clipped alike on both sides, for both classes):
    # CT's window is -1000..400 HU; the brain's, the slice's percentiles, spans ~20..1200 (up to the scalp).
    "brain": (_brain_background, (510.0, 670.0), (220.0, 310.0), 20.0),  # enhancing lesion in darker tissue
    "lung": (_lung_background, (-400.0, -200.0), (240.0, 330.0), 18.0),  # part-solid nodule in aerated lung
}
# Intensity window of each organ's crops (as `registry.phantom_lesions` prepares them): HU for CT,
# None = the slice's own percentiles for MRI.
CROP_WINDOW = {"brain": None, "lung": CT_LESION_WINDOW}


def phantom_slice(organ: str, label: int, seed: int, size: int = 128, overlap: float = 0.6, shared: float = 1.0,
                  cues: dict | None = None, cut: int = 0) -> PhantomSlice:
    """Cut `cut` through lesion `seed` of `organ`, class `label` (1 = malignant), deterministically.

    The lesion's cues depend on (organ, seed, label), its shape and intensities on (organ, seed); the
    cut adds slice-level nuisance (background, section size, position, rotation, edge blur, core-box size,
    texture, noise). `cues` overrides the drawn cue strengths (all four, each in [0, 1]) and changes nothing else.
    """
    if organ not in _ORGAN:
        raise ValueError(f"unknown phantom organ {organ!r}; allowed: {', '.join(ORGANS)}")
    if label not in (0, 1):
        raise ValueError(f"label must be 0 (benign) or 1 (malignant), got {label!r}")
    if not 0.0 <= overlap <= 2.0:
        raise ValueError(f"overlap must lie in [0, 2], got {overlap}")
    shared = check_shared(shared)
    cues = _cue_strengths(seed, organ, label, overlap, shared) if cues is None else _check_cues(cues)
    background, (lo, hi), (clo, chi), noise_sd = _ORGAN[organ]
    lesion = _lesion_shape(seed, organ)
    image, allowed = background(_rng(seed, organ, _BACKGROUND_STREAM, cut), size)
    rng = _rng(seed, organ, _CUT_STREAM, cut)
    # Another cut through the same lesion: a smaller or larger section, elsewhere, turned.
    radius = lesion["radius"] * rng.uniform(0.7, 1.0) * size
    rotation, where = rng.uniform(0, 2 * np.pi), rng.uniform()
    blur, box = rng.uniform(0.4, 1.6), rng.uniform(0.85, 1.15)  # edge blur and core-box size: nuisance
    # Where the lesion fits with its crop inside the organ, else where the lesion alone fits, else anywhere in it.
    for reach in (1.7 * radius, radius, 0):
        ys, xs = np.nonzero(ndimage.binary_erosion(allowed, iterations=int(reach)) if int(reach) else allowed)
        if len(ys):
            break
    i = int(where * len(ys))
    mask, core = _lesion_mask(image.shape, (ys[i], xs[i]), radius, rotation, lesion, cues, box)
    texture = _smooth_noise(_rng(seed, organ, _TEXTURE_STREAM, cut), image.shape, lesion["texture_sigma"])
    noise = noise_sd * _rng(seed, organ, _NOISE_STREAM, cut).standard_normal(image.shape)
    image = _paint_lesion(image, mask, lo + lesion["base"] * (hi - lo), clo + lesion["contrast"] * (chi - clo),
                          cues, texture, noise, blur)
    return PhantomSlice(image=image.astype(np.float32), mask=mask, label=int(label), cues=cues, core=core)


def phantom_labels(n: int, malignant_fraction: float, seed: int) -> np.ndarray:
    """Exactly round(n * fraction) malignant labels in a seeded random order."""
    n_mal = int(round(n * malignant_fraction))
    labels = np.array([1] * n_mal + [0] * (n - n_mal))
    return np.random.default_rng(seed).permutation(labels)


def phantom_layout(n: int, malignant_fraction: float, seed: int, slices_per_patient: int = 1):
    """(label, patient number) of each of `n` slices: consecutive slices share a patient, labels are per patient."""
    m = check_slices_per_patient(slices_per_patient)
    patient = np.arange(n) // m  # the last patient may have fewer slices
    labels = phantom_labels(-(-n // m), malignant_fraction, seed)
    return labels[patient], patient


def phantom_slices(organ: str, n: int, seed: int = 0, size: int = 128, overlap: float = 0.6,
                   malignant_fraction: float = 0.5, shared: float = 1.0, slices_per_patient: int = 1):
    """Yield `n` deterministic slices of `organ`; slice i depends only on (organ, seed, i, slices_per_patient)."""
    shared = check_shared(shared)
    labels, patients = phantom_layout(n, malignant_fraction, seed, slices_per_patient)
    for i, (label, j) in enumerate(zip(labels, patients)):
        # One lesion per patient; its slices are different cuts through it.
        yield phantom_slice(organ, int(label), seed=seed * 1_000_003 + int(j), size=size, overlap=overlap,
                            shared=shared, cut=i - int(j) * int(slices_per_patient))


def crop_slice(organ: str, s: PhantomSlice, image_size: int = 64, margin: float = 0.25):
    """(crop, crop mask) of a slice, prepared as `registry.phantom_lesions` prepares it.

    The box is that of the lesion's core (`PhantomSlice.core`; the whole mask where a slice has none),
    so that spicules and lobes do not stretch it; the crop mask is the whole lesion's, in that box.
    """
    from skimage.transform import resize

    from .prep import crop, extract_lesion, lesion_bbox

    core = s.mask if s.core is None else s.core
    img, _ = extract_lesion(s.image, core, image_size, margin, CROP_WINDOW[organ])
    msk = crop(s.mask.astype(np.float32), lesion_bbox(core, margin), fill=0.0)
    return img, resize(msk, (image_size, image_size), order=0, anti_aliasing=False, preserve_range=True) > 0.5


def cue_visibility(organ: str, cue: str, n: int = 16, size: int = 128, image_size: int = 64, margin: float = 0.25,
                   seed: int = 0, low: float = 0.0, high: float = 1.0) -> float:
    """Mean absolute difference of prepared crops of the same lesions with `cue` at `low` vs `high`."""
    if cue not in CUES:
        raise ValueError(f"unknown cue {cue!r}; allowed: {', '.join(CUES)}")
    diffs = []
    for i in range(n):
        lesion_seed, label = seed * 1_000_003 + i, i % 2
        # The other cues as the generator draws them (both classes), so the cue is seen in context.
        cues = _cue_strengths(lesion_seed, organ, label, 0.6, 1.0)
        a, b = (crop_slice(organ, phantom_slice(organ, label, lesion_seed, size, cues=dict(cues, **{cue: v})),
                           image_size, margin)[0] for v in (low, high))
        diffs.append(float(np.abs(a - b).mean()))
    return float(np.mean(diffs))


def cue_table(n: int = 16, size: int = 128, image_size: int = 64, margin: float = 0.25, seed: int = 0):
    """DataFrame organ x cue of `cue_visibility`, with the lung / brain ratio as a last row."""
    import pandas as pd

    table = pd.DataFrame({cue: {organ: cue_visibility(organ, cue, n, size, image_size, margin, seed)
                                for organ in ORGANS} for cue in CUES}).loc[list(ORGANS)]
    table.loc["lung / brain"] = table.loc["lung"] / table.loc["brain"]
    return table
