"""The GPU benchmark: `python -m benchmarks.gpu` (`make bench-gpu`), about 8 minutes on one H100 or H200.

a. DenseNet-201 training images/s at 224x224, batch 64: lesionlib's pipeline, a plain eager PyTorch loop
   and the same step in one CUDA graph, in interleaved rounds (benchmarks/gpu_plain.py).
b. The fixed costs of a run by phase (model build, starting validate, predict, state copy, ...) at the
   paper's sizes, measured on the runs of c.
c. A paper-size Fig 1 grid of brain -> lung on phantom data at 224x224 through lesionlib's `Runner`.
d. The whole paper grid's wall time projected from c's measured runs (benchmarks/gpu_grid.py).

Results go to benchmarks/results/gpu-<device>.json and a table is printed. `--tiny --device cpu` runs
tiny sizes in about a minute on a CPU (no CUDA graph there). See benchmarks/README.md.
"""
import argparse
import gc
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .common import ROOT, fmt, log, machine, table, write_json

PAPER = dict(size=224, bs=64, warmup=3, batches=10, rounds=3)
TINY = dict(size=32, bs=8, warmup=1, batches=2, rounds=2)
LETTERS = {"lesionlib": "A", "eager": "B", "graphed": "C", "lesionlib_autotuned": "D"}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options; --tiny shrinks every size for a check that runs on a CPU."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="torch device (default: %(default)s; cpu allowed)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes: 32x32, batch 8, 2 timed batches, a smoke-sized "
                                                       "grid (a check that everything runs)")
    p.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/gpu-<device name>.json)")
    p.add_argument("--combine", nargs="+", type=Path, metavar="RESULT",
                   help="measure nothing: merge earlier results of one device (e.g. one run with part a, one with "
                        "--skip-rates --epochs 50) into one, re-fit and re-project part d, write --out")
    p.add_argument("--skip-rates", action="store_true", help="skip part a (the images/s of the three loops): parts "
                                                              "b-d only, e.g. to measure runs under the paper's epochs")
    p.add_argument("--epochs", type=int, default=10, help="cap on the epochs of the Fig 1 runs (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=0, help="train only the first N seeds of Fig 1 (0: all the profile's)")
    p.add_argument("--budget", type=float, default=450.0, metavar="SECONDS",
                   help="start no Fig 1 run expected to end later than this after the start (default: %(default)s)")
    p.add_argument("--paper", default=str(ROOT / "params/paper.yaml"),
                   help="the paper profile: Fig 1's sizes and the projected grid (default: %(default)s)")
    p.add_argument("--slice-size", type=int, default=128,
                   help="phantom slice side of the Fig 1 data (paper.yaml: 256, which takes ~4x longer to generate; "
                        "crops are resized to the image size either way) (default: %(default)s)")
    for k, what in (("size", "image side of part a"), ("bs", "batch of part a"),
                    ("warmup", "untimed batches per round"), ("batches", "timed batches per round"),
                    ("rounds", "rounds of each pipeline")):
        p.add_argument(f"--{k}", type=int, help=f"{what} (default {PAPER[k]}; --tiny {TINY[k]})")
    a = p.parse_args(argv)
    for k, v in (TINY if a.tiny else PAPER).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


def device_name(device) -> str:
    """The GPU's name, or the CPU's model."""
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else machine()["cpu"]


def slug(name: str) -> str:
    """`name` in lower case, other characters as hyphens: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def free_device(device) -> None:
    """Return the memory of part a's models to the device before part c."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv=None) -> int:
    """Run parts a to d, write the JSON, print the table."""
    a = parse_args(argv)
    if a.combine:
        return combine_main(a)
    t_start = time.perf_counter()
    import torch

    from .gpu_grid import fig1_grid, fixed_costs, grid_profile, prepare_data, projection, tiny_note, write_generic
    from .gpu_plain import device_sync, interleaved_rates, lesionlib_warmup
    from .throughput import phantom_set

    device = torch.device(a.device)
    name = device_name(device)
    out = a.out or ROOT / "benchmarks/results" / f"gpu-{slug(name)}.json"
    R = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "tiny": a.tiny, "device": name, "machine": machine(),
         "settings": {k: getattr(a, k) for k in ("size", "bs", "warmup", "batches", "rounds", "epochs", "seeds",
                                                 "budget", "slice_size")}}
    with tempfile.TemporaryDirectory(prefix="lesionlib-bench-gpu-") as tmp:
        G = write_generic(Path(tmp) / "generic-densenet201.pth")
        P = grid_profile(str(ROOT / "params/smoke.yaml") if a.tiny else a.paper, str(Path(tmp) / "cache"), G,
                         a.device, a.epochs, None if a.tiny else 224, None if a.tiny else a.slice_size, a.seeds)
        if device.type == "cpu" and P.threads:
            torch.set_num_threads(P.threads)  # part a as the profile's runs (smoke, quick: 1 thread)
        t0 = time.perf_counter()
        log(f"phantom sets of {P.profile} at {P.image_size}x{P.image_size} (brain {P.phantom_pool['brain']}, lung "
            f"{P.phantom_pool['lung']}) into a temporary run cache")
        pending = prepare_data(P, parallel=not a.tiny)
        ds = None if a.skip_rates else phantom_set((lesionlib_warmup(a.warmup, device) + a.batches) * a.bs, a.size)
        if pending is not None:
            pending.get()
        R["data_s"] = time.perf_counter() - t0
        if not a.skip_rates:
            log(f"a. images/s at {a.size}x{a.size}, batch {a.bs}: lesionlib, eager and graphed, {a.rounds} rounds "
                "each")
        R["rates"] = None if a.skip_rates else interleaved_rates(ds, device, a.bs, a.size, a.warmup, a.batches,
                                                                  a.rounds)
        free_device(device)
        log(f"c. Fig 1 of {P.profile} ({P.image_size}x{P.image_size}, at most {P.epochs} epochs) through Runner")
        try:
            R["fig1"] = fig1_grid(P, device_sync(device), t_start + a.budget)
            R["fixed_costs"] = fixed_costs(R["fig1"]["runs"])
            R["projection"] = projection(R["fig1"]["runs"], P.epochs, a.paper)
        except Exception:  # part a's rates are kept: a GPU's minutes are too dear to lose them
            R["failed"], R["seconds"] = traceback.format_exc(), time.perf_counter() - t_start
            write_json(out, R)
            print("\n".join(rates_lines(R["rates"]) + ["", "parts b-d FAILED:", R["failed"],
                                                        f"part a written to {out}"]))
            return 1
    R["projection"]["note"] = tiny_note(P, R["projection"].get("paper_image_size", P.image_size))
    R["seconds"] = time.perf_counter() - t_start
    write_json(out, R)
    print(report(R, out))
    return 0


def combine_main(a) -> int:
    """--combine: merge the named results into --out (default gpu-<device>.json) and print the report."""
    import json

    from .gpu_grid import combine

    missing = [str(f) for f in a.combine if not f.is_file()]
    if missing:
        sys.exit(f"--combine: no such result file: {', '.join(missing)}")
    R = combine([json.loads(f.read_text()) for f in a.combine], a.paper)
    R["combined_files"] = [f.name for f in a.combine]
    out = a.out or ROOT / "benchmarks/results" / f"gpu-{slug(R['device'])}.json"
    write_json(out, R)
    print(report(R, out))
    return 0


# ------------------------------------------------------------------------------------------ report

def rates_lines(r: dict | None) -> list[str]:
    """Part a's table."""
    if r is None:
        return ["", "a. skipped (--skip-rates)"]
    rows = [(f"{LETTERS[k]}. {k} ({r['precision']['lesionlib' if k.startswith('lesionlib') else 'plain']})",
             fmt(v["images_per_s"], "img/s"), "rounds " + ", ".join(f"{x:.0f}" for x in v["by_round"]))
            for k, v in r.items() if isinstance(v, dict) and "images_per_s" in v]
    g = r["ratio_lesionlib_to_graphed"]
    rows.append(("lesionlib / graphed", fmt(g, "", 2), f"target >= {r['target_ratio']}" if g is not None else
                 "no graphed loop here"))
    rows.append(("lesionlib / eager", fmt(r["ratio_lesionlib_to_eager"], "", 2), ""))
    if r.get("ratio_autotuned_to_graphed") is not None:
        rows.append(("lesionlib autotuned / graphed", fmt(r["ratio_autotuned_to_graphed"], "", 2),
                     "cuDNN autotuner as B and C: the price of deterministic algorithms"))
    head = (f"a. DenseNet-201 training, {r['image_size']}x{r['image_size']}, batch {r['batch_size']}: "
            f"{r['warmup_batches']} warm-up + {r['timed_batches']} timed batches per round, order "
            + " ".join(LETTERS[x] for x in r["order"]))
    return ["", head, table(rows)] + [f"  {n}" for n in r["notes"]] + [
        f"  cuDNN: lesionlib {r['cudnn']['lesionlib']} (as its runs set it), plain loops and D "
        f"{r['cudnn']['plain']}"]


def fixed_lines(fc: dict, image_size: int) -> list[str]:
    """Part b's table: median seconds per phase of the source and target runs."""
    from .runcost import PHASES

    roles = list(fc)
    rows = [("phase (median seconds)", "  ".join(f"{k:>8}" for k in roles), "")]
    rows += [(k, "  ".join(f"{fc[r][k]:8.2f}" for r in roles), "") for k in (*PHASES, "whole run")]
    rows.append(("runs", "  ".join(f"{fc[r]['runs']:8d}" for r in roles), ""))
    return ["", f"b. Fixed costs per run at {image_size}x{image_size} (the runs of c)", table(rows)]


def grid_lines(f: dict) -> list[str]:
    """Part c's summary and its runs."""
    rows = [(r["run"][:70], f"{r['wall_s']:.1f} s", f"{r['epochs_run']} epochs, n_train {r['n_train']}, "
             f"fixed share {r['fixed_share']:.0%}") for r in f["runs"]]
    head = (f"c. Fig 1 ({f['direction']}), {f['image_size']}x{f['image_size']}, at most {f['epochs_cap']} epochs, "
            f"seeds {f['seeds']}: {f['runs_trained']} of {f['runs_total']} runs in {f['wall_s']:.0f} s"
            + (" (CUT SHORT by --budget)" if f["cut"] else "") + f"; phantom sets loaded in {f['data_load_s']:.1f} s")
    return ["", head, table(rows)]


def projection_lines(p: dict) -> list[str]:
    """Part d's lines."""
    if "skipped" in p:
        return ["", f"d. Paper grid projection skipped: {p['skipped']}"]
    c = p["fit"]
    rows = [("fit over c's runs", f"{c['fixed_s']:.2f} s",
             f"+ {1e3 * c['per_train_image_epoch_s']:.3f} ms per training image-epoch + "
             f"{1e3 * c['per_forward_image_s']:.3f} ms per forward image (rms residual {c['rms_residual_s']:.1f} s "
             f"of a mean {c['mean_s']:.1f} s, {c['runs']} runs)"),
            ("epoch fractions measured", ", ".join(f"{k} {v:.2f}" for k, v in p["epoch_fractions"].items()), ""),
            ("paper grid, hours", fmt(p["hours"], "h", 2), p["assumption"]),
            ("  if every run took all epochs", fmt(p["hours_all_epochs"], "h", 2), "upper bound"),
            ("  if every run took the epochs measured here", fmt(p["hours_measured_epochs"], "h", 2), "")]
    kinds = ", ".join(f"{k} {v}" for k, v in p["runs_by_kind"].items())
    size = f"{p['paper_image_size']}x{p['paper_image_size']}"
    out = ["", f"d. The whole paper grid ({p['runs']} runs: {kinds}; {size}, at most {p['paper_epochs']} epochs), "
           "projected from the measured runs", table(rows)]
    return out + ([f"  NOTE: {p['note']}"] if p.get("note") else [])


def report(R: dict, out: Path) -> str:
    """The printed table of every part."""
    lines = [f"lesionlib GPU benchmark ({'TINY sizes' if R['tiny'] else 'paper sizes'}) on {R['device']}, {R['when']}, "
             f"{R['seconds']:.0f} s (phantom data generated in {R['data_s']:.0f} s)"]
    if R.get("combined_from"):
        lines.append("combined from: " + "; ".join(f"{c['when']}, at most {c['epochs_cap']} epochs, {c['runs']} runs"
                                                  for c in R["combined_from"]))
    lines += rates_lines(R["rates"]) + fixed_lines(R["fixed_costs"], R["fig1"]["image_size"])
    for f in [R["fig1"], *R.get("fig1_more", [])]:
        lines += grid_lines(f)
    lines += projection_lines(R["projection"])
    return "\n".join(lines + ["", f"results written to {out}", ""])


if __name__ == "__main__":
    sys.exit(main())
