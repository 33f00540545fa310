"""Rigid registration of a follow-up scan onto the baseline, and moving label maps with it.

The library's registration (:func:`BrainMetSegLib.coregister.register_rigid`: Mattes mutual
information, Euler 3D, multi-resolution) is used as is; this module adds what a follow-up needs:
the overlap check, label maps resampled onto the baseline grid (nearest neighbour only) and
points (LPS mm) carried from the follow-up into baseline space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..coregister import overlap_fraction, register_rigid
from ..errors import InputError


@dataclass
class Registration:
    """transform maps baseline physical points (LPS mm) to follow-up physical points (as ITK's
    registration returns it: resampling the follow-up with it puts it on the baseline grid)."""

    transform: sitk.Transform
    metric: float | None = None

    def followup_to_baseline_lps(self, points_lps: np.ndarray) -> np.ndarray:
        """(N, 3) follow-up LPS points (mm) -> baseline LPS points (mm)."""
        inverse = self.transform.GetInverse()
        return np.array([inverse.TransformPoint(tuple(float(v) for v in p)) for p in np.atleast_2d(points_lps)])

    def labels_on_baseline(self, labels: sitk.Image, baseline: sitk.Image) -> sitk.Image:
        """A follow-up label map resampled (nearest neighbour) onto the baseline's grid."""
        return sitk.Resample(labels, baseline, self.transform, sitk.sitkNearestNeighbor, 0, labels.GetPixelID())

    def image_on_baseline(self, image: sitk.Image, baseline: sitk.Image) -> sitk.Image:
        """A follow-up image resampled (linear) onto the baseline's grid (float32)."""
        return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), baseline, self.transform, sitk.sitkLinear, 0.0)


def _index_to_physical(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(3x3 matrix, origin): LPS mm = matrix @ (i, j, k) + origin."""
    matrix = np.array(image.GetDirection(), float).reshape(3, 3) * np.array(image.GetSpacing(), float)
    return matrix, np.array(image.GetOrigin(), float)


def extent_inside(voxels: np.ndarray, baseline: sitk.Image, followup: sitk.Image, registration: Registration,
                  margin_mm: float = 0.0) -> bool:
    """Whether a lesion extent on the baseline grid (flat voxel indices, z-y-x order) lies wholly
    inside the follow-up's field of view once carried there by ``registration`` (each voxel centre
    at least ``margin_mm`` inside the follow-up's outer voxel faces). An empty extent is inside."""
    if voxels.size == 0:
        return True
    kji = np.array(np.unravel_index(voxels, baseline.GetSize()[::-1]), float)
    m_b, o_b = _index_to_physical(baseline)
    points = (m_b @ kji[::-1]).T + o_b  # (N, 3) baseline LPS
    probe = np.vstack([np.zeros(3), np.eye(3)]) * 100.0  # the rigid transform as an affine map
    mapped = np.array([registration.transform.TransformPoint(tuple(float(v) for v in p)) for p in probe])
    affine = ((mapped[1:] - mapped[0]) / 100.0).T
    on_fu = (affine @ points.T).T + mapped[0]
    m_f, o_f = _index_to_physical(followup)
    ijk = np.linalg.solve(m_f, (on_fu - o_f).T).T
    slack = 0.5 - margin_mm / np.array(followup.GetSpacing(), float)
    return bool(np.all(ijk >= -slack) and np.all(ijk <= np.array(followup.GetSize(), float) - 1 + slack))


def register_followup(baseline: sitk.Image, followup: sitk.Image, name: str = "follow-up",
                      seed: int = 0) -> Registration:
    """Rigidly register ``followup`` onto ``baseline`` (both CE-T1 images of one patient).

    Raises :class:`InputError` naming ``name`` when the two scans do not overlap in physical
    space (not the same patient, or a broken header).
    """
    if overlap_fraction(baseline, followup) < 0.2:
        raise InputError(f"{name}: the scan does not overlap the baseline in physical space; are both "
                         "scans of the same patient with intact headers?")
    transform = register_rigid(baseline, followup, seed=seed)
    return Registration(transform=as_euler(transform))


def as_euler(transform: sitk.Transform) -> sitk.Euler3DTransform:
    """The rigid transform ITK's registration returns (wrapped in a composite) as an Euler3DTransform."""
    if transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        if composite.GetNumberOfTransforms() != 1:
            raise ValueError("expected a single rigid transform")
        transform = composite.GetNthTransform(0)
    return sitk.Euler3DTransform(transform)


def transform_error_mm(estimated: sitk.Transform, truth: sitk.Transform, points_lps: np.ndarray) -> np.ndarray:
    """Distance (mm) between where two transforms put each of (N, 3) LPS points."""
    a = np.array([estimated.TransformPoint(tuple(float(v) for v in p)) for p in points_lps])
    b = np.array([truth.TransformPoint(tuple(float(v) for v in p)) for p in points_lps])
    return np.linalg.norm(a - b, axis=1)


def from_description(description: dict) -> Registration:
    """A registration from :func:`describe`'s record (rigid only)."""
    if description.get("type") != "rigid":
        raise ValueError(f"cannot rebuild a {description.get('type')!r} registration from its record")
    euler = sitk.Euler3DTransform()
    euler.SetCenter(description["centre_mm_lps"])
    euler.SetRotation(*np.radians(description["rotation_deg_lps"]))
    euler.SetTranslation(description["translation_mm_lps"])
    return Registration(euler)


def describe(reg: Registration) -> dict:
    """Rotation (degrees about LPS x, y, z), translation and centre (LPS mm) of a rigid registration."""
    t = reg.transform
    if t.GetName() != "Euler3DTransform":
        return {"type": t.GetName(), "parameters": [round(float(v), 6) for v in t.GetParameters()]}
    euler = sitk.Euler3DTransform(t)
    return {"type": "rigid", "rotation_deg_lps": [round(float(np.degrees(a)), 3) for a in
                                                  (euler.GetAngleX(), euler.GetAngleY(), euler.GetAngleZ())],
            "translation_mm_lps": [round(float(v), 3) for v in euler.GetTranslation()],
            "centre_mm_lps": [round(float(v), 3) for v in euler.GetCenter()]}
