"""The generic model G = Learn(d_g) that LesAgn and LesAug start from.

* ``imagenet``      -- torchvision's DEFAULT DenseNet-201 weights, read from the torch hub cache
                       (downloaded there when the machine is online).
* ``natural-crops`` -- an offline, lesion-agnostic stand-in: DenseNet-201 trained once to tell apart
                       random crops of the natural photographs shipped with scikit-image.
* a file path       -- any DenseNet-201 state dict (torchvision or lesionlib layout), e.g.
                       medical-domain weights.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from skimage import color, data
from skimage.transform import resize

from .data.lesions import LesionSet

if TYPE_CHECKING:  # fastai loads only where G is built: the pages that call `label` never need it
    from .learner import Model

GENERIC_NAMES = ("imagenet", "natural-crops")

# Natural photographs bundled with scikit-image (no download); microscopy and medical images excluded.
NATURAL_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "page", "text",
                  "grass", "gravel", "brick", "horse", "clock", "hubble_deep_field")


class GenericWeightsError(RuntimeError):
    """Generic weights that cannot be found, downloaded or used."""


def label(name: str) -> str:
    """One line for provenance boxes: which G a page used."""
    if name == "imagenet":
        return "ImageNet (torchvision DenseNet201_Weights.DEFAULT)"
    if name == "natural-crops":
        return "natural-crops (offline stand-in: the profile's network pretrained on scikit-image photographs)"
    return f"user weights from {name}"


# --- ImageNet through the torch hub cache ------------------------------------------------------

def imagenet_file() -> Path:
    """Where torch hub keeps torchvision's DenseNet-201 ImageNet weights."""
    from torchvision.models import DenseNet201_Weights

    url = DenseNet201_Weights.DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _torchvision_to_lesionlib(sd: dict) -> dict:
    """Rename a torchvision DenseNet-201 state dict ('features.*') to the learner's body ('0.0.*')."""
    import re

    # Old torchvision checkpoints name layers 'norm.1'; today's modules call them 'norm1'.
    pat = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    out = {}
    for k, v in sd.items():
        m = pat.match(k)
        if m:
            k = m.group(1) + m.group(2)
        if k.startswith("features."):
            out["0.0." + k[len("features."):]] = v  # model[0] = body = Sequential(features)
    return out


def imagenet_model() -> Model:
    """G = ImageNet DenseNet-201; one clear error when the weights are absent and cannot be fetched."""
    from torchvision.models import DenseNet201_Weights

    from .learner import Model

    path = imagenet_file()
    if not path.is_file():
        try:
            torch.hub.load_state_dict_from_url(DenseNet201_Weights.DEFAULT.url, progress=False, check_hash=True)
        except Exception as err:  # offline, proxy, hash mismatch
            raise GenericWeightsError(
                f"ImageNet weights for DenseNet-201 are not in the torch hub cache and could not be downloaded "
                f"({type(err).__name__}: {err}). Put the file {path.name} (from {DenseNet201_Weights.DEFAULT.url}) "
                f"into {path.parent}, or set TORCH_HOME, or use generic: natural-crops.") from None
    prefix = path.name.rsplit("-", 1)[-1].split(".")[0]  # torchvision names files <name>-<sha256 prefix>.pth
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(prefix):
        raise GenericWeightsError(f"{path} is corrupt: its SHA-256 starts {digest[:8]}, expected {prefix}; delete it "
                                  "and download again")
    return Model(_torchvision_to_lesionlib(torch.load(path, map_location="cpu", weights_only=True)), n_out=1000)


# --- a user-supplied DenseNet-201 state dict ---------------------------------------------------

def file_model(path) -> Model:
    """G from a state-dict file, checked against DenseNet-201's body shapes."""
    from torchvision.models import densenet201

    from .learner import Model

    path = Path(path)
    if not path.is_file():
        raise GenericWeightsError(f"generic weights file {path} does not exist; give 'imagenet', 'natural-crops' "
                                  "or the path of a DenseNet-201 state dict")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise GenericWeightsError(f"cannot read {path} as a PyTorch state dict ({type(err).__name__}: {err})") from None
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise GenericWeightsError(f"{path} holds a {type(sd).__name__}, not a state dict (a mapping of parameter "
                                  "names to tensors); save one with torch.save(model.state_dict(), path)")
    body = _torchvision_to_lesionlib(sd) if any(k.startswith("features.") for k in sd) else \
        {k: v for k, v in sd.items() if k.startswith("0.")}
    ref = {"0.0." + k[len("features."):]: v.shape for k, v in densenet201().state_dict().items()
           if k.startswith("features.")}
    missing = sorted(set(ref) - set(body))
    bad = [k for k in ref if k in body and tuple(body[k].shape) != tuple(ref[k])]
    if missing or bad:
        what = f"{len(missing)} missing tensors (e.g. {missing[:2]})" if missing else \
            f"{len(bad)} tensors of the wrong shape (e.g. {bad[0]}: {tuple(body[bad[0]].shape)} vs {tuple(ref[bad[0]])})"
        raise GenericWeightsError(f"{path} is not a DenseNet-201 state dict: {what}")
    head = {k: v for k, v in sd.items() if k.startswith("1.")}
    n_out = int(head[max(k for k in head if k.endswith("weight"))].shape[0]) if head else 0
    return Model({**body, **head}, n_out=n_out or -1)


# --- the offline stand-in: natural-crops -------------------------------------------------------

def _photo(name: str) -> np.ndarray:
    img = getattr(data, name)()
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    img = img.astype(np.float32)
    return (img - img.min()) / max(float(img.max() - img.min()), 1e-6)


def natural_crops(n: int, image_size: int, seed: int = 0) -> LesionSet:
    """`n` random square crops (side 12-50 % of the photo) of scikit-image photos, labelled by photo."""
    rng = np.random.default_rng(seed)
    photos = [_photo(p) for p in NATURAL_PHOTOS]
    images, labels = [], []
    for i in range(n):
        k = i % len(photos)
        img = photos[k]
        side = int(rng.uniform(0.12, 0.5) * min(img.shape))
        y, x = rng.integers(0, img.shape[0] - side + 1), rng.integers(0, img.shape[1] - side + 1)
        images.append(resize(img[y:y + side, x:x + side], (image_size, image_size), anti_aliasing=True))
        labels.append(k)
    ids = np.array([f"natural-{seed}-{i:06d}" for i in range(n)])
    return LesionSet(np.stack(images).astype(np.float32), np.zeros((n, image_size, image_size), bool),
                     np.asarray(labels, dtype=np.int64), ids.copy(), ids, "natural", "natural-crops")
