"""Tables and boxes for the book's results pages."""
from __future__ import annotations

import os
import platform
import time

import pandas as pd
import torch

from . import generic
from .analysis import arm_intervals, pooled_rp
from .arms import arm_names, label
from .figures import claim_page
from .metrics import best_arm
from .profile import DIRECTIONS, Profile, size_order
from .reference import paper_table


def arm_table(frame: pd.DataFrame, row: str = "size", decimals: int = 2) -> pd.DataFrame:
    """R and P pooled over seeds per (row, arm) -> rows = size names, columns (arm, R/P), plus the best arm.

    'best' applies the paper's lexicographic rule to the paper's three arms, so that it compares with
    the paper's bold cells; 'best+' also admits our LesOnly arm. 'flags' names every arm of the row with
    a degenerate run (all or no test lesions called malignant), with its AUC: such an R/P pair is
    an artefact of the 0.5 threshold, whatever the rule says.
    """
    g = pooled_rp(frame, [row, "arm"])
    arms = [a for a in arm_names("figures") if a in set(frame["arm"])]
    rows = {}
    for name in size_order(frame[row]):
        out = {}
        for arm in arms:
            r, p = g.loc[(name, arm)]
            out[(arm, "R")], out[(arm, "P")] = round(float(r), decimals), round(float(p), decimals)
        pairs = {a: (out[(a, "R")], out[(a, "P")]) for a in arms}
        out[("best", "")] = best_arm({a: v for a, v in pairs.items() if a in arm_names("paper")})
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
    return "; ".join(f"{label(r.arm)}: {r.degenerate} (AUC {r.auc:.2f})" for r in bad.itertuples())


def interval_table(frame: pd.DataFrame, row: str = "size", metric: str = "recall") -> pd.DataFrame:
    """'mean [low, high]' of one metric per (row, arm): rows = row names, columns = arms (see
    `analysis.arm_intervals` for which interval). One metric per table keeps it inside the page's column."""
    iv = arm_intervals(frame, row)
    iv = iv[iv.metric == metric]
    cell = iv.apply(lambda r: f"{r['mean']:.2f} [{r.lo:.2f}, {r.hi:.2f}]", axis=1)
    df = iv.assign(cell=cell).pivot(index=row, columns="arm", values="cell")
    df = df.loc[size_order(df.index), [a for a in arm_names("figures") if a in df.columns]].rename(columns=label)
    df.columns.name = None
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


def styled(table: pd.DataFrame, caption: str = ""):
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
           .format_index(label, axis=1, level=table.columns.nlevels - 2)
           .format_index(lambda r: f"{r} †" if flags.get(r) else r, axis=0))
    if flag_cols:
        out = out.hide(flag_cols, axis="columns")
    out = out.set_table_attributes('class="dataframe"')  # the book theme's table style
    notes = [caption] if caption else []
    if flags.astype(bool).any():
        notes.append("† degenerate runs (at least 90 % of the test lesions called one class; R and P come from "
                     "the threshold, the AUC tells whether they rank lesions): " +
                     "; ".join(f"{r}: {f}" for r, f in flags.items() if f))
    return out.set_caption(". ".join(notes)) if notes else out


def captioned(table: pd.DataFrame, caption: str, fmt: str | None = "{:.2f}"):
    """A table with a caption above it, its floats as `fmt`, in the book theme's table style."""
    floats = [c for c in table.columns if pd.api.types.is_float_dtype(table[c])]
    out = table.style.format(fmt, subset=floats) if fmt and floats else table.style
    return out.set_caption(caption).set_table_attributes('class="dataframe"')


def machine_line() -> str:
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
        "Generic weights G": generic.label(P.generic),
        "Seeds": ", ".join(map(str, P.seeds)) + (" (intervals over seeds)" if len(P.seeds) > 1 else
                                                 f" (intervals: {P.bootstrap} bootstrap resamples of the test set)"),
        "Image size": f"{P.image_size}×{P.image_size}",
        "Training": f"Adam lr {P.lr:g}, batch {P.batch_size}, ≤ {P.epochs} epochs"
                    + (f" (more where a run needs them for its {P.min_steps} gradient steps at least)" if P.min_steps
                       else "") + f", patience {P.patience}, validation share {P.valid_frac:g}",
        "Hardware": machine_line(),
        "Wall time": f"{wall_seconds:.0f} s" + (
            f" ({runs_trained} runs trained now, {runs_reused} reused from the run cache)"
            if runs_trained is not None else ""),
        "Built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    items.update(extra or {})
    body = "\n".join(f"- **{k}:** {v}" for k, v in items.items())
    return f":::{{admonition}} Provenance\n:class: note\n{body}\n:::\n"


def data_notice(P: Profile, head: str = "") -> str:
    """A short MyST warning when the page's numbers do not come from the paper's setting (phantom data, or a G
    other than ImageNet), `head` first; empty otherwise."""
    what = []
    if P.data_source == "phantom":
        what.append(f"the lesions are synthetic ({{doc}}`phantom <data_phantom>`; the organs share "
                    f"{P.phantom_shared:.0%} of the malignancy signal by construction)")
    if P.generic != "imagenet":
        what.append(f"G is {P.generic}, not ImageNet")
    if not what:
        return ""
    text = "; ".join(what)
    return (":::{admonition} A demonstration of the pipeline, not a test of the paper\n:class: warning\n" + head +
            text[0].upper() + text[1:] + ".\n:::\n")


def page_notice(P: Profile, direction: str | None = None) -> str:
    """One box at the top of a results page: the direction, the profile and, off the paper's setting, why."""
    head = f"**{' → '.join(DIRECTIONS[direction])}** (source organ → target organ), " if direction else ""
    head += f"profile `{P.profile}`. "
    return data_notice(P, head) or (f":::{{note}}\n{head}The other direction has its own page.\n:::\n"
                                    if direction else "")


BADGES = {"holds": "success", "does not hold": "danger", "inconclusive": "warning", "not computable": "muted"}


def badge(verdict: str, outline: bool = False, link: str | None = None) -> str:
    """A verdict as a sphinx-design badge (filled: our runs; outlined: the paper's numbers), linking to the page
    `link` (a document name beside this one) when given."""
    kind = f"bdg{'-link' if link else ''}-{BADGES[verdict]}{'-line' if outline else ''}"
    return f"{{{kind}}}`{verdict} <{link}.html>`" if link else f"{{{kind}}}`{verdict}`"


def finding_lines(table: pd.DataFrame) -> str:
    """The verdict sentence(s) of a figure page (`verdicts.figure_verdicts`), as a Markdown list."""
    f2 = table["ours F2"] if "ours F2" in table else table["ours"]
    return "\n".join(f"- **{r.claim}**: ours {badge(r.ours)} on skill (AUC; on F2 {badge(g)}), the paper's numbers "
                      f"{badge(r.paper, True)} (F2). {r.evidence}." for r, g in zip(table.itertuples(), f2)) + "\n"


# Where the evidence of each finding is shown (the at-a-glance tables link there).
def _claim_links(letter: str, direction: str) -> str:
    page = claim_page(letter)
    return page if page == "conclusions" else f"{page}_{direction}"


def glance_table(ours: pd.DataFrame, paper: pd.DataFrame) -> str:
    """The paper's findings x both directions as a Markdown table: our verdict (a badge linked to the page with
    its evidence) and the paper's numbers' verdict (an outlined badge). `ours`, `paper`: `verdicts.our_verdicts` / `paper_verdicts`."""
    head = " | ".join(" → ".join(DIRECTIONS[d]) for d in DIRECTIONS)
    lines = [f"| the paper's finding | {head} |", "|---|" + "---|" * len(DIRECTIONS)]
    pv = {(r.claim, r.direction): r.verdict for r in paper.itertuples()}
    for claim in dict.fromkeys(ours.claim):
        letter = claim.split(" ", 1)[0]
        cells = []
        rows = ours[ours.claim == claim]
        for d in DIRECTIONS if len(rows) > 1 else ["both"]:
            r = rows[rows.direction == d].iloc[0]
            link = _claim_links(letter, d if d != "both" else "brain_to_lung")
            cells.append(f"{badge(r.verdict, link=link)} {badge(pv[(claim, d)], True)}")
        if len(cells) == 1:  # a finding about both directions spans the row
            cells.append("(one comparison of the two directions)")
        lines.append(f"| {claim} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


RUN_COLUMNS = {"recall": "R", "precision": "P", "f2": "F2", "auc": "AUC", "predicted malignant": "called malignant",
               "epochs": "epochs", "best epoch": "best epoch", "seconds": "seconds"}


def run_table(frame: pd.DataFrame, keys: list) -> pd.DataFrame:
    """One row per trained target model, indexed by `keys`: its scores, how many test lesions it called
    malignant (a degenerate run is marked †) and how long early stopping let it train."""
    out = frame.set_index(keys)[list(RUN_COLUMNS)].rename(columns=RUN_COLUMNS)
    if "degenerate" in frame:
        out["called malignant"] = [f"{n} †" if d else str(n) for n, d in zip(frame["predicted malignant"],
                                                                            frame["degenerate"].astype(bool))]
    return out.round(3)


def f2_floor_line(frame: pd.DataFrame) -> str:
    """What F2 a run gets by calling every test lesion malignant, at this test set's malignant share: any F2 at or
    below it shows no more than a threshold under every probability."""
    from .analysis import f2_floor_of

    share = float(frame["positives"].iloc[0]) / float(frame["n_test"].iloc[0])
    return (f"F2's trivial floor here: calling every test lesion malignant scores F2 = {f2_floor_of(frame):.2f} "
            f"({100 * share:.0f} % of the test lesions are malignant).")


def direction_label(direction: str) -> str:
    """'brain_to_lung' -> 'brain → lung'."""
    return direction.replace("_to_", " → ")


def interval_text(point: float, lo: float, hi: float, digits: int = 2) -> str:
    """'+0.12 [+0.03, +0.21]', or '+0.12 [no interval]' where there is none (one seed, no variance, no skill)."""
    import math

    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{point:+.{digits}f} [no interval]"
    return f"{point:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def control_line(checks: pd.DataFrame, shared, arm: str, other: str) -> str:
    """One comparison of the Controls page (`comparisons.control_verdicts`): the AUC difference of `arm` minus
    `other` in condition `shared` (it decides), then the F2 difference, each with its 95 % interval and badge."""

    match = checks.shared.apply(lambda c: c == shared) & (checks.comparison == f"{label(arm)} − {label(other)}")
    row = checks[match].iloc[0]
    return (f"AUC {interval_text(row['AUC difference'], row['AUC lo'], row['AUC hi'])} {badge(row['AUC verdict'])} "
            f"(F2 {interval_text(row['F2 difference'], row.lo, row.hi)} {badge(row.verdict)})")


def evidence_lines(table: pd.DataFrame, outline: bool = False) -> str:
    """Each finding of a verdict table (`verdicts.our_verdicts` / `paper_verdicts`) with, per direction, its
    verdict badge and the numbers behind it, then its rule, as a Markdown list."""
    out = []
    for claim, rows in table.groupby("claim", sort=False):
        out.append(f"- **{claim}**")
        for _, r in rows.iterrows():
            where = direction_label(r.direction)
            out.append(f"  - {where}: {badge(r.verdict, outline)} {r.evidence}")
            if r.get("F2 evidence"):  # ours: the same rule on F2 at the threshold 0.5, beside the skill verdict
                out.append(f"    - on F2: {badge(r['F2 verdict'], outline)} {r['F2 evidence']}")
        if "rule" in rows:
            out.append(f"  - *rule*: {rows['rule'].iloc[0]}")
    return "\n".join(out) + "\n"



def parameter_table(P: Profile) -> pd.DataFrame:
    """Every parameter of `P`: its value, the paper's setting (the default) where it differs, and what it means."""
    defaults, helps = Profile.defaults(), Profile.help()

    def shown(v):
        return "null" if v is None else str(v).replace("'", "")

    rows = [{"parameter": k, "this profile": shown(getattr(P, k)),
             "the paper's": "" if getattr(P, k) == defaults[k] else shown(defaults[k]), "what it means": helps[k]}
            for k in Profile.keys()]
    return pd.DataFrame(rows).set_index("parameter")
