"""Validation during training: the inference code on the validation split, the operating point
chosen there, the training log and curves."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..operating_point import OperatingPoint
from ..options import PAPER_THRESHOLD, Device
from ..plotting import pyplot, save_png
from ..staging import write_text
from .config import TrainConfig
from .metrics import case_metrics, summarise

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MIN_VOLUMES_MM3 = (0.0, 5.0, 10.0, 20.0)


def choose_operating_point(probs: list[np.ndarray], labels: list[np.ndarray], spacing_xyz,
                           threshold: float | None, min_volume: float | None) -> tuple[float, float]:
    """Threshold and minimum lesion volume with the best lesion-wise F1 on validation cases
    (ties: threshold nearest the paper's, then the smaller volume). Given values are kept."""
    thresholds = THRESHOLDS if threshold is None else (threshold,)
    volumes = MIN_VOLUMES_MM3 if min_volume is None else (min_volume,)
    best = None
    for t in thresholds:
        for v in volumes:
            s = summarise([case_metrics(p, lab, spacing_xyz, OperatingPoint(t, v))
                           for p, lab in zip(probs, labels, strict=True)])
            key = (round(s["lesion_f1"], 6), -abs(t - PAPER_THRESHOLD), -v)
            if best is None or key > best[0]:
                best = (key, t, v)
    return best[1], best[2]


def validate(net, cases: list[dict], config: TrainConfig, device: Device,
             point: OperatingPoint) -> tuple[dict, list[np.ndarray]]:
    """Sliding-window prediction (the inference code) on each validation case; metrics + probs."""
    from ..inference import InferenceConfig, predict

    infer = InferenceConfig(patch_size=tuple(config.infer_patch_size or config.patch_size),
                            overlap=config.overlap, device=device, precision=config.precision)
    probs, results = [], []
    for case in cases:
        prob = predict(net, case["image"], infer)
        prob[~case["brain"]] = 0.0  # gated by the dilated brain mask, as the pipeline does
        probs.append(prob)
        results.append(case_metrics(prob, case["label"], case["spacing_xyz"], point))
    net.train()
    # A ceiling well under 1 means the head cannot say "lesion" with confidence (e.g. lesions
    # encoded as all-zero features: the logit is then capped at the head's bias).
    return {**summarise(results), "max_probability": max((float(p.max()) for p in probs), default=0.0)}, probs


def write_log(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(buf.getvalue(), path, overwrite=True)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Training loss and validation metrics per epoch (PNG)."""
    fig, axes = pyplot().subplots(1, 3, figsize=(13, 3.6))
    epochs = [int(r["epoch"]) for r in rows]
    axes[0].plot(epochs, [float(r["train_loss"]) for r in rows], "-o", ms=3)
    axes[0].set_title("training loss (see the card recipe's loss)")
    val = [r for r in rows if r.get("val_dice_mean") not in (None, "")]
    if val:
        ve = [int(r["epoch"]) for r in val]
        axes[1].plot(ve, [float(r["val_dice_mean"]) for r in val], "-o", ms=3, label="voxel Dice (mean)")
        axes[1].plot(ve, [float(r["val_sensitivity"]) for r in val], "-s", ms=3, label="lesion sensitivity")
        axes[1].plot(ve, [float(r["val_lesion_f1"]) for r in val], "-^", ms=3, label="lesion F1")
        axes[1].set_ylim(0, 1)
        axes[1].legend(fontsize=8)
        axes[2].plot(ve, [float(r["val_fp_per_case"]) for r in val], "-o", ms=3, color="tab:red")
    axes[1].set_title("validation (the run's validation threshold)")
    axes[2].set_title("validation false positives per case")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path, dpi=90, overwrite=True)
