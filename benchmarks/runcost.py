"""Section 6: the fixed cost of one run of the quick profile, by phase (CPU, this machine).

A few representative runs of `params/quick.yaml` (brain -> lung: the generic model G, the LesAug source
at High, Base and LesAug at High) are trained through lesionlib's `Runner` on phantom data in an
isolated temporary run cache, with the profile's `threads`. `PhaseTimer` wraps the functions a run
calls (nothing in lesionlib changes) and times each phase: data, dataloaders, model build, loading
the parent's weights, the starting `validate`, each training epoch (its training and validation
passes), the fit's own set-up, the state-dict copy, `predict` on the test set, the cache write and the
result read. The fixed share of a run is everything but its epochs over the whole run; the issue's
target is <= 20 %. `PhaseTimer` also serves the GPU benchmark (`benchmarks/gpu.py`).
"""
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager, redirect_stdout

from .common import fmt, log, table

PHASES = ("data", "dataloaders", "model build", "init load", "load weights", "start validate", "epochs",
          "fit set-up", "state copy", "predict", "cache write", "result read", "other")
DETAIL = {"epoch train": "epochs", "epoch valid": "epochs", "best-weights copy": "epochs",
          "model load": "predict"}  # parts of a phase (named beside each), not added again
TARGET_FIXED_SHARE = 0.20  # the target for the fixed share of a quick-profile run


# ----------------------------------------------------------------------------------- phase timing

def fixed_share(phases: dict, whole: float) -> float:
    """The share of a run's wall time `whole` spent outside its training epochs (`phases['epochs']`)."""
    return (whole - phases.get("epochs", 0.0)) / whole if whole > 0 else float("nan")


def epoch_clock(timer):
    """A fastai callback that adds each epoch's seconds (training and validation passes) to `timer`."""
    from fastai.callback.core import Callback

    class EpochClock(Callback):
        """Stamps the start of each epoch, of its validation pass and its end (also when early stopping
        cancels the fit in the middle of `after_epoch`)."""

        order = 1000  # after every other callback of the same event

        def before_epoch(self):
            """Start of an epoch (`validate` sends the epoch events too: only `fit`'s count)."""
            if not timer.in_fit:
                return
            timer.sync()
            self.t0, self.tv = timer.clock(), None

        def before_validate(self):
            """End of the training pass."""
            if not timer.in_fit:
                return
            timer.sync()
            self.tv = timer.clock()

        def after_epoch(self):
            """End of the epoch."""
            if not timer.in_fit or getattr(self, "t0", None) is None:
                return
            timer.sync()
            t1 = timer.clock()
            tv = self.tv or t1
            timer.add("epochs", t1 - self.t0)
            timer.add("epoch train", tv - self.t0)
            timer.add("epoch valid", t1 - tv)
            timer.n_epochs += 1
            self.t0 = None

        def after_cancel_fit(self):
            """Early stopping cancelled the rest of `after_epoch`: close the epoch here."""
            self.after_epoch()

    return EpochClock()


class PhaseTimer:
    """Seconds per phase of the runs `time_run` trains while `watching(runner)` is active.

    Only the outermost wrapped call is timed (loading a parent inside `init load` is not counted twice);
    `sync` (e.g. `torch.cuda.synchronize`) runs at every phase edge so that queued GPU work is charged
    to the phase that launched it.
    """

    def __init__(self, sync=None, clock=time.perf_counter):
        """A timer reading `clock`; `sync` is called at each phase's start and end."""
        self.sync, self.clock = sync or (lambda: None), clock
        self.cur, self._busy, self.n_epochs, self.in_fit = None, False, 0, False

    def add(self, name: str, seconds: float) -> None:
        """Add `seconds` to phase `name` of the run being timed."""
        if self.cur is not None:
            self.cur[name] = self.cur.get(name, 0.0) + seconds

    def wrap(self, name: str, fn, nested: bool = False):
        """`fn`, timed as phase `name` (also inside another phase when `nested`)."""
        def timed(*args, **kwargs):
            if self.cur is None or (self._busy and not nested):
                return fn(*args, **kwargs)
            busy, self._busy = self._busy, True
            self.sync()
            t0 = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                self.add(name, self.clock() - t0)
                self._busy = busy
        return timed

    def _learner(self, make_learner):
        """`make_learner` timed as the model build, its learner's first `validate` and `fit` timed too."""
        def build(*args, **kwargs):
            learner = self.wrap("model build", make_learner)(*args, **kwargs)
            validate, fit = learner.validate, learner.fit
            learner.validate = self.wrap("start validate", validate)
            learner.fit = self.wrap("fit", self._fitting(fit))
            learner.add_cb(epoch_clock(self))
            return learner
        return build

    def _fitting(self, fit):
        """`fit`, with `in_fit` set while it runs (the epochs the epoch clock counts)."""
        def run(*args, **kwargs):
            self.in_fit = True
            try:
                return fit(*args, **kwargs)
            finally:
                self.in_fit = False
        return run

    @contextmanager
    def watching(self, runner):
        """Wrap, for the block, the functions `runner` and lesionlib's learner call; restore them after."""
        from lesionlib import generic, learner

        patches = [(learner, "dataloaders", self.wrap("dataloaders", learner.dataloaders)),
                   (learner, "make_learner", self._learner(learner.make_learner)),
                   (learner, "load_weights", self.wrap("load weights", learner.load_weights)),
                   (learner, "_state_dict_cpu", self.wrap("state copy", learner._state_dict_cpu)),
                   (learner, "_state_dict_copy", self.wrap("best-weights copy", learner._state_dict_copy, True)),
                   (learner, "loaded_model", self.wrap("model load", learner.loaded_model, True)),
                   (learner, "predict", self.wrap("predict", learner.predict)),
                   (generic, "natural_crops", self.wrap("data", generic.natural_crops)),
                   (runner, "training_set", self.wrap("data", runner.training_set)),
                   (runner, "test_set", self.wrap("data", runner.test_set)),
                   (runner, "model", self.wrap("init load", runner.model)),
                   (runner, "result", self.wrap("result read", runner.result)),
                   (runner.cache, "put", self.wrap("cache write", runner.cache.put))]
        with ExitStack() as undo:
            for obj, name, new in patches:
                old = obj.__dict__.get(name)  # a module's function; None for an instance's method
                setattr(obj, name, new)
                undo.callback(_restore, obj, name, old)
            yield self

    def time_run(self, runner, spec) -> dict:
        """Train `spec` (its parents already in the cache) with `runner.ensure`: {wall_s, phases, detail, epochs}."""
        self.cur, self.n_epochs = {}, 0
        self.sync()
        t0 = self.clock()
        try:
            runner.ensure(spec)
            self.sync()
            wall = self.clock() - t0
            ph = self.cur
        finally:
            self.cur = None
        ph["fit set-up"] = ph.pop("fit", 0.0) - ph.get("epochs", 0.0)
        ph["other"] = wall - sum(ph.get(k, 0.0) for k in PHASES if k != "other")
        return {"wall_s": wall, "phases": {k: ph.get(k, 0.0) for k in PHASES},
                "detail": {k: ph.get(k, 0.0) for k in DETAIL}, "epochs": self.n_epochs,
                "fixed_share": fixed_share(ph, wall)}


def _restore(obj, name: str, old) -> None:
    """Undo one patch: a module's attribute back to `old`; an instance's back to its class's method."""
    if old is not None:
        setattr(obj, name, old)
    else:
        delattr(obj, name)


def pooled(timings: list[dict]) -> dict:
    """Seconds per phase summed over runs, and the fixed share of the sum."""
    phases = {k: sum(t["phases"][k] for t in timings) for k in PHASES}
    whole = sum(t["wall_s"] for t in timings)
    return {"runs": len(timings), "wall_s": whole, "phases": phases, "fixed_share": fixed_share(phases, whole)}


def median_phases(timings: list[dict]) -> dict:
    """The median seconds of each phase over `timings` (and of the whole run)."""
    out = {k: statistics.median(t["phases"][k] for t in timings) for k in PHASES}
    return {**out, "whole run": statistics.median(t["wall_s"] for t in timings), "runs": len(timings)}


# ---------------------------------------------------------------------------------- section 6

def quick_profile(path, cache_dir: str, epochs: int | None, quick: bool):
    """The quick profile in `cache_dir`, trained in this process (`workers` 0, its own `threads`);
    `epochs` caps its epochs; `quick` also shrinks G (the benchmark's --quick)."""
    from lesionlib.profile import Profile, profile_values

    v = {**profile_values(str(path)), "cache_dir": cache_dir, "workers": 0, "scheduler": None}
    if epochs:
        v["epochs"] = min(v["epochs"], epochs)
    if quick:
        v.update(generic_epochs=1, generic_size=max(30, v["generic_size"] // 8))
    return Profile.from_mapping(v)


def representative_runs(P, direction: str = "brain_to_lung") -> list[tuple[str, dict, bool]]:
    """(label, spec, pooled) of G, the LesAug source at High, and Base and LesAug at High, parents first;
    `pooled` is False for G, trained once per grid of ~100 runs."""
    from lesionlib.arms import arm_spec
    from lesionlib.profile import DIRECTIONS

    source, target = DIRECTIONS[direction]
    n_t, n_s = P.target_sizes["High"], P.source_size(source, "High")
    base, aug = (arm_spec(P, arm, direction, n_t, n_s, P.seeds[0]) for arm in ("base", "lesaug"))
    runs = [(f"source ({source} High, n={n_s})", aug["init"], True),
            (f"Base ({target} High, n={n_t})", base, True), (f"LesAug ({target} High, n={n_t})", aug, True)]
    G = aug["init"]["init"]
    if G.get("role") == "generic" and G.get("name") == "natural-crops":
        runs.insert(0, (f"G (natural crops, n={G['n']})", G, False))
    return runs


def measure(a, R: dict, ctx: dict) -> None:
    """Section 6: phase times of the representative quick-profile runs, into R['run_cost']."""
    from lesionlib.experiment import data_spec
    from lesionlib.runner import Runner

    log("6. per-run fixed cost of quick-profile runs (phases of G, source, Base and LesAug)")
    with tempfile.TemporaryDirectory(prefix="lesionlib-runcost-") as tmp:
        P = quick_profile(a.runcost_profile, tmp, a.runcost_epochs, a.quick)
        runner = Runner(P, log=lambda m: None)
        t0 = time.perf_counter()
        for organ in ("brain", "lung"):  # generated once per profile, not per run
            runner.dataset(data_spec(P, organ))
        data_s = time.perf_counter() - t0
        timer, rows = PhaseTimer(), []
        with timer.watching(runner), redirect_stdout(sys.stderr):  # fastai prints early stopping: not the report
            for label, spec, pool in representative_runs(P):
                t = timer.time_run(runner, spec)
                rows.append({"run": label, "pooled": pool, **t})
                log(f"    {label}: {t['wall_s']:.1f} s, {t['epochs']} epochs, fixed share {t['fixed_share']:.0%}")
    R["run_cost"] = {"profile": P.profile, "threads": P.threads, "epochs_cap": P.epochs, "image_size": P.image_size,
                     "batch_size": P.batch_size, "phantom_data_s": data_s, "runs": rows,
                     "pooled": pooled([r for r in rows if r["pooled"]]), "target_fixed_share": TARGET_FIXED_SHARE}


def report(R: dict, a) -> list[str]:
    """Section 6 of the printed report."""
    rc = R.get("run_cost")
    if rc is None:
        return []
    runs, pool = rc["runs"], rc["pooled"]
    head = ["", f"6. Per-run fixed cost, profile {rc['profile']} ({rc['image_size']}x{rc['image_size']}, batch "
            f"{rc['batch_size']}, at most {rc['epochs_cap']} epochs, {rc['threads']} torch thread(s), phantom data, "
            f"a temporary run cache; phantom sets generated once beforehand in {rc['phantom_data_s']:.1f} s)"]
    cols = [r["run"].split(" (")[0] for r in runs]
    rows = [("phase (seconds)", "  ".join(f"{c:>9}" for c in cols), "")]
    for k in PHASES:
        rows.append((k, "  ".join(f"{r['phases'][k]:9.2f}" for r in runs), ""))
    for k, parent in DETAIL.items():
        rows.append((f"  of which {k}", "  ".join(f"{r['detail'][k]:9.2f}" for r in runs), f"(inside {parent})"))
    rows += [("whole run", "  ".join(f"{r['wall_s']:9.2f}" for r in runs), ""),
             ("epochs run", "  ".join(f"{r['epochs']:9d}" for r in runs), ""),
             ("fixed share", "  ".join(f"{r['fixed_share']:9.1%}" for r in runs), "(all but the epochs) / whole run")]
    share, target = pool["fixed_share"], rc["target_fixed_share"]
    verdict = "meets" if share <= target else "misses"
    note = f"target <= {target:.2f}: {verdict} it"
    if a.quick:
        note += " (QUICK counts: fewer epochs than the profile's, so the share is larger)"
    return head + [table(rows), table([(f"fixed share, pooled over the {pool['runs']} runs but G",
                                        fmt(share, "", 3), note)])]
