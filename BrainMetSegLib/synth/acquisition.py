"""Scanner effects: thick-slice acquisition, blur, bias field, Rician noise, global scale.

All work on float32 arrays (z, y, x) in WM units and are drawn from the case's rng.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .fields import random_smooth

ANISOTROPIC_CHOICES = ((1.0, 1.0, 3.0), (1.0, 1.0, 2.0), (1.0, 3.0, 1.0), (3.0, 1.0, 1.0))


def thick_slices(image: np.ndarray, spacing, acquired) -> tuple[np.ndarray, dict]:
    """Acquire at ``acquired`` spacing (x, y, z mm): slice profile = Gaussian with FWHM of the
    thickness, then keep every n-th slice. Returns the low-resolution array and the steps
    (array axis -> n) needed by :func:`back_to_grid`."""
    out = image
    steps = {}
    for axis_xyz in range(3):
        ratio = acquired[axis_xyz] / spacing[axis_xyz]
        axis = 2 - axis_xyz
        if ratio > 1.2:
            out = ndimage.gaussian_filter1d(out, ratio / 2.355, axis=axis, mode="nearest")
            steps[axis] = int(round(ratio))
    sl = tuple(slice(0, None, steps.get(a, 1)) for a in range(3))
    return np.ascontiguousarray(out[sl]), steps


def back_to_grid(low: np.ndarray, steps: dict, shape) -> np.ndarray:
    """Interpolate (trilinear) acquired slices back onto the output grid of ``shape``."""
    import torch
    import torch.nn.functional as F

    if not steps:
        return low
    # Acquired slice k sits at output index k * step: interpolate over the covered range ...
    covered = [(low.shape[a] - 1) * steps.get(a, 1) + 1 for a in range(3)]
    t = torch.from_numpy(low)[None, None]
    up = F.interpolate(t, size=tuple(covered), mode="trilinear", align_corners=True)[0, 0].numpy()
    # ... and repeat the last acquired slice beyond it.
    idx = [np.minimum(np.arange(n), c - 1) for n, c in zip(shape, covered, strict=True)]
    return up[np.ix_(*idx)]


def bias_field(rng: np.random.Generator, shape, spacing, strength: float) -> np.ndarray:
    """Smooth multiplicative field exp(f), f a smooth random field (control points every 60 mm)
    of about +-``strength``."""
    return np.exp(random_smooth(rng, shape, 60.0, spacing, -strength, strength) * np.float32(1.6))


def rician_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of std ``sigma``."""
    n1 = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    n2 = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt((image + n1) ** 2 + n2 ** 2)


def acquire(rng: np.random.Generator, image: np.ndarray, spacing, anisotropic,
            protocol: dict | None = None) -> tuple[np.ndarray, dict]:
    """Apply the acquisition chain; returns the image (WM units) and what was drawn.

    Order as in a scanner: the object is blurred (point spread), sampled on the acquisition
    grid (thick slices when anisotropic), multiplied by the coil bias field and given
    Rician noise there, then interpolated onto the output grid.

    protocol: an earlier scan's returned info, for a rescan with the same protocol: its point
        spread, acquisition grid and noise level are kept; the bias field and the noise drawn anew.
    """
    info: dict = {}
    shape = image.shape
    if protocol is not None:
        anisotropic = tuple(protocol.get("acquired_spacing_mm", ())) or False
    elif anisotropic is None:
        anisotropic = ANISOTROPIC_CHOICES[rng.integers(len(ANISOTROPIC_CHOICES))] if rng.random() < 0.25 else False
    blur = float(rng.uniform(0.0, 0.7)) if protocol is None else float(protocol["blur_sigma_voxels"])
    if blur > 0.2:
        image = ndimage.gaussian_filter(image, blur / np.asarray(spacing)[::-1] * min(spacing))
    info["blur_sigma_voxels"] = round(blur, 3)
    steps: dict = {}
    if anisotropic:
        image, steps = thick_slices(image, spacing, anisotropic)
        info["acquired_spacing_mm"] = [float(v) for v in anisotropic]
    strength = float(rng.uniform(0.1, 0.45))
    acq_spacing = [s * steps.get(2 - a, 1) for a, s in enumerate(spacing)]
    image = image * bias_field(rng, image.shape, acq_spacing, strength)
    info["bias_strength"] = round(strength, 3)
    sigma = float(rng.uniform(0.01, 0.05)) if protocol is None else float(protocol["noise_sigma_wm"])
    image = rician_noise(rng, image, sigma)
    info["noise_sigma_wm"] = round(sigma, 4)
    return back_to_grid(image, steps, shape), info
