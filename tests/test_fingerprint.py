"""Cache keys and page fingerprints follow what decides a result: code, libraries, device, data bytes."""
import shutil
from dataclasses import replace

import pytest

from lesionlib import fingerprint
from lesionlib.cache import RunCache, spec_key
from lesionlib.arms import arm_spec
from lesionlib.experiment import data_spec, env_spec
from lesionlib.runner import Runner, check_env, scored
from lesionlib.fingerprint import code_fingerprint, training_sources

from test_experiment import tiny_profile


def test_a_comment_keeps_the_training_fingerprint_and_a_learner_change_does_not():
    src = training_sources()
    base = code_fingerprint(src)
    learner = src["lesionlib.learner"]
    commented = learner.replace("ARCH = \"densenet201\"", "ARCH = \"densenet201\"  # a new comment\n# and a line\n")
    redoc = learner.replace("DenseNet-201 learners that implement", "Learners (reworded) implementing")
    assert commented != learner and redoc != learner
    assert code_fingerprint({**src, "lesionlib.learner": commented}) == base
    assert code_fingerprint({**src, "lesionlib.learner": redoc}) == base  # docstrings document, not compute
    changed = learner.replace("eps=1e-7", "eps=1e-8")  # Adam's epsilon
    assert changed != learner and code_fingerprint({**src, "lesionlib.learner": changed}) != base
    config = src["lesionlib.config"]
    assert code_fingerprint({**src, "lesionlib.config": config.replace("lr: float = 1e-4", "lr: float = 2e-4")}) != base
    train = src["lesionlib.runner:Runner._train"]
    assert "probs = learner.predict(" in train  # the Runner's training method is part of it too
    assert code_fingerprint({**src, "lesionlib.runner:Runner._train":
                             train.replace("probs = learner.predict(", "probs = 1 - learner.predict(")}) != base


def test_the_run_key_holds_code_libraries_device_precision_hardware_and_threads(cache_dir):
    import torch
    from lesionlib import device
    P = tiny_profile(cache_dir)
    spec = arm_spec(P, "lesaug", "brain_to_lung", 8, 16, 0)
    env = spec["env"]
    assert env["code"] == fingerprint.training_code() and env["device"] == "cpu" and env["precision"] == "fp32"
    assert env["hardware"] == f"cpu-{torch.backends.cpu.get_cpu_capability()}" and env["threads"] == P.threads
    assert {"torch", "fastai", "numpy"} <= set(env["libraries"])
    assert spec["init"]["env"] == env  # the source model it starts from carries it too
    on_cuda = arm_spec(replace(P, device="cuda"), "lesaug", "brain_to_lung", 8, 16, 0)
    expected = device.precision(torch.device("cuda"))  # 'unknown' on a client without the GPU
    assert on_cuda["env"]["precision"] == expected != "fp32" and spec_key(on_cuda) != spec_key(spec)
    assert "threads" not in on_cuda["env"]  # GPU kernels do not split over CPU threads
    two = arm_spec(replace(P, threads=2), "lesaug", "brain_to_lung", 8, 16, 0)
    assert two["env"]["threads"] == 2 and spec_key(two) != spec_key(spec)


def test_a_run_trains_with_the_thread_count_its_spec_names(cache_dir, monkeypatch):
    import torch
    from lesionlib import learner
    P = replace(tiny_profile(cache_dir), threads=1)
    spec = arm_spec(P, "base", "brain_to_lung", 8, 16, 0)
    runner = Runner(P, RunCache(cache_dir))
    assert runner.config(spec).threads == 1
    seen = []
    monkeypatch.setattr(learner, "set_seed", lambda *a, **k: seen.append(torch.get_num_threads()) or 1 / 0)
    before = torch.get_num_threads()
    with pytest.raises(ZeroDivisionError):  # the fit's first step records the count, then stops it
        learner.learn(None, runner.config(spec))
    assert seen == [1] and torch.get_num_threads() == before  # set for the run, restored after
    worker = replace(P, threads=None, workers=0)  # a worker whose own count differs still trains the spec's
    check_env(spec, env_spec(worker))


def test_other_code_gives_other_keys_and_a_worker_with_other_code_refuses_to_train(cache_dir, monkeypatch):
    P = tiny_profile(cache_dir)
    before = arm_spec(P, "base", "brain_to_lung", 8, 16, 0)
    monkeypatch.setattr(fingerprint, "training_code", lambda: "0" * 16)
    after = arm_spec(P, "base", "brain_to_lung", 8, 16, 0)
    assert spec_key(after) != spec_key(before)
    with pytest.raises(RuntimeError, match="another environment"):
        check_env(before, env_spec(P))
    check_env(after, env_spec(P))  # same environment: fine


def test_prepared_sets_are_keyed_by_content_not_by_path_or_mtime(tmp_path, cache_dir):
    from lesionlib.data import build_lesions, save_lesions
    P0 = tiny_profile(cache_dir)
    for organ in ("brain", "lung"):
        save_lesions(build_lesions("phantom", organ, n=60, image_size=16, slice_size=64), tmp_path / "a" / organ)
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # an identical copy elsewhere (new mtimes)
    a = replace(P0, data_source="prepared", data_dir=str(tmp_path / "a"))
    b = replace(P0, data_source="prepared", data_dir=str(tmp_path / "b"))
    assert data_spec(a, "lung") == data_spec(b, "lung")  # same bytes: same runs
    index = tmp_path / "b" / "lung" / "index.csv"
    text = index.read_text().splitlines()
    row = text[1].split(",")
    row[3] = str(1 - int(row[3]))  # one label edited, same file size
    index.write_text("\n".join([text[0], ",".join(row)] + text[2:]) + "\n")
    assert data_spec(a, "lung") != data_spec(b, "lung")


def test_scores_are_computed_from_the_stored_probabilities_when_read(cache_dir):
    P = tiny_profile(cache_dir)
    runner = Runner(P, RunCache(cache_dir))
    spec = {"role": "target", "x": 1}
    stale = {"recall": 1.0, "precision": 1.0}  # what an older threshold or metric would have stored
    runner.cache.put(spec, {"scores": stale, "probs": [0.9, 0.2, 0.7, 0.4], "labels": [1, 1, 0, 0]})
    s = runner.result(spec)["scores"]
    assert (s["recall"], s["precision"], s["predicted_positive"]) == (0.5, 0.5, 2)
    assert scored({"probs": [0.9, 0.2], "labels": [1, 1]}, threshold=0.1)["scores"]["recall"] == 1.0


def test_page_fingerprints_follow_the_library(monkeypatch, tmp_path):
    from lesionlib import pages
    from lesionlib.profile import project_root
    src = project_root() / "book/data_phantom.ipynb"
    fp = pages.page_fingerprint(src, {"a": 1})
    assert fp["library"]["lesionlib"] == fingerprint.package_code()
    monkeypatch.setattr(pages, "package_code", lambda: "changed")
    assert pages.page_fingerprint(src, {"a": 1}) != fp
    # and the package fingerprint itself ignores comments
    pkg = fingerprint.package_sources()
    assert code_fingerprint({**pkg, "cli.py": pkg["cli.py"] + "\n# trailing comment\n"}) == code_fingerprint(pkg)


def test_code_is_parsed_one_thread_at_a_time():
    """`lesionlib grid --parallel` fingerprints pages in threads; CPython 3.11's parser failed there with
    "AST constructor recursion depth mismatch". A second parse waits for the first."""
    import threading
    fingerprint._PARSE.acquire()
    try:
        t = threading.Thread(target=fingerprint.normalised, args=("x = 1",))
        t.start()
        t.join(0.3)
        assert t.is_alive()  # waiting for the lock
    finally:
        fingerprint._PARSE.release()
    t.join(5)
    assert not t.is_alive()


def test_training_code_is_read_from_the_files_without_importing_them(tmp_path, monkeypatch):
    """A method's source comes from its module's file (decorators included); a missing one is a clear error."""
    pkg = tmp_path / "fpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("raise RuntimeError('imported')\n\nclass A:\n    x = 1\n\n"
                                "    @staticmethod\n    def f(y):\n        return y + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    src = fingerprint._source_of("fpkg.mod:A.f")
    assert src == "    @staticmethod\n    def f(y):\n        return y + 1\n"
    assert fingerprint.normalised(src) != fingerprint.normalised(src.replace("y + 1", "y + 2"))
    assert fingerprint._source_of("fpkg.mod").startswith("raise RuntimeError")
    with pytest.raises(ImportError, match="defines no class or function g"):
        fingerprint._source_of("fpkg.mod:A.g")


def _edited_copy(tmp_path, rel, old, new):
    """A copy of the lesionlib package with one edit in `rel` (the edit must apply)."""
    from pathlib import Path
    root = tmp_path / "lesionlib"
    shutil.copytree(Path(fingerprint.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    text = (root / rel).read_text()
    assert old in text, (rel, old)
    (root / rel).write_text(text.replace(old, new, 1))
    return root


def test_the_training_code_is_every_definition_the_roots_reach_not_a_list_that_can_miss_one():
    sources = training_sources()
    # helpers the Runner calls, read from other modules: how a data spec becomes builder arguments, and how a
    # cached phantom set is read back
    assert "lesionlib.experiment:_source_params" in sources and "lesionlib.data.store:load_lesions" in sources
    assert not any(k.startswith(("lesionlib.report", "lesionlib.plots", "lesionlib.verdicts")) for k in sources)
    assert not set(fingerprint.NOT_TRAINING) & set(sources)  # scores and log text, deliberately


@pytest.mark.parametrize("rel, old, new, changes", [
    ("experiment.py", 'k not in ("source", "organ", "sha256")', 'k not in ("source", "organ")', True),
    ("data/store.py", "def load_lesions(", "def load_lesions(  # a comment\n", False),
    ("runner.py", "np.asarray(result[f\"{prefix}probs\"]) >= threshold", "np.asarray(result[f\"{prefix}probs\"]) > threshold",
     False),  # scores: recomputed from the stored probabilities whenever a result is read
    ("report.py", '"what it means": helps[k]', '"meaning": helps[k]', False),  # a page's table
])
def test_an_edit_changes_the_run_key_exactly_when_it_can_change_a_result(tmp_path, rel, old, new, changes):
    base = code_fingerprint(training_sources())
    edited = code_fingerprint(training_sources(_edited_copy(tmp_path, rel, old, new)))
    assert (edited != base) is changes
