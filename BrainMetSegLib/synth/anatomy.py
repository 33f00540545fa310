"""A random patient's normal anatomy on the output grid (before lesions and acquisition).

Tissue intensities are drawn per case in CE-T1-like ranges relative to white
matter (WM = 1), rendered in template space from the tissue maps plus the
template's own residual detail, with the static enhancing structures (sinuses,
falx, choroid plexus) and, for the skull-stripped MNI152, a synthetic skull and
scalp painted in; then the result is warped onto the output grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import config as C
from .deform import OutputGrid, Warp, dense_grid, output_grid, random_warp, sample
from .fields import random_smooth
from .templates import REGION_CHOROID, Template

SDIST_OFFSET = 200.0  # keeps the zero padding of the warp far outside the brain


@dataclass
class Anatomy:
    """Output-grid maps of one patient, arrays (z, y, x).

    image: float32 intensities (WM = 1); sdist: signed distance to the brain surface
    (mm, > 0 inside); code: tissue | region << 2 (uint8); grid_t: template position of
    every output voxel (torch, for :meth:`local`).
    """

    grid: OutputGrid
    image: np.ndarray
    sdist: np.ndarray
    code: np.ndarray
    warp: Warp
    contrasts: dict
    template: Template
    grid_t: object

    @property
    def brain(self) -> np.ndarray:
        return self.sdist > 0

    @property
    def tissue(self) -> np.ndarray:
        return self.code & 3

    @property
    def region(self) -> np.ndarray:
        return self.code >> 2

    def local(self, name: str, box) -> np.ndarray:
        """A template map (e.g. ``"wm"``) sampled on a box (tuple of slices) of the output grid."""
        sub = self.grid_t[(slice(None), *box)]
        return sample([getattr(self.template, name)], sub)[0]


def draw_contrasts(rng: np.random.Generator) -> dict:
    """Tissue and confounder intensities relative to WM for one case."""
    return {
        "gm": float(rng.uniform(*C.GM_RANGE)),
        "csf": float(rng.uniform(*C.CSF_RANGE)),
        "residual_weight": float(rng.uniform(0.5, 1.0)),
        "sinus": float(rng.uniform(*C.VESSEL_RANGE)),
        "falx": float(rng.uniform(*C.DURA_RANGE)),
        "choroid": float(rng.uniform(*C.CHOROID_RANGE)),
        "head_gain": float(rng.uniform(0.85, 1.2)),
    }


def skull_layers(rng: np.random.Generator, depth: np.ndarray, wobble: np.ndarray, csf: float) -> np.ndarray:
    """Intensity (WM units) of CSF / inner table / diploe / outer table / scalp / fat / skin
    at ``depth`` mm outside the closed brain outline; layer edges move with ``wobble`` (-1..1)."""
    thickness = [1.5 + 1.0 * wobble, rng.uniform(1.3, 2.2), rng.uniform(2.0, 4.5) + 1.0 * wobble,
                 rng.uniform(1.0, 1.8), rng.uniform(1.5, 3.0), rng.uniform(2.0, 4.0) + 0.8 * wobble,
                 rng.uniform(1.0, 1.8)]
    values = [csf, 0.04, rng.uniform(0.55, 0.95), 0.04, rng.uniform(0.45, 0.65), rng.uniform(1.0, 1.4),
              rng.uniform(0.5, 0.7), 0.0]
    out = np.full(depth.shape, values[0], np.float32)
    edge = np.zeros(depth.shape, np.float32)
    for k, t in enumerate(thickness):
        edge = edge + np.float32(t) if np.isscalar(t) else edge + t.astype(np.float32)
        # Soft step (1 mm) into the next layer.
        out += np.float32(values[k + 1] - values[k]) * np.clip(depth - edge + 0.5, 0, 1)
    return out


def render_template(rng: np.random.Generator, t: Template, contrasts: dict, confounders: bool,
                    skull: bool) -> np.ndarray:
    """CE-T1-like intensities in template space (WM = 1)."""
    img = t.csf * contrasts["csf"] + t.gm * contrasts["gm"] + t.wm
    img += contrasts["residual_weight"] * t.residual
    if t.has_skull:
        # Blend to the real scalp and skull outside the brain (Colin27).
        inside = np.clip(t.sdist + 0.5, 0, 1)
        img = img * inside + (1 - inside) * contrasts["head_gain"] * t.t1
    elif skull and t.shell_index is not None:
        wobble = random_smooth(rng, t.shape, 40.0, (1.0, 1.0, 1.0)).ravel()[t.shell_index]
        img.ravel()[t.shell_index] = skull_layers(rng, t.shell_depth, wobble, contrasts["csf"])
    if confounders:
        for occ, key in ((t.falx, "falx"), (t.choroid, "choroid"), (t.sinus, "sinus")):
            img += occ * (contrasts[key] - img)
    return img.astype(np.float32)


def make_anatomy(rng: np.random.Generator, template: Template, spacing, field_of_view: str,
                 margin_mm: float, skull: bool, confounders: bool, deformation: float) -> Anatomy:
    """Draw contrasts and a warp, render and warp the template onto the output grid."""
    contrasts = draw_contrasts(rng)
    warp = random_warp(rng, template, deformation)
    grid = output_grid(template, spacing, field_of_view, margin_mm, skull)
    img_t = render_template(rng, template, contrasts, confounders, skull)
    if max(grid.spacing) > 1.25:
        # Coarser than the 1 mm template: low-pass first so the sampling does not alias
        # (Gaussian with the FWHM of the extra voxel size, template axes ~ output axes).
        sigma = [np.sqrt(max(s * s - 1.0, 0.0)) / 2.355 for s in grid.spacing[::-1]]
        img_t = ndimage.gaussian_filter(img_t, sigma, truncate=3.0)
    code_t = template.code
    if not confounders:
        # Without confounders the static structures are ordinary tissue (drop their region).
        code_t = np.where((code_t >> 2) >= REGION_CHOROID, code_t & 3, code_t).astype(np.uint8)
    grid_t = dense_grid(template, grid, warp)
    img, sdist = sample([img_t, template.sdist + SDIST_OFFSET], grid_t)
    (code,) = sample([code_t], grid_t, mode="nearest")
    sdist -= SDIST_OFFSET
    return Anatomy(grid=grid, image=img, sdist=sdist, code=code.astype(np.uint8), warp=warp,
                   contrasts=contrasts, template=template, grid_t=grid_t)
