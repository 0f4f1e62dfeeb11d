"""The book's machinery: papermill on a params file, the grid, and a strict Jupyter Book build."""
import re
from dataclasses import replace

import nbformat
import pytest

from lesionlib.grid import run_grid
from lesionlib.pages import GRID
from lesionlib.profile import project_root

ROOT = project_root()


def _profile_after_injection(tmp_path, notebook, **parameters):
    """The Profile a page's setup builds from what papermill injects (no cell but the parameters runs)."""
    import papermill as pm
    from lesionlib.profile import Profile
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / notebook), str(out), parameters=parameters, prepare_only=True)
    ns = {}
    for cell in nbformat.read(out, 4).cells:
        if {"parameters", "injected-parameters"} & set(cell.metadata.get("tags", [])):
            exec(cell.source, ns)
    return Profile.from_namespace(ns), ns


def test_papermill_users_type_a_profile_name_and_overrides(tmp_path):
    from dataclasses import replace
    from lesionlib.profile import load_profile
    quick = load_profile("quick")
    P, ns = _profile_after_injection(tmp_path, "book/fig1.ipynb", profile="quick", direction="lung_to_brain")
    assert P == quick and ns["direction"] == "lung_to_brain"
    P, _ = _profile_after_injection(tmp_path, "book/fig1.ipynb", profile="quick", epochs=3)  # -p epochs 3
    assert P == replace(quick, epochs=3)
    P, _ = _profile_after_injection(tmp_path, "book/fig1.ipynb", profile="quick", overrides={"seeds": [0, 1]})
    assert P == replace(quick, seeds=[0, 1])
    P, _ = _profile_after_injection(tmp_path, "book/data_phantom.ipynb")  # the defaults: smoke
    assert P == load_profile("smoke")
    # -f my.yaml naming a base profile and only what differs
    (tmp_path / "mine.yaml").write_text("profile: mine\nbase: quick\nepochs: 3\n")
    import yaml
    P, _ = _profile_after_injection(tmp_path, "book/fig1.ipynb", **yaml.safe_load((tmp_path / "mine.yaml").read_text()))
    assert P == replace(quick, profile="mine", epochs=3) == load_profile(str(tmp_path / "mine.yaml"))
    from lesionlib.profile import ProfileError
    with pytest.raises(ProfileError, match="unknown profile parameter"):
        _profile_after_injection(tmp_path, "book/fig1.ipynb", overrides={"epoch": 3})


def test_every_grid_notebook_and_book_page_is_in_the_toc():
    import yaml
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = {toc["root"]} | {ch["file"] for part in toc["parts"] for ch in part["chapters"]}
    for page in GRID:
        assert page.notebook.removesuffix(".ipynb") in files
    for f in files:
        assert (ROOT / f"{f}.md").exists() or (ROOT / f"{f}.ipynb").exists(), f


def test_the_whole_smoke_grid_in_both_directions_builds_strictly_and_resumes(smoke_book):
    """Every page, both directions, then `jupyter-book build -W -n` (a warning fails the build).

    It trains into the session's run cache (conftest.py), so nbval's notebooks, which run after the unit
    tests, find the figure runs made and check that their pages train nothing again. The same book is
    what tests/test_browser.py opens in Chromium.
    """
    from lesionlib.profile import DIRECTIONS
    out, t1 = smoke_book
    stage, html = out / "_build/stage/smoke", out / "_build/html"
    for page in GRID:
        for d in page.directions or (None,):
            staged = stage / page.staged(d)
            assert nbformat.read(staged, 4).metadata["lesionlib"]["complete"] is True, staged
            assert (html / staged.relative_to(stage).with_suffix(".html")).is_file(), staged
    page = (html / "book/fig1_lung_to_brain.html").read_text()
    assert "lung → brain" in page and "Provenance" in page and "smoke" in page
    assert "Traceback" not in page and all(f"fig1 [{d}]" in t1 for d in DIRECTIONS)
    t2 = run_grid("smoke", sections=["data", "fig1"], build=False, output=out)
    assert "data" not in t2 and "fig1 [lung_to_brain]" not in t2  # up to date: not executed again


@pytest.mark.parametrize("parallel", [1, 2])
def test_summary_pages_run_again_when_any_other_page_ran_else_stay(tmp_path, monkeypatch, parallel):
    """A summary page that is up to date is executed again only when a page before it was (its runs may have
    changed), whatever the order the summary pages finish in."""
    from lesionlib import grid

    ran = []
    monkeypatch.setattr(grid, "execute_page", lambda src, out, params, root, inputs=(): ran.append(src.stem) or 0.0)
    current = {"fig1_brain_to_lung"}  # every staged page up to date but this one
    monkeypatch.setattr(grid, "is_current", lambda out, fp: out.stem not in current)
    summary = ["conclusions", "intro", "reproducibility"]
    grid.run_grid("smoke", build=False, output=tmp_path, parallel=parallel)
    assert sorted(ran) == sorted(["fig1"] + summary)
    ran.clear()
    current.clear()  # nothing stale: nothing runs
    grid.run_grid("smoke", build=False, output=tmp_path, parallel=parallel)
    assert ran == []
    current.add("conclusions")  # one summary page stale, the others up to date: it alone runs
    grid.run_grid("smoke", build=False, output=tmp_path, parallel=parallel)
    assert ran == ["conclusions"]


def test_grid_rejects_unknown_sections_and_profiles(tmp_path):
    with pytest.raises(ValueError, match="unknown section"):
        run_grid("smoke", sections=["fig9"], output=tmp_path)
    with pytest.raises(ValueError, match="unknown profile 'fastest'"):
        run_grid("fastest", output=tmp_path)


def test_committed_notebooks_carry_their_smoke_outputs():
    # nbval compares against the stored outputs: a notebook saved without them would pass vacuously.
    for nb_path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = nbformat.read(nb_path, 4)
        code = [c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
        assert all(c.get("execution_count") for c in code), f"{nb_path.name}: run `make notebooks`"
        checked = [c for c in code if "nbval-check-output" in c.metadata.get("tags", [])]
        assert checked and all(c.outputs for c in checked), f"{nb_path.name}: checked cells without outputs"
        assert not any(o.get("output_type") == "error" for c in code for o in c.outputs), nb_path.name


def test_refreshing_stored_outputs_does_not_invalidate_staged_pages(tmp_path):
    from lesionlib.pages import page_fingerprint as _fingerprint
    src = ROOT / "book/data_phantom.ipynb"
    nb = nbformat.read(src, 4)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
    copy = tmp_path / "copy.ipynb"
    nbformat.write(nb, copy)
    assert _fingerprint(copy, {"a": 1}) == _fingerprint(src, {"a": 1})
    nb.cells[0].source += " (edited)"
    nbformat.write(nb, copy)
    assert _fingerprint(copy, {"a": 1}) != _fingerprint(src, {"a": 1})


def test_pages_run_per_direction_become_one_chapter_each_with_the_direction_in_the_title(tmp_path):
    import yaml
    from lesionlib.grid import _title_direction, stage_book
    from lesionlib.pages import GRID
    stage = tmp_path / "stage"
    (stage / "book").mkdir(parents=True)
    fig1 = next(p for p in GRID if p.section == "fig1")
    assert fig1.directions == ("brain_to_lung", "lung_to_brain")
    for d in fig1.directions:
        nb = nbformat.read(ROOT / "book/fig1.ipynb", 4)
        _title_direction(nb, d)
        nbformat.write(nb, stage / fig1.staged(d))
    (stage / "book/intro.md").write_text("# An introduction since made a notebook\n")  # staged by an older book
    left_out = stage_book(stage, ROOT)
    assert not (stage / "book/intro.md").exists() and (stage / "book/notation.md").is_file()
    toc = yaml.safe_load((stage / "_toc.yml").read_text())
    results = next(p for p in toc["parts"] if p["caption"] == "Results")
    assert results["chapters"] == [{"file": "book/fig1_brain_to_lung"}, {"file": "book/fig1_lung_to_brain"}]
    assert "book/fig2" in left_out and "book/conclusions" in left_out  # not executed: left out, never stale
    title = nbformat.read(stage / "book/fig1_lung_to_brain.ipynb", 4).cells[0].source.splitlines()[0]
    assert title.startswith("# Fig 1 (lung → brain): ")


def test_pages_run_two_at_once_by_default_only_where_dask_workers_train(monkeypatch):
    from lesionlib.grid import pages_at_once
    from lesionlib.profile import profile_values
    monkeypatch.delenv("LESIONLIB_SCHEDULER", raising=False)
    assert pages_at_once(profile_values("quick")) == 2 and pages_at_once(profile_values("quick"), 3) == 3
    assert pages_at_once(profile_values("smoke")) == 1 == pages_at_once(profile_values("paper"))  # they train here
    monkeypatch.setenv("LESIONLIB_SCHEDULER", "tcp://head:8786")
    assert pages_at_once(profile_values("paper")) == 2


def test_parallel_pages_run_side_by_side_and_summary_pages_wait_for_all(tmp_path, monkeypatch):
    """`run_grid(parallel=2)`: two pages at a time in GRID order; Conclusions, Intro and the appendix (they
    read every other page's runs) start only after the last other page finished, then two at a time too.
    A failed page fails the grid."""
    import threading
    import time as _time

    from lesionlib import grid

    log, lock, running = [], threading.Lock(), [0]
    most = [0]

    def fake_execute(src, out, params, root, inputs=()):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            log.append(("start", src.stem, params.get("direction")))
        _time.sleep(0.2 if src.stem in ("conclusions", "intro", "reproducibility") else 0.05)
        with lock:
            running[0] -= 1
            log.append(("end", src.stem, params.get("direction")))
        return 0.05

    monkeypatch.setattr(grid, "execute_page", fake_execute)
    monkeypatch.setattr(grid, "is_current", lambda out, fp: False)
    grid.run_grid("smoke", build=False, output=tmp_path, parallel=2)
    summary = {p.notebook.rsplit("/", 1)[-1][:-6] for p in GRID if p.summary}
    last_other_end = max(i for i, (ev, name, _) in enumerate(log) if ev == "end" and name not in summary)
    first_summary_start = min(i for i, (ev, name, _) in enumerate(log) if ev == "start" and name in summary)
    assert most[0] == 2 and first_summary_start > last_other_end
    assert sorted(n for ev, n, _ in log if ev == "start" and n in summary) == sorted(summary)
    summary_most = max(sum(+1 if ev == "start" else -1 for ev, n, _ in log[:i + 1] if n in summary)
                       for i in range(len(log)))
    assert summary_most == 2  # the summary pages, too, run side by side

    def failing(src, out, params, root, inputs=()):
        if src.stem == "fig2":
            raise RuntimeError("fig2 broke")
        return 0.0
    monkeypatch.setattr(grid, "execute_page", failing)
    with pytest.raises(RuntimeError, match="fig2 broke"):
        grid.run_grid("smoke", build=False, output=tmp_path, parallel=2)


def test_timings_keep_every_pages_last_time_and_the_wall_time_of_the_last_whole_book(tmp_path):
    """Pages executed side by side overlap: the book's wall time is the last whole grid run's, never the pages'
    seconds added up; a resumed grid keeps it and merges its pages' new times."""
    import json

    from lesionlib import pages

    labels = [p.section + (f" [{d}]" if d else "") for p in GRID for d in (p.directions or (None,))]
    whole = {**dict.fromkeys(labels, 10.0), "notebooks": 100.0, "html": 5.0, "total": 105.0}
    pages.record_timings(tmp_path, whole, 0)
    rec = json.loads((tmp_path / "timings.json").read_text())
    assert rec["complete"] and rec["book_wall"] == 105.0 and rec["book_total"] == 10.0 * len(labels) + 5.0
    pages.record_timings(tmp_path, {"fig1 [brain_to_lung]": 30.0, "notebooks": 30.0, "total": 30.0}, 5)
    rec = json.loads((tmp_path / "timings.json").read_text())
    assert rec["book_wall"] == 105.0 and rec["pages"]["fig1 [brain_to_lung]"] == 30.0  # a resumed grid: kept
    assert rec["book_total"] == 10.0 * len(labels) + 25.0 and rec["this_run"]["total"] == 30.0
    assert rec["book_wall_runs_cached"] == 0

    from benchmarks.quickbook import book_timings
    tm = book_timings(tmp_path / "timings.json")
    assert tm["total"] == 105.0 and tm["pages added up"] == rec["book_total"]
    pages.record_timings(tmp_path, dict(whole, total=40.0), 379)  # every page again, every run cached
    tm = book_timings(tmp_path / "timings.json")
    assert "total" not in tm and tm["whole build, warm cache"] == 40.0  # not the book's cost: shown apart


def test_the_grid_counts_the_books_runs_already_cached(tmp_path):
    from lesionlib.cache import RunCache
    from lesionlib.figures import fig1_specs
    from lesionlib.plan import book_runs_cached
    from lesionlib.profile import load_profile

    P = replace(load_profile("smoke"), cache_dir=str(tmp_path))
    assert book_runs_cached(P) == 0
    spec = fig1_specs(P, "brain_to_lung")[("High", "base", 0)]
    RunCache(P.cache_root()).put(spec, {"probs": [0.5], "labels": [1], "n_out": 1})
    RunCache(P.cache_root()).put({"role": "target", "other": 1}, {"probs": [0.5]})  # not one of the book's runs
    assert book_runs_cached(P) == 1


def test_a_page_reads_every_file_its_input_glob_matches(tmp_path):
    """The appendix shows every benchmarks/results/gpu-*.json: a new or changed one makes it stale."""
    from lesionlib.pages import input_files as _input_files, page_fingerprint as _fingerprint

    (tmp_path / "r").mkdir()
    assert _input_files(tmp_path, "r/gpu-*.json") == []  # no GPU measured yet: nothing to read
    (tmp_path / "r" / "gpu-a.json").write_text("1")
    (tmp_path / "r" / "latest.json").write_text("1")
    assert _input_files(tmp_path, "r/gpu-*.json") == [tmp_path / "r" / "gpu-a.json"]
    assert _input_files(tmp_path, "r/latest.json") == [tmp_path / "r" / "latest.json"]
    src = ROOT / "book" / "reproducibility.ipynb"
    before = _fingerprint(src, {}, _input_files(tmp_path, "r/gpu-*.json"))
    (tmp_path / "r" / "gpu-b.json").write_text("2")
    assert _fingerprint(src, {}, _input_files(tmp_path, "r/gpu-*.json")) != before


# ------------------------------------------------------------------------------------------ dry run

def test_dry_run_of_the_smoke_book_finds_it_current_then_prices_a_change(smoke_book, tmp_path, capsys):
    from lesionlib.cache import RunCache
    from lesionlib.figures import book_runs
    from lesionlib.pages import UP_TO_DATE
    from lesionlib.plan import plan_grid
    from lesionlib.profile import load_profile

    out, _ = smoke_book
    P = load_profile("smoke")
    stage = out / "_build/stage/smoke"
    stamps = {p: p.stat().st_mtime_ns for p in stage.rglob("*.ipynb")}
    entries = len(RunCache(P.cache_root()).entries())
    plan = plan_grid("smoke", output=out)
    assert [pg["status"] for pg in plan["pages"]] == [UP_TO_DATE] * len(plan["pages"]) == [UP_TO_DATE] * 19
    assert plan["runs"] == plan["cached"] == len(book_runs(P)) and plan["missing"] == 0
    from lesionlib.cli import main
    assert main(["status", "--profile", "smoke", "--output", str(out)]) == 0  # up-to-date pages left out
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 2 and shown[1].startswith(f"19 pages (0 to execute); {plan['runs']} distinct"), shown
    # The same profile (same stage) with one more seed and another bootstrap count: every page is stale and says
    # why, the new seed's runs are missing, and their time comes from the finished runs of this build.
    changed = tmp_path / "smoke.yaml"
    changed.write_text(f"base: smoke\nseeds: {[*P.seeds, 7]}\nbootstrap: {P.bootstrap + 1}\n")
    plan = plan_grid(str(changed), output=out)
    fig1 = next(pg for pg in plan["pages"] if pg["page"] == "fig1 [brain_to_lung]")
    assert fig1["status"] == "changed: parameter bootstrap, seeds" and 0 < fig1["missing"] < fig1["runs"]
    assert plan["cached"] == len(book_runs(P)) and plan["missing"] == plan["runs"] - plan["cached"] > 0
    e = plan["estimate"]
    assert e["from"].startswith(f"{plan['cached']} finished runs of this build") and 0 < e["wall_s"] < 3600
    assert e["train_s"] <= e["train_s_all_epochs"]
    # nothing was trained or executed
    assert len(RunCache(P.cache_root()).entries()) == entries
    assert {p: p.stat().st_mtime_ns for p in stage.rglob("*.ipynb")} == stamps


def test_dry_run_of_the_paper_profile_without_its_data_counts_its_runs_and_estimates_them(tmp_path, capsys):
    from lesionlib.cli import main
    from lesionlib.figures import book_runs, counting_profile
    from lesionlib.profile import profile_values

    runs = len(book_runs(counting_profile(profile_values("paper"))))
    assert 350 < runs < 400
    assert main(["grid", "--dry-run", "--profile", "paper", "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert f"{runs} distinct training runs: 0 cached, {runs} to train" in printed
    assert "data_dir" in printed and "none can be cached" in printed
    assert re.search(r"estimate: \d+ s .* of training on (cpu|cuda)", printed)
    assert printed.count("never executed on this profile") == 19 and not (tmp_path / "_build").exists()


def test_a_page_whose_execution_did_not_finish_says_so(tmp_path):
    from lesionlib.pages import page_status

    nb = nbformat.v4.new_notebook(metadata={"lesionlib": {"fingerprint": {}, "complete": False}})
    nbformat.write(nb, tmp_path / "page.ipynb")
    assert page_status(tmp_path / "page.ipynb", {"parameters": {}}) == "its last execution did not finish"
    assert page_status(tmp_path / "absent.ipynb", {}) == "never executed on this profile"


def test_a_failing_page_keeps_its_executed_notebook_with_the_traceback(tmp_path):
    import papermill as pm

    from lesionlib.grid import execute_page, failed_notebook

    src = tmp_path / "page.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("raise ValueError('the data are wrong')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, src)
    out = tmp_path / "stage" / "book" / "page.ipynb"
    with pytest.raises(pm.PapermillExecutionError):
        execute_page(src, out, {"profile": "smoke"}, tmp_path)
    kept = failed_notebook(out)
    assert not out.exists() and kept.is_file() and not list(out.parent.glob(".*running*"))
    assert "the data are wrong" in kept.read_text() and "ValueError" in kept.read_text()


def test_a_quiet_build_prints_one_line_per_page_and_logs_the_rest_then_shows_where_it_resumes(tmp_path, capfd):
    out = tmp_path / "book"
    run_grid("smoke", sections=["method", "data"], build=False, output=out, quiet=True)
    shown = capfd.readouterr().err.splitlines()
    log = (out / "_build" / "grid-smoke.log").read_text()
    assert len(shown) == 3 and "messages go to" in shown[0], shown
    assert shown[1].startswith("[1/2] method: done in") and shown[2].startswith("[2/2] data: done in"), shown
    assert "executing book/method.ipynb" in log and "Kernel is running over TCP" in log  # the chatter is logged
    run_grid("smoke", sections=["method", "data"], build=False, output=out, quiet=True)
    again = capfd.readouterr().err.splitlines()
    assert [line.split(" · ")[0] for line in again[1:]] == ["[1/2] method: up to date", "[2/2] data: up to date"]


def test_the_method_page_is_executed_again_when_a_controls_probe_file_it_shows_changes():
    """The Method page tabulates every benchmarks/results/controls-*.json: they are its inputs (a new probe
    file left the staged page 'up to date', showing the old table)."""
    from lesionlib.pages import input_files

    method = next(p for p in GRID if p.section == "method")
    files = [f for pattern in method.inputs for f in input_files(ROOT, pattern)]
    assert files
    assert sorted(files) == sorted((ROOT / "benchmarks" / "results").glob("controls-*.json"))
