import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from lesionlib.data.phantom import phantom_labels, phantom_slice, phantom_slices


@pytest.mark.parametrize("organ", ["brain", "lung"])
@pytest.mark.parametrize("label", [0, 1])
def test_slice_shapes_types_and_mask(organ, label):
    s = phantom_slice(organ, label, seed=3, size=64)
    assert s.image.shape == s.mask.shape == (64, 64)
    assert s.image.dtype == np.float32 and s.mask.dtype == bool
    assert np.isfinite(s.image).all()
    assert s.label == label
    assert 10 < s.mask.sum() < 0.25 * s.mask.size  # one lesion, not the whole slice


@pytest.mark.parametrize("organ", ["brain", "lung"])
def test_deterministic_for_a_seed(organ):
    a = list(phantom_slices(organ, 4, seed=7, size=48))
    b = list(phantom_slices(organ, 4, seed=7, size=48))
    c = list(phantom_slices(organ, 4, seed=8, size=48))
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask) and x.label == y.label
    assert any(not np.array_equal(x.image, z.image) for x, z in zip(a, c))


def test_organs_have_their_own_intensity_conventions():
    lung = phantom_slice("lung", 0, seed=1, size=64).image
    brain = phantom_slice("brain", 0, seed=1, size=64).image
    assert lung.min() < -900  # air in HU
    assert brain.min() > -100  # MRI units are non-negative-ish


def test_labels_balance_and_both_classes():
    y = phantom_labels(100, 0.47, seed=0)
    assert y.sum() == 47 and set(np.unique(y)) == {0, 1}
    s = list(phantom_slices("lung", 10, seed=0, size=48, malignant_fraction=0.5))
    assert sorted(x.label for x in s) == [0] * 5 + [1] * 5


def test_mask_agrees_with_lesion_and_label_with_cues():
    # The lesion is where the mask is: inside differs from the surrounding ring.
    from scipy import ndimage
    for label in (0, 1):
        s = phantom_slice("lung", label, seed=5, size=96, overlap=0.0)
        ring = ndimage.binary_dilation(s.mask, iterations=4) & ~s.mask
        assert s.image[s.mask].mean() > s.image[ring].mean() + 100  # soft-tissue nodule in aerated lung
        # with no overlap the cues follow the label
        assert all((v > 0.5) == bool(label) for v in s.cues.values())


def test_classes_overlap_so_a_linear_probe_is_not_perfect():
    X, y = [], []
    for s in phantom_slices("brain", 120, seed=2, size=64, overlap=0.6):
        X.append(list(s.cues.values()))
        y.append(s.label)
    acc = cross_val_score(LogisticRegression(), np.array(X), np.array(y), cv=5).mean()
    assert 0.6 < acc < 0.97  # learnable, far from trivial, even on the true cue strengths


def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="unknown phantom organ 'liver'"):
        phantom_slice("liver", 0, seed=0)
    with pytest.raises(ValueError, match="label must be 0"):
        phantom_slice("lung", 2, seed=0)
