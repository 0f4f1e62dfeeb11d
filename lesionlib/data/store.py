"""The prepared-lesion format on disk, shared by every source (brain, lung, phantom, ...).

A prepared set is a directory:

* ``index.csv``  -- one row per lesion: ``row, lesion_id, patient, label, organ, source, origin``
* ``crops.npz``  -- ``images`` (N, H, W) float32 in [0, 1] and ``masks`` (N, H, W) bool, in index order
* ``meta.json``  -- organ, source, image size, counts and the preparation parameters

It is written into a temporary sibling directory and renamed into place, so a crash never leaves a
half-written set behind, and an existing set is only replaced by a complete one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .lesions import LesionIndex, LesionSet

INDEX_COLUMNS = ["row", "lesion_id", "patient", "label", "organ", "source", "origin"]


class PreparedSetError(ValueError):
    """A prepared lesion set that is missing, incomplete or inconsistent."""


def save_lesions(ds: LesionSet, out, params: dict | None = None) -> Path:
    """Write `ds` as a prepared set at directory `out`, atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        index = pd.DataFrame({"row": np.arange(len(ds)), "lesion_id": ds.ids.astype(str),
                              "patient": ds.patients.astype(str), "label": ds.labels.astype(int),
                              "organ": ds.organ, "source": ds.source, "origin": ds.origins.astype(str)})
        index.to_csv(tmp / "index.csv", index=False)
        np.savez_compressed(tmp / "crops.npz", images=ds.images.astype(np.float32), masks=ds.masks.astype(bool))
        meta = {"organ": ds.organ, "source": ds.source, "image_size": ds.image_size, "counts": ds.counts(),
                "params": params or {}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_index(path) -> LesionIndex:
    """Labels and patients of the prepared set at `path`, read from index.csv alone (no crops)."""
    path = Path(path)
    if not (path / "index.csv").is_file():
        raise PreparedSetError(f"{path / 'index.csv'} does not exist: {path} is not a prepared lesion set; create it "
                               f"with `lesionlib data prepare ... --out {path.parent}`")
    try:
        index = pd.read_csv(path / "index.csv", dtype={"patient": str}, usecols=["patient", "label", "organ"])
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise PreparedSetError(f"cannot read {path / 'index.csv'} ({type(err).__name__}: {err}); prepare the set "
                               "again") from None
    if index["patient"].isna().any() or not index["label"].isin([0, 1]).all():
        raise PreparedSetError(f"{path / 'index.csv'} has empty patients or labels other than 0 and 1; prepare the "
                               "set again")
    organ = str(index["organ"].iloc[0]) if len(index) else path.name
    return LesionIndex(index["label"].to_numpy(np.int64), index["patient"].to_numpy(str), organ)


def load_lesions(path) -> LesionSet:
    """Read a prepared set, checking that its index and crops agree."""
    path = Path(path)
    if not path.is_dir():
        raise PreparedSetError(f"{path} is not a prepared lesion set (no such directory); create it with "
                               f"`lesionlib data prepare ... --out {path.parent}`")
    missing = [f for f in ("index.csv", "crops.npz", "meta.json") if not (path / f).is_file()]
    if missing:
        raise PreparedSetError(f"prepared set {path} is incomplete: {', '.join(missing)} missing; prepare it again")
    try:
        index = pd.read_csv(path / "index.csv", dtype={"lesion_id": str, "patient": str, "origin": str})
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:  # empty, binary or ragged file
        raise PreparedSetError(f"cannot read {path / 'index.csv'} ({type(err).__name__}: {err}); prepare the set "
                               "again") from None
    if list(index.columns) != INDEX_COLUMNS:
        raise PreparedSetError(f"{path / 'index.csv'} has columns {list(index.columns)}, expected {INDEX_COLUMNS}")
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise PreparedSetError(f"cannot read {path / 'meta.json'} ({type(err).__name__}: {err}); prepare the set "
                               "again") from None
    if not isinstance(meta, dict) or not {"organ", "source"} <= set(meta):
        raise PreparedSetError(f"{path / 'meta.json'} does not name the organ and source; prepare the set again")
    try:
        with np.load(path / "crops.npz", allow_pickle=False) as z:
            images, masks = z["images"], z["masks"]
    except Exception as err:
        raise PreparedSetError(f"cannot read {path / 'crops.npz'} ({type(err).__name__}: {err}); prepare the set again") \
            from None
    problems = []
    if len(index) != len(images) or len(images) != len(masks):
        problems.append(f"index.csv has {len(index)} rows but crops.npz holds {len(images)} images and {len(masks)} masks")
    if images.ndim != 3 or masks.shape != images.shape:
        problems.append(f"crops.npz images {images.shape} and masks {masks.shape} are not matching (N, H, W) stacks")
    # An empty patient cell would read as the string 'nan' and merge unrelated lesions into one patient.
    empty = [c for c in ("lesion_id", "patient") if index[c].isna().any() or (index[c].str.strip() == "").any()]
    if empty:
        problems.append(f"empty {' and '.join(empty)} values in index.csv")
    if not index["row"].equals(pd.Series(np.arange(len(index)))):
        problems.append("index.csv rows are not 0..N-1 in order")
    if index["lesion_id"].duplicated().any():
        problems.append(f"duplicate lesion ids, e.g. {index.loc[index['lesion_id'].duplicated(), 'lesion_id'].iloc[0]}")
    if not index["label"].isin([0, 1]).all():
        problems.append("labels other than 0 (benign) and 1 (malignant)")
    if len(images) and not np.isfinite(images).all():
        problems.append("crops contain NaN or infinite values")
    if index["organ"].nunique() > 1 or (len(index) and index["organ"].iloc[0] != meta.get("organ")):
        problems.append("index.csv and meta.json disagree on the organ")
    if problems:
        raise PreparedSetError(f"prepared set {path} is inconsistent: " + "; ".join(problems) + "; prepare it again")
    return LesionSet(images.astype(np.float32), masks.astype(bool), index["label"].to_numpy(np.int64),
                     index["patient"].to_numpy(str), index["lesion_id"].to_numpy(str), meta["organ"],
                     meta["source"], {"params": meta.get("params", {})}, index["origin"].to_numpy(str))
