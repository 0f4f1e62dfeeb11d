"""The Controls page's runs for one direction (by default at larger sizes: benchmarks/controls-gpu.yaml), with
the verdicts of every control comparison per data condition as soon as that condition is done.

    LESIONLIB_CACHE=/tmp/probe-cache python benchmarks/controls_probe.py brain_to_lung [profile]

On one H200 (torch 2.11, fastai 2.8.12) it took 378 s; its output is benchmarks/results/controls-gpu-H200.log.
"""
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import pandas as pd

from lesionlib import comparisons
from lesionlib.dispatch import runner_for
from lesionlib.experiment import KEY_NAMES, control_profile, controls_specs, data_spec
from lesionlib.runner import Runner, results_frame
from lesionlib.profile import load_profile

P = load_profile(sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).with_name("controls-gpu.yaml")))
T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:5.0f}s] {msg}", flush=True)


def make(args):
    """Generate one phantom set into the run cache (in parallel: the generator is single-threaded)."""
    shared, organ = args
    Runner(P, log=lambda m: None).dataset(data_spec(control_profile(P, shared), organ))
    return args


def main(direction: str) -> None:
    pd.set_option("display.width", 250)
    with Pool(4) as pool:
        for done in pool.imap_unordered(make, [(s, o) for s in P.control_shared for o in ("brain", "lung")]):
            log(f"data {done}")
    R = runner_for(P, log=log)
    specs = controls_specs(P, direction)
    for cond in P.control_shared:  # one condition at a time, so a run cut off still reports the first
        sub = {k: s for k, s in specs.items() if k[0] == cond}
        res = R.run_all(sub.values())
        print(f"shared = {cond}")
        fr = results_frame(sub, res, KEY_NAMES["controls"])
        print(fr.groupby("arm")[["f2", "auc", "recall", "precision", "epochs", "seconds"]].mean().round(3), flush=True)
        for row in comparisons.compare_controls(comparisons.condition_cells(sub, res, cond), 1000,
                                                [0, ["brain_to_lung", "lung_to_brain"].index(direction)]):
            print(f"  shared={cond} {row['comparison']}: F2 {row['F2 difference']:+.3f} [{row['lo']:+.3f}, "
                  f"{row['hi']:+.3f}] {row['verdict']}; AUC {row['AUC difference']:+.3f} [{row['AUC lo']:+.3f}, "
                  f"{row['AUC hi']:+.3f}] {row['AUC verdict']}", flush=True)
    log("total")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "brain_to_lung")
