"""The analysis behind Fig 3, Fig 5 and the Conclusions page, on synthetic results (no training)."""
import pandas as pd
import pytest

from lesionlib import analysis
from lesionlib.metrics import bootstrap_interval, recall_precision, seed_interval
from lesionlib.report import interval_table


def frame(rows):
    return pd.DataFrame(rows, columns=["size", "arm", "seed", "recall", "precision", "f2"])


def test_fold_ranges_are_min_max_per_arm():
    f = pd.DataFrame({"arm": ["lesagn"] * 3 + ["lesaug"] * 3, "recall": [.1, .5, .9, .6, .7, .65],
                      "precision": [.2, .2, .8, .5, .5, .5], "f2": [.1, .4, .8, .6, .6, .6]})
    r = analysis.fold_ranges(f)
    assert r.loc["lesagn", "R spread"] == pytest.approx(0.8) and r.loc["lesaug", "R spread"] == pytest.approx(0.1)
    assert r.loc["lesaug", "P spread"] == 0 and r.loc["lesagn", "P max"] == 0.8
    flagged = analysis.fold_ranges(f.assign(degenerate=["none malignant", "", "", "", "", ""]))
    assert flagged["degenerate runs"].to_dict() == {"lesagn": 1, "lesaug": 0}


def test_loss_curves_are_normalised_by_bases_untrained_loss():
    specs = {("base", 0): {}, ("lesaug", 0): {}}
    hist = lambda *v: [{"epoch": i, "valid_loss": x} for i, x in enumerate(v)]
    results = [{"history": hist(0.8, 0.7, 0.6), "fit": {"best_epoch": 2, "seconds": 10.0, "epochs_run": 2}},
               {"history": hist(0.4, 0.3, 0.35), "fit": {"best_epoch": 1, "seconds": 6.0, "epochs_run": 2}}]
    c = analysis.loss_curves(specs, results)
    assert c[(c.arm == "base") & (c.epoch == 0)].normalised.iloc[0] == 1.0
    assert c[(c.arm == "lesaug") & (c.epoch == 0)].normalised.iloc[0] == pytest.approx(0.5)
    conv = analysis.convergence(c)
    assert list(conv.index) == ["base", "lesaug"]
    assert conv.loc["lesaug", "best epoch"] == 1 and conv.loc["lesaug", "seconds to best"] == pytest.approx(3.0)
    assert conv.loc["lesaug", "best"] == pytest.approx(0.3 / 0.8)


def test_degenerate_runs_are_listed_with_their_auc():
    frame = pd.DataFrame({"size": ["High", "VLow"], "arm": ["lesaug", "lesaug"], "degenerate": ["", "all malignant"],
                          "auc": [0.8, 0.5]})
    assert analysis.degenerate_runs(frame) == "lesaug VLow: all malignant (AUC 0.50)"
    assert analysis.degenerate_runs(frame, arms=("base",)) == ""


def test_bootstrap_interval_brackets_the_estimate_and_matches_sklearn():
    import numpy as np
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.75, y, 1 - y)
    ci = bootstrap_interval(y, p, 500, seed=0)
    r, pr = recall_precision(y, p)
    assert ci["recall"][0] < r < ci["recall"][1] and ci["precision"][0] < pr < ci["precision"][1]
    assert 0.05 < ci["recall"][1] - ci["recall"][0] < 0.3
    from lesionlib.metrics import _rp_from_counts
    assert _rp_from_counts((y == 1) & (p == 1), y == 1, p == 1) == pytest.approx((r, pr))  # scikit-learn's
    assert _rp_from_counts(np.zeros(2), np.zeros(2), np.zeros(2)) == (0.0, 0.0)  # nothing to find: 0, as sklearn
    assert bootstrap_interval(y, p, 500, seed=0, groups=np.arange(200)) == ci  # singletons: the lesion bootstrap


def test_cluster_bootstrap_resamples_patients_and_is_wider_for_correlated_slices():
    """Cheng's set has ~13 slices per patient: slices of one patient share their fate, so resampling
    lesions one by one understates the uncertainty; resampling patients does not."""
    import numpy as np
    rng = np.random.default_rng(3)
    n_pat, per = 16, 13
    y_pat = rng.integers(0, 2, n_pat)
    hit = rng.random(n_pat) < 0.7  # a patient's slices are all right or all wrong
    y = np.repeat(y_pat, per)
    p = np.repeat(np.where(hit, y_pat, 1 - y_pat), per)
    groups = np.repeat([f"P{i:02d}" for i in range(n_pat)], per)
    lesion = bootstrap_interval(y, p, 2000, seed=0)
    cluster = bootstrap_interval(y, p, 2000, seed=0, groups=groups)
    for m in ("recall", "precision"):
        w_lesion, w_cluster = np.diff(lesion[m])[0], np.diff(cluster[m])[0]
        assert w_cluster > 2.5 * w_lesion, (m, w_lesion, w_cluster)  # sqrt(13) ~ 3.6 in theory
    with pytest.raises(ValueError, match="groups has 3 entries"):
        bootstrap_interval(y, p, 10, groups=["a", "b", "c"])


def test_degenerate_runs_are_named():
    from lesionlib.metrics import degenerate
    assert degenerate(10, 10) == "all malignant" and degenerate(0, 10) == "none malignant"
    assert degenerate(3, 10) == "" and degenerate(0, 0) == ""


def test_interval_table_uses_seeds_when_there_are_several():
    assert seed_interval([0.5])[1:] == (0.5, 0.5)
    m, lo, hi = seed_interval([0.4, 0.5, 0.6])
    assert m == pytest.approx(0.5) and lo < 0.4 and hi > 0.6
    f = pd.DataFrame({"size": ["High"] * 3, "arm": ["lesaug"] * 3, "seed": [0, 1, 2], "recall": [.4, .5, .6],
                      "precision": [.5, .5, .5]})
    assert interval_table(f).loc["High", "LesAug"].startswith("0.50 [")
    one = f.iloc[:1].assign(recall_lo=0.3, recall_hi=0.5, precision_lo=0.4, precision_hi=0.6)
    assert interval_table(one).loc["High", "LesAug"] == "0.40 [0.30, 0.50]"
    assert interval_table(one, metric="precision").loc["High", "LesAug"] == "0.50 [0.40, 0.60]"


def test_styled_tables_move_degenerate_flags_into_a_caption():
    from lesionlib import report
    cols = pd.MultiIndex.from_tuples([("base", "R"), ("base", "P"), ("lesaug", "R"), ("lesaug", "P"), ("best", ""),
                                      ("flags", "")])
    t = pd.DataFrame([[.1, .2, .3, .4, "lesaug", ""], [0., 0., .5, .5, "lesaug", "Base: none malignant (AUC 0.35)"]],
                     index=["High", "VLow"], columns=cols)
    html = report.styled(pd.concat({"ours": t, "paper": t.drop(columns=[("flags", "")])}, axis=1)).to_html()
    assert "VLow †" in html and "High †" not in html and ">flags<" not in html
    assert "degenerate runs" in html and "VLow: Base: none malignant (AUC 0.35)" in html
    clean = t.copy()
    clean[("flags", "")] = ""
    assert "degenerate" not in report.styled(clean).to_html()  # nothing to flag: no caption


def test_the_f2_gap_is_the_f2_of_mean_recall_and_precision_unrounded():
    from lesionlib.metrics import f2_from_rp
    frame = pd.DataFrame({"size": ["High"] * 4, "arm": ["lesaug", "lesaug", "lesagn", "lesagn"], "seed": [0, 1, 0, 1],
                          "recall": [0.904, 0.807, 0.5, 0.6], "precision": [0.7, 0.8, 0.9, 0.7]})
    gap = analysis.f2_gap(frame, "size")
    assert gap["High"] == pytest.approx(f2_from_rp(0.8555, 0.75) - f2_from_rp(0.55, 0.8))  # not of 2-decimal R


def test_recall_and_precision_pool_the_seeds_counts():
    """A seed that called nothing adds no precision 0 to an average: its counts add nothing called."""
    frame = pd.DataFrame({"size": ["High"] * 2, "arm": ["lesaug"] * 2, "seed": [0, 1], "positives": [10, 10],
                          "recall": [0.8, 0.0], "precision": [0.5, 0.0], "predicted malignant": [16, 0]})
    g = analysis.pooled_rp(frame, ["size", "arm"]).iloc[0]
    assert g["recall"] == pytest.approx(8 / 20) and g["precision"] == pytest.approx(8 / 16)  # a mean says 0.25
