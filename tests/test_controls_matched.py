"""LesShuf as a matched control: its source model's training patients trade labels (all slices of one patient
alike), its validation patients keep their true labels, so early stopping watches the true task as it does
for LesAug's source."""
from dataclasses import replace

import numpy as np
import pytest

from lesionlib.experiment import shuffled_source_model, source_model
from lesionlib.runner import Runner
from test_experiment import tiny_profile


def _patient_classes(ds) -> dict:
    """{patient: the class of its first lesion} of a lesion set."""
    out = {}
    for p, y in zip(ds.patients, ds.labels):
        out.setdefault(p, int(y))
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """(true, shuffled) (train, valid) sets of one brain source sample of 12 patients of 3 slices each."""
    P = replace(tiny_profile(tmp_path_factory.mktemp("cache")), phantom_pool={"brain": 60, "lung": 24},
                source_sizes={"brain": {"High": 36}, "lung": {"High": 12}},
                phantom_slices_per_patient={"brain": 3, "lung": 1})
    R = Runner(P, log=lambda m: None)
    true, shuf = source_model(P, "brain", 36, 0), shuffled_source_model(P, "brain", 36, 0)
    out = [R.training_set(s["sample"], P.valid_frac, s["seed"]) for s in (true, shuf)]
    again = Runner(P, log=lambda m: None).training_set(shuf["sample"], P.valid_frac, shuf["seed"])
    return P, out[0], out[1], again


def test_the_shuffled_source_keeps_its_lesions_and_only_its_training_labels_move(sets):
    _, (t_tr, t_va), (s_tr, s_va), _ = sets
    for a, b in ((t_tr, s_tr), (t_va, s_va)):  # the same lesions, patients and images on both sides
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.patients, b.patients)
        assert np.array_equal(a.images, b.images)
    assert len(np.unique(t_va.patients)) >= 2 and len(np.unique(t_tr.patients)) >= 6
    # early stopping and the best epoch watch the true task
    assert np.array_equal(s_va.labels, t_va.labels)
    assert not np.array_equal(s_tr.labels, t_tr.labels)  # ... while the training labels are permuted


def test_slices_of_one_patient_share_their_label_after_the_permutation(sets):
    _, (t_tr, _), (s_tr, _), _ = sets
    assert all(len(np.unique(t_tr.labels[t_tr.patients == p])) == 1 for p in np.unique(t_tr.patients))  # as drawn
    for p in np.unique(s_tr.patients):
        assert len(np.unique(s_tr.labels[s_tr.patients == p])) == 1, f"patient {p}'s slices disagree"


def test_the_training_patients_class_counts_stay_as_drawn_and_the_draw_is_seeded(sets):
    _, (t_tr, _), (s_tr, s_va), again = sets
    true, shuf = _patient_classes(t_tr), _patient_classes(s_tr)
    assert sorted(true.values()) == sorted(shuf.values()) and set(true) == set(shuf)
    assert true != shuf  # some patients took another class
    # another Runner (a fresh process's) draws the very same labels
    assert np.array_equal(again[0].labels, s_tr.labels) and np.array_equal(again[1].labels, s_va.labels)


def test_permuted_patient_labels_trades_whole_patients_within_idx_only():
    from lesionlib.data.splits import permuted_patient_labels
    # 8 patients with 1 to 4 slices; patient "g" has mixed labels (LIDC: nodules of one patient can differ)
    patients = np.array(list("aaabbccccdeeffgggh") + ["z", "z"])
    labels = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1, 0] + [1, 0])
    idx = np.arange(18)  # "z" (positions 18, 19) is not in the sample
    pclass = {p: int(labels[np.flatnonzero(patients == p)[0]]) for p in np.unique(patients[idx])}
    seen = set()
    for seed in range(20):
        out = permuted_patient_labels(labels, patients, idx, seed)
        assert np.array_equal(out[18:], labels[18:])  # outside idx: untouched
        new = {}
        for p in np.unique(patients[idx]):
            ys = np.unique(out[idx][patients[idx] == p])
            assert len(ys) == 1, (seed, p)  # one label per patient, its slices alike
            new[p] = int(ys[0])
        assert sorted(new.values()) == sorted(pclass.values())  # patient-level class counts as drawn
        assert np.array_equal(out, permuted_patient_labels(labels, patients, idx, seed))  # seeded
        seen.add(tuple(out))
    assert len(seen) > 5  # other seeds, other permutations
    assert np.array_equal(labels, np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1, 0, 1, 0]))  # a copy


def test_the_permutation_is_part_of_the_training_code_that_keys_every_run():
    """Cached LesShuf runs made with another permutation are never served: the function that draws it and the
    Runner method that applies it are in the code every run key hashes."""
    from lesionlib.fingerprint import TRAINING_CODE, training_sources
    assert "lesionlib.data.splits" in TRAINING_CODE and "lesionlib.runner:Runner.training_set" in TRAINING_CODE
    sources = training_sources()
    assert "def permuted_patient_labels" in sources["lesionlib.data.splits"]
    assert "permuted_patient_labels" in sources["lesionlib.runner:Runner.training_set"]
