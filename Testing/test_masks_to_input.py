"""Masks carried back to the input grid as the bits of one image give the voxels each mask's own
nearest-neighbour resampling gives (the pipeline's gate and core masks, resampled once)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.geometry import Geometry, Grid, axis_aligned_grid


def _oblique_input() -> Grid:
    angle = np.radians(17.0)
    c, s = np.cos(angle), np.sin(angle)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    return Grid((41, 37, 13), (0.9, 1.1, 3.0), (-12.0, 5.5, -20.0), direction)


@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_packed_masks_equal_one_resampling_each(count):
    input_grid = _oblique_input()
    ref = sitk.Image(list(input_grid.size_xyz), sitk.sitkUInt8)
    model = axis_aligned_grid(input_grid.apply_to(ref), (0.833, 0.833, 0.833))
    model = model.crop((3, 2, 1), [n - 6 for n in model.size_xyz])
    geometry = Geometry(input_grid, model)
    rng = np.random.default_rng(count)
    masks = [rng.random(model.size_xyz[::-1]) < p for p in np.linspace(0.1, 0.9, count)]
    masks[0][:] = False
    masks[0][5:-5, 5:-5, 5:-5] = True  # one solid box among the noise
    packed = geometry.masks_to_input(*masks)
    assert len(packed) == count
    for mask, image in zip(masks, packed, strict=True):
        alone = geometry.to_input(mask.astype(np.uint8), linear=False)
        assert image.GetPixelID() == alone.GetPixelID() == sitk.sitkUInt8
        assert image.GetSize() == alone.GetSize()
        assert image.GetOrigin() == alone.GetOrigin() and image.GetSpacing() == alone.GetSpacing()
        assert image.GetDirection() == alone.GetDirection()
        assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(alone))
    assert sitk.GetArrayViewFromImage(packed[0]).any()


def test_mask_count_is_checked():
    grid = Grid((4, 4, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    geometry = Geometry(grid, grid)
    with pytest.raises(ValueError, match="1 to 8"):
        geometry.masks_to_input()
    with pytest.raises(ValueError, match="1 to 8"):
        geometry.masks_to_input(*[np.zeros((4, 4, 4), bool)] * 9)
