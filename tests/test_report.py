"""What the pages print: verdict badges, the at-a-glance table, the page notice, the run table."""
from types import SimpleNamespace

import pandas as pd

from lesionlib import reference, report, verdicts
from lesionlib.profile import DIRECTIONS, load_profile


def test_badges_are_sphinx_design_roles_one_colour_per_verdict():
    assert report.badge("holds") == "{bdg-success}`holds`"
    assert report.badge("does not hold", outline=True) == "{bdg-danger-line}`does not hold`"
    assert report.badge("inconclusive", link="fig1_brain_to_lung") == \
        "{bdg-link-warning}`inconclusive <fig1_brain_to_lung.html>`"
    assert len(set(report.BADGES.values())) == len(report.BADGES) == len(verdicts.VERDICTS) + 1


def test_the_glance_table_has_every_finding_both_directions_and_links_to_its_evidence():
    paper = verdicts.paper_verdicts(reference.reported(), n_boot=200)
    ours = paper.assign(verdict="inconclusive")  # any verdict table of the same shape
    md = report.glance_table(ours, paper)
    lines = md.strip().splitlines()
    assert len(lines) == 2 + paper.claim.nunique()  # header, rule, one row per finding
    assert all(line.count("|") == 2 + len(DIRECTIONS) for line in lines)
    row_a = next(line for line in lines if line.startswith("| (a)"))
    assert "<fig1_brain_to_lung.html>" in row_a and "<fig1_lung_to_brain.html>" in row_a
    want = paper[(paper.claim.str.startswith("(a)")) & (paper.direction == "brain_to_lung")].verdict.iloc[0]
    assert report.badge(want, outline=True) in row_a
    assert "<controls_lung_to_brain.html>" in next(line for line in lines if line.startswith("| (h)"))
    assert "<conclusions.html>" in next(line for line in lines if line.startswith("| (i)"))


def test_the_page_notice_says_direction_profile_and_why_it_is_not_the_papers_setting():
    quick = load_profile("quick")
    box = report.page_notice(quick, "lung_to_brain")
    assert box.startswith(":::{admonition}") and ":class: warning" in box and "**lung → brain**" in box
    assert "synthetic" in box and "not ImageNet" in box and "`quick`" in box
    real = SimpleNamespace(profile="paper", data_source="prepared", generic="imagenet", phantom_shared=1.0)
    assert report.data_notice(real) == "" and report.page_notice(real, "brain_to_lung").startswith(":::{note}")


def test_finding_lines_and_evidence_lines_carry_both_verdicts():
    table = pd.DataFrame([{"claim": "(a) x", "ours": "holds", "paper": "inconclusive", "evidence": "F2 +0.1",
                           "rule": "r"}])
    line = report.finding_lines(table)
    assert "{bdg-success}`holds`" in line and "{bdg-warning-line}`inconclusive`" in line and "F2 +0.1" in line
    v = pd.DataFrame([{"claim": "(a) x", "direction": d, "verdict": "holds", "evidence": "e", "rule": "r"}
                      for d in DIRECTIONS])
    text = report.evidence_lines(v)
    assert text.count("{bdg-success}`holds`") == 2 and "brain → lung" in text and "*rule*: r" in text


def test_the_run_table_marks_degenerate_runs():
    frame = pd.DataFrame([{"size": "High", "arm": "base", "seed": 0, "recall": 1.0, "precision": 0.4, "f2": 0.77,
                           "auc": 0.5, "predicted malignant": 80, "degenerate": "all malignant", "epochs": 2,
                           "best epoch": 1, "seconds": 3.0}])
    t = report.run_table(frame, ["size", "arm", "seed"])
    assert t.loc[("High", "base", 0), "called malignant"] == "80 †" and list(t.columns)[:2] == ["R", "P"]


def test_the_sphinx_extension_drops_duplicate_inline_scripts_whoever_added_them():
    """sphinx-thebe's inline config arrives twice, once with filename None and once with '' (a JavaScript
    error on every page); other scripts, and inline scripts with other bodies, are kept in order."""
    from sphinx.builders.html._assets import _JavaScript

    from lesionlib.sphinxext import dedupe_scripts
    thebe = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript(None, body=thebe), _JavaScript("_static/a.js"), _JavaScript("", body="var t = 1"),
               _JavaScript("", body=thebe), _JavaScript("_static/a.js"), _JavaScript("_static/a.js", defer="defer")]
    ctx = {"script_files": scripts}
    dedupe_scripts(None, "p", "page.html", ctx, None)
    assert ctx["script_files"] is scripts  # in place: Sphinx renders this very list
    assert [(j.filename, j.attributes) for j in scripts] == [
        (None, {"body": thebe}), ("_static/a.js", {}), ("", {"body": "var t = 1"}),
        ("_static/a.js", {"defer": "defer"})]


def _probe(shared_verdicts: dict) -> dict:
    """A controls probe result (`benchmarks.controls_probe`'s JSON) whose comparisons have the given AUC verdicts."""
    names = ("LesAug − LesShuf", "LesAug − LesStat", "LesAgn − AgnStat", "LesAug − LesAgn", "LesAug − Base")
    conds = []
    for shared, by_k in shared_verdicts.items():
        conds.append({"shared": shared, "wall_seconds": 10.0, "seconds_per_seed": {"0": 60.0, "1": 60.0, "2": 120.0},
                      "auc": {}, "by_seeds": [
                          {"seeds": k, "comparisons": [
                              {"comparison": n, "AUC difference": 0.1, "AUC lo": 0.02, "AUC hi": 0.18, "p": 0.01,
                               "AUC verdict": v.get(n, "inconclusive"), "F2 difference": 0.0, "lo": -0.1,
                               "hi": 0.1, "verdict": "inconclusive"} for n in names]} for k, v in by_k.items()]})
    return {"profile": "p", "direction": "brain_to_lung", "date": "2026-12-07",
            "machine": {"cpus": 2, "device": "cpu", "workers": 2, "gpu": None},
            "settings": {"image_size": 64, "epochs": 10, "patience": 3, "min_steps": 20, "batch_size": 16,
                         "test_size": 80, "target_size": 33, "source_size": 200, "control_seeds": [0, 1, 2]},
            "conditions": conds}


def test_control_power_decides_only_with_both_wins_where_cues_are_shared_and_none_where_not(tmp_path):
    import json

    import pytest

    from lesionlib.comparisons import control_power

    both = {"LesAug − LesShuf": "holds", "LesAug − LesAgn": "holds"}
    probe = _probe({1.0: {2: {"LesAug − LesShuf": "holds"}, 3: both},
                    0.0: {2: {"LesAgn − AgnStat": "holds", "LesAug − Base": "holds"}, 3: {"LesAug − LesStat": "holds"}}})
    (tmp_path / "a.json").write_text(json.dumps(probe))
    t = control_power([tmp_path / "a.json"])
    assert list(t.seeds) == [2, 3, 2, 3]
    assert list(t.decides) == [False, True, True, False]  # shared 0: G's own wins are allowed, LesStat's is not
    assert list(t["training minutes"]) == [2.0, 4.0, 2.0, 4.0]  # the first k seeds' training seconds
    assert t["LesAug − LesShuf"].iloc[1] == "+0.10 [+0.02, +0.18] holds"
    (tmp_path / "bad.json").write_text('{"profile": "p"}')
    with pytest.raises(ValueError, match="bad.json is not a controls probe result"):
        control_power([tmp_path / "bad.json"])


def test_power_lines_name_the_cheapest_setting_that_decides_both_conditions(tmp_path):
    import json

    from lesionlib.comparisons import control_power, power_lines

    both = {"LesAug − LesShuf": "holds", "LesAug − LesAgn": "holds"}
    (tmp_path / "a.json").write_text(json.dumps(_probe({1.0: {2: {}, 3: both}, 0.0: {2: {}, 3: {}}})))
    text = power_lines(control_power([tmp_path / "a.json"]))
    assert "`phantom_shared` = 1: decided from 3 seeds" in text and "`phantom_shared` = 0: decided from 2 seeds" in text
    assert "`p` with 3 control seeds, 8 training minutes" in text  # 4 minutes per condition
    (tmp_path / "a.json").write_text(json.dumps(_probe({1.0: {2: {}, 3: {}}, 0.0: {2: {}, 3: {}}})))
    assert "No setting measured here decides both conditions." in power_lines(control_power([tmp_path / "a.json"]))
