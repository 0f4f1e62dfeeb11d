import pytest
import torch

from lesionlib import generic
from lesionlib.generic import GenericWeightsError, imagenet_file, imagenet_model


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*a, **k):
        raise OSError("network is unreachable")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    return tmp_path


def test_missing_imagenet_weights_offline_name_the_file_and_folder(hub):
    with pytest.raises(GenericWeightsError) as err:
        imagenet_model()
    msg = str(err.value)
    assert "densenet201-c1103571.pth" in msg and str(hub / "checkpoints") in msg and "natural-crops" in msg


def test_corrupt_imagenet_file_is_refused(hub):
    path = imagenet_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the weights")
    with pytest.raises(GenericWeightsError, match="is corrupt"):
        imagenet_model()


def test_old_torchvision_key_names_are_renamed():
    sd = {"features.denseblock1.denselayer1.norm.1.weight": torch.ones(1),
          "features.conv0.weight": torch.ones(1), "classifier.weight": torch.ones(1)}
    out = generic._torchvision_to_lesionlib(sd)
    assert set(out) == {"0.0.denseblock1.denselayer1.norm1.weight", "0.0.conv0.weight"}


def test_describe_names_every_kind_of_G():
    assert "ImageNet" in generic.label("imagenet")
    assert "offline stand-in" in generic.label("natural-crops")
    assert "my.pt" in generic.label("my.pt")
