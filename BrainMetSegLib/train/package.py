"""The last training steps: the operating point chosen on validation and the model package."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..operating_point import OperatingPoint
from ..options import Normalisation, PosSampling
from .averaging import load_average
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .metrics import case_metrics, summarise
from .run import Run, TrainData
from .validation import choose_operating_point, validate


def training_data_text(dataset, train_ids, val_ids, excluded) -> str:
    desc = dataset.description or {}
    synth = desc.get("synthetic")
    text = (f"{len(train_ids)} training and {len(val_ids)} validation cases from {dataset.source.name}"
            + (f" ({desc['name']})" if desc.get("name") else ""))
    if synth:
        text += (f"; synthetic phantoms written by {synth.get('generator', 'brainmetseg synth')} "
                 f"version {synth.get('version')} with seed {synth.get('seed')}")
    if excluded:
        text += f"; {len(excluded)} case(s) excluded by the geometry check"
    return text + "."


def final_validation(run: Run, config: TrainConfig, net, data: TrainData, meta: dict, best_probs):
    """The packaged weights loaded (the best checkpoint, or the mean of the last kept ones),
    operating point chosen on validation; (point, card validation)."""
    point = config.validation_point
    averaged = None
    if config.average_last:
        averaged = load_average(run.checkpoints, config.average_last, net)
        run.say(f"packaging the mean of the checkpoints of epochs {averaged}")
        best_probs = None  # the averaged network has not been validated yet
    if not data.val:
        return point, ({"weights": f"mean of epochs {averaged}"} if averaged else {})
    if averaged is None and meta.get("best_epoch") is not None and (run.checkpoints / "best.safetensors").is_file():
        load_checkpoint(run.checkpoints, "best", net, None)
    if best_probs is None:  # resumed run or averaged weights: predictions not in memory
        _, best_probs = validate(net, data.val, config, run.device, point)
    point = OperatingPoint(*choose_operating_point(
        best_probs, [d["label"] for d in data.val], data.val[0]["spacing_xyz"], config.threshold,
        config.min_lesion_volume_mm3))
    results = [case_metrics(p, d["label"], d["spacing_xyz"], point) for p, d in zip(best_probs, data.val, strict=True)]
    validation = {"split": f"fold {config.fold} of {config.n_folds}" if not any(c.split for c in data.dataset.cases)
                  else "manifest split 'val'",
                  "case_ids": data.val_ids, "epoch": meta.get("best_epoch") if averaged is None else None,
                  **({"weights": f"mean of epochs {averaged}"} if averaged else {}),
                  "threshold": point.threshold, "min_lesion_volume_mm3": point.min_volume_mm3,
                  "matching": "any overlap, 26-connected components, on the model grid", **summarise(results)}
    weights = validation.get("weights") or f"epoch {meta.get('best_epoch')}"
    run.say(f"validation ({weights}, threshold {point.threshold}, min volume "
            f"{point.min_volume_mm3} mm3): sensitivity {validation['sensitivity']:.3f}, FP/case "
            f"{validation['fp_per_case']:.2f}, Dice {validation['dice_mean']:.3f}")
    return point, validation


def recipe(config: TrainConfig, run: Run, meta: dict, loss_fn) -> dict:
    return {**config.to_dict(), "world_size": run.dist.world, "epochs_run": meta["epoch"],
            "steps": meta["step"], "train_minutes": round(meta["train_seconds"] / 60, 1),
            "loss": loss_fn.describe(), "optimizer": "Adam",
            "sampling": f"{config.pos_fraction:.0%} of each batch centred on lesion voxels "
                        + ("(each lesion equally likely)" if config.pos_sampling == PosSampling.LESION
                           else "(each lesion voxel equally likely)")
                        + (f"; {config.hard_negative_fraction:.0%} of the others centred on bright "
                           "non-lesion voxels (hard negatives)" if config.hard_negative_fraction else "")}


def write_package(run: Run, config: TrainConfig, net, data: TrainData, point: OperatingPoint, validation: dict,
                   recipe: dict, name: str, version: str, card_extra: dict | None) -> Path:
    from ..models import ModelCard, save_package

    extra = dict(card_extra or {})
    card = ModelCard(
        name=name, version=version, architecture=config.architecture,
        architecture_args=dict(config.architecture_args), input_sequences=list(data.dataset.sequences),
        spacing_mm=list(config.spacing_mm), patch_size=list(config.infer_patch_size or config.patch_size),
        overlap=config.overlap, normalisation=Normalisation.ZSCORE_BRAIN.value, threshold=float(point.threshold),
        min_lesion_volume_mm3=float(point.min_volume_mm3), trained=True,
        training_data=extra.pop("training_data", training_data_text(
            data.dataset, [c.case_id for c in data.train_cases], data.val_ids, data.excluded)),
        intended_use=extra.pop("intended_use", "Research use: segmentation of enhancing brain metastases "
                                               "on contrast-enhanced T1 MRI."),
        limitations=extra.pop("limitations", "Validated only on the validation split named in 'validation'."),
        validation=validation, recipe=recipe,
    )
    if extra:
        card = dataclasses.replace(card, **extra)
    package = save_package(net.cpu(), card, run.package, overwrite=True)
    run.say(f"model package written to {package.folder}")
    return package.folder
