"""Test-time mirroring: the network's logits averaged over flipped copies of its input.

Tensors are (B, C, Z, Y, X) on the pipeline's LPS grid; which axes are flipped is
:data:`~BrainMetSegLib.options.MIRROR_AXES_ZYX` of a :class:`~BrainMetSegLib.options.Mirroring`.
Every combination of the mirrored axes is run (2^k forwards), as nnU-Net does.
"""

from __future__ import annotations

import itertools

from .options import MIRROR_AXES_ZYX, Mirroring


def flip_sets(axes_zyx) -> list[tuple[int, ...]]:
    """Every combination of the spatial axes ``axes_zyx`` (0 = Z, 1 = Y, 2 = X), as dims of a
    (B, C, Z, Y, X) tensor; ``()`` (no flip) first."""
    dims = [2 + a for a in axes_zyx]
    return [c for n in range(len(dims) + 1) for c in itertools.combinations(dims, n)]


def mirror_sets(mirror: Mirroring) -> list[tuple[int, ...]]:
    """:func:`flip_sets` of a :class:`~BrainMetSegLib.options.Mirroring`."""
    return flip_sets(MIRROR_AXES_ZYX[mirror])


def mirrored(call, batch, flips: list[tuple[int, ...]]):
    """Mean (float32) of ``call``'s output over ``batch`` flipped by each of ``flips``, each output
    flipped back; of a list or tuple of outputs (deep supervision) the first is used."""
    import torch

    total = None
    for dims in flips:
        out = call(torch.flip(batch, dims) if dims else batch)
        out = (out[0] if isinstance(out, list | tuple) else out).float()
        out = torch.flip(out, dims) if dims else out
        total = out if total is None else total + out
    return total if len(flips) == 1 else total / len(flips)
