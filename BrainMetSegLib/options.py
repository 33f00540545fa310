"""The typed values of run options and model-card fields, each defined once, and their checks.

Every choice is an enum here (the CLI's ``choices``, the configs' field types and the card
use the same one): a config takes a member or its string and turns it into the member once, on
creation (:func:`as_option`, as MONAI's ``look_up_option``), so code past that point compares
members, never literals. A member is a ``str``, so run.json and f-strings write its value.
Every number goes through :func:`number` (finite, in range, not a bool or a string).
A check failing raises :class:`OptionError` (a run option) or :class:`ModelError` (a card
field, :mod:`.card_check`) with the option or field named, so ``--overlap 1``,
``--min-volume nan`` or a card with ``"normalisation": "magic"`` stop before any work.

Standard library only (no numpy): :mod:`.operating_point` imports it, and the Slicer module
reads operating points before the library's dependencies are installed.
"""

from __future__ import annotations

import math
import numbers
import os
from enum import StrEnum

from .errors import ModelError, OptionError

# The paper's grid (Shi et al. 2025: resampled to 0.833 mm isotropic) and its binary mask
# (probability > 0.5): the defaults of model cards, training and preprocessing.
PAPER_SPACING_MM = (0.833, 0.833, 0.833)
PAPER_THRESHOLD = 0.5
# A probability threshold lies strictly inside this interval (0 keeps every voxel, 1 none).
PROBABILITY_OPEN_RANGE = (0.0, 1.0)


class Device(StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Precision(StrEnum):
    """Inference arithmetic (:mod:`BrainMetSegLib.precision`); ``int8`` is the model package's
    post-training-quantised network run by OpenVINO (:mod:`BrainMetSegLib.int8_network`)."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    INT8 = "int8"


# What training can run in (an int8 network is made from trained weights, never trained).
TRAIN_PRECISIONS = (Precision.AUTO, Precision.FP32, Precision.BF16)


class Backend(StrEnum):
    """What runs the network's forward (see :mod:`BrainMetSegLib.backends`): ``auto`` = OpenVINO
    on a CPU running fp32 when it imports, torch elsewhere."""

    AUTO = "auto"
    TORCH = "torch"
    OPENVINO = "openvino"


class InferenceMode(StrEnum):
    """How the network covers the brain (see :mod:`BrainMetSegLib.inference`)."""

    AUTO = "auto"
    WHOLE = "whole"
    PAPER = "paper"


class Mirroring(StrEnum):
    """Test-time mirroring: the network also sees the volume flipped, and the logits of every
    flip combination are averaged (as nnU-Net does). ``lr``: left-right (the grid's X axis),
    2 forwards; ``all``: X, Y and Z, 8 forwards. Priced in docs/speed.md."""

    NONE = "none"
    LR = "lr"
    ALL = "all"


# Axes of the pipeline's (Z, Y, X) LPS array flipped by each mirroring (X = left-right).
MIRROR_AXES_ZYX = {Mirroring.NONE: (), Mirroring.LR: (2,), Mirroring.ALL: (0, 1, 2)}

# Test-time grid shifts (segment --grid-shifts N, BrainMetSegLib.grid_shifts): how many model
# grids, shifted by half a model voxel from each other, the probability is averaged over (1: off).
GRID_SHIFTS = (1, 2, 4, 8)


class BlendMode(StrEnum):
    CONSTANT = "constant"
    GAUSSIAN = "gaussian"


class Normalisation(StrEnum):
    ZSCORE_BRAIN = "zscore-brain"
    NONE = "none"
    # imported models' own z-scores (BrainMetSegLib.normalisation.SCHEMES)
    NNUNET_ZSCORE = "nnunet-zscore"
    NNUNET_ZSCORE_MASKED = "nnunet-zscore-masked"
    ZSCORE_NONZERO = "zscore-nonzero"


class MaskMethod(StrEnum):
    """Brain-mask methods by name; any other ``brain_mask`` value is a mask file."""

    DEEPBET = "deepbet"
    NONE = "none"


class OutputFormat(StrEnum):
    NIFTI = "nii.gz"
    NRRD = "nrrd"
    MHA = "mha"

    @property
    def suffix(self) -> str:
        return "." + self.value


class ProgressMode(StrEnum):
    """What a command's ``--progress`` prints (:func:`BrainMetSegLib.progress.reporter`)."""

    BAR = "bar"
    JSON = "json"
    NONE = "none"


class Diameters(StrEnum):
    """Where ``compare`` measures lesion diameters (:mod:`BrainMetSegLib.longitudinal.measuring`):
    on the CE-T1 image's edge where it holds, else the probability outline; or the outline only."""

    IMAGE = "image"
    OUTLINE = "outline"


class PosSampling(StrEnum):
    """How training draws lesion-centred patches (:mod:`BrainMetSegLib.train.sampling`)."""

    VOXEL = "voxel"
    LESION = "lesion"


class ScorerMode(StrEnum):
    """Operating modes of a candidate scorer (:mod:`BrainMetSegLib.candidate_stage`)."""

    DEFAULT = "default"
    SENSITIVE = "sensitive"


#: The planes of 2D slices (``synth --slice-plane``, :data:`BrainMetSegLib.synth.reacquire.SLICE_PLANES`).
SLICE_PLANE_NAMES = ("axial", "coronal", "sagittal")

#: compare: a new lesion whose calibrated lesion probability is below this is equivocal ("PD to be
#: confirmed"): PD only on a lesion with at most about a 1-in-10 chance of being false
#: (:class:`BrainMetSegLib.longitudinal.rano.RanoConfig`, ``compare --equivocal-below``).
EQUIVOCAL_BELOW_LESION_PROBABILITY = 0.9

#: How lesions change at a synthetic follow-up (:mod:`BrainMetSegLib.synth.followup`, ``synth
#: --followup-scenario``); "repeat", a rescan with every lesion unchanged, is never drawn by "auto".
FOLLOWUP_SCENARIOS = ("progression", "response", "stable", "complete", "mixed", "repeat")
#: A synthetic follow-up's head movement: drawn within +- these degrees about each axis and mm
#: along each (``synth --followup-motion``).
FOLLOWUP_MOTION = (6.0, 8.0)
#: How a synthetic follow-up's painted head is moved onto the grid: "linear" (generator 1.x's
#: follow-ups: blurs edges by up to half a voxel, more at half-voxel shifts) or "cubic" (a spline).
FOLLOWUP_INTERPOLATIONS = ("linear", "cubic")


class SkullstripGrid(StrEnum):
    """Where deepbet runs (:func:`BrainMetSegLib.preprocess.brain_mask_checked`)."""

    WORLD_AXES = "world-axes"
    INPUT_AXES = "input-axes"
    MODEL_GRID = "model-grid"


class PlanMode(StrEnum):
    """How one volume was actually run (run.json's ``inference_run.mode``): an
    :class:`InferenceMode` resolved, ``windows`` being auto's large-window fallback."""

    WHOLE = "whole"
    WINDOWS = "windows"
    PAPER = "paper"
    IMPORTED_FRAMEWORK = "imported-framework"


class Autocast(StrEnum):
    """The arithmetic a forward runs in (a :class:`Precision` resolved for a device)."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The enum's values as plain strings (argparse ``choices``: its messages show their repr)."""
    return tuple(e.value for e in enum)


def as_option(enum: type[StrEnum], value, name: str, error=OptionError) -> StrEnum:
    """``value`` (a member or its string) as a member of ``enum``; ``error`` naming ``name`` and
    listing the valid values otherwise."""
    try:
        return enum(value)
    except (ValueError, TypeError):
        raise error(f"{name} {value!r} is not one of {', '.join(values(enum))}.") from None


def as_options(config, error=OptionError, **fields: tuple[type[StrEnum], str]) -> None:
    """Turn each named field of ``config`` (a dataclass, frozen or not) into its enum member
    (:func:`as_option`: ``fields`` maps a field to (enum, name in messages)); None stays None.
    For ``__post_init__``, so callers passing strings keep working."""
    for field, (enum, name) in fields.items():
        value = getattr(config, field)
        if value is not None:
            object.__setattr__(config, field, as_option(enum, value, name, error))


def as_brain_mask(value):
    """A ``brain_mask`` option: a :class:`MaskMethod` member for a method's name, anything else
    as given (a mask file's path; checked when read, and recorded in run.json as given)."""
    return MaskMethod(value) if isinstance(value, str) and value in values(MaskMethod) else value


def number(value, name: str, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, integer: bool = False,
           error=OptionError) -> float | int:
    """A finite real number within [low, high] (an end is excluded when ``*_open``).

    Strings and booleans are refused (a card's ``"0.8"`` is a typo to report, not to guess).
    """
    kind = "an integer" if integer else "a number"
    # numpy's bool is no numbers.Real, so it is refused here too (without importing numpy)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name} must be {kind}, not {value!r}.")
    value = float(value) if not isinstance(value, numbers.Integral) else int(value)
    if integer and isinstance(value, float) and not value.is_integer():
        raise error(f"{name} must be {kind}, not {value!r}.")
    if not math.isfinite(value):
        raise error(f"{name} must be a finite number, not {value!r}.")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise error(f"{name} must be {' and '.join(x for x in (lo, hi) if x)}, not {value!r}.")
    return int(value) if integer else float(value)


def triple(value, name: str, integer: bool = False, error=OptionError, **bounds) -> tuple:
    """Three numbers (x, y, z), each checked by :func:`number`."""
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise error(f"{name} must be a list of 3 numbers (x, y, z), not {value!r}.")
    return tuple(number(v, f"{name}[{i}]", integer=integer, error=error, **bounds)
                 for i, v in enumerate(value))


def probability_threshold(value, name: str, error=OptionError) -> float:
    """A threshold on a probability: a number inside :data:`PROBABILITY_OPEN_RANGE`."""
    return number(value, name, *PROBABILITY_OPEN_RANGE, low_open=True, high_open=True, error=error)


def overlap(value, name: str, error=OptionError) -> float:
    """Sliding-window overlap: a fraction in [0, 1) (1 would never advance the window)."""
    return number(value, name, 0.0, 1.0, high_open=True, error=error)


def text(value, name: str, error=ModelError, required: bool = False) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise error(f"{name} must be {'a non-empty' if required else 'a'} string, not {value!r}.")
    return value


def cli_float(text_value: str) -> float:
    """argparse ``type`` for numbers: a float, checked further (finite, range) by the config."""
    try:
        return float(text_value)
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"{text_value!r} is not a number") from None


def check_grid_shifts(shifts) -> int:
    """``shifts`` as an int if it is one of :data:`GRID_SHIFTS` (an integer, NumPy's too, not a bool),
    else :class:`OptionError`."""
    if isinstance(shifts, bool) or not isinstance(shifts, numbers.Integral) or shifts not in GRID_SHIFTS:
        raise OptionError(f"--grid-shifts must be one of {', '.join(map(str, GRID_SHIFTS))}, not {shifts!r}.")
    return int(shifts)


def check_segment_config(config) -> None:
    """Check a :class:`~BrainMetSegLib.pipeline_types.SegmentConfig` and turn its choices into enum
    members (in place); :class:`OptionError` naming the option (as the CLI spells it). ``None``
    means "the model card's value" and passes."""
    as_options(config, device=(Device, "--device"), precision=(Precision, "--precision"),
               backend=(Backend, "--backend"), inference_mode=(InferenceMode, "--inference-mode"),
               mirror=(Mirroring, "--mirror"))
    object.__setattr__(config, "grid_shifts", check_grid_shifts(config.grid_shifts))
    if config.backend_cache is not None and (not isinstance(config.backend_cache, str | os.PathLike)
                                             or not str(config.backend_cache).strip()):
        raise OptionError(f"--backend-cache must be a folder, not {config.backend_cache!r}.")
    if config.memory_budget_mb is not None:
        number(config.memory_budget_mb, "--memory-budget (MiB)", low=64.0)
    as_options(config, blend_mode=(BlendMode, "--blend"))
    if config.threshold is not None:
        probability_threshold(config.threshold, "--threshold")
    if config.min_volume_mm3 is not None:
        number(config.min_volume_mm3, "--min-volume (mm^3)", low=0.0)
    if config.outline_threshold is not None:
        probability_threshold(config.outline_threshold, "--outline-threshold")
    if config.mode is not None:
        if config.mode not in values(ScorerMode):
            raise OptionError(f"--mode must be one of {', '.join(values(ScorerMode))}, not {config.mode!r}.")
        as_options(config, mode=(ScorerMode, "--mode"))
        if config.threshold is not None or config.min_volume_mm3 is not None:
            raise OptionError("--mode chooses lesions by the candidate scorer's lesion probability; "
                              "it cannot be combined with --threshold or --min-volume.")
    if config.overlap is not None:
        overlap(config.overlap, "--overlap")
    if config.inference_mode == InferenceMode.WHOLE and (config.overlap is not None or config.blend_mode is not None):
        raise OptionError("--overlap and --blend shape a sliding window, and --inference-mode whole runs one forward "
                          "of the whole volume; use --inference-mode paper (the card's window) with them.")
    if config.patch_size is not None:
        triple(config.patch_size, "patch_size", integer=True, low=8, high=1024)
    number(config.mask_dilation_mm, "mask_dilation_mm", low=0.0, high=50.0)
    number(config.crop_margin_mm, "crop_margin_mm", low=0.0, high=200.0)
    if not isinstance(config.brain_mask, str) or not config.brain_mask.strip():
        raise OptionError(f"--brain-mask must be {', '.join(values(MaskMethod))} or a mask file, "
                          f"not {config.brain_mask!r}.")
    object.__setattr__(config, "brain_mask", as_brain_mask(config.brain_mask))
    if not isinstance(config.model, str | os.PathLike) or not str(config.model).strip():
        raise OptionError(f"--model must be a model name or folder, not {config.model!r}.")
