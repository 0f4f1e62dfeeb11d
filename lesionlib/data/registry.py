"""Registry of lesion sources: a new organ or data set is one `register_source` call plus its reader."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .lesions import LesionIndex, LesionSet
from .prep import CT_LESION_WINDOW  # noqa: F401  (re-exported: the readers import the CT window from here)


@dataclass(frozen=True)
class Source:
    """A lesion source: its name, the organs it provides, and a builder returning a `LesionSet`."""

    name: str
    organs: tuple
    build: Callable[..., LesionSet]
    description: str = ""
    # Labels and patients without images (same keyword arguments as `build`), so that a profile's every
    # split can be checked before any work; None: `build` is called instead.
    index: Callable[..., LesionIndex] | None = None


SOURCES: dict[str, Source] = {}


def register_source(source: Source) -> Source:
    """Add `source` to the registry (the one step needed to plug in a new organ or data set)."""
    SOURCES[source.name] = source
    return source


def _source(source: str, organ: str) -> Source:
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; allowed: {', '.join(sorted(SOURCES))}")
    src = SOURCES[source]
    if organ not in src.organs:
        raise ValueError(f"data source {source!r} has no organ {organ!r}; allowed: {', '.join(src.organs)}")
    return src


def build_lesions(source: str, organ: str, **params) -> LesionSet:
    """Prepared lesions of `organ` from `source`, with the source's own parameters."""
    return _source(source, organ).build(organ=organ, **params)


def lesion_index(source: str, organ: str, **params) -> LesionIndex:
    """Labels and patients of the lesions `build_lesions` would give, without their images where possible."""
    src = _source(source, organ)
    return src.index(organ=organ, **params) if src.index else LesionIndex.of(src.build(organ=organ, **params))


def phantom_lesions(organ: str, n: int, seed: int = 0, image_size: int = 64, margin: float = 0.25,
                    slice_size: int = 128, overlap: float = 0.6, malignant_fraction: float = 0.5,
                    shared: float = 1.0, slices_per_patient: int = 1) -> LesionSet:
    """`n` phantom slices of `organ` (`slices_per_patient` per synthetic patient), each prepared into a lesion crop.

    The crop is boxed on the lesion's core, not on its spicules (`phantom.crop_slice`), so that its scale carries
    no label; the stored masks are the whole lesions' in those boxes.
    """
    from .phantom import check_shared, crop_slice, phantom_slices

    shared = check_shared(shared)
    imgs, masks, labels = [], [], []
    for s in phantom_slices(organ, n, seed=seed, size=slice_size, overlap=overlap,
                            malignant_fraction=malignant_fraction, shared=shared,
                            slices_per_patient=slices_per_patient):
        img, msk = crop_slice(organ, s, image_size, margin)  # core's box; lung: CT_LESION_WINDOW; brain: percentiles
        imgs.append(img)
        masks.append(msk)
        labels.append(s.label)
    ids, patients = _phantom_ids(organ, seed, n, slices_per_patient)
    return LesionSet(np.stack(imgs), np.stack(masks), np.asarray(labels, dtype=np.int64), patients, ids,
                     organ, "phantom", {"seed": seed, "overlap": overlap, "shared": shared,
                                        "slices_per_patient": slices_per_patient})


def _phantom_ids(organ: str, seed: int, n: int, slices_per_patient: int = 1):
    """(lesion ids, patient ids) of a phantom set; with one slice per patient the patient id is the lesion id."""
    from .phantom import check_slices_per_patient

    m = check_slices_per_patient(slices_per_patient)
    ids = np.array([f"phantom-{organ}-{seed}-{i:05d}" for i in range(n)])
    if m == 1:
        return ids, ids.copy()
    return ids, np.array([f"phantom-{organ}-{seed}-p{i // m:04d}" for i in range(n)])


def phantom_index(organ: str, n: int, seed: int = 0, malignant_fraction: float = 0.5, slices_per_patient: int = 1,
                  **_ignored) -> LesionIndex:
    """Labels and patients of `phantom_lesions` with the same arguments (no slice is drawn)."""
    from .phantom import check_shared, phantom_layout

    check_shared(_ignored.get("shared", 1.0))  # a bad value fails here too, before any work
    labels, _ = phantom_layout(n, malignant_fraction, seed, slices_per_patient)
    _, patients = _phantom_ids(organ, seed, n, slices_per_patient)
    return LesionIndex(np.asarray(labels, dtype=np.int64), patients, organ)


register_source(Source("phantom", ("brain", "lung"), phantom_lesions,
                       "offline generator with malignant cues shared between organs to a chosen degree "
                       "(lesionlib.data.phantom)", phantom_index))


def prepared_lesions(organ: str, data_dir: str, image_size: int | None = None, **_ignored) -> LesionSet:
    """Lesions prepared on disk at `<data_dir>/<organ>/` (see `lesionlib.data.store`)."""
    from pathlib import Path

    from .store import load_lesions

    path = Path(data_dir).expanduser() / organ
    if not path.is_dir():
        raise FileNotFoundError(f"no prepared {organ} lesions at {path}; run `lesionlib data prepare {organ} "
                                f"... --out {path.parent}` first (see the book's Materials chapter), or use data_source: phantom")
    ds = load_lesions(path)
    if image_size is not None and ds.image_size != image_size:
        raise ValueError(f"{path} holds {ds.image_size}x{ds.image_size} crops but the profile asks for "
                         f"image_size {image_size}; prepare the set again at that size")
    return ds


def prepared_index(organ: str, data_dir: str, **_ignored) -> LesionIndex:
    """Labels and patients of a prepared set, from its index.csv alone."""
    from pathlib import Path

    from .store import load_index

    return load_index(Path(data_dir).expanduser() / organ)


register_source(Source("prepared", ("brain", "lung"), prepared_lesions,
                       "lesion crops prepared from the real data sets, one directory per organ", prepared_index))

