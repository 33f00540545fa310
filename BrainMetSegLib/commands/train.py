"""``brainmetseg train``: train a model package with the paper's recipe (flags override it).

Single process::

    brainmetseg train DATA -o OUT

Several GPUs / nodes (or CPU processes with gloo), the same command under torchrun::

    torchrun --nproc_per_node 4 -m BrainMetSegLib train DATA -o OUT
"""

from __future__ import annotations

import argparse
import json
import re

from ..errors import InputError
from ..options import PAPER_SPACING_MM, TRAIN_PRECISIONS, Device, MaskMethod, PosSampling, Precision, values


def _ints(text: str) -> tuple[int, int, int]:
    parts = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give one size or three (x,y,z) in voxels, e.g. 128 or 96,96,64")
    return tuple(parts)


def _floats(text: str) -> tuple[float, float, float]:
    parts = [float(v) for v in text.replace("x", ",").split(",") if v.strip()]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give one spacing or three (x,y,z) in mm")
    return tuple(parts)


def _auto_or_float(text: str) -> float | None:
    return None if text == "auto" else float(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="nnU-Net raw dataset folder (dataset.json, imagesTr, labelsTr) or CSV manifest")
    p.add_argument("-o", "--output", required=True, help="output folder (model package in OUT/model)")
    p.add_argument("--name", default="brainmetseg-custom", help="model name written into the card")
    p.add_argument("--model-version", default="0.1.0", help="model version written into the card")
    g = p.add_argument_group("network")
    g.add_argument("--architecture", default="FlexibleUNet", help="FlexibleUNet, BasicUNet or SegResNet")
    g.add_argument("--backbone", default="resnet34",
                   help="FlexibleUNet encoder (resnet34 = the paper; resnet34_w16 a slim CPU variant)")
    g.add_argument("--dropout", type=float, default=0.5, help="decoder dropout (paper: 0.5)")
    g.add_argument("--arch-args", default=None,
                   help="JSON architecture arguments; replaces --backbone/--dropout, e.g. "
                        "'{\"features\": [8, 8, 16, 32, 64, 8]}' for BasicUNet")
    g.add_argument("--encoder-weights", default=None, metavar="FILE",
                   help="local 2D ImageNet ResNet-34 weights (torchvision state dict, .pth or .safetensors), "
                        "inflated to 3D for the encoder; nothing is downloaded")
    g.add_argument("--output-prior", type=float, default=0.01, metavar="P",
                   help="initial output probability everywhere (bias = logit(P), default 0.01); "
                        "0 = PyTorch's default initialisation")
    g.add_argument("--init-weights", default=None, metavar="PATH",
                   help="start from 3D weights: a model package folder, a training checkpoint or a "
                        ".safetensors state dict (tensors taken by name where the shapes fit)")
    g.add_argument("--init-select", default=None, metavar="REGEX",
                   help="with --init-weights: take only tensors whose names match, e.g. '^encoder\\.'")
    g = p.add_argument_group("recipe (defaults: the paper)")
    g.add_argument("--spacing", type=_floats, default=PAPER_SPACING_MM, metavar="MM",
                   help=f"model grid spacing in mm (default {PAPER_SPACING_MM[0]:g})")
    g.add_argument("--patch", type=_ints, default=(128, 128, 128), metavar="VOX",
                   help="training patch in voxels (default 128; e.g. 64 on a CPU)")
    g.add_argument("--infer-patch", type=_ints, default=None, metavar="VOX",
                   help="sliding-window size for validation and the card (default: --patch)")
    g.add_argument("--batch-size", type=int, default=4)
    g.add_argument("--pos-fraction", type=float, default=0.5,
                   help="share of each batch centred on lesion voxels (default 0.5)")
    g.add_argument("--pos-sampling", default=PosSampling.VOXEL.value, choices=values(PosSampling),
                   help="lesion centres: every lesion voxel equally likely (default, the paper) "
                        "or every lesion equally likely (more patches on small lesions)")
    g.add_argument("--hard-negatives", type=float, default=0.0, metavar="FRACTION",
                   help="share of the non-lesion patches centred on bright non-lesion voxels "
                        "(vessels, dura); default 0 (the paper)")
    g.add_argument("--blob-loss", type=float, default=0.0, metavar="WEIGHT",
                   help="add WEIGHT x the per-lesion blob loss (Kofler et al. 2023) to Dice + BCE, so "
                        "small lesions weigh as much as large ones; default 0 (the paper)")
    g.add_argument("--lr", type=float, default=1e-4,
                   help="Adam learning rate (default 1e-4); with --resume it replaces the saved one")
    g.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.999))
    g.add_argument("--eps", type=float, default=1e-7)
    g.add_argument("--epochs", type=int, default=100)
    g.add_argument("--iters-per-epoch", type=int, default=250, help="optimizer steps per epoch")
    g.add_argument("--val-every", type=int, default=5, help="validate every N epochs")
    g.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap")
    g.add_argument("--flip-prob", type=float, default=0.5, help="left-right flip probability")
    g.add_argument("--elastic-prob", type=float, default=0.2, help="elastic deformation probability")
    g.add_argument("--gamma-prob", type=float, default=0.3, help="gamma augmentation probability")
    g.add_argument("--thick-prob", type=float, default=0.0,
                   help="probability of re-acquiring a patch as thick 2D slices (default 0)")
    g.add_argument("--thick-mm", type=float, nargs=2, default=(3.0, 7.5), metavar=("MIN", "MAX"),
                   help="slice thickness range of --thick-prob, mm (default 3 7.5)")
    g.add_argument("--no-augment", action="store_true", help="no augmentation at all")
    g = p.add_argument_group("data")
    g.add_argument("--fold", default="0", help="validation fold k of --folds, or 'all' (no validation)")
    g.add_argument("--folds", type=int, default=5)
    g.add_argument("--max-val-cases", type=int, default=None, help="validate on at most N cases (faster)")
    g.add_argument("--brain-mask", default=MaskMethod.DEEPBET.value, choices=values(MaskMethod),
                   help="brain mask for cases without one (brainmasksTr/ or manifest column win)")
    g.add_argument("--cache", default=None, help="preprocessed-case cache folder (default OUT/cache)")
    g.add_argument("--force", action="store_true", help="keep cases whose image/label geometry differs")
    _run_arguments(p.add_argument_group("run"))


def _run_arguments(g) -> None:
    """The run group: resume, devices, threads, limits, checkpoints, the card's operating point."""
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last")
    g.add_argument("--overwrite", action="store_true", help="start again in an OUT that holds a run")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=Device.AUTO.value, choices=values(Device))
    g.add_argument("--precision", default=Precision.AUTO.value, choices=[p.value for p in TRAIN_PRECISIONS],
                   help="auto: fp16 mixed precision on CUDA, fp32 on CPU")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    g.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    g.add_argument("--max-minutes", type=float, default=None, help="stop training after this many minutes")
    g.add_argument("--keep-every", type=int, default=0, metavar="N",
                   help="keep the weights of every N-th epoch (checkpoints/epoch_NNNN); default 0: only last and best")
    g.add_argument("--average-last", type=int, default=0, metavar="K",
                   help="package the mean of the last K kept checkpoints instead of the best epoch "
                        "(needs --keep-every)")
    g.add_argument("--threshold", type=_auto_or_float, default=None, metavar="auto|P",
                   help="card threshold (default auto: best lesion F1 on validation)")
    g.add_argument("--min-volume", type=_auto_or_float, default=None, metavar="auto|MM3",
                   help="card minimum lesion volume in mm^3 (default auto)")
    g.add_argument("--card", default=None, metavar="JSON",
                   help="JSON file with card fields to set (training_data, intended_use, limitations ...)")


def config_from_args(args: argparse.Namespace):
    from ..train.augment import AugmentConfig
    from ..train.config import TrainConfig

    if args.arch_args:
        try:
            arch_args = json.loads(args.arch_args)
        except json.JSONDecodeError as exc:
            raise InputError(f"--arch-args is not valid JSON ({exc}).") from None
    elif args.architecture == "FlexibleUNet":
        arch_args = {"backbone": args.backbone, "dropout": args.dropout}
    else:
        arch_args = {"dropout": args.dropout}
    if not 0 <= args.output_prior < 1:
        raise InputError(f"--output-prior {args.output_prior}: must be 0 (off) or between 0 and 1.")
    if args.init_weights and args.encoder_weights:
        raise InputError("--init-weights and --encoder-weights: give one of them.")
    if args.init_select:
        try:
            re.compile(args.init_select)
        except re.error as exc:
            raise InputError(f"--init-select {args.init_select!r}: not a regular expression ({exc}).") from None
    if not 0 <= args.pos_fraction <= 1:
        raise InputError(f"--pos-fraction {args.pos_fraction}: must be between 0 and 1.")
    if not 0 <= args.hard_negatives <= 1:
        raise InputError(f"--hard-negatives {args.hard_negatives}: must be between 0 and 1.")
    if not 0 <= args.blob_loss <= 100:
        raise InputError(f"--blob-loss {args.blob_loss}: must be between 0 and 100.")
    if not 0 <= args.thick_prob <= 1 or not 0 < args.thick_mm[0] <= args.thick_mm[1] <= 20:
        raise InputError(f"--thick-prob {args.thick_prob} / --thick-mm {args.thick_mm[0]:g} {args.thick_mm[1]:g}: "
                         "need a probability in [0, 1] and 0 < MIN <= MAX <= 20 mm.")
    augment = (AugmentConfig(0, 0, gamma_prob=0) if args.no_augment else
               AugmentConfig(flip_prob=args.flip_prob, elastic_prob=args.elastic_prob, gamma_prob=args.gamma_prob,
                             thick_prob=args.thick_prob, thick_mm=tuple(args.thick_mm)))
    return TrainConfig(
        architecture=args.architecture, architecture_args=arch_args, spacing_mm=args.spacing,
        patch_size=args.patch, batch_size=args.batch_size, pos_fraction=args.pos_fraction,
        pos_sampling=args.pos_sampling, hard_negative_fraction=args.hard_negatives,
        lambda_blob=args.blob_loss, lr=args.lr,
        betas=tuple(args.betas), eps=args.eps, epochs=args.epochs, iters_per_epoch=args.iters_per_epoch,
        val_every=args.val_every, infer_patch_size=args.infer_patch, overlap=args.overlap,
        fold=str(args.fold), n_folds=args.folds, seed=args.seed, device=args.device,
        precision=args.precision, threads=args.threads, workers=args.workers, augment=augment,
        brain_mask=args.brain_mask, encoder_weights=args.encoder_weights, init_weights=args.init_weights,
        init_select=args.init_select, output_prior=args.output_prior, threshold=args.threshold,
        min_lesion_volume_mm3=args.min_volume, max_minutes=args.max_minutes,
        max_val_cases=args.max_val_cases, keep_every=args.keep_every, average_last=args.average_last,
    )


def run(args: argparse.Namespace) -> int:
    from ..train.loop import train

    config = config_from_args(args)
    card_extra = None
    if args.card:
        try:
            with open(args.card, encoding="utf-8") as fh:
                card_extra = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{args.card}: cannot read the card fields ({exc}).") from None

    def log(message: str) -> None:
        print(message, flush=True)

    train(args.data, args.output, config, name=args.name, version=args.model_version, resume=args.resume,
          force=args.force, overwrite=args.overwrite, cache_dir=args.cache, card_extra=card_extra, log=log)
    return 0
