"""Test-time mirroring: the network's logits averaged over flipped copies of its input.

Tensors are (B, C, Z, Y, X) on the pipeline's LPS grid; which axes are flipped is
:data:`~BrainMetSegLib.options.MIRROR_AXES_ZYX` of a :class:`~BrainMetSegLib.options.Mirroring`.
Every combination of the mirrored axes is run (2^k forwards), as nnU-Net does.
"""

from __future__ import annotations

import itertools

from .options import MIRROR_AXES_ZYX, Mirroring


def mirror_sets(mirror: Mirroring) -> list[tuple[int, ...]]:
    """Every combination of the mirrored axes, as dims of a (B, C, Z, Y, X) tensor; ``()`` first."""
    axes = [2 + a for a in MIRROR_AXES_ZYX[mirror]]
    return [c for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]


def mirrored(call, batch, flips: list[tuple[int, ...]]):
    """Mean of ``call`` over ``batch`` flipped by each of ``flips``, each output flipped back."""
    import torch

    if len(flips) == 1:
        return call(batch)
    total = None
    for dims in flips:
        out = call(torch.flip(batch, dims) if dims else batch).float()
        out = torch.flip(out, dims) if dims else out
        total = out if total is None else total + out
    return total / len(flips)
