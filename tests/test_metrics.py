import pytest
from sklearn.metrics import fbeta_score

from lesionlib.metrics import best_arm, f2, f2_from_rp, recall_precision, scores
from lesionlib.reference import paper_table


def test_recall_precision_f2_on_a_known_case():
    y = [1, 1, 1, 1, 0, 0, 0, 0]
    p = [1, 1, 1, 0, 1, 0, 0, 0]
    r, pr = recall_precision(y, p)
    assert r == pytest.approx(0.75) and pr == pytest.approx(0.75)
    assert f2(y, p) == pytest.approx(fbeta_score(y, p, beta=2))
    assert f2_from_rp(r, pr) == pytest.approx(f2(y, p))
    s = scores(y, p)
    assert s["positives"] == 4 and s["predicted_positive"] == 4 and s["accuracy"] == pytest.approx(0.75)


def test_nothing_predicted_malignant_has_zero_precision_not_nan():
    assert recall_precision([1, 0], [0, 0]) == (0.0, 0.0)
    assert f2_from_rp(0, 0) == 0.0


def test_best_arm_recall_first():
    assert best_arm({"base": (0.9, 0.1), "lesagn": (0.8, 1.0)}) == "base"


def test_best_arm_ties_on_recall_broken_by_precision():
    assert best_arm({"base": (0.71, 0.94), "lesagn": (0.68, 0.88), "lesaug": (0.71, 0.91)}) == "base"


def test_best_arm_full_tie_and_rounding():
    assert best_arm({"base": (0.5, 0.5), "lesagn": (0.5, 0.5)}) == "base=lesagn"
    assert best_arm({"a": (0.701, 0.5), "b": (0.699, 0.9)}, decimals=2) == "b"
    with pytest.raises(ValueError):
        best_arm({})


@pytest.mark.parametrize("fig", ["fig1", "fig2"])
@pytest.mark.parametrize("direction", ["brain_to_lung", "lung_to_brain"])
def test_best_arm_reproduces_the_papers_bold_cells(fig, direction):
    table = paper_table(fig, direction)
    for size, row in table.iterrows():
        rp = {a: (row[(a, "R")], row[(a, "P")]) for a in ("base", "lesagn", "lesaug")}
        assert best_arm(rp) == row[("best", "")], (fig, direction, size)
