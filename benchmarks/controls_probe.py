"""The Controls page's runs for one direction (by default at larger sizes: benchmarks/controls-gpu.yaml), with
the verdicts of every control comparison per data condition as soon as that condition is done, on the first
2, 3, ... of its `control_seeds` (power against seeds, from one set of runs).

    LESIONLIB_CACHE=/tmp/probe-cache python -m benchmarks.controls_probe brain_to_lung [profile]

It writes benchmarks/results/controls-<profile>-<direction>.json (atomically, after each condition): per
condition each arm's AUC per seed, the training seconds per seed (its runs and their source models) and
the verdicts on the first k seeds; the Method page shows these files (`lesionlib.report.control_power`).

On one H200 (torch 2.11, fastai 2.8.12) it took 378 s; its output is benchmarks/results/controls-gpu-H200.log.
"""
import os
import platform
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import pandas as pd

from lesionlib import comparisons
from lesionlib.dispatch import runner_for
from lesionlib.experiment import control_profile, data_spec, unique_runs
from lesionlib.figures import FIGURES, controls_specs
from lesionlib.runner import Runner, results_frame
from lesionlib.profile import load_profile

from benchmarks.common import write_json

DEFAULT = str(Path(__file__).with_name("controls-gpu.yaml"))
RESULTS = Path(__file__).with_name("results")
T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:5.0f}s] {msg}", flush=True)


def make(args):
    """Generate one phantom set into the run cache (in parallel: the generator is single-threaded)."""
    P, shared, organ = args
    Runner(P, log=lambda m: None).dataset(data_spec(control_profile(P, shared), organ))
    return shared, organ


def main(direction: str, profile: str = DEFAULT, results: Path = RESULTS) -> Path:
    """Train (or find in the cache) the Controls of `direction` on `profile`; write and return its JSON file."""
    P = load_profile(profile)
    pd.set_option("display.width", 250)
    with Pool(4) as pool:
        for done in pool.imap_unordered(make, [(P, s, o) for s in P.control_shared for o in ("brain", "lung")]):
            log(f"data {done}")
    R = runner_for(P, log=log)
    specs = controls_specs(P, direction)
    source, target = {"brain_to_lung": ("brain", "lung"), "lung_to_brain": ("lung", "brain")}[direction]
    smallest = [s for s in ("High", "Medium", "Low", "VLow") if s in P.target_sizes][-1]
    import torch
    out_path = Path(results) / f"controls-{P.profile}-{direction}.json"
    report = {"profile": P.profile, "direction": direction, "date": time.strftime("%Y-%m-%d"),
              "machine": {"cpus": os.cpu_count(), "device": P.device, "workers": P.workers,
                          "processor": platform.processor() or platform.machine(),
                          "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
              "settings": {"image_size": P.image_size, "epochs": P.epochs, "patience": P.patience,
                           "min_steps": P.min_steps, "batch_size": P.batch_size, "test_size": P.test_size,
                           "target_size": P.target_sizes[smallest], "source_size": P.source_size(source, "High"),
                           "control_seeds": P.control_seeds},
              "conditions": []}
    for cond in P.control_shared:  # one condition at a time, so a run cut off still reports the first
        sub = {k: s for k, s in specs.items() if k[0] == cond}
        t_cond = time.time()
        res = R.run_all(sub.values())
        everything = unique_runs(sub.values())  # with the source models they start from
        cost = {}
        for spec, r in zip(everything, R.run_all(everything)):
            if spec["role"] != "generic":
                cost[spec["seed"]] = cost.get(spec["seed"], 0.0) + r["seconds"]
        cond_report = {"shared": cond, "wall_seconds": round(time.time() - t_cond, 1),
                       "seconds_per_seed": {str(k): round(v, 1) for k, v in sorted(cost.items())},
                       "auc": {}, "by_seeds": []}
        print(f"shared = {cond}")
        fr = results_frame(sub, res, FIGURES["controls"].keys)
        print(fr.groupby("arm")[["f2", "auc", "recall", "precision", "epochs", "seconds"]].mean().round(3), flush=True)
        per_seed = fr.pivot_table(index="arm", columns="seed", values="auc")
        print(per_seed.round(3), flush=True)
        cond_report["auc"] = {arm: {str(k): round(float(v), 4) for k, v in row.items()} for arm, row in per_seed.iterrows()}
        for k in range(2, len(P.control_seeds) + 1):  # power against seeds: the verdicts on the first k seeds
            seeds = P.control_seeds[:k]
            kept = {key: r for key, r in zip(sub, res) if key[2] in seeds}
            rows = comparisons.compare_controls(comparisons.condition_cells(kept, list(kept.values()), cond), 1000,
                                                [0, ["brain_to_lung", "lung_to_brain"].index(direction)])
            cond_report["by_seeds"].append({"seeds": k, "comparisons": [
                {c: (round(float(row[c]), 4) if isinstance(row[c], float) else row[c])
                 for c in ("comparison", "AUC difference", "AUC lo", "AUC hi", "p", "AUC verdict", "F2 difference",
                           "lo", "hi", "verdict")} for row in rows]})
            for row in rows:
                print(f"  shared={cond} seeds={k} {row['comparison']}: AUC {row['AUC difference']:+.3f} "
                      f"[{row['AUC lo']:+.3f}, {row['AUC hi']:+.3f}] {row['AUC verdict']}; F2 "
                      f"{row['F2 difference']:+.3f} [{row['lo']:+.3f}, {row['hi']:+.3f}] {row['verdict']}", flush=True)
        report["conditions"].append(cond_report)
        write_json(out_path, report)
        log(f"wrote {out_path}")
    log("total")
    return out_path


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "brain_to_lung", *sys.argv[2:3])
