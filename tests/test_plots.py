"""The book's figures (lesionlib.plots) on tiny frames: every arm drawn in its own colour, the paper's
values on the same axes, nothing drawn outside [0, 1] for scores."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lesionlib import analysis, plots  # noqa: E402
from lesionlib.arms import ARMS as REGISTRY, arm_names  # noqa: E402

ARMS, CONTROL_ARMS = arm_names("figures"), arm_names("controls")
from lesionlib.reference import paper_ranges, paper_table  # noqa: E402


def _frame(rows=("High", "VLow"), seeds=(0, 1)):
    rng = np.random.default_rng(0)
    out = [{"size": r, "arm": a, "seed": s, "recall": rng.uniform(.2, .9), "precision": rng.uniform(.2, .9),
            "f2": rng.uniform(.2, .9)} for r in rows for a in ARMS for s in seeds]
    return pd.DataFrame(out)


def _bar_colours(ax):
    return {mcolors.to_hex(p.get_facecolor()) for p in ax.patches}


def test_every_arm_has_a_distinct_colour_marker_and_label():
    arms = list(REGISTRY.values())
    assert len({a.colour.lower() for a in arms}) == len(arms)
    assert len({a.marker for a in arms}) == len(arms)
    assert len({a.label for a in arms}) == len(arms)


def test_rp_bars_draws_each_arm_and_the_papers_values():
    frame = _frame()
    iv = analysis.arm_intervals(frame, "size")
    assert set(iv.columns) >= {"size", "arm", "metric", "mean", "lo", "hi"} and (iv.lo <= iv["mean"]).all()
    paper = paper_table("fig1", "brain_to_lung")
    fig = plots.rp_bars(iv, "size", paper, sizes={"High": 80, "VLow": 33})
    r_ax, p_ax = fig.axes
    assert len(r_ax.patches) == len(ARMS) * 2  # one bar per arm per row
    assert _bar_colours(r_ax) == {REGISTRY[a].colour.lower() for a in ARMS}
    diamonds = [ln for ln in r_ax.lines if ln.get_marker() == "D"]
    assert len(diamonds) == 3  # the paper's three arms
    base = [ln for ln in diamonds if np.allclose(ln.get_ydata(), paper[("base", "R")].loc[["High", "VLow"]])]
    assert base, "the paper's Base recall is not on the recall axes"
    assert "Recall" in r_ax.get_title() and "Precision" in p_ax.get_title() and "|d_t|" in r_ax.get_xlabel()


def test_fold_ranges_marks_the_papers_range():
    frame = _frame(rows=("High",), seeds=(0,)).assign(fold=0)
    frame = pd.concat([frame, frame.assign(fold=1, recall=frame.recall / 2)])
    fig = plots.fold_ranges(frame, paper_ranges("brain_to_lung"))
    r_ax = fig.axes[0]
    ys = sorted(round(float(y), 2) for ln in r_ax.lines if ln.get_marker() == "_" for y in ln.get_ydata())
    assert ys == sorted([0.12, 0.82, 0.94, 0.97])  # LesAgn's and LesAug's recall ranges in the paper


def test_f2_grid_and_loss_curves_are_finite():
    f2 = pd.DataFrame([[0.5, 0.7], [0.4, np.nan]], index=["High", "VLow"], columns=["High", "VLow"])
    fig = plots.f2_grid(f2, f2 - 0.5)
    assert len(fig.axes[0].texts) == 3  # the missing cell gets no number
    curves = pd.DataFrame([{"arm": a, "seed": s, "epoch": e, "normalised": 1 - 0.1 * e + 0.01 * s}
                           for a in ("base", "lesaug") for s in (0, 1) for e in range(3)])
    fig = plots.loss_curves(curves)
    ax = fig.axes[0]
    assert len(ax.collections) == 2  # a band per arm over two seeds
    assert all(np.isfinite(ln.get_ydata()).all() for ln in ax.lines)
    one = plots.loss_curves(curves[curves.seed == 0])
    assert len(one.axes[0].collections) == 0  # one seed: no band


def test_control_bars_one_panel_per_condition():
    iv = {c: {a: (0.5, 0.4, 0.6) for a in CONTROL_ARMS} for c in (1.0, 0.0)}
    fig = plots.control_bars(iv)
    assert len(fig.axes) == 2 and [ax.get_title() for ax in fig.axes] == ["phantom_shared = 1", "phantom_shared = 0"]
    assert _bar_colours(fig.axes[0]) == {REGISTRY[a].colour.lower() for a in CONTROL_ARMS}


@pytest.fixture(autouse=True)
def _close():
    yield
    import matplotlib.pyplot as plt
    plt.close("all")
