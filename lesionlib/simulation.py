"""How often the decision rules err: the whole procedure of `lesionlib.verdicts` on synthetic run outcomes.

No network is trained. A synthetic run scores a synthetic test set shaped like the profile's (its test
patients, slices per patient and malignant share): lesion scores are `skill x label` plus noise that is
partly the patient's (shared by every run, as our runs share one test set), partly the lesion's, partly
the run's own; its skill varies from seed to seed (`seed_auc_sd`) and its probabilities are shifted by a
run-level offset (`bias_sd`, so that F2 at 0.5 varies as it does between real runs). The figures' cells are
laid out as the grid lays them out (Fig 2's Base and LesAgn are Fig 1's High runs in every row).

`false_holds` runs the rules where no arm is better than another and counts how often a finding (or a
Controls comparison) *holds* anyway; `power` counts how often it holds where LesAug really is better;
`coverage` checks the intervals of `comparisons.seed_comparison` against the true expected difference.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from .arms import arm_names
from .comparisons import CONTROL_COMPARISONS, cell_replicates, compare_controls, seed_comparison
from .profile import DIRECTIONS, SIZE_NAMES
from .verdicts import Evidence, claim_a, claim_b, claim_c, claim_d, claim_f, claim_g

FIGURE_ARMS = arm_names("paper")  # the arms the findings compare
SIM_CLAIMS = (claim_a, claim_b, claim_c, claim_f, claim_g)


@dataclass(frozen=True)
class Scenario:
    """The shape of one direction's experiment and how much runs vary (AUC units where it says so)."""

    seeds: int = 3
    test_patients: int = 40
    slices_per_patient: int = 2
    prevalence: float = 0.4
    rows: tuple = SIZE_NAMES
    auc: float = 0.75  # every arm's expected AUC (before `gain`)
    seed_auc_sd: float = 0.04  # sd of a run's AUC from seed to seed
    bias_sd: float = 1.0  # sd of a run's logit offset (its calls at 0.5)
    patient_share: float = 0.3  # share of the score noise that is the patient's (common to every run)
    lesion_share: float = 0.2  # share that is the lesion's (common to every run)
    arm_share: float = 0.1  # share that is the patient's for one arm (common to its seeds, not to other arms)
    n_boot: int = 200

    @classmethod
    def of_profile(cls, P, direction: str = "brain_to_lung", **kw) -> "Scenario":
        """The scenario of a profile's direction: its seeds, test patients, slices per patient and malignant share."""
        target = DIRECTIONS[direction][1]
        m = P.phantom_slices_per_patient[target] if P.data_source == "phantom" else 1
        return cls(seeds=len(P.seeds), test_patients=max(2, -(-P.test_size // m)), slices_per_patient=m,
                   prevalence=P.phantom_malignant_fraction[target], rows=tuple(r for r in SIZE_NAMES
                                                                               if r in P.target_sizes), **kw)


def _delta(auc: float) -> float:
    """Skill (label shift of a unit-variance score) that gives `auc`: AUC = Phi(delta / sqrt 2)."""
    return float(np.sqrt(2) * stats.norm.ppf(auc))


def expected_auc(auc: float, sd: float, points: int = 201) -> float:
    """E[Phi(delta / sqrt 2)] over seeds whose skill spreads so that the AUC's sd is `sd` (Gauss-Hermite)."""
    d, sd_d = _delta(auc), sd * np.sqrt(2) / stats.norm.pdf(_delta(auc) / np.sqrt(2))
    x, w = np.polynomial.hermite_e.hermegauss(points)
    return float(np.sum(w * stats.norm.cdf((d + sd_d * x) / np.sqrt(2))) / np.sum(w))


class TestSet:
    """One synthetic test set: labels, patients and the noise every run shares."""

    __test__ = False  # not a pytest class

    def __init__(self, sc: Scenario, rng):
        m, n_pat = sc.slices_per_patient, sc.test_patients
        y_pat = (rng.random(n_pat) < sc.prevalence).astype(int)
        y_pat[:2] = (1, 0)  # both classes present
        self.patients = np.repeat(np.arange(n_pat), m)
        self.labels = y_pat[self.patients]
        n = len(self.labels)
        self.common = (np.sqrt(sc.patient_share) * rng.standard_normal(n_pat)[self.patients]
                       + np.sqrt(sc.lesion_share) * rng.standard_normal(n))
        self.sc, self.rng, self.arm_noise = sc, rng, {}

    def run(self, auc: float, rng, arm: str = "") -> dict:
        """A synthetic finished run of expected AUC `auc` (one seed of one cell of `arm`)."""
        sc = self.sc
        if arm not in self.arm_noise:  # how this arm's models see each test patient, whatever their seed
            self.arm_noise[arm] = np.sqrt(sc.arm_share) * self.rng.standard_normal(self.patients.max() + 1)[self.patients]
        d = _delta(auc) + sc.seed_auc_sd * np.sqrt(2) / stats.norm.pdf(_delta(auc) / np.sqrt(2)) * rng.standard_normal()
        own = np.sqrt(1 - sc.patient_share - sc.lesion_share - sc.arm_share) * rng.standard_normal(len(self.labels))
        score = d * self.labels + self.common + self.arm_noise[arm] + own
        logit = 2.0 * (score - d / 2) + sc.bias_sd * rng.standard_normal()
        n = len(self.labels)
        return {"labels": self.labels.tolist(), "probs": (1 / (1 + np.exp(-logit))).tolist(),
                "test_ids": [f"l{i}" for i in range(n)], "test_patients": self.patients.tolist()}


def figure_cells(sc: Scenario, rng, gain=None) -> dict:
    """Fig 1 and Fig 2 cells -> results over seeds, on one test set; `gain(fig, row)`: LesAug's AUC gain."""
    ts = TestSet(sc, rng)
    gain = gain or (lambda fig, row: 0.0)
    cells = {}
    for fig in ("fig1", "fig2"):
        for row in sc.rows:
            for arm in FIGURE_ARMS:
                if fig == "fig2" and (arm != "lesaug" or row == "High"):  # the same runs as Fig 1's High
                    cells[(fig, row, arm)] = cells[("fig1", "High", arm)]
                    continue
                a = sc.auc + (gain(fig, row) if arm == "lesaug" else 0.0)
                cells[(fig, row, arm)] = [ts.run(a, rng, f"{fig}{row}{arm}") for _ in range(sc.seeds)]
    return cells


def _fig3(sc: Scenario, rng, folds: int = 3) -> pd.DataFrame:
    """Fig 3's runs with no difference between LesAug and LesAgn: per (fold, seed) R, P and AUC."""
    rows = []
    for seed in range(sc.seeds):
        for fold in range(folds):
            shift = rng.standard_normal(3) * (0.05, 0.05, 0.02)  # what the fold does to both arms
            for arm in ("lesaug", "lesagn"):
                r, p, a = np.array((0.7, 0.7, sc.auc)) + shift + rng.standard_normal(3) * (0.1, 0.1, sc.seed_auc_sd)
                rows.append({"fold": fold, "seed": seed, "arm": arm, "recall": r, "precision": p, "auc": a})
    return pd.DataFrame(rows)


def _verdicts(sc: Scenario, rng, gain=None, with_d: bool = False) -> dict:
    cells = figure_cells(sc, rng, gain)
    ev = Evidence("brain_to_lung", cell_replicates(cells, sc.n_boot, int(rng.integers(1 << 31))),
                  fig3=_fig3(sc, rng) if with_d else None)
    out = {}
    for c in SIM_CLAIMS + ((claim_d,) if with_d else ()):
        for metric in ("auc", "f2"):
            r = c(ev, metric)
            out[(r["claim"][:3], metric)] = r["verdict"]
    return out


def false_holds(sc: Scenario, sims: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per finding and measure, the share of `sims` null experiments (no arm better) in which it *holds*."""
    rng = np.random.default_rng(seed)
    runs = [_verdicts(sc, rng, with_d=True) for _ in range(sims)]
    return _rates(runs, "holds", sims)


def power(sc: Scenario, gain: float, sims: int = 200, seed: int = 1) -> pd.DataFrame:
    """Per finding and measure, how often it holds when LesAug's AUC is above the other arms' in every cell:
    growing as the target shrinks (Fig 1: from 0.5 x `gain` at High to 1.5 x at the smallest) and shrinking
    with the source (Fig 2: from Fig 1's High, the same run, 0.5 x, to 0.25 x at the smallest)."""
    rank = {r: i for i, r in enumerate(sc.rows)}  # High = 0 ... VLow = last
    k = max(len(sc.rows) - 1, 1)

    def g(fig, row):
        return gain * (0.5 + rank[row] / k) if fig == "fig1" else gain * (0.5 - 0.25 * rank[row] / k)
    rng = np.random.default_rng(seed)
    runs = [_verdicts(sc, rng, g) for _ in range(sims)]
    return _rates(runs, "holds", sims)


def _rates(runs: list, verdict: str, sims: int) -> pd.DataFrame:
    keys = list(runs[0])
    rate = {k: sum(r[k] == verdict for r in runs) / sims for k in keys}
    df = pd.Series(rate).unstack()
    df.index.name, df.columns.name = "finding", "measure"
    return df.rename(columns={"auc": "skill (AUC)", "f2": "F2"})


def control_false_holds(sc: Scenario, sims: int = 200, seed: int = 2, gain: float = 0.0) -> pd.Series:
    """Per Controls comparison, how often it holds (Holm over the page's comparisons) when every arm is alike
    (`gain` 0) or LesAug's AUC is `gain` above the rest."""
    rng = np.random.default_rng(seed)
    arms = dict.fromkeys(a for pair in CONTROL_COMPARISONS for a in pair[:2])
    count = dict.fromkeys((f"{a} − {b}" for a, b, _ in CONTROL_COMPARISONS), 0)
    for _ in range(sims):
        ts = TestSet(sc, rng)
        cells = {a: [ts.run(sc.auc + (gain if a == "lesaug" else 0.0), rng, a) for _ in range(sc.seeds)]
                 for a in arms}
        for (a, b, _), row in zip(CONTROL_COMPARISONS, compare_controls(cells, sc.n_boot, int(rng.integers(1 << 31)))):
            count[f"{a} − {b}"] += row["AUC verdict"] == "holds"
    return pd.Series({k: v / sims for k, v in count.items()}, name="holds")


def coverage(sc: Scenario, gain: float = 0.05, sims: int = 400, seed: int = 3, metric: str = "auc") -> float:
    """Share of `sims` experiments whose 95 % interval of AUC(a) - AUC(b) holds the true expected difference."""
    rng = np.random.default_rng(seed)
    truth = expected_auc(sc.auc + gain, sc.seed_auc_sd) - expected_auc(sc.auc, sc.seed_auc_sd)
    hit = 0
    for _ in range(sims):
        ts = TestSet(sc, rng)
        cells = {"a": [ts.run(sc.auc + gain, rng, "a") for _ in range(sc.seeds)],
                 "b": [ts.run(sc.auc, rng, "b") for _ in range(sc.seeds)]}
        reps = cell_replicates(cells, sc.n_boot, int(rng.integers(1 << 31)))
        c = seed_comparison(reps["a"][metric] - reps["b"][metric])
        hit += bool(c.lo <= truth <= c.hi)
    return hit / sims


def error_table(P, direction: str = "brain_to_lung", sims: int = 200, gains=(0.05, 0.1, 0.15)) -> pd.DataFrame:
    """For one profile: per finding and measure, the false-'holds' rate with no effect and the power at each gain."""
    sc = Scenario.of_profile(P, direction)
    out = false_holds(sc, sims).add_prefix("no effect: ")
    for g in gains:
        out = out.join(power(sc, g, sims).add_prefix(f"AUC gain {g:.2f}: "), how="left")
    return out


def with_seeds(sc: Scenario, seeds: int) -> Scenario:
    """`sc` with another number of seeds."""
    return replace(sc, seeds=seeds)
