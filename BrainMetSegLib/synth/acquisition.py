"""Scanner effects: thick-slice acquisition, blur, bias field, Rician noise, global scale.

All work on float32 arrays (z, y, x) in WM units and are drawn from the case's rng.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .fields import random_smooth

ANISOTROPIC_CHOICES = ((1.0, 1.0, 3.0), (1.0, 1.0, 2.0), (1.0, 3.0, 1.0), (3.0, 1.0, 1.0))


def simulate_thick_slices(image: np.ndarray, spacing, acquired) -> np.ndarray:
    """Acquire at ``acquired`` spacing (x, y, z mm; slice profile = Gaussian of FWHM the
    thickness) and interpolate back (trilinear) to the image's ``spacing``."""
    import torch
    import torch.nn.functional as F

    out = image
    steps = []
    for axis_xyz in range(3):
        ratio = acquired[axis_xyz] / spacing[axis_xyz]
        axis = 2 - axis_xyz
        if ratio > 1.2:
            out = ndimage.gaussian_filter1d(out, ratio / 2.355, axis=axis, mode="nearest")
            steps.append((axis, int(round(ratio))))
    if not steps:
        return image
    sl = [slice(None)] * 3
    for axis, step in steps:
        sl[axis] = slice(0, None, step)
    low = np.ascontiguousarray(out[tuple(sl)])
    # Sampled positions are 0, step, 2 step...: map back with align_corners on the covered part.
    t = torch.from_numpy(low)[None, None]
    covered = [(low.shape[a] - 1) * (dict(steps).get(a, 1)) + 1 for a in range(3)]
    up = F.interpolate(t, size=tuple(covered), mode="trilinear", align_corners=True)[0, 0].numpy()
    result = np.empty_like(image)
    result[: covered[0], : covered[1], : covered[2]] = up
    # Edge slices beyond the last acquired one repeat it.
    result[covered[0]:] = result[covered[0] - 1: covered[0]]
    result[:, covered[1]:] = result[:, covered[1] - 1: covered[1]]
    result[:, :, covered[2]:] = result[:, :, covered[2] - 1: covered[2]]
    return result


def bias_field(rng: np.random.Generator, shape, spacing, strength: float) -> np.ndarray:
    """Smooth multiplicative field exp(f), f a smooth random field (control points every 60 mm)
    of about +-``strength``."""
    return np.exp(random_smooth(rng, shape, 60.0, spacing, -strength, strength) * np.float32(1.6))


def rician_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of std ``sigma``."""
    n1 = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    n2 = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt((image + n1) ** 2 + n2 ** 2)


def acquire(rng: np.random.Generator, image: np.ndarray, spacing, anisotropic) -> tuple[np.ndarray, dict]:
    """Apply the acquisition chain; returns the image (WM units) and what was drawn."""
    info: dict = {}
    if anisotropic is None:
        anisotropic = ANISOTROPIC_CHOICES[rng.integers(len(ANISOTROPIC_CHOICES))] if rng.random() < 0.25 else False
    if anisotropic:
        image = simulate_thick_slices(image, spacing, anisotropic)
        info["acquired_spacing_mm"] = list(anisotropic)
    blur = float(rng.uniform(0.0, 0.7))
    if blur > 0.2:
        image = ndimage.gaussian_filter(image, blur / np.asarray(spacing)[::-1] * min(spacing))
    info["blur_sigma_voxels"] = round(blur, 3)
    strength = float(rng.uniform(0.1, 0.45))
    image = image * bias_field(rng, image.shape, spacing, strength)
    info["bias_strength"] = round(strength, 3)
    sigma = float(rng.uniform(0.01, 0.05))
    image = rician_noise(rng, image, sigma)
    info["noise_sigma_wm"] = round(sigma, 4)
    return image, info
