"""Section 5: the paper profile's whole grid on one H100, an estimate from FLOPs (nothing is trained).

The runs are lesionlib's own: `figures.grid_specs` of the profile (every figure, the Controls page,
both directions), made distinct by `experiment.unique_runs` as the run cache trains them (a run that
several figures share once, parents included). Each run's training, validation and test images come
from its spec; every run takes all its epochs (early stopping makes it less: an upper bound), at an
assumed share of the H100's dense bf16 peak.
"""
from lesionlib.cache import spec_key
from lesionlib.costs import run_size
from lesionlib.experiment import unique_runs
from lesionlib.figures import FIGURES, book_runs, counting_profile, grid_specs
from lesionlib.profile import Profile, profile_values

from .common import fmt, log, table
from .compute import densenet_flops


# ------------------------------------------------------------------------------------- the runs

def labelled_runs(P: Profile) -> list[tuple[str, dict]]:
    """Every distinct run of P's grid as (what, spec): 'generic', 'source', or the first figure that has it."""
    groups = grid_specs(P)
    first = {}
    for (figure, _direction), specs in groups.items():
        for spec in unique_runs(specs.values()):
            first.setdefault(spec_key(spec), figure)
    runs = book_runs(P)
    return [(s["role"] if s["role"] != "target" else first[spec_key(s)], s) for s in runs]


def run_row(what: str, spec: dict) -> dict:
    """{what, n_train, n_valid, n_test, epochs} of one run, from its spec (`lesionlib.costs.run_size`)."""
    size = run_size(spec)
    return {"what": what, "n_train": size["n_train"], "n_valid": size["n_valid"], "n_test": size["n_scored"],
            "epochs": size["epochs"]}


def estimate_runs(P: Profile) -> list[dict]:
    """Every training run of P's grid as {what, n_train, n_valid, n_test, epochs}, each counted once."""
    return [run_row(what, spec) for what, spec in labelled_runs(P)]


# -------------------------------------------------------------------------------------- estimate

def runs_by_kind(runs: list[dict]) -> dict:
    """How many runs of each kind: generic, source, then the figures in lesionlib's order."""
    order = ["generic", "source", *FIGURES]
    kinds = sorted({r["what"] for r in runs}, key=lambda k: (order.index(k) if k in order else len(order), k))
    return {k: sum(r["what"] == k for r in runs) for k in kinds}


def paper_estimate(P: Profile, flops: dict, tflops: float, util: float) -> dict:
    """Runs, total FLOPs and H100 hours of P's grid, every run taking all its epochs (an upper bound)."""
    runs = estimate_runs(P)
    train_img = sum(r["n_train"] * r["epochs"] for r in runs)
    fwd_img = sum(r["n_valid"] * (r["epochs"] + 1) + r["n_test"] for r in runs)  # valid before and after each epoch
    total = train_img * flops["train"] + fwd_img * flops["forward"]
    rate = tflops * 1e12 * util
    return {"image_size": P.image_size, "epochs": P.epochs, "seeds": len(P.seeds), "runs": len(runs),
            "runs_by_kind": runs_by_kind(runs), "train_image_epochs": train_img, "forward_images": fwd_img,
            "total_pflop": total / 1e15, "assumed_tflops": tflops * util, "h100_hours": total / rate / 3600}


# -------------------------------------------------------------------------------------- section 5

def measure(a, R: dict, ctx: dict) -> None:
    """Section 5: the estimate for --paper into R['paper_h100'] (left out, and logged, when it fails)."""
    log("5/5 paper profile on one H100")
    try:
        P = counting_profile(profile_values(str(a.paper)))
        pfl = densenet_flops(P.image_size)
        est = paper_estimate(P, pfl, a.h100_tflops, a.h100_util)
    except Exception as err:  # a profile or API lesionlib no longer accepts: keep the measurements above
        log(f"    paper profile skipped ({type(err).__name__}: {err})")
        return
    est["flops_per_image"] = pfl
    est["lesionlib_run_count"] = est["runs"]  # was a cross-check of a hand-made count; kept for old results
    R["paper_h100"] = est


def report(R: dict, a) -> list[str]:
    """Section 5 of the printed report."""
    e = R.get("paper_h100")
    if e is None:
        return ["", "5. Paper profile on one H100 (estimate)", f"  skipped: no estimate for {a.paper} (see the log)"]
    return ["", f"5. Paper profile on one H100 (estimate; {e['epochs']} epochs per run as an upper bound)", table([
        ("runs", f"{e['runs']}", ", ".join(f"{k} {v}" for k, v in e["runs_by_kind"].items())),
        (f"training FLOPs/image at {e['image_size']}x{e['image_size']}",
         fmt(e["flops_per_image"]["train"] / 1e9, "GFLOP", 2), f"forward {e['flops_per_image']['forward'] / 1e9:.2f}"),
        ("training image-epochs", f"{e['train_image_epochs']:,}", f"+ {e['forward_images']:,} forward-only"),
        ("total", fmt(e["total_pflop"], "PFLOP", 1), ""),
        ("assumed sustained rate", fmt(e["assumed_tflops"], "TFLOP/s", 0),
         f"{100 * a.h100_util:.0f}% of {a.h100_tflops:.0f} TFLOP/s dense bf16 (--h100-util, --h100-tflops)"),
        ("H100 hours", fmt(e["h100_hours"], "h", 2),
         f"compute only; {e['h100_hours'] * a.h100_util / 0.10:.2f} h at 10% of peak; early stopping makes it less"),
    ])]
