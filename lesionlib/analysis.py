"""From finished runs to the paper's findings: figure frames, fold ranges, loss curves and the claims.

Every function here reads results of the run cache (through a `Runner`) and computes; nothing is
stored or typed in. The verdicts on the paper's findings are in `lesionlib.verdicts`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from .figures import FIGURES
from .runner import Runner, results_frame
from .metrics import f2_floor, f2_from_rp
from .profile import size_order


def figure_runs(runner: Runner, fig: str, direction: str):
    """(specs, results) of one figure and direction, training whatever the cache lacks."""
    specs = FIGURES[fig].specs(runner.P, direction)
    return specs, runner.run_all(specs.values())


def figure_frame(runner: Runner, fig: str, direction: str, bootstrap: int | None = None) -> pd.DataFrame:
    """The per-run results frame of one figure and direction."""
    specs, results = figure_runs(runner, fig, direction)
    n_boot = runner.P.bootstrap if bootstrap is None else bootstrap
    return results_frame(specs, results, FIGURES[fig].keys, n_boot)


class LesAugGrid(NamedTuple):
    """Fig 4: LesAug's runs, the LesAgn runs it is measured against, their frame, the F2 grid and the gap."""
    specs: dict
    reference: dict
    frame: pd.DataFrame
    f2: pd.DataFrame  # mean F2 of LesAug: rows |d_s|, columns |d_t|, in size order
    gap: pd.DataFrame  # f2 minus LesAgn's mean F2 at the same |d_t| (Fig 1's LesAgn runs)


def lesaug_grid(runner: Runner, direction: str) -> LesAugGrid:
    """Fig 4's grid: LesAug's mean F2 per (source size, target size) and its gap to LesAgn at each target size."""
    P = runner.P
    specs = FIGURES["fig4"].specs(P, direction)
    reference = {k: s for k, s in FIGURES["fig1"].specs(P, direction).items() if k[1] == "lesagn"}
    frame = results_frame(specs, runner.run_all(specs.values()), FIGURES["fig4"].keys, 0)
    agn = results_frame(reference, runner.run_all(reference.values()), FIGURES["fig1"].keys, 0)
    f2 = frame.groupby(["source size", "size"])["f2"].mean().unstack()
    f2 = f2.loc[size_order(f2.index), size_order(f2.columns)]
    return LesAugGrid(specs, reference, frame, f2, f2 - agn.groupby("size")["f2"].mean()[f2.columns])


def pooled_rp(frame: pd.DataFrame, keys) -> pd.DataFrame:
    """R and P per group of `keys` from the runs' counts pooled over seeds: R = sum TP / sum positives, P = sum TP /
    sum called (a seed that called nothing adds no 0 precision to an average; it adds nothing to call)."""
    if not {"positives", "predicted malignant"} <= set(frame):  # a frame without counts: the mean over seeds
        return frame.groupby(keys)[["recall", "precision"]].mean()
    f = frame.assign(tp=(frame["recall"] * frame["positives"]).round())
    g = f.groupby(keys)[["tp", "positives", "predicted malignant"]].sum()
    called = g["predicted malignant"].where(g["predicted malignant"] > 0)
    return pd.DataFrame({"recall": g["tp"] / g["positives"], "precision": (g["tp"] / called).fillna(0.0)})


def mean_f2(frame: pd.DataFrame, row: str) -> pd.DataFrame:
    """F2 of R and P pooled over seeds (`pooled_rp`), per (row, arm) -> rows x arms (the F2 of a table cell)."""
    g = pooled_rp(frame, [row, "arm"])
    f = pd.Series({k: f2_from_rp(r, p) for k, (r, p) in g.iterrows()}).unstack()
    order = size_order(f.index)
    return f.loc[order]


def f2_floor_of(frame: pd.DataFrame) -> float:
    """F2 of calling every lesion of the frame's test set malignant (`metrics.f2_floor` at its malignant share)."""
    return f2_floor(float(frame["positives"].iloc[0]) / float(frame["n_test"].iloc[0]))


def f2_gap(frame: pd.DataFrame, row: str) -> pd.Series:
    """F2 of LesAug minus F2 of LesAgn per row (the paper's measure of the transfer benefit; see `mean_f2`)."""
    f = mean_f2(frame, row)
    return (f["lesaug"] - f["lesagn"]).rename("F2(LesAug) - F2(LesAgn)")


def arm_intervals(frame: pd.DataFrame, row: str = "size") -> pd.DataFrame:
    """Mean and 95 % interval of R and P per (row, arm), long: columns row, arm, metric, mean, lo, hi.

    With several seeds: a Student-t interval of the mean over seeds; with one: the run's bootstrap
    interval over its test lesions (`recall_lo` ...), or none (lo = hi = mean) when it has none.
    """
    from .metrics import seed_interval

    out = []
    for (name, arm), g in frame.groupby([row, "arm"], sort=False):
        for m in ("recall", "precision"):
            if g["seed"].nunique() >= 2:
                mean, lo, hi = seed_interval(g[m])
            elif f"{m}_lo" in g:
                mean, lo, hi = float(g[m].iloc[0]), float(g[f"{m}_lo"].iloc[0]), float(g[f"{m}_hi"].iloc[0])
            else:
                mean = lo = hi = float(g[m].iloc[0])
            out.append({row: name, "arm": arm, "metric": m, "mean": mean, "lo": lo, "hi": hi})
    return pd.DataFrame(out)


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


def degenerate_runs(frame: pd.DataFrame, arms=("base", "lesagn", "lesaug")) -> str:
    """The degenerate runs (at least 90 % of the test lesions called one class) among `arms`, for the Conclusions page."""
    if "degenerate" not in frame:
        return ""
    bad = frame[frame["arm"].isin(arms) & frame["degenerate"].astype(bool)]
    key = [c for c in frame.columns if c in ("size", "source size", "fold")][:1]
    return "; ".join(f"{r['arm']}{' ' + str(r[key[0]]) if key else ''}: {r['degenerate']} (AUC {r['auc']:.2f})"
                     for _, r in bad.iterrows())


def prior_loss(result: dict) -> float:
    """Binary cross-entropy on a run's validation patients of calling every lesion malignant with the training
    set's malignant share: what a head that learnt only the class prior scores (the start-loss yardstick)."""
    t, v = result["train_counts"], result["valid_counts"]
    p = min(max(t["malignant"] / max(t["lesions"], 1), 1e-6), 1 - 1e-6)
    q = v["malignant"] / max(v["lesions"], 1)
    return float(-(q * np.log(p) + (1 - q) * np.log(1 - p)))


def control_runs(runner: Runner, direction: str) -> pd.DataFrame:
    """The Controls page's runs, one row per (shared, arm, seed): scores, the loss before training (and the
    class-prior loss it is measured against, `prior_loss`), the best epoch, and the budget: gradient steps and seconds of the run and of the source model it starts from
    (G's cost is left out: every arm but Base pays it alike)."""
    from .experiment import trained_parent

    specs, results = figure_runs(runner, "controls", direction)
    frame = results_frame(specs, results, FIGURES["controls"].keys)
    rows = []
    for (cond, arm, seed), res in zip(specs, results):
        parent = trained_parent(specs[(cond, arm, seed)])
        src = runner.result(parent) if parent is not None and parent["role"] == "source" else None
        rows.append({"start": res["history"][0]["valid_loss"], "prior loss": prior_loss(res),
                     "steps": res["fit"]["steps"],
                     "source steps": src["fit"]["steps"] if src else 0,
                     "source seconds": src["seconds"] if src else 0.0})
    out = pd.concat([frame, pd.DataFrame(rows)], axis=1)
    out["total seconds"] = out["seconds"] + out["source seconds"]
    return out
