"""The model grid and the way back to the input's geometry.

Inputs arrive in any orientation, spacing and direction (oblique included). The
network works on an axis-aligned grid in LPS (identity direction) at the model's
spacing that covers the input's physical extent. One linear resampling brings an
image there; :class:`Geometry` records the input geometry, the grid and the crop,
so probabilities can be resampled back onto the input voxels.

Arrays are (k, j, i) = (Z, Y, X); sizes and indices in ``*_xyz`` names are (x, y, z).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Grid:
    """An image grid: size (x, y, z voxels), spacing (mm), origin (LPS mm), direction (row-major 3x3)."""

    size_xyz: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @classmethod
    def of(cls, image: sitk.Image) -> Grid:
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing_xyz)
        image.SetOrigin(self.origin_lps)
        image.SetDirection(self.direction)
        return image

    def image_from_array(self, array_zyx: np.ndarray) -> sitk.Image:
        """Wrap a (Z, Y, X) array as an image on this grid."""
        assert array_zyx.shape == self.size_xyz[::-1], (array_zyx.shape, self.size_xyz)
        return self.apply_to(sitk.GetImageFromArray(array_zyx))

    def corners_lps(self) -> np.ndarray:
        """The 8 outer corners of the voxel extent (half a voxel beyond the centres), LPS mm, (8, 3)."""
        d = np.reshape(self.direction, (3, 3))
        sp, size = np.asarray(self.spacing_xyz), np.asarray(self.size_xyz)
        idx = np.array(list(itertools.product(*[(-0.5, s - 0.5) for s in size])))
        return np.asarray(self.origin_lps) + (idx * sp) @ d.T

    def shifted(self, offset_vox_xyz) -> Grid:
        """The same grid moved by ``offset_vox_xyz`` voxels (x, y, z; fractions allowed) along its axes."""
        d = np.reshape(self.direction, (3, 3))
        move = d @ (np.asarray(offset_vox_xyz, float) * np.asarray(self.spacing_xyz))
        return Grid(self.size_xyz, self.spacing_xyz, tuple((np.asarray(self.origin_lps) + move).tolist()),
                    self.direction)

    def crop(self, start_xyz, size_xyz) -> Grid:
        """The sub-grid starting at voxel ``start_xyz`` with ``size_xyz`` voxels."""
        d = np.reshape(self.direction, (3, 3))
        origin = np.asarray(self.origin_lps) + d @ (np.asarray(start_xyz) * np.asarray(self.spacing_xyz))
        return Grid(tuple(int(s) for s in size_xyz), self.spacing_xyz, tuple(origin.tolist()), self.direction)


def covering_grid(corners_lps: np.ndarray, spacing_xyz, direction=None) -> Grid:
    """Grid with ``direction`` (row-major 3x3, default identity) at ``spacing_xyz`` (mm) whose
    voxel extent covers the points ``corners_lps`` (n, 3), LPS mm."""
    d = np.eye(3) if direction is None else np.reshape(direction, (3, 3))
    local = np.asarray(corners_lps) @ d  # coordinates along the grid's axes
    low, high = local.min(axis=0), local.max(axis=0)
    spacing = np.asarray(spacing_xyz, dtype=float)
    size = np.maximum(np.round((high - low) / spacing).astype(int), 1)
    origin = d @ (low + spacing / 2)
    return Grid(tuple(int(s) for s in size), tuple(spacing.tolist()), tuple(origin.tolist()),
                tuple(float(v) for v in d.ravel()))


def axis_aligned_grid(image: sitk.Image, spacing_xyz) -> Grid:
    """Identity-direction LPS grid at ``spacing_xyz`` (mm) covering ``image``'s physical extent."""
    return covering_grid(Grid.of(image).corners_lps(), spacing_xyz)


def nearest_axes_direction(direction) -> np.ndarray:
    """The input's own axes (row-major 3x3 ``direction``), reordered and signed so they are as
    close as possible to L, P, S: a grid with this direction holds the scan's voxels' own
    planes (oblique ones included) in an LPS-like array order."""
    d = np.reshape(direction, (3, 3))
    out = np.zeros((3, 3))
    used: set[int] = set()
    for lps_axis in np.argsort(-np.abs(d).max(axis=1)):  # most decided LPS axis first
        col = max((c for c in range(3) if c not in used), key=lambda c: abs(d[lps_axis, c]))
        used.add(col)
        out[:, lps_axis] = d[:, col] * np.sign(d[lps_axis, col])
    return out


def obliquity_deg(direction) -> float:
    """Largest angle (degrees) between an image axis and the nearest of L, P, S."""
    d = np.abs(np.reshape(direction, (3, 3)))
    return float(np.degrees(np.arccos(np.clip(d.max(axis=0), -1.0, 1.0))).max())


def field_of_view_mask(input_grid: Grid, grid: Grid) -> np.ndarray:
    """(Z, Y, X) bool on ``grid``: voxel centres inside ``input_grid``'s voxel extent, i.e. where
    the scanner measured something. Elsewhere resampling only filled in zeros."""
    ones = input_grid.image_from_array(np.ones(input_grid.size_xyz[::-1], np.uint8))
    on_grid = resample(ones, grid, linear=False)  # kept alive while its buffer is viewed
    return sitk.GetArrayViewFromImage(on_grid) > 0


def resample(image: sitk.Image, grid: Grid, linear: bool = True, default: float = 0.0,
             pixel_type: int | None = None) -> sitk.Image:
    """Resample ``image`` onto ``grid``: linear for intensities, nearest for labels."""
    f = sitk.ResampleImageFilter()
    f.SetSize(grid.size_xyz)
    f.SetOutputSpacing(grid.spacing_xyz)
    f.SetOutputOrigin(grid.origin_lps)
    f.SetOutputDirection(grid.direction)
    f.SetInterpolator(sitk.sitkLinear if linear else sitk.sitkNearestNeighbor)
    f.SetDefaultPixelValue(default)
    f.SetOutputPixelType(image.GetPixelID() if pixel_type is None else pixel_type)
    return f.Execute(image)


@dataclass(frozen=True)
class Geometry:
    """How a case went from the input grid to the network's cropped grid, and back.

    input_grid: the CE-T1's own grid (outputs are written on it).
    model_grid: the cropped, axis-aligned grid at the model's spacing the arrays live on.
    """

    input_grid: Grid
    model_grid: Grid

    def to_model_grid(self, image: sitk.Image, linear: bool = False) -> np.ndarray:
        """``image`` (in physical space, e.g. a label map on the input grid) as a (Z, Y, X)
        array on the model grid; nearest neighbour (labels) unless ``linear``."""
        out = resample(image, self.model_grid, linear=linear)
        return sitk.GetArrayFromImage(out)

    def to_input(self, array_zyx: np.ndarray, linear: bool = True) -> sitk.Image:
        """A (Z, Y, X) array on the model grid resampled onto the input grid (0 outside)."""
        image = self.model_grid.image_from_array(np.ascontiguousarray(array_zyx))
        return resample(image, self.input_grid, linear=linear)

    def masks_to_input(self, *masks_zyx: np.ndarray) -> list[sitk.Image]:
        """Up to 8 (Z, Y, X) bool masks on the model grid as uint8 0/1 images on the input grid,
        the same voxels as ``to_input(mask.astype(np.uint8), linear=False)`` of each: nearest
        neighbour picks one model voxel per input voxel, the same for every mask, so the masks
        travel as the bits of one uint8 image and are resampled once."""
        if not 1 <= len(masks_zyx) <= 8:
            raise ValueError(f"masks_to_input takes 1 to 8 masks, not {len(masks_zyx)}")
        packed = np.zeros(masks_zyx[0].shape, np.uint8)
        for bit, mask in enumerate(masks_zyx):
            packed |= mask.astype(np.uint8) << bit
        codes = self.to_input(packed, linear=False)
        values = sitk.GetArrayViewFromImage(codes)
        out = []
        for bit in range(len(masks_zyx)):
            image = sitk.GetImageFromArray((values >> bit) & 1)
            image.CopyInformation(codes)
            out.append(image)
        return out
