"""deepbet's ``run_model`` with its array work done faster, giving the same numbers.

deepbet 1.0.2's ``BrainExtraction.run_model`` (box finder on a 128^3 thumbnail, brain network on
the box resized to 256^3) spends ~1 s of a case outside its networks, mostly in two
``torch.quantile`` calls (a full sort of the 2 M-voxel thumbnail, each) and in out-of-place
float32 passes over the 16.7 M-voxel 256^3 input. :class:`FastBrainExtraction` overrides only
``run_model``: the two order statistics a quantile needs are selected with ``np.partition`` and
combined exactly as torch does (:func:`torch_quantile`), and the normalisation runs in place
(the same float32 operations in the same order). Everything else is deepbet's own code, and the
result is bit-identical (``Testing/test_deepbet_fast.py`` checks both functions and the whole
``run_model`` against deepbet's). The override is used only with the deepbet version it
mirrors (:data:`MIRRORS_DEEPBET`); any other version runs deepbet's own ``run_model``.

The box finder (a 128^3 network, ~1.5-3 s in TorchScript on 2 AVX2 cores) can run in OpenVINO
(``bbox_openvino``): its probabilities differ from torch's by ~3e-5, which could move a voxel
across deepbet's 0.5 threshold and so, in principle, the box. The OpenVINO map is used only
when every mask the torch map could give (voxels above 0.5 -/+ :data:`BOX_BAND`) leads to the
same box (:func:`box_is_certain`); otherwise the torch box finder runs, as before. So the box,
and everything after it, is deepbet's own as long as the two backends differ by less than
:data:`BOX_BAND` at every voxel (the export's agreement check measured 3.1e-5).
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import torch
import torch.nn.functional as F
from deepbet.bet import BrainExtraction
from deepbet.utils import keep_largest_connected_component

#: The deepbet version whose ``run_model`` :meth:`FastBrainExtraction.run_model` reproduces.
MIRRORS_DEEPBET = "1.0.2"
#: Largest |OpenVINO - torch| box-finder probability assumed (the export check's tolerance,
#: 30x the 3.1e-5 its check measured); within it of 0.5 a voxel's side of the threshold is uncertain.
BOX_BAND = 1e-3


def torch_quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """``x.quantile(q)`` (all elements, linear interpolation; no NaN in ``x``) with the same
    float32 arithmetic as torch: rank = q * (n - 1) in ``x``'s dtype, the order statistics at
    floor and ceil of the rank (here by ``np.partition``, O(n), instead of a full sort), then
    ``torch.lerp`` by the rank's fraction."""
    flat = x.detach().reshape(-1).cpu()
    rank = torch.tensor(q, dtype=flat.dtype) * (flat.numel() - 1)
    below = rank.to(torch.long)
    above = torch.ceil(rank).to(torch.long)
    picked = np.partition(flat.numpy(), [int(below), int(above)])
    low = torch.tensor(picked[int(below)], dtype=flat.dtype)
    high = torch.tensor(picked[int(above)], dtype=flat.dtype)
    return torch.lerp(low, high, rank - below).to(x.device)


def normalize_(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """deepbet.utils.normalize computed in place after its first operation (``x`` is left
    untouched): clip to [low, high] scaled to [0, 1], z-score, then x 0.226 + 0.449."""
    x = (x - low).div_(high - low)  # the one new tensor; the same division in place
    x.clamp_(min=0, max=1)
    mean, std = x.mean(), x.std()
    return x.sub_(mean).div_(std).mul_(.226).add_(.449)


def _plane_range(mask: np.ndarray, axis: int, threshold: float = .02) -> tuple[int, int] | None:
    """First and last plane across ``axis`` whose mean exceeds ``threshold``, as deepbet's
    ``get_bbox`` computes it (float32 mean of a 0/1 float mask); None when there is none."""
    means = torch.from_numpy(mask.astype(np.float32)).mean(tuple(a for a in range(3) if a != axis))
    planes = torch.where(means > threshold)[0]
    return None if planes.numel() == 0 else (int(planes.min()), int(planes.max()))


def box_is_certain(prob: np.ndarray, band: float = BOX_BAND) -> bool:
    """Whether deepbet's box (largest 26-connected component of ``prob > 0.5``, then the first
    and last planes with > 2 % of it per axis) is the same for every map within ``band`` of
    ``prob``. Such a map's mask T lies between low = prob > 0.5 + band and high = prob > 0.5 -
    band. With A the largest component of low and B the component of high holding it: when |A|
    exceeds both |B| - |A| and every other component of high, the largest component of T is
    the one holding A (A <= it <= B), so its per-plane counts lie between A's and B's, and
    equal first and last planes for A and B fix the box."""
    import cc3d

    low, high = prob > .5 + band, prob > .5 - band
    if not low.any():
        return False
    a = keep_largest_connected_component(low.astype(np.float32)) > 0
    labels = cc3d.connected_components(high)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    b_label = int(labels.ravel()[np.argmax(a)])  # A lies inside one component of high
    n_a, n_b = int(a.sum()), int(sizes[b_label])
    sizes[b_label] = 0
    if not (n_a > n_b - n_a and n_a > int(sizes.max())):
        return False
    b = labels == b_label
    return all((ra := _plane_range(a, axis)) is not None and ra == _plane_range(b, axis) for axis in range(3))


class FastBrainExtraction(BrainExtraction):
    """deepbet's brain extraction with :meth:`run_model`'s array work done faster (same output).

    bbox_openvino: the box finder's OpenVINO forward (None: torch only); ``box_backend`` then
    says which backend's map gave the last box ("openvino" or "torch").
    """

    bbox_openvino = None
    box_backend = "torch"

    def _box_probability(self, x_small: torch.Tensor) -> torch.Tensor:
        """The box finder's brain probability (128^3): OpenVINO's when its box is certain
        (:func:`box_is_certain`), else torch's."""
        if self.bbox_openvino is not None:
            prob = self.bbox_openvino(x_small[None, None])[0, 1]
            if box_is_certain(prob.numpy()):
                self.box_backend = "openvino"
                return prob
        self.box_backend = "torch"
        with torch.no_grad():
            return self.bbox_model(x_small[None, None])[0, 1]

    def run_model(self, x, small_shape=(128, 128, 128), shape=(256, 256, 256), bbox_margin=.1):
        if version("deepbet") != MIRRORS_DEEPBET:
            return super().run_model(x, small_shape, shape, bbox_margin)
        device = next(self.model.parameters()).device
        x = torch.nan_to_num(torch.from_numpy(x).to(device))
        x_small = F.interpolate(x[None, None], small_shape, mode='nearest-exact')[0, 0]
        # on a GPU torch's own quantile (its lerp may round differently from the CPU's)
        quantile = torch_quantile if x.device.type == "cpu" else torch.quantile
        low, high = quantile(x_small, .005), quantile(x_small, .995)
        mask_small = self._box_probability(normalize_(x_small, low, high))
        mask_small = keep_largest_connected_component((mask_small > .5).float().cpu().numpy())
        mask_small = torch.from_numpy(mask_small).to(device)
        self.bbox = self.get_bbox_with_margin(mask_small, x.shape, bbox_margin)
        box = F.interpolate(x[self.bbox][None, None], shape, mode='nearest-exact')[0, 0]
        with torch.no_grad():
            mask_bbox = self.model(normalize_(box, low, high)[None, None])[0, 1]
        mask = torch.zeros_like(x)
        mask[self.bbox] = F.interpolate(mask_bbox[None, None], mask[self.bbox].shape, mode='nearest-exact')[0, 0]
        return mask.cpu().numpy()
