"""Lesion diameters on the image's own edge (the enhancing lesion's outline on the CE-T1 scan).

A radiologist measures a metastasis where its enhancement ends on the CE-T1 image. This module
finds that edge around each lesion the segmentation drew, at the half-maximum between the
lesion's enhancement and its local background:

- background ``B``: the median of the image in a shell :attr:`ImageEdgeConfig.shell_mm` outside
  the model's lesion (other lesions and their surroundings left out); noise: the shell's robust
  spread (1.4826 x MAD);
- enhancement ``H``: the :attr:`~ImageEdgeConfig.inside_percentile` percentile inside the lesion;
- the edge: the region above ``(B + H) / 2`` connected to the lesion, searched only within
  :attr:`~ImageEdgeConfig.reach_mm` of the model's outline (so neighbours and vessels cannot
  join), holes (a necrotic core) filled on each axial slice and in 3D;
- measured as the lesion table measures a probability outline
  (:func:`BrainMetSegLib.lesions.lesion_table`): axial diameters on the sub-voxel contour
  where the image crosses the level on each voxel face (marching squares' vertices).

It is refused (the caller keeps the probability outline) where it cannot be trusted: contrast
under :attr:`~ImageEdgeConfig.min_contrast` noise SDs, too little background around the lesion,
no voxel above the level on the lesion, or an edge that leaks (the image stays above the level
where the search stops: the lesion is larger than the model drew by more than the reach, or it
touches something as bright). Arrays are (z, y, x) = (k, j, i); distances in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .lesions import ON_PROBABILITY, LesionTableRow, lesion_table, rano_measurable

#: ``diameters_on`` of a lesion measured on the image's edge (:mod:`BrainMetSegLib.lesions`).
ON_IMAGE = "image"

#: The diameter columns the image edge replaces (volumes, centroids and probabilities stay the
#: segmentation's).
EDGE_COLUMNS = ("longest_diameter_mm", "axial_longest_diameter_mm", "axial_perpendicular_diameter_mm",
                "axial_slices")


@dataclass(frozen=True)
class ImageEdgeConfig:
    """shell_mm: (inner, outer) distance (mm) from the model's lesion of the background shell;
    inside_percentile: the lesion's enhancement as this percentile of the image inside it;
    reach_mm: how far (mm) beyond the model's lesion the edge may lie;
    min_contrast: least (enhancement - background) in background noise SDs;
    min_shell_voxels: least background voxels for a median and a spread;
    min_outline_mm: lesions whose axial longest diameter on the probability outline is under
        this keep the outline: on a lesion of a few voxels the half-maximum is noise and
        partial volume (the dev set, seed 7300: SD 0.21 of the analytic diameter under 5 mm,
        against 0.16 on the outline; RANO-BM's measurable lesions are >= 10 mm)."""

    shell_mm: tuple[float, float] = (2.0, 4.0)
    inside_percentile: float = 90.0
    reach_mm: float = 2.0
    min_contrast: float = 3.0
    min_shell_voxels: int = 20
    min_outline_mm: float = 5.0


@dataclass(frozen=True)
class EdgeResult:
    """One lesion's image edge: the lesion table row measured on it (None when refused), the
    reason it was refused ("" when not), the level (image units) and the contrast (noise SDs)."""

    row: dict | None
    reason: str
    level: float = float("nan")
    contrast: float = float("nan")


def _fill_holes(region: np.ndarray) -> np.ndarray:
    """Holes filled in 3D and on each axial slice (axis 0) (a necrotic core is inside)."""
    filled = ndimage.binary_fill_holes(region)
    for k in range(filled.shape[0]):
        filled[k] = ndimage.binary_fill_holes(filled[k])
    return filled


def lesion_edges(image: sitk.Image, labels: sitk.Image, lesion_ids=None,
                 config: ImageEdgeConfig = ImageEdgeConfig()) -> dict[int, EdgeResult]:
    """The image edge of each lesion of ``labels`` (ids ``lesion_ids``, default all) on
    ``image`` (the same grid; axial slices along the array's first axis, as the synth's and
    segment's grids are)."""
    lab_all = sitk.GetArrayViewFromImage(labels)
    img_all = sitk.GetArrayViewFromImage(image)
    spacing_zyx = np.asarray(labels.GetSpacing(), float)[::-1]
    margin = np.ceil((config.shell_mm[1] + 1.0) / spacing_zyx).astype(int)
    boxes = ndimage.find_objects(np.asarray(lab_all))
    ids = range(1, len(boxes) + 1) if lesion_ids is None else lesion_ids
    out = {}
    for lesion_id in ids:
        found = boxes[lesion_id - 1] if 0 < lesion_id <= len(boxes) else None
        if found is None:
            out[int(lesion_id)] = EdgeResult(None, "no such lesion")
            continue
        box = tuple(slice(max(b.start - int(m), 0), min(b.stop + int(m), n))
                    for b, m, n in zip(found, margin, lab_all.shape, strict=True))
        ref = labels[tuple(slice(b.start, b.stop) for b in box[::-1])]  # the crop's geometry
        out[int(lesion_id)] = _edge(np.asarray(img_all[box], np.float64), np.asarray(lab_all[box]), int(lesion_id),
                                    spacing_zyx, ref, config)
    return out


def _edge(img: np.ndarray, lab: np.ndarray, lesion_id: int, spacing_zyx: np.ndarray, ref: sitk.Image,
          config: ImageEdgeConfig) -> EdgeResult:
    """One lesion's edge in its crop (``ref``: an image with the crop's geometry)."""
    mine, others = lab == lesion_id, (lab > 0) & (lab != lesion_id)
    dist = ndimage.distance_transform_edt(~mine, sampling=spacing_zyx)
    near_other = ndimage.distance_transform_edt(~others, sampling=spacing_zyx) < config.shell_mm[0] \
        if others.any() else np.zeros_like(mine)
    shell = (dist >= config.shell_mm[0]) & (dist <= config.shell_mm[1]) & ~others & ~near_other
    if int(shell.sum()) < config.min_shell_voxels:
        return EdgeResult(None, "too little background around the lesion")
    background = float(np.median(img[shell]))
    noise = 1.4826 * float(np.median(np.abs(img[shell] - background)))
    high = float(np.percentile(img[mine], config.inside_percentile))
    contrast = (high - background) / noise if noise > 0 else float("inf")
    level = (background + high) / 2
    if not high > background or contrast < config.min_contrast:
        return EdgeResult(None, "no clear enhancement against the background", level, contrast)
    above = (img > level) & (dist <= config.reach_mm) & ~others
    parts, _ = ndimage.label(above)
    keep = np.unique(parts[mine & above])
    region = _fill_holes(np.isin(parts, keep[keep > 0]))
    if not region.any():
        return EdgeResult(None, "no voxel of the lesion above the half-maximum", level, contrast)
    # the image normalised so that the edge is at 0.5; filled holes count as inside
    field = (img - level) / (high - background) + 0.5
    field[region] = np.maximum(field[region], 0.5 + 1e-6)
    lab_img = sitk.GetImageFromArray(np.where(region, 1, np.where(others, 2, 0)).astype(np.int32))
    lab_img.CopyInformation(ref)
    field_img = sitk.GetImageFromArray(field.astype(np.float32))
    field_img.CopyInformation(ref)
    row = next(r for r in lesion_table(lab_img, field_img, 0.5) if int(r["lesion_id"]) == 1)
    if row["diameters_on"] != ON_PROBABILITY:
        return EdgeResult(None, "the edge leaks beyond the lesion's neighbourhood", level, contrast)
    return EdgeResult(dict(row), "", level, contrast)


def edge_row(row: LesionTableRow, edge: EdgeResult) -> LesionTableRow:
    """The lesion table row with its diameters from the image edge (``diameters_on`` = "image",
    RANO-BM measurability from them), or unchanged where the edge was refused."""
    if edge.row is None:
        return row
    out = {**row, **{c: edge.row[c] for c in EDGE_COLUMNS}, "diameters_on": ON_IMAGE}
    out["rano_bm_measurable"] = rano_measurable(out["axial_longest_diameter_mm"],
                                                out["axial_perpendicular_diameter_mm"], out["axial_slices"])
    return out


def measure_rows(image: sitk.Image, labels: sitk.Image, rows: list[LesionTableRow],
                 config: ImageEdgeConfig = ImageEdgeConfig()) -> tuple[list[LesionTableRow], dict[str, str]]:
    """The lesion table ``rows`` of ``labels`` measured on the image edge where it holds
    (:func:`edge_row`); returns the rows and, per lesion id (str) that kept its measurement,
    the reason."""
    small = {int(r["lesion_id"]) for r in rows if r["axial_longest_diameter_mm"] < config.min_outline_mm}
    edges = lesion_edges(image, labels, [int(r["lesion_id"]) for r in rows if int(r["lesion_id"]) not in small],
                         config)
    edges.update({i: EdgeResult(None, f"under {config.min_outline_mm:g} mm on the probability outline")
                  for i in small})
    refused = {str(i): e.reason for i, e in sorted(edges.items()) if e.row is None}
    return [edge_row(r, edges[int(r["lesion_id"])]) for r in rows], refused
