"""Cheng's brain tumour reader: files in the exact MATLAB v7.3 layout, written here; fetch against a local server."""
import hashlib
import io
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import h5py
import numpy as np
import pytest
from lesionlib.fixtures.brain import SLICES, blob_slice, write_cheng_mat, write_folder, write_v5_mat

from lesionlib.data.brain import (EXPECTED, BrainDataError, binary_label, brain_lesions, check_expected, mat_files,
                                  read_mat, summary)
from lesionlib.data.brain_fetch import BrainFile, fetch


def _asymmetric(h=512, w=512):
    """A slice whose only bright block sits near the top, right of centre: a transpose moves it."""
    image = np.full((h, w), 100, np.int16)
    mask = np.zeros((h, w), bool)
    mask[10:30, w // 2:w // 2 + w // 4] = True
    image[mask] = 1000
    return image, mask


# ---------------------------------------------------------------------------------------------- read

@pytest.mark.parametrize("h,w", [(512, 512), (256, 256), (40, 70)])
def test_read_mat_returns_matlab_orientation_label_pid_border(tmp_path, h, w):
    image, mask = _asymmetric(h, w)
    border = np.array([35.0, 12.0, 40.5, 29.0, 33.0, 20.0])
    p = write_cheng_mat(tmp_path / "7.mat", image, mask, 2, "100360", border)
    assert p.read_bytes()[:10] == b"MATLAB 7.3" and p.read_bytes()[126:128] == b"IM"
    r = read_mat(p)
    assert r.image.shape == r.mask.shape == (h, w) and r.mask.dtype == bool
    assert np.array_equal(r.image, image) and np.array_equal(r.mask, mask)
    rows, cols = np.nonzero(r.image == 1000)  # the block stays near the top, right of centre
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10, 29, w // 2, w // 2 + w // 4 - 1)
    assert r.label == 2 and r.pid == "100360" and isinstance(r.pid, str)
    assert r.border.shape == (3, 2) and np.array_equal(r.border.ravel(), border)


def test_read_v5_fallback(tmp_path):
    image, mask = _asymmetric(64, 96)
    p = write_v5_mat(tmp_path / "3.mat", image, mask, 3, "MR040")
    r = read_mat(p)
    assert np.array_equal(r.image, image) and np.array_equal(r.mask, mask)
    assert r.label == 3 and r.pid == "MR040" and r.border.shape == (4, 2)


def test_binary_labels():
    assert [binary_label(x) for x in (1, 2, 3)] == [0, 1, 0]
    with pytest.raises(BrainDataError, match="one of"):
        binary_label(4)


def _bad_files(tmp_path):
    image, mask = blob_slice()
    good = write_cheng_mat(tmp_path / "good.mat", image, mask, 1, "P1")
    trunc = tmp_path / "truncated.mat"
    trunc.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    short = tmp_path / "short.mat"  # cut inside the HDF5 superblock
    short.write_bytes(good.read_bytes()[:530])
    text = tmp_path / "text.mat"
    text.write_text("patient,label\n1,2\n")
    return {
        trunc: "truncated or corrupt",
        short: "truncated or corrupt",
        text: "not a MATLAB",
        write_cheng_mat(tmp_path / "nocj.mat", image, mask, 1, "P1", group="other"): "no 'cjdata'",
        write_cheng_mat(tmp_path / "nomask.mat", image, mask, 1, "P1", skip=("tumorMask",)): "'tumorMask'",
        write_cheng_mat(tmp_path / "empty.mat", image, np.zeros_like(mask), 1, "P1"): "empty",
        write_cheng_mat(tmp_path / "label.mat", image, mask, 5, "P1"): "label",
    }


def test_each_bad_input_is_one_clear_error_naming_the_file(tmp_path):
    bad = _bad_files(tmp_path)
    # Shape mismatch: rewrite one file with a mask of another size.
    image, _ = blob_slice()
    _, small = blob_slice((32, 32), centre=(10, 10))
    shape = write_cheng_mat(tmp_path / "shape.mat", image[:32, :32], small, 1, "P1")
    with h5py.File(shape, "r+") as fh:  # a mask that does not match the image
        del fh["cjdata/tumorMask"]
        fh["cjdata"].create_dataset("tumorMask", data=np.ones((20, 32), np.uint8))
    bad[shape] = "tumorMask is"
    for path, reason in bad.items():
        with pytest.raises(BrainDataError) as err:
            read_mat(path)
        assert path.name in str(err.value) and reason in str(err.value), str(err.value)


# ------------------------------------------------------------------------------------ lesion set

def test_brain_lesions_counts_patients_crops(tmp_path):
    d = write_folder(tmp_path / "data" / "mat")
    files = mat_files(tmp_path / "data")
    assert [p.name for p in files] == [f"{s}.mat" for s, _, _ in SLICES]  # numeric order, no cvind.mat
    ds = brain_lesions(data_dir=tmp_path / "data", image_size=32)
    assert len(ds) == 6 and ds.images.shape == (6, 32, 32) and ds.masks.shape == (6, 32, 32)
    assert ds.images.dtype == np.float32 and 0 <= ds.images.min() and ds.images.max() <= 1
    assert ds.labels.tolist() == [0, 0, 1, 1, 0, 1]
    assert ds.patients.tolist() == [pid for _, _, pid in SLICES]
    assert ds.ids.tolist() == [f"brain-{s}" for s, _, _ in SLICES] and ds.origins[4] == "10.mat"
    assert ds.organ == ds.source == "brain"
    assert ds.meta["class_counts"] == {"meningioma": 2, "glioma": 3, "pituitary": 1}
    assert ds.masks[:, 16, 16].all()  # the crop is centred on the tumour
    assert ds.images[:, 16, 16].mean() > ds.images[:, 0, 0].mean()  # ... which is the bright blob
    s = summary(ds)
    assert s == {"slices": 6, "patients": 3, "meningioma": 2, "glioma": 3, "pituitary": 1, "benign": 3,
                 "malignant": 3}
    assert set(check_expected(s)) == set(EXPECTED) and check_expected(dict(EXPECTED)) == {}
    assert len(brain_lesions(data_dir=d, image_size=16, limit=2)) == 2
    from lesionlib.data import build_lesions  # the registered source (once registry imports brain.py)
    from lesionlib.data.registry import SOURCES
    assert SOURCES["brain"].build is brain_lesions
    assert len(build_lesions("brain", "brain", data_dir=d, image_size=16, n=999)) == 6


def test_brain_lesions_reports_all_bad_slices_at_once(tmp_path):
    d = write_folder(tmp_path)
    (d / "3.mat").write_text("not a mat file")
    image, mask = blob_slice()
    write_cheng_mat(d / "11.mat", image, np.zeros_like(mask), 2, "MR040")
    with pytest.raises(BrainDataError, match=r"2 of 6 brain tumour slices") as err:
        brain_lesions(data_dir=d, image_size=16)
    assert "3.mat" in str(err.value) and "11.mat" in str(err.value)
    with pytest.raises(BrainDataError, match="no brain tumour slices"):
        brain_lesions(data_dir=tmp_path / "nothing")


# ---------------------------------------------------------------------------------------------- fetch

class _Server:
    """A local HTTP server serving `blobs` at /files/<id>, honouring Range unless told not to."""

    def __init__(self, blobs, honour_range=True):
        self.blobs, self.honour_range, self.requests = blobs, honour_range, []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                srv.requests.append((self.path, self.headers.get("Range")))
                data = srv.blobs.get(self.path.rsplit("/", 1)[-1])
                if data is None:
                    self.send_error(404)
                    return
                rng, start = self.headers.get("Range"), 0
                if rng and srv.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _zip_of(folder, names):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n in names:
            zf.write(folder / n, n)
    return buf.getvalue()


@pytest.fixture
def fake_figshare(tmp_path):
    """Two zips of fake slices and a cvind.mat, with their table of files."""
    src = write_folder(tmp_path / "src")
    blobs = {"11": _zip_of(src, ["1.mat", "2.mat", "3.mat"]), "12": _zip_of(src, ["4.mat", "10.mat", "11.mat"]),
             "13": (src / "cvind.mat").read_bytes()}
    names = {"11": "fake_1-3.zip", "12": "fake_part2.zip", "13": "cvind.mat"}
    files = tuple(BrainFile(names[k], int(k), len(b), hashlib.md5(b).hexdigest()) for k, b in blobs.items())
    return blobs, files


def test_fetch_downloads_verifies_extracts(tmp_path, fake_figshare):
    blobs, files = fake_figshare
    dest = tmp_path / "dest"
    with _Server(blobs) as srv:
        assert fetch(dest, files, srv.url) == dest
    assert len(srv.requests) == 3 and all(r is None for _, r in srv.requests)
    assert sorted(os.listdir(dest)) == ["cvind.mat", "fake_1-3.zip", "fake_part2.zip", "mat"]
    assert [p.name for p in mat_files(dest)] == [f"{s}.mat" for s, _, _ in SLICES]
    assert len(brain_lesions(data_dir=dest, image_size=16)) == 6
    # Everything present and verified: nothing is requested again.
    with _Server(blobs) as srv:
        fetch(dest, files, srv.url)
    assert srv.requests == []
    # Only the extracted slices (no zips), as a user who unzipped by hand has: nothing is downloaded.
    (dest / files[0].name).unlink()
    with _Server(blobs) as srv:
        fetch(dest, files, srv.url)
    assert srv.requests == []


@pytest.mark.parametrize("honour_range", [True, False])
def test_fetch_resumes_from_part_file(tmp_path, fake_figshare, honour_range):
    blobs, files = fake_figshare
    dest = tmp_path / "dest"
    dest.mkdir()
    half = len(blobs["11"]) // 2
    (dest / "fake_1-3.zip.part").write_bytes(blobs["11"][:half])
    with _Server(blobs, honour_range) as srv:
        fetch(dest, files[:1], srv.url)
    assert srv.requests == [("/files/11", f"bytes={half}-")]
    assert (dest / "fake_1-3.zip").read_bytes() == blobs["11"] and not (dest / "fake_1-3.zip.part").exists()
    assert [p.name for p in mat_files(dest)] == ["1.mat", "2.mat", "3.mat"]


def test_fetch_wrong_md5_raises_and_leaves_no_final_file(tmp_path, fake_figshare):
    blobs, files = fake_figshare
    f = files[0]
    bad = BrainFile(f.name, f.file_id, f.size, "0" * 32)
    dest = tmp_path / "dest"
    with _Server(blobs) as srv, pytest.raises(BrainDataError) as err:
        fetch(dest, (bad,), srv.url)
    msg = str(err.value)
    assert f.name in msg and "0" * 32 in msg and f.md5 in msg and "delete" in msg
    assert not (dest / f.name).exists() and not (dest / "mat").exists()


def test_fetch_network_errors_name_the_url(tmp_path, fake_figshare):
    blobs, files = fake_figshare
    dest = tmp_path / "dest"
    with _Server({}) as srv, pytest.raises(BrainDataError, match=r"/files/11.*by hand"):
        fetch(dest, files[:1], srv.url)  # 404
    with _Server({}) as srv:
        url = srv.url
    with pytest.raises(BrainDataError, match=r"127\.0\.0\.1.*by hand"):
        fetch(dest, files[:1], url)  # nothing listening any more


def test_phantom_folder_in_chengs_format_reads_back(tmp_path):
    from lesionlib.data.brain import brain_lesions
    from lesionlib.fixtures.brain import write_phantom_folder
    folder = write_phantom_folder(tmp_path / "cheng", n_patients=3, slices_per_patient=2, size=64)
    ds = brain_lesions(data_dir=folder, image_size=16)
    assert len(ds) == 6 and ds.counts()["patients"] == 3
    assert ds.counts()["malignant"] == 2  # patient 2 of 3 is the glioma patient
