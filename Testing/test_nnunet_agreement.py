"""An imported nnU-Net model against nnU-Net itself (runs when nnunetv2 is installed).

Test data (Testing/data/nnunet_tiny, 2.5 MB): an nnU-Net v2 results folder trained HERE with
nnU-Net's own trainer on CPU (nnUNetTrainer, plans nnUNetPlansTiny: PlainConvUNet 4-8-16-32
features, patch 32^3, 3 mm; fold 0: 20 epochs x 40 iterations, fold 1: 6 x 40) on 6 synthetic
phantoms (``brainmetseg synth -n 6 --seed 11 --spacing 3 --field-of-view brain --no-skull
--isotropic-only --no-confounders --no-acquisition --lesions 6 --diameter 15 30``), and one held-out
phantom (same options, ``--seed 12345``) as input. docs/importing_models.md tells how it was made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

DATA = Path(__file__).resolve().parent / "data" / "nnunet_tiny"
RESULTS = DATA / "Dataset902_EasyPhantom" / "nnUNetTrainer__nnUNetPlansTiny__3d_fullres"
IMAGE = DATA / "phantom_seed12345_0000.nii.gz"
# (folds, test-time mirroring): the two-fold ensemble without, one fold with (8 passes per window)
CASES = [((0, 1), False), ((0,), True)]


def test_zscore_matches_nnunet_exactly():
    """nnunet-zscore(-masked) equals nnU-Net's ZScoreNormalization on its non-zero crop."""
    pytest.importorskip("nnunetv2")
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import (
        ZScoreNormalization,
    )

    from BrainMetSegLib.normalisation import native_statistics

    rng = np.random.default_rng(3)
    array = np.zeros((20, 24, 28), np.float32)
    array[3:17, 4:20, 5:25] = rng.normal(300, 40, (14, 16, 20))
    array[8:10, 10:12, 10:12] = 0  # a hole: inside nnU-Net's filled mask
    image = sitk.GetImageFromArray(array)
    for masked in (True, False):
        data, seg, bbox = crop_to_nonzero(array[None].copy())
        ref = ZScoreNormalization(use_mask_for_norm=masked, intensityproperties={},
                                  target_dtype=np.float32).run(data[0].copy(), seg[0])
        stats = native_statistics([image], "nnunet-zscore-masked" if masked else "nnunet-zscore")
        box = tuple(slice(a, b) for a, b in bbox)
        mask = sitk.GetArrayFromImage(stats.mask)[box] > 0 if stats.mask is not None else None
        ours = stats.apply(0, array[box], mask)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    pytest.importorskip("nnunetv2")
    from BrainMetSegLib.importers.nnunet import NnUNetImport, import_nnunet

    root = tmp_path_factory.mktemp("nnunet_pkgs")
    out = {}
    for folds, mirroring in CASES:
        name = f"f{''.join(map(str, folds))}_m{int(mirroring)}"
        out[folds, mirroring] = import_nnunet(NnUNetImport(
            str(RESULTS), str(root / name), folds=tuple(map(str, folds)), mirroring=mirroring))
    return out


def _nnunet_probability(folds, mirroring) -> np.ndarray:
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=False, device=torch.device("cpu"),
                                verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(RESULTS), folds, "checkpoint_final.pth")
    data, props = SimpleITKIO().read_images([str(IMAGE)])
    _, prob = predictor.predict_single_npy_array(data, props, None, None, True)
    return prob[1]  # (Z, Y, X) on the input's voxel grid, as SimpleITK reads it


@pytest.mark.parametrize("folds, mirroring", CASES)
def test_agreement_with_nnunet_predictor(imported, folds, mirroring):
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    theirs = _nnunet_probability(folds, mirroring)
    segmenter = Segmenter(SegmentConfig(device="cpu", precision="fp32", brain_mask="none"),
                          package=imported[folds, mirroring])
    ours = sitk.GetArrayFromImage(segmenter.run(str(IMAGE)).probability)
    assert ours.shape == theirs.shape
    a, b = ours > 0.5, theirs > 0.5
    agreement = float((a == b).mean())
    dice = 2 * float((a & b).sum()) / max(int(a.sum() + b.sum()), 1)
    print(f"folds {folds} mirroring {mirroring}: agreement {agreement:.5f}, Dice {dice:.4f}, "
          f"voxels {int(a.sum())}/{int(b.sum())}, max |dp| {np.abs(ours - theirs).max():.4f}")
    assert b.sum() > 100, "nnU-Net's own mask is (nearly) empty: the comparison would prove nothing"
    assert agreement >= 0.999 and dice >= 0.98
