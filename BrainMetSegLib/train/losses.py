"""Training losses: the paper's Dice + BCE, plus an optional per-lesion "blob" term.

Global Dice is dominated by large lesions: a missed 3 mm lesion costs a 20 mm lesion's
Dice almost nothing. The blob loss (Kofler et al., "blob loss: instance imbalance aware
loss functions for semantic segmentation", IPMI 2023) scores every lesion of a patch on
its own: for lesion k, the Dice + BCE of the prediction against lesion k alone, over the
voxels that are background or lesion k (the other lesions are left out), averaged over
the patch's lesions. A small lesion then weighs as much as a large one.

Tensors are (B, 1, Z, Y, X): logits and binary labels; lesions are 26-connected
components of the label.
"""

from __future__ import annotations

import cc3d
import numpy as np
import torch
import torch.nn.functional as F


def _dice_bce(logits: torch.Tensor, target: torch.Tensor, keep: torch.Tensor,
              smooth: float = 1e-5) -> torch.Tensor:
    """Soft Dice + mean BCE of ``logits`` against ``target`` over the voxels where ``keep`` is 1."""
    prob = torch.sigmoid(logits) * keep
    target = target * keep
    dice = 1 - (2 * (prob * target).sum() + smooth) / (prob.sum() + target.sum() + smooth)
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=keep, reduction="sum")
    return dice + bce / keep.sum().clamp_min(1)


def blob_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the batch items with lesions of the mean per-lesion Dice + BCE (see module).

    Returns 0 (with a gradient path) when no item has a lesion.
    """
    items = []
    for b in range(labels.shape[0]):
        components = cc3d.connected_components(labels[b, 0].detach().cpu().numpy() > 0.5, connectivity=26)
        n = int(components.max())
        if n == 0:
            continue
        comp = torch.from_numpy(components.astype(np.int32)).to(logits.device)
        per_lesion = []
        for k in range(1, n + 1):
            target = (comp == k).float()
            keep = ((comp == 0) | (comp == k)).float()
            per_lesion.append(_dice_bce(logits[b, 0], target, keep))
        items.append(torch.stack(per_lesion).mean())
    if not items:
        return logits.sum() * 0.0
    return torch.stack(items).mean()


class SegmentationLoss(torch.nn.Module):
    """``DiceCELoss`` (the paper's Dice + BCE, batch Dice) + ``lambda_blob`` x :func:`blob_loss`."""

    def __init__(self, lambda_dice: float = 1.0, lambda_bce: float = 1.0, batch_dice: bool = True,
                 lambda_blob: float = 0.0):
        super().__init__()
        from monai.losses import DiceCELoss

        self.dice_ce = DiceCELoss(sigmoid=True, lambda_dice=lambda_dice, lambda_ce=lambda_bce,
                                  batch=batch_dice)
        self.lambda_blob = lambda_blob

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.dice_ce(logits, labels)
        if self.lambda_blob > 0:
            loss = loss + self.lambda_blob * blob_loss(logits, labels)
        return loss

    def describe(self) -> str:
        text = "Dice + BCE (monai DiceCELoss, sigmoid)"
        if self.lambda_blob > 0:
            text += f" + {self.lambda_blob:g} x blob loss (per-lesion Dice + BCE, Kofler et al. 2023)"
        return text
