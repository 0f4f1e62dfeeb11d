"""GPU benchmark, part a: DenseNet-201 training images/s of three pipelines, in interleaved rounds
(A B C C B A ...) in one process:

* A -- lesionlib: `dataloaders` + `make_learner` + fastai `fit` of one epoch on a phantom set, as
  `learner._fit` runs it (`set_seed(reproducible=True)`: deterministic cuDNN; on a bf16 GPU the step in a CUDA
  graph, `TrainStep`);
  steady batches timed by the throughput section's `BatchClock`, with a device sync at both edges.
* B -- a plain eager PyTorch loop on random tensors already on the device: bf16 autocast where the GPU
  has bf16, else fp16 with a GradScaler (fp32 on a CPU); `Adam(fused=True)`; channels-last.
* C -- the same step captured whole in one CUDA graph (bf16 autocast with `cache_enabled=False`,
  `Adam(capturable=True, fused=True)`, warm-up on a side stream, static input and target tensors),
  replayed after copying each batch into the static tensors. CUDA with bf16 only.

D is A again with cuDNN's autotuner instead of its deterministic algorithms (what B and C use), on CUDA only:
A against D is the price of run-for-run reproducibility, D against C that of the pipeline.
A's and D's untimed batches include the step that records their graph (`lesionlib_warmup`): C records its
graph before its rounds, and a run's capture is a fixed cost (parts b and c), not a steady rate.

B and C train the very network lesionlib builds (fastai's `create_vision_model(densenet201, n_out=1)`),
so the rates differ by the pipeline alone; they run with `cudnn.benchmark` on, as a tuned loop would.
"""
import statistics
import time
from contextlib import contextmanager, nullcontext

import torch

from .common import log

ADAM = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0)  # lesionlib's keras_adam


def device_sync(device: torch.device):
    """A function that waits for the device's queued work (a no-op on a CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def amp_dtype(device: torch.device):
    """The plain loops' autocast type: bf16 on a GPU that has it, else fp16 on CUDA, None (fp32) on a CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextmanager
def cudnn_flags(deterministic: bool, benchmark: bool):
    """cuDNN's algorithm flags for the block, restored after."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic, benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def plain_model(device: torch.device, seed: int = 0):
    """lesionlib's network (fastai's DenseNet-201 body and head, one output), channels-last, in train mode."""
    from lesionlib.learner import create_vision_model, densenet201  # fastai's and torchvision's, quietly imported

    torch.manual_seed(seed)
    model = create_vision_model(densenet201, 1, pretrained=False)
    return model.to(device, memory_format=torch.channels_last).train()


def random_batches(device: torch.device, n: int, bs: int, size: int) -> list:
    """`n` (images, targets) batches of random data on `device`, images channels-last."""
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(bs, 3, size, size, generator=g).to(device).contiguous(memory_format=torch.channels_last),
             (torch.rand(bs, generator=g) < 0.5).float().to(device)) for _ in range(n)]


def bce(out, y):
    """The binary cross-entropy of logits, as lesionlib's one-output learners use."""
    return torch.nn.functional.binary_cross_entropy_with_logits(out.float().view(-1), y)


class EagerLoop:
    """B: forward, backward and a fused Adam step, eagerly, under autocast (fp16 with a GradScaler)."""

    def __init__(self, device: torch.device):
        """The model, its optimizer and, for fp16, a GradScaler."""
        self.device, self.dtype = device, amp_dtype(device)
        self.model = plain_model(device)
        self.opt = torch.optim.Adam(self.model.parameters(), fused=True, **ADAM)
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

    def step(self, x, y) -> None:
        """One training step on (x, y)."""
        with torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else nullcontext():
            loss = bce(self.model(x), y)
        if self.scaler is None:
            loss.backward()
            self.opt.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        self.opt.zero_grad(set_to_none=True)


class GraphedLoop:
    """C: the eager step (bf16) captured whole in one CUDA graph, as in PyTorch's CUDA-graphs notes."""

    def __init__(self, device: torch.device, x, y, warmup: int = 3):
        """Warm up on a side stream, then capture forward, backward and the optimizer step."""
        self.model = plain_model(device)
        self.opt = torch.optim.Adam(self.model.parameters(), fused=True, capturable=True, **ADAM)
        self.x, self.y = x.clone(), y.clone()  # the static tensors the graph reads
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self.opt.zero_grad(set_to_none=True)
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)  # the graph's backward allocates the gradients from its own pool
        with torch.cuda.graph(self.graph):
            self.loss = self._step()

    def _step(self):
        """Forward under bf16 autocast (no weight-cast cache: captured), backward, Adam step; the loss."""
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            loss = bce(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        return loss

    def step(self, x, y) -> None:
        """One training step on (x, y): copy them into the static tensors and replay the graph."""
        self.x.copy_(x, non_blocking=True)
        self.y.copy_(y, non_blocking=True)
        self.graph.replay()


def steps_rate(step, batches: list, warmup: int, timed: int, sync) -> float:
    """Images/s of `timed` calls of step(x, y) after `warmup` untimed ones, cycling over `batches`."""
    for i in range(warmup):
        step(*batches[i % len(batches)])
    sync()
    t0 = time.perf_counter()
    for i in range(timed):
        step(*batches[(warmup + i) % len(batches)])
    sync()
    return timed * len(batches[0][1]) / (time.perf_counter() - t0)


def edge_sync(warmup: int, sync):
    """A fastai callback that waits for the device after the last warm-up batch and the last batch, so that
    `BatchClock`'s span holds exactly the timed batches' work (fastai syncs every batch anyway)."""
    from fastai.callback.core import Callback

    class EdgeSync(Callback):
        """Device sync at the edges of the timed batches."""

        order = -7  # before BatchClock (-6) stamps the batch's end

        def after_batch(self):
            """Sync after batch warmup-1 and the epoch's last batch."""
            if self.training and self.iter in (warmup - 1, self.n_iter - 1):
                sync()

    return EdgeSync()


def lesionlib_learner(ds, bs: int, device: torch.device):
    """lesionlib's learner on `ds` (its length a multiple of `bs`) on `device`, 8 crops as its (skipped)
    validation set; seeded as `_fit` seeds a run (which makes cuDNN deterministic)."""
    import numpy as np
    from fastai.torch_core import set_seed

    from lesionlib.learner import TrainConfig, dataloaders, make_learner

    set_seed(0, reproducible=True)
    cfg = TrainConfig(batch_size=bs, device=str(device), epochs=1)
    return make_learner(dataloaders(ds, ds.subset(np.arange(min(8, len(ds)))), cfg, n_out=1), n_out=1)


def lesionlib_round(learner, bs: int, warmup: int, sync) -> float:
    """Images/s of one lesionlib epoch's steady batches (validation skipped)."""
    from .throughput import fit_clock, steady_stats

    return steady_stats([fit_clock(learner, [edge_sync(warmup, sync)])], bs, warmup)["images_per_s"]


def lesionlib_warmup(warmup: int, device: torch.device) -> int:
    """lesionlib's untimed batches: `warmup`, and at least its eager warm-up steps and the capturing step
    where it trains in a CUDA graph."""
    from lesionlib.device import GRAPHED, precision
    from lesionlib.trainstep import WARMUP_STEPS

    return max(warmup, WARMUP_STEPS + 1) if precision(device) == GRAPHED else warmup


def round_order(names: list, rounds: int) -> list:
    """`rounds` rounds of `names`, every other one reversed: A B C C B A A B C ..."""
    return [n for r in range(rounds) for n in (names if r % 2 == 0 else names[::-1])]


def interleaved_rates(ds, device: torch.device, bs: int, size: int, warmup: int, timed: int, rounds: int) -> dict:
    """Part a: images/s of lesionlib (A), the eager loop (B) and the graphed loop (C) in interleaved rounds.

    `ds` holds (lesionlib_warmup(warmup) + timed) * bs phantom crops at `size`. C is left out off CUDA or without
    bf16, D off CUDA."""
    from lesionlib.device import precision  # how lesionlib trains on this device

    sync, notes = device_sync(device), []
    batches = random_batches(device, 4, bs, size)
    lib_warmup = lesionlib_warmup(warmup, device)
    A = lesionlib_learner(ds, bs, device)
    det = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark  # as lesionlib's runs set them
    D = lesionlib_learner(ds, bs, device) if device.type == "cuda" else None
    with cudnn_flags(False, True):
        B = EagerLoop(device)
        C = None
        if device.type == "cuda" and amp_dtype(device) == torch.bfloat16:
            t0 = time.perf_counter()
            C = GraphedLoop(device, *batches[0])
            notes.append(f"CUDA graph captured in {time.perf_counter() - t0:.1f} s (3 warm-up steps included)")
        else:
            why = "not on CUDA" if device.type != "cuda" else "no bf16 on this GPU"
            notes.append(f"C (CUDA graph) skipped: {why}")
    pipes = {"lesionlib": (det, lambda: lesionlib_round(A, bs, lib_warmup, sync)),
             "eager": ((False, True), lambda: steps_rate(B.step, batches, warmup, timed, sync))}
    if C is not None:
        pipes["graphed"] = ((False, True), lambda: steps_rate(C.step, batches, warmup, timed, sync))
    if D is not None:  # its graph is recorded under the autotuner's algorithms: the flags hold during its rounds
        pipes["lesionlib_autotuned"] = ((False, True), lambda: lesionlib_round(D, bs, lib_warmup, sync))
    if lib_warmup > warmup:
        notes.append(f"lesionlib: {lib_warmup} untimed batches ({lib_warmup - 1} eager, then the one that records "
                     "its CUDA graph)")
    order = round_order(list(pipes), rounds)
    by_round = {k: [] for k in pipes}
    for i, name in enumerate(order):
        flags, run = pipes[name]
        with cudnn_flags(*flags):
            by_round[name].append(run())
        log(f"    round {i + 1}/{len(order)}: {name} {by_round[name][-1]:.1f} images/s")
    out = {k: {"images_per_s": statistics.median(v), "by_round": v} for k, v in by_round.items()}
    lib, ref = out["lesionlib"]["images_per_s"], out.get("graphed", {}).get("images_per_s")
    dtype = amp_dtype(device)
    return {**out, "order": order, "image_size": size, "batch_size": bs, "warmup_batches": warmup,
            "timed_batches": timed, "lesionlib_warmup_batches": lib_warmup,
            "ratio_lesionlib_to_graphed": lib / ref if ref else None,
            "ratio_autotuned_to_graphed": (out["lesionlib_autotuned"]["images_per_s"] / ref
                                           if ref and "lesionlib_autotuned" in out else None),
            "ratio_lesionlib_to_eager": lib / out["eager"]["images_per_s"], "target_ratio": 0.8,
            "precision": {"lesionlib": precision(device),
                          "plain": str(dtype).replace("torch.", "") if dtype else "fp32"},
            "cudnn": {"lesionlib": {"deterministic": det[0], "benchmark": det[1]},
                      "plain": {"deterministic": False, "benchmark": True}}, "notes": notes}
