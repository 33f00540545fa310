"""The training recipe (:class:`TrainConfig`): what every training step reads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import InputError, OptionError
from ..operating_point import OperatingPoint
from ..options import (
    PAPER_SPACING_MM,
    PAPER_THRESHOLD,
    TRAIN_PRECISIONS,
    Device,
    MaskMethod,
    PosSampling,
    Precision,
    as_options,
    number,
)
from .augment import AugmentConfig


@dataclass
class TrainConfig:
    """The training recipe; defaults are the paper's (SPEC.md).

    spacing_mm: model grid (x, y, z) mm. patch_size: training patch (x, y, z) voxels.
    iters_per_epoch: optimizer steps per epoch (per rank; the effective batch is
        batch_size x world size). val_every: validate every N epochs (and after the last).
    infer_patch_size: sliding-window size written into the card and used for validation.
    precision: ``auto`` (fp16 autocast + grad scaling on CUDA, fp32 on CPU), ``fp32``, ``bf16``.
    threshold / min_lesion_volume_mm3: a number, or ``None`` to choose them on the
        validation split (best lesion-wise F1).
    output_prior: initial output probability (bias = logit(prior), see
        :func:`~BrainMetSegLib.architectures.init_output_prior`); None or 0 = PyTorch's default.
    init_weights / init_select: start from 3D weights (model package, checkpoint or
        safetensors), optionally only the tensors whose names match the regex ``init_select``.
    max_minutes: stop after this much training time (checked every iteration), then
        validate and package as usual; ``None`` = no limit.
    pos_sampling: how lesion centres are drawn, ``"voxel"`` (the paper) or ``"lesion"``
        (each lesion equally likely; see :mod:`.sampling`).
    hard_negative_fraction: share of the non-lesion patches centred on bright non-lesion
        brain voxels (vessels, sinuses, dura); 0 = the paper (any brain voxel).
    lambda_blob: weight of the per-lesion blob loss added to Dice + BCE (:mod:`.losses`);
        0 = the paper.
    lr: learning rate; a resumed run takes the one given now (a step decay is a resume
        with a smaller ``lr``).
    keep_every: keep the network weights of every N-th epoch (``checkpoints/epoch_NNNN``);
        0 = keep only ``last`` and ``best``.
    average_last: package the element-wise mean of the last K kept checkpoints
        (:mod:`.averaging`) instead of the best epoch on validation; 0 = the best epoch.
    Choices given as strings become the enum members of :mod:`~BrainMetSegLib.options` on creation.
    """

    architecture: str = "FlexibleUNet"
    architecture_args: dict = field(default_factory=lambda: {"backbone": "resnet34", "dropout": 0.5})
    spacing_mm: tuple[float, float, float] = PAPER_SPACING_MM
    patch_size: tuple[int, int, int] = (128, 128, 128)
    batch_size: int = 4
    pos_fraction: float = 0.5
    pos_sampling: PosSampling = PosSampling.VOXEL
    hard_negative_fraction: float = 0.0
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-7
    lambda_dice: float = 1.0
    lambda_bce: float = 1.0
    lambda_blob: float = 0.0
    batch_dice: bool = True
    epochs: int = 100
    iters_per_epoch: int = 250
    val_every: int = 5
    infer_patch_size: tuple[int, int, int] | None = None
    overlap: float = 0.5
    fold: str = "0"
    n_folds: int = 5
    seed: int = 0
    device: Device = Device.AUTO
    precision: Precision = Precision.AUTO
    threads: int | None = None
    workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    brain_mask: MaskMethod = MaskMethod.DEEPBET
    encoder_weights: str | None = None
    init_weights: str | None = None
    output_prior: float | None = 0.01
    init_select: str | None = None
    threshold: float | None = None
    min_lesion_volume_mm3: float | None = None
    max_minutes: float | None = None
    max_val_cases: int | None = None
    keep_every: int = 0
    average_last: int = 0

    def __post_init__(self):
        self._check_numbers()
        if self.keep_every < 0 or self.average_last < 0:
            raise InputError("--keep-every and --average-last: counts >= 0.")
        if self.average_last and not self.keep_every:
            raise InputError(f"--average-last {self.average_last}: needs kept checkpoints (--keep-every N).")
        if self.average_last * self.keep_every > self.epochs:
            raise InputError(f"--average-last {self.average_last} with --keep-every {self.keep_every}: "
                             f"{self.epochs} epochs keep fewer than {self.average_last} checkpoints.")
        as_options(self, pos_sampling=(PosSampling, "--pos-sampling"), device=(Device, "--device"),
                   precision=(Precision, "--precision"), brain_mask=(MaskMethod, "--brain-mask"))
        if self.precision not in TRAIN_PRECISIONS:
            raise OptionError(f"--precision {self.precision}: training runs in {', '.join(TRAIN_PRECISIONS)}; "
                              "an int8 network is made from trained weights (docs/training/add_int8_network.py).")

    def _check_numbers(self) -> None:
        """Every number finite and in its range (:func:`~BrainMetSegLib.options.number`), named as
        ``brainmetseg train``'s option: a NaN learning rate or dropout ended in an internal error,
        ``--epochs 0`` or a flip probability of 2 wrote a package."""
        unit = {"low": 0.0, "high": 1.0}

        def count(low: int) -> dict:
            return {"low": low, "integer": True}

        required = [(self.lr, "--lr", {"low": 0.0, "low_open": True, "high": 1.0}),
                    (self.eps, "--eps", {"low": 0.0, "low_open": True, "high": 1.0}),
                    *((b, "--betas", {**unit, "high_open": True}) for b in self.betas),
                    *((s, "--spacing (mm)", {"low": 0.0, "low_open": True, "high": 10.0}) for s in self.spacing_mm),
                    (self.overlap, "--overlap", {**unit, "high_open": True}),
                    (self.augment.flip_prob, "--flip-prob", unit), (self.augment.elastic_prob, "--elastic-prob", unit),
                    (self.augment.gamma_prob, "--gamma-prob", unit),
                    (self.batch_size, "--batch-size", count(1)), (self.epochs, "--epochs", count(1)),
                    (self.iters_per_epoch, "--iters-per-epoch", count(1)), (self.val_every, "--val-every", count(1)),
                    (self.workers, "--workers", count(0))]
        optional = [(self.threads, "--threads", count(1)), (self.max_val_cases, "--max-val-cases", count(1)),
                    (self.max_minutes, "--max-minutes", {"low": 0.0, "low_open": True}),
                    (self.threshold, "--threshold", {**unit, "low_open": True, "high_open": True}),
                    (self.min_lesion_volume_mm3, "--min-volume (mm^3)", {"low": 0.0}),
                    (self.architecture_args.get("dropout"), "--dropout", {**unit, "high_open": True})]
        for value, name, bounds in required + [c for c in optional if c[0] is not None]:
            number(value, name, error=OptionError, **bounds)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def validation_point(self) -> OperatingPoint:
        """The operating point validation scores epochs at: the given values, else the paper's
        threshold and no minimum volume (the card's are chosen on validation at the end)."""
        return OperatingPoint(PAPER_THRESHOLD if self.threshold is None else self.threshold,
                              self.min_lesion_volume_mm3 or 0.0)
