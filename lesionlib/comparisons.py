"""One comparison, one interval, one sign: intervals that cover with few seeds, Holm, and the Controls page.

A comparison is a linear contrast of cells (say AUC of LesAug minus AUC of LesAgn in one row of Fig 1).
It is decided on **skill** (the AUC: threshold-free) and reported beside on the paper's F2 at the fixed
threshold 0.5. Its sign is +1 when its 95 % interval lies above 0, -1 below, 0 when it holds 0 (`sign`).

Where the uncertainty comes from (ours, `cell_replicates` and `seed_comparison`): every run of a
direction is scored on one test set, so a difference between arms varies (1) from seed to seed and
(2) with the test patients, who are common to every seed. The variance of the mean over S seeds of a
per-seed difference d_s is

    Var(mean d) = (Var(d_s) - C) / S + C,

C being the covariance between two seeds' d that the shared test patients create. The between-seed
sample variance estimates the first term (with S - 1 degrees of freedom); a bootstrap over test
patients, the same draws for every cell and seed, estimates C as the mean covariance between different
seeds' replicates. The interval is a Student-t one with Welch-Satterthwaite degrees of freedom
(t with S - 1 df when seeds dominate). One seed leaves the seed variance unknown: such an interval is
never decisive, nor is one whose estimated variance is 0. `lesionlib.simulation` measures coverage.

The paper's cells (`paper_replicates`) are one run each: they get the sampling error of a 200-lesion test
set and the run-to-run spread that the paper's own Fig 3 ranges imply; their intervals are percentiles of
those replicates. A finding that combines several comparisons adjusts them with Holm (`holm_signs`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .arms import arm_of_label, label
from .metrics import f2_from_rp
from .profile import DIRECTIONS
from .runner import THRESHOLD

LEVEL = 0.95

# The paper's test sets: 200 lesions of the target organ. Malignant fraction of each organ's set:
# Cheng's 1426 gliomas of 3064 slices; LIDC nodules with >= 3 readers: 38 % (lesionlib's table).
PAPER_TEST_SIZE = 200
PAPER_MALIGNANT_FRACTION = {"brain": 1426 / 3064, "lung": 0.38}
# Expected range of 5 independent normal draws in units of their sd (Fig 3: 5 folds): sd = range / 2.326.
RANGE_OF_5 = 2.326
METRICS = ("auc", "f2")  # skill (decides), the paper's measure (reported beside)


# --- signs and intervals ---------------------------------------------------------------------------

def sign(lo: float, hi: float) -> int:
    """+1 when the interval lies above 0, -1 when below, 0 when it holds 0 (or is undefined)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def sign_verdict(s: int) -> str:
    """One comparison the paper says is positive: holds (+), does not hold (-), inconclusive (0)."""
    return {1: "holds", -1: "does not hold", 0: "inconclusive"}[s]


def interval(point: float, reps, level: float = LEVEL) -> tuple[float, float, float]:
    """(point, lo, hi): the percentile interval of bootstrap replicates around a point estimate."""
    reps = np.asarray(reps, dtype=float)
    reps = reps[np.isfinite(reps)]
    if not len(reps):
        return float(point), float("nan"), float("nan")
    a = (1 - level) / 2
    return float(point), float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


@dataclass(frozen=True)
class Comparison:
    """A contrast's estimate, its interval and two-sided p-value; `var_seed`/`df_seed` and `var_test` are the
    parts of its variance (ours), `reps` its replicates (the paper's), so independent ones can be combined."""

    point: float
    lo: float
    hi: float
    p: float
    var_seed: float = float("nan")
    df_seed: float = float("nan")
    var_test: float = float("nan")
    reps: np.ndarray | None = None
    note: str = ""

    @property
    def sign(self) -> int:
        return sign(self.lo, self.hi)

    def __sub__(self, other: "Comparison") -> "Comparison":
        """The difference of two independent comparisons (e.g. of two directions, whose test sets differ)."""
        if self.reps is not None and other.reps is not None:
            n = min(len(self.reps), len(other.reps))
            return replicate_comparison(self.point - other.point, self.reps[:n] - other.reps[:n])
        term = sum(c.var_seed ** 2 / c.df_seed for c in (self, other) if c.var_seed)
        return t_comparison(self.point - other.point, self.var_seed + other.var_seed,
                            self.var_test + other.var_test, term)


UNDECIDED = Comparison(float("nan"), float("nan"), float("nan"), 1.0)


def t_comparison(point: float, var_seed: float, var_test: float, seed_term: float, level: float = LEVEL,
                 note: str = "") -> Comparison:
    """A Student-t interval around `point` with variance var_seed + var_test and Welch-Satterthwaite df;
    `seed_term` = var_seed^2 / df_seed summed over independent seed parts (test parts have infinite df).
    The Comparison keeps var_seed with its own df (var_seed^2 / seed_term), so independent ones combine."""
    var = var_seed + var_test
    df_seed = var_seed ** 2 / seed_term if seed_term > 0 else float("inf")
    if not np.isfinite(var) or var <= (1e-9 * max(1.0, abs(point))) ** 2:  # zero (up to rounding): never decisive
        return Comparison(point, float("nan"), float("nan"), 1.0, var_seed, float("nan"), var_test,
                          note=note or "no variance estimate")
    df = var ** 2 / seed_term if seed_term > 0 else float("inf")
    se = float(np.sqrt(var))
    q = stats.t.ppf(0.5 + level / 2, df) if np.isfinite(df) else stats.norm.ppf(0.5 + level / 2)
    p = 2 * (stats.t.sf(abs(point) / se, df) if np.isfinite(df) else stats.norm.sf(abs(point) / se))
    return Comparison(float(point), float(point - q * se), float(point + q * se), float(p), float(var_seed),
                      float(df_seed), float(var_test), note=note)


def seed_comparison(x: np.ndarray, level: float = LEVEL) -> Comparison:
    """The mean over seeds of a per-seed contrast `x` (row 0: observed, rows 1..: test-patient bootstrap
    replicates, one column per seed), with the interval of the module docstring."""
    x = np.asarray(x, dtype=float)
    obs, reps = x[0], x[1:]
    reps = reps[np.isfinite(reps).all(axis=1)]
    n = x.shape[1]
    point = float(np.mean(obs))
    if n < 2 or not np.isfinite(obs).all():
        return Comparison(point, float("nan"), float("nan"), 1.0, note="one seed: its seed-to-seed spread is unknown")
    var_seed = float(np.var(obs, ddof=1)) / n
    cov = np.cov(reps, rowvar=False) if len(reps) > 2 else np.zeros((n, n))
    common = float(max(0.0, (cov.sum() - np.trace(cov)) / (n * (n - 1))))  # what the shared test set adds
    return t_comparison(point, var_seed, common, var_seed ** 2 / (n - 1), level)


def replicate_comparison(point: float, reps, level: float = LEVEL) -> Comparison:
    """A percentile interval and a two-sided p-value from replicates that already carry every source of error."""
    reps = np.asarray(reps, dtype=float)
    reps = reps[np.isfinite(reps)]
    _, lo, hi = interval(point, reps, level)
    p = min(1.0, 2 * min(np.mean(reps <= 0), np.mean(reps >= 0))) if len(reps) else 1.0
    if len(reps) and np.ptp(reps) == 0:
        lo, hi, p = float("nan"), float("nan"), 1.0  # every replicate equal: no spread, never decisive
    return Comparison(float(point), lo, hi, float(p), reps=reps)


def holm_signs(comps, level: float = LEVEL) -> list[int]:
    """Signs of `comps` after Holm's step-down adjustment (family-wise error 1 - `level`): 0 unless rejected."""
    comps = list(comps)
    alpha = 1 - level
    order = sorted(range(len(comps)), key=lambda i: comps[i].p)
    out = [0] * len(comps)
    for rank, i in enumerate(order):
        if comps[i].p > alpha / (len(comps) - rank) or comps[i].sign == 0:
            break
        out[i] = comps[i].sign
    return out


# --- replicates: ours (paired over test patients, per seed) and the paper's ------------------------

def _f2_counts(tp, pos, called):
    """F2 from counts: 5 TP / (5 TP + 4 FN + FP), 0 where nothing is positive or called (no precision needed)."""
    den = 4 * pos + called
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 5 * tp / np.where(den > 0, den, 1), 0.0)


def _patient_weights(cells: dict, n_boot: int, seed):
    """Each test patient's weight per replicate (row 0: the data as observed), shared by every cell and seed."""
    n_seeds = len(next(iter(cells.values())))
    first = next(iter(cells.values()))[0]
    ids = np.asarray(first["test_ids"])
    _, cluster = np.unique(np.asarray(first["test_patients"]), return_inverse=True)
    n_pat = cluster.max() + 1
    for key, results in cells.items():
        if len(results) != n_seeds:
            raise ValueError(f"cell {key} has {len(results)} seeds, others {n_seeds}")
        for res in results:
            if not np.array_equal(np.asarray(res["test_ids"]), ids):
                raise ValueError(f"cell {key}: runs scored on different test sets cannot be compared pairwise")
    w = np.random.default_rng(seed).multinomial(n_pat, np.full(n_pat, 1 / n_pat), size=n_boot).astype(float)
    return cluster, n_pat, np.vstack([np.ones(n_pat), w])


def _weighted_auc(y, score, w):
    """ROC AUC of `score` for labels `y` under each row of lesion weights `w` (ties count one half)."""
    order = np.argsort(score, kind="mergesort")
    y, score, w = y[order], score[order], w[:, order]
    pos, neg = w * y, w * ~y
    _, first = np.unique(score, return_index=True)  # groups of tied scores, in ascending order
    pos_g, neg_g = np.add.reduceat(pos, first, axis=1), np.add.reduceat(neg, first, axis=1)
    below = np.cumsum(neg_g, axis=1) - neg_g  # negatives scored strictly lower than each group
    den = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (pos_g * (below + 0.5 * neg_g)).sum(1) / den, np.nan)


def cell_replicates(cells: dict, n_boot: int, seed=0) -> dict:
    """cell -> {'auc', 'f2', 'called'}: arrays (n_boot + 1, seeds), row 0 as observed, rows 1.. resampling the
    test patients (the same draws for every cell and seed: comparisons are paired). 'called' is the share
    of test lesions called malignant.

    `cells` maps any key to a cell's results, one per seed (the same seeds, in the same order, everywhere).
    """
    cluster, n_pat, w = _patient_weights(cells, n_boot, seed)
    wl = w[:, cluster]
    count = lambda m: w @ np.bincount(cluster, weights=m, minlength=n_pat)  # noqa: E731
    out = {}
    for key, results in cells.items():
        auc, f2, called = [], [], []
        for res in results:
            y, pr = np.asarray(res["labels"]) == 1, np.asarray(res["probs"], float)
            c = pr >= THRESHOLD
            auc.append(_weighted_auc(y, pr, wl))
            f2.append(_f2_counts(count(y & c), count(y), count(c)))
            called.append(count(c) / count(np.ones_like(c)))
        out[key] = {"auc": np.stack(auc, 1), "f2": np.stack(f2, 1), "called": np.stack(called, 1)}
    return out


def paper_spreads(fig3: dict) -> dict:
    """arm -> (sd of R, sd of P) from one direction of the paper's Fig 3 ranges over 5 folds (range / 2.326);
    Base, which Fig 3 does not show, gets the larger of the two shown arms' spreads."""
    sd = {arm: (float(np.ptp(v["R"])) / RANGE_OF_5, float(np.ptp(v["P"])) / RANGE_OF_5) for arm, v in fig3.items()}
    sd["base"] = tuple(max(s[i] for s in sd.values()) for i in (0, 1))
    return sd


def paper_replicates(cells: dict, direction: str, spreads: dict, n_boot: int, seed: int = 0) -> dict:
    """cell -> {'f2': array (n_boot + 1, 1)} for the paper's (R, P) cells of one direction: row 0 as printed, rows
    1.. another run (R and P drawn with the arm's Fig 3 spread) scored on another 200-lesion test set.

    `cells` maps (figure, row, arm) to the paper's (R, P). A Fig 2 cell printed exactly as Fig 1's High cell
    of its arm is that run (Fig 2's High row, and Base and LesAgn in every row) and shares its replicates. Each direction draws from its own stream.
    """
    organ = DIRECTIONS[direction][1]
    n_pos = round(PAPER_TEST_SIZE * PAPER_MALIGNANT_FRACTION[organ])
    n_neg = PAPER_TEST_SIZE - n_pos
    rng = np.random.default_rng([seed, list(DIRECTIONS).index(direction)])
    runs: dict = {}
    out = {}
    for key, (r, p) in cells.items():
        arm = key[-1]
        high = ("fig1", "High", arm)  # Fig 2's cells printed as Fig 1's High run are that run; nothing else is
        run = high if key[0] == "fig2" and cells.get(high) == (r, p) else key
        if run not in runs:
            sd_r, sd_p = spreads.get(arm, spreads["base"])
            rr = np.clip(r + sd_r * rng.standard_normal(n_boot), 0, 1)
            pp = np.clip(p + sd_p * rng.standard_normal(n_boot), 1e-3, 1)
            # false-positive rate that gives precision pp at recall rr on this test set
            fpr = np.minimum(1.0, rr * n_pos * (1 - pp) / (pp * n_neg))
            tp, fp = rng.binomial(n_pos, rr), rng.binomial(n_neg, fpr)
            runs[run] = np.concatenate([[f2_from_rp(r, p)], _f2_counts(tp, n_pos, tp + fp)])[:, None]
        out[key] = {"f2": runs[run]}
    return out


# --- the controls ----------------------------------------------------------------------------------

CONTROL_COMPARISONS = (  # (arm, arm it must beat, what a win would show)
    ("lesaug", "lesshuf", "the source labels carry knowledge (beyond a warm start)"),
    ("lesaug", "lesstat", "the source model's features matter (beyond its weight scale)"),
    ("lesagn", "agnstat", "G's features matter (beyond its weight scale)"),
    ("lesaug", "lesagn", "lesion-augmented beats lesion-agnostic transfer at this size"),
    ("lesaug", "base", "lesion-augmented transfer beats training from scratch at this size"),
)


def condition_cells(specs: dict, results: list, condition) -> dict:
    """arm -> its results over seeds, for the Controls runs of one data condition ({(shared, arm, seed): spec})."""
    cells: dict = {}
    for (c, arm, _), res in zip(specs, results):
        if c == condition:
            cells.setdefault(arm, []).append(res)
    return cells


def skill(reps: dict, arm, metric: str = "auc") -> Comparison:
    """One cell's mean AUC over seeds minus 0.5 (or its F2), with the interval of the module docstring."""
    x = reps[arm][metric]
    return seed_comparison(x - 0.5 if metric == "auc" else x)


def gated(c: Comparison, a_skill: Comparison, b_skill: Comparison) -> Comparison:
    """`c` = a - b, undecided when the arm it would declare the better one has no skill shown (AUC 0.5 in its
    interval): a win of a model that ranks lesions no better than a coin is no finding."""
    winner = a_skill if c.sign > 0 else b_skill if c.sign < 0 else None
    if winner is not None and winner.sign <= 0:
        return Comparison(c.point, float("nan"), float("nan"), 1.0, c.var_seed, c.df_seed, c.var_test, c.reps,
                          note="the better arm shows no skill (AUC 0.5 in its interval)")
    return c


def compare_cells(reps: dict, a, b, metric: str = "auc") -> Comparison:
    """a - b of `metric` over seeds, paired over test patients, gated on the skill of the better arm."""
    c = seed_comparison(reps[a][metric] - reps[b][metric])
    return gated(c, skill(reps, a), skill(reps, b))


def compare_controls(cells: dict, n_boot: int = 1000, seed=0) -> list[dict]:
    """Every control comparison on one condition's cells: AUC (decides) and F2 differences, intervals, verdicts,
    Holm-adjusted over the page's comparisons of this condition."""
    reps = cell_replicates(cells, n_boot, seed)
    auc = [compare_cells(reps, a, b, "auc") for a, b, _ in CONTROL_COMPARISONS]
    f2 = [compare_cells(reps, a, b, "f2") for a, b, _ in CONTROL_COMPARISONS]
    adj = holm_signs(auc)
    rows = []
    for (a, b, what), u, v, s in zip(CONTROL_COMPARISONS, auc, f2, adj):
        rows.append({"comparison": f"{label(a)} − {label(b)}", "a win shows": what,
                     "AUC difference": u.point, "AUC lo": u.lo, "AUC hi": u.hi, "p": u.p,
                     "AUC verdict": sign_verdict(s),
                     "F2 difference": v.point, "lo": v.lo, "hi": v.hi, "verdict": sign_verdict(v.sign),
                     "note": u.note})
    return rows


def arm_skill(cells: dict, n_boot: int = 1000, seed=0) -> dict:
    """arm -> (mean AUC, lo, hi) over seeds and test patients: what the Controls page's bars show."""
    reps = cell_replicates(cells, n_boot, seed)
    out = {}
    for arm in cells:
        c = skill(reps, arm)
        out[arm] = (c.point + 0.5, c.lo + 0.5, c.hi + 0.5)
    return out


def control_verdicts(runner, direction: str, n_boot: int = 1000) -> pd.DataFrame:
    """Each control comparison in each data condition of the Controls page: the difference of AUC (skill: it
    decides) and of F2 (the paper's measure), each with its interval and verdict."""
    from .analysis import figure_runs

    specs, results = figure_runs(runner, "controls", direction)
    seed = [0, list(DIRECTIONS).index(direction)]  # each direction its own stream
    return pd.DataFrame([{"direction": direction, "shared": cond, **row}
                         for cond in dict.fromkeys(k[0] for k in specs)
                         for row in compare_controls(condition_cells(specs, results, cond), n_boot, seed)])


def seeds_to_decide(diffs, alpha: float = (1 - LEVEL) / len(CONTROL_COMPARISONS), power: float = 0.8,
                    most: int = 1000) -> int | None:
    """The fewest seeds at which paired per-seed differences like `diffs` would be decided by a two-sided t test
    at `alpha` with probability `power` (noncentral t), or None beyond `most`: a projection that takes the
    measured mean and sd as the truth. The default alpha is Bonferroni's over the Controls' comparisons, which
    Holm's step-down never needs more than; the test-patient covariance is left out (it only widens)."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2 or not np.isfinite(d).all() or d.std(ddof=1) == 0:
        return None
    effect = abs(d.mean()) / d.std(ddof=1)
    for n in range(2, most + 1):
        t = stats.t.ppf(1 - alpha / 2, n - 1)
        nc = effect * np.sqrt(n)
        if stats.nct.sf(t, n - 1, nc) + stats.nct.cdf(-t, n - 1, nc) >= power:
            return n
    return None


POWER_COMPARISONS = ("LesAug − LesShuf", "LesAug − LesAgn", "LesAug − LesStat")  # the control question's three


def control_power(paths) -> pd.DataFrame:
    """The measured power of the Controls against their cost: one row per probe file
    (`benchmarks/controls_probe.py`'s JSON), data condition and number of seeds, with the AUC verdicts of the
    control question's comparisons, the training seconds those seeds took, and whether the row *decides* the
    question (organs that share cues: LesAug beats LesShuf and LesAgn; organs that do not: none of the three
    holds, while LesAgn − AgnStat and LesAug − Base, which G's features alone may win, may hold)."""
    import json
    from pathlib import Path

    from .report import direction_label, interval_text

    rows = []
    for path in paths:
        path = Path(path)
        try:
            probe = json.loads(path.read_text())
            settings, machine = probe["settings"], probe["machine"]
            conditions = probe["conditions"]
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path} is not a controls probe result ({err!r}); write it again with "
                             "`python -m benchmarks.controls_probe DIRECTION PROFILE`") from err
        where = machine.get("gpu") or f"{machine['cpus']} CPU cores"
        for cond in conditions:
            cost = list(cond["seconds_per_seed"].values())
            for by in cond["by_seeds"]:
                k = by["seeds"]
                found = {c["comparison"]: c for c in by["comparisons"]}
                row = {"profile": probe["profile"], "direction": direction_label(probe["direction"]),
                       "machine": where, "crop": f"{settings['image_size']}²", "epochs": settings["epochs"],
                       "|d_t|": settings["target_size"], "|d_s|": settings["source_size"],
                       "shared": cond["shared"], "seeds": k, "training minutes": round(sum(cost[:k]) / 60, 1)}
                for name in POWER_COMPARISONS:
                    c = found[name]
                    num = [np.nan if c[k] is None else c[k] for k in ("AUC difference", "AUC lo", "AUC hi")]  # JSON null: no interval
                    row[name] = f"{interval_text(*num)} {c['AUC verdict']}"
                verdicts = [found[n]["AUC verdict"] for n in POWER_COMPARISONS]
                if cond["shared"] > 0:
                    row["decides"] = verdicts[0] == "holds" and verdicts[1] == "holds"
                else:  # no lesion knowledge to carry over: none of the three may hold
                    row["decides"] = "holds" not in verdicts
                rows.append(row)
            if cond.get("auc"):  # the projection from this condition's seeds: where a comparison would hold
                auc = cond["auc"]
                for name in POWER_COMPARISONS:
                    other = arm_of_label(name.split(" − ")[1])
                    diffs = [auc["lesaug"][s] - auc[other][s] for s in auc["lesaug"]]
                    rows[-1][f"{name}: seeds to hold"] = seeds_to_decide(diffs) if np.mean(diffs) > 0 else None
    return pd.DataFrame(rows)


def power_lines(power: pd.DataFrame) -> str:
    """What `control_power`'s table says, as Markdown: per probe, the fewest seeds that decide each condition,
    then the cheapest setting measured that decides both (or that none does)."""
    lines, both = [], []
    for (profile, direction), rows in power.groupby(["profile", "direction"], sort=False):
        first = rows.iloc[0]
        top = rows[rows.seeds == rows.groupby("shared").seeds.transform("max")]
        per_seed = (top["training minutes"] / top.seeds).mean()
        parts = []
        for shared, cond in rows.groupby("shared", sort=False):
            ok = cond[cond.decides]
            parts.append(f"`phantom_shared` = {shared:g}: " + (f"decided from {int(ok.seeds.min())} seeds on"
                         if not ok.empty else f"not decided with {int(cond.seeds.max())} seeds"))
        lines.append(f"- `{profile}` ({direction}; {first.crop} crops, ≤ {first.epochs} epochs, |d_t| = "
                     f"{first['|d_t|']}, |d_s| = {first['|d_s|']}, {first.machine}; {per_seed:.1f} training "
                     "minutes per seed and condition): " + "; ".join(parts) + ".")
        need, wrong = {}, {}  # projected seeds to hold: where cues are shared (two must), where none is (none may)
        for shared, cond in rows.groupby("shared", sort=False):
            last = cond.iloc[-1]
            got = {n: last.get(f"{n}: seeds to hold") for n in POWER_COMPARISONS}
            got = {n: int(v) for n, v in got.items() if v is not None and v == v}
            if shared > 0:
                need.update({n: got.get(n) for n in POWER_COMPARISONS[:2]})
            else:
                wrong.update(got)
            if got:
                lines.append(f"  - projected from the per-seed differences of its {int(last.seeds)} seeds at "
                             f"`phantom_shared` = {shared:g} (taken as the truth; 80 % power at 0.05 / 5): "
                             + ", ".join(f"{n} would hold{' (wrongly: no cue is shared)' if shared == 0 else ''} "
                                         f"from about {v} seeds" for n, v in got.items()))
        if need and all(need.get(n) for n in POWER_COMPARISONS[:2]):
            n_need = max(need.values())
            if wrong and min(wrong.values()) <= n_need:
                lines.append(f"  - more seeds alone cannot decide it here: before both hold where the cues are shared "
                             f"(about {n_need} seeds), {min(wrong, key=wrong.get)} would hold where none is (about "
                             f"{min(wrong.values())}); what these comparisons see is not only knowledge of shared cues")
            else:
                n_cond = rows.shared.nunique()
                lines.append(f"  - both, at {n_need} seeds and {n_cond} condition{'s' if n_cond > 1 else ''}: about "
                             f"{n_need * per_seed * n_cond / 60:.0f} training hours on {first.machine}")
        for k, at_k in rows.groupby("seeds"):
            if at_k.shared.nunique() > 1 and at_k.decides.all():
                both.append((at_k["training minutes"].sum(), profile, direction, k, first.machine))
    if both:
        minutes, profile, direction, k, machine = min(both)
        lines.append(f"\nThe cheapest setting measured that decides both conditions: `{profile}` with {k} control "
                     f"seeds, {minutes:.0f} training minutes for {direction}'s controls on {machine}.")
    else:
        lines.append("\nNo setting measured here decides both conditions.")
    return "\n".join(lines) + "\n"
