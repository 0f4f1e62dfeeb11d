"""LIDC-IDRI lung nodules as lesion crops: pixels from the DICOM download, nodules from `lung_nodules`.

The nodules, their labels and the selection rules come from pylidc's bundled database
(`lesionlib.data.lung_nodules`). This module owns the pixels: a nodule's image is the axial slice where the
readers' consensus mask (>= 50 % of the readers) is largest, cropped around that mask by `extract_lesion`
in the CT lesion window; `lung_lesions` builds the set and registers the ``lung`` source.

The DICOM files are located by us (`find_series`), never through pylidc's ``~/.pylidcrc``, and read with
pydicom; both the classic ``<PatientID>/<StudyUID>/<SeriesUID>/`` layout and the NBIA Data Retriever's
descriptive folder names are understood.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .lesions import LesionSet
from .lung_nodules import LungDataError, _quiet, get_scan, nodule_table, resolve_rule, scan_clusters
from .prep import extract_lesion
from .registry import CT_LESION_WINDOW, Source, register_source

log = logging.getLogger("lesionlib")

Z_TOLERANCE = 0.05  # mm: DICOM z and the DB's z are the same ImagePositionPatient value, up to rounding


class MissingScanError(LungDataError):
    """A scan's DICOM series is not in the LIDC folder (normal for a partial download)."""


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
    from pydicom.pixels import apply_modality_lut

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
    hu = apply_modality_lut(pixels, ds).astype(np.float32)  # Rescale Slope/Intercept, or a Modality LUT, to HU
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
