"""The benchmarks package (benchmarks/): its paper-profile estimate counts lesionlib's own runs, and its
command line starts. Nothing is trained or timed here."""
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `benchmarks` is a folder of the checkout, not an installed package

from benchmarks.estimate import estimate_runs, paper_estimate  # noqa: E402
from lesionlib.experiment import unique_runs  # noqa: E402
from lesionlib.figures import counting_profile, grid_specs  # noqa: E402
from lesionlib.profile import Profile, profile_values  # noqa: E402

FLOPS = {"train": 3.0, "forward": 1.0}  # per image: the counts are what is tested, not DenseNet's FLOPs


def grid_run_count(values: dict, data_dir: Path) -> int:
    """Distinct runs of the grid of `values` as lesionlib's run cache sees them, on the profile's own
    data source (a prepared set in an empty `data_dir` is named 'missing': its runs are still specified)."""
    P = Profile.from_mapping({**values, "data_source": "phantom", "data_dir": None})
    if values["data_source"] != "phantom":
        P = replace(P, data_source=values["data_source"], data_dir=str(data_dir))
    return len(unique_runs([s for specs in grid_specs(P).values() for s in specs.values()]))


@pytest.mark.parametrize("name", ["quick", "paper"])
def test_the_estimate_counts_the_grids_own_runs(name, tmp_path):
    values = profile_values(str(ROOT / "params" / f"{name}.yaml"))
    est = paper_estimate(counting_profile(values), FLOPS, 1.0, 1.0)
    assert est["runs"] == grid_run_count(values, tmp_path) > 0
    assert sum(est["runs_by_kind"].values()) == est["runs"]
    assert {"source", "fig1", "fig2", "fig3", "fig4"} <= set(est["runs_by_kind"])
    assert est["train_image_epochs"] > 0 and est["forward_images"] > 0


def test_per_kind_counts_add_up_to_the_runs():
    P = counting_profile(profile_values(str(ROOT / "params" / "quick.yaml")))
    runs, est = estimate_runs(P), paper_estimate(P, FLOPS, 1.0, 1.0)
    assert est["runs_by_kind"] == {k: sum(r["what"] == k for r in runs) for k in est["runs_by_kind"]}
    assert sum(est["runs_by_kind"].values()) == len(runs) == est["runs"]
    assert all(r["n_train"] > 0 and r["n_valid"] > 0 for r in runs)


def test_training_images_follow_the_epochs():
    values = profile_values(str(ROOT / "params" / "quick.yaml"))
    few, more = (paper_estimate(counting_profile({**values, "epochs": e}), FLOPS, 1.0, 1.0) for e in (2, 4))
    assert few["runs"] == more["runs"]
    assert more["train_image_epochs"] > few["train_image_epochs"]
    assert more["total_pflop"] > few["total_pflop"]


def test_the_command_line_starts():
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--quick" in done.stdout and "--wait-quiet" in done.stdout


def test_every_section_imports_and_has_a_measure_and_a_report():
    from benchmarks.__main__ import sections

    steps = sections()
    assert [label for label, _, _ in steps][:4] == ["1. throughput", "2. compute", "2. bf16", "3. data"]
    assert all(callable(measure) and callable(report) for _, measure, report in steps)


def test_the_controls_probe_writes_what_the_method_page_reads(tmp_path, monkeypatch):
    """One tiny probe (test network, smoke sizes, 2 control seeds) end to end: its JSON is read back by
    `comparisons.control_power` with a row per condition and number of seeds."""
    from benchmarks import controls_probe
    from lesionlib.comparisons import control_power

    monkeypatch.setenv("LESIONLIB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tiny.yaml").write_text(
        "profile: tiny\nbase: smoke\narch: test_densenet\nimage_size: 32\nepochs: 1\npatience: 1\nmin_steps: 0\n"
        "batch_size: 8\ngeneric_size: 30\ngeneric_epochs: 1\ncontrol_seeds: [0, 1]\nworkers: 0\ndevice: cpu\n")
    out = controls_probe.main("brain_to_lung", str(tmp_path / "tiny.yaml"), tmp_path / "results")
    assert out == tmp_path / "results" / "controls-tiny-brain_to_lung.json"
    t = control_power([out])
    assert list(t.shared) == [1.0, 0.0] and list(t.seeds) == [2, 2]
    import json

    probe = json.loads(out.read_text())
    assert all(v > 0 for c in probe["conditions"] for v in c["seconds_per_seed"].values())  # every seed's cost
    assert sorted(probe["conditions"][0]["auc"]) == sorted(["base", "lesagn", "lesaug", "lesshuf", "lesstat", "agnstat"])
    assert t["|d_t|"].iloc[0] > 0
    assert "LesAug − LesShuf: seeds to hold" in t  # projected in each condition (None if no spread)
