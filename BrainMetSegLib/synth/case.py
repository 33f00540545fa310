"""One synthetic case: anatomy -> confounders -> lesions -> acquisition -> SimpleITK images."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from . import config as C
from .acquisition import acquire
from .anatomy import Anatomy, make_anatomy
from .confounders import convexity_dura, cortical_veins
from .deform import OutputGrid
from .lesions import draw_count, paint_lesion, paint_oedema, plan_lesions
from .templates import CONFOUNDER_REGIONS, available_anatomies, load_template

#: Output intensities: white matter of the case lands in this range (arbitrary units,
#: int16), so a model cannot rely on absolute values.
WM_LEVEL_RANGE = (250.0, 1500.0)


@dataclass
class SynthCase:
    """A generated case.

    image: CE-T1-like image (int16, arbitrary units); brain: brain mask (uint8);
    labels: instance label map (uint16, ids match ``lesions``); lesions: list of dicts
    (id, centre_ras_mm, diameter_mm, pattern, volume_mm3, location, ...);
    confounders: uint8 masks of enhancing non-lesion structures ("vessels", "dura",
    "choroid"); info: everything drawn for the case (anatomy, stratum, contrasts...);
    wm_level: the image value of normal white matter before bias and noise; tissue: the
    warped template's hard tissue classes (uint8: 1 CSF, 2 GM, 3 WM, 0 outside the brain);
    spec_index: per lesion record, the index of the planned lesion it was painted from;
    specs: the planned lesions painted (their analytic shapes: :mod:`.analytic`), in plan order.
    """

    image: sitk.Image
    brain: sitk.Image
    labels: sitk.Image
    lesions: list[dict]
    confounders: dict[str, sitk.Image]
    info: dict = field(default_factory=dict)
    wm_level: float = 1.0
    tissue: sitk.Image | None = None
    spec_index: list[int] = field(default_factory=list)
    specs: list = field(default_factory=list)

    def spec_of(self, lesion_id: int):
        """The planned lesion (:class:`~.lesions.LesionSpec`) painted as record ``lesion_id``."""
        return self.specs[self.spec_index[lesion_id - 1]]

    @property
    def binary(self) -> sitk.Image:
        """Binary (uint8) lesion mask, as written to ``labelsTr``."""
        return sitk.Cast(self.labels > 0, sitk.sitkUInt8)


def to_sitk(array: np.ndarray, grid: OutputGrid, pixel=None) -> sitk.Image:
    """Image on the output grid in LPS physical space (RAS-aligned axes: direction diag(-1, -1, 1))."""
    img = sitk.GetImageFromArray(array)
    if pixel is not None:
        img = sitk.Cast(img, pixel)
    img.SetSpacing(tuple(float(s) for s in grid.spacing))
    o = grid.origin_ras
    img.SetOrigin((-float(o[0]), -float(o[1]), float(o[2])))
    img.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    return img


def _choose_anatomy(rng: np.random.Generator, name: str) -> str:
    if name != "auto":
        return name
    names = available_anatomies()
    return names[int(rng.integers(len(names)))]


def _lesion_records(labels: np.ndarray, grid: OutputGrid, specs, counts
                    ) -> tuple[np.ndarray, list[dict], list[int]]:
    """Renumber lesions largest first and describe them from the voxelised labels.

    Returns the renumbered labels, the records and, per record, the index of its spec."""
    voxel_mm3 = float(np.prod(grid.spacing))
    order = sorted(range(len(specs)), key=lambda i: (-counts[i], i))
    lut = np.zeros(len(specs) + 1, np.uint16)
    for new, old in enumerate(order, start=1):
        lut[old + 1] = new
    labels = lut[labels]
    records = []
    idx = np.argwhere(labels > 0)
    ids = labels[labels > 0]
    for new, old in enumerate(order, start=1):
        s = specs[old]
        pts = idx[ids == new]
        centroid = grid.index_to_ras(pts.mean(0)) if len(pts) else s.centre_ras
        vol = len(pts) * voxel_mm3
        records.append({
            "id": new,
            "centre_ras_mm": [round(float(v), 3) for v in centroid],
            "diameter_mm": round(s.diameter_mm, 3),
            "equivalent_diameter_mm": round(float((6 * vol / np.pi) ** (1 / 3)), 3),
            "pattern": s.pattern,
            "volume_mm3": round(vol, 3),
            "voxels": int(len(pts)),
            "location": s.location,
            "enhancement_rel_wm": round(s.enhancement, 3),
            "necrosis_rel_wm": None if s.necrosis is None else round(s.necrosis, 3),
            "oedema_rel_wm": None if s.oedema is None else round(s.oedema, 3),
        })
    return labels, records, order


@dataclass
class CasePlan:
    """A case drawn up to its lesion plan: anatomy, confounders and lesion specs, nothing painted yet.

    rng: the case's generator, positioned just after the plan (the acquisition draws from it next);
    image: float32 (z, y, x) anatomy with confounders, WM = 1; brain: bool brain mask;
    masks: confounder masks; stripped: voxels zeroed for the skull-stripped look (or None);
    specs: planned lesions; stratum, requested: the drawn stratum and lesion count.
    """

    rng: np.random.Generator
    anatomy_name: str
    anat: Anatomy
    image: np.ndarray
    brain: np.ndarray
    masks: dict[str, np.ndarray]
    stripped: np.ndarray | None
    specs: list
    stratum: str
    requested: int


def plan_case(seed: int, config: C.SynthConfig) -> CasePlan:
    """Draw a case's anatomy, confounders and lesion plan from ``seed`` (the first half of
    :func:`make_case`; follow-ups reuse it to get the same patient)."""
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    anatomy_name = _choose_anatomy(rng, config.anatomy)
    template = load_template(anatomy_name)
    skull = config.skull
    spacing = config.spacing
    if config.spacing_range_mm is not None:
        in_plane, slice_ = (round(float(rng.uniform(*config.spacing_range_mm)), 3) for _ in range(2))
        spacing = (in_plane, in_plane, slice_)
    anat: Anatomy = make_anatomy(rng, template, spacing, config.field_of_view, config.margin_mm,
                                 skull, config.confounders, config.deformation)
    image = anat.image
    region = anat.region
    masks = {name: region == reg for name, reg in CONFOUNDER_REGIONS.items()}
    if config.confounders:
        veins, _ = cortical_veins(rng, anat, int(rng.integers(6, 16)))
        vessel_value = float(rng.uniform(*C.VESSEL_RANGE))
        image += veins * (vessel_value - image)
        masks["vessels"] |= veins >= 0.5
        if skull or template.has_skull:
            dura = convexity_dura(rng, anat) * float(rng.random() < 0.7)
            dura_value = float(rng.uniform(*C.DURA_RANGE))
            image += dura * (dura_value - image)
            masks["dura"] |= dura >= 0.5
    # Skull-stripped look: keep the brain and a 1.5 mm rim (CSF, dura, sinus edges).
    stripped = (anat.sdist < -1.5) if not skull else None
    if stripped is not None:
        image[stripped] = 0
    n, stratum = draw_count(rng, config.n_lesions, config.stratum)
    avoid = masks["vessels"] | masks["dura"] | masks["choroid"]
    specs = plan_lesions(rng, anat, n, config.diameter_range_mm, tuple(config.patterns), avoid)
    return CasePlan(rng=rng, anatomy_name=anatomy_name, anat=anat, image=image, brain=anat.brain,
                    masks=masks, stripped=stripped, specs=specs, stratum=stratum, requested=n)


def render_case(plan: CasePlan, specs: list, rng: np.random.Generator, config: C.SynthConfig,
                move=None, protocol: dict | None = None) -> SynthCase:
    """Paint ``specs`` into a copy of the plan's anatomy, then acquire with ``rng``.

    move: optional callable ``(arrays: dict[str, np.ndarray]) -> dict`` applied to the painted
    volumes (keys "image", "labels", "brain", "tissue", "stripped" and the confounder names) before
    the acquisition, e.g. a rigid head movement for a follow-up scan.
    protocol: an earlier scan's ``info["acquisition"]``: acquire with its protocol (a rescan;
    :func:`~BrainMetSegLib.synth.acquisition.acquire`).
    """
    anat, grid = plan.anat, plan.anat.grid
    image = plan.image.copy()  # the plan can be rendered again (follow-ups of the same patient)
    brain = plan.brain
    for spec in specs:
        paint_oedema(image, anat, spec)
    labels = np.zeros(grid.shape, np.uint16)
    counts = [paint_lesion(image, labels, brain, anat, spec, i + 1) for i, spec in enumerate(specs)]
    brain = brain | (labels > 0)
    masks, stripped, tissue = plan.masks, plan.stripped, anat.tissue
    if move is not None:
        moved = move({"image": image, "labels": labels, "brain": brain, "tissue": tissue,
                      "stripped": stripped, **masks})
        image, labels, brain, tissue, stripped = (moved[k] for k in ("image", "labels", "brain", "tissue",
                                                                     "stripped"))
        masks = {k: moved[k] for k in masks}
        counts = np.bincount(labels.ravel(), minlength=len(specs) + 1)[1:].tolist()
    labels, records, order = _lesion_records(labels, grid, specs, counts)
    info = {"anatomy": plan.anatomy_name, "stratum": plan.stratum, "requested_lesions": plan.requested,
            "lesions": len(records),
            "contrasts": {k: round(v, 4) for k, v in anat.contrasts.items()},
            "mirrored": anat.warp.flipped, "spacing_mm": [float(v) for v in grid.spacing]}
    if config.acquisition:
        image, acq = acquire(rng, image, grid.spacing, config.anisotropic_acquisition, protocol)
        info["acquisition"] = acq
        wm_level = float(rng.uniform(*WM_LEVEL_RANGE))
    else:
        wm_level = 1000.0
    info["wm_level"] = round(wm_level, 3)
    if stripped is not None:
        image[stripped & (labels == 0)] = 0  # stripping happens after acquisition: exact zeros
    out = np.clip(np.round(image * wm_level), 0, 32767).astype(np.int16)
    return SynthCase(
        image=to_sitk(out, grid),
        brain=to_sitk(brain.astype(np.uint8), grid),
        labels=to_sitk(labels, grid),
        lesions=records,
        confounders={k: to_sitk(v.astype(np.uint8), grid) for k, v in masks.items()},
        info=info,
        wm_level=wm_level,
        tissue=to_sitk(tissue.astype(np.uint8), grid),
        spec_index=list(order),
        specs=list(specs),
    )


def make_case(seed: int, config: C.SynthConfig | None = None) -> SynthCase:
    """Generate one case from ``seed`` (same seed and config -> identical arrays)."""
    config = config or C.SynthConfig()
    plan = plan_case(seed, config)
    case = render_case(plan, plan.specs, plan.rng, config)
    spec = config.reacquisition()
    if spec is None:
        return case
    from .reacquire import reacquire_case

    return reacquire_case(case, spec)
