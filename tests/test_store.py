import json

import numpy as np
import pandas as pd
import pytest

from lesionlib.data import PreparedSetError, build_lesions, load_lesions, save_lesions


@pytest.fixture
def prepared(tmp_path):
    ds = build_lesions("phantom", "brain", n=8, image_size=16, slice_size=48)
    return ds, save_lesions(ds, tmp_path / "brain", params={"image_size": 16})


def test_roundtrip_keeps_everything(prepared):
    ds, path = prepared
    back = load_lesions(path)
    assert np.array_equal(back.images, ds.images) and np.array_equal(back.masks, ds.masks)
    assert list(back.ids) == list(ds.ids) and list(back.patients) == list(ds.patients)
    assert list(back.labels) == list(ds.labels) and back.organ == "brain" and back.source == "phantom"
    assert json.loads((path / "meta.json").read_text())["counts"]["lesions"] == 8
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_overwrite_replaces_a_set_completely(prepared, tmp_path):
    ds, path = prepared
    save_lesions(ds.subset([0, 1, 2]), path)
    assert len(load_lesions(path)) == 3


def test_index_and_crops_that_disagree_are_refused(prepared):
    _, path = prepared
    idx = pd.read_csv(path / "index.csv")
    idx.iloc[:-1].to_csv(path / "index.csv", index=False)
    with pytest.raises(PreparedSetError, match="index.csv has 7 rows but crops.npz holds 8 images"):
        load_lesions(path)


def test_missing_files_and_bad_labels(prepared, tmp_path):
    _, path = prepared
    with pytest.raises(PreparedSetError, match="no such directory"):
        load_lesions(tmp_path / "nothing")
    idx = pd.read_csv(path / "index.csv")
    idx.loc[0, "label"] = 3
    idx.to_csv(path / "index.csv", index=False)
    with pytest.raises(PreparedSetError, match="labels other than 0"):
        load_lesions(path)
    (path / "crops.npz").unlink()
    with pytest.raises(PreparedSetError, match="crops.npz missing"):
        load_lesions(path)


def test_prepared_source_reads_the_store(prepared, tmp_path):
    ds, _ = prepared
    got = build_lesions("prepared", "brain", data_dir=str(tmp_path), image_size=16)
    assert len(got) == len(ds)
    with pytest.raises(ValueError, match="asks for image_size 32"):
        build_lesions("prepared", "brain", data_dir=str(tmp_path), image_size=32)
    with pytest.raises(FileNotFoundError, match="no prepared lung lesions"):
        build_lesions("prepared", "lung", data_dir=str(tmp_path))
