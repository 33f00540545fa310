"""The segmentation pipeline: one function behind the CLI, the Slicer module and the Python API.

    from BrainMetSegLib.pipeline import segment, SegmentConfig
    result = segment("ce_t1.nii.gz", SegmentConfig(device="cpu"))
    result.table[0]["volume_mm3"]

Every output is on the CE-T1's own grid, so it overlays the input in any viewer.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__
from .architectures import SIZE_DIVISOR
from .coregister import onto_ce_t1
from .errors import InputError
from .inference import InferenceConfig, predict, resolve_device
from .io import read_scalar_volume, sha256_file
from .lesions import lesion_table, rethreshold
from .models import DEFAULT_MODEL, ModelPackage, load_package
from .precision import choose_precision, cpu_features
from .preprocess import PreprocessConfig, preprocess
from .progress import ProgressCallback, ProgressEvent, check_cancelled, no_progress

SEQUENCES = ("t1ce", "t1", "t2", "flair")
SEQUENCE_LABELS = {"t1ce": "CE-T1", "t1": "T1", "t2": "T2", "flair": "FLAIR"}


@dataclass(frozen=True)
class SegmentConfig:
    """Settings of a segmentation run; ``None`` means "the model card's value".

    threshold: probability above which a voxel is metastasis.
    min_volume_mm3: smaller predicted components are removed (mm^3).
    brain_mask: ``"deepbet"``, ``"none"`` (already skull-stripped) or a mask file.
    mask_dilation_mm: dilation of the brain mask before it gates predictions (mm).
    inference_mode: ``"auto"`` (one forward over the cropped brain when it fits
        ``memory_budget_mb``, else large windows), ``"whole"`` or ``"paper"`` (the card's
        patch and overlap, averaged); see :mod:`BrainMetSegLib.inference`.
    memory_budget_mb: memory the forward may use in ``auto`` mode (MiB); None = default.
    """

    model: str = DEFAULT_MODEL
    device: str = "auto"
    precision: str = "auto"
    threshold: float | None = None
    min_volume_mm3: float | None = None
    brain_mask: str = "deepbet"
    mask_dilation_mm: float = 4.0
    crop_margin_mm: float = 8.0
    patch_size: tuple[int, int, int] | None = None
    overlap: float | None = None
    blend_mode: str | None = None
    inference_mode: str = "auto"
    memory_budget_mb: float | None = None


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
        for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return name

    def given(self) -> dict[str, str]:
        return {s: getattr(self, s) for s in SEQUENCES if getattr(self, s)}


@dataclass
class Result:
    """Everything a run produced. Images are on the CE-T1's grid."""

    case_id: str
    labels: sitk.Image
    probability: sitk.Image
    table: list[dict]
    timings_s: dict[str, float]
    provenance: dict = field(default_factory=dict)

    @property
    def n_lesions(self) -> int:
        return len(self.table)


class _Timer:
    def __init__(self, progress: ProgressCallback, cancel):
        self.timings: dict[str, float] = {}
        self.progress, self.cancel = progress, cancel

    @contextmanager
    def stage(self, name: str, message: str):
        check_cancelled(self.cancel)
        self.progress(ProgressEvent(name, 0.0, message))
        t0 = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t0, 3)
        self.progress(ProgressEvent(name, 1.0, f"{message} done ({self.timings[name]:.1f} s)"))


def _check_sequences(inputs: CaseInputs, package: ModelPackage) -> list[str]:
    wanted = list(package.card.input_sequences)
    given = inputs.given()
    missing = [s for s in wanted if s not in given]
    extra = [s for s in given if s not in wanted]
    if missing or extra:
        need = ", ".join(SEQUENCE_LABELS.get(s, s) for s in wanted)
        detail = (f"missing {', '.join('--' + s for s in missing)}" if missing
                  else f"{', '.join('--' + s for s in extra)} given but not used")
        raise InputError(f"{inputs.t1ce}: model {package.card.name} takes {len(wanted)} sequence(s) "
                         f"({need}); {detail}.")
    return wanted


class Segmenter:
    """A loaded model plus settings; ``run`` segments one case. Reuse it for a cohort."""

    def __init__(self, config: SegmentConfig = SegmentConfig(), package: ModelPackage | None = None):
        self.config = config
        self.package = package or load_package(config.model)
        self.device = resolve_device(config.device)
        card = self.package.card
        self.threshold = card.threshold if config.threshold is None else config.threshold
        self.min_volume = card.min_lesion_volume_mm3 if config.min_volume_mm3 is None else config.min_volume_mm3
        self.preprocess_config = PreprocessConfig(
            spacing_mm=tuple(card.spacing_mm), brain_mask=config.brain_mask,
            mask_dilation_mm=config.mask_dilation_mm, crop_margin_mm=config.crop_margin_mm,
            normalisation=card.normalisation, device=self.device,
            deepbet_bf16=choose_precision(config.precision, self.device).autocast == "bf16")
        self.inference_config = InferenceConfig(
            patch_size=tuple(config.patch_size or card.patch_size),
            overlap=card.overlap if config.overlap is None else config.overlap,
            blend_mode=config.blend_mode or card.blend_mode, device=self.device,
            precision=config.precision, mode=config.inference_mode,
            size_divisor=SIZE_DIVISOR.get(card.architecture, 32), memory_budget_mb=config.memory_budget_mb)
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"threshold {self.threshold} must lie strictly between 0 and 1.")
        self._net = None

    @property
    def net(self):
        if self._net is None:
            self._net = self.package.load_network(self.device)
        return self._net

    def _read(self, inputs: CaseInputs, timer: _Timer) -> list[sitk.Image]:
        order = _check_sequences(inputs, self.package)
        with timer.stage("read", "reading images"):
            images = {s: read_scalar_volume(p, SEQUENCE_LABELS[s]) for s, p in inputs.given().items()}
        if len(order) > 1:
            with timer.stage("coregister", "co-registering extra sequences to the CE-T1"):
                for s in order[1:]:
                    images[s] = onto_ce_t1(images["t1ce"], images[s], SEQUENCE_LABELS[s], getattr(inputs, s))
        return [images[s] for s in order]

    def run(self, inputs: CaseInputs | str, progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None) -> Result:
        """Segment one case (paths in ``inputs``); see :func:`segment`."""
        inputs = CaseInputs(inputs) if isinstance(inputs, str | Path) else inputs
        timer = _Timer(progress or no_progress, cancel)
        images = self._read(inputs, timer)
        result = self.run_images(images, timer, inputs.id, cancel)
        result.provenance["inputs"] = {s: {"path": str(Path(p).resolve()), "sha256": sha256_file(p)}
                                       for s, p in inputs.given().items()}
        return result

    def run_images(self, images: list[sitk.Image], timer: _Timer, case_id: str,
                   cancel: threading.Event | None = None) -> Result:
        """Segment images already read (CE-T1 first, extras on its grid)."""
        with timer.stage("preprocess", f"resampling, brain mask ({self.config.brain_mask}), normalising"):
            pre = preprocess(images, self.preprocess_config)
        with timer.stage("load_model", f"loading model {self.package.card.name}"):
            net = self.net
        plan: dict = {}
        with timer.stage("inference", f"inference ({self.config.inference_mode} mode)"):
            prob = predict(net, pre.array, self.inference_config, timer.progress, cancel, info=plan)
            prob[~pre.brain] = 0.0  # gate with the dilated brain mask
        with timer.stage("postprocess", "resampling back, thresholding, measuring lesions"):
            probability = pre.geometry.to_input(prob.astype(np.float32), linear=True)
            labels = rethreshold(probability, self.threshold, self.min_volume)
            table = lesion_table(labels, probability)
        provenance = self.provenance()
        provenance["inference_run"] = plan
        return Result(case_id, labels, probability, table, timer.timings, provenance)

    def provenance(self) -> dict:
        card = self.package.card
        return {
            "library": {"name": "BrainMetSegLib", "version": __version__},
            "dependencies": dependency_versions(),
            "model": {"name": card.name, "version": card.version, "sha256": card.sha256,
                      "trained": card.trained, "folder": str(self.package.folder)},
            "settings": {**asdict(self.config), "threshold_used": self.threshold,
                         "min_volume_mm3_used": self.min_volume,
                         "preprocess": asdict(self.preprocess_config),
                         "inference": asdict(self.inference_config)},
            "device": self.device,
            "cpu": cpu_features().as_dict(),
        }


def dependency_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "monai", "SimpleITK", "numpy", "scipy", "scikit-image",
                 "connected-components-3d", "safetensors", "deepbet"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def segment(inputs: CaseInputs | str, config: SegmentConfig = SegmentConfig(),
            progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None) -> Result:
    """Segment metastases in one case: instance labels, probability map and lesion table.

    inputs: a CE-T1 path, or :class:`CaseInputs` with extra sequences for models that take them.
    """
    return Segmenter(config).run(inputs, progress, cancel)


def with_overrides(config: SegmentConfig, **kw) -> SegmentConfig:
    """``config`` with the given fields replaced where the value is not None."""
    return replace(config, **{k: v for k, v in kw.items() if v is not None})


def untrained_message(package: ModelPackage) -> str:
    return (f"model {package.card.name} is UNTRAINED (random weights): its outputs show the "
            "pipeline working, not metastases.")
