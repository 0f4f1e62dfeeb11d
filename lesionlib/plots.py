"""The book's figures: one function per figure of the paper, one colour per arm on every page.

Colours are Okabe & Ito's colour-blind-safe palette; every arm also has its own marker and hatch, so
the figures still read in greyscale. Axis labels use the paper's words (recall R, precision P, |d_t|,
|d_s|, loss, epochs). The paper's own numbers, where it gives them, are drawn on the same axes as
black diamonds (Fig 1, Fig 2) or black brackets (Fig 3).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from .arms import ARMS
from .profile import size_order

PAPER_STYLE = dict(marker="D", color="black", markerfacecolor="white", markeredgewidth=1.4, ms=6, ls="none",
                   zorder=5)
METRIC_LABELS = {"recall": "Recall (R)", "precision": "Precision (P)", "f2": "F2", "auc": "AUC"}
ROW_LABELS = {"size": "|d_t|, target training lesions", "source size": "|d_s|, source training lesions"}


def arm_handles(arms, paper: str | None = None) -> list:
    """Legend entries for `arms` (and the paper's marker when `paper` names it)."""
    out = [Patch(facecolor=ARMS[a].colour, hatch=ARMS[a].hatch, edgecolor="white", label=ARMS[a].label) for a in arms]
    if paper:
        out.append(plt.Line2D([], [], **PAPER_STYLE, label=paper))
    return out


def _ordered(values) -> list:
    return size_order(values)


def rp_bars(intervals: pd.DataFrame, row: str, paper: pd.DataFrame | None = None, sizes: dict | None = None,
            title: str = ""):
    """Fig 1 / Fig 2: grouped bars of R and P per arm per row, 95 % whiskers, the paper's values as diamonds.

    `intervals` is `analysis.arm_intervals(frame, row)`; `paper` is `reference.paper_table` (rows = size
    names, columns (arm, 'R'/'P')); `sizes` maps a row's name to its number of lesions for the tick labels.
    """
    rows = _ordered(intervals[row])
    arms = list(dict.fromkeys(intervals["arm"]))
    width = 0.8 / len(arms)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.3), sharey=True)
    for ax, (metric, short) in zip(axes, (("recall", "R"), ("precision", "P"))):
        for j, arm in enumerate(arms):
            sub = intervals[(intervals.arm == arm) & (intervals.metric == metric)].set_index(row).reindex(rows)
            x = np.arange(len(rows)) + (j - (len(arms) - 1) / 2) * width
            err = np.vstack([sub["mean"] - sub["lo"], sub["hi"] - sub["mean"]]).clip(min=0)
            ax.bar(x, sub["mean"], width * 0.92, yerr=err, capsize=2, color=ARMS[arm].colour, hatch=ARMS[arm].hatch,
                   edgecolor="white", linewidth=0, error_kw=dict(lw=0.9, ecolor="#333333"))
            if paper is not None and (arm, short) in paper.columns:
                vals = paper[(arm, short)].reindex(rows)
                ax.plot(x, vals.to_numpy(float), **PAPER_STYLE)
        ticks = [f"{r}\n({sizes[r]})" if sizes and r in sizes else r for r in rows]
        ax.set_xticks(np.arange(len(rows)), ticks)
        ax.set_xlabel(ROW_LABELS.get(row, row))
        ax.set_title(METRIC_LABELS[metric], fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].set_ylabel("on the target test set")
    fig.legend(handles=arm_handles(arms, "paper (real data)" if paper is not None else None),
               loc="lower center", ncol=len(arms) + 1, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def fold_ranges(frame: pd.DataFrame, paper: pd.DataFrame | None = None, title: str = ""):
    """Fig 3: R and P of every fold's model per arm (dots), their range (bar), the paper's range beside it."""
    arms = list(dict.fromkeys(frame["arm"]))
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.3), sharey=True)
    rng = np.random.default_rng(0)  # jitter only spreads overlapping dots
    for ax, (metric, short) in zip(axes, (("recall", "R"), ("precision", "P"))):
        for i, arm in enumerate(arms):
            v = frame.loc[frame.arm == arm, metric].to_numpy(float)
            ax.vlines(i - 0.1, v.min(), v.max(), lw=8, color=ARMS[arm].colour, alpha=0.35)
            ax.plot(i - 0.1 + rng.uniform(-0.05, 0.05, len(v)), v, ARMS[arm].marker, color=ARMS[arm].colour, ms=5)
            if paper is not None and arm in paper.index:
                lo, hi = paper.loc[arm, f"{short} min"], paper.loc[arm, f"{short} max"]
                ax.vlines(i + 0.18, lo, hi, color="black", lw=1.4)
                ax.plot([i + 0.18] * 2, [lo, hi], **{**PAPER_STYLE, "marker": "_", "ms": 9})
        ax.set_xticks(range(len(arms)), [ARMS[a].label for a in arms])
        ax.set_title(METRIC_LABELS[metric] + " over folds", fontsize=10)
        ax.set_ylim(-0.02, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].set_ylabel("on the target test set")
    if paper is not None:
        axes[1].legend(handles=[plt.Line2D([], [], color="black", lw=1.4, marker="_", ms=9,
                                           label="paper's range (5 folds)")], fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def f2_grid(f2: pd.DataFrame, gap: pd.DataFrame, title: str = "", floor: float | None = None):
    """Fig 4: F2 of LesAug over the source x target grid, and its gap to LesAgn, as annotated heatmaps; `floor`
    (the F2 of calling every test lesion malignant) is marked on the colour bar and cells at or below it get a °."""
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    lim = max(0.05, float(np.nanmax(np.abs(gap.to_numpy(float)))))
    panels = ((f2, "F2 of LesAug", "cividis", 0.0, 1.0), (gap, "F2(LesAug) − F2(LesAgn)", "PuOr", -lim, lim))
    for ax, (data, name, cmap, lo, hi) in zip(axes, panels):
        values = data.to_numpy(float)
        im = ax.imshow(values, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                shade = im.cmap(im.norm(v))
                ink = "white" if 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5 else "black"
                low = floor is not None and lo >= 0 and v <= floor
                ax.text(j, i, (f"{v:+.2f}" if lo < 0 else f"{v:.2f}") + ("°" if low else ""), ha="center",
                        va="center", fontsize=8, color=ink)
        ax.set_xticks(range(data.shape[1]), list(data.columns))
        ax.set_yticks(range(data.shape[0]), list(data.index))
        ax.set_xlabel(ROW_LABELS["size"])
        ax.set_ylabel(ROW_LABELS["source size"])
        ax.set_title(name if floor is None or lo < 0 else f"{name} (° at or below the floor {floor:.2f})", fontsize=9)
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if floor is not None and lo >= 0:
            bar.ax.axhline(floor, color="red", lw=1.2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def loss_curves(curves: pd.DataFrame, title: str = ""):
    """Fig 5: normalised validation loss against the epoch per arm: the mean over seeds, a band from the
    lowest to the highest seed (drawn when there are several)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    arms = list(dict.fromkeys(curves["arm"]))
    for arm in arms:
        g = curves[curves.arm == arm].groupby("epoch")["normalised"]
        mean, lo, hi, n = g.mean(), g.min(), g.max(), g.size()
        ax.plot(mean.index, mean.values, marker=ARMS[arm].marker, color=ARMS[arm].colour, ms=4, lw=1.6,
                label=ARMS[arm].label)
        if n.max() > 1:
            ax.fill_between(mean.index, lo.values, hi.values, color=ARMS[arm].colour, alpha=0.18, lw=0)
    ax.axhline(1.0, color="black", lw=0.6, ls=":")
    ax.set_xlabel("Epochs (0 = before training)")
    ax.set_ylabel("Loss (validation BCE)\n÷ untrained Base's")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def control_bars(intervals: dict, title: str = ""):
    """Controls: AUC per arm with 95 % whiskers and the coin's 0.5, one panel per condition
    (`{condition: {arm: (mean, lo, hi)}}`)."""
    conds = list(intervals)
    fig, axes = plt.subplots(1, len(conds), figsize=(3.6 * len(conds) + 0.6, 3.3), sharey=True, squeeze=False)
    for ax, cond in zip(axes[0], conds):
        arms = list(intervals[cond])
        for i, arm in enumerate(arms):
            m, lo, hi = intervals[cond][arm]
            ax.bar(i, m, 0.8, color=ARMS[arm].colour, hatch=ARMS[arm].hatch, edgecolor="white", linewidth=0,
                   yerr=[[max(m - lo, 0)], [max(hi - m, 0)]], capsize=3, error_kw=dict(lw=0.9, ecolor="#333333"))
        ax.set_xticks(range(len(arms)), [ARMS[a].label for a in arms], rotation=45, ha="right")
        ax.set_title("real data" if cond is None else f"phantom_shared = {cond:g}", fontsize=10)
        ax.axhline(0.5, color="#555555", lw=0.9, ls="--")  # no skill
        ax.set_ylim(0.3, 1.02)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0, 0].set_ylabel("AUC on the target test set")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
