"""One training step of fastai's loop (forward, loss, backward, Adam), captured in a CUDA graph where it can be.

DenseNet-201 launches hundreds of small kernels per step, so at the paper's batch of 64 a GPU mostly
waits for Python and kernel launches (issue 13 measured a lesionlib step at 0.29 of a graphed one on
an H200). `TrainStep` is a fastai callback that does each training batch's step itself:

* on CUDA with bf16 it records the step once into a `torch.cuda.CUDAGraph`, after a few eager
  warm-up steps on a side stream (PyTorch's "whole-network capture" recipe), and replays it for every
  later batch after copying the batch into the graph's static input tensors;
* elsewhere (the CPU, fp32) it runs the very same step eagerly: same loss, optimiser and order of
  operations as fastai's own `_do_one_batch`, so the weights come out bit for bit the same (tested).

A graph needs a static batch shape: the training loader drops the last partial batch (a set smaller
than one batch is one batch of its own size, the same every epoch). The learning rate is baked into
the captured optimiser step, so it must stay constant (lesionlib's `fit` uses one rate throughout).
Validation batches go through fastai as before. For a training batch fastai's step events (after_pred,
after_loss, before/after backward and step) do not fire: no callback lesionlib uses needs them.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

from . import _quiet  # noqa: F401  (before fastai)
from fastai.callback.core import Callback, CancelBatchException
from fastai.torch_core import to_float

WARMUP_STEPS = 3  # eager steps on a side stream before the capture (PyTorch's CUDA-graphs notes use 3)


class TrainStep(Callback):
    """Run each training batch's step here: eagerly, or by replaying a captured CUDA graph (`capture`)."""

    order = -5  # after TrainEvalCallback (-10), before MixedPrecision (10): a handled batch never enters its autocast

    def __init__(self, dtype: torch.dtype | None = None, capture: bool = False, warmup: int = WARMUP_STEPS):
        self.dtype, self.capture, self.warmup = dtype, capture, warmup

    def before_fit(self):
        """No graph and no static tensors yet; remember the rates the graph will bake in."""
        self.graph, self.static, self.out, self.steps, self.side = None, None, None, 0, None
        self.hypers = self._rates()

    def before_batch(self):
        """Take over a training batch: copy it into the static tensors, step, and skip fastai's own step.

        Inputs go to the network as plain tensors, validation batches too: fastai's TensorImage would route
        each of DenseNet-201's ~700 operations of a forward pass through its Python type dispatch."""
        xb, yb = self.xb[0].as_subclass(torch.Tensor), self.yb[0] if len(self.yb) else None
        if not self.training or yb is None:
            self.learn.xb = (xb, *self.xb[1:])
            return
        if self.static is None:
            self.static = (xb.clone(), yb.clone())
        elif xb.shape != self.static[0].shape or yb.shape != self.static[1].shape:
            raise RuntimeError(f"TrainStep needs one batch shape per fit: got {tuple(xb.shape)} after "
                               f"{tuple(self.static[0].shape)}; give the training loader drop_last=True")
        if self._rates() != self.hypers:
            raise RuntimeError("TrainStep bakes the learning rate into its captured step; it cannot follow a "
                               "schedule: fit with one constant rate")
        self.static[0].copy_(xb)
        self.static[1].copy_(yb)
        if self.graph is not None:
            self.graph.replay()
        elif self.capture and self.steps >= self.warmup:
            self.out = self._captured()
            self.graph.replay()  # capturing records the step without running it
        else:
            self.out = self._eager()
        self.steps += 1
        pred, loss = self.out
        self.learn.pred, self.learn.loss_grad, self.learn.loss = pred, loss, loss.detach()
        raise CancelBatchException  # fastai's after_batch still runs: the Recorder reads learn.loss

    def after_fit(self):
        """Free the graph, its memory pool, the static tensors and the last step's gradients."""
        self.graph, self.static, self.out, self.side = None, None, None, None
        if self.opt is not None:
            self.opt.zero_grad()

    def _rates(self) -> list:
        return [h.get("lr") for h in self.opt.hypers] if self.opt is not None else []

    def _step(self):
        """Forward and loss (in `dtype` autocast, as fastai's MixedPrecision), backward, the optimiser step."""
        x, y = self.static
        amp = nullcontext() if self.dtype is None else \
            torch.autocast(x.device.type, dtype=self.dtype, cache_enabled=False)  # a graph would replay a stale cache
        with amp:
            pred = to_float(self.model(x))
            loss = self.loss_func(pred, y)
        loss.backward()
        self.opt.step()
        # detached: holding the step's autograd graph until the next step would keep its gradient-accumulation
        # nodes, and the stream they were made on, alive into the next (torch warns, and a capture may break)
        return pred.detach(), loss.detach()

    def _eager(self):
        """One step now (on CUDA on a side stream, as the capture recipe wants its warm-up steps)."""
        self.opt.zero_grad()
        if self.static[0].device.type != "cuda":
            return self._step()
        self.side = self.side or torch.cuda.Stream()  # one side stream for every warm-up step, as in the recipe
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            out = self._step()
        torch.cuda.current_stream().wait_stream(self.side)
        return out

    def _captured(self):
        """Record one step into a new CUDA graph (gradients then live in the graph's own memory pool)."""
        self.opt.zero_grad()  # set to None: the captured backward allocates them, each replay overwrites them
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            return self._step()
