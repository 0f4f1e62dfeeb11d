"""Writers of small fake slices in the exact layout of Cheng's brain tumour files (never downloaded).

Cheng's files are MATLAB v7.3: an HDF5 file behind a 512-byte MATLAB header (the HDF5 userblock),
a group ``cjdata`` (MATLAB struct) whose fields are datasets tagged with ``MATLAB_class``. MATLAB is
column-major, so HDF5 holds every array transposed: an H x W image is an HDF5 dataset of shape (W, H).
"""
from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
from scipy.io import savemat


def matlab_header(version: str = "7.3") -> bytes:
    """The 512-byte MATLAB header: descriptive text, subsystem offset, version 0x0200 and 'IM'."""
    text = (f"MATLAB {version} MAT-file, Platform: GLNXA64, Created on: "
            f"{time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 .").encode("ascii")
    head = text.ljust(116, b" ") + b" " * 8  # bytes 116-123: subsystem data offset (unused)
    head += np.uint16(0x0200).tobytes() + b"IM"  # little-endian writer: 'IM', version reads as 0x0200
    return head.ljust(512, b"\0")


def _attr_str(obj, name, value):
    """A fixed-length ASCII string attribute, as MATLAB writes MATLAB_class."""
    obj.attrs.create(name, np.bytes_(value))


def _dataset(grp, name, data, mclass, int_decode=None, compress=False):
    """A field of a MATLAB struct: `data` in MATLAB's orientation, stored transposed."""
    data = np.atleast_2d(np.asarray(data))
    ds = grp.create_dataset(name, data=np.ascontiguousarray(data.T),
                            **({"compression": "gzip", "chunks": True} if compress else {}))
    _attr_str(ds, "MATLAB_class", mclass)
    if int_decode is not None:
        ds.attrs.create("MATLAB_int_decode", np.int32(int_decode))
    return ds


def mask_border(mask: np.ndarray) -> np.ndarray:
    """A crude tumour border: the mask's bounding-box corners as a flat [x1, y1, x2, y2, ...] list."""
    ys, xs = np.nonzero(mask)
    pts = [(xs.min(), ys.min()), (xs.max(), ys.min()), (xs.max(), ys.max()), (xs.min(), ys.max())]
    return np.asarray(pts, dtype=np.float64).ravel()


def write_cheng_mat(path, image, mask, label, pid, border=None, skip=(), group="cjdata") -> Path:
    """Write one slice in Cheng's v7.3 layout; `skip` leaves out fields, `group` renames the struct."""
    path = Path(path)
    image, mask = np.asarray(image, dtype=np.int16), np.asarray(mask, dtype=bool)
    border = mask_border(mask) if border is None and mask.any() else (np.zeros(0) if border is None else border)
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as fh:
        grp = fh.create_group(group)
        _attr_str(grp, "MATLAB_class", "struct")
        fields = {
            "label": lambda: _dataset(grp, "label", np.array([[float(label)]]), "double"),
            "PID": lambda: _dataset(grp, "PID", np.array([[ord(c) for c in pid]], dtype=np.uint16), "char", 2),
            "image": lambda: _dataset(grp, "image", image, "int16", compress=True),
            "tumorBorder": lambda: _dataset(grp, "tumorBorder", np.asarray(border, float).reshape(1, -1), "double"),
            "tumorMask": lambda: _dataset(grp, "tumorMask", mask.astype(np.uint8), "logical", 1, compress=True),
        }
        for name, write in fields.items():
            if name not in skip:
                write()
    with open(path, "r+b") as fh:  # h5py leaves the userblock empty: MATLAB puts its header there
        fh.write(matlab_header())
    return path


def write_v5_mat(path, image, mask, label, pid, border=None) -> Path:
    """Write one slice with the same ``cjdata`` struct as an older MATLAB v5 file (scipy.io.savemat)."""
    image, mask = np.asarray(image, dtype=np.int16), np.asarray(mask, dtype=bool)
    border = mask_border(mask) if border is None else np.asarray(border, float)
    savemat(path, {"cjdata": {"label": np.array([[float(label)]]), "PID": pid, "image": image,
                              "tumorMask": mask, "tumorBorder": border.reshape(1, -1)}})
    return Path(path)


def blob_slice(size=(64, 64), centre=(20, 40), radius=6, seed=0):
    """A fake T1 slice: dim noisy background, a bright disc where the (returned) mask is."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2
    image = rng.integers(80, 200, size=size).astype(np.int16)
    image[mask] = 900 + rng.integers(0, 100, size=int(mask.sum()))
    return image, mask


# (file stem, label, PID): 6 slices, 3 patients, all three classes.
SLICES = [(1, 1, "100360"), (2, 1, "100360"), (3, 2, "112649"), (4, 2, "112649"), (10, 3, "MR040"),
          (11, 2, "MR040")]


def write_folder(folder, slices=SLICES, size=(64, 64)) -> Path:
    """A folder of fake slices ``<stem>.mat`` (plus a cvind.mat that must not be read as a slice)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (stem, label, pid) in enumerate(slices):
        image, mask = blob_slice(size, centre=(20 + i, 30 + 2 * i), radius=5 + i % 3, seed=i)
        write_cheng_mat(folder / f"{stem}.mat", image, mask, label, pid)
    savemat(folder / "cvind.mat", {"cvind": np.arange(len(slices))[None]})
    return folder
