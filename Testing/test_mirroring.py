"""Test-time mirroring (--mirror): logits averaged over flipped passes, recorded, and a setting
that follow-up comparisons check."""

import numpy as np
import pytest
import torch

from BrainMetSegLib.architectures import build_network
from BrainMetSegLib.errors import OptionError
from BrainMetSegLib.inference import InferenceConfig, predict
from BrainMetSegLib.longitudinal.consistency import LESION_SETTINGS
from BrainMetSegLib.mirroring import mirror_sets
from BrainMetSegLib.pipeline import SegmentConfig


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return build_network("BasicUNet", 1, 1, {"features": [4, 4, 8, 8, 16, 4]}).eval()


def test_mirror_sets_are_every_flip_combination():
    assert mirror_sets("none") == [()]
    assert mirror_sets("lr") == [(), (4,)]  # X of a (B, C, Z, Y, X) tensor: left-right in LPS
    sets = mirror_sets("all")
    assert len(sets) == 8 and len(set(sets)) == 8 and () in sets and (2, 3, 4) in sets


def _array():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 16, 16, 32)).astype(np.float32)
    x[0, 4:9, 5:11, 3:12] += 3.0  # an asymmetric bright blob: flipping changes what the net sees
    return x


def test_mirrored_prediction_is_the_mean_of_the_flipped_logits(unet):
    x = _array()
    config = dict(device="cpu", backend="torch", mode="whole", precision="fp32", size_divisor=16,
                  patch_size=(16, 16, 16))  # one forward of exactly the array: no padding
    info: dict = {}
    plain = predict(unet, x, InferenceConfig(**config))
    lr = predict(unet, x, InferenceConfig(**config, mirror="lr"), info=info)
    with torch.no_grad():
        t = torch.from_numpy(x)[None]
        expected = torch.sigmoid((unet(t) + torch.flip(unet(torch.flip(t, (4,))), (4,))) / 2)[0, 0].numpy()
    np.testing.assert_allclose(lr, expected, atol=1e-5)
    assert np.abs(lr - plain).max() > 1e-3  # the random net is not left-right symmetric
    assert info["mirror"] == {"mode": "lr", "axes_zyx": [2], "forwards_per_window": 2}
    # a left-right symmetric input: the flipped pass of a symmetric scan is the scan
    sym = np.concatenate([x[..., :16], x[..., :16][..., ::-1]], axis=-1)
    both = predict(unet, sym, InferenceConfig(**config, mirror="lr"))
    np.testing.assert_allclose(both, both[..., ::-1], atol=1e-5)


def test_mirror_is_checked_and_a_lesion_setting():
    assert SegmentConfig(mirror="all").mirror == "all"
    with pytest.raises(OptionError, match="--mirror"):
        SegmentConfig(mirror="lrud")
    assert "mirror" in LESION_SETTINGS  # compare refuses time points segmented with and without it


def test_mirror_is_refused_for_a_network_that_tiles_itself():
    """An imported model's own predictor (nnU-Net tiling) mirrors per its card: --mirror would be
    silently ignored there, so it is refused."""

    class Tiles(torch.nn.Module):
        def predict_volume(self, array, device, progress, cancel):
            return np.zeros(array.shape[1:], np.float32)

    x = _array()
    assert predict(Tiles(), x, InferenceConfig(device="cpu")).shape == x.shape[1:]
    with pytest.raises(OptionError, match="--mirror"):
        predict(Tiles(), x, InferenceConfig(device="cpu", mirror="lr"))
