"""Jun Cheng's brain tumour files from figshare (article 1512427): download, verify, extract.

The five files of the article (`FILES`: four zips of MATLAB slices and ``cvind.mat``) are downloaded from
figshare's file endpoint (`BASE_URL`), resumably (a ``.part`` file continues with an HTTP range request)
and checked against their size and MD5 before they are renamed into place; the zips' ``.mat`` files are
then extracted flat into ``<dest>/mat/``, each appearing whole or not at all. Reading the slices is
`lesionlib.data.brain`.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from .brain import ARTICLE_URL, BrainDataError, mat_files

BASE_URL = "https://ndownloader.figshare.com/files"


@dataclass(frozen=True)
class BrainFile:
    """One file of the figshare article: its name, figshare file id, size in bytes and MD5."""

    name: str
    file_id: int
    size: int
    md5: str


FILES = (
    BrainFile("brainTumorDataPublic_1-766.zip", 3381290, 214401279, "74b949ad33f042e6e103523091cd1428"),
    BrainFile("brainTumorDataPublic_767-1532.zip", 3381296, 217848429, "7e8a875500d2c8a346f270538e29890e"),
    BrainFile("brainTumorDataPublic_1533-2298.zip", 3381293, 215563856, "8227bf6080cb71f15a88be8d25c79ae7"),
    BrainFile("brainTumorDataPublic_2299-3064.zip", 3381302, 231679762, "b378a80d6174e5317d59eb28430c6652"),
    BrainFile("cvind.mat", 7005344, 5736, "5ea82eb3212c9fcb84290ccf0beb486d"),
)

_CHUNK = 1 << 20


# ----------------------------------------------------------------------------------------- download

def md5sum(path, chunk: int = _CHUNK) -> str:
    """Hex MD5 of the file at `path`."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _is_complete(path: Path, f: BrainFile) -> bool:
    """True if `path` holds `f` (right size, then right MD5; the size check is free)."""
    return path.is_file() and path.stat().st_size == f.size and md5sum(path) == f.md5


def _zip_stems(name: str):
    """Slice numbers a zip named ``..._<first>-<last>.zip`` holds, or None if the name says nothing."""
    m = re.search(r"_(\d+)-(\d+)\.zip$", name)
    return None if m is None else {str(i) for i in range(int(m[1]), int(m[2]) + 1)}


def _have_slices(dest: Path, f: BrainFile) -> bool:
    """True if every slice of zip `f` is already extracted under `dest` (then the zip is not needed)."""
    stems = _zip_stems(f.name)
    return bool(stems) and stems <= {p.stem for p in mat_files(dest, missing_ok=True)}


def _request(url: str, start: int):
    """Open `url`, asking for the bytes from `start` on when resuming."""
    headers = {"User-Agent": "lesionlib (brain tumour data fetch)"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)


def _resume_offset(resp, have: int) -> int:
    """Where the body of `resp` starts: `have` for a matching 206 reply, else 0 (the server sent it all)."""
    if not have or resp.status != 206:
        return 0
    m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return have if m and int(m[1]) == have else 0


def _download(url: str, part: Path, f: BrainFile, progress=None, tries: int = 3) -> None:
    """Download `url` into `part`, continuing what `part` already holds; stop once `f.size` bytes are there."""
    for _ in range(tries):
        have = part.stat().st_size if part.exists() else 0
        if have > f.size:  # not a prefix of this file: start over
            part.unlink()
            have = 0
        if have == f.size:
            return
        try:
            resp = _request(url, have)
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:  # the server rejects our range: start over
                part.unlink()
                continue
            raise
        with resp:
            have = _resume_offset(resp, have)
            with open(part, "ab" if have else "wb") as fh:
                while block := resp.read(_CHUNK):
                    fh.write(block)
                    have += len(block)
                    if progress:
                        progress(f.name, have, f.size)
        if have >= f.size:
            return
    # The connection kept ending early; what we have stays in `part` for the next fetch to resume.


def _fetch_one(dest: Path, f: BrainFile, base_url: str, progress=None) -> Path:
    """Download `f` into `dest` (resumable, MD5-checked) unless a verified copy is already there."""
    target = dest / f.name
    if target.exists():
        if _is_complete(target, f):
            return target
        raise BrainDataError(f"{target} exists but is not the expected file ({target.stat().st_size} bytes, "
                             f"expected {f.size} bytes with MD5 {f.md5}); delete it and fetch again")
    url = f"{base_url.rstrip('/')}/{f.file_id}"
    part = dest / (f.name + ".part")
    try:
        _download(url, part, f, progress)
    except (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, OSError) as err:
        raise BrainDataError(f"downloading {f.name} from {url} failed ({err}); run the fetch again to resume, or "
                             f"download the files by hand from {ARTICLE_URL} into {dest}") from None
    size = part.stat().st_size if part.exists() else 0
    if size < f.size:
        raise BrainDataError(f"downloading {f.name} from {url} stopped at {size} of {f.size} bytes; run the fetch "
                             f"again to resume, or download the files by hand from {ARTICLE_URL} into {dest}")
    got = md5sum(part)
    if got != f.md5:  # never rename a bad download into place
        raise BrainDataError(f"{f.name}: MD5 {got} does not match the expected {f.md5}; the download in {part} is "
                             "corrupt or not this file: delete it and fetch again")
    os.replace(part, target)
    return target


def _extracted(zf: zipfile.ZipFile, out: Path) -> bool:
    """True if every .mat member of `zf` already sits in `out` with its size."""
    members = [m for m in zf.infolist() if _is_slice_member(m)]
    return bool(members) and all((out / Path(m.filename).name).is_file()
                                 and (out / Path(m.filename).name).stat().st_size == m.file_size for m in members)


def _is_slice_member(m: zipfile.ZipInfo) -> bool:
    """A .mat file in a zip, not a directory or macOS resource fork."""
    name = Path(m.filename)
    return not m.is_dir() and name.suffix.lower() == ".mat" and not name.name.startswith(".") \
        and "__MACOSX" not in name.parts


def extract(zip_path, out_dir) -> int:
    """Extract the .mat files of `zip_path` flat into `out_dir`, each appearing complete or not at all."""
    zip_path, out = Path(zip_path), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            if _extracted(zf, out):
                return 0
            # Extract into a hidden sibling directory, then move file by file: a crash leaves no half file.
            tmp = Path(tempfile.mkdtemp(prefix=f".extract-{zip_path.stem}-", dir=out.parent))
            try:
                n = 0
                for m in zf.infolist():
                    if not _is_slice_member(m):
                        continue
                    name = Path(m.filename).name  # flatten, and never write outside `tmp`
                    with zf.open(m) as src, open(tmp / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
                    os.replace(tmp / name, out / name)
                    n += 1
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise BrainDataError(f"{zip_path} is not a readable zip file ({err}); delete it and fetch again") from None
    return n


def fetch(dest_dir, files=FILES, base_url: str = BASE_URL, progress=None) -> Path:
    """Download (resumably, MD5-checked) and extract Cheng's files into `dest_dir`; returns `dest_dir`.

    Files already present and verified are not downloaded again, nor are zips whose slices are already
    extracted, so pointing `dest_dir` at a copy made by hand downloads nothing. Slices go to
    ``dest_dir/mat/``. `progress(name, done_bytes, total_bytes)` is called while downloading.
    """
    dest = Path(dest_dir).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        if f.name.endswith(".zip") and not (dest / f.name).exists() and _have_slices(dest, f):
            continue
        path = _fetch_one(dest, f, base_url, progress)
        if f.name.endswith(".zip"):
            extract(path, dest / "mat")
    return dest
