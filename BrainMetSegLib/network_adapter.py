"""The torch side of :mod:`BrainMetSegLib.network_io`: an ensemble of imported networks wrapped
so the pipeline sees one network that returns the metastasis logit.

Tensors are (B, C, Z, Y, X) on the pipeline's axis-aligned LPS grid, channels in the card's
``input_sequences`` order; the wrapper reorders channels, flips and transposes into the
network's own voxel order, averages members and mirrored passes, and turns the network's
outputs back into one logit channel (see the ``network_io`` keys in :mod:`.network_io`).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from .mirroring import flip_sets, mirrored
from .network_io import NetworkIO, channel_index, nnunet_gaussian, nnunet_steps
from .progress import ProgressEvent, check_cancelled


class AdaptedNetwork(torch.nn.Module):
    """(B, C, Z, Y, X) pipeline tensor -> (B, 1, Z, Y, X) metastasis logit.

    members: trained networks of one ensemble (logits averaged, as nnU-Net does); io: the
    card's checked ``network_io``; patch_zyx, overlap: the window for ``tiling == "nnunet"``
    (pipeline axis order, voxels). The state dict holds the members only (``members.<k>.*``).
    """

    def __init__(self, members: list, io: NetworkIO, input_sequences: list[str],
                 patch_zyx: tuple[int, int, int] = (128, 128, 128), overlap: float = 0.5):
        super().__init__()
        self.io = io
        self.patch_zyx = patch_zyx
        self.overlap = overlap
        self.members = torch.nn.ModuleList(members)
        self.register_buffer("index", torch.tensor(channel_index(io, input_sequences)),
                             persistent=False)
        # spatial dims of the (B, C, Z, Y, X) tensor
        self.flip = [2 + a for a in io.flip_axes]
        self.perm = [0, 1] + [2 + a for a in io.transpose]
        self.inverse = [self.perm.index(k) for k in range(5)]
        self.mirror_sets = flip_sets(io.mirror_axes)
        chosen = torch.zeros(io.outputs, dtype=torch.bool)
        chosen[list(io.channels)] = True
        self.register_buffer("chosen", chosen, persistent=False)

    def _logits(self, x):
        return sum(self._mirrored(net, x) for net in self.members) / len(self.members)

    def _to_network(self, x):
        x = x.index_select(1, self.index)
        if self.flip:
            x = torch.flip(x, self.flip)
        return x.permute(self.perm)

    def _from_network(self, z):
        z = z.permute(self.inverse)
        if self.flip:
            z = torch.flip(z, self.flip)
        if self.io.activation == "sigmoid":
            return z[:, list(self.io.channels)]
        met = torch.logsumexp(z[:, self.chosen], dim=1, keepdim=True)
        rest = torch.logsumexp(z[:, ~self.chosen], dim=1, keepdim=True)
        return met - rest

    def forward(self, x):
        return self._from_network(self._logits(self._to_network(x)))

    def predict_volume(self, array: np.ndarray, device: str, progress, cancel) -> np.ndarray:
        """Probability (Z, Y, X) of a (C, Z, Y, X) array, tiled as nnU-Net's predictor tiles
        its cropped, normalised image (folds averaged after each fold's full sliding window)."""
        io = self.io
        x = self._to_network(torch.from_numpy(np.ascontiguousarray(array))[None])[0]
        nonzero = (x != 0).any(0)
        full = torch.full((io.outputs, *x.shape[1:]), -30.0)
        if io.activation == "softmax":  # outside the box: background, as nnU-Net reverts its crop
            full[0] = 30.0
        if nonzero.any():
            idx = [torch.nonzero(nonzero.any(dim=tuple(d for d in range(3) if d != a))).flatten()
                   for a in range(3)]
            box = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)
            full[(slice(None), *box)] = self._tiled(x[(slice(None), *box)], device, progress, cancel)
        logit = self._from_network(full[None])[0, 0]
        return torch.sigmoid(logit).numpy().astype(np.float32)

    def _tiled(self, x, device, progress, cancel):
        """Mean over members of each member's Gaussian-weighted sliding window over ``x``
        (C, network axes), padded to at least one window as nnU-Net pads, then cropped back."""
        io = self.io
        tile = tuple(int(self.patch_zyx[a]) for a in io.transpose)
        pad = [max(t - s, 0) for t, s in zip(tile, x.shape[1:], strict=True)]
        lo = [p // 2 for p in pad]
        x = torch.nn.functional.pad(x, [v for a in (2, 1, 0) for v in (lo[a], pad[a] - lo[a])])
        size = x.shape[1:]
        steps = [nnunet_steps(s, t, 1.0 - self.overlap) for s, t in zip(size, tile, strict=True)]
        gauss = torch.from_numpy(nnunet_gaussian(tile)).to(device)
        total, n_tiles = len(self.members) * int(np.prod([len(s) for s in steps])), 0
        summed = torch.zeros((io.outputs, *size))
        self.to(device)
        for net in self.members:
            logits = torch.zeros((io.outputs, *size), device=device)
            weight = torch.zeros(size, device=device)
            for start in itertools.product(*steps):
                check_cancelled(cancel)
                sl = tuple(slice(s, s + t) for s, t in zip(start, tile, strict=True))
                window = x[(slice(None), *sl)][None].to(device)
                with torch.inference_mode():
                    out = self._mirrored(net, window)[0]
                logits[(slice(None), *sl)] += out * gauss
                weight[sl] += gauss
                n_tiles += 1
                progress(ProgressEvent("inference", n_tiles / total,
                                       f"window {n_tiles}/{total} on {device} (nnU-Net tiling)"))
            summed += (logits / weight).cpu()
        summed /= len(self.members)
        crop = tuple(slice(a, a + s - p) for a, s, p in zip(lo, size, pad, strict=True))
        return summed[(slice(None), *crop)]

    def _mirrored(self, net, x):
        """Mean of ``net``'s first output over every flip set in ``mirror_sets``, flipped back."""
        return mirrored(net, x, self.mirror_sets)
