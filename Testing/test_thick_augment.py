"""The thick-slice augmentation: a patch re-acquired as 2D slabs, back on its own grid."""

import numpy as np
import pytest

from BrainMetSegLib.train.augment import AugmentConfig, RandThickSlicesd, augment_transform, slab_profile


def test_slabs_keep_mass_and_linear_ramps():
    impulse = np.zeros((40, 3, 3), np.float32)
    impulse[17] = 1.0
    out = slab_profile(impulse, 0, 6.0, 3.0)   # slice centres 3, 9, 15, 21, ...: 17 in slab 15
    # One slice holds the impulse at 1/6 and interpolation spreads it over two slices' span.
    assert out[:, 0, 0].max() == pytest.approx(1 / 6, abs=1e-6)
    assert out[:, 0, 0].sum() == pytest.approx(1.0, abs=1e-5)
    ramp = np.broadcast_to(np.arange(30, dtype=np.float32)[None, :, None], (4, 30, 4))
    out = slab_profile(ramp, 1, 3.0, 1.0)
    # Interior voxels between the first and last slice centre (1 and 28) are exact.
    assert np.allclose(out[:, 1:29, :], ramp[:, 1:29, :], atol=1e-4)


def test_thin_structures_fade_with_thickness():
    disc = np.zeros((48, 8, 8), np.float32)
    disc[23:26] = 1.0                      # a 3-voxel-thin bright layer
    peaks = [slab_profile(disc, 0, w, 0.0).max() for w in (2.0, 4.0, 8.0)]
    assert peaks[0] > peaks[1] > peaks[2] >= 3 / 8 - 1e-6


def test_transform_changes_the_image_only():
    rng = np.random.default_rng(0)
    data = {"image": rng.random((1, 32, 32, 32), dtype=np.float32),
            "label": (rng.random((1, 32, 32, 32)) > 0.9).astype(np.float32)}
    t = RandThickSlicesd("image", 1.0, (5.0, 5.0), (0.833, 0.833, 0.833), (1, 0, 0))
    t.set_random_state(seed=3)
    out = t(data)
    assert out["label"] is data["label"]
    assert not np.allclose(out["image"], data["image"])
    # Axial slabs: each in-plane image is a blend of the two nearest slab means, so the
    # variation along Z drops while in-plane variation stays.
    assert np.std(np.diff(out["image"][0], axis=0)) < 0.5 * np.std(np.diff(out["image"][0], axis=2))
    never = RandThickSlicesd("image", 0.0, (5.0, 5.0), (1, 1, 1))
    assert np.array_equal(never(data)["image"], data["image"])


def test_recipe_adds_the_step_only_when_asked():
    names = [type(s).__name__ for s in augment_transform(AugmentConfig()).transforms]
    assert "RandThickSlicesd" not in names
    names = [type(s).__name__ for s in augment_transform(AugmentConfig(thick_prob=0.5), (1, 1, 1)).transforms]
    assert "RandThickSlicesd" in names


def test_train_command_refuses_a_bad_thickness(tmp_path, capsys):
    from BrainMetSegLib.cli import main

    rc = main(["train", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "out"), "--thick-prob", "0.5",
               "--thick-mm", "7", "3"])
    assert rc != 0
    assert "--thick-mm" in capsys.readouterr().err
