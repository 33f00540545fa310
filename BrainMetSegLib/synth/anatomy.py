"""A random patient's normal anatomy on the output grid (before lesions and acquisition).

Tissue intensities are drawn per case in CE-T1-like ranges relative to white
matter (WM = 1), rendered in template space from the tissue maps plus the
template's own residual detail, with the static enhancing structures (sinuses,
falx, choroid plexus) painted in; then the result is warped onto the output grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import config as C
from .deform import OutputGrid, Warp, output_grid, random_warp, warp_maps
from .templates import Template

SDIST_OFFSET = 200.0  # keeps the zero padding of the warp far outside the brain


@dataclass
class Anatomy:
    """Output-grid maps of one patient, arrays (z, y, x).

    image: float32 intensities (WM = 1); sdist: signed distance to the brain surface
    (mm, > 0 inside); wm: white-matter probability; code: tissue | region << 2 (uint8).
    """

    grid: OutputGrid
    image: np.ndarray
    sdist: np.ndarray
    wm: np.ndarray
    code: np.ndarray
    warp: Warp
    contrasts: dict

    @property
    def brain(self) -> np.ndarray:
        return self.sdist > 0

    @property
    def tissue(self) -> np.ndarray:
        return self.code & 3

    @property
    def region(self) -> np.ndarray:
        return self.code >> 2


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


def render_template(t: Template, contrasts: dict, confounders: bool) -> np.ndarray:
    """CE-T1-like intensities in template space (WM = 1)."""
    img = t.csf * contrasts["csf"] + t.gm * contrasts["gm"] + t.wm
    img += contrasts["residual_weight"] * t.residual
    if t.has_skull:
        # Blend to the real scalp and skull outside the brain (Colin27).
        inside = np.clip(t.sdist + 0.5, 0, 1)
        img = img * inside + (1 - inside) * contrasts["head_gain"] * t.t1
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
    img_t = render_template(template, contrasts, confounders)
    code_t = template.code
    if not confounders:
        # Without confounders the static structures are ordinary tissue (drop their region).
        region = code_t >> 2
        code_t = np.where(region >= 7, code_t & 3, code_t).astype(np.uint8)
    (img, sdist, wm), (code,) = warp_maps(
        template, grid, warp, [img_t, template.sdist + SDIST_OFFSET, template.wm], [code_t]
    )
    sdist -= SDIST_OFFSET
    return Anatomy(grid=grid, image=img, sdist=sdist, wm=wm, code=code.astype(np.uint8),
                   warp=warp, contrasts=contrasts)
