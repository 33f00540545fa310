"""The segmentation pipeline: one function behind the CLI, the Slicer module and the Python API.

    from BrainMetSegLib.pipeline import segment, SegmentConfig
    result = segment("ce_t1.nii.gz", SegmentConfig(device="cpu"))
    result.table[0]["volume_mm3"]

Every output is on the CE-T1's own grid, so it overlays the input in any viewer.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__
from .acquisition import ScanAcquisition, acquisition_notes
from .architectures import patch_size_problem, size_divisor
from .backends import choose_backend
from .candidate_stage import OUTSIDE_BRAIN_MAX_FRACTION, REASON_BELOW_CUT, apply_scorer, kept_below_cut_notes
from .checksums import sha256_file
from .coregister import onto_ce_t1
from .errors import InputError, ModelError, NotEnoughMemoryError, OptionError
from .grid_shifts import grid_offsets_vox
from .images import as_scalar_volume, read_scalar_volume, validate_image
from .inference import InferenceConfig, predict, resolve_device
from .int8_network import auto_runs, int8_ready, int8_record
from .lesions import lesion_table
from .models import ModelPackage, load_package
from .operating_point import OperatingPoint, lesion_labels
from .options import (
    Autocast,
    Backend,
    InferenceMode,
    PlanMode,
    Precision,
    ScorerMode,
)
from .pipeline_types import CaseInputs, Result, SegmentConfig
from .plausibility import (
    brain_volume_note,
    extracerebral_note,
    field_of_view_edge_note,
    image_notes,
    label_map_problem,
    mask_outside_head_note,
)
from .precision import choose_precision, cpu_features
from .preprocess import PreprocessConfig, Preprocessed, preprocess, preprocess_shifted
from .progress import ProgressCallback, ProgressEvent, Stage, check_cancelled, no_progress
from .sequences import SEQUENCE_LABELS
from .skullstrip import DEEPBET_GRID_THICK
from .thick_weights import MAIN, THICK, WeightsChoice, check_thick_file, choose


class _Timer:
    def __init__(self, progress: ProgressCallback, cancel):
        self.timings: dict[str, float] = {}
        self.progress, self.cancel = progress, cancel

    @contextmanager
    def stage(self, name: Stage, message: str):
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


def _inference_mode(config: SegmentConfig, card) -> InferenceMode:
    """The mode to run: an imported network whose size divisor is unknown runs only on its
    card's own window ("paper" mode); asking it for a whole-volume forward is an error."""
    if size_divisor(card.architecture, card.architecture_args) is not None:
        return config.inference_mode
    if config.inference_mode == InferenceMode.WHOLE:
        raise OptionError(f"--inference-mode whole: model {card.name} ({card.architecture}) runs only on "
                          "its card's window; use auto or paper.")
    return InferenceMode.PAPER


def unused_options(config: SegmentConfig, plan: dict) -> list[str]:
    """Sentences for options the run's plan (run.json ``inference_run``) did not use, so none is
    dropped silently: an explicit ``--overlap`` / ``--blend`` where ``auto`` resolved to one
    whole-volume forward (no window to overlap or blend) or to its large windows (their own
    overlap); ``--memory-budget`` under ``paper`` (the card's window whatever the memory);
    ``--backend-cache`` where nothing ran through OpenVINO."""
    notes = []
    mode = plan.get("mode")
    if mode in (PlanMode.WHOLE, PlanMode.WINDOWS):
        other_overlap = config.overlap is not None and config.overlap != plan["overlap"]
        told = [f"--overlap {config.overlap:g}"] if other_overlap else []
        if config.blend_mode is not None and mode == PlanMode.WHOLE:
            told.append(f"--blend {config.blend_mode}")
        how = ("the volume fitted one whole-volume forward" if mode == PlanMode.WHOLE else
               f"the volume ran in large windows overlapping by {plan['overlap']:g}")
        if told:
            notes.append(f"{' and '.join(told)} not used: {how} (--inference-mode auto); --inference-mode paper "
                         "runs the card's sliding window with them.")
    if config.memory_budget_mb is not None and mode == PlanMode.PAPER:
        notes.append(f"--memory-budget {config.memory_budget_mb:g} not used: --inference-mode paper runs the card's "
                     "window whatever the memory.")
    if config.backend_cache is not None and (plan.get("backend") or {}).get("used") != Backend.OPENVINO:
        notes.append(f"--backend-cache {config.backend_cache} not used: nothing ran through OpenVINO.")
    return notes


def resolve_operating_point(card, config: SegmentConfig) -> OperatingPoint:
    """The run's operating values: the config's where given, else the card's. The card's outline
    threshold is capped at a lower detection threshold given by the user (drawing a lesion
    tighter than it was detected would drop detected voxels); an explicit outline above the
    detection threshold is an :class:`OptionError`."""
    threshold = card.threshold if config.threshold is None else config.threshold
    min_volume = card.min_lesion_volume_mm3 if config.min_volume_mm3 is None else config.min_volume_mm3
    outline = config.outline_threshold
    if outline is None and card.outline_threshold is not None:
        outline = min(card.outline_threshold, threshold)
    if outline is not None and outline > threshold:
        raise OptionError(f"--outline-threshold {outline:g} is above the detection threshold {threshold:g}; "
                          "lesions are outlined at or below the probability they are detected at.")
    return OperatingPoint(threshold, min_volume, outline)


class Segmenter:
    """A loaded model plus settings; ``run`` segments one case from files, ``run_images`` from
    images in memory. Reuse it for a cohort (the network is built and loaded once).

    package: the model package (default: ``config.model`` looked up by name or folder).
    network: an already-built ``torch.nn.Module`` taking the card's input sequences as channels
        and giving one logit channel (e.g. a network being trained, or a stand-in in tests);
        used as given instead of loading the package's weights (for every scan: a card's
        ``thick_slice_weights`` then play no part).

    A package with ``thick_slice_weights`` runs them for scans of slice spacing above their
    split (:mod:`.thick_weights`), chosen per scan before inference; each set of weights is
    built on its first use only.
    """

    def __init__(self, config: SegmentConfig = SegmentConfig(), package: ModelPackage | None = None,
                 network=None):
        self.config = config
        self.package = package or load_package(config.model)
        self.device = resolve_device(config.device)
        card = self.package.card
        self.operating_point = resolve_operating_point(card, config)
        self._network_given = network is not None
        self._int8 = int8_ready(card, config.precision, config.backend, self.device, self._network_given)
        self._int8_checked: set[str] = set()
        self.preprocess_config = PreprocessConfig(
            spacing_mm=tuple(card.spacing_mm), brain_mask=config.brain_mask,
            mask_dilation_mm=config.mask_dilation_mm, crop_margin_mm=config.crop_margin_mm,
            normalisation=card.normalisation, device=self.device, trust_header=config.trust_header,
            deepbet_bf16=self._precision(config).autocast == Autocast.BF16,
            deepbet_openvino=self._deepbet_openvino(config),
            backend_cache=None if config.backend_cache is None else str(config.backend_cache))
        self.inference_config = InferenceConfig(
            patch_size=tuple(config.patch_size or card.patch_size),
            overlap=card.overlap if config.overlap is None else config.overlap,
            blend_mode=config.blend_mode or card.blend_mode, device=self.device,
            precision=config.precision, mode=_inference_mode(config, card),
            size_divisor=size_divisor(card.architecture, card.architecture_args) or 1,
            memory_budget_mb=config.memory_budget_mb, backend=config.backend, mirror=config.mirror,
            backend_cache=None if config.backend_cache is None else str(config.backend_cache))
        problem = patch_size_problem(card.architecture, self.inference_config.patch_size, card.architecture_args)
        if problem:
            raise InputError(f"patch size for model {card.name}: {problem}.")
        self._net = network
        self._lazy: dict[str, object] = {}
        self._other_nets: dict[str, object] = {}  # variant -> network, other than the main one
        if not self._network_given:
            check_thick_file(self.package)  # present and of the main weights' layout (headers only)
        explicit = config.threshold is not None or config.min_volume_mm3 is not None
        self.scorer = None if explicit else self.package.load_scorer()
        if config.mode is not None and self.scorer is None:
            raise OptionError(f"--mode {config.mode}: model {card.name} has no candidate scorer.")
        self.mode = (config.mode or ScorerMode.DEFAULT) if self.scorer else None

    @property
    def threshold(self) -> float:
        return self.operating_point.threshold

    @property
    def min_volume(self) -> float:
        return self.operating_point.min_volume_mm3

    @property
    def net(self):
        """The network (built and loaded from the package on first use, unless one was given)."""
        if self._net is None:
            self._net = self.package.load_network(self.device)
        return self._net

    def network(self, variant: str = MAIN):
        """The package's network running the ``variant`` weights (``main``: :attr:`net`;
        ``thick-slice``: the card's thick_slice_weights), built and loaded on first use."""
        if variant == MAIN:
            return self.net
        if variant not in self._other_nets:
            self._other_nets[variant] = self.package.load_network(self.device, variant)
        return self._other_nets[variant]

    def share_networks(self, other: Segmenter) -> None:
        """Run the networks ``other`` has built (same package card and device), each set of
        weights still chosen per scan: for cases needing other settings (e.g. a brain mask each)."""
        if (other.package.card != self.package.card or other.device != self.device
                or self._network_given or other._network_given):
            raise ValueError("share_networks: both must run the same package's networks on one device")
        self._net = self._net if self._net is not None else other._net
        self._other_nets = {**other._other_nets, **self._other_nets}

    def weights_choice(self, image: sitk.Image) -> WeightsChoice | None:
        """Which weights segment ``image`` (the input CE-T1, by its own slice spacing); None
        when the network was given or the card has one set of weights."""
        if self._network_given or not self.package.card.thick_slice_weights:
            return None
        return choose(self.package.card, ScanAcquisition.of(image).slice_spacing_mm)

    def _preprocess_config(self, variant: str) -> PreprocessConfig:
        """The preprocessing for a scan the ``variant`` weights run: deepbet on its 256^3 cube for
        the thick-slice weights (their figures were measured with it,
        :data:`~.skullstrip.DEEPBET_GRID_THICK`), the default cube otherwise."""
        if variant != THICK:
            return self.preprocess_config
        return replace(self.preprocess_config, deepbet_cube=DEEPBET_GRID_THICK)

    def _network_for_run(self, variant: str = MAIN):
        """The network :func:`predict` gets: where OpenVINO runs the forward (the same choice as
        deepbet's) and the package's network is plain (one weights file, plain ``network_io``), a
        :class:`~.lazy_network.LazyNetwork`, built only for an export, a count or a fallback to
        torch (the weights' sha256 checked now, as a load does); otherwise the network itself."""
        built = self._net is not None if variant == MAIN else variant in self._other_nets
        openvino_package = not built and not self._network_given and self.preprocess_config.deepbet_openvino
        if not (openvino_package and self.package.io().is_plain and len(self.package.weight_files(variant)) == 1):
            return self.network(variant)
        if variant not in self._lazy:
            from .lazy_network import LazyNetwork
            from .models import verify_weights

            verify_weights(self.package, variant)
            self._lazy[variant] = LazyNetwork(lambda: self.network(variant))
        return self._lazy[variant]

    def _deepbet_openvino(self, config: SegmentConfig) -> bool:
        """deepbet runs in OpenVINO when the backend resolves to it (auto: CPU, fp32, importable);
        ``--backend openvino`` where it cannot run fails here, before any work."""
        precision = self._precision(config)
        return choose_backend(config.backend, self.device, precision.autocast,
                              native_bf16=precision.native_bf16).used == Backend.OPENVINO

    def _precision(self, config: SegmentConfig):
        return choose_precision(config.precision, self.device, int8_available=self._int8)

    def _int8_network(self, variant: str):
        """(the package's int8 network for ``variant``, or None; why it does not run, or "").
        It runs where int8 can run and is asked for (``--precision int8``, or ``auto`` for the
        sets the card's ``auto`` lists); its files are checked against the card on this
        Segmenter's first use of it (a process keeps compiled networks by their sha256, so
        another folder claiming the same is checked too)."""
        if not self._int8 or self.config.precision not in (Precision.AUTO, Precision.INT8):
            return None, ""
        card = self.package.card
        net = self.package.int8_network(variant)
        if self.config.precision == Precision.AUTO and not auto_runs(card.int8_network, variant):
            listed = ", ".join(card.int8_network.get("auto", [])) or "none"
            return None, (f"--precision auto runs the int8 networks model {card.name}'s card lists ({listed}), "
                          f"not the {variant} weights', which run as auto resolves without one (precision)")
        if net is None:
            return None, f"model {card.name} has no int8 network for its {variant} weights: fp32"
        if variant not in self._int8_checked:
            net.check_files()
            self._int8_checked.add(variant)
        return net, ""

    def run(self, inputs: CaseInputs | str, progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None) -> Result:
        """Segment one case (paths in ``inputs``); see :func:`segment`."""
        inputs = CaseInputs(inputs) if isinstance(inputs, str | Path) else inputs
        order = _check_sequences(inputs, self.package)
        timer = _Timer(progress or no_progress, cancel)
        warnings: list[str] = []
        with timer.stage(Stage.READ, "reading images"):
            images = [read_scalar_volume(getattr(inputs, s), SEQUENCE_LABELS[s], self.config.trust_header,
                                         warnings) for s in order]
        try:
            result = self._segment(images, inputs.id, timer, cancel, [getattr(inputs, s) for s in order])
        except (InputError, NotEnoughMemoryError) as exc:  # name the case's file (model errors name theirs)
            if str(inputs.t1ce) in str(exc):
                raise
            raise type(exc)(f"{inputs.t1ce}: {exc}") from None
        result.warnings[:0] = warnings
        result.provenance["inputs"] = {s: {"path": str(Path(p).resolve()), "sha256": sha256_file(p)}
                                       for s, p in inputs.given().items()}
        return result

    def run_images(self, images: Sequence[sitk.Image], case_id: str,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> Result:
        """Segment images already in memory (a viewer's volumes, a DICOM reader's output).

        images: one ``SimpleITK.Image`` per sequence of the card's ``input_sequences``, in that
        order (CE-T1 first); checked as files are (3D, scalar, finite, not constant) and never
        modified; extra sequences are co-registered onto the CE-T1 as in :meth:`run`.
        case_id: names the case in the result and in error messages.
        """
        wanted = list(self.package.card.input_sequences)
        if len(images) != len(wanted):
            raise InputError(f"{case_id}: model {self.package.card.name} takes {len(wanted)} image(s) "
                             f"({', '.join(SEQUENCE_LABELS.get(s, s) for s in wanted)}); {len(images)} given.")
        for seq, image in zip(wanted, images, strict=True):
            validate_image(image, case_id, SEQUENCE_LABELS.get(seq, seq))
        images = [as_scalar_volume(image) for image in images]
        return self._segment(images, case_id, _Timer(progress or no_progress, cancel), cancel,
                             [case_id] * len(images))

    def _segment(self, images: list[sitk.Image], case_id: str, timer: _Timer,
                 cancel: threading.Event | None, sources: list[str]) -> Result:
        """Co-register, preprocess, infer, threshold and measure; ``sources`` name the images
        (file paths or the case id) in messages."""
        for image, source in zip(images, sources, strict=True):
            problem = label_map_problem(image)
            if problem:
                raise InputError(f"{source}: {problem}")
        order = list(self.package.card.input_sequences)
        if len(order) > 1:
            with timer.stage(Stage.COREGISTER, "co-registering extra sequences to the CE-T1"):
                images = [images[0]] + [onto_ce_t1(images[0], image, SEQUENCE_LABELS[s], source)
                                        for s, image, source in zip(order[1:], images[1:], sources[1:],
                                                                    strict=True)]
        choice = self.weights_choice(images[0])
        variant = choice.variant if choice else MAIN
        with timer.stage(Stage.PREPROCESS, f"resampling, brain mask ({self.config.brain_mask}), normalising"):
            pre = preprocess(images, self._preprocess_config(variant))
            if not np.isfinite(pre.array).all():
                raise InputError("intensities became non-finite during preprocessing (values too large?); "
                                 "rescale the image.")
            notes = [f"{sources[0]}: {note}" for note in image_notes(images[0])]
            notes += [n for n in [brain_volume_note(pre.brain_ml, self.config.brain_mask)] if n]
            notes += [n for n in [extracerebral_note(pre.brain_ml, self.config.brain_mask),
                                  field_of_view_edge_note(pre.edge_ml),
                                  mask_outside_head_note(pre.brain_mask_run.get("outside_head_fraction"),
                                                         self.config.brain_mask)] if n]
            notes += acquisition_notes(images[0], self.package.card.acquisition, self.package.card.name)
        which = f" ({variant} weights: {choice.reason})" if choice else ""
        with timer.stage(Stage.LOAD_MODEL, f"loading model {self.package.card.name}{which}"):
            net = self._network_for_run(variant)
        plan: dict = {}
        int8, int8_not_run = self._int8_network(variant)
        inference_config = self.inference_config
        if int8_not_run and self.config.precision == Precision.INT8:  # asked for, none for these weights
            inference_config = replace(inference_config, precision=Precision.FP32)
            notes.append(f"{sources[0]}: --precision int8: {int8_not_run}.")
        infer = functools.partial(self._gated_probability, net, variant, inference_config, int8, plan, cancel)
        grids = self.config.grid_shifts
        with timer.stage(Stage.INFERENCE, f"inference ({self.config.inference_mode} mode)"):
            prob = infer(pre, _grid_progress(timer.progress, 0, grids))
            shifted = self._shifted_passes(images, pre, variant, infer, plan, timer.progress)
            notes += [f"{sources[0]}: {n}" for n in unused_options(self.config, plan)]
        with timer.stage(Stage.POSTPROCESS, "resampling back, thresholding, measuring lesions"):
            probability = pre.geometry.to_input(prob.astype(np.float32, copy=False), linear=True)
            if shifted is not None:
                probability = _mean_with(probability, shifted, self.config.grid_shifts)
            with_core = self.scorer is not None and pre.brain_undilated is not None
            brain, *core = pre.geometry.masks_to_input(pre.brain, *([pre.brain_undilated] if with_core else []))
            possible, stage = [], None
            if self.scorer is None:
                labels = lesion_labels(probability, self.operating_point)
                table = lesion_table(labels, probability, self.operating_point.outline)
            else:
                core = core[0] if core else None
                labels, table, possible, n = apply_scorer(probability, images[0], brain, self.scorer, self.mode,
                                                          self.operating_point.outline_threshold, core)
                stage = {"candidates": n, "lesions": len(table), "possible": len(possible),
                         "possible_outside_brain": sum(r["reason"] != REASON_BELOW_CUT for r in possible)}
                notes += [f"{sources[0]}: {note}" for note in kept_below_cut_notes(
                    table, self.scorer.modes[self.mode].cut, self.scorer.large_from_mm)]
        provenance = self.provenance()
        if choice is not None:
            provenance["model"]["weights_run"] = choice.record(self.package)
        provenance["inference_run"] = plan
        if int8_not_run:
            plan["int8_not_run"] = int8_not_run
        provenance["brain_mask_run"] = pre.brain_mask_run
        if stage is not None:
            provenance["settings"]["candidate_stage"].update(stage)
        return Result(case_id, labels, probability, table, timer.timings, provenance, notes, brain, possible)

    def _gated_probability(self, net, variant: str, config: InferenceConfig, int8, plan: dict, cancel,
                           pre: Preprocessed, progress: ProgressCallback) -> np.ndarray:
        """The network's probability on ``pre``'s model grid, zero outside its dilated brain mask."""
        prob = predict(net, pre.array, config, progress, cancel, info=plan,
                       network_id=None if self._network_given else self.package.network_identity(variant),
                       int8=int8)
        if not np.isfinite(prob).all():
            raise ModelError(f"{self.package.weight_files(variant)[0][0]}: the model produced NaN/Inf "
                             "probabilities.")
        prob[~pre.brain] = 0.0
        return prob

    def _shifted_passes(self, images: list[sitk.Image], pre: Preprocessed, variant: str, infer,
                        plan: dict, progress: ProgressCallback) -> np.ndarray | None:
        """Sum, on the CE-T1's grid (float64, (Z, Y, X)), of the probabilities of the test-time
        grid shifts after the first (:mod:`.grid_shifts`); None when the run has none. Each pass
        resamples the images onto its shifted grid and takes the first pass's brain masks."""
        offsets = grid_offsets_vox(self.config.grid_shifts)
        if len(offsets) == 1:
            return None
        config, total = self._preprocess_config(variant), None
        for k, offset in enumerate(offsets[1:], start=1):
            shifted = preprocess_shifted(images, pre, offset, config)
            prob = infer(shifted, _grid_progress(progress, k, len(offsets)))
            native = shifted.geometry.to_input(prob.astype(np.float32, copy=False), linear=True)
            array = sitk.GetArrayViewFromImage(native).astype(np.float64)
            total = array if total is None else total + array
        plan["grid_shifts"] = {"grids": len(offsets), "offsets_vox_xyz": [list(o) for o in offsets]}
        return total

    def candidate_settings(self) -> dict | None:
        """run.json's record of the candidate stage (None: the card's detection rule ran)."""
        if self.scorer is None:
            return None
        mode = self.scorer.modes[self.mode]
        return {"mode": self.mode, "cut": mode.cut, "review_from": mode.review_from, "large_cut": mode.large_cut,
                "large_from_mm": self.scorer.large_from_mm, "large_rule": self.scorer.large_rule,
                "candidate_threshold": self.scorer.candidate_threshold,
                "outside_brain_max_fraction": OUTSIDE_BRAIN_MAX_FRACTION,
                "scorer_sha256": self.package.card.candidate_scorer["sha256"]}

    def provenance(self) -> dict:
        card = self.package.card
        return {
            "library": {"name": "BrainMetSegLib", "version": __version__},
            "dependencies": dependency_versions(),
            "model": {"name": card.name, "version": card.version, "sha256": card.sha256,
                      "trained": card.trained, "folder": str(self.package.folder),
                      **({"thick_slice_weights": dict(card.thick_slice_weights)} if card.thick_slice_weights else {}),
                      **({"int8_network": int8_record(card.int8_network)} if card.int8_network else {})},
            "settings": {**asdict(self.config), **self.operating_point.as_settings(),
                         "candidate_stage": self.candidate_settings(),
                         "preprocess": asdict(self.preprocess_config),
                         "inference": asdict(self.inference_config)},
            "device": self.device,
            "cpu": cpu_features().as_dict(),
        }


def _grid_progress(progress: ProgressCallback, k: int, grids: int) -> ProgressCallback:
    """``progress`` for the network's pass on grid ``k`` of ``grids`` (test-time grid shifts): the
    stage's fraction runs once from 0 to 1 over all grids, each message naming its grid."""
    if grids == 1:
        return progress
    return lambda event: progress(replace(event, fraction=(k + event.fraction) / grids,
                                          message=f"grid {k + 1}/{grids}: {event.message}"))


def _mean_with(probability: sitk.Image, others_sum: np.ndarray, count: int) -> sitk.Image:
    """``probability`` averaged with ``count - 1`` others given as their sum (same grid), float32."""
    mean = (sitk.GetArrayViewFromImage(probability) + others_sum) / count
    out = sitk.GetImageFromArray(mean.astype(np.float32))
    out.CopyInformation(probability)
    return out


def dependency_versions() -> dict[str, str]:
    """The installed versions run.json records (a copy: the caller may change it)."""
    return dict(_dependency_versions())


@functools.cache
def _dependency_versions() -> dict[str, str]:
    """Looked up once per process: each lookup scans the installed distributions (~0.1 s a
    case on 2 cores) and the modules a process has imported do not change under it."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "monai", "SimpleITK", "numpy", "scipy", "scikit-image",
                 "connected-components-3d", "safetensors", "deepbet", "openvino"):
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


def untrained_message(package: ModelPackage) -> str:
    return (f"model {package.card.name} is UNTRAINED (random weights): its outputs show the "
            "pipeline working, not metastases.")
