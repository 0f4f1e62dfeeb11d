"""Jun Cheng's brain tumour data set (figshare article 1512427): read the slices, prepare the crops.

3064 T1 contrast-enhanced MRI slices of 233 patients, one MATLAB file per slice, each with its
tumour mask and one of three labels: 1 meningioma, 2 glioma, 3 pituitary tumour. The paper's
binary task calls glioma malignant and the other two benign (`binary_label`). Downloading the files
is `lesionlib.data.brain_fetch`.

The files are MATLAB v7.3, i.e. HDF5 behind a 512-byte MATLAB header, read with h5py; HDF5 keeps
MATLAB's column-major arrays transposed, so `read_mat` transposes them back. Older v5 files with the
same ``cjdata`` struct are read with `scipy.io.loadmat`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .lesions import LesionSet
from .prep import LesionPrepError, extract_lesion
from .registry import Source, register_source

ARTICLE_URL = "https://figshare.com/articles/dataset/brain_tumor_dataset/1512427"


class BrainDataError(ValueError):
    """A brain-tumour file that is missing, corrupt or not in Cheng's format, or a failed download."""


CLASSES = {1: "meningioma", 2: "glioma", 3: "pituitary"}
MALIGNANT = {2}
EXPECTED = {"slices": 3064, "patients": 233, "meningioma": 708, "glioma": 1426, "pituitary": 930}
FIELDS = ("label", "PID", "image", "tumorMask", "tumorBorder")


# --------------------------------------------------------------------------------------------- read

@dataclass
class BrainRecord:
    """One slice of Cheng's set, in MATLAB's orientation (as MATLAB's imshow shows it).

    `image` keeps the stored dtype (int16 in Cheng's files); `mask` is bool; `label` is 1, 2 or 3
    as stored; `pid` the patient id; `border` the tumour border as stored (``[x1, y1, x2, y2, ...]``)
    reshaped to (k, 2) pairs, in the file's coordinates and order.
    """

    image: np.ndarray
    mask: np.ndarray
    label: int
    pid: str
    border: np.ndarray
    path: str = ""


def _h5_value(ds):
    """A dataset's array, honouring MATLAB's marker for empty arrays (which stores the dims instead)."""
    if int(np.asarray(ds.attrs.get("MATLAB_empty", 0)).ravel()[0]):
        return np.zeros((0,), dtype=ds.dtype)
    return ds[()]


def _read_h5(path: Path) -> dict:
    """The ``cjdata`` fields of a v7.3 file, transposed back to MATLAB's orientation."""
    import h5py

    with h5py.File(path, "r") as fh:
        if "cjdata" not in fh:
            raise BrainDataError(f"{path}: no 'cjdata' struct in the file (found {sorted(fh.keys())}); "
                                 "this is not a slice of Cheng's brain tumour set")
        cj = fh["cjdata"]
        missing = [k for k in FIELDS if k not in cj]
        if missing:
            raise BrainDataError(f"{path}: 'cjdata' has no field {', '.join(map(repr, missing))}")
        raw = {k: _h5_value(cj[k]) for k in FIELDS}
    out = {k: np.asarray(v) for k, v in raw.items()}
    # HDF5 holds MATLAB's column-major arrays with reversed dims: transpose back.
    out["image"], out["tumorMask"] = out["image"].T, out["tumorMask"].T
    return out


def _read_v5(path: Path) -> dict:
    """The ``cjdata`` fields of an older (v5) .mat file; scipy already returns MATLAB's orientation."""
    from scipy.io import loadmat

    m = loadmat(path, squeeze_me=False, struct_as_record=True)
    if "cjdata" not in m:
        raise BrainDataError(f"{path}: no 'cjdata' struct in the file (found "
                             f"{sorted(k for k in m if not k.startswith('__'))}); "
                             "this is not a slice of Cheng's brain tumour set")
    cj = m["cjdata"]
    names = cj.dtype.names or ()
    missing = [k for k in FIELDS if k not in names]
    if missing:
        raise BrainDataError(f"{path}: 'cjdata' has no field {', '.join(map(repr, missing))}")
    rec = cj.ravel()[0]
    return {k: np.asarray(rec[k]) for k in FIELDS}


def _pid(a: np.ndarray) -> str:
    """A MATLAB char array (uint16 codes from HDF5, or str from scipy) as a Python string."""
    a = np.asarray(a)
    if a.dtype.kind in "US":
        return "".join(str(x) for x in a.ravel()).strip()
    return "".join(chr(int(c)) for c in a.ravel() if int(c)).strip()


def _record(path: Path, raw: dict) -> BrainRecord:
    """Check the fields of one slice and turn them into a `BrainRecord`."""
    image, mask = raw["image"], raw["tumorMask"]
    if image.ndim != 2 or image.size == 0:
        raise BrainDataError(f"{path}: image must be a 2-D array, got shape {image.shape}")
    if mask.shape != image.shape:
        raise BrainDataError(f"{path}: image is {image.shape} but tumorMask is {mask.shape}")
    if image.dtype.kind not in "iuf":
        raise BrainDataError(f"{path}: image has non-numeric type {image.dtype}")
    mask = mask.astype(bool)
    if not mask.any():
        raise BrainDataError(f"{path}: tumorMask is empty: no tumour to crop")
    lab = raw["label"].ravel()
    if lab.size != 1 or not np.isfinite(lab[0]) or lab[0] not in CLASSES:
        raise BrainDataError(f"{path}: label must be one of {sorted(CLASSES)} ({CLASSES}), got {lab.tolist()}")
    pid = _pid(raw["PID"])
    if not pid:
        raise BrainDataError(f"{path}: PID is empty; slices cannot be split by patient without it")
    border = np.asarray(raw["tumorBorder"], dtype=np.float64).ravel()
    if border.size % 2:
        raise BrainDataError(f"{path}: tumorBorder has an odd number of values ({border.size}); expected x,y pairs")
    return BrainRecord(image, mask, int(lab[0]), pid, border.reshape(-1, 2), str(path))


def read_mat(path) -> BrainRecord:
    """Read one slice file of Cheng's set (MATLAB v7.3/HDF5, or v5) into a `BrainRecord`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise BrainDataError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(128)
    try:
        if h5py.is_hdf5(path):
            raw = _read_h5(path)
        elif head.startswith(b"MATLAB 7.3"):
            raise BrainDataError(f"{path}: a MATLAB v7.3 header but no readable HDF5 data: the file is truncated "
                                 "or corrupt; delete it and extract/fetch again")
        else:
            raw = _read_v5(path)
    except BrainDataError:
        raise
    except Exception as err:  # h5py/scipy raise many kinds (OSError, ValueError, KeyError, ...)
        what = ("a MATLAB v7.3 (HDF5) file that cannot be read: truncated or corrupt? delete it and extract/fetch "
                "again" if head.startswith(b"MATLAB 7.3") or h5py.is_hdf5(path) else
                "not a readable MATLAB .mat file" if head.startswith(b"MATLAB") else
                "not a MATLAB .mat file (no 'MATLAB' header)")
        raise BrainDataError(f"{path}: {what} ({type(err).__name__}: {err})") from None
    return _record(path, raw)


def binary_label(label: int) -> int:
    """The paper's binary label: glioma (2) is malignant (1); meningioma (1) and pituitary (3) benign (0)."""
    if int(label) not in CLASSES:
        raise BrainDataError(f"brain tumour label must be one of {sorted(CLASSES)}, got {label}")
    return int(int(label) in MALIGNANT)


def _stem_key(p: Path):
    """Numeric order of slice files (2.mat before 10.mat); other names after, alphabetically."""
    return (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.stem)


def mat_files(data_dir, missing_ok: bool = False) -> list[Path]:
    """The slice files under `data_dir` (``mat/``, the top level, else anywhere below), in numeric order."""
    d = Path(data_dir).expanduser()

    def keep(ps):
        # cvind.mat holds Cheng's cross-validation folds, not a slice; hidden paths are our temp dirs.
        return sorted((p for p in ps if p.is_file() and p.name.lower() != "cvind.mat"
                       and not any(part.startswith(".") for part in p.relative_to(d).parts)), key=_stem_key)

    for found in (lambda: keep((d / "mat").glob("*.mat")), lambda: keep(d.glob("*.mat")),
                  lambda: keep(d.rglob("*.mat"))):
        if files := found():
            return files
    if missing_ok:
        return []
    raise BrainDataError(f"no brain tumour slices (*.mat) under {d}; fetch them with "
                         f"lesionlib.data.brain_fetch.fetch({str(d)!r}) or download the zips from {ARTICLE_URL} "
                         "and unzip them there")


def read_all(data_dir, limit: int | None = None):
    """Read the slices under `data_dir`: (records, errors as (file, reason) pairs, files tried)."""
    files = mat_files(data_dir)[:limit]
    records, errors = [], []
    for p in files:
        try:
            records.append(read_mat(p))
        except BrainDataError as err:
            errors.append((p.name, str(err)))
    return records, errors, files


def _raise_errors(errors, n_files, data_dir, show: int = 5):
    """One error for all the slices that failed, listing the first few."""
    if not errors:
        return
    lines = "\n".join(f"  {name}: {reason}" for name, reason in errors[:show])
    more = f"\n  ... and {len(errors) - show} more" if len(errors) > show else ""
    raise BrainDataError(f"{len(errors)} of {n_files} brain tumour slices under {data_dir} could not be used:\n"
                         f"{lines}{more}\nre-extract or fetch those files again (or remove them)")


def class_counts(labels) -> dict:
    """Number of slices per tumour class, by name."""
    labels = list(labels)
    return {name: sum(1 for x in labels if x == k) for k, name in CLASSES.items()}


def brain_lesions(organ: str = "brain", data_dir=None, image_size: int = 64, margin: float = 0.25,
                  limit: int | None = None, **_ignored) -> LesionSet:
    """Lesion crops of every slice under `data_dir` with the paper's binary labels (glioma = malignant).

    `limit` keeps the first `limit` files in numeric order (for quick runs; not class balanced).
    """
    if organ != "brain":
        raise ValueError(f"data source 'brain' has only organ 'brain', not {organ!r}")
    if data_dir is None:
        raise BrainDataError("brain_lesions needs data_dir: the folder holding Cheng's .mat files "
                             f"(see lesionlib.data.brain_fetch.fetch, or download them from {ARTICLE_URL})")
    records, errors, files = read_all(data_dir, limit)
    imgs, masks, kept = [], [], []
    for r in records:
        try:
            img, msk = extract_lesion(r.image.astype(np.float32), r.mask, image_size, margin, None)
        except LesionPrepError as err:
            errors.append((Path(r.path).name, f"{r.path}: {err}"))
            continue
        imgs.append(img)
        masks.append(msk)
        kept.append(r)
    _raise_errors(errors, len(files), data_dir)
    names = [Path(r.path).name for r in kept]
    meta = {"class_counts": class_counts(r.label for r in kept), "data_dir": str(data_dir),
            "image_size": image_size, "margin": margin, "limit": limit}
    return LesionSet(np.stack(imgs).astype(np.float32), np.stack(masks).astype(bool),
                     np.array([binary_label(r.label) for r in kept], dtype=np.int64),
                     np.array([r.pid for r in kept]), np.array([f"brain-{Path(n).stem}" for n in names]),
                     "brain", "brain", meta, np.array(names))


def summary(data) -> dict:
    """Counts of slices, patients, the three classes and benign/malignant, for a `LesionSet` or records.

    For a `LesionSet` the three-class counts come from ``meta["class_counts"]`` (as built by
    `brain_lesions`; a subset keeps the counts of the whole set).
    """
    if isinstance(data, LesionSet):
        out = {"slices": len(data), "patients": int(len(np.unique(data.patients)))}
        out.update(data.meta.get("class_counts", {}))
        c = data.counts()
        out.update(benign=c["benign"], malignant=c["malignant"])
        return out
    records = list(data)
    out = {"slices": len(records), "patients": len({r.pid for r in records})}
    out.update(class_counts(r.label for r in records))
    mal = sum(binary_label(r.label) for r in records)
    out.update(benign=len(records) - mal, malignant=mal)
    return out


def check_expected(counts: dict, expected: dict = EXPECTED) -> dict:
    """The counts that differ from the published ones, as {name: (found, expected)}; empty if all agree."""
    return {k: (counts.get(k), v) for k, v in expected.items() if counts.get(k) != v}


register_source(Source("brain", ("brain",), brain_lesions, "Cheng's figshare brain tumour dataset (.mat v7.3)"))
