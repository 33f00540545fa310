"""Training batches: half of each batch centred on lesion voxels, the rest on other brain voxels.

Lesion centres are drawn in one of two ways. ``"voxel"`` (the paper): a lesion voxel
uniformly from all of them, so a 15 mm lesion is picked ~27 times as often as a 5 mm
one. ``"lesion"``: a lesion uniformly from all lesions of the training set (26-connected
components), then a voxel of it, so small lesions get as many centred patches as large
ones.

Hard negatives (``hard_negative_fraction``): that share of the non-lesion patches is
centred on a bright non-lesion brain voxel (z-score above :data:`HARD_NEGATIVE_Z`:
vessels, sinuses, dura, choroid plexus), the enhancing look-alikes a detector has to
learn to reject; the rest on any non-lesion brain voxel.

Item ``b`` of :class:`PatchBatches` is a whole batch, drawn from a generator seeded by
(seed, epoch, b): batches are reproducible whatever the number of data-loader
workers or DDP ranks (a ``DistributedSampler`` hands each rank its own batch
indices), and a resumed run draws the batches it would have drawn.
"""

from __future__ import annotations

import cc3d
import numpy as np
import torch

from ..options import PosSampling, values
from .augment import AugmentConfig, augment_transform, crop_transform


def pad_case(case: dict[str, np.ndarray], patch_zyx) -> dict[str, np.ndarray]:
    """Zero-pad a cached case (image, label, brain and centre indices) to at least ``patch_zyx``."""
    shape = case["label"].shape
    extra = [max(p - s, 0) for p, s in zip(patch_zyx, shape, strict=True)]
    if not any(extra):
        return case
    before = [e // 2 for e in extra]
    pads = [(b, e - b) for b, e in zip(before, extra, strict=True)]
    out = dict(case)
    out["image"] = np.pad(case["image"], [(0, 0), *pads])
    out["label"] = np.pad(case["label"], pads)
    out["brain"] = np.pad(case["brain"], pads)
    new_shape = out["label"].shape
    for key in ("fg", "bg"):
        idx = np.unravel_index(case[key], shape)
        out[key] = np.ravel_multi_index(tuple(i + b for i, b in zip(idx, before, strict=True)), new_shape)
    return out


POS_SAMPLING = values(PosSampling)
#: Brain z-score above which a non-lesion voxel counts as enhancing (a hard-negative centre).
HARD_NEGATIVE_Z = 2.0


def lesion_centres(case: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The case's lesion voxels (flat ``fg`` indices) split by 26-connected lesion."""
    components = cc3d.connected_components(case["label"] > 0, connectivity=26).ravel()[case["fg"]]
    order = np.argsort(components, kind="stable")
    _, starts = np.unique(components[order], return_index=True)
    return [case["fg"][order[a:b]] for a, b in zip(starts, [*starts[1:], order.size], strict=True)]


def item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class PatchBatches(torch.utils.data.Dataset):
    """``batches_per_epoch`` batches of ``batch_size`` augmented patches.

    cases: cached cases (dicts from :class:`~.cache.CaseCache`), padded to the patch.
    patch_zyx: patch size (Z, Y, X) voxels.
    pos_fraction: share of each batch centred on a lesion voxel (the first items).
    pos_sampling: ``"voxel"`` (every lesion voxel equally likely) or ``"lesion"`` (every
        lesion equally likely); see the module docstring.
    hard_negative_fraction: share of the non-lesion patches centred on bright non-lesion
        voxels of the CE-T1 (channel 0); see the module docstring.
    spacing_zyx: the cases' grid spacing (Z, Y, X) mm, for augmentations given in mm.
    Each batch is ``(image (B, C, Z, Y, X) float32, label (B, 1, Z, Y, X) float32)``.
    """

    def __init__(self, cases: list[dict], patch_zyx, batch_size: int, batches_per_epoch: int,
                 pos_fraction: float = 0.5, augment: AugmentConfig | None = None,
                 seed: int = 0, pos_sampling: PosSampling = PosSampling.VOXEL,
                 hard_negative_fraction: float = 0.0, spacing_zyx=(1.0, 1.0, 1.0)):
        if pos_sampling not in POS_SAMPLING:
            raise ValueError(f"pos_sampling {pos_sampling!r}: expected one of {POS_SAMPLING}")
        if not 0.0 <= hard_negative_fraction <= 1.0:
            raise ValueError(f"hard_negative_fraction {hard_negative_fraction}: must be in [0, 1]")
        self.cases = [pad_case(c, patch_zyx) for c in cases]
        self.patch = tuple(int(p) for p in patch_zyx)
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.n_pos = int(round(pos_fraction * batch_size))
        self.seed = seed
        self.epoch = 0
        self.crop = {True: crop_transform(self.patch, True), False: crop_transform(self.patch, False)}
        # None = the default augmentation; pass AugmentConfig(0, 0, gamma_prob=0) for none.
        self.augment = augment_transform(augment or AugmentConfig(), spacing_zyx)
        with_lesions = [i for i, c in enumerate(self.cases) if c["fg"].size]
        # Lesion-centred patches come from cases that have lesions.
        self.positive_cases = with_lesions or list(range(len(self.cases)))
        self.lesions = ([(i, fg) for i in with_lesions for fg in lesion_centres(self.cases[i])]
                        if pos_sampling == PosSampling.LESION else [])
        self.hard_negative_fraction = hard_negative_fraction
        self.hard = [(i, c["bg"][c["image"][0].ravel()[c["bg"]] > HARD_NEGATIVE_Z])
                     for i, c in enumerate(self.cases)] if hard_negative_fraction > 0 else []
        self.hard = [(i, idx) for i, idx in self.hard if idx.size]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _patch(self, rng: np.random.Generator, positive: bool) -> tuple[np.ndarray, np.ndarray]:
        hard = not positive and self.hard and rng.random() < self.hard_negative_fraction
        if hard:
            # A "positive" crop centred on the hard voxels: the crop centres on ``fg``.
            index, fg = self.hard[int(rng.integers(len(self.hard)))]
            case, positive = self.cases[index], True
        elif positive and self.lesions:
            index, fg = self.lesions[int(rng.integers(len(self.lesions)))]
            case = self.cases[index]
        else:
            pool = self.positive_cases if positive else range(len(self.cases))
            case = self.cases[int(rng.choice(list(pool)))]
            fg = case["fg"]
        positive = positive and fg.size > 0
        data = {"image": case["image"], "label": case["label"][None], "fg": fg,
                "bg": case["bg"] if case["bg"].size else np.arange(case["label"].size)}
        crop = self.crop[positive]
        crop.set_random_state(seed=int(rng.integers(2**31)))
        sample = crop(data)[0]
        if self.augment is not None:
            self.augment.set_random_state(seed=int(rng.integers(2**31)))
            sample = self.augment({"image": sample["image"], "label": sample["label"]})
        image = np.asarray(sample["image"], np.float32)
        label = (np.asarray(sample["label"]) > 0.5).astype(np.float32)
        return image, label

    def __getitem__(self, index: int):
        rng = np.random.default_rng(item_seed(self.seed, self.epoch, index))
        pairs = [self._patch(rng, i < self.n_pos) for i in range(self.batch_size)]
        images = torch.from_numpy(np.stack([p[0] for p in pairs]))
        labels = torch.from_numpy(np.stack([p[1] for p in pairs]))
        return images, labels
