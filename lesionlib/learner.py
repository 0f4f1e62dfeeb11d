"""DenseNet-201 learners that implement the paper's Section 2: `learn`, `transfer` and `predict`.

A model m = (π, θ) is a `Model`: the structure π is fastai's `vision_learner` around torchvision's
DenseNet-201 (a body and a fresh head with `n_out` outputs) and θ is its state dict.

* ``learn(d)``       -- Learn(d): train from random weights on d.
* ``transfer(d, m)`` -- Transfer(d | m): start from m's weights and fine-tune every layer on d.
* ``predict(x, m)``  -- Predict(x | m): the malignancy probability of each lesion in x.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from . import _quiet  # noqa: F401  (before fastai)
from fastai.callback.channelslast import ChannelsLast
from fastai.callback.tracker import EarlyStoppingCallback, TrackerCallback
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat
from fastai.optimizer import OptimWrapper
from fastai.torch_core import TensorImage, set_seed
from fastai.vision.augment import AffineCoordTfm, affine_mat, flip_mat, rotate_mat
from fastai.vision.core import imagenet_stats
from fastai.vision.learner import create_vision_model, model_meta, vision_learner
from fasttransform import Pipeline, Transform
from fastai.data.transforms import Normalize
from torchvision.models import DenseNet, densenet201

from .config import TrainConfig, steady_heap
from .data.lesions import LesionSet
from .device import GRAPHED, amp_dtype, precision, resolve_device, with_run_threads
from .data.splits import patient_split
from .trainstep import TrainStep

ARCH = "densenet201"


def test_densenet(weights=None, progress: bool = True, **kwargs) -> DenseNet:
    """A DenseNet of two one-layer blocks (28k weights with fastai's head), like timm's `test_*` models: the
    bookkeeping tests of runs, cache, dispatch and resumption train it in milliseconds. Same modules and
    state-dict layout as DenseNet-201, fewer of them; never a result the book reports."""
    return DenseNet(growth_rate=8, block_config=(1, 1), num_init_features=16, bn_size=2, **kwargs)


test_densenet.__test__ = False  # a network, not a test: pytest must not collect it where it is imported
ARCHS = {"densenet201": densenet201, "test_densenet": test_densenet}  # config.ARCH_NAMES -> torchvision builder
model_meta[test_densenet] = model_meta[densenet201]  # fastai cuts its body and sizes its head as DenseNet-201's


def architecture(name: str):
    """The torchvision builder of `arch` name (a clear error for an unknown one)."""
    if name not in ARCHS:
        raise ValueError(f"unknown arch {name!r}; allowed: {', '.join(ARCHS)}")
    return ARCHS[name]


@dataclass
class Model:
    """The paper's m = (π, θ): DenseNet-201 (or another `arch`) with `n_out` outputs, and its weights."""

    state_dict: dict
    n_out: int = 1
    arch: str = ARCH
    history: list = field(default_factory=list)  # valid loss before training (epoch 0) and after each epoch
    fit_info: dict = field(default_factory=dict)  # seconds, epochs run, best epoch, sizes, device
    net: torch.nn.Module | None = field(default=None, repr=False, compare=False)  # the trained network itself,
    # while it is at hand (not stored): `predict` then evaluates it instead of rebuilding it from `state_dict`


class GrayToRGB(Transform):
    """Repeat a one-channel lesion crop over the three channels DenseNet-201 expects."""

    order = 90  # after augmentation (cheaper on one channel), before Normalize (order 99)

    def encodes(self, x: TensorImage):
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def vflip_mat(x, p=0.5):
    """A random vertical flip matrix (fastai's `flip_mat` only flips horizontally)."""
    mask = 1 - 2 * (torch.rand(x.size(0), device=x.device) < p).float()
    one, zero = torch.ones_like(mask), torch.zeros_like(mask)
    return affine_mat(one, zero, zero, zero, mask, zero)


def shift_mat(x, max_shift=0.1):
    """A random translation of up to `max_shift` of the image side in each direction."""
    t = (torch.rand(x.size(0), 2, device=x.device) * 2 - 1) * 2 * max_shift  # grid coords span 2
    one, zero = torch.ones(x.size(0), device=x.device), torch.zeros(x.size(0), device=x.device)
    return affine_mat(one, zero, t[:, 0], zero, one, t[:, 1])


def augmentations(cfg: TrainConfig) -> list:
    """Flips, shifts and rotations on the batch, like Keras' ImageDataGenerator in the paper."""
    fs = []
    if cfg.flip:
        fs += [partial(flip_mat, p=0.5), vflip_mat]
    if cfg.max_rotate:
        fs.append(partial(rotate_mat, max_deg=cfg.max_rotate, p=1.0))
    if cfg.max_shift:
        fs.append(partial(shift_mat, max_shift=cfg.max_shift))
    return [AffineCoordTfm(aff_fs=fs, pad_mode="border", align_corners=True)] if fs else []


class TensorBatches(DataLoader):
    """fastai batches cut from two tensors that sit on the device: one index per batch, no per-item work.

    The order of the samples (fastai's shuffle) and the batch transforms are those of a DataLoader over a
    list of (image, label) items; only the collation is gone, and the set crosses to the GPU once per run.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, **kwargs):
        self.x, self.y = x, y
        super().__init__(indexed=True, n=len(x), num_workers=0, **kwargs)

    def create_item(self, s):
        return s  # an index; the batch is cut in one go below

    def do_batch(self, b):
        idx = torch.as_tensor(b, device=self.x.device)
        return TensorImage(self.x[idx]), self.y[idx]


def _tensors(images, labels, n_out, device):
    """(one-channel images N×1×H×W, targets) as tensors on `device`."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1).to(device)
    y = torch.as_tensor(labels, dtype=torch.float32 if n_out == 1 else torch.long).to(device)
    return x, y


def _after_batch(train: bool, cfg: TrainConfig):
    norm = Normalize.from_stats(*imagenet_stats, cuda=False)
    return Pipeline((augmentations(cfg) if train else []) + [GrayToRGB(), norm])


def dataloaders(train: LesionSet, valid: LesionSet, cfg: TrainConfig, n_out: int = 1) -> DataLoaders:
    """Shuffled, augmented training batches and plain validation batches, on the chosen device."""
    device = resolve_device(cfg.device)
    dl_train = TensorBatches(*_tensors(train.images, train.labels, n_out, device), bs=cfg.batch_size, shuffle=True,
                             drop_last=len(train) > cfg.batch_size, after_batch=_after_batch(True, cfg), device=device)
    dl_valid = TensorBatches(*_tensors(valid.images, valid.labels, n_out, device), bs=max(cfg.batch_size, EVAL_BATCH),
                             shuffle=False, after_batch=_after_batch(False, cfg), device=device)
    return DataLoaders(dl_train, dl_valid, device=device)


def keras_adam(params, lr=1e-4, capturable=False):
    """Adam with Keras' defaults (beta1 0.9, beta2 0.999, eps 1e-7, no weight decay), as the paper used.

    torch's fused kernel (CPU and CUDA) through fastai's `OptimWrapper`: one kernel per step where fastai's
    own Adam launches several per tensor (on DenseNet-201's ~600 tensors, 0.13 s of a 0.7 s CPU step).
    `capturable` keeps its step count on the GPU, so that a CUDA graph can hold the step.
    """
    return OptimWrapper(params, opt=torch.optim.Adam, lr=lr, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0,
                        fused=True, capturable=capturable)


def make_learner(dls: DataLoaders, n_out: int = 1, arch: str = ARCH):
    """fastai `vision_learner` over torchvision's DenseNet-201 (or another `ARCHS` entry), random weights, every
    layer trainable.

    Channels-last format everywhere (fastai's `ChannelsLast`). Training steps go through `TrainStep`: in
    a CUDA graph under bf16 on a GPU with bf16 (eagerly under LESIONLIB_CUDA_GRAPH=0), eagerly in fp32 on a
    CPU. An fp16 GPU keeps fastai's own loop with `to_fp16` (its gradient scaler checks for overflow on the
    CPU: no graph).
    """
    prec = precision(torch.device(dls.device) if dls.device is not None else torch.device("cpu"))
    loss = BCEWithLogitsLossFlat() if n_out == 1 else CrossEntropyLossFlat()
    cbs = [ChannelsLast()] + ([] if prec == "fp16-mixed" else [TrainStep(amp_dtype(prec), capture=prec == GRAPHED)])
    learner = vision_learner(dls, architecture(arch), n_out=n_out, pretrained=False, loss_func=loss,
                             opt_func=partial(keras_adam, capturable=prec == GRAPHED), cbs=cbs)
    learner.unfreeze()
    if prec.startswith("bf16"):
        learner.to_bf16()  # the validation passes (TrainStep autocasts the training steps itself)
    elif prec == "fp16-mixed":
        learner.to_fp16()
    return learner


def load_weights(learner, init: Model, n_out: int, transfer_head: bool = True) -> None:
    """Copy `init`'s body into the learner; its head too when it has `n_out` outputs and `transfer_head`."""
    sd = init.state_dict
    body = {k[2:]: v for k, v in sd.items() if k.startswith("0.")}
    learner.model[0].load_state_dict(body)
    head = {k[2:]: v for k, v in sd.items() if k.startswith("1.")}
    if transfer_head and head and init.n_out == n_out:
        learner.model[1].load_state_dict(head)


_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # batch-norm statistics, not weights


def moment_matched(m: Model, seed: int) -> Model:
    """Random weights with each weight tensor's mean and variance of `m` (Raghu et al. 2019, "Mean Var Init").

    Every floating-point parameter tensor is redrawn i.i.d. from a normal with that tensor's mean and
    (population) variance, so only its scale and offset are kept, no feature. Batch-norm statistics
    are reset to a fresh network's (mean 0, variance 1): they describe the data `m` saw.
    """
    g = torch.Generator().manual_seed(int(seed))
    out = {}
    for k, v in m.state_dict.items():
        name = k.rsplit(".", 1)[-1]
        if name in _BUFFERS:
            out[k] = torch.zeros_like(v) if name != "running_var" else torch.ones_like(v)
        elif v.is_floating_point():
            x = v.detach().double()
            mean, sd = x.mean(), x.std(unbiased=False)
            out[k] = (mean + sd * torch.randn(v.shape, generator=g, dtype=torch.float64)).to(v.dtype)
        else:
            out[k] = v.clone()
    return Model(out, n_out=m.n_out, arch=m.arch)


def _state_dict_cpu(model) -> dict:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _state_dict_copy(model) -> dict:
    """A copy of the weights on the model's own device (no transfer to the CPU each better epoch)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class KeepBestWeights(TrackerCallback):
    """Remember the weights of the epoch with the lowest validation loss; restore them after fit.

    fastai's `SaveModelCallback` does the same through a file in the learner's `models/` folder; this one
    keeps the copy in memory, so runs on Dask workers that share a folder never read each other's file.
    Only trained epochs compete (as Keras' EarlyStopping): the starting weights are never returned.
    """

    order = TrackerCallback.order + 1

    def __init__(self, monitor="valid_loss"):
        super().__init__(monitor=monitor)
        self.best_state = None

    def after_epoch(self):
        super().after_epoch()
        if self.new_best:
            self.best_state = _state_dict_copy(self.model)  # in memory: nothing written to disk

    def after_fit(self):
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


class EarlyStopping(EarlyStoppingCallback):
    """fastai's `EarlyStoppingCallback` that may not end a fit before `min_steps` gradient steps
    (`TrainConfig.min_steps`).

    Patience is counted as fastai counts it (epochs since the last lower validation loss); when it runs
    out before `min_steps` updates, the fit goes on, and stops at the first epoch end at or after
    `min_steps` updates at which it is still out. Every trained epoch still competes for the weights kept
    (`KeepBestWeights`). With `min_steps` = 0 it is fastai's callback exactly.
    """

    def __init__(self, monitor="valid_loss", patience=1, min_steps=0):
        super().__init__(monitor=monitor, patience=patience)
        self.min_steps = int(min_steps)

    def after_epoch(self):
        if self.learn.train_iter >= self.min_steps:
            super().after_epoch()  # may stop
        else:  # too early to stop: track the best loss and count patience only
            TrackerCallback.after_epoch(self)
            self.wait = 0 if self.new_best else self.wait + 1


def epoch_cap(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """The most epochs a fit runs: `epochs`, or as many as `min_steps` gradient steps need."""
    return max(cfg.epochs, math.ceil(cfg.min_steps / max(1, steps_per_epoch)))


@with_run_threads
def _fit(d: LesionSet, init: Model | None, cfg: TrainConfig, seed: int, valid: LesionSet | None = None) -> Model:
    """Fit on `d` from `init` (None: random weights), early-stopping on `valid`, keep the best epoch.

    Without `valid`, a `valid_frac` share of `d` is held out by patient for early stopping.
    """
    if init is not None and init.arch != cfg.arch:
        raise ValueError(f"cannot transfer a {init.arch} model into a {cfg.arch} network: start from a model of the "
                         f"same arch (a profile's runs all share its `arch`)")
    steady_heap()
    set_seed(seed, reproducible=True)
    n_out = 1 if d.n_classes == 2 else d.n_classes
    if valid is None:
        train_idx, valid_idx = patient_split(d, np.arange(len(d)), cfg.valid_frac, seed)
        train, valid = d.subset(train_idx), d.subset(valid_idx)
    else:
        train = d
    if n_out == 1 and len(np.unique(train.labels)) < 2:
        raise ValueError(f"the training split of {len(train)} {d.organ} lesions holds one class only; "
                         "use a larger training size")
    dls = dataloaders(train, valid, cfg, n_out)
    t0 = time.perf_counter()
    learner = make_learner(dls, n_out, cfg.arch)
    if init is not None:
        load_weights(learner, init, n_out, cfg.transfer_head)
    epochs = epoch_cap(cfg, len(dls.train))  # `epochs`, or more where they take fewer than `min_steps` steps
    with learner.no_bar(), learner.no_logging():
        start_loss = float(learner.validate()[0])  # loss before any update (Fig 5 starts here)
        learner.fit(epochs, lr=cfg.lr, cbs=[EarlyStopping(monitor="valid_loss", patience=cfg.patience,
                                                          min_steps=cfg.min_steps),
                                            KeepBestWeights(monitor="valid_loss")])
    values = learner.recorder.values
    history = [{"epoch": 0, "train_loss": None, "valid_loss": start_loss}] + [
        {"epoch": i + 1, "train_loss": float(v[0]), "valid_loss": float(v[1])} for i, v in enumerate(values)]
    state = _state_dict_cpu(learner.model)
    seconds = time.perf_counter() - t0
    epochs_run = len(values)
    best = min(history[1:], key=lambda h: h["valid_loss"]) if epochs_run else history[0]
    info = {"seconds": seconds, "epochs_run": epochs_run, "best_epoch": best["epoch"], "n_train": len(train),
            "steps": int(learner.train_iter), "steps_per_epoch": len(dls.train),  # gradient updates: the budget
            "epoch_cap": epochs,
            "n_valid": len(valid), "images_per_s": (epochs_run * len(train)) / seconds if seconds else math.nan,
            "device": str(resolve_device(cfg.device))}
    return Model(state, n_out=n_out, arch=cfg.arch, history=history, fit_info=info, net=learner.model)


def learn(d: LesionSet, cfg: TrainConfig = TrainConfig(), seed: int = 0, valid: LesionSet | None = None) -> Model:
    """Learn(d): a DenseNet-201 trained on `d` from random weights."""
    return _fit(d, None, cfg, seed, valid)


def transfer(d: LesionSet, m: Model, cfg: TrainConfig = TrainConfig(), seed: int = 0,
             valid: LesionSet | None = None) -> Model:
    """Transfer(d | m): `m`'s weights fine-tuned on `d` (all layers; head kept when it fits)."""
    return _fit(d, m, cfg, seed, valid)


@with_run_threads
@torch.no_grad()
def predict(x, m: Model, cfg: TrainConfig = TrainConfig()) -> np.ndarray:
    """Predict(x | m): malignancy probabilities (n_out = 1) or class probabilities, one row per lesion."""
    images = x.images if isinstance(x, LesionSet) else np.asarray(x)
    if images.ndim == 2:
        images = images[None]
    device = resolve_device(cfg.device)
    model = m.net.eval() if m.net is not None else loaded_model(m, device)
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in imagenet_stats)
    x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)
    out = []
    dtype = amp_dtype(precision(device))
    with torch.inference_mode(), torch.autocast(device.type, dtype or torch.float32, enabled=dtype is not None):
        for xb in x_all.split(EVAL_BATCH):
            xb = ((xb.to(device).expand(-1, 3, -1, -1) - mean) / std).contiguous(memory_format=torch.channels_last)
            logits = model(xb).float()
            out.append(torch.sigmoid(logits) if m.n_out == 1 else torch.softmax(logits, dim=1))
    probs = torch.cat(out).cpu()
    return probs.view(-1).numpy() if m.n_out == 1 else probs.numpy()


EVAL_BATCH = 256  # validation and predict keep no activations for backward: large batches, fewer launches


def loaded_model(m: Model, device: torch.device):
    """`m` as a network on `device` in eval mode, built without drawing initial weights it would discard."""
    with torch.device("meta"):  # structure only: load_state_dict(assign=True) supplies every tensor
        model = create_vision_model(architecture(m.arch), m.n_out, pretrained=False)
    model.load_state_dict(m.state_dict, assign=True)
    return model.to(device, memory_format=torch.channels_last).eval()
