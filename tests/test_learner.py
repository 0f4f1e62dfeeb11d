"""Tiny end-to-end runs of Learn, Transfer, Predict and each arm, on a few 32x32 lesions."""
import numpy as np
import pytest
import torch

from lesionlib.data import build_lesions
from lesionlib.generic import GenericWeightsError, file_model, natural_crops
from lesionlib.learner import TrainConfig, augmentations, learn, predict, shift_mat, transfer, vflip_mat

CFG = TrainConfig(epochs=1, patience=1, batch_size=8, valid_frac=0.25, device="cpu")


@pytest.fixture(scope="module")
def tiny():
    return build_lesions("phantom", "lung", n=16, image_size=32, slice_size=64)


@pytest.fixture(scope="module")
def tiny_model(tiny):
    return learn(tiny, CFG, seed=0)


def test_the_test_densenet_is_a_small_densenet_in_densenet201s_layout():
    """timm-style test network: a few thousand weights, DenseNet-201's module names (body `0.0.*`, head `1.*`),
    finite outputs and a finite gradient for every weight."""
    from fastai.vision.learner import create_vision_model
    from lesionlib.config import ARCH_NAMES
    from lesionlib.learner import ARCHS, architecture

    assert tuple(ARCHS) == ARCH_NAMES
    small = create_vision_model(architecture("test_densenet"), 1, pretrained=False)
    big = create_vision_model(architecture("densenet201"), 1, pretrained=False)
    assert set(small.state_dict()) < set(big.state_dict())
    assert {k for k in small.state_dict() if k.startswith("1.")} == {k for k in big.state_dict() if k.startswith("1.")}
    assert sum(p.numel() for p in small.parameters()) < 50_000
    out = small(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 1) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in small.parameters())
    with pytest.raises(ValueError, match="unknown arch 'vgg'"):
        architecture("vgg")


def test_a_model_keeps_its_arch_and_transfer_refuses_another(tiny):
    from dataclasses import replace

    from lesionlib.learner import Model

    cfg = replace(CFG, arch="test_densenet")
    m = learn(tiny, cfg, seed=0)
    assert m.arch == "test_densenet" and len(m.history) == 2
    stored = Model(m.state_dict, n_out=1, arch="test_densenet")  # as the run cache gives it back: rebuilt
    assert np.allclose(predict(tiny, stored, cfg), predict(tiny, m, cfg), atol=1e-6)
    with pytest.raises(ValueError, match="cannot transfer a densenet201 model into a test_densenet network"):
        transfer(tiny, replace(m, arch="densenet201"), cfg)


def test_learn_gives_a_densenet_with_finite_weights_and_history(tiny_model):
    m = tiny_model
    assert m.n_out == 1 and m.arch == "densenet201"
    assert all(torch.isfinite(v.float()).all() for v in m.state_dict.values())
    assert [h["epoch"] for h in m.history] == [0, 1]
    assert np.isfinite(m.history[0]["valid_loss"]) and m.fit_info["n_train"] + m.fit_info["n_valid"] == 16


def test_predict_shapes_and_range(tiny, tiny_model):
    p = predict(tiny, tiny_model, CFG)
    assert p.shape == (16,) and np.all((p >= 0) & (p <= 1))
    assert predict(tiny.images[0], tiny_model, CFG).shape == (1,)


def test_transfer_starts_from_the_given_weights(tiny, tiny_model):
    cfg0 = TrainConfig(epochs=1, patience=1, batch_size=8, valid_frac=0.25, lr=1e-12, device="cpu")
    m = transfer(tiny, tiny_model, cfg0, seed=1)  # a vanishing learning rate: weights barely move
    k = "0.0.conv0.weight"
    assert torch.allclose(m.state_dict[k], tiny_model.state_dict[k], atol=1e-6)
    fresh = learn(tiny, cfg0, seed=1)
    assert not torch.allclose(fresh.state_dict[k], tiny_model.state_dict[k])


def test_same_seed_same_model(tiny):
    a, b = learn(tiny, CFG, seed=3), learn(tiny, CFG, seed=3)
    assert a.history == b.history
    assert torch.equal(a.state_dict["1.8.weight"], b.state_dict["1.8.weight"])


def test_tensor_batches_are_the_batches_of_fastais_item_loader(tiny):
    """Cutting batches from tensors changes nothing but speed: same shuffle, same batches, same transforms."""
    import random
    from fastai.data.load import DataLoader
    from fastai.torch_core import TensorImage
    from lesionlib.learner import TensorBatches, _after_batch, _tensors
    x, y = _tensors(tiny.images, tiny.labels, 1, torch.device("cpu"))
    items = [(TensorImage(x[i]), y[i]) for i in range(len(x))]
    batches = []
    for make in (lambda **kw: DataLoader(items, **kw), lambda **kw: TensorBatches(x, y, **kw)):
        random.seed(5)
        torch.manual_seed(5)
        dl = make(bs=6, shuffle=True, drop_last=True, after_batch=_after_batch(True, CFG), device="cpu")
        batches.append([b for _ in range(2) for b in dl])
    assert len(batches[0]) == len(batches[1]) == 2 * (len(tiny) // 6)
    for (xa, ya), (xb, yb) in zip(*batches):
        assert type(xa) is type(xb) and xa.shape == xb.shape == (6, 3, 32, 32)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_runs_thread_count_not_the_processs_decides_its_bits(tiny):
    """The thread count a run names is the one it trains with, whatever the process's own count (a notebook
    with two threads, a Dask worker with one): the same spec gives the same model in both."""
    from dataclasses import replace
    cfg = replace(CFG, threads=1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = learn(tiny, cfg, seed=4)
        torch.set_num_threads(1)
        b = learn(tiny, cfg, seed=4)
    finally:
        torch.set_num_threads(before)
    assert a.history == b.history and torch.equal(a.state_dict["1.8.weight"], b.state_dict["1.8.weight"])


def test_gradients_flow_through_every_layer_of_the_learner_that_trains(tiny, tiny_model):
    """The learner `learn` and `transfer` fit: every parameter trainable (none frozen), and one batch's loss
    reaches each with a finite, non-zero gradient."""
    from lesionlib.learner import dataloaders, make_learner
    learner = make_learner(dataloaders(tiny, tiny, CFG), 1)
    learner.model.load_state_dict(tiny_model.state_dict)
    learner.model.train()
    xb, yb = learner.dls.train.one_batch()
    learner.loss_func(learner.model(xb), yb).backward()
    params = dict(learner.model.named_parameters())
    assert all(p.requires_grad for p in params.values())
    missing = [n for n, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()]
    assert not missing, missing[:5]


def test_the_weights_kept_are_exactly_those_of_the_best_epoch(tiny, monkeypatch):
    """Early stopping monitors the validation loss after each epoch (not the starting weights, as Keras'
    EarlyStopping); the model returned holds the weights of the epoch with the lowest one, bit for bit."""
    from lesionlib import learner as L
    snapshots = {}

    class Spy(L.KeepBestWeights):
        def after_epoch(self):
            super().after_epoch()
            snapshots[self.epoch + 1] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    monkeypatch.setattr(L, "KeepBestWeights", Spy)
    cfg = TrainConfig(epochs=4, patience=4, batch_size=8, valid_frac=0.25, lr=3e-3, device="cpu")
    m = learn(tiny, cfg, seed=0)
    losses = [h["valid_loss"] for h in m.history[1:]]
    best = m.fit_info["best_epoch"]
    assert sorted(snapshots) == [1, 2, 3, 4] and best == 1 + int(np.argmin(losses))
    assert best != 4, "choose a seed whose best epoch is not the last, so the test can tell them apart"
    assert all(torch.equal(m.state_dict[k], snapshots[best][k]) for k in m.state_dict)
    assert not all(torch.equal(m.state_dict[k], snapshots[4][k]) for k in m.state_dict)


def test_generic_pretraining_has_many_classes_and_transfers_its_body(tiny):
    crops = natural_crops(30, 32, seed=0)
    assert crops.n_classes == 15 and crops.images.shape == (30, 32, 32)
    g = learn(crops, CFG, seed=0)
    assert g.n_out == 15
    m = transfer(tiny, g, TrainConfig(epochs=1, patience=1, batch_size=8, lr=1e-12, device="cpu"), seed=0)
    assert m.n_out == 1 and torch.allclose(m.state_dict["0.0.conv0.weight"], g.state_dict["0.0.conv0.weight"], atol=1e-6)


def test_augmentation_keeps_shape_and_changes_pixels():
    from fastai.torch_core import TensorImage
    x = TensorImage(torch.rand(4, 1, 32, 32))
    tfm = augmentations(CFG)[0]
    y = tfm(x, split_idx=0)
    assert y.shape == x.shape and not torch.allclose(y, x)
    assert shift_mat(x).shape == vflip_mat(x).shape == (4, 3, 3)


def test_one_class_training_set_is_refused():
    ds = build_lesions("phantom", "lung", n=8, image_size=32, slice_size=64, malignant_fraction=1.0)
    with pytest.raises(ValueError, match="one class only"):
        learn(ds, CFG)


def test_user_weights_file_is_shape_checked(tmp_path, tiny_model):
    good = tmp_path / "good.pt"
    torch.save(tiny_model.state_dict, good)
    assert file_model(good).state_dict["0.0.conv0.weight"].shape == (64, 3, 7, 7)
    bad = tmp_path / "bad.pt"
    torch.save({"0.conv0.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(GenericWeightsError, match="not a DenseNet-201 state dict"):
        file_model(bad)
    with pytest.raises(GenericWeightsError, match="does not exist"):
        file_model(tmp_path / "missing.pt")


def test_torchvision_layout_weights_load_into_the_body(tmp_path):
    from torchvision.models import densenet201
    tv = densenet201()
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    m = file_model(path)
    assert torch.equal(m.state_dict["0.0.conv0.weight"], tv.state_dict()["features.conv0.weight"])


def test_predict_equals_sigmoid_of_a_plain_forward_pass(tiny, tiny_model):
    # Guards against applying the activation twice (fastai's get_preds already applies sigmoid).
    from fastai.vision.core import imagenet_stats
    from fastai.vision.learner import create_vision_model
    from torchvision.models import densenet201
    model = create_vision_model(densenet201, 1, pretrained=False)
    model.load_state_dict(tiny_model.state_dict)
    model.eval()
    x = torch.from_numpy(tiny.images[:4]).unsqueeze(1).expand(-1, 3, -1, -1)
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in imagenet_stats)
    with torch.no_grad():
        expected = torch.sigmoid(model((x - mean) / std)).view(-1).numpy()
    assert np.allclose(predict(tiny.subset(range(4)), tiny_model, CFG), expected, atol=1e-5)


def test_weight_statistics_init_keeps_each_tensors_mean_and_variance_only(tiny_model):
    import torch
    from lesionlib.learner import moment_matched
    m = moment_matched(tiny_model, seed=3)
    assert m.state_dict.keys() == tiny_model.state_dict.keys() and m.n_out == tiny_model.n_out
    checked = 0
    for k, v in tiny_model.state_dict.items():
        w = m.state_dict[k]
        assert w.shape == v.shape and w.dtype == v.dtype and torch.isfinite(w.float()).all()
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):  # the data's statistics: reset
            assert torch.equal(w, torch.zeros_like(v) if not k.endswith("running_var") else torch.ones_like(v))
        elif v.is_floating_point() and v.numel() >= 1000:
            v64, w64 = v.double().flatten(), w.double().flatten()
            assert abs(w64.mean() - v64.mean()) < 0.1 * v64.std() + 1e-6, k
            assert abs(w64.std() / v64.std() - 1) < 0.1, k
            assert abs(torch.corrcoef(torch.stack([v64, w64]))[0, 1]) < 0.1, k  # no feature is kept
            checked += 1
    assert checked > 100  # DenseNet-201 has hundreds of such tensors
    assert torch.equal(moment_matched(tiny_model, 3).state_dict["0.0.conv0.weight"], m.state_dict["0.0.conv0.weight"])


# --- min_steps: a minimum budget in gradient steps -------------------------------------------------------------

SMALL = TrainConfig(arch="test_densenet", epochs=2, patience=1, batch_size=8, valid_frac=0.25, lr=3e-3, device="cpu")


def _stop_epoch(history, patience, min_steps, steps_per_epoch, cap):
    """The epoch fastai's early stopping, held off until `min_steps` updates, ends a fit on `history` at."""
    best, wait = float("inf"), 0
    for h in history[1:]:
        if h["valid_loss"] < best:
            best, wait = h["valid_loss"], 0
        else:
            wait += 1
        if wait >= patience and h["epoch"] * steps_per_epoch >= min_steps:
            return h["epoch"]
    return cap


def test_min_steps_raises_the_epoch_cap_to_the_steps_it_needs(tiny):
    """12 training lesions in batches of 8: 1 step per epoch, so 2 epochs are 2 steps; min_steps=7 makes it
    7 epochs (7 steps); in batches of 4 (3 steps per epoch) ceil(7 / 3) = 3 epochs, 9 steps."""
    import math
    from dataclasses import replace
    m = learn(tiny, replace(SMALL, lr=1e-4, min_steps=7), seed=0)
    f = m.fit_info
    assert f["steps_per_epoch"] == 1 and f["steps"] >= 7 and f["epochs_run"] == f["epoch_cap"] == 7
    assert len(m.history) == 1 + f["epochs_run"]
    m4 = learn(tiny, replace(SMALL, lr=1e-4, batch_size=4, min_steps=7), seed=0)
    f = m4.fit_info
    assert f["steps_per_epoch"] > 1 and f["epoch_cap"] == max(SMALL.epochs, math.ceil(7 / f["steps_per_epoch"]))
    assert f["steps"] == f["steps_per_epoch"] * f["epochs_run"] >= 7
    assert learn(tiny, replace(SMALL, lr=1e-4, min_steps=0), seed=0).fit_info["steps"] <= SMALL.epochs


def test_early_stopping_never_ends_a_fit_before_min_steps(tiny):
    """At lr 3e-3 the validation loss soon rises, so fastai's early stopping ends the fit after a few of its
    8 epochs. With min_steps 3 steps beyond that point, the same fit (same losses up to there) goes on to
    min_steps at least, then stops as soon as patience is out; every trained epoch still competes for the
    weights kept."""
    from dataclasses import replace
    cfg = replace(SMALL, epochs=8)
    a, seed = next((m, s) for s in range(8) if (m := learn(tiny, cfg, seed=s)).fit_info["epochs_run"] <= 4)
    stop = a.fit_info["epochs_run"]  # one step per epoch: `stop` steps
    b = learn(tiny, replace(cfg, min_steps=stop + 3), seed=seed)
    f = b.fit_info
    assert f["steps_per_epoch"] == 1 and f["steps"] >= stop + 3 and f["epoch_cap"] == 8
    assert b.history[:stop + 1] == a.history  # the same fit until fastai's rule would have stopped it
    assert f["epochs_run"] == _stop_epoch(b.history, cfg.patience, stop + 3, 1, f["epoch_cap"])
    best = 1 + int(np.argmin([h["valid_loss"] for h in b.history[1:]]))
    assert f["best_epoch"] == best  # all trained epochs compete, those before min_steps included


def test_min_steps_zero_is_fastais_early_stopping_exactly(tiny, monkeypatch):
    """min_steps = 0 (and any min_steps the epochs reach anyway) trains bit for bit as fastai's own
    EarlyStoppingCallback did before min_steps existed."""
    from dataclasses import replace

    from fastai.callback.tracker import EarlyStoppingCallback
    from lesionlib import learner as L
    cfg = replace(SMALL, epochs=8)
    ours = [learn(tiny, replace(cfg, min_steps=k), seed=s) for k, s in ((0, 2), (2, 2), (0, 0))]

    class Plain(EarlyStoppingCallback):  # what _fit passed to learner.fit before min_steps
        def __init__(self, monitor, patience, min_steps):
            super().__init__(monitor=monitor, patience=patience)

    monkeypatch.setattr(L, "EarlyStopping", Plain)
    plain = [learn(tiny, replace(cfg, min_steps=k), seed=s) for k, s in ((0, 2), (2, 2), (0, 0))]
    for m, p in zip(ours, plain):
        assert m.history == p.history and m.fit_info["steps"] == p.fit_info["steps"]
        assert all(torch.equal(m.state_dict[k], p.state_dict[k]) for k in m.state_dict)
