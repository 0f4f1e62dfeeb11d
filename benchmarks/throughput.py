"""Section 1: steady-state training throughput of lesionlib's pipeline against a naive fastai one.

`BatchClock` stamps each training batch's phases, `steady_stats` turns the stamps into images/s after
the warm-up batches, `bench_pair` alternates the two pipelines' epochs, and `op_profile` lists the ops
of one lesionlib training step (reported in section 2).
"""
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lesionlib import _quiet  # noqa: F401  (silences fastai's import warnings)
from fastai.callback.core import Callback, CancelValidException  # noqa: E402
from fastai.vision.augment import RandTransform  # noqa: E402
from PIL import Image  # noqa: E402

from .common import cpu_snapshot, fmt, log, others_share, table  # noqa: E402


# -------------------------------------------------------------------------------- steady-state clock

class BatchClock(Callback):
    """Time stamps of each training batch's phases; validation is skipped (not part of throughput)."""

    # Before lesionlib's TrainStep (-5), which runs a training step itself and skips fastai's step events: its
    # batches get two stamps (start, end), fastai's own loop six.
    order = -6

    def before_fit(self):
        """Start with no stamps."""
        self.stamps = []  # per batch: (start, after_pred, after_loss, after_backward, after_step, end)
        self.t_end = None

    def before_batch(self):
        """Open a training batch's stamps."""
        if self.training:
            self.cur = [time.perf_counter()]

    def _mark(self):
        """Stamp the end of a phase of a training batch."""
        if self.training:
            self.cur.append(time.perf_counter())

    def after_pred(self):
        """Forward done."""
        self._mark()

    def after_loss(self):
        """Loss done."""
        self._mark()

    def after_backward(self):
        """Backward done."""
        self._mark()

    def after_step(self):
        """Optimizer step done."""
        self._mark()

    def after_batch(self):
        """Close the batch: its stamps and the end of the batch before it."""
        if self.training:
            self._mark()
            self.stamps.append((self.cur, self.t_end))
            self.t_end = self.cur[-1]

    def before_validate(self):
        """Skip validation."""
        raise CancelValidException()


def steady_stats(clocks: list, bs: int, warmup: int) -> dict:
    """Images/s over the batches after `warmup` of each timed epoch, and where a batch's time went (medians).

    `images_per_s` is the median epoch's rate; `images_per_s_pooled` pools every timed batch.
    """
    rows, span = [], 0.0
    for clock in clocks:
        r = clock.stamps[warmup:]
        if warmup < 1 or not r:
            raise RuntimeError(f"{len(clock.stamps)} training batches ran with warmup={warmup}; "
                               "need warmup >= 1 and at least one batch after it")
        rows += r
        span += r[-1][0][-1] - r[0][1]  # from the end of the last warm-up batch to the end of the epoch
    per_batch = [cur[-1] - prev for cur, prev in rows]  # previous batch's end -> this batch's end
    phases = {"data": [cur[0] - prev for cur, prev in rows]}
    if all(len(cur) == 6 for cur, _ in rows):  # fastai's step events fired
        phases.update({"forward+loss": [cur[2] - cur[0] for cur, _ in rows],
                       "backward": [cur[3] - cur[2] for cur, _ in rows],
                       "optimizer": [cur[4] - cur[3] for cur, _ in rows],
                       "other": [cur[5] - cur[4] for cur, _ in rows]})
    else:  # lesionlib's TrainStep: one step, no events inside it
        phases["step"] = [cur[-1] - cur[0] for cur, _ in rows]
    by_epoch = [bs * len(c.stamps[warmup:]) / (c.stamps[-1][0][-1] - c.stamps[warmup][1]) for c in clocks]
    return {"images_per_s": statistics.median(by_epoch), "images_per_s_pooled": bs * len(rows) / span,
            "images_per_s_median": bs / statistics.median(per_batch), "images_per_s_by_epoch": by_epoch,
            "timed_batches": len(rows), "epochs": len(clocks), "seconds_per_batch": span / len(rows),
            "phase_seconds": {k: statistics.median(v) for k, v in phases.items()}}


# ------------------------------------------------------------------------------- lesionlib pipeline

def phantom_set(n: int, size: int, seed: int = 0):
    """`n` phantom lung lesion crops at `size` (small slices: generation is not what is measured)."""
    from lesionlib.data import build_lesions

    return build_lesions("phantom", "lung", n=n, image_size=size, seed=seed, slice_size=96)


def train_config(bs: int):
    """lesionlib's training settings (augmentation as in the profiles) at batch size `bs`, on the CPU."""
    from lesionlib.learner import TrainConfig

    return TrainConfig(batch_size=bs, device="cpu", epochs=1)


def lesionlib_learner(train, valid, bs: int, seed: int = 0):
    """lesionlib's learner: in-memory tensors, batch augmentation, channels-last DenseNet-201."""
    from fastai.torch_core import set_seed

    from lesionlib.learner import dataloaders, make_learner

    set_seed(seed)
    return make_learner(dataloaders(train, valid, train_config(bs), n_out=1), n_out=1)


def fit_clock(learner, extra_cbs=()) -> BatchClock:
    """One epoch of `learner` (validation skipped) under a `BatchClock`."""
    clock = BatchClock()
    with learner.no_bar(), learner.no_logging():
        learner.fit(1, lr=1e-4, cbs=[clock, *extra_cbs])
    return clock


def lesionlib_on(ds, bs: int):
    """lesionlib's learner on all of `ds` (a multiple of `bs`), with 8 lesions as its (skipped) validation set."""
    n = len(ds) - len(ds) % bs
    return lesionlib_learner(ds.subset(np.arange(n)), ds.subset(np.arange(min(8, len(ds)))), bs)


def bench_lesionlib(ds, bs: int, warmup: int, extra_cbs=()) -> dict:
    """Steady-state training throughput of lesionlib's pipeline on `ds` (one epoch, timed batches)."""
    return steady_stats([fit_clock(lesionlib_on(ds, bs), extra_cbs)], bs, warmup)


# ----------------------------------------------------------------------------------- naive pipeline

def write_pngs(ds, folder: Path) -> Path:
    """The crops of `ds` as 8-bit PNGs under folder/{train,valid}/{benign,malignant}/ (ImageNet-style)."""
    for split, idx in (("train", range(len(ds))), ("valid", range(min(8, len(ds))))):
        for i in idx:
            d = folder / split / ("malignant" if ds.labels[i] else "benign")
            d.mkdir(parents=True, exist_ok=True)
            img = (np.clip(ds.images[i], 0, 1) * 255).round().astype(np.uint8)
            Image.fromarray(img, mode="L").save(d / f"{i:05d}.png")
    return folder


class PilAffine(RandTransform):
    """Item-level augmentation: lesionlib's flips, rotation (degrees) and shift (share of the side), per PIL image."""

    split_idx, order = 0, 5  # training only, after Resize

    def __init__(self, max_rotate: float = 20.0, max_shift: float = 0.1, flip: bool = True):
        """The ranges of the random flips, rotation and shift."""
        super().__init__()
        self.max_rotate, self.max_shift, self.flip = max_rotate, max_shift, flip

    def before_call(self, b, split_idx):
        """Draw this item's flips, angle and shift."""
        super().before_call(b, split_idx)
        r = np.random.random(5)
        self.fh, self.fv = self.flip and r[0] < 0.5, self.flip and r[1] < 0.5
        self.angle = (2 * r[2] - 1) * self.max_rotate
        self.shift = (2 * r[3] - 1) * self.max_shift, (2 * r[4] - 1) * self.max_shift

    def encodes(self, x: Image.Image):
        """Apply the drawn flips, rotation and shift to one PIL image."""
        if self.fh:
            x = x.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.fv:
            x = x.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        w, h = x.size
        return x.rotate(self.angle, resample=Image.Resampling.BILINEAR,
                        translate=(self.shift[0] * w, self.shift[1] * h))


def naive_learner(folder: Path, size: int, bs: int, workers, seed: int = 0):
    """The textbook fastai pipeline: DataBlock over PNG files, per-item PIL decode and augmentation,
    `vision_learner(dls, densenet201, pretrained=False)` with default settings."""
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import GrandparentSplitter, Normalize, get_image_files, parent_label
    from fastai.torch_core import set_seed
    from fastai.vision.augment import Resize
    from fastai.vision.core import imagenet_stats
    from fastai.vision.data import ImageBlock
    from fastai.vision.learner import vision_learner
    from torchvision.models import densenet201

    cfg = train_config(bs)
    set_seed(seed)
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
                      splitter=GrandparentSplitter(train_name="train", valid_name="valid"),
                      item_tfms=[Resize(size), PilAffine(cfg.max_rotate, cfg.max_shift, cfg.flip)],
                      batch_tfms=[Normalize.from_stats(*imagenet_stats)])
    kw = {} if workers is None else {"num_workers": workers}
    dls = block.dataloaders(folder, bs=bs, device="cpu", **kw)
    return vision_learner(dls, densenet201, pretrained=False), dls.train.fake_l.num_workers


# --------------------------------------------------------------------------------------- the pair

def bench_pair(ds, size: int, bs: int, warmup: int, workers, rounds: int, rate_probe) -> dict:
    """Steady-state throughput of lesionlib's and the naive pipeline (the same crops, written as PNGs).

    Epochs alternate A B B A A B ... (`rounds` epochs each), so that neighbouring epochs form `rounds`
    pairs; the speed-up is the median of the pairs' ratios, robust to the drifts of a shared virtual
    machine. The first `warmup` batches of every epoch are not timed. Between epochs `rate_probe()` (a
    short fp32 matmul, GFLOP/s) measures the machine's rate of the moment, and the CPU share of other
    processes is recorded.
    """
    order = ["lesionlib" if i % 4 in (0, 3) else "naive" for i in range(2 * rounds)]
    with tempfile.TemporaryDirectory(prefix="lesionlib-bench-png-") as tmp:
        learners = {"lesionlib": lesionlib_on(ds, bs)}
        learners["naive"], n_workers = naive_learner(write_pngs(ds, Path(tmp)), size, bs, workers)
        clocks, others, rates = {"lesionlib": [], "naive": []}, {"lesionlib": [], "naive": []}, []
        mm = [rate_probe()]
        for i, name in enumerate(order):
            c0 = cpu_snapshot()
            clocks[name].append(fit_clock(learners[name]))
            others[name].append(others_share(c0, cpu_snapshot()))
            mm.append(rate_probe())
            rates.append(steady_stats(clocks[name][-1:], bs, warmup)["images_per_s"])
            log(f"    epoch {i + 1}/{len(order)}: {name} {rates[-1]:.1f} images/s, matmul {mm[-1]:.0f} GFLOP/s "
                f"(other processes: {others[name][-1]:.0%} of the CPU)")
    out = {k: steady_stats(v, bs, warmup) for k, v in clocks.items()}
    near = [max(mm[i], mm[i + 1]) for i in range(len(order))]  # the matmul rate just before or after the epoch
    for k in out:
        out[k]["others_cpu_share_by_epoch"] = others[k]
        out[k]["matmul_gflops_by_epoch"] = [g for g, name in zip(near, order) if name == k]
    out["naive"]["num_workers"] = n_workers
    pairs = [rates[2 * j] / rates[2 * j + 1] if order[2 * j] == "lesionlib" else rates[2 * j + 1] / rates[2 * j]
             for j in range(rounds)]
    return {"lesionlib": out["lesionlib"], "naive": out["naive"], "order": order, "pair_ratios": pairs,
            "speedup_vs_naive": statistics.median(pairs)}


# ------------------------------------------------------------------------------------- op profile

def op_profile(ds, bs: int, top: int) -> dict:
    """The `top` ops by self CPU time in one lesionlib training step (forward, backward, Adam), after two
    warm-up steps, and the step's time in convolution kernels."""
    from torch.profiler import ProfilerActivity, profile

    learner = lesionlib_learner(ds.subset(np.arange(bs)), ds.subset(np.arange(8)), bs)
    model = learner.model.to(memory_format=torch.channels_last).train()
    learner.create_opt()
    xb, yb = learner.dls.train.one_batch()
    xb = xb.contiguous(memory_format=torch.channels_last)

    def step():
        """Forward, backward and one Adam step on the fixed batch."""
        learner.loss_func(model(xb), yb).backward()
        learner.opt.step()
        learner.opt.zero_grad()

    step(), step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    ev = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ev)
    conv = sum(e.self_cpu_time_total for e in ev if "convolution" in e.key)
    rows = sorted(ev, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {"total_ms": total / 1e3, "conv_ms": conv / 1e3,
            "top": [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3,
                     "share": e.self_cpu_time_total / total} for e in rows]}


def matmul_gflops(n: int, reps: int) -> dict:
    """fp32 torch.matmul rate on n x n matrices: best and median of `reps` timed products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    flop = 2 * n ** 3
    return {"n": n, "reps": reps, "best_gflops": flop / min(times) / 1e9,
            "median_gflops": flop / statistics.median(times) / 1e9, "gflops": [flop / t / 1e9 for t in times]}



# ---------------------------------------------------------------------------------- section 1

def measure(a, R: dict, ctx: dict) -> None:
    """Section 1: the pipeline pair on the shared phantom set `ctx['ds']`, into R['throughput']."""
    log("1/5 lesionlib pipeline vs naive pipeline (PNG files, per-item PIL decode and augmentation)")
    R["throughput"] = pair = bench_pair(ctx["ds"], a.size, a.bs, a.warmup, a.naive_workers, a.rounds,
                                        lambda: matmul_gflops(a.matmul_n, 3)["best_gflops"])
    lib, naive, speedup = pair["lesionlib"], pair["naive"], pair["speedup_vs_naive"]
    log(f"    lesionlib {lib['images_per_s']:.1f}, naive {naive['images_per_s']:.1f} images/s (medians); "
        f"speed-up {speedup:.2f} (median of {len(pair['pair_ratios'])} pairs)")


def by_epoch(stats: dict) -> str:
    """Each epoch's images/s (with the CPU share other processes took meanwhile, when notable)."""
    eps = ", ".join(f"{v:.1f}" + (f" ({o:.0%} others)" if o >= 0.05 else "")
                    for v, o in zip(stats["images_per_s_by_epoch"], stats["others_cpu_share_by_epoch"]))
    return f"median of epochs {eps}"


def phase_line(stats: dict) -> str:
    """Median seconds per batch by phase, as shares."""
    ph = stats["phase_seconds"]
    tot = sum(ph.values())
    return ", ".join(f"{k} {100 * v / tot:.0f}%" for k, v in ph.items())


def report(R: dict, a) -> list[str]:
    """Section 1 of the printed report."""
    th = R["throughput"]
    lib, naive = th["lesionlib"], th["naive"]
    out = ["", f"1. Training throughput, DenseNet-201, {a.size}x{a.size}, batch {a.bs}: {lib['epochs']} epochs each in "
           f"the order A B B A A B ..., {a.warmup} untimed warm-up batches and {lib['timed_batches'] // lib['epochs']} "
           "timed ones per epoch"]
    out.append(table([
        ("lesionlib (in-memory, batch aug, channels-last)", fmt(lib["images_per_s"], "img/s"), by_epoch(lib)),
        (f"naive (PNG + PIL per item, {naive['num_workers']} workers)", fmt(naive["images_per_s"], "img/s"),
         by_epoch(naive)),
        ("speedup_vs_naive", fmt(th["speedup_vs_naive"], "x", 2),
         "median of the neighbouring epochs' ratios " + ", ".join(f"{r:.2f}" for r in th["pair_ratios"])
         + "; target >= 1.5"),
    ]))
    return out + [f"  time per batch, lesionlib: {phase_line(lib)}",
                  f"  time per batch, naive:     {phase_line(naive)}"]
