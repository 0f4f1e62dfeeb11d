"""Reliability: a verifiable run cache, deterministic training, crash-safe resume, patient-disjoint splits."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lesionlib.cache import PARTIAL, RunCache, spec_key
from lesionlib.cli import main
from lesionlib.data import build_lesions, draw_test, nested_sample, patient_folds, patient_split
from lesionlib.learner import TrainConfig, learn, predict
from lesionlib.metrics import scores

ROOT = Path(__file__).resolve().parent.parent


def _filled(cache_dir) -> tuple[RunCache, dict, dict]:
    """A cache with one run that kept weights and one that did not."""
    c = RunCache(cache_dir)
    src, tgt = {"role": "source", "n": 3}, {"role": "target", "n": 2}
    c.put(src, {"recall": 0.5}, {"w": torch.ones(2)})
    c.put(tgt, {"recall": 0.25})
    return c, src, tgt


# --------------------------------------------------------------------------------- run cache check

def test_sound_cache_checks_clean(cache_dir):
    c, src, tgt = _filled(cache_dir)
    assert c.check() == {} and c.verify(spec_key(src)) == [] and c.verify(c.path(tgt)) == []
    assert c.entries() == sorted([spec_key(src), spec_key(tgt)])
    assert RunCache(cache_dir / "nothing").check() == {}


def test_verify_names_each_kind_of_damage(cache_dir):
    c, src, tgt = _filled(cache_dir)
    (c.path(tgt) / "result.json").write_text('{"recall": 0.')  # cut short by a full disk
    moved = c.runs / ("0" * 24)
    os.rename(c.path(src), moved)  # an entry whose spec does not hash to its name
    lost = c.runs / ("1" * 24)
    lost.mkdir()
    (lost / "result.json").write_text("{}")
    (c.runs / f".{'2' * 24}.abc").mkdir()  # a crash inside put
    bad = c.check()
    assert set(bad) == {spec_key(tgt), moved.name, lost.name, f".{'2' * 24}.abc"}
    assert "result.json unreadable" in bad[spec_key(tgt)][0]
    assert "hashes to" in bad[moved.name][0] and spec_key(src) in bad[moved.name][0]
    assert bad[lost.name] == ["spec.json missing"]
    assert bad[f".{'2' * 24}.abc"] == [PARTIAL]


def test_corrupt_model_is_reported_and_not_trusted(cache_dir):
    c, src, _ = _filled(cache_dir)
    model = c.path(src) / "model.pt"
    model.write_bytes(model.read_bytes()[:40])  # truncated
    assert "model.pt unreadable" in c.verify(spec_key(src))[0]
    assert not c.has(src)


def test_has_rejects_damaged_entries_and_put_replaces_them(cache_dir):
    c, src, tgt = _filled(cache_dir)
    (c.path(tgt) / "result.json").write_text("not json")
    assert not c.has(tgt)  # a runner retrains it instead of trusting it
    c.put(tgt, {"recall": 1.0})
    assert c.has(tgt) and c.result(tgt) == {"recall": 1.0} and c.check() == {}
    spec_json = c.path(src) / "spec.json"
    spec_json.write_text(json.dumps({"role": "source", "n": 4}))  # an entry for another spec
    assert not c.has(src)
    c.put(src, {"recall": 0.75}, {"w": torch.zeros(2)})
    assert c.has(src) and torch.equal(c.state_dict(src)["w"], torch.zeros(2))
    assert not [p for p in c.runs.iterdir() if p.name.startswith(".")]  # the bad entry went away whole


def test_leftover_temp_dir_is_ignored_by_has(cache_dir):
    c = RunCache(cache_dir)
    spec = {"n": 9}
    tmp = c.runs / f".{spec_key(spec)}.xyz"
    tmp.mkdir(parents=True)
    (tmp / "result.json").write_text("{}")
    assert not c.has(spec) and c.check() == {tmp.name: [PARTIAL]}
    c.put(spec, {"ok": 1})
    assert c.has(spec)


def test_cli_cache_check_summary_listing_and_fix(cache_dir, capsys):
    c, src, tgt = _filled(cache_dir)
    assert main(["cache", "check", "--cache", str(cache_dir)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "2 runs, all sound" in out
    (c.path(tgt) / "result.json").write_text("")
    (c.runs / ".deadbeef.tmp").mkdir()
    assert main(["cache", "check", "--cache", str(cache_dir)]) == 1
    err = capsys.readouterr().err
    assert f"{spec_key(tgt)}: result.json unreadable" in err and f".deadbeef.tmp: {PARTIAL}" in err
    assert main(["cache", "check", "--cache", str(cache_dir), "--fix"]) == 0
    capsys.readouterr()
    assert c.entries() == [spec_key(src)] and not (c.runs / ".deadbeef.tmp").exists()
    assert main(["cache", "check", "--cache", str(cache_dir)]) == 0
    assert "1 runs, all sound" in capsys.readouterr().out


def test_cli_cache_root_defaults_like_the_profile(monkeypatch, tmp_path, capsys):
    from lesionlib.profile import load_profile, project_root
    monkeypatch.setenv("LESIONLIB_CACHE", str(tmp_path / "env"))
    assert load_profile("smoke").cache_root() == tmp_path / "env"
    assert main(["cache", "check"]) == 0 and capsys.readouterr().out.startswith(f"{tmp_path / 'env'}:")
    assert main(["cache", "check", "--cache", str(tmp_path / "x")]) == 0  # --cache wins over the environment
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'x'}:")
    monkeypatch.delenv("LESIONLIB_CACHE")
    assert load_profile("smoke").cache_root() == project_root() / ".cache" / "lesionlib"


# --------------------------------------------------------------------------------- determinism

@pytest.fixture
def one_thread():
    """Train on one thread: on a shared 2-core machine, two threads per process can run 10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_same_seed_gives_identical_predictions_other_seed_differs(one_thread):
    ds = build_lesions("phantom", "lung", n=40, image_size=32, slice_size=64)
    pool, test = draw_test(ds, 10, seed=0)
    train, test = ds.subset(pool), ds.subset(test)
    cfg = TrainConfig(epochs=2, patience=2, batch_size=8, valid_frac=0.25, device="cpu")
    models = [learn(train, cfg, seed=s) for s in (5, 5, 6)]
    probs = [predict(test, m, cfg) for m in models]
    assert np.array_equal(probs[0], probs[1])  # bit for bit, not approximately
    assert scores(test.labels, probs[0] >= 0.5) == scores(test.labels, probs[1] >= 0.5)
    assert models[0].history == models[1].history
    assert not np.array_equal(probs[0], probs[2]) and models[0].history != models[2].history


# --------------------------------------------------------------------------------- crash-safe resume

# Shared by the killed child process and the test: the smoke profile on a given cache with the tiny test network
# (what is under test is the kill and the resume, not the training), three cheap specs.
SETUP = """
import dataclasses
from lesionlib.figures import fig1_specs
from lesionlib.runner import Runner
from lesionlib.profile import load_profile
P = dataclasses.replace(load_profile("smoke"), cache_dir=CACHE, arch="test_densenet")
cheap = [s for s in fig1_specs(P, "brain_to_lung").values() if s["init"] is None or s["init"]["role"] == "generic"]
chosen = sorted(cheap, key=lambda s: (s["sample"]["n"], s["init"] is not None))[:3]  # VLow base, VLow lesagn, High base
"""

# On a killed child's PYTHONPATH: its second fit stops after one epoch and waits to be killed. The kill then comes
# in the middle of a training run, one run finished, at the same point every time whatever the machine's speed.
PAUSE = '''
"""tests/test_reliability.py: pause this process's second fit after its first epoch until it is killed."""
import importlib.abc
import importlib.machinery
import sys
import time


def _pausing(learner):
    from fastai.callback.core import Callback

    class Pause(Callback):
        def after_epoch(self):
            print("paused in the middle of training", file=sys.stderr, flush=True)
            time.sleep(600)

    make, fits = learner.make_learner, [0]

    def make_learner(*args, **kwargs):
        fits[0] += 1
        lrn = make(*args, **kwargs)
        if fits[0] == 2:
            lrn.add_cb(Pause())
        return lrn
    learner.make_learner = make_learner


class _AfterLearner(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "lesionlib.learner":  # (also asked by find_spec without an import: patch on execution only)
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        spec.loader.exec_module = lambda module: (run(module), _pausing(module))
        return spec


sys.meta_path.insert(0, _AfterLearner())
'''


def _lines(stream, q):
    for line in iter(stream.readline, ""):
        q.put(line)


def _pausing_env(tmp_path) -> dict:
    """The environment of a child whose second fit pauses (`PAUSE` as its sitecustomize), one thread per process."""
    hook = tmp_path / "pause-hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE)
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _wait_for_pause(proc, timeout, log, ready=lambda: True) -> None:
    """Read the child's stderr into `log` until its second fit has paused (and `ready()` holds)."""
    q = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, q), daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=0.5)
        except queue.Empty:
            assert proc.poll() is None, f"child ended early ({proc.returncode}):\n{''.join(log)}"
            continue
        log.append(line)
        if line.startswith("paused in the middle of training"):
            assert ready(), "".join(log)
            return
    pytest.fail(f"the child's second fit did not start within {timeout:.0f}s:\n{''.join(log)}")


def _kill_while_training(cache_dir, tmp_path, timeout=300.0) -> list:
    """Run the specs in a child; SIGKILL it in the middle of its second run, the first one cached. Its log lines."""
    code = f"CACHE = {str(cache_dir)!r}\n{SETUP}\nRunner(P).run_all(chosen)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=_pausing_env(tmp_path))
    log = []
    try:
        _wait_for_pause(proc, timeout, log, lambda: RunCache(cache_dir).entries())
        assert proc.poll() is None, "the child finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log


def test_killed_runner_resumes_without_retraining_finished_runs(tmp_path, one_thread):
    from lesionlib.experiment import unique_runs
    cache_dir = tmp_path / "cache"
    _kill_while_training(cache_dir, tmp_path)
    cache = RunCache(cache_dir)
    finished = {k: (cache.runs / k / "result.json").stat().st_mtime_ns for k in cache.entries()}
    assert finished
    assert all(p == [PARTIAL] for p in cache.check().values())  # at most temp dirs, which `has` ignores
    ns = {"CACHE": str(cache_dir)}
    exec(SETUP, ns)
    needed = {spec_key(s) for s in unique_runs(ns["chosen"])}
    assert finished.keys() < needed  # the kill left work to do
    runner = ns["Runner"](ns["P"], log=lambda m: None)
    results = runner.run_all(ns["chosen"])
    # each result is a test of all P.test_size lesions of the one lung test set, scored from its probabilities
    assert [r["scores"]["n"] for r in results] == [ns["P"].test_size] * 3
    assert results[0]["test_ids"] == results[1]["test_ids"] == results[2]["test_ids"]
    assert all(r["scores"]["predicted_positive"] == sum(p >= 0.5 for p in r["probs"]) for r in results)
    assert runner.trained == len(needed - finished.keys())  # finished runs were not trained again
    assert runner.reused >= len(finished.keys() & {spec_key(s) for s in ns["chosen"]})
    assert {k: (cache.runs / k / "result.json").stat().st_mtime_ns for k in finished} == finished
    assert all(cache.has(s) for s in ns["chosen"]) and set(cache.entries()) == needed
    assert all(p == [PARTIAL] for p in cache.check().values())


# --------------------------------------------------------------------------------- leakage guard

def _phantom():
    return build_lesions("phantom", "lung", n=40, image_size=16, slice_size=48)


def _brain(tmp_path):
    from lesionlib.fixtures.brain import write_phantom_folder
    # Three slices per patient: a split by slice would put one patient on both sides.
    return build_lesions("brain", "brain", data_dir=write_phantom_folder(tmp_path / "brain", 12, 3, size=96),
                         image_size=16)


def _lung(tmp_path):
    from lesionlib.fixtures.lung import write_lidc_series
    pats = ["LIDC-IDRI-0078", "LIDC-IDRI-0957", "LIDC-IDRI-0886"]  # the DB's smallest scans, several nodules each
    for p in pats:
        write_lidc_series(tmp_path / "lidc", p)
    return build_lesions("lung", "lung", data_dir=tmp_path / "lidc", patients=pats, rule="all", image_size=16)


@pytest.mark.parametrize("source", ["phantom", "brain", "lung"])
def test_test_train_and_valid_never_share_a_patient(source, tmp_path):
    ds = {"phantom": _phantom, "brain": lambda: _brain(tmp_path), "lung": lambda: _lung(tmp_path)}[source]()
    assert len(ds.patients) == len(ds) and len(np.unique(ds.patients)) >= 3
    multi = len(np.unique(ds.patients)) < len(ds)
    assert multi == (source != "phantom")  # the real-data layouts have several lesions per patient
    n_test = max(1, len(ds) // 5) + 1  # rarely a whole number of patients: exercises the trimming
    for seed in range(4):
        pool, test = draw_test(ds, n_test, seed)
        sample = nested_sample(ds, pool, len(pool) - (len(pool) > 4), seed)
        d = ds.subset(sample)  # as Runner.training_set, then learner._fit's own split of it
        tr, va = patient_split(d, np.arange(len(d)), 0.25, seed)
        parts = {"test": set(ds.patients[test]), "train": set(d.patients[tr]), "valid": set(d.patients[va])}
        assert all(parts.values()), parts
        assert not parts["test"] & parts["train"] and not parts["test"] & parts["valid"]
        assert not parts["train"] & parts["valid"]
        assert not set(sample) & set(test) and sorted(np.r_[tr, va]) == list(range(len(d)))
        # Fig 3's cross-validation folds of the same sample (Runner.training_set with a fold)
        k = min(3, len(np.unique(ds.patients[sample])))
        for ftr, fva in patient_folds(ds, sample, k, seed) if k >= 2 else []:
            assert not set(ds.patients[ftr]) & set(ds.patients[fva])
            assert not (set(ds.patients[ftr]) | set(ds.patients[fva])) & parts["test"]


# ------------------------------------------------------------------ crash-safe resume of the grid

def test_grid_killed_in_the_middle_of_a_notebook_resumes_cleanly(tmp_path, monkeypatch):
    """SIGKILL the whole grid (its process group: the notebook's kernel too) while a page trains."""
    import signal

    from lesionlib.grid import run_grid
    from lesionlib.pages import GRID

    out, cache_dir = tmp_path / "out", tmp_path / "cache"
    env = {**_pausing_env(tmp_path), "LESIONLIB_CACHE": str(cache_dir)}  # the page's kernel pauses in its 2nd fit
    env.pop("LESIONLIB_SCHEDULER", None)
    # smoke with the tiny test network: what is under test is the kill and the resume, not the training
    # -v: the pause is seen on the child's stderr, where a quiet build would not show it (it goes to the log)
    profile = tmp_path / "killed.yaml"
    profile.write_text("profile: killed\nbase: smoke\narch: test_densenet\n")
    args = ["grid", "--profile", str(profile), "--sections", "fig5", "--directions", "brain_to_lung", "--no-build", "-v",
            "--output", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "lesionlib.cli", *args], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        _wait_for_pause(proc, 300.0, [], lambda: RunCache(cache_dir).entries())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    staged = out / "_build" / "stage" / "killed" / next(p for p in GRID if p.section == "fig5").staged("brain_to_lung")
    assert not staged.exists()  # the page is written only once complete, by rename
    cache = RunCache(cache_dir)
    finished = {k: (cache.runs / k / "result.json").stat().st_mtime_ns for k in cache.entries()}
    assert finished and all(p == [PARTIAL] for p in cache.check().values())
    monkeypatch.setenv("LESIONLIB_CACHE", str(cache_dir))  # the kernels run_grid starts inherit it
    monkeypatch.delenv("LESIONLIB_SCHEDULER", raising=False)
    t = run_grid(str(profile), sections=["fig5"], directions=["brain_to_lung"], build=False, output=out)
    assert "fig5 [brain_to_lung]" in t and _complete(staged)
    assert {k: (cache.runs / k / "result.json").stat().st_mtime_ns for k in finished} == finished  # not redone
    assert all(p == [PARTIAL] for p in cache.check().values())


def _complete(path) -> bool:
    import nbformat
    return nbformat.read(path, 4).metadata.get("lesionlib", {}).get("complete") is True
