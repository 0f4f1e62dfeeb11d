"""Section 2: the compute limit and bf16.

This CPU's fp32 matmul rate, DenseNet-201's training FLOPs per image, the fraction of the matmul rate
lesionlib's training reaches (and where a step's time goes), and bf16 autocast: speed and accuracy cost.
"""
import statistics
import time

import numpy as np
import torch

from lesionlib import _quiet  # noqa: F401  (silences fastai's import warnings)
from fastai.callback.core import Callback  # noqa: E402

from .common import cpu_bf16_flags, fmt, log, table  # noqa: E402
from .throughput import bench_lesionlib, lesionlib_learner, matmul_gflops, op_profile, phantom_set, phase_line  # noqa: E402


# ------------------------------------------------------------------------------- compute and FLOPs


def step_seconds(phases: dict) -> float:
    """A training step's median seconds: TrainStep's whole step, or fastai's forward, backward and optimizer."""
    return phases.get("step") or phases["forward+loss"] + phases["backward"] + phases["optimizer"]

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


# --------------------------------------------------------------------------------------- bfloat16

class CpuBF16(Callback):
    """Forward and loss under `torch.autocast('cpu', dtype=torch.bfloat16)` (fastai's MixedPrecision is CUDA only)."""

    order = 10

    def before_batch(self):
        """Enter autocast."""
        self.ctx = torch.autocast("cpu", dtype=torch.bfloat16)
        self.ctx.__enter__()

    def after_pred(self):
        """Predictions back to fp32 for the loss."""
        self.learn.pred = self.pred.float()

    def after_loss(self):
        """Leave autocast before backward."""
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
        """(logits, loss, flat gradient) of one pass from the saved weights."""
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


# -------------------------------------------------------------------------------------- section 2

def measure(a, R: dict, ctx: dict) -> None:
    """Section 2: matmul rate, FLOPs and the fraction of the limit reached, the op profile and the extra size."""
    log("2/5 matmul rate and FLOPs per image")
    lib = R["throughput"]["lesionlib"]
    mm = merge_matmul(ctx["mm0"], matmul_gflops(a.matmul_n, a.matmul_reps - a.matmul_reps // 2))
    fl = densenet_flops(a.size)
    achieved = lib["images_per_s"] * fl["train"]
    by_epoch = [r * fl["train"] / (g * 1e9)
                for r, g in zip(lib["images_per_s_by_epoch"], lib["matmul_gflops_by_epoch"])]
    R["compute"] = {"matmul": mm, "flops_per_image": fl, "achieved_gflops": achieved / 1e9,
                    "fraction_of_limit": statistics.median(by_epoch),  # each epoch vs the matmul rate of its moment
                    "fraction_of_limit_by_epoch": by_epoch,
                    "fraction_of_limit_vs_best_matmul": achieved / (mm["best_gflops"] * 1e9),
                    "fraction_of_limit_step_only": fl["train"] * a.bs / step_seconds(lib["phase_seconds"]) /
                        (mm["best_gflops"] * 1e9)}
    if a.ops:
        log(f"2/5 the {a.ops} costliest ops of one lesionlib training step")
        ops = op_profile(ctx["ds"], a.bs, a.ops)
        ops["conv_gflops"] = fl["train"] * a.bs / (ops["conv_ms"] / 1e3) / 1e9
        R["compute"]["ops"] = ops
    if a.extra_size:
        log(f"2/5 lesionlib at {a.extra_size}x{a.extra_size}")
        fl2 = densenet_flops(a.extra_size)
        lib2 = bench_lesionlib(phantom_set(6 * a.bs, a.extra_size), a.bs, 2)
        R["compute"]["extra_size"] = {"size": a.extra_size, "flops_per_image": fl2, "throughput": lib2,
                                      "fraction_of_limit": lib2["images_per_s"] * fl2["train"] /
                                      (mm["best_gflops"] * 1e9)}


def measure_bf16(a, R: dict, ctx: dict) -> None:
    """Section 2, bf16 autocast: throughput against fp32 at the same batch, same-batch error, a short fit."""
    if a.no_bf16:
        return
    sub = ctx["ds"].subset(np.arange((1 + a.bf16_batches) * a.bf16_bs))
    log(f"2/5 bf16 autocast: throughput at batch {a.bf16_bs} (and fp32 at the same batch)")
    f32 = bench_lesionlib(sub, a.bf16_bs, 1)
    bf = bench_lesionlib(sub, a.bf16_bs, 1, [CpuBF16()])
    log(f"    fp32 {f32['images_per_s']:.1f}, bf16 {bf['images_per_s']:.1f} images/s; same-batch comparison")
    same = bf16_same_batch(ctx["ds"], a.bf16_bs)
    log(f"    fp32 vs bf16 fit: {a.bf16_train} images, {a.bf16_epochs} epochs each")
    fit = bf16_fit(a.bf16_train, a.size, a.bf16_bs, a.bf16_epochs)
    R["bf16"] = {"flags": cpu_bf16_flags(), "bs": a.bf16_bs, "throughput": bf, "fp32_throughput": f32,
                 "speed_ratio_vs_fp32": bf["images_per_s"] / f32["images_per_s"], "same_batch": same, "fit": fit}


def report(R: dict, a) -> list[str]:
    """Section 2 of the printed report, up to the bf16 rows."""
    c, lib = R["compute"], R["throughput"]["lesionlib"]
    mm, fl = c["matmul"], c["flops_per_image"]
    out = ["", "2. Compute limit", table([
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
        ("  same, the training step's time only", fmt(c["fraction_of_limit_step_only"], "", 3),
         "without data, optimizer, callbacks"),
    ])]
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
    return out


def report_bf16(R: dict, a) -> list[str]:
    """The bf16 rows of section 2 (none when --no-bf16)."""
    if "bf16" not in R:
        return []
    b = R["bf16"]
    sb, fit = b["same_batch"], b["fit"]
    native = b["flags"]["avx512_bf16"] or b["flags"]["amx_bf16"]
    return ["  bf16: torch.autocast('cpu', dtype=torch.bfloat16) around forward and loss", table([
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
    ])]
