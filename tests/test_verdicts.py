"""Verdicts from intervals: every rule can hold, fail and be inconclusive; the paper's numbers give what the
Conclusions page says."""
import numpy as np
import pandas as pd
import pytest

from lesionlib import comparisons as C, reference, verdicts as V

N = 60  # test lesions, one per patient
LABELS = np.array([1, 0] * (N // 2))


def run(quality: float, seed: int = 0) -> dict:
    """A fake finished run: at quality 1 every lesion is called right, at 0.5 a coin decides."""
    rng = np.random.default_rng(seed)
    right = rng.random(N) < quality
    called = np.where(right, LABELS, 1 - LABELS)
    return {"labels": LABELS.tolist(), "probs": (0.2 + 0.6 * called).tolist(),
            "test_ids": [f"l{i}" for i in range(N)], "test_patients": [f"p{i}" for i in range(N)]}


def evidence(aug: dict, agn: dict, base: dict | None = None, seeds=(0,)) -> V.Evidence:
    """Fig 1 and Fig 2 cells from {row: quality} of LesAug and LesAgn (Base: 0.5 unless given)."""
    cells = {}
    for fig in ("fig1", "fig2"):
        for row in aug:
            for arm, q in (("lesaug", aug[row]), ("lesagn", agn[row]), ("base", (base or {}).get(row, 0.5))):
                cells[(fig, row, arm)] = [run(q, seed=100 * s + 7) for s in seeds]
    return V.Evidence("brain_to_lung", C.run_replicates(cells, 400))


def verdict(ev, letter):
    return next(r["verdict"] for r in V.findings(ev) if r["claim"].startswith(f"({letter})"))


ROWS = ("High", "Medium", "Low", "VLow")


def test_rules_on_signs():
    assert (C.sign(0.1, 0.3), C.sign(-0.3, -0.1), C.sign(-0.1, 0.1), C.sign(float("nan"), 1)) == (1, -1, 0, 0)
    assert [V.majority(s) for s in ([1, 1, 0, -1], [1, -1, -1, 0], [1, 1, 0, 0])] == \
        ["inconclusive", "does not hold", "inconclusive"]
    assert V.majority([1, 1, 1, 0]) == "holds"
    assert [V.every(s) for s in ([1, 1], [1, -1], [1, 0])] == ["holds", "does not hold", "inconclusive"]
    assert [V.some_below(s) for s in ([1, -1], [1, 1], [1, 0])] == ["holds", "does not hold", "inconclusive"]


def test_finding_a_gives_each_outcome_on_constructed_runs():
    good, poor = dict.fromkeys(ROWS, 0.95), dict.fromkeys(ROWS, 0.55)
    assert verdict(evidence(good, poor), "a") == "holds"
    assert verdict(evidence(poor, good), "a") == "does not hold"
    assert verdict(evidence(good, good), "a") == "inconclusive"  # same runs: every difference is exactly 0


def test_trend_findings_b_and_c_give_each_outcome():
    flat = dict.fromkeys(ROWS, 0.6)
    growing = dict(zip(ROWS, (0.6, 0.75, 0.85, 0.97)))  # LesAug's lead grows as the size shrinks
    shrinking = dict(zip(ROWS, (0.97, 0.85, 0.75, 0.6)))
    assert verdict(evidence(growing, flat), "b") == "holds"
    assert verdict(evidence(shrinking, flat), "b") == "does not hold"
    assert verdict(evidence(flat, flat), "b") == "inconclusive"
    # (c) reads Fig 2, whose rows are source sizes: the lead should shrink with the source
    assert verdict(evidence(shrinking, flat), "c") == "holds"
    assert verdict(evidence(growing, flat), "c") == "does not hold"


def test_findings_f_and_g_against_base():
    hi, lo = dict.fromkeys(ROWS, 0.95), dict.fromkeys(ROWS, 0.55)
    assert verdict(evidence(hi, hi, base=lo), "f") == "holds"
    assert verdict(evidence(lo, lo, base=hi), "f") == "does not hold"
    assert verdict(evidence(hi, hi, base=hi), "f") == "inconclusive"
    assert verdict(evidence(lo, hi, base=hi), "g") == "holds"
    assert verdict(evidence(hi, lo, base=lo), "g") == "does not hold"
    assert verdict(evidence(hi, hi, base=hi), "g") == "inconclusive"


def test_seeds_are_resampled_too():
    """With several seeds the interval also carries seed-to-seed variation."""
    agn = [run(0.75, seed=50 + s) for s in range(3)]
    steady = [run(0.95, seed=60 + s) for s in range(3)]
    erratic = [run(q, seed=60 + s) for s, q in enumerate((0.95, 0.5, 0.95))]  # one seed fails

    def width(aug):
        reps = C.run_replicates({"aug": aug, "agn": agn}, 2000)
        _, lo, hi = C.interval(reps["aug"][0] - reps["agn"][0], reps["aug"][1] - reps["agn"][1])
        return hi - lo
    assert width(erratic) > 1.5 * width(steady)
    with pytest.raises(ValueError, match="different test sets"):
        bad = run(0.9)
        bad["test_ids"] = bad["test_ids"][::-1]
        C.run_replicates({"a": [run(0.9)], "b": [bad]}, 10)


def test_spread_rule_d():
    def ranges(aug, agn):
        return pd.DataFrame({"R min": [0.5, 0.5], "R max": [0.5 + aug, 0.5 + agn],
                             "P min": [0.5, 0.5], "P max": [0.5 + aug, 0.5 + agn]}, index=["lesaug", "lesagn"])
    ev = evidence(dict.fromkeys(ROWS, 0.8), dict.fromkeys(ROWS, 0.8))
    for (aug, agn), want in (((0.02, 0.4), "holds"), ((0.4, 0.02), "does not hold"), ((0.2, 0.22), "inconclusive")):
        ev.ranges, ev.k = ranges(aug, agn), 5
        assert verdict(ev, "d") == want


def test_seed_findings_e_and_h():
    def per_seed(start_aug, epoch_aug, steps_aug):
        rows = []
        for seed in range(3):
            jitter = 0.01 * seed
            rows += [{"arm": "base", "seed": seed, "start": 1.0, "best epoch": 3, "steps": 100, "seconds": 1.0,
                      "source steps": 0, "source seconds": 0.0},
                     {"arm": "lesagn", "seed": seed, "start": 0.9 + jitter, "best epoch": 3, "steps": 100 + seed,
                      "seconds": 1.0, "source steps": 0, "source seconds": 0.0},
                     {"arm": "lesaug", "seed": seed, "start": start_aug + jitter, "best epoch": epoch_aug + seed % 2,
                      "steps": steps_aug + 2 * seed, "seconds": 1.0, "source steps": 50, "source seconds": 1.0}]
        return pd.DataFrame(rows)
    ev = evidence(dict.fromkeys(ROWS, 0.8), dict.fromkeys(ROWS, 0.8))
    for args, want_e, want_h in (((0.5, 1, 20), "holds", "holds"), ((1.3, 4, 200), "does not hold", "does not hold"),
                                 ((0.5, 2.5, 49), "inconclusive", "inconclusive")):
        ev.per_seed = per_seed(*args)
        assert (verdict(ev, "e"), verdict(ev, "h")) == (want_e, want_h), args
    ev.per_seed = per_seed(0.5, 1, 20).query("seed == 0")  # one seed: no interval, never decided
    assert (verdict(ev, "e"), verdict(ev, "h")) == ("inconclusive", "inconclusive")


def test_the_rules_on_the_papers_own_numbers():
    """What the Conclusions page shows beside ours: no rule rejects the paper's own data."""
    t = V.paper_verdicts(reference.reported(), n_boot=2000).set_index(["claim", "direction"])["verdict"]
    assert "does not hold" not in set(t)
    b2l, l2b = "brain_to_lung", "lung_to_brain"
    claim = {c[:3]: c for c, _ in t.index}
    assert t[(claim["(a)"], b2l)] == t[(claim["(b)"], b2l)] == t[(claim["(c)"], b2l)] == "holds"
    assert t[(claim["(d)"], b2l)] == "holds" and t[(claim["(d)"], l2b)] == "inconclusive"  # "less pronounced"
    assert t[(claim["(i)"], "both")] == "holds"
    assert t[(claim["(e)"], b2l)] == "not computable"


def test_weighted_auc_matches_sklearn_and_follows_the_weights():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(3)
    y = rng.random(50) < 0.4
    s = np.round(rng.random(50), 1)  # many ties
    w = rng.integers(0, 3, (4, 50)).astype(float)
    got = C._weighted_auc(y, s, np.vstack([np.ones(50), w]))
    assert got[0] == pytest.approx(roc_auc_score(y, s))
    for i in range(4):
        assert got[i + 1] == pytest.approx(roc_auc_score(y, s, sample_weight=w[i]))


def test_auc_replicates_rank_a_run_whose_threshold_calls_everything_malignant():
    ranked = run(0.9)
    ranked["probs"] = [0.6 + 0.3 * p for p in ranked["probs"]]  # all >= 0.5: F2 is the threshold's, AUC is not
    cells = {"ranked": [ranked], "coin": [run(0.5)]}
    auc = C.auc_replicates(cells, 500)
    _, lo, hi = C.interval(auc["ranked"][0] - auc["coin"][0], auc["ranked"][1] - auc["coin"][1])
    assert auc["ranked"][0] > 0.85 and lo > 0


def test_a_figure_page_states_its_own_findings_beside_the_papers():
    """`figure_verdicts` decides exactly the findings FIGURE_CLAIMS gives a figure, from that figure's runs,
    and the paper's column is the same rule on the paper's numbers (as on the Conclusions page)."""
    paper = V.paper_verdicts(reference.reported())
    ev = evidence({"High": 0.95, "VLow": 0.9}, {"High": 0.6, "VLow": 0.55})

    class FakeRunner:  # figure_verdicts asks run_evidence for the runs; here they are made up
        P = None
    orig = V.run_evidence
    V.run_evidence = lambda runner, d, n, figs: ev
    try:
        for fig, letters in (("fig1", ["(a)", "(b)"]), ("fig2", ["(c)", "(g)"])):
            got = V.figure_verdicts(FakeRunner(), fig, "brain_to_lung", 200)
            assert [c[:3] for c in got.claim] == letters  # the findings the paper draws from this figure
            assert [c[:3] for c in got.claim] == [c(ev)["claim"][:3] for c in V.FIGURE_CLAIMS[fig]]
            assert list(got.ours) == [c(ev)["verdict"] for c in V.FIGURE_CLAIMS[fig]]
            if fig == "fig1":
                assert got.ours.iloc[0] == "holds"  # (a): LesAug far better in both rows
            want = paper[paper.direction == "brain_to_lung"].set_index("claim").verdict
            assert list(got.paper) == [want[c] for c in got.claim]
    finally:
        V.run_evidence = orig
