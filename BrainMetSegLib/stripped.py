"""Is the CE-T1 already skull-stripped? A cheap test that lets the pipeline skip deepbet.

A skull-stripped image is a brain on an exactly-zero background: its non-zero voxels form one
brain-sized blob (:data:`BRAIN_ML`) whose intensity, from its surface inwards, rises from
cortex to white matter. A head has scalp, skull and often neck around the brain: its non-zero
region (when the air is zero at all) is far larger (Colin27's head 4230 mL against its brain's
1825 mL), and from its surface inwards the intensity rises in the scalp and then drops in the
skull (dark on T1) before the brain. The test runs on the image sub-sampled to ~:data:`GRID_MM`
mm (well under a second for a head):

1. the background: voxels exactly 0 are at least :data:`MIN_ZERO_SHARE` of the field of view
   (noisy air is never exactly zero);
2. the foreground (non-zero voxels, holes filled, largest component) is :data:`BRAIN_ML` mL;
3. no skull dip: the median intensity in :data:`BIN_MM` mm depth shells from
   :data:`BIN_MM` to :data:`PROFILE_MM` mm below the surface where the blob meets the zero
   background (not where the field of view cuts it), relative to the core deeper than
   :data:`PROFILE_MM` mm, never falls by more than :data:`MAX_DIP` from one shell to a deeper
   one. Measured (benchmarks/skull_stripped_check.py, docs/speed.md): stripped brains (MNI152,
   Colin27's two BET brains, 3 synthetic stripped phantoms, whole or cut to a slab) fall 0.00;
   heads cut to a slab so that their volume looks like a brain's (Colin27, 4 synthetic heads,
   air zeroed) 0.32-1.32.

All three must hold; otherwise deepbet runs as before (it is safe on stripped input too,
SPEC.md), so a miss costs only time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

# Sub-sampling (mm, at least): coarse enough to be cheap, fine enough for 2 mm depth shells.
GRID_MM = 2.5
MIN_ZERO_SHARE = 0.2
# Plausible volume of a stripped brain (mL): brains 900-1900 mL, templates (MNI152 1886 mL)
# and generous masks larger; a whole head with its scalp is > 3000 mL.
BRAIN_ML = (600.0, 2500.0)
BIN_MM = 2.0
PROFILE_MM = 20.0
MAX_DIP = 0.15


@dataclass(frozen=True)
class StrippedCheck:
    """The verdict and the measures it was made from (for run.json).

    zero_share: share of the field of view that is exactly 0.
    foreground_ml: volume of the foreground blob (mL).
    skull_dip: largest fall of the depth profile (relative to the core's median), see above.
    """

    stripped: bool
    reason: str
    zero_share: float
    foreground_ml: float
    skull_dip: float

    def as_dict(self) -> dict:
        return asdict(self)


def foreground(array_zyx: np.ndarray) -> np.ndarray:
    """Non-zero voxels, holes filled (what ``--brain-mask none`` uses as the brain)."""
    nonzero = array_zyx != 0
    if nonzero.all():
        return nonzero
    return ndimage.binary_fill_holes(nonzero)


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def check_skull_stripped(array_zyx: np.ndarray, spacing_xyz) -> StrippedCheck:
    """Decide whether a (Z, Y, X) image with ``spacing_xyz`` (mm) is already skull-stripped."""
    step = [max(int(np.ceil(GRID_MM / s - 1e-6)), 1) for s in spacing_xyz[::-1]]
    sub = np.asarray(array_zyx[::step[0], ::step[1], ::step[2]], np.float32)
    sampling = [s * k for s, k in zip(spacing_xyz[::-1], step, strict=True)]
    zero_share = float((sub == 0).mean())
    nan = float("nan")
    if zero_share < MIN_ZERO_SHARE:
        return StrippedCheck(False, f"background not zero ({zero_share:.0%} of voxels are 0)", zero_share, nan, nan)
    blob = _largest(ndimage.binary_fill_holes(sub != 0))
    box = ndimage.find_objects(blob.astype(np.uint8))[0] if blob.any() else ()
    sub, blob = sub[box], blob[box]
    ml = float(blob.sum()) * float(np.prod(sampling)) / 1000.0
    if not BRAIN_ML[0] <= ml <= BRAIN_ML[1]:
        return StrippedCheck(False, f"non-zero region {ml:.0f} mL, not brain-sized "
                             f"({BRAIN_ML[0]:.0f}-{BRAIN_ML[1]:.0f} mL)", zero_share, ml, nan)
    dip = skull_dip(sub, blob, sampling)
    if not np.isfinite(dip):
        return StrippedCheck(False, "no brain-like core in the non-zero region", zero_share, ml, dip)
    if dip > MAX_DIP:
        return StrippedCheck(False, f"a dark layer under the surface (skull?): depth profile falls by {dip:.2f}",
                             zero_share, ml, dip)
    return StrippedCheck(True, f"already skull-stripped: {zero_share:.0%} zero background, {ml:.0f} mL "
                         f"brain-sized foreground, no skull layer (depth-profile fall {dip:.2f})",
                         zero_share, ml, dip)


def skull_dip(sub: np.ndarray, blob: np.ndarray, sampling) -> float:
    """Largest fall of the median intensity between depth shells of ``blob`` (relative to its
    core, above its 1st percentile); NaN without a core or shells."""
    # depth to the zero background only: pad with foreground so a field-of-view edge that
    # cuts through the blob is not a surface
    depth = ndimage.distance_transform_edt(np.pad(blob, 1, constant_values=True), sampling=sampling)
    depth = depth[1:-1, 1:-1, 1:-1]
    values = sub[blob]
    depth = depth[blob]
    floor = float(np.percentile(values, 1))
    core = values[depth > PROFILE_MM]
    if core.size == 0:
        return float("nan")
    scale = max(float(np.median(core)) - floor, 1e-12)
    profile = []
    for lo in np.arange(BIN_MM, PROFILE_MM, BIN_MM):  # the outermost shell is partial volume
        shell = values[(depth > lo) & (depth <= lo + BIN_MM)]
        if shell.size:
            profile.append((float(np.median(shell)) - floor) / scale)
    if len(profile) < 2:
        return float("nan")
    peak, dip = profile[0], 0.0
    for v in profile[1:]:
        dip, peak = max(dip, peak - v), max(peak, v)
    return dip
