"""The GPU benchmark (benchmarks/gpu.py) runs end to end at tiny sizes on a CPU; its projection of the paper
grid recovers a run-time model it is given; the run-cost section's fixed share adds up its phases."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `benchmarks` is a folder of the checkout, not an installed package

from benchmarks import runcost  # noqa: E402
from benchmarks.estimate import estimate_runs  # noqa: E402
from lesionlib.figures import counting_profile  # noqa: E402
from benchmarks.gpu_grid import combine, epoch_fractions, fit_run_time, project_runs, projection  # noqa: E402
from lesionlib.profile import profile_values  # noqa: E402

PAPER = str(ROOT / "params" / "paper.yaml")
TRUE = {"fixed_s": 3.0, "per_train_image_epoch_s": 4e-4, "per_forward_image_s": 1.5e-4}


def true_seconds(n_train, n_valid, n_scored, epochs) -> float:
    """TRUE's seconds of a run: training images times epochs; a validation pass before training and after
    each epoch, and the lesions it is scored on, forward only."""
    return (TRUE["fixed_s"] + TRUE["per_train_image_epoch_s"] * n_train * epochs
            + TRUE["per_forward_image_s"] * (n_valid * (epochs + 1) + n_scored))


def synthetic_rows() -> list[dict]:
    """Runs of several sizes, roles and epochs whose seconds follow TRUE exactly."""
    return [{"role": role, "n_train": n_train, "n_valid": n_valid, "n_scored": n_scored, "epochs_run": e,
             "wall_s": true_seconds(n_train, n_valid, n_scored, e)}
            for role, n_train, n_valid, n_scored in (("target", 320, 80, 200), ("target", 132, 33, 200),
                                                     ("target", 200, 50, 200), ("source", 2400, 600, 600))
            for e in (4, 7, 10)]


def test_the_fit_recovers_the_run_time_model_and_projects_the_run_list_exactly():
    rows = synthetic_rows()
    coef = fit_run_time(rows)
    for k, v in TRUE.items():
        assert coef[k] == pytest.approx(v, rel=1e-6)
    assert coef["rms_residual_s"] == pytest.approx(0, abs=1e-6)

    runs = estimate_runs(counting_profile(profile_values(PAPER)))
    assert {r["what"] for r in runs} >= {"source", "fig1"} and all(r["n_test"] for r in runs if r["what"] != "source")
    # a target is scored on its test set, a source on its validation set
    by_hand = sum(true_seconds(r["n_train"], r["n_valid"], r["n_test"] if r["what"] != "source" else r["n_valid"],
                               r["epochs"]) for r in runs)
    assert project_runs(coef, runs, lambda r: r["epochs"]) == pytest.approx(by_hand, rel=1e-9)

    p = projection(rows, 10, PAPER)
    assert p["hours_all_epochs"] == pytest.approx(by_hand / 3600, rel=1e-9)
    frac = epoch_fractions(rows, 10)
    assert frac == pytest.approx({"all": 0.7, "source": 0.7, "target": 0.7})
    assert 0 < p["hours"] < p["hours_all_epochs"]  # 70 % of the epochs: less than all of them
    assert p["runs"] == len(runs)


def test_the_projection_needs_three_runs():
    assert fit_run_time(synthetic_rows()[:2]) is None
    assert "skipped" in projection(synthetic_rows()[:2], 10, PAPER)


def test_the_fixed_share_is_everything_but_the_epochs():
    assert runcost.fixed_share({"epochs": 8.0, "model build": 1.5}, 10.0) == pytest.approx(0.2)
    timings = [{"wall_s": 10.0, "phases": {**dict.fromkeys(runcost.PHASES, 0.0), "epochs": 8.0, "predict": 2.0}},
               {"wall_s": 30.0, "phases": {**dict.fromkeys(runcost.PHASES, 0.0), "epochs": 18.0, "other": 12.0}}]
    pool = runcost.pooled(timings)
    assert pool["fixed_share"] == pytest.approx((40 - 26) / 40)
    assert pool["phases"]["epochs"] == 26.0 and pool["wall_s"] == 40.0


def predict(x, m, cfg=None):
    """Stands in for lesionlib.learner.predict, which the fake runner calls to score a run (as Runner._train)."""
    CLOCK[0] += 1.0


class FakeCache:
    def put(self, spec, result, state_dict=None):
        CLOCK[0] += 0.5


class FakeRunner:
    """A run whose phases take fixed times on a fake clock: data 1, init load 2, a fit of 6.5 of which
    epochs 6, predict 1, cache write 0.5, unmeasured work 0.5."""

    cache = FakeCache()

    def training_set(self, sspec, valid_frac=None, seed=0):
        CLOCK[0] += 1.0

    def test_set(self, sspec):
        return None

    def model(self, spec):
        CLOCK[0] += 2.0

    def result(self, spec):
        return {}

    def ensure(self, spec):
        self.training_set(None)
        self.model(None)
        CLOCK[0] += 6.5  # a fit of 6.5 s whose epochs took 6 (what the wrapped fit and the epoch clock add)
        TIMER.add("fit", 6.5)
        TIMER.add("epochs", 6.0)
        CLOCK[0] += 0.5
        from lesionlib import learner
        learner.predict(None, None)
        self.cache.put(spec, {})


CLOCK = [0.0]
TIMER = runcost.PhaseTimer(clock=lambda: CLOCK[0])


def test_the_phase_timer_charges_each_phase_and_restores_what_it_wrapped(monkeypatch):
    from lesionlib import learner

    monkeypatch.setattr(learner, "predict", predict)
    runner = FakeRunner()
    with TIMER.watching(runner):
        t = TIMER.time_run(runner, {"role": "target"})
    assert t["wall_s"] == pytest.approx(11.5)
    ph = t["phases"]
    assert (ph["data"], ph["init load"], ph["epochs"], ph["fit set-up"], ph["predict"], ph["cache write"],
            ph["other"]) == pytest.approx((1.0, 2.0, 6.0, 0.5, 1.0, 0.5, 0.5))
    assert sum(ph.values()) == pytest.approx(t["wall_s"])
    assert t["fixed_share"] == pytest.approx(5.5 / 11.5)
    assert "training_set" not in vars(runner) and "put" not in vars(runner.cache)  # the class's methods again
    assert learner.predict is predict and learner.make_learner.__name__ == "make_learner"


def test_the_tiny_benchmark_runs_on_a_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--tiny", "--epochs", "1",
                           "--rounds", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    R = json.loads(out.read_text())
    assert {"rates", "fixed_costs", "fig1", "projection", "device", "seconds"} <= set(R)
    rates = R["rates"]
    assert rates["lesionlib"]["images_per_s"] > 0 and rates["eager"]["images_per_s"] > 0
    assert "graphed" not in rates and any("skipped" in n for n in rates["notes"])
    assert rates["order"] == ["lesionlib", "eager"]
    assert {"source", "target"} <= set(R["fixed_costs"])
    assert R["fixed_costs"]["target"]["model build"] > 0 and R["fixed_costs"]["target"]["predict"] > 0
    fig = R["fig1"]
    assert not fig["cut"] and fig["runs_trained"] == fig["runs_total"] == len(fig["runs"]) > 3
    assert all(r["seconds"] > 0 and r["epochs_run"] == 1 and r["n_train"] > 0 for r in fig["runs"])
    assert R["projection"]["hours"] > 0 and R["projection"]["note"]
    assert "lesionlib / eager" in done.stdout and "d. The whole paper grid" in done.stdout


def measured(rows, cap, rates=None, tiny=False) -> dict:
    """A result of `python -m benchmarks.gpu` holding `rows` as Fig 1's runs under a cap of `cap` epochs
    (each run's phases: all of it epochs)."""
    rows = [dict(r, phases={**dict.fromkeys(runcost.PHASES, 0.0), "epochs": r["wall_s"]}) for r in rows]
    return {"device": "GPU X", "tiny": tiny, "when": f"cap {cap}", "seconds": 10.0, "rates": rates,
            "fig1": {"epochs_cap": cap, "runs": rows}}


def test_combined_results_fit_every_run_and_take_epoch_shares_under_the_largest_cap():
    rows = synthetic_rows()  # 4, 7 and 10 epochs of each run: under a cap of 10, 70 % on average
    long = [dict(r, epochs_run=e, wall_s=true_seconds(r["n_train"], r["n_valid"], r["n_scored"], e))
            for r, e in zip(rows[::3], (10, 15, 5, 20))]  # the same runs under a cap of 50: 25 % on average
    R = combine([measured(rows, 10, rates={"lesionlib": 1}), measured(long, 50)], PAPER)
    assert R["rates"] == {"lesionlib": 1} and len(R["combined_from"]) == 2 and len(R["fig1_more"]) == 1
    p = R["projection"]
    assert p["fit"]["runs"] == len(rows) + len(long)
    assert p["fit"]["per_train_image_epoch_s"] == pytest.approx(TRUE["per_train_image_epoch_s"], rel=1e-6)
    assert p["epochs_cap_measured"] == 50 and p["epoch_fractions"]["all"] == pytest.approx(0.25)
    alone = projection(rows, 10, PAPER)
    assert p["hours_all_epochs"] == pytest.approx(alone["hours_all_epochs"], rel=1e-6)  # the same run-time model
    assert p["epoch_fractions"]["source"] == pytest.approx(0.4) and p["epoch_fractions"]["target"] == pytest.approx(0.2)
    runs = estimate_runs(counting_profile(profile_values(PAPER)))
    share = {"source": 0.4, "generic": 0.25}
    by_hand = project_runs(TRUE, runs, lambda r: share.get(r["what"], 0.2) * r["epochs"]) / 3600
    assert p["hours"] == pytest.approx(by_hand, rel=1e-6) and p["hours"] < alone["hours"]
    assert {"source", "target"} <= set(R["fixed_costs"])
    with pytest.raises(ValueError, match="one device"):
        combine([measured(rows, 10), dict(measured(long, 50), device="GPU Y")], PAPER)
    with pytest.raises(ValueError, match="paper's sizes"):
        combine([measured(rows, 10, tiny=True)], PAPER)


def test_the_gpu_book_check_runs_pages_through_dask_and_reports_what_ran(tmp_path):
    """`benchmarks.gpu_book` on a CPU with the tiny network, two pages: runs go through the profile's Dask worker,
    every run is reported with its device and precision, and the invariants hold (exit 0)."""
    import json

    from benchmarks.gpu_book import main
    out = tmp_path / "gpu-book.json"
    assert main(["--tiny", "--device", "cpu", "--sections", "method", "fig5", "--directions", "brain_to_lung",
                 "--out", str(out)]) == 0
    R = json.loads(out.read_text())
    assert R["ok"] and R["problems"] == [] and R["error"] is None
    assert R["devices"] == ["cpu"] and R["precisions"] == ["fp32"] and R["runs"] == len(R["run_rows"]) > 5
    assert set(R["pages_s"]) >= {"method", "fig5 [brain_to_lung]"}
    assert {r["role"] for r in R["run_rows"]} >= {"generic", "source", "target"}
