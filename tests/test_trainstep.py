"""TrainStep: the training step lesionlib runs itself (eager on a CPU, a CUDA graph under bf16 on a GPU)."""
import pytest
import torch

from lesionlib import learner as L
from lesionlib.data import build_lesions
from lesionlib.learner import TrainConfig, dataloaders, make_learner
from lesionlib.trainstep import TrainStep

CFG = TrainConfig(epochs=2, patience=2, batch_size=6, valid_frac=0.25, lr=1e-3, device="cpu")


@pytest.fixture(scope="module")
def tiny():
    return build_lesions("phantom", "brain", n=16, image_size=32, slice_size=64)


def fitted(tiny, keep_step: bool, seed: int = 2):
    """A learner fit for CFG.epochs from seed `seed`, with lesionlib's TrainStep or with fastai's own step."""
    from fastai.torch_core import set_seed
    set_seed(seed, reproducible=True)
    lrn = make_learner(dataloaders(tiny, tiny, CFG), 1)
    if not keep_step:
        lrn.remove_cbs([cb for cb in lrn.cbs if isinstance(cb, TrainStep)])
    with lrn.no_bar(), lrn.no_logging():
        lrn.fit(CFG.epochs, lr=CFG.lr)
    return lrn


def test_the_cpu_step_trains_exactly_as_fastais_own_loop(tiny):
    """On a CPU TrainStep runs every training batch itself, and the weights, the recorded losses and the
    step count come out bit for bit as fastai's `_do_one_batch` gives them."""
    ours, theirs = fitted(tiny, True), fitted(tiny, False)
    step = next(cb for cb in ours.cbs if isinstance(cb, TrainStep))
    assert step.steps == ours.train_iter == theirs.train_iter == CFG.epochs * len(ours.dls.train) > 0
    assert step.graph is None and step.static is None  # freed after the fit
    assert [list(map(float, v)) for v in ours.recorder.values] == [list(map(float, v)) for v in theirs.recorder.values]
    a, b = ours.model.state_dict(), theirs.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.isfinite(v.float()).all() for v in a.values())


def test_the_step_refuses_a_second_batch_shape_and_a_changing_rate(tiny):
    """A graph replays one shape and one learning rate: either changing mid-fit is an error, not a silent
    replay of the wrong step."""
    from fastai.callback.core import Callback

    class Shrink(Callback):
        order = -8  # before TrainStep
        def before_batch(self):
            if self.training and self.train_iter == 1:
                self.learn.xb = (self.xb[0][:3],)
                self.learn.yb = (self.yb[0][:3],)

    class Anneal(Callback):
        order = -8
        def before_batch(self):
            if self.training and self.train_iter == 1:
                self.opt.set_hyper("lr", CFG.lr / 10)

    for cb, msg in ((Shrink(), "one batch shape"), (Anneal(), "constant rate")):
        lrn = make_learner(dataloaders(tiny, tiny, CFG), 1)
        with lrn.no_bar(), lrn.no_logging(), pytest.raises(RuntimeError, match=msg):
            lrn.fit(1, lr=CFG.lr, cbs=[cb])


def test_precision_picks_bf16_and_a_graph_only_on_a_gpu_with_native_bf16(monkeypatch):
    cuda = torch.device("cuda")
    assert L.precision(torch.device("cpu")) == "fp32" and L.amp_dtype("fp32") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert L.precision(cuda) == "unknown"  # a client that cannot see the workers' GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert L.precision(cuda) == "fp16-mixed"  # emulated bf16 does not count
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert L.precision(cuda) == L.GRAPHED and L.amp_dtype(L.GRAPHED) == torch.bfloat16
    assert L.amp_dtype("fp16-mixed") == torch.float16
    monkeypatch.setenv("LESIONLIB_CUDA_GRAPH", "0")  # the same bf16 step, eagerly (and another run key)
    assert L.precision(cuda) == "bf16-mixed" and L.amp_dtype("bf16-mixed") == torch.bfloat16


def test_the_learner_graphs_and_autocasts_as_its_precision_says(tiny, monkeypatch):
    """make_learner's callbacks and optimiser for each precision (built on the CPU: nothing is fit)."""
    from fastai.callback.fp16 import AMPMode, MixedPrecision
    dls = dataloaders(tiny, tiny, CFG)

    def parts(prec):
        monkeypatch.setattr(L, "precision", lambda device: prec)
        lrn = make_learner(dls, 1)
        steps = [cb for cb in lrn.cbs if isinstance(cb, TrainStep)]
        amp = [cb.amp_mode for cb in lrn.cbs if isinstance(cb, MixedPrecision)]
        return steps, amp, lrn.opt_func.keywords["capturable"]

    steps, amp, capturable = parts(L.GRAPHED)
    assert [(s.capture, s.dtype) for s in steps] == [(True, torch.bfloat16)] and amp == [AMPMode.BF16] and capturable
    steps, amp, capturable = parts("bf16-mixed")  # LESIONLIB_CUDA_GRAPH=0: bf16, no graph
    assert [(s.capture, s.dtype) for s in steps] == [(False, torch.bfloat16)] and amp == [AMPMode.BF16] and not capturable
    steps, amp, capturable = parts("fp32")
    assert [(s.capture, s.dtype) for s in steps] == [(False, None)] and amp == [] and not capturable
    steps, amp, capturable = parts("fp16-mixed")  # fastai's loop and its gradient scaler, no graph
    assert steps == [] and amp == [AMPMode.FP16] and not capturable


def test_validation_batches_are_large_and_training_batches_static(tiny):
    dls = dataloaders(tiny, tiny, CFG)
    assert dls.train.drop_last and dls.train.bs == CFG.batch_size
    assert dls.valid.bs == L.EVAL_BATCH and len(dls.valid) == 1
