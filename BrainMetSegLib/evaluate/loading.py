"""Reading one case's files for evaluation: masks (empty ones allowed) on one shared geometry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..errors import ConstantImageError, InputError
from ..images import check_label_values, read_image, same_geometry
from .pairing import CaseFiles


def read_mask(path: Path, role: str) -> sitk.Image:
    """Read a 3D label/mask image; an empty (constant) mask is valid here, unlike an image."""
    try:
        image = read_image(path, role)
    except ConstantImageError:  # an empty mask is a valid answer (no lesion)
        image = sitk.ReadImage(str(path))
    return image[:, :, :, 0] if image.GetDimension() == 4 else image


def read_label_map(path: Path, role: str) -> sitk.Image:
    """:func:`read_mask` of a label map or mask, refused when its values cannot be labels
    (:func:`~BrainMetSegLib.images.check_label_values`: a probability map, an image)."""
    image = read_mask(path, role)
    check_label_values(image, path, role)
    return image


def _check_geometry(ref: sitk.Image, ref_path: Path, other: sitk.Image, other_path: Path) -> None:
    if not same_geometry(ref, other):
        raise InputError(
            f"{other_path} and {ref_path} do not share geometry (size {other.GetSize()} vs {ref.GetSize()}, "
            f"spacing {tuple(round(s, 4) for s in other.GetSpacing())} vs "
            f"{tuple(round(s, 4) for s in ref.GetSpacing())}, or origin/direction); "
            "predictions must be in the ground truth's own geometry."
        )


@dataclass
class LoadedCase:
    gt: sitk.Image
    pred: sitk.Image
    probability: sitk.Image | None
    brain: sitk.Image | None


def load_case(files: CaseFiles) -> LoadedCase:
    """Read one case's images and check that they share the GT's geometry."""
    gt = read_label_map(files.gt, "ground-truth")
    pred = read_label_map(files.pred, "prediction")
    _check_geometry(gt, files.gt, pred, files.pred)
    prob = None
    if files.probability is not None:
        prob = sitk.Cast(read_mask(files.probability, "probability"), sitk.sitkFloat32)
        _check_geometry(gt, files.gt, prob, files.probability)
        arr = sitk.GetArrayViewFromImage(prob)
        if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
            raise InputError(f"{files.probability}: values span [{arr.min():g}, {arr.max():g}]; "
                             "a probability map in [0, 1] is needed.")
    brain = None
    if files.brain_mask is not None:
        brain = read_label_map(files.brain_mask, "brain mask")
        _check_geometry(gt, files.gt, brain, files.brain_mask)
    return LoadedCase(gt, pred, prob, brain)
