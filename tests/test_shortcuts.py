"""Shortcut statistics of the phantom's crops: at shared = 0 nothing a network gets for free may carry the label
across organs, while each organ's own cues keep its own task learnable."""
import numpy as np
import pandas as pd
import pytest

from lesionlib.data.shortcuts import (PROBES, QUICK, STATISTICS, crop_statistics, cross_organ_shortcuts,
                                      phantom_sets, probe_aucs, random_features, shortcut_rows, shortcut_table)

# 300 lesions per organ, one slice each (slices of one patient share the lesion, so they would count as fewer
# independent draws): with no signal an AUC's sd is then about 0.033, and 0.5 +- 0.1 is three of them.
N = 300
ONE_SLICE_EACH = {"brain": 1, "lung": 1}
TOLERANCE = 0.1


@pytest.fixture(scope="module")
def battery():
    """shared -> `shortcut_rows` of N quick-profile crops per organ (about 9 s each, computed once)."""
    cache = {}

    def rows(shared):
        if shared not in cache:
            cache[shared] = shortcut_rows(phantom_sets(shared, N, slices_per_patient=ONE_SLICE_EACH))
        return cache[shared]
    return rows


# --- the statistics themselves -------------------------------------------------------------------

def test_crop_statistics_of_a_known_crop():
    img = np.zeros((1, 8, 8), np.float32)
    img[0, 2:6, 2:6] = 0.5
    img[0, 3, 3] = 0.9
    mask = img > 0
    st = crop_statistics(img, mask).iloc[0]
    assert list(st.index) == list(STATISTICS)
    assert st["fill"] == 16 / 64
    inside = img[0][mask[0]]
    assert st["lesion_mean"] == pytest.approx(inside.mean()) and st["lesion_sd"] == pytest.approx(inside.std())
    assert st["crop_mean"] == pytest.approx(img.mean()) and st["crop_sd"] == pytest.approx(img.std())
    assert st["crop_gradient"] > 0 and st["lesion_gradient"] > 0
    flat = crop_statistics(np.full((1, 8, 8), 0.3), mask).iloc[0]
    assert flat["crop_gradient"] == 0 and flat["lesion_gradient"] == 0 and flat["lesion_sd"] == 0
    with pytest.raises(ValueError, match="same shape"):
        crop_statistics(img, mask[:, :4])


def test_random_features_are_seeded_pooled_densenet_features():
    import torch

    x = np.random.default_rng(0).uniform(size=(3, 32, 32)).astype(np.float32)
    threads = torch.get_num_threads()
    a, b, c = random_features(x, seed=0), random_features(x, seed=0), random_features(x, seed=1)
    assert a.shape == (3, 1920) and np.isfinite(a).all() and (a >= 0).all()  # DenseNet-201's pooled ReLU features
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert torch.get_num_threads() == threads  # the thread limit is the call's only


def test_probe_aucs_own_and_cross_organ():
    rng = np.random.default_rng(0)
    y = {o: np.arange(200) % 2 for o in ("a", "b")}
    X = {"a": np.c_[y["a"] + 0.5 * rng.standard_normal(200), rng.standard_normal(200)],
         "b": np.c_[rng.standard_normal(200), -y["b"] + 0.5 * rng.standard_normal(200)]}
    out = probe_aucs(X, y, {o: np.arange(200) // 2 for o in X})
    assert set(out) == {"a", "b", "a->b", "b->a"}
    assert out["a"] > 0.9 and out["b"] > 0.9  # each learns its own feature
    assert abs(out["a->b"] - 0.5) < 0.15 and abs(out["b->a"] - 0.5) < 0.15  # which says nothing about the other's


def test_shortcut_table_layout_and_raw_orientation():
    table = shortcut_table((0.0, 1.0), n=24, features=False, image_size=16, slice_size=48,
                           slices_per_patient=ONE_SLICE_EACH)
    assert table.index.names == ["shared", "statistic"]
    assert list(table.columns) == ["brain", "lung", "brain->lung", "lung->brain"]
    assert list(table.loc[0.0].index) == [*STATISTICS, "statistics probe"]
    assert table.loc[(0.0, "fill"), ["brain->lung", "lung->brain"]].isna().all()  # a statistic alone: no fit
    assert table.loc[(1.0, "statistics probe")].notna().all()
    assert ((table[["brain", "lung"]] >= 0) & (table[["brain", "lung"]] <= 1)).all().all()
    assert QUICK["image_size"] == 32 and QUICK["slice_size"] == 96  # params/quick.yaml's crops


def test_cross_organ_shortcuts_flags_same_sign_statistics_and_transferring_probes():
    rows = pd.DataFrame({"brain": [0.8, 0.8, 0.8, 0.7], "lung": [0.75, 0.2, 0.55, 0.7],
                         "brain->lung": [np.nan, np.nan, np.nan, 0.35], "lung->brain": [np.nan, np.nan, np.nan, 0.5]},
                        index=["fill", "lesion_sd", "crop_sd", "statistics probe"])
    assert set(cross_organ_shortcuts(rows)) == {"fill", "statistics probe"}  # lesion_sd: opposite signs


# --- the phantom: no shortcuts across organs, each organ's own task learnable --------------------

def test_nothing_carries_the_label_across_organs_when_no_cue_is_shared(battery):
    rows = battery(0.0)
    assert cross_organ_shortcuts(rows, TOLERANCE) == {}, rows
    for probe in PROBES:  # the two probes, fit on one organ and scored on the other
        for cross in ("brain->lung", "lung->brain"):
            assert abs(rows.loc[probe, cross] - 0.5) <= TOLERANCE, (probe, cross, rows)


@pytest.mark.parametrize("shared", [0.0, 1.0])
def test_the_crops_scale_carries_no_label(battery, shared):
    rows = battery(shared)
    for organ in ("brain", "lung"):  # the old crop, boxed on the spicules: fill AUC 0.14 at shared = 1
        assert abs(rows.loc["fill", organ] - 0.5) <= TOLERANCE, (organ, rows)


@pytest.mark.parametrize("shared", [0.0, 1.0])
def test_each_organs_own_task_is_learnable(battery, shared):
    rows = battery(shared)
    for organ in ("brain", "lung"):  # a linear read-out of an untrained DenseNet-201 already finds the cues
        assert rows.loc["random DenseNet probe", organ] > 0.65, (organ, rows)


def test_knowledge_transfers_when_every_cue_is_shared(battery):
    rows = battery(1.0)  # the positive control: the cross-organ probe can see a transfer when there is one
    for cross in ("brain->lung", "lung->brain"):
        assert rows.loc["random DenseNet probe", cross] > 0.6, (cross, rows)
