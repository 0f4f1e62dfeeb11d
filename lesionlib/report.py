"""Tables and boxes for the book's results pages."""
from __future__ import annotations

import os
import platform
import time

import numpy as np
import pandas as pd
import torch

from . import generic
from .experiment import ARM_LABELS, ARMS, PAPER_ARMS
from .metrics import best_arm, seed_interval
from .profile import SIZE_NAMES, Profile
from .reference import paper_table


def arm_table(frame: pd.DataFrame, row: str = "size", decimals: int = 2) -> pd.DataFrame:
    """Mean R and P over seeds per (row, arm) -> rows = size names, columns (arm, R/P), plus the best arm.

    'best' applies the paper's lexicographic rule to the paper's three arms, so that it compares with
    the paper's bold cells; 'best+' also admits our LesOnly arm. 'flags' names every arm of the row with
    a degenerate run (all or no test lesions called malignant), with its AUC: such an R/P pair is
    an artefact of the 0.5 threshold, whatever the rule says.
    """
    g = frame.groupby([row, "arm"])[["recall", "precision"]].mean()
    arms = [a for a in ARMS if a in set(frame["arm"])]
    rows = {}
    for name in [s for s in SIZE_NAMES if s in set(frame[row])] or sorted(set(frame[row])):
        out = {}
        for arm in arms:
            r, p = g.loc[(name, arm)]
            out[(arm, "R")], out[(arm, "P")] = round(float(r), decimals), round(float(p), decimals)
        pairs = {a: (out[(a, "R")], out[(a, "P")]) for a in arms}
        out[("best", "")] = best_arm({a: v for a, v in pairs.items() if a in PAPER_ARMS})
        if "lesonly" in pairs:
            out[("best+", "")] = best_arm(pairs)
        out[("flags", "")] = degenerate_flags(frame[frame[row] == name])
        rows[name] = out
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    df.index.name = {"size": "|d_t|", "source size": "|d_s|"}.get(row, row)
    return df


def degenerate_flags(frame: pd.DataFrame) -> str:
    """'LesAgn: all malignant (AUC 0.55)' for each degenerate run of `frame` ('' when there is none)."""
    if "degenerate" not in frame:
        return ""
    bad = frame[frame["degenerate"].astype(bool)]
    return "; ".join(f"{ARM_LABELS.get(r.arm, r.arm)}: {r.degenerate} (AUC {r.auc:.2f})" for r in bad.itertuples())


def interval_table(frame: pd.DataFrame, row: str = "size") -> pd.DataFrame:
    """'mean [low, high]' of R and P per (row, arm): a 95 % interval over seeds when there are several,
    else the run's bootstrap interval over its test lesions."""
    arms = [a for a in ARMS if a in set(frame["arm"])]
    out = {}
    for (name, arm), g in frame.groupby([row, "arm"], sort=False):
        for m, label in (("recall", "R"), ("precision", "P")):
            if g["seed"].nunique() >= 2:
                mean, lo, hi = seed_interval(g[m])
            elif f"{m}_lo" in g:
                mean, lo, hi = float(g[m].iloc[0]), float(g[f"{m}_lo"].iloc[0]), float(g[f"{m}_hi"].iloc[0])
            else:
                mean = lo = hi = float(g[m].iloc[0])
            out.setdefault(name, {})[(arm, label)] = f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"
    order = [s for s in SIZE_NAMES if s in out] or sorted(out)
    df = pd.DataFrame.from_dict({k: out[k] for k in order}, orient="index")
    df = df[[(a, m) for a in arms for m in ("R", "P")]]
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    df.index.name = {"size": "|d_t|", "source size": "|d_s|"}.get(row, row)
    return df


def interval_kind(frame: pd.DataFrame) -> str:
    """Which interval `interval_table` shows, in words."""
    n = frame["seed"].nunique()
    if n >= 2:
        return f"a 95 % Student-t interval of the mean over {n} seeds"
    return "a 95 % percentile-bootstrap interval over the test lesions of the single run (one seed)"


def side_by_side(ours: pd.DataFrame, fig: str, direction: str) -> pd.DataFrame:
    """Our table and the paper's for the same rows, stacked under a 'source' level."""
    paper = paper_table(fig, direction)
    paper = paper.loc[[s for s in ours.index if s in paper.index]]
    out = pd.concat({"ours": ours, "paper": paper}, axis=1)
    out.index.name = ours.index.name
    return out


def styled(table: pd.DataFrame):
    """Bold the best (R, P) pair of each row (the paper's convention), arms titled as in the paper.

    The `flags` column (degenerate runs) becomes a caption above the table and a † after the row's
    name, so the R/P columns stay side by side.
    """
    def bold(row):
        styles = pd.Series("", index=row.index)
        for src in {c[0] for c in row.index if len(c) == 3} or {None}:
            key = (src, "best", "") if src else ("best", "")
            if key not in row.index or not isinstance(row[key], str):
                continue
            for arm in row[key].split("="):
                for m in "RP":
                    styles[(src, arm, m) if src else (arm, m)] = "font-weight: bold"
        return styles

    flag_cols = [c for c in table.columns if "flags" in c]
    flags = table[flag_cols[0]] if flag_cols else pd.Series("", index=table.index)
    fmt = {c: "{:.2f}" for c in table.columns if c[-1] in ("R", "P")}
    out = (table.style.apply(bold, axis=1).format(fmt)
           .format_index(lambda a: ARM_LABELS.get(a, a), axis=1, level=table.columns.nlevels - 2)
           .format_index(lambda r: f"{r} †" if flags.get(r) else r, axis=0))
    if flag_cols:
        out = out.hide(flag_cols, axis="columns")
    if flags.astype(bool).any():
        out = out.set_caption("† degenerate runs (every or no test lesion called malignant; R and P come from the "
                              "threshold, the AUC tells whether they rank lesions): " +
                              "; ".join(f"{r}: {f}" for r, f in flags.items() if f))
    return out


def hardware() -> str:
    """The machine the runs used, in one line."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores (torch {torch.__version__})"


def provenance(P: Profile, wall_seconds: float, runs_trained: int | None = None, runs_reused: int | None = None,
               extra: dict | None = None) -> str:
    """A MyST admonition saying how the page's numbers were made."""
    items = {
        "Profile": f"`{P.profile}`",
        "Data source": P.data_source + (" (offline generator, `lesionlib.data.phantom`)" if P.data_source == "phantom"
                                        else f" (`{P.data_dir}`)"),
        "Generic weights G": generic.describe(P.generic),
        "Seeds": ", ".join(map(str, P.seeds)) + (" (intervals over seeds)" if len(P.seeds) > 1 else
                                                 f" (intervals: {P.bootstrap} bootstrap resamples of the test set)"),
        "Image size": f"{P.image_size}×{P.image_size}",
        "Training": f"Adam lr {P.lr:g}, batch {P.batch_size}, ≤ {P.epochs} epochs, patience {P.patience}, "
                    f"validation share {P.valid_frac:g}",
        "Hardware": hardware(),
        "Wall time": f"{wall_seconds:.0f} s" + (
            f" ({runs_trained} runs trained now, {runs_reused} reused from the run cache)"
            if runs_trained is not None else ""),
        "Built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    items.update(extra or {})
    body = "\n".join(f"- **{k}:** {v}" for k, v in items.items())
    return f":::{{admonition}} Provenance\n:class: note\n{body}\n:::\n"


def data_notice(P: Profile) -> str:
    """A MyST warning when the page's numbers do not come from the paper's setting (phantom data, or a G
    other than ImageNet); empty otherwise."""
    what = []
    if P.data_source == "phantom":
        what.append("the lesions are **phantom** images from `lesionlib.data.phantom`, not the real brain and lung "
                    f"sets (their organs share {P.phantom_shared:.0%} of the malignancy signal by construction)")
    if P.generic != "imagenet":
        what.append(f"the generic weights G are {generic.describe(P.generic)}, not ImageNet")
    if not what:
        return ""
    return (":::{warning}\nThese results test the pipeline, not the paper: " + "; ".join(what) +
            ". Read them as a demonstration of what the grid measures.\n:::\n")


def f2_gap(table: pd.DataFrame) -> pd.Series:
    """F2 of LesAug minus F2 of LesAgn per row (the paper's measure of the transfer benefit)."""
    from .metrics import f2_from_rp

    return pd.Series({s: f2_from_rp(row[("lesaug", "R")], row[("lesaug", "P")]) -
                      f2_from_rp(row[("lesagn", "R")], row[("lesagn", "P")]) for s, row in table.iterrows()},
                     name="F2(LesAug) - F2(LesAgn)").astype(float).round(3)


