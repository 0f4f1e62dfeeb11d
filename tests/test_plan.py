"""The `paper` profile on prepared sets of the real data's sizes: it validates, and every sample of its
whole grid gets exactly the size it asks for (drawn on labels and patients alone, nothing trained)."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from lesionlib.data.splits import _patient_order, patient_split
from lesionlib.data.lesions import LesionIndex
from lesionlib.figures import check_samples, sample_plan
from lesionlib.profile import Profile, ProfileError, profile_path


def _count_only_set(root, organ, patients, labels):
    """A prepared set with the real set's index (patients, labels) and placeholder 1x1 crops."""
    d = root / organ
    d.mkdir(parents=True)
    n = len(labels)
    ids = [f"{organ}-{i:05d}" for i in range(n)]
    pd.DataFrame({"row": range(n), "lesion_id": ids, "patient": patients, "label": labels, "organ": organ,
                  "source": organ, "origin": ids}).to_csv(d / "index.csv", index=False)
    np.savez_compressed(d / "crops.npz", images=np.zeros((n, 1, 1), np.float32), masks=np.zeros((n, 1, 1), bool))
    (d / "meta.json").write_text(json.dumps({"organ": organ, "source": organ, "image_size": 224,
                                             "counts": {"lesions": n}}))


def _real_sizes(root):
    """Cheng's brain set (3064 slices of 233 patients: 1426 glioma slices of 89 patients, 708 meningioma of 82,
    930 pituitary of 62) and a lung set of 729 nodules (38 % malignant, 1-4 nodules per patient)."""
    rng = np.random.default_rng(0)
    pats, labs = [], []
    for kind, n_pat, n_slices, label in (("g", 89, 1426, 1), ("m", 82, 708, 0), ("p", 62, 930, 0)):
        per = np.full(n_pat, n_slices // n_pat)
        per[: n_slices - per.sum()] += 1
        for i, k in enumerate(per):
            pats += [f"brain-{kind}{i:03d}"] * int(k)
            labs += [label] * int(k)
    assert len(labs) == 3064 and len(set(pats)) == 233
    _count_only_set(root, "brain", pats, labs)
    per = rng.integers(1, 5, 400)
    per = per[np.cumsum(per) <= 729]
    per = np.append(per, 729 - per.sum())
    lung_pats = np.repeat([f"LIDC-IDRI-{i:04d}" for i in range(len(per))], per)
    lung_labels = (rng.random(729) < 0.38).astype(int)
    _count_only_set(root, "lung", lung_pats, lung_labels)


def _paper(data_dir, **changes) -> Profile:
    values = yaml.safe_load(profile_path("paper").read_text())
    values.update(data_dir=str(data_dir), device="cpu", **changes)
    return check_samples(Profile.from_mapping(values))  # as the grid and every page do before any work


def test_paper_profile_on_the_real_sizes_gives_every_sample_its_asked_size(tmp_path):
    _real_sizes(tmp_path)
    P = _paper(tmp_path)  # validates: the whole grid is drawn here
    plan = pd.DataFrame(sample_plan(P))
    # every lesion model of the grid; the Controls page adds, per seed, LesShuf, LesStat, AgnStat and
    # LesShuf's source (on real data one condition; Base, LesAgn, LesAug and its source are Fig 5's runs)
    assert len(plan) == 2 * ((8 + 16 + 6 + 9 + 4 * P.cv_folds) * len(P.seeds) + 4 * len(P.control_seeds))
    assert (plan["train"] + plan["valid"] == plan["n"]).all()  # exactly the asked size, none lost or added
    targets, sources = plan[plan.role == "target"], plan[plan.role == "source"]
    assert (targets["test"] == P.test_size).all() and sources["test"].isna().all()
    assert set(sources.loc[sources.organ == "brain", "n"]) == {3000, 2000, 1000, 500}  # brain High: 3000 of 3064
    assert set(sources.loc[sources.organ == "lung", "n"]) == {700, 500, 300, 100}  # lung High: 700 of 729
    assert (plan["train malignant"] > 0).all() and (plan["train malignant"] < plan["train"]).all()


def test_a_size_the_data_cannot_give_is_refused_before_any_work(tmp_path):
    _real_sizes(tmp_path)
    with pytest.raises(ProfileError, match=r"parameter 'source_sizes.brain'.*3065 brain training lesions.*3064"):
        _paper(tmp_path, source_sizes={"brain": {"High": 3065}, "lung": {"High": 700}})
    # Target sizes must fit beside the test set, counting the whole patients it takes.
    with pytest.raises(ProfileError, match=r"parameter 'target_sizes'.*after the test set"):
        _paper(tmp_path, target_sizes={"High": 529})
    with pytest.raises(ProfileError, match=r"parameter 'cv_folds'"):
        _paper(tmp_path, target_sizes={"High": 30}, cv_folds=20)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProfileError, match=r"parameter 'data_dir'.*brain/index.csv"):
        _paper(tmp_path / "empty")


def test_the_largest_target_size_that_validates_is_exact(tmp_path):
    """The test set takes whole patients: what is left for training is computed, not estimated."""
    _real_sizes(tmp_path)
    from lesionlib.data.splits import draw_test
    from lesionlib.experiment import data_index
    P = _paper(tmp_path)
    pool, test = draw_test(data_index(P, "lung"), P.test_size, P.test_seed)
    small = {"brain": {"High": 100}, "lung": {"High": 100}}
    ok = _paper(tmp_path, target_sizes={"High": len(pool)}, source_sizes=small, cv_folds=2)
    assert pd.DataFrame(sample_plan(ok)).query("role == 'target'")["n"].max() == len(pool)
    with pytest.raises(ProfileError, match="target_sizes"):
        _paper(tmp_path, target_sizes={"High": len(pool) + 1}, source_sizes=small, cv_folds=2)


def test_one_organ_sources_are_refused_as_data_source(tmp_path):
    with pytest.raises(ProfileError, match=r"parameter 'data_source'.*one organ each.*data_source: prepared"):
        _paper(tmp_path, data_source="brain")


def test_patient_order_stratifies_every_class_and_is_deterministic():
    """G's natural crops have 15 classes: every class must get its share of a validation split, and two
    identical calls must agree (the sort keys of classes >= 2 used to be uninitialised memory)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(15), 20)
    ds = LesionIndex(rng.permutation(labels), np.array([f"p{i}" for i in range(300)]), "natural")
    first = [_patient_order(ds.patients, ds.labels, np.arange(300), 5) for _ in range(3)]
    assert all(np.array_equal(first[0], o) for o in first[1:])
    _, valid = patient_split(ds, np.arange(300), 0.2, seed=5)
    per_class = np.bincount(ds.labels[valid], minlength=15)
    assert per_class.min() >= 3 and per_class.max() <= 5, per_class  # 20 % of 20 each
    # every prefix keeps the classes balanced, as for two classes
    where = {p: i for i, p in enumerate(ds.patients)}
    prefix = np.bincount(ds.labels[[where[p] for p in first[0][:150]]], minlength=15)
    assert prefix.min() >= 9 and prefix.max() <= 11, prefix
