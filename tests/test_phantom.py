import numpy as np
from scipy import ndimage
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
    # learnable, yet not perfect even on the true cue strengths: four cues, each with gap 0.5 and sd 0.3,
    # give a Bayes accuracy of about Phi(sqrt(4) * 0.5 / 0.3 / 2) = 0.95
    assert 0.6 < acc < 0.985


def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="unknown phantom organ 'liver'"):
        phantom_slice("liver", 0, seed=0)
    with pytest.raises(ValueError, match="label must be 0"):
        phantom_slice("lung", 2, seed=0)


# --- shared cues: how much malignancy signal the organs have in common ----------------------------

from sklearn.metrics import roc_auc_score  # noqa: E402

from lesionlib.data.phantom import (CROP_WINDOW, CUES, OWN_CUES, crop_slice, cue_gaps, cue_table,  # noqa: E402
                                    cue_visibility)
from lesionlib.data.registry import CT_LESION_WINDOW, build_lesions, lesion_index  # noqa: E402


def _cues(organ, shared, seed, n=400, overlap=0.6):
    """True cue strengths and labels of `n` phantom lesions."""
    s = list(phantom_slices(organ, n, seed=seed, size=32, overlap=overlap, shared=shared))
    return np.array([[x.cues[k] for k in CUES] for x in s]), np.array([x.label for x in s])


def _auc(train, test):
    model = LogisticRegression().fit(*train)
    return roc_auc_score(test[1], model.predict_proba(test[0])[:, 1])


@pytest.mark.parametrize("organ", ["brain", "lung"])
@pytest.mark.parametrize("shared", [0.0, 0.3, 1.0])
def test_cue_gaps_keep_the_class_distance_fixed(organ, shared):
    gaps = cue_gaps(organ, shared)
    assert set(gaps) == set(CUES)
    assert np.hypot.reduce(list(gaps.values())) == pytest.approx(1.0)  # |gap| = 0.5 * sqrt(4) at every shared
    own, other = [gaps[k] for k in OWN_CUES[organ]], [gaps[k] for k in CUES if k not in OWN_CUES[organ]]
    assert all(g == pytest.approx(1 / np.sqrt(2 * (1 + shared ** 2))) for g in own)  # 0.5 at shared 1
    assert all(g == pytest.approx(shared / np.sqrt(2 * (1 + shared ** 2))) for g in other)


@pytest.mark.parametrize("shared", [0.0, 1.0])
def test_cues_learnt_on_one_organ_transfer_only_when_shared(shared):
    sets = {organ: (_cues(organ, shared, seed=1), _cues(organ, shared, seed=2)) for organ in ("brain", "lung")}
    for src, dst in (("brain", "lung"), ("lung", "brain")):
        within = _auc(sets[src][0], sets[src][1])
        across = _auc(sets[src][0], sets[dst][1])
        assert within > 0.95, (src, within)
        if shared == 0:
            assert abs(across - 0.5) < 0.1, (src, dst, across)  # the other organ's label rides on other cues
        else:
            assert across > 0.8, (src, dst, across)


@pytest.mark.parametrize("organ", ["brain", "lung"])
def test_the_task_is_equally_hard_at_every_shared(organ):
    # overlap 1.5 keeps the AUC off its ceiling, so a change of difficulty would show
    auc = {shared: _auc(_cues(organ, shared, 3, overlap=1.5), _cues(organ, shared, 4, overlap=1.5))
           for shared in (0.0, 1.0)}
    assert 0.7 < auc[1.0] < 0.9
    assert abs(auc[0.0] - auc[1.0]) < 0.05, auc


# --- several slices per patient ------------------------------------------------------------------

def test_slices_of_one_patient_show_one_lesion():
    s = list(phantom_slices("brain", 10, seed=4, size=48, slices_per_patient=3))
    assert len(s) == 10
    patients = [s[0:3], s[3:6], s[6:9], s[9:10]]  # the last patient has fewer slices
    for p in patients:
        assert len({x.label for x in p}) == 1 and all(x.cues == p[0].cues for x in p)
        assert all(not np.array_equal(x.image, p[0].image) for x in p[1:])
        assert all(not np.array_equal(x.mask, p[0].mask) for x in p[1:])
    assert len({tuple(p[0].cues.values()) for p in patients}) == 4  # one lesion each


@pytest.mark.parametrize("slices_per_patient", [1, 3])
@pytest.mark.parametrize("organ", ["brain", "lung"])
def test_phantom_index_matches_the_lesions(organ, slices_per_patient):
    kw = dict(n=11, seed=2, malignant_fraction=0.5, slices_per_patient=slices_per_patient, shared=0.4)
    ds = build_lesions("phantom", organ, image_size=16, slice_size=48, **kw)
    index = lesion_index("phantom", organ, image_size=16, slice_size=48, **kw)
    assert len(ds) == len(index) == 11
    assert np.array_equal(index.labels, ds.labels) and np.array_equal(index.patients, ds.patients)
    assert ds.meta["shared"] == 0.4 and ds.meta["slices_per_patient"] == slices_per_patient
    assert len(set(ds.ids)) == 11
    n_patients = -(-11 // slices_per_patient)
    assert ds.counts()["patients"] == n_patients
    by_patient = {p: set(ds.labels[ds.patients == p]) for p in set(ds.patients)}
    assert all(len(v) == 1 for v in by_patient.values())  # a patient has one label
    assert sum(v == {1} for v in by_patient.values()) == round(n_patients * 0.5)  # counted by patients
    if slices_per_patient == 1:
        assert np.array_equal(ds.patients, ds.ids)  # as before: the patient id is the lesion id
    else:
        assert ds.patients[0] == f"phantom-{organ}-2-p0000" and ds.patients[-1] == f"phantom-{organ}-2-p0003"


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.8])
def test_malignant_fraction_counts_patients(fraction):
    for seed in range(5):
        index = lesion_index("phantom", "lung", n=20, seed=seed, malignant_fraction=fraction, slices_per_patient=3)
        first = np.r_[True, index.patients[1:] != index.patients[:-1]]  # each patient's first slice
        assert first.sum() == 7 and index.labels[first].sum() == round(7 * fraction)
        assert index.labels.sum() == 3 * index.labels[first][:-1].sum() + 2 * index.labels[first][-1]


def test_crops_are_prepared_as_the_lesion_set_prepares_them():
    assert CROP_WINDOW["lung"] == CT_LESION_WINDOW and CROP_WINDOW["brain"] is None
    for organ in ("brain", "lung"):
        ds = build_lesions("phantom", organ, n=3, image_size=16, slice_size=48)
        for img, s in zip(ds.images, phantom_slices(organ, 3, size=48)):
            assert np.array_equal(img, crop_slice(organ, s, 16)[0])


# --- cues equally visible in both organs ----------------------------------------------------------

@pytest.mark.parametrize("image_size", [32, 64])
def test_every_cue_is_about_as_visible_in_lung_as_in_brain(image_size):
    table = cue_table(n=16, image_size=image_size)
    ratio = table.loc["lung / brain"]
    assert ((ratio >= 0.67) & (ratio <= 1.5)).all(), table


@pytest.mark.parametrize("organ", ["brain", "lung"])
@pytest.mark.parametrize("cue", CUES)
def test_cue_visibility_sees_the_cue_and_nothing_else(organ, cue):
    assert cue_visibility(organ, cue, n=2, size=64, image_size=16) > 0.002  # 0 vs 1 changes the crop
    assert cue_visibility(organ, cue, n=2, size=64, image_size=16, low=0.5, high=0.5) == 0.0  # same value, same pixels
    # a cue changes only what it draws: texture cues keep the mask, no cue moves the rest of the slice
    cues = dict.fromkeys(CUES, 0.5)
    a = phantom_slice(organ, 1, seed=3, size=64, cues=dict(cues, **{cue: 0.0}))
    b = phantom_slice(organ, 1, seed=3, size=64, cues=dict(cues, **{cue: 1.0}))
    if cue in ("rim", "heterogeneity"):
        assert np.array_equal(a.mask, b.mask)
    elif cue == "spiculation":
        # spicules grow out of a smaller body: the lesion keeps its area and reaches farther out
        assert abs(int(b.mask.sum()) - int(a.mask.sum())) <= 0.1 * a.mask.sum()
        centre = np.argwhere(a.core).mean(0)
        reach = [np.hypot(*(np.argwhere(m) - centre).T).max() for m in (a.mask, b.mask)]
        assert reach[1] > reach[0] + 1
    else:
        assert (a.mask & b.mask).sum() > 0.6 * (a.mask | b.mask).sum()  # the same lesion, deformed in place
    assert np.array_equal(a.core, b.core)  # no cue moves the lesion's core, on which the crop is boxed
    far = ~ndimage.binary_dilation(a.mask | b.mask, np.ones((3, 3)), iterations=8)  # beyond the edge blur
    assert np.array_equal(a.image[far], b.image[far])
    assert a.cues[cue] == 0.0 and b.cues[cue] == 1.0


# --- no shortcuts: cues change what a lesion looks like, not its crop's scale or simple statistics ---------
# (what the crops carry across organs is measured in tests/test_shortcuts.py)

@pytest.mark.parametrize("organ", ["brain", "lung"])
def test_shape_cues_keep_the_lesions_area_and_its_crops_box(organ):
    for seed in range(4):
        slices = [phantom_slice(organ, 1, seed=seed, size=96, cues=dict.fromkeys(CUES, v)) for v in (0.0, 1.0)]
        areas = [int(s.mask.sum()) for s in slices]
        assert abs(areas[1] - areas[0]) <= 0.05 * areas[0], areas  # spicules and lobes on an area-preserving star
        assert np.array_equal(slices[0].core, slices[1].core)
        crops = [crop_slice(organ, s, 32)[1] for s in slices]
        assert abs(int(crops[1].sum()) - int(crops[0].sum())) <= 0.1 * crops[0].sum()  # the same fill fraction


def test_crop_slice_boxes_the_core_or_else_the_mask():
    from lesionlib.data.phantom import PhantomSlice
    from lesionlib.data.prep import extract_lesion

    s = phantom_slice("lung", 1, seed=2, size=96, cues=dict.fromkeys(CUES, 1.0))
    img, msk = crop_slice("lung", s, 32)
    assert np.array_equal(img, extract_lesion(s.image, s.core, 32, 0.25, CT_LESION_WINDOW)[0])
    assert msk.shape == (32, 32) and msk.sum() > 0
    bare = PhantomSlice(s.image, s.mask, s.label, s.cues)  # a slice without a core: boxed on its mask as before
    assert np.array_equal(crop_slice("lung", bare, 32)[0], extract_lesion(s.image, s.mask, 32, 0.25, CT_LESION_WINDOW)[0])


@pytest.mark.parametrize("organ", ["brain", "lung"])
@pytest.mark.parametrize("cue", ["rim", "heterogeneity"])
def test_intensity_cues_move_neither_the_lesions_mean_nor_its_spread(organ, cue):
    # a cue value and its mirror (1 - value): the same lesion mean exactly, about the same sd; the pattern differs
    means, sds, diffs = [], [], []
    for seed in range(12):
        a, b = (phantom_slice(organ, 1, seed=seed, size=96, cues=dict(dict.fromkeys(CUES, 0.5), **{cue: v}))
                for v in (0.15, 0.85))
        means.append(a.image[a.mask].mean() - b.image[b.mask].mean())
        sds.append(a.image[a.mask].std() / b.image[b.mask].std())
        diffs.append(np.abs(a.image - b.image)[a.mask].mean())
    assert np.abs(means).max() < 1.0  # organ units (HU for lung): the patterns have zero mean in the lesion
    assert abs(np.array(sds) - 1).max() < 0.03  # the rim and texture patterns are uncorrelated in the lesion
    assert np.mean(diffs) > 20  # yet the lesions look different


@pytest.mark.parametrize("organ", ["brain", "lung"])
def test_the_edge_blur_is_a_nuisance_not_a_cue(organ, monkeypatch):
    # every smoothing the generator does (texture, backgrounds, the lesion's edge) has the same width whatever
    # the cues: the old generator blurred spiculated lesions' edges, and that blur moved every intensity statistic
    from lesionlib.data import phantom

    widths, smooth = [], phantom.ndimage.gaussian_filter
    monkeypatch.setattr(phantom.ndimage, "gaussian_filter", lambda x, sigma, **kw: widths.append(sigma) or smooth(x, sigma, **kw))
    runs = []
    for v in (0.0, 1.0):
        widths.clear()
        phantom_slice(organ, 1, seed=4, size=64, cues=dict.fromkeys(CUES, v))
        runs.append(list(widths))
    assert runs[0] == runs[1] and len(runs[0]) >= 3


# --- bad arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shared", [-0.1, 1.5, "1", True, None])
def test_bad_shared_gives_a_clear_error(shared):
    with pytest.raises(ValueError, match=r"shared must be a number in \[0, 1\]"):
        phantom_slice("lung", 0, seed=0, shared=shared)
    with pytest.raises(ValueError, match=r"shared must be a number in \[0, 1\]"):
        build_lesions("phantom", "lung", n=2, image_size=16, slice_size=48, shared=shared)
    with pytest.raises(ValueError, match=r"shared must be a number in \[0, 1\]"):
        lesion_index("phantom", "lung", n=2, shared=shared)


@pytest.mark.parametrize("k", [0, -1, 1.5, "2", True])
def test_bad_slices_per_patient_gives_a_clear_error(k):
    with pytest.raises(ValueError, match="slices_per_patient must be an integer >= 1"):
        list(phantom_slices("brain", 2, size=48, slices_per_patient=k))
    with pytest.raises(ValueError, match="slices_per_patient must be an integer >= 1"):
        build_lesions("phantom", "brain", n=2, image_size=16, slice_size=48, slices_per_patient=k)
    with pytest.raises(ValueError, match="slices_per_patient must be an integer >= 1"):
        lesion_index("phantom", "brain", n=2, slices_per_patient=k)


def test_bad_cues_give_a_clear_error():
    with pytest.raises(ValueError, match="cues must give exactly the cues"):
        phantom_slice("brain", 0, seed=0, cues={"margin": 0.5})
    with pytest.raises(ValueError, match=r"cue strengths must lie in \[0, 1\]"):
        phantom_slice("brain", 0, seed=0, cues=dict.fromkeys(CUES, 1.2))
    with pytest.raises(ValueError, match="unknown cue 'margin'"):
        cue_visibility("brain", "margin")
