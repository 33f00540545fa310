"""What a segmentation run takes and gives: its settings (:class:`SegmentConfig`), one case's
image paths (:class:`CaseInputs`) and what it produced (:class:`Result`).

Kept apart from :mod:`BrainMetSegLib.pipeline` (which runs them) so that readers of a run's
settings or results need not import the pipeline's stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from .candidate_stage import ReviewRow
from .images import split_image_suffix
from .lesions import LesionTableRow
from .models import DEFAULT_MODEL
from .options import (
    Backend,
    BlendMode,
    Device,
    InferenceMode,
    MaskMethod,
    Mirroring,
    Precision,
    ScorerMode,
    check_segment_config,
)
from .sequences import SEQUENCES


@dataclass(frozen=True)
class SegmentConfig:
    """Settings of a segmentation run; ``None`` means "the model card's value".

    threshold: detection threshold: components of probability > threshold are lesions.
    min_volume_mm3: smaller detected components are removed (mm^3).
    outline_threshold: each detected lesion is drawn as its connected region of probability >
        outline_threshold (<= threshold); see :mod:`BrainMetSegLib.operating_point`.
    brain_mask: a :class:`~BrainMetSegLib.options.MaskMethod` (``"none"``: already
        skull-stripped) or a mask file's path (kept as given).
    mask_dilation_mm: dilation of the brain mask before it gates predictions (mm).
    crop_margin_mm: margin around the dilated brain's bounding box (mm); see
        :class:`~BrainMetSegLib.preprocess.PreprocessConfig`.
    trust_header: use an input's geometry even where its header makes orientation or spacing
        untrustworthy (NIfTI pixdim <= 0 or no qform/sform code, MetaImage/NRRD spacing <= 0);
        refused by default, since a wrong orientation silently mirrors every lesion.
    Every value is checked on creation, and choices given as strings become the enum members of
    :mod:`~BrainMetSegLib.options` (:func:`options.check_segment_config`).
    backend: ``"auto"``, ``"torch"`` or ``"openvino"`` (:mod:`BrainMetSegLib.backends`);
    backend_cache: folder of OpenVINO's exported networks (None: ``$BRAINMETSEG_CACHE/openvino``).
    inference_mode: ``"auto"`` (one forward over the cropped brain when it fits
        ``memory_budget_mb``, else large windows), ``"whole"`` or ``"paper"`` (the card's
        patch and overlap, averaged); see :mod:`BrainMetSegLib.inference`.
    memory_budget_mb: memory the forward may use in ``auto`` mode (MiB); None = default.
    mode: operating mode of a model with a candidate scorer (:class:`~BrainMetSegLib.options.ScorerMode`;
        None = "default"); see :mod:`BrainMetSegLib.candidate_stage`. An explicit
        ``threshold`` or ``min_volume_mm3`` turns the candidate stage off (the card's rule).
    mirror: test-time mirroring (:class:`~BrainMetSegLib.options.Mirroring`; ``none`` by default:
        priced in docs/speed.md, 2x / 8x the network's time).
    grid_shifts: test-time grid shifts (:mod:`~BrainMetSegLib.grid_shifts`): the probability is
        averaged over this many model grids, shifted by half a model voxel (one of
        :data:`~BrainMetSegLib.options.GRID_SHIFTS`; 1, the default, is off; N x the network's time).
    """

    model: str = DEFAULT_MODEL
    device: Device = Device.AUTO
    precision: Precision = Precision.AUTO
    backend: Backend = Backend.AUTO
    backend_cache: str | None = None
    threshold: float | None = None
    min_volume_mm3: float | None = None
    outline_threshold: float | None = None
    brain_mask: MaskMethod | str = MaskMethod.DEEPBET
    mask_dilation_mm: float = 4.0
    crop_margin_mm: float = 0.0
    patch_size: tuple[int, int, int] | None = None
    overlap: float | None = None
    blend_mode: BlendMode | None = None
    trust_header: bool = False
    inference_mode: InferenceMode = InferenceMode.AUTO
    memory_budget_mb: float | None = None
    mode: ScorerMode | None = None
    mirror: Mirroring = Mirroring.NONE
    grid_shifts: int = 1

    def __post_init__(self):
        check_segment_config(self)


@dataclass(frozen=True)
class CaseInputs:
    """Paths of one case's images; only ``t1ce`` is required."""

    t1ce: str
    t1: str | None = None
    t2: str | None = None
    flair: str | None = None
    case_id: str | None = None

    @property
    def id(self) -> str:
        if self.case_id:
            return self.case_id
        name = Path(self.t1ce).name
        parts = split_image_suffix(name)
        return name if parts is None else parts[0]

    def given(self) -> dict[str, str]:
        return {s: getattr(self, s) for s in SEQUENCES if getattr(self, s)}


@dataclass
class Result:
    """Everything a run produced. Images are on the CE-T1's grid."""

    case_id: str
    labels: sitk.Image
    probability: sitk.Image
    table: list[LesionTableRow]
    timings_s: dict[str, float]
    provenance: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    brain_mask: sitk.Image | None = None  # uint8, the dilated mask that gated the probability
    possible: list[ReviewRow] = field(default_factory=list)  # candidates listed for review (not lesions)

    @property
    def n_lesions(self) -> int:
        return len(self.table)
