"""The arms as run specifications, executed through the cache on a tiny profile."""
from dataclasses import replace

import numpy as np
import pytest

from lesionlib.cache import spec_key
from lesionlib.arms import arm_spec
from lesionlib.experiment import trained_parent, unique_runs
from lesionlib.figures import check_samples, fig1_specs
from lesionlib.runner import Runner, results_frame
from lesionlib.metrics import recall_precision
from lesionlib.profile import Profile, ProfileError, load_params, load_profile, profile_path
from lesionlib.report import arm_table, side_by_side


def tiny_profile(cache_dir):
    """The smoke profile shrunk for bookkeeping tests (runs, cache, dispatch): a few lesions, one epoch, and
    `test_densenet` instead of DenseNet-201 (what is under test is the bookkeeping, not the network)."""
    p = load_profile("smoke")
    return replace(p, arch="test_densenet", image_size=32, test_size=8, target_sizes={"High": 12}, source_sizes={
        "brain": {"High": 16}, "lung": {"High": 12}}, epochs=1, patience=1, batch_size=8, generic_size=30,
        phantom_pool={"brain": 28, "lung": 24}, phantom_slice_size=64, cache_dir=str(cache_dir), device="cpu",
        cv_folds=2, bootstrap=50, workers=0, scheduler=None,
        phantom_slices_per_patient={"brain": 1, "lung": 1})  # tiny sets: one slice per patient keeps folds mixed


def test_arms_nest_their_parents(cache_dir):
    P = tiny_profile(cache_dir)
    base = arm_spec(P, "base", "brain_to_lung", 12, 16, 0)
    lesagn = arm_spec(P, "lesagn", "brain_to_lung", 12, 16, 0)
    lesaug = arm_spec(P, "lesaug", "brain_to_lung", 12, 16, 0)
    assert base["init"] is None
    assert lesagn["init"]["role"] == "generic"
    assert lesaug["init"]["role"] == "source" and lesaug["init"]["sample"]["data"]["organ"] == "brain"
    assert lesaug["init"]["init"] == lesagn["init"]  # LesAug's source starts from the same G
    assert lesaug["sample"]["data"]["organ"] == "lung"
    lesonly = arm_spec(P, "lesonly", "brain_to_lung", 12, 16, 0)
    assert lesonly["init"]["role"] == "source" and lesonly["init"]["init"] is None  # Learn(d_s), no G
    assert lesonly["init"]["sample"] == lesaug["init"]["sample"]  # the same source lesions as LesAug
    with pytest.raises(ValueError, match="unknown arm 'lesonly2'"):
        arm_spec(P, "lesonly2", "brain_to_lung", 12, 16, 0)
    with pytest.raises(ValueError, match="unknown direction"):
        arm_spec(P, "base", "lung_to_liver", 12, 16, 0)


def test_every_arm_end_to_end_and_the_cache_is_reused(cache_dir):
    P = tiny_profile(cache_dir)
    specs = fig1_specs(P, "brain_to_lung")
    assert len(specs) == 4 and len(unique_runs(specs.values())) == 7  # 4 targets + 2 sources + G
    r = Runner(P, log=lambda m: None)
    results = r.run_all(specs.values())
    assert r.trained == 7
    for res in results:  # scores are those of the stored probabilities on the 8 test lesions
        s, called = res["scores"], np.asarray(res["probs"]) >= 0.5
        assert s["n"] == len(res["probs"]) == len(res["test_patients"]) == 8
        assert (s["recall"], s["precision"]) == recall_precision(res["labels"], called)
        assert s["predicted_positive"] == called.sum()
    frame = results_frame(specs, results, bootstrap=50)
    assert (frame.recall_lo <= frame.recall + 1e-9).all() and (frame.recall <= frame.recall_hi + 1e-9).all()
    table = arm_table(frame)
    assert list(table.index) == ["High"] and table[("best", "")].iloc[0]
    assert "lesonly" not in table[("best", "")].iloc[0]  # 'best' compares the paper's arms only
    assert ("best+", "") in table.columns
    both = side_by_side(table, "fig1", "brain_to_lung")
    assert both[("paper", "lesaug", "R")].iloc[0] == 0.96
    again = Runner(P, log=lambda m: None)
    assert again.run_all(specs.values()) == results and again.trained == 0
    # the cache holds what training this spec gives: trained afresh in another cache, the same probabilities
    base = specs[("High", "base", 0)]
    fresh = Runner(replace(P, cache_dir=str(cache_dir) + "-fresh"), log=lambda m: None)
    assert fresh.run_all([base])[0]["probs"] == results[list(specs).index(("High", "base", 0))]["probs"]
    assert fresh.trained == 1


def test_profiles_are_valid_and_notebook_defaults_are_smoke():
    import nbformat
    from lesionlib.profile import project_root
    for name in ("smoke", "quick"):
        assert load_profile(name).profile == name
    # the paper profile needs the real data: without it, one error naming the parameter
    with pytest.raises(ProfileError, match="'data_dir' names a directory that does not exist"):
        load_profile("paper")
    for nb in sorted((project_root() / "book").glob("*.ipynb")):  # each page's defaults are the smoke profile
        cell = next(c for c in nbformat.read(nb, 4).cells if "parameters" in c.metadata.get("tags", []))
        ns = {}
        exec(cell.source, ns)
        assert ns["profile"] == "smoke" and ns["overrides"] == {}, nb.name
        assert Profile.from_namespace(ns) == load_profile("smoke"), nb.name


def test_a_profile_file_can_name_a_base_and_give_only_what_differs(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("profile: mine\nbase: quick\nepochs: 3\ncontrol_seeds: [0]\n")
    P = load_profile(str(mine))
    assert P == replace(load_profile("quick"), profile="mine", epochs=3, control_seeds=[0])
    assert load_params(str(mine))["image_size"] == load_profile("quick").image_size and "base" not in load_params(str(mine))
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(ProfileError, match="base profiles form a loop"):
        load_profile(str(tmp_path / "a.yaml"))
    older = tmp_path / "older.yaml"  # a whole profile written before `arch` existed
    older.write_text("\n".join(line for line in profile_path("quick").read_text().splitlines()
                                if not line.startswith("arch:")) + "\n")
    assert load_profile(str(older)) == load_profile("quick")
    (tmp_path / "bad.yaml").write_text("base: quick\nepochs: 0\n")
    with pytest.raises(ProfileError, match="'epochs' must be an integer >= 1"):
        load_profile(str(tmp_path / "bad.yaml"))


def test_bad_profile_parameters_name_the_parameter():
    good = load_params("smoke")
    with pytest.raises(ProfileError, match=r"unknown profile parameter\(s\) \['epoch'\]"):
        Profile.from_mapping(dict(good, epoch=3))
    with pytest.raises(ProfileError, match="'target_sizes' must decrease"):
        Profile.from_mapping(dict(good, target_sizes={"High": 10, "VLow": 20}))
    for bad in (0, 1.5, "2"):
        with pytest.raises(ProfileError, match=r"'threads' must be null or an integer >= 1 .*got " + repr(bad)):
            Profile.from_mapping(dict(good, threads=bad))
    assert Profile.from_mapping(dict(good, threads=None)).threads is None
    with pytest.raises(ProfileError, match=r"'arch' must be one of \('densenet201', 'test_densenet'\), got 'vgg'"):
        Profile.from_mapping(dict(good, arch="vgg"))
    with pytest.raises(ProfileError, match="'arch' 'test_densenet' has no ImageNet weights.*generic: natural-crops"):
        Profile.from_mapping(dict(good, arch="test_densenet", generic="imagenet"))
    assert Profile.from_mapping(dict(good, arch="test_densenet")).train_config().arch == "test_densenet"
    with pytest.raises(ProfileError, match=r"'target_sizes'.*48 lung training lesions.*10 .*phantom_pool.lung"):
        check_samples(Profile.from_mapping(dict(good, phantom_pool={"brain": 50, "lung": 50})))
    with pytest.raises(ProfileError, match="'phantom_pool' must give a positive integer"):
        Profile.from_mapping(dict(good, phantom_pool={"brain": 50}))
    with pytest.raises(ProfileError, match="'generic' must be one of"):
        Profile.from_mapping(dict(good, generic="imagenet21k"))
    with pytest.raises(ProfileError, match="'lung_rule' must be one of"):
        Profile.from_mapping(dict(good, lung_rule="readers>=9"))
    with pytest.raises(ProfileError, match="'brain_dir' names a directory that does not exist"):
        Profile.from_mapping(dict(good, brain_dir="/no/such/dir"))
    with pytest.raises(ProfileError, match="unknown profile 'fast'"):
        load_profile("fast")


def test_spec_key_changes_with_anything_that_changes_the_model(cache_dir):
    P = tiny_profile(cache_dir)
    a = arm_spec(P, "lesaug", "brain_to_lung", 12, 16, 0)
    assert spec_key(a) != spec_key(arm_spec(replace(P, generic_size=31), "lesaug", "brain_to_lung", 12, 16, 0))
    assert spec_key(a) != spec_key(arm_spec(P, "lesaug", "brain_to_lung", 12, 16, 1))
    assert spec_key(a) == spec_key(arm_spec(replace(P, device="cpu"), "lesaug", "brain_to_lung", 12, 16, 0))
    # another device type trains in another precision: another run (tests/test_fingerprint.py)
    assert spec_key(a) != spec_key(arm_spec(replace(P, device="cuda"), "lesaug", "brain_to_lung", 12, 16, 0))


def test_figure_grids_share_runs_and_count_as_the_paper_describes(cache_dir):
    from lesionlib.figures import FIGURES, grid_specs

    P = replace(load_profile("quick"), cache_dir=str(cache_dir))
    d = "brain_to_lung"
    f1, f2, f3, f4, f5 = (FIGURES[f].specs(P, d) for f in ("fig1", "fig2", "fig3", "fig4", "fig5"))
    S = len(P.seeds)
    assert S == 3 and len(f1) == 4 * 4 * S and len(f2) == 4 * 4 * S and len(f3) == P.cv_folds * 4 * S
    assert len(f4) == 16 * S and len(f5) == 4 * S
    # Fig 2: Base and LesAgn do not depend on the source size -> one run each for all rows (of a seed)
    assert len({spec_key(s) for (row, arm, _), s in f2.items() if arm in ("base", "lesagn")}) == 2 * S
    # the High rows of Fig 1 and Fig 2 are the same runs; Fig 4's cells include both
    assert spec_key(f1[("High", "lesaug", 0)]) == spec_key(f2[("High", "lesaug", 0)]) == spec_key(f4[("High", "High", 0)])
    assert spec_key(f5[("lesaug", 0)]) == spec_key(f1[("VLow", "lesaug", 0)])
    # Fig 3's folds are distinct runs, with distinct validation folds of one sample
    assert len({spec_key(s) for s in f3.values()}) == len(f3)
    assert {s["sample"]["fold"] for s in f3.values()} == set(range(P.cv_folds))
    # per direction and seed: 8 source models (4 sizes x {from G, from scratch}) + 16 + 6 + 9 + 20 targets
    figs = ("fig1", "fig2", "fig3", "fig4", "fig5")
    allruns = unique_runs([s for specs in grid_specs(P, (d,), figs).values() for s in specs.values()])
    assert len(allruns) == 1 + S * (8 + 16 + 6 + 9 + 4 * P.cv_folds)
    # the Controls page: per condition and seed, 6 arms and 2 source models (LesAug's, LesShuf's); at the
    # figures' own data and a seed the figures have too, Base, LesAgn, LesAug and its source are Fig 5's runs
    withctl = unique_runs([s for specs in grid_specs(P, (d,)).values() for s in specs.values()])
    shared_seeds = len(set(P.seeds) & set(P.control_seeds))
    assert len(withctl) - len(allruns) == len(P.control_shared) * len(P.control_seeds) * 8 - 4 * shared_seeds
    order = [spec_key(s) for s in withctl]  # parents come before the runs that start from them
    for i, s in enumerate(withctl):
        if trained_parent(s) is not None:
            assert order.index(spec_key(trained_parent(s))) < i


def test_cross_validation_folds_are_patient_disjoint_and_cover_the_sample(cache_dir):
    import numpy as np
    from lesionlib.figures import fig3_specs

    P = replace(tiny_profile(cache_dir), target_sizes={"High": 16}, phantom_pool={"brain": 28, "lung": 28})
    r = Runner(P, log=lambda m: None)
    specs = fig3_specs(P, "brain_to_lung")
    seen = []
    for k in range(P.cv_folds):
        train, valid = r.training_set(specs[(k, "base", 0)]["sample"])
        assert not set(train.patients) & set(valid.patients)
        seen.extend(valid.ids)
        assert len(train) + len(valid) == 16
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 16  # every lesion validates exactly once
    test = r.test_set(specs[(0, "base", 0)]["sample"])
    assert not set(test.patients) & set(np.concatenate([train.patients, valid.patients]))


def test_prepared_data_must_hold_the_test_set_and_the_largest_training_size(tmp_path):
    from lesionlib.data import build_lesions, save_lesions
    good = load_params("smoke")
    base = dict(good, data_source="prepared", data_dir=str(tmp_path))
    with pytest.raises(ProfileError, match="'data_dir' must hold brain/index.csv"):
        Profile.from_mapping(base)
    for organ, n in (("brain", 150), ("lung", 60)):  # lung: 60 - 40 test < 48 (target High)
        save_lesions(build_lesions("phantom", organ, n=n, image_size=16, slice_size=48), tmp_path / organ)
    with pytest.raises(ProfileError, match=r"'target_sizes': target lung n=48 .*asked for 48 lung training lesions "
                                           r"but only 20 are there after the test set"):
        check_samples(Profile.from_mapping(base))
    assert check_samples(Profile.from_mapping(dict(base, test_size=10))).data_source == "prepared"


def test_control_arms_start_where_they_should(cache_dir):
    from lesionlib.experiment import describe, trained_parent
    from lesionlib.figures import controls_specs
    P = replace(tiny_profile(cache_dir), control_seeds=[0, 1], control_shared=[1.0, 0.0])
    lesaug = arm_spec(P, "lesaug", "brain_to_lung", 12, 16, 0)
    lesshuf = arm_spec(P, "lesshuf", "brain_to_lung", 12, 16, 0)
    lesstat = arm_spec(P, "lesstat", "brain_to_lung", 12, 16, 0)
    agnstat = arm_spec(P, "agnstat", "brain_to_lung", 12, 16, 0)
    # LesShuf's source: LesAug's source sample and G, labels permuted; nothing else differs
    src, shuf = lesaug["init"], lesshuf["init"]
    assert shuf["sample"]["labels"] == "shuffled" and "labels" not in src["sample"]
    assert {k: v for k, v in shuf["sample"].items() if k != "labels"} == src["sample"] and shuf["init"] == src["init"]
    assert lesstat["init"] == {"role": "weight-stats", "of": src, "seed": 0} and trained_parent(lesstat) == src
    assert agnstat["init"]["of"] == arm_spec(P, "lesagn", "brain_to_lung", 12, 16, 0)["init"]
    assert "shuffled labels" in describe(lesshuf) and "scaled as" in describe(lesstat)
    # weight-statistics inits are derived, never trained: only their models are in the run list
    assert [s["role"] for s in unique_runs([lesstat])] == ["generic", "source", "target"]
    specs = controls_specs(P, "brain_to_lung")
    assert len(specs) == 2 * 6 * 2  # conditions x arms x seeds
    at0 = {k: s for k, s in specs.items() if k[0] == 0.0}
    assert all(s["sample"]["data"]["shared"] == 0.0 for s in at0.values())
    assert specs[(1.0, "lesaug", 0)]["sample"]["data"]["shared"] == 1.0


def test_shuffled_source_permutes_only_its_labels(cache_dir):
    from lesionlib.experiment import shuffled_source_model, source_model
    P = tiny_profile(cache_dir)
    R = Runner(P, log=lambda m: None)
    true, shuf = source_model(P, "brain", 16, 0), shuffled_source_model(P, "brain", 16, 0)
    (t_tr, t_va), (s_tr, s_va) = (R.training_set(s["sample"], P.valid_frac, 0) for s in (true, shuf))
    for a, b in ((t_tr, s_tr), (t_va, s_va)):
        assert np.array_equal(a.images, b.images) and np.array_equal(a.ids, b.ids)
        assert np.array_equal(a.patients, b.patients)
    assert sorted(t_tr.labels) == sorted(s_tr.labels)  # the same training class counts (one slice per patient) ...
    assert not np.array_equal(t_tr.labels, s_tr.labels)  # ... on other lesions
    assert np.array_equal(t_va.labels, s_va.labels)  # early stopping watches the true labels (test_controls_matched.py)
    ds = R.dataset(true["sample"]["data"])
    assert np.array_equal(R.dataset(shuf["sample"]["data"]).labels, ds.labels)  # the data set itself is untouched


def test_the_paper_grid_is_counted_with_one_controls_condition_on_real_data():
    """counting_profile needs no data files, yet counts the Controls page as real data makes it: one
    condition, where phantom data has one per `control_shared` value."""
    from lesionlib.figures import book_runs, controls_specs, counting_profile
    from lesionlib.profile import profile_values

    raw = profile_values(str(profile_path("paper")))
    real, as_phantom = counting_profile(raw), counting_profile({**raw, "data_source": "phantom"})
    assert real.data_source == "phantom" and real.data_dir is None  # nothing to read
    assert len(real.control_shared) == 1 < len(as_phantom.control_shared)
    per_condition = len(controls_specs(Profile.from_mapping({**raw, "data_source": "phantom", "data_dir": None,
                                                              "control_shared": [0.5]}), "brain_to_lung"))
    assert len(controls_specs(real, "brain_to_lung")) == per_condition
    assert len(book_runs(real)) < len(book_runs(as_phantom))


def test_min_steps_is_a_checked_profile_parameter_and_part_of_every_run_spec(cache_dir, tmp_path):
    """`min_steps` (gradient steps a fit takes at least): checked with an error naming it, 0 in smoke and paper,
    part of TrainConfig and so of each run's spec and key, and trained as the spec says."""
    import re

    from lesionlib.profile import profile_values
    good = load_params("smoke")
    for bad in (-1, 2.5, "40", True, None):
        with pytest.raises(ProfileError, match=r"parameter 'min_steps' must be an integer >= 0 .*got "
                                               + re.escape(repr(bad))):
            Profile.from_mapping(dict(good, min_steps=bad))
    assert load_profile("smoke").min_steps == 0 == profile_values("paper")["min_steps"]
    assert load_profile("quick").min_steps > 0
    assert Profile.from_mapping(dict(good, min_steps=6)).train_config().min_steps == 6
    older = tmp_path / "older.yaml"  # a whole profile written before `min_steps` existed: no minimum
    older.write_text("\n".join(line for line in profile_path("smoke").read_text().splitlines()
                                if not line.startswith("min_steps:")) + "\n")
    assert load_profile(str(older)) == load_profile("smoke")
    P = tiny_profile(cache_dir)
    base0, base6 = (arm_spec(replace(P, min_steps=k), "base", "brain_to_lung", 12, 16, 0) for k in (0, 6))
    assert base0["train"]["min_steps"] == 0 and base6["train"]["min_steps"] == 6
    assert spec_key(base0) != spec_key(base6)
    fit = Runner(replace(P, min_steps=6), log=lambda m: None).ensure(base6)["fit"]
    assert P.epochs * fit["steps_per_epoch"] < 6 <= fit["steps"]  # one epoch would have been too few steps


def test_the_named_variants_of_quick_change_only_what_they_say():
    from lesionlib.profile import Profile

    quick = load_profile("quick")
    assert load_profile("quick-shared0") == replace(quick, profile="quick-shared0", phantom_shared=0.0)
    gpu = load_profile("quick-gpu")
    changed = {k for k in Profile.keys() if getattr(gpu, k) != getattr(quick, k)}
    assert changed == {"profile", "image_size", "epochs", "patience", "source_sizes", "phantom_pool", "control_seeds"}
    assert gpu.control_seeds == list(range(7))
    for organ in ("brain", "lung"):  # the paper's ratios between source sizes, at 3x quick's
        assert {k: v / gpu.source_sizes[organ]["High"] for k, v in gpu.source_sizes[organ].items()} == pytest.approx({
            k: v / quick.source_sizes[organ]["High"] for k, v in quick.source_sizes[organ].items()}, abs=0.02)


def test_the_grid_and_its_pages_name_the_same_runs_when_the_grid_starts_the_cluster(monkeypatch):
    """With `threads: null`, a CPU run's thread count is part of its key. The grid (before its local cluster
    starts) and its pages' kernels (which see the cluster's address) must name the same runs, or the grid's dry
    run and progress count runs no page trains; a scheduler the user names is another matter."""
    from dataclasses import replace as dc_replace

    import torch

    from lesionlib.config import cores_per
    from lesionlib.experiment import training_threads
    from lesionlib.figures import book_runs
    from lesionlib.profile import load_profile
    monkeypatch.delenv("LESIONLIB_SCHEDULER", raising=False)
    monkeypatch.delenv("LESIONLIB_LOCAL_CLUSTER", raising=False)
    P = dc_replace(load_profile("smoke"), threads=None, workers=2, device="cpu")
    before = [spec_key(s) for s in book_runs(P)]
    monkeypatch.setenv("LESIONLIB_SCHEDULER", "tcp://127.0.0.1:4242")
    monkeypatch.setenv("LESIONLIB_LOCAL_CLUSTER", "tcp://127.0.0.1:4242")  # as grid.shared_cluster sets them
    assert training_threads(P) == cores_per(2) and [spec_key(s) for s in book_runs(P)] == before
    monkeypatch.delenv("LESIONLIB_LOCAL_CLUSTER")  # a scheduler of the user's: this process's own count
    assert training_threads(P) == torch.get_num_threads()
