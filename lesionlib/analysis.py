"""From finished runs to the paper's findings: figure frames, fold ranges, loss curves and the claims.

Every function here reads results of the run cache (through a `Runner`) and computes; nothing is
stored or typed in. The Conclusions page calls `claims` for each direction.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .experiment import FIGURES, KEY_NAMES, Runner, results_frame
from .metrics import best_arm, f2_from_rp
from .profile import DIRECTIONS, SIZE_NAMES, Profile


def figure_runs(runner: Runner, fig: str, direction: str):
    """(specs, results) of one figure and direction, training whatever the cache lacks."""
    specs = FIGURES[fig](runner.P, direction)
    return specs, runner.run_all(specs.values())


def figure_frame(runner: Runner, fig: str, direction: str, bootstrap: int | None = None) -> pd.DataFrame:
    """The per-run results frame of one figure and direction."""
    specs, results = figure_runs(runner, fig, direction)
    n_boot = runner.P.bootstrap if bootstrap is None else bootstrap
    return results_frame(specs, results, KEY_NAMES[fig], n_boot)


def mean_f2(frame: pd.DataFrame, row: str) -> pd.DataFrame:
    """F2 of the mean R and P over seeds, per (row, arm) -> rows x arms (the paper's F2 of a table cell)."""
    g = frame.groupby([row, "arm"])[["recall", "precision"]].mean()
    f = pd.Series({k: f2_from_rp(r, p) for k, (r, p) in g.iterrows()}).unstack()
    order = [s for s in SIZE_NAMES if s in f.index] or sorted(f.index)
    return f.loc[order]


def fold_ranges(frame: pd.DataFrame) -> pd.DataFrame:
    """Fig 3: min and max of R and P over folds (and seeds) per arm, their spread (max - min), and how many
    of the folds' runs are degenerate (all or no test lesions called malignant: they stretch a range)."""
    g = frame.groupby("arm", sort=False)
    out = pd.DataFrame({"R min": g["recall"].min(), "R max": g["recall"].max(),
                        "P min": g["precision"].min(), "P max": g["precision"].max()})
    out["R spread"] = out["R max"] - out["R min"]
    out["P spread"] = out["P max"] - out["P min"]
    out["F2 sd"] = g["f2"].std(ddof=1)
    if "degenerate" in frame:
        out["degenerate runs"] = g["degenerate"].apply(lambda d: int(d.astype(bool).sum()))
    return out


def loss_curves(specs: dict, results: list) -> pd.DataFrame:
    """Fig 5: validation loss per epoch of each (arm, seed), also divided by Base's loss before training.

    Dividing by one common reference (Base at epoch 0, i.e. an untrained network) keeps the arms'
    starting points comparable: a start below 1 means the initial weights already know something.
    """
    rows = []
    for (arm, seed), res in zip(specs, results):
        for h in res["history"]:
            rows.append({"arm": arm, "seed": seed, "epoch": h["epoch"], "valid_loss": h["valid_loss"],
                         "best_epoch": res["fit"]["best_epoch"], "seconds": res["fit"]["seconds"],
                         "epochs_run": res["fit"]["epochs_run"]})
    df = pd.DataFrame(rows)
    ref = df[(df.arm == "base") & (df.epoch == 0)].set_index("seed")["valid_loss"]
    df["normalised"] = df["valid_loss"] / df["seed"].map(ref)
    return df


def convergence(curves: pd.DataFrame) -> pd.DataFrame:
    """Per arm (mean over seeds): normalised loss before training, at its best epoch, the best epoch,
    and seconds per epoch x best epoch (the time it took to reach its best weights)."""
    per_run = curves.groupby(["arm", "seed"]).apply(lambda g: pd.Series({
        "start": g.loc[g.epoch == 0, "normalised"].iloc[0],
        "best": g.loc[g.epoch > 0, "normalised"].min() if (g.epoch > 0).any() else np.nan,
        "best epoch": g["best_epoch"].iloc[0],
        "seconds to best": g["seconds"].iloc[0] * g["best_epoch"].iloc[0] / max(g["epochs_run"].iloc[0], 1)}),
        include_groups=False)
    return per_run.groupby("arm", sort=False).mean().reindex([a for a in ("base", "lesagn", "lesaug", "lesonly")
                                                            if a in set(curves.arm)])


def _trend(values: pd.Series) -> float:
    """Spearman correlation between size rank (High = 3 ... VLow = 0) and `values` (nan with < 3 points)."""
    from scipy.stats import spearmanr

    rank = [len(SIZE_NAMES) - 1 - SIZE_NAMES.index(s) for s in values.index]
    if len(values) < 3 or values.nunique() < 2:
        return float("nan")
    return float(spearmanr(rank, values.values).statistic)


def _rho(values: pd.Series) -> str:
    """The size trend of `values` in words for the evidence column."""
    r = _trend(values)
    return "n/a (fewer than 3 sizes)" if np.isnan(r) else f"{r:+.2f}"


def _degenerate(frame: pd.DataFrame, arms=("base", "lesagn", "lesaug")) -> str:
    """The degenerate runs (every or no test lesion called malignant) among `arms`, for the claims table."""
    if "degenerate" not in frame:
        return ""
    bad = frame[frame["arm"].isin(arms) & frame["degenerate"].astype(bool)]
    key = [c for c in frame.columns if c in ("size", "source size", "fold")][:1]
    return "; ".join(f"{r['arm']}{' ' + str(r[key[0]]) if key else ''}: {r['degenerate']} (AUC {r['auc']:.2f})"
                     for _, r in bad.iterrows())


def claims(runner: Runner, direction: str) -> list[dict]:
    """Our verdict on each of the paper's findings for one direction, with the evidence in words.

    `degenerate runs` lists the runs behind a claim that called every test lesion malignant, or none:
    their R and P come from the threshold, not from what they learned, so such a verdict needs their AUC.
    """
    out = []
    f1 = figure_frame(runner, "fig1", direction, bootstrap=0)
    g = f1.groupby(["size", "arm"])[["recall", "precision"]].mean()
    sizes = [s for s in SIZE_NAMES if s in set(f1["size"])]
    wins = [s for s in sizes if best_arm({a: tuple(g.loc[(s, a)].round(2)) for a in ("lesagn", "lesaug")}) == "lesaug"]
    out.append({"claim": "(a) LesAug beats LesAgn in most rows of Fig 1", "direction": direction,
                "evidence": f"LesAug ahead (lexicographic R, P) in {len(wins)} of {len(sizes)} rows",
                "holds": len(wins) > len(sizes) / 2, "degenerate runs": _degenerate(f1, ("lesagn", "lesaug"))})
    gap_t = (mean_f2(f1, "size")["lesaug"] - mean_f2(f1, "size")["lesagn"])
    out.append({"claim": "(b) the benefit grows as the target set shrinks", "direction": direction,
                "evidence": f"F2 gap LesAug−LesAgn: {gap_t.iloc[0]:+.2f} at {gap_t.index[0]}, "
                            f"{gap_t.iloc[-1]:+.2f} at {gap_t.index[-1]}; Spearman(size, gap) = {_rho(gap_t)}",
                "holds": bool(gap_t.iloc[-1] > gap_t.iloc[0]), "degenerate runs": _degenerate(f1, ("lesagn", "lesaug"))})
    f2 = figure_frame(runner, "fig2", direction, bootstrap=0)
    m2 = mean_f2(f2, "source size")
    gap_s = m2["lesaug"] - m2["lesagn"]
    out.append({"claim": "(c) the benefit shrinks as the source set shrinks", "direction": direction,
                "evidence": f"F2 gap: {gap_s.iloc[0]:+.2f} at |d_s| {gap_s.index[0]}, {gap_s.iloc[-1]:+.2f} at "
                            f"{gap_s.index[-1]}; Spearman(size, gap) = {_rho(gap_s)}",
                "holds": bool(gap_s.iloc[0] > gap_s.iloc[-1]), "degenerate runs": _degenerate(f2, ("lesagn", "lesaug"))})
    f3 = figure_frame(runner, "fig3", direction, bootstrap=0)
    r3 = fold_ranges(f3)
    aug, agn = r3.loc["lesaug"], r3.loc["lesagn"]
    out.append({"claim": "(d) LesAug varies less across folds than LesAgn", "direction": direction,
                "evidence": f"spread of R {aug['R spread']:.2f} vs {agn['R spread']:.2f}, of P {aug['P spread']:.2f} "
                            f"vs {agn['P spread']:.2f} (LesAug vs LesAgn, {runner.P.cv_folds} folds)",
                "holds": bool(aug["R spread"] < agn["R spread"] and aug["P spread"] < agn["P spread"]),
                "degenerate runs": _degenerate(f3, ("lesagn", "lesaug"))})
    specs, results = figure_runs(runner, "fig5", direction)
    conv = convergence(loss_curves(specs, results))
    others = conv.drop(index=["lesaug"] + (["lesonly"] if "lesonly" in conv.index else []))
    out.append({"claim": "(e) LesAug starts from a lower loss and converges sooner", "direction": direction,
                "evidence": f"normalised start loss {conv.loc['lesaug', 'start']:.2f} vs "
                            f"{others['start'].min():.2f} (best other); best epoch "
                            f"{conv.loc['lesaug', 'best epoch']:.1f} vs {others['best epoch'].min():.1f}",
                "holds": bool(conv.loc["lesaug", "start"] < others["start"].min() and
                              conv.loc["lesaug", "best epoch"] <= others["best epoch"].min()),
                "degenerate runs": ""})  # (e) reads loss curves, which no threshold touches
    return out


def all_claims(P: Profile, runner: Runner | None = None) -> pd.DataFrame:
    """`claims` for both directions as one table."""
    runner = runner or Runner(P)
    return pd.DataFrame([c for d in DIRECTIONS for c in claims(runner, d)])
