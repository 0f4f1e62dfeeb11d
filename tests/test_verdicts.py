"""Verdicts decided on skill: every rule can hold, fail and be inconclusive; no skill, one seed or a zero variance
never decides; Holm, the swap test of (d) and the paper's numbers with their own run-to-run spread."""
import numpy as np
import pandas as pd
import pytest

from lesionlib import comparisons as C, reference, verdicts as V

N = 200  # test lesions, one per patient
LABELS = np.array([1, 0] * (N // 2))
SEEDS = (0, 1, 2)


def run(quality: float, seed: int = 0, shift: float = 0.0) -> dict:
    """A fake finished run: at quality 1 every lesion is ranked and called right, at 0.5 a coin decides."""
    rng = np.random.default_rng(seed)
    right = rng.random(N) < quality
    called = np.where(right, LABELS, 1 - LABELS)
    probs = np.clip(0.2 + 0.6 * called + 0.1 * rng.random(N) + shift, 0, 1)
    return {"labels": LABELS.tolist(), "probs": probs.tolist(),
            "test_ids": [f"l{i}" for i in range(N)], "test_patients": [f"p{i}" for i in range(N)]}


def evidence(aug: dict, agn: dict, base: dict | None = None, seeds=SEEDS) -> V.Evidence:
    """Fig 1 and Fig 2 cells from {row: quality} of LesAug and LesAgn (Base: 0.5 unless given)."""
    cells = {}
    for fig in ("fig1", "fig2"):
        for row in aug:
            for k, (arm, q) in enumerate((("lesaug", aug[row]), ("lesagn", agn[row]),
                                          ("base", (base or {}).get(row, 0.5)))):
                cells[(fig, row, arm)] = [run(q, seed=1000 * k + 100 * s + 7 + len(row)) for s in seeds]
    return V.Evidence("brain_to_lung", C.cell_replicates(cells, 400))


def verdict(ev, letter, metric=None):
    rows = V.findings(ev)
    row = next(r for r in rows if r["claim"].startswith(f"({letter})"))
    return row["verdict"] if metric is None else row["F2 verdict"]


ROWS = ("High", "Medium", "Low", "VLow")


def comparison(p: float, s: int = 1) -> C.Comparison:
    return C.Comparison(0.1 * s, 0.05 * s if p < 0.05 else -0.05, 0.15 * s if p < 0.05 else 0.15, p)


def test_rules_on_signs():
    assert (C.sign(0.1, 0.3), C.sign(-0.3, -0.1), C.sign(-0.1, 0.1), C.sign(float("nan"), 1)) == (1, -1, 0, 0)
    assert [V.majority(s) for s in ([1, 1, 0, -1], [1, -1, -1, 0], [1, 1, 0, 0])] == \
        ["inconclusive", "does not hold", "inconclusive"]
    assert V.majority([1, 1, 1, 0]) == "holds"
    assert [V.every(s) for s in ([1, 1], [1, -1], [1, 0])] == ["holds", "does not hold", "inconclusive"]
    assert [V.some_below(s) for s in ([1, -1], [1, 1], [1, 0])] == ["holds", "does not hold", "inconclusive"]
    # after Holm a lone unadjusted "-" may no longer reject "all cases" or make "sometimes worse" hold
    assert V.every([1, -1], adjusted=[1, 0]) == "inconclusive"
    assert V.some_below([1, -1], adjusted=[0, 0]) == "inconclusive"


def test_holm_steps_down():
    assert C.holm_signs([comparison(0.01), comparison(0.02), comparison(0.04)]) == [1, 1, 1]
    assert C.holm_signs([comparison(0.03), comparison(0.03)]) == [0, 0]  # each would pass alone at 5 %
    assert C.holm_signs([comparison(0.001, -1), comparison(0.2)]) == [-1, 0]


def test_finding_a_gives_each_outcome_on_constructed_runs():
    good, poor = dict.fromkeys(ROWS, 0.95), dict.fromkeys(ROWS, 0.65)
    assert verdict(evidence(good, poor), "a") == "holds"
    assert verdict(evidence(poor, good), "a") == "does not hold"
    assert verdict(evidence(good, good), "a") == "inconclusive"


def test_trend_findings_b_and_c_give_each_outcome():
    flat = dict.fromkeys(ROWS, 0.7)
    growing = dict(zip(ROWS, (0.7, 0.8, 0.9, 0.99)))  # LesAug's lead grows as the size shrinks
    shrinking = dict(zip(ROWS, (0.99, 0.9, 0.8, 0.7)))
    assert verdict(evidence(growing, flat), "b") == "holds"
    assert verdict(evidence(shrinking, flat), "b") == "does not hold"
    assert verdict(evidence(flat, flat), "b") == "inconclusive"
    # (c) reads Fig 2, whose rows are source sizes: the lead should shrink with the source
    assert verdict(evidence(shrinking, flat), "c") == "holds"
    assert verdict(evidence(growing, flat), "c") == "does not hold"


def test_findings_f_and_g_against_base():
    hi, lo = dict.fromkeys(ROWS, 0.95), dict.fromkeys(ROWS, 0.65)
    assert verdict(evidence(hi, hi, base=lo), "f") == "holds"
    assert verdict(evidence(lo, lo, base=hi), "f") == "does not hold"
    assert verdict(evidence(hi, hi, base=hi), "f") == "inconclusive"
    assert verdict(evidence(lo, hi, base=hi), "g") == "holds"
    assert verdict(evidence(hi, lo, base=lo), "g") == "does not hold"
    assert verdict(evidence(hi, hi, base=hi), "g") == "inconclusive"


def test_a_model_without_skill_never_makes_a_finding_hold():
    """LesAug calls every lesion malignant with no ranking (AUC ~0.5), LesAgn calls none: F2 favours LesAug by
    far, yet (a) may not hold on F2 either, because the arm it would favour shows no skill."""
    coin = {r: 0.5 for r in ROWS}
    ev = evidence(coin, coin)
    for i, ((fig, row, arm), st) in enumerate(ev.stats.items()):  # F2 as if LesAug called all, LesAgn none
        st["f2"] = np.full_like(st["f2"], 0.75 if arm == "lesaug" else 0.0) + 0.01 * np.random.default_rng(
            i).standard_normal(st["f2"].shape)
    assert verdict(ev, "a", "f2") == "inconclusive"
    reps = ev.stats
    ungated = C.seed_comparison(reps[("fig1", "High", "lesaug")]["f2"] - reps[("fig1", "High", "lesagn")]["f2"])
    assert ungated.sign == 1  # without the gate this would count for LesAug
    assert ev.diff(("fig1", "High", "lesaug"), ("fig1", "High", "lesagn"), "f2").sign == 0


def test_one_seed_or_zero_variance_decides_nothing():
    one = C.seed_comparison(np.array([[0.3], [0.31], [0.29]]))
    assert one.sign == 0 and "one seed" in one.note
    flat = C.seed_comparison(np.full((50, 3), 0.2))  # three seeds that agree exactly, no test-set spread
    assert flat.sign == 0
    assert V.per_seed_comparison([-2, -2, -2]).sign == 0  # integer best epochs that agree: not decisive
    assert V.per_seed_comparison([-2, -3, -2]).sign == -1
    ev = evidence(dict.fromkeys(ROWS, 0.95), dict.fromkeys(ROWS, 0.6), seeds=(0,))
    assert verdict(ev, "a") == "inconclusive"


def test_intervals_carry_seed_to_seed_variation():
    agn = [run(0.75, seed=50 + s) for s in range(3)]
    steady = [run(0.95, seed=60 + s) for s in range(3)]
    erratic = [run(q, seed=60 + s) for s, q in enumerate((0.95, 0.55, 0.95))]  # one seed fails

    def width(aug):
        reps = C.cell_replicates({"aug": aug, "agn": agn}, 1000)
        c = C.seed_comparison(reps["aug"]["auc"] - reps["agn"]["auc"])
        return c.hi - c.lo
    assert width(erratic) > 3 * width(steady)
    with pytest.raises(ValueError, match="different test sets"):
        bad = run(0.9)
        bad["test_ids"] = bad["test_ids"][::-1]
        C.cell_replicates({"a": [run(0.9)], "b": [bad]}, 10)


def fig3_frame(spread_aug: float, spread_agn: float, pairs: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(pairs):
        for arm, sd in (("lesaug", spread_aug), ("lesagn", spread_agn)):
            r, p, a = 0.7 + sd * rng.standard_normal(3)
            rows.append({"fold": i % 3, "seed": i // 3, "arm": arm, "recall": r, "precision": p, "auc": 0.8 + a / 3})
    return pd.DataFrame(rows)


def test_spread_rule_d_is_a_swap_test():
    ev = evidence(dict.fromkeys(ROWS, 0.8), dict.fromkeys(ROWS, 0.8))
    for (aug, agn), want in (((0.01, 0.2), "holds"), ((0.2, 0.01), "does not hold"), ((0.1, 0.1), "inconclusive")):
        ev.fig3 = fig3_frame(aug, agn)
        assert verdict(ev, "d") == want, (aug, agn)
        assert verdict(ev, "d", "f2") == want, (aug, agn)
    ratio, lo, hi, k = V.swap_test(fig3_frame(0.01, 0.2))
    assert k == 9 and ratio < 0.2 and lo == pytest.approx(1 / 512) and hi == 1.0  # exact: 2^9 swaps
    ev.fig3 = fig3_frame(0.01, 0.2).assign(auc=0.5)  # tight, but no skill: LesAug's narrowness means nothing
    assert verdict(ev, "d") == "inconclusive"


def test_seed_findings_e_and_h():
    def per_seed(start_aug, epoch_aug, steps_aug, start_shuf=1.0):
        rows = []
        for seed in range(3):
            jitter = 0.01 * seed
            common = {"seed": seed, "seconds": 1.0}
            rows += [{"arm": "base", "start": 1.0, "best epoch": 3, "steps": 100, "source steps": 0,
                      "source seconds": 0.0, **common},
                     {"arm": "lesagn", "start": 0.9 + jitter, "best epoch": 3, "steps": 100 + seed,
                      "source steps": 0, "source seconds": 0.0, **common},
                     {"arm": "lesshuf", "start": start_shuf - jitter, "best epoch": 3, "steps": 100,
                      "source steps": 50, "source seconds": 1.0, **common},
                     {"arm": "lesaug", "start": start_aug + 2 * jitter, "best epoch": epoch_aug + seed % 2,
                      "steps": steps_aug + 2 * seed, "source steps": 50, "source seconds": 1.0, **common}]
        return pd.DataFrame(rows)
    ev = evidence(dict.fromkeys(ROWS, 0.8), dict.fromkeys(ROWS, 0.8))
    for args, want_e, want_h in (((0.5, 1, 20), "holds", "holds"), ((1.3, 4, 200), "does not hold", "does not hold"),
                                 ((0.5, 2.5, 49), "inconclusive", "inconclusive"),
                                 ((0.5, 1, 20, 0.5), "inconclusive", "holds")):  # LesShuf starts as low: no knowledge
        ev.per_seed = per_seed(*args)
        assert (verdict(ev, "e"), verdict(ev, "h")) == (want_e, want_h), args
    ev.per_seed = per_seed(0.5, 1, 20).query("seed == 0")  # one seed: no interval, never decided
    assert (verdict(ev, "e"), verdict(ev, "h")) == ("inconclusive", "inconclusive")


def test_the_class_prior_loss():
    from lesionlib.analysis import prior_loss
    res = {"train_counts": {"lesions": 10, "malignant": 4}, "valid_counts": {"lesions": 5, "malignant": 2}}
    assert prior_loss(res) == pytest.approx(-(0.4 * np.log(0.4) + 0.6 * np.log(0.6)))


def test_the_rules_on_the_papers_own_numbers():
    """Beside ours: the paper's numbers, each cell with the run-to-run spread of its Fig 3."""
    t = V.paper_verdicts(reference.reported(), n_boot=2000).set_index(["claim", "direction"])["verdict"]
    assert "does not hold" not in set(t)
    b2l, l2b = "brain_to_lung", "lung_to_brain"
    claim = {c[:3]: c for c, _ in t.index}
    assert t[(claim["(d)"], b2l)] == t[(claim["(e)"], b2l)] == "not computable"
    assert t[(claim["(i)"], "both")] == "holds"
    sd = C.paper_spreads(reference.reported()["fig3"][b2l])
    assert sd["lesagn"][0] == pytest.approx(0.70 / 2.326, abs=1e-3) and sd["base"] == sd["lesagn"]
    # with only a test set's binomial error (no run-to-run spread) (a) would hold for brain -> lung
    flat = {a: (0.0, 0.0) for a in ("base", "lesagn", "lesaug")}
    cells = {("fig1", r, a): tuple(v) for r, arms in reference.reported()["fig1"][b2l].items()
             for a, v in arms.items() if a != "best"}
    narrow = V.Evidence(b2l, C.paper_replicates(cells, b2l, flat, 2000), source="paper")
    wide = V.paper_evidence(b2l, reference.reported())
    assert V.claim_a(narrow)["verdict"] == "holds" and V.claim_a(wide)["verdict"] == "inconclusive"


def test_each_direction_draws_its_own_stream():
    cells = {("fig1", "High", "lesaug"): (0.8, 0.8)}
    spread = {"base": (0.05, 0.05)}
    a = C.paper_replicates(cells, "brain_to_lung", spread, 50)[("fig1", "High", "lesaug")]["f2"]
    b = C.paper_replicates(cells, "lung_to_brain", spread, 50)[("fig1", "High", "lesaug")]["f2"]
    assert not np.array_equal(a[1:], b[1:])


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


def test_f2_from_counts_needs_no_precision():
    assert C._f2_counts(np.array(0), np.array(10), np.array(0)) == 0  # called nothing: F2 0, no 0/0
    assert C._f2_counts(np.array(10), np.array(10), np.array(25)) == pytest.approx(50 / 65)


def test_a_figure_page_states_its_own_findings_beside_the_papers():
    """`figure_verdicts` decides exactly the findings `Figure.claims` gives a figure, from that figure's runs, with
    the F2 verdict beside, and the paper's column is the same rule on the paper's numbers."""
    paper = V.paper_verdicts(reference.reported())
    ev = evidence({"High": 0.95, "VLow": 0.9}, {"High": 0.6, "VLow": 0.55})

    class FakeRunner:  # figure_verdicts asks run_evidence for the runs; here they are made up
        P = None
    orig = V.run_evidence
    V.run_evidence = lambda runner, d, n, figs: ev
    try:
        for fig, letters in (("fig1", ["(a)", "(b)"]), ("fig2", ["(c)", "(g)"])):
            got = V.figure_verdicts(FakeRunner(), fig, "brain_to_lung", 200)
            assert [c[:3] for c in got.claim] == letters
            assert list(got.ours) == [c(ev)["verdict"] for c in V.figure_claims(fig)]
            assert list(got["ours F2"]) == [c(ev, "f2")["verdict"] for c in V.figure_claims(fig)]
            if fig == "fig1":
                assert got.ours.iloc[0] == "holds"  # (a): LesAug far better in both rows
            want = paper[paper.direction == "brain_to_lung"].set_index("claim").verdict
            assert list(got.paper) == [want[c] for c in got.claim]
    finally:
        V.run_evidence = orig


def test_independent_comparisons_combine_with_their_seed_degrees_of_freedom():
    a = C.t_comparison(0.2, 0.01, 0.01, 0.01 ** 2 / 2)  # seed part with 2 df, test part as large
    assert a.df_seed == pytest.approx(2)  # not the df of the total (8)
    d = a - C.t_comparison(0.1, 0.01, 0.01, 0.01 ** 2 / 2)
    assert d.df_seed == pytest.approx(4) and d.var_seed == pytest.approx(0.02) and d.var_test == pytest.approx(0.02)
    from scipy import stats
    assert d.hi - d.point == pytest.approx(stats.t.ppf(0.975, 16) * np.sqrt(0.04))  # Satterthwaite: (0.04)^2 / (0.02^2/4)


def test_only_fig1_high_runs_are_shared_by_the_papers_cells():
    """Lung -> brain prints LesAug's Fig 1 Medium and Low as the same numbers: two runs, two sets of replicates."""
    rep = reference.reported()
    ev = V.paper_evidence("lung_to_brain", rep, 200)
    med, low = ev.stats[("fig1", "Medium", "lesaug")]["f2"], ev.stats[("fig1", "Low", "lesaug")]["f2"]
    assert rep["fig1"]["lung_to_brain"]["Medium"]["lesaug"] == rep["fig1"]["lung_to_brain"]["Low"]["lesaug"]
    assert med is not low and not np.array_equal(med[1:], low[1:])
    assert ev.stats[("fig2", "Low", "lesagn")]["f2"] is ev.stats[("fig1", "High", "lesagn")]["f2"]  # one run


def test_a_swap_test_by_random_swaps_counts_the_observed_layout():
    ratio, lo, hi, k = V.swap_test(fig3_frame(0.01, 0.2, pairs=20), sims=999)
    assert k == 20 and lo == pytest.approx(1 / 1000)  # never 0


def test_seeds_to_decide_is_the_textbook_t_test_sample_size():
    from lesionlib.comparisons import seeds_to_decide

    # one-sample t test, two-sided alpha 0.05, power 0.8 (G*Power): effect size 1 needs 10, effect size 2 needs 5
    assert seeds_to_decide(np.array([0.0, 1.0, 2.0]), alpha=0.05) == 10
    assert seeds_to_decide(np.array([0.5, 1.0, 1.5]), alpha=0.05) == 5
    assert seeds_to_decide(np.array([-1.0, 1.0, 0.0]) + 0.0, alpha=0.05) is None  # no effect: never
    assert seeds_to_decide(np.array([0.3])) is None  # one seed: no spread to project from
    assert seeds_to_decide(np.array([0.0, 1.0, 2.0])) > 10  # the Controls' default alpha (0.01) asks for more
