"""Rigid co-registration of extra sequences (T1, T2, FLAIR) onto the CE-T1.

Mattes mutual information, Euler 3D transform, multi-resolution (as Grøvik et
al. registered their sequences); sequences that already share the CE-T1's grid
are used as they are.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .geometry import Grid
from .images import same_geometry


def overlap_fraction(fixed: sitk.Image, moving: sitk.Image) -> float:
    """Fraction of ``fixed``'s physical bounding box covered by ``moving``'s."""
    a, b = Grid.of(fixed).corners_lps(), Grid.of(moving).corners_lps()
    lo = np.maximum(a.min(0), b.min(0))
    hi = np.minimum(a.max(0), b.max(0))
    inter = np.prod(np.clip(hi - lo, 0, None))
    return float(inter / np.prod(a.max(0) - a.min(0)))


def register_rigid(fixed: sitk.Image, moving: sitk.Image, seed: int = 0) -> sitk.Transform:
    """Rigid transform mapping ``fixed`` physical points into ``moving`` (Mattes MI)."""
    fixed_f, moving_f = sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32)
    init = sitk.CenteredTransformInitializer(fixed_f, moving_f, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.05, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3,
                                                 numberOfIterations=150, relaxationFactor=0.5)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(init, inPlace=False)
    return reg.Execute(fixed_f, moving_f)


def onto_ce_t1(ce_t1: sitk.Image, moving: sitk.Image, name: str, path: str = "") -> sitk.Image:
    """``moving`` on the CE-T1's grid: as is when geometries match, else registered and resampled."""
    if same_geometry(ce_t1, moving):
        return sitk.Cast(moving, sitk.sitkFloat32)
    if overlap_fraction(ce_t1, moving) < 0.2:
        raise InputError(f"{path or name}: the {name} image does not overlap the CE-T1 in physical "
                         "space (check that both belong to the same study).")
    transform = register_rigid(ce_t1, moving)
    return sitk.Resample(sitk.Cast(moving, sitk.sitkFloat32), ce_t1, transform, sitk.sitkLinear, 0.0)
