import numpy as np
import pytest

from lesionlib.data import LesionSet, build_lesions, draw_test, load_lesions, nested_sample, patient_split, save_lesions
from lesionlib.data.prep import LesionPrepError, extract_lesion, lesion_bbox


def _disc(size=100, cy=30, cx=60, r=8):
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
    image = np.where(mask, 100.0, 0.0).astype(np.float32)
    return image, mask


def test_crop_is_square_resized_normalised_and_centred_on_the_lesion():
    image, mask = _disc()
    crop, cmask = extract_lesion(image, mask, 32, margin=0.25, intensity_window=(0, 100))
    assert crop.shape == cmask.shape == (32, 32)
    assert crop.dtype == np.float32 and 0 <= crop.min() and crop.max() <= 1
    assert cmask[16, 16] and not cmask[0, 0]  # lesion in the middle, background at the corner
    frac = cmask.mean()
    assert 0.25 < frac < 0.45  # margin of 25 % each side: disc area / box area ~ pi/4 / 1.5^2 ~ 0.3


def test_bbox_margin_and_padding_at_the_border():
    image, mask = _disc(cy=3, cx=3, r=3)
    y0, y1, x0, x1 = lesion_bbox(mask, margin=0.5)
    assert y1 - y0 == x1 - x0 and y0 < 0  # box leaves the slice: crop pads instead of failing
    crop, _ = extract_lesion(image, mask, 16, 0.5, (0, 100))
    assert np.isfinite(crop).all()


def test_empty_mask_nan_and_shape_mismatch_are_clear_errors():
    image, mask = _disc()
    with pytest.raises(LesionPrepError, match="mask is empty"):
        extract_lesion(image, np.zeros_like(mask), 32)
    bad = image.copy()
    bad[0, 0] = np.nan
    with pytest.raises(LesionPrepError, match="NaN"):
        extract_lesion(bad, mask, 32)
    with pytest.raises(LesionPrepError, match="same shape"):
        extract_lesion(image, mask[:50], 32)


def test_phantom_lesion_set_and_patient_disjoint_splits():
    ds = build_lesions("phantom", "lung", n=60, image_size=32, slice_size=64)
    assert ds.images.shape == (60, 32, 32) and ds.counts()["malignant"] == 30
    pool, test = draw_test(ds, 12, seed=0)
    assert len(test) == 12 and not set(ds.patients[pool]) & set(ds.patients[test])
    small, large = nested_sample(ds, pool, 10, seed=1), nested_sample(ds, pool, 30, seed=1)
    assert np.array_equal(small, large[:10])  # nested samples
    assert 10 <= ds.labels[large].sum() <= 20  # stratified
    train, valid = patient_split(ds, large, 0.2, seed=1)
    assert not set(ds.patients[train]) & set(ds.patients[valid]) and len(train) + len(valid) == 30
    with pytest.raises(ValueError, match="only 48 are there after the test set"):
        nested_sample(ds, pool, 49, seed=0)


def test_multi_slice_patients_never_straddle_splits():
    n = 40
    pats = np.repeat([f"p{i}" for i in range(10)], 4)
    labels = np.repeat([0, 1] * 5, 4)
    ds = LesionSet(np.zeros((n, 8, 8), np.float32), np.ones((n, 8, 8), bool), labels, pats,
                   np.array([f"l{i}" for i in range(n)]), "brain", "test")
    pool, test = draw_test(ds, 8, seed=3)
    assert not set(pats[pool]) & set(pats[test])
    train, valid = patient_split(ds, pool, 0.25, seed=3)
    assert not set(pats[train]) & set(pats[valid])


def test_lesion_set_roundtrip(tmp_path):
    ds = build_lesions("phantom", "brain", n=6, image_size=16, slice_size=48)
    save_lesions(ds, tmp_path / "brain")
    back = load_lesions(tmp_path / "brain")
    assert np.array_equal(back.images, ds.images) and list(back.ids) == list(ds.ids) and back.organ == "brain"
    assert not list(tmp_path.glob("*.tmp*"))


def test_unknown_source_or_organ():
    with pytest.raises(ValueError, match="unknown data source 'mnist'"):
        build_lesions("mnist", "lung")
    with pytest.raises(ValueError, match="has no organ 'liver'"):
        build_lesions("phantom", "liver")
