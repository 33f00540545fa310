"""Re-acquire a scan as a clinic's scanner would have written it: oblique planes, thick 2D
slices, another field of view. Same physical head, same lesions, another grid.

Works on SimpleITK images in LPS physical space (any input grid), so it serves the synthetic
phantoms (``brainmetseg synth --oblique/--slice-thickness``), the robustness benchmark
(``benchmarks/robustness.py``) and the reproduction of real files (the bundled sample).

- Oblique: the grid is the input's grid turned by ``tilt_deg`` = (a, b) degrees about the
  image's first (x, left-right) and then second (y, anterior-posterior) axis, sized to the
  head (voxels above the background level) plus a margin: a tilted box as a scanner plans it.
- Thick 2D slices: each output voxel is the mean of the input over a slab ``thickness_mm``
  thick along the grid's third axis (a rectangular slice profile, no gap), sampled every
  ``thickness_mm``; in-plane spacing as given. Not a subsampling: a lesion thinner than a
  slice is averaged with its neighbours, as in a 2D spin-echo acquisition. The slices are
  axial (the input's planes), coronal or sagittal (``slice_plane``), each written as DICOM
  orients it: rows along L (coronal) or P (sagittal), columns towards the feet.
- Field of view: ``head`` (as is), ``brain`` (brain box + 10 mm) or ``vertex-cut`` (the top
  ``vertex_cut_mm`` of the brain outside the field of view).
Labels go through the same grids with nearest-neighbour sampling; for thick slices a voxel
carries a label when that label fills at least half of its slab.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..options import SLICE_PLANE_NAMES

FIELDS_OF_VIEW = ("head", "brain", "vertex-cut")
#: The grid's axes (columns) in the input's image axes for each slice plane; the third is the
#: slice normal. Coronal: rows L, columns inferior, slices stacked along P; sagittal: rows P,
#: columns inferior, slices along R (DICOM's usual orientations; both right-handed).
SLICE_PLANES = dict(zip(SLICE_PLANE_NAMES, (
    np.eye(3),
    np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
), strict=True))
#: Sub-slice step (mm) used to average a thick slab; finer than any source we resample.
SLAB_STEP_MM = 0.5


@dataclass(frozen=True)
class Reacquisition:
    """How to re-acquire a scan.

    tilt_deg: rotation (a, b) in degrees of the grid about the input's x then y axis.
    slice_thickness_mm: thickness and spacing of 2D slices (mm) along the grid's z axis; None
        keeps the spacing (3D acquisition).
    in_plane_mm: in-plane (x, y) spacing (mm); None keeps the input's.
    slab: thick slices average their slab (a 2D acquisition's partial volume); False samples
        each slice's centre plane only, as a thin-slice reformat at that spacing does.
    slice_plane: ``axial`` (the input's own planes), ``coronal`` or ``sagittal``
        (:data:`SLICE_PLANES`): the grid's axes are the input's, permuted so that its third
        (slice) axis runs along the input's y (A-P) or x (L-R) axis.
    field_of_view: ``head``, ``brain`` (brain box + 10 mm) or ``vertex-cut``.
    vertex_cut_mm: for ``vertex-cut``, how much of the brain's top (mm, along S) is cut off.
    margin_mm: margin around the head (oblique grid) or brain (``brain`` field of view), mm.
    """

    tilt_deg: tuple[float, float] = (0.0, 0.0)
    slice_thickness_mm: float | None = None
    in_plane_mm: float | None = None
    slab: bool = True
    slice_plane: str = "axial"
    field_of_view: str = "head"
    vertex_cut_mm: float = 20.0
    margin_mm: float = 10.0

    def __post_init__(self):
        if self.slice_plane not in SLICE_PLANES:
            raise ValueError(f"slice_plane {self.slice_plane!r}: use one of {', '.join(SLICE_PLANES)}.")
        if self.field_of_view not in FIELDS_OF_VIEW:
            raise ValueError(f"field_of_view {self.field_of_view!r}: use one of {', '.join(FIELDS_OF_VIEW)}.")
        if len(self.tilt_deg) != 2 or any(not -90 <= float(a) <= 90 for a in self.tilt_deg):
            raise ValueError(f"tilt_deg {self.tilt_deg}: two angles in [-90, 90] degrees.")
        for name in ("slice_thickness_mm", "in_plane_mm"):
            v = getattr(self, name)
            if v is not None and not 0.2 <= float(v) <= 12.0:
                raise ValueError(f"{name} {v}: must be in [0.2, 12] mm.")

    @property
    def label(self) -> str:
        """Short name, e.g. ``tilt15x15``, ``slice5mm``, ``slice5mm-coronal``, ``fov-brain`` or ``original``."""
        parts = []
        if any(self.tilt_deg):
            parts.append("tilt{:g}x{:g}".format(*self.tilt_deg))
        if self.slice_thickness_mm:
            kind = "slice" if self.slab else "reformat"
            plane = "" if self.slice_plane == "axial" else f"-{self.slice_plane}"
            parts.append(f"{kind}{self.slice_thickness_mm:g}mm{plane}")
        if self.field_of_view != "head":
            parts.append(f"fov-{self.field_of_view}")
        return "_".join(parts) or "original"


def rotation(tilt_deg) -> np.ndarray:
    """3x3 rotation: ``a`` degrees about x, then ``b`` degrees about y (image axes)."""
    a, b = np.deg2rad(np.asarray(tilt_deg, float))
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return ry @ rx


def _foreground_points(image: sitk.Image, mask: sitk.Image | None = None) -> np.ndarray:
    """LPS points (n, 3) of the head: voxels above 10 % of the 99th percentile (or ``mask``)."""
    arr = sitk.GetArrayViewFromImage(mask if mask is not None else image)
    if mask is None:
        level = 0.1 * float(np.percentile(arr[::2, ::2, ::2], 99))
        sel = arr > level
    else:
        sel = arr > 0
    kji = np.argwhere(sel)[::7]  # every 7th voxel bounds the head well enough
    d = np.reshape(image.GetDirection(), (3, 3))
    return np.asarray(image.GetOrigin()) + (kji[:, ::-1] * np.asarray(image.GetSpacing())) @ d.T


def _grid_around(points_lps: np.ndarray, direction: np.ndarray, spacing_xyz, margin_mm: float) -> dict:
    """A grid with ``direction`` and ``spacing_xyz`` whose voxel centres cover the points + margin."""
    local = points_lps @ direction  # coordinates along the grid's axes
    low, high = local.min(0) - margin_mm, local.max(0) + margin_mm
    spacing = np.asarray(spacing_xyz, float)
    size = np.maximum(np.ceil((high - low) / spacing).astype(int) + 1, 1)
    origin = direction @ low
    return {"size": [int(s) for s in size], "spacing": spacing.tolist(), "origin": origin.tolist(),
            "direction": direction.ravel().tolist()}


def _resample(image: sitk.Image, g: dict, linear: bool) -> sitk.Image:
    return sitk.Resample(image, g["size"], sitk.Transform(), sitk.sitkLinear if linear else sitk.sitkNearestNeighbor,
                         g["origin"], g["spacing"], g["direction"], 0.0, image.GetPixelID())


def _slab_average(image: sitk.Image, g: dict, linear: bool) -> sitk.Image:
    """Mean (or, for labels, the label filling >= half the slab) over each slice's slab."""
    thick = g["spacing"][2]
    n = max(1, int(np.ceil(thick / SLAB_STEP_MM)))
    d = np.reshape(g["direction"], (3, 3))
    fine = dict(g, size=[g["size"][0], g["size"][1], g["size"][2] * n],
                spacing=[g["spacing"][0], g["spacing"][1], thick / n],
                origin=(np.asarray(g["origin"]) + d[:, 2] * (thick / n * 0.5 - thick / 2)).tolist())
    src = sitk.Cast(image, sitk.sitkFloat32) if linear else image
    arr = sitk.GetArrayFromImage(_resample(src, fine, linear))
    arr = arr.reshape(g["size"][2], n, *arr.shape[1:])
    if linear:
        out = arr.mean(axis=1)
    else:
        out = np.zeros((arr.shape[0], *arr.shape[2:]), arr.dtype)
        for value in np.unique(arr[arr > 0]):
            out[(arr == value).mean(axis=1) >= 0.5] = value
    result = sitk.GetImageFromArray(out.astype(sitk.GetArrayViewFromImage(image).dtype))
    result.SetOrigin(g["origin"])
    result.SetSpacing(g["spacing"])
    result.SetDirection(g["direction"])
    return result


def target_grid(image: sitk.Image, spec: Reacquisition, brain: sitk.Image | None = None) -> dict:
    """The re-acquired grid (size, spacing, origin, direction as SimpleITK lists)."""
    axes = SLICE_PLANES[spec.slice_plane]
    d = np.reshape(image.GetDirection(), (3, 3)) @ rotation(spec.tilt_deg) @ axes
    spacing = list(np.abs(axes.T) @ np.asarray(image.GetSpacing(), float))  # each grid axis's input spacing
    if spec.in_plane_mm:
        spacing[:2] = [spec.in_plane_mm] * 2
    if spec.slice_thickness_mm:
        spacing[2] = spec.slice_thickness_mm
    if spec.field_of_view == "brain" and brain is None:
        raise ValueError("field_of_view 'brain' needs the brain mask.")
    points = _foreground_points(image, brain if spec.field_of_view == "brain" else None)
    if spec.field_of_view == "vertex-cut":
        if brain is None:
            raise ValueError("field_of_view 'vertex-cut' needs the brain mask.")
        top = _foreground_points(image, brain)[:, 2].max()  # LPS z = superior
        points = points[points[:, 2] <= top - spec.vertex_cut_mm]
    return _grid_around(points, d, spacing, spec.margin_mm)


def reacquire(images: dict[str, sitk.Image], spec: Reacquisition, labels: tuple[str, ...] = (),
              brain_key: str = "brain") -> dict[str, sitk.Image]:
    """Re-acquire every image of ``images`` (same physical space) on the grid ``spec`` gives.

    ``images["image"]`` is the scan; names in ``labels`` are resampled as labels (nearest,
    or half-slab majority for thick slices); ``images[brain_key]`` (when present) places the
    ``brain`` and ``vertex-cut`` fields of view. Returns new images under the same names.
    """
    g = target_grid(images["image"], spec, images.get(brain_key))
    out = {}
    for name, im in images.items():
        linear = name not in labels
        if spec.slice_thickness_mm and spec.slab:
            out[name] = _slab_average(im, g, linear)
        else:
            out[name] = _resample(sitk.Cast(im, sitk.sitkFloat32) if linear else im, g, linear)
            if linear:
                out[name] = sitk.Cast(out[name], im.GetPixelID()) if im.GetPixelID() != sitk.sitkFloat32 \
                    else out[name]
    return out


def reacquire_case(case, spec: Reacquisition):
    """A :class:`~BrainMetSegLib.synth.case.SynthCase` re-acquired by ``spec``: image, brain,
    instance labels, tissue and confounder masks on the new grid. Lesion records keep their
    physical description (centre, diameter, pattern); ``voxels`` and ``volume_mm3`` are
    re-counted on the new grid (0 for a lesion thinner than half a thick slice, which the
    written truth then lacks). ``info["reacquisition"]`` records ``spec`` and the grid."""
    from dataclasses import asdict, replace

    images = {"image": case.image, "brain": case.brain, "labels": case.labels,
              **({"tissue": case.tissue} if case.tissue is not None else {}),
              **{f"confounder:{k}": v for k, v in case.confounders.items()}}
    labels = tuple(k for k in images if k != "image")
    out = reacquire(images, spec, labels=labels)
    counts = np.bincount(sitk.GetArrayViewFromImage(out["labels"]).ravel(),
                         minlength=len(case.lesions) + 1)
    voxel_mm3 = float(np.prod(out["labels"].GetSpacing()))
    lesions = [dict(r, voxels=int(counts[r["id"]]), volume_mm3=round(float(counts[r["id"]]) * voxel_mm3, 3))
               for r in case.lesions]
    grid = out["image"]
    info = dict(case.info, reacquisition={**asdict(spec), "spacing_mm": list(grid.GetSpacing()),
                                          "direction": [round(v, 6) for v in grid.GetDirection()]})
    return replace(case, image=out["image"], brain=out["brain"], labels=out["labels"], lesions=lesions,
                   tissue=out.get("tissue"), info=info,
                   confounders={k.split(":", 1)[1]: v for k, v in out.items() if k.startswith("confounder:")})
