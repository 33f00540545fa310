"""How a package's network(s) meet the pipeline: channel order, voxel orientation, axis order,
test-time mirroring, fold ensembles and the output that means metastasis.

The pipeline hands the network a (B, C, Z, Y, X) tensor on an axis-aligned LPS grid, channels
in the card's ``input_sequences`` order, and wants one channel back: the metastasis logit
(probability = sigmoid). Imported models were trained differently: nnU-Net feeds the voxel
array in the files' own orientation (NIfTI files are usually RAS-stored), may transpose axes,
averages several folds and mirrored passes, and has softmax outputs over several labels. The
card's ``network_io`` object describes these differences; :class:`AdaptedNetwork` undoes them,
so the sliding window, lesion table and outputs stay the same for every model.

``network_io`` keys (all optional; ``{}`` means the plain single-logit network):

- ``input_channels``: sequences in the network's channel order (default: ``input_sequences``).
- ``orientation``: 3 letters, where each array axis (x, y, z) points as the index grows, as the
  network saw it in training (nnU-Net: the training files' own, e.g. ``"RAS"``); default ``"LPS"``.
- ``transpose``: permutation of the (Z, Y, X) axes into the network's axes (nnU-Net's
  ``transpose_forward``); default ``[0, 1, 2]``.
- ``mirror_axes``: network axes (0..2) mirrored for test-time augmentation; logits are averaged
  over all 2^n flips (as nnU-Net does). Default ``[]`` (off).
- ``outputs``: number of output channels of the network (default 1).
- ``activation``: ``"sigmoid"`` (one channel per label/region) or ``"softmax"`` (one per class).
- ``channels``: output channels that mean metastasis. For softmax their probabilities are summed;
  for sigmoid exactly one channel is allowed.
- ``tiling``: ``"window"`` (default: the pipeline's sliding window) or ``"nnunet"``: the network
  tiles the volume itself exactly as nnU-Net's predictor does (crop to the non-zero bounding box,
  nnU-Net's window positions and Gaussian, background outside the box). nnU-Net networks use
  instance normalisation per window, so other window positions change the output (measured here:
  up to 0.99 in probability on a tiny model), and agreement with nnU-Net needs its own tiling.

Ensembles (several weight files) average logits before the activation, like nnU-Net.
For a two-class softmax the returned logit, z_met - z_background, is linear in the logits, so
averaging it over windows equals nnU-Net's averaging of logits followed by softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ModelError

_OPPOSITE = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}
ACTIVATIONS = ("sigmoid", "softmax")


@dataclass(frozen=True)
class NetworkIO:
    """Checked form of a card's ``network_io`` (see the module docstring)."""

    input_channels: tuple[str, ...]
    flip_axes: tuple[int, ...] = ()
    transpose: tuple[int, int, int] = (0, 1, 2)
    mirror_axes: tuple[int, ...] = ()
    outputs: int = 1
    activation: str = "sigmoid"
    channels: tuple[int, ...] = (0,)
    tiling: str = "window"

    @property
    def is_plain(self) -> bool:
        """True when the network already is what the pipeline expects (no adapter needed)."""
        return (not self.flip_axes and self.transpose == (0, 1, 2) and not self.mirror_axes
                and self.outputs == 1 and self.activation == "sigmoid" and self.channels == (0,)
                and self.tiling == "window")


def flips_for_orientation(orientation: str, source: str) -> tuple[int, ...]:
    """(Z, Y, X) array axes to flip so an LPS-ordered array reads in ``orientation`` (e.g. RAS)."""
    o = str(orientation).upper()
    if len(o) != 3 or any(o[k] not in ("LPS"[k], _OPPOSITE["LPS"[k]]) for k in range(3)):
        raise ModelError(f"{source}: network_io orientation {orientation!r} must be 3 letters with "
                         "x in L/R, y in P/A, z in S/I (axis permutations are given by 'transpose').")
    # array axis of x is 2, of y is 1, of z is 0
    return tuple(sorted(2 - k for k in range(3) if o[k] != "LPS"[k]))


def parse_network_io(data: dict, input_sequences: list[str], source: str) -> NetworkIO:
    """Check a card's ``network_io`` object; :class:`ModelError` naming the card and the key."""
    if not isinstance(data, dict):
        raise ModelError(f"{source}: network_io must be an object, not {data!r}.")
    known = {"input_channels", "orientation", "transpose", "mirror_axes", "outputs", "activation",
             "channels", "tiling"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelError(f"{source}: network_io has unknown keys {unknown}.")
    channels_in = list(data.get("input_channels", input_sequences))
    if sorted(channels_in) != sorted(input_sequences):
        raise ModelError(f"{source}: network_io input_channels {channels_in} must be the card's "
                         f"input_sequences {input_sequences} in the network's order.")
    transpose = tuple(data.get("transpose", (0, 1, 2)))
    if sorted(transpose) != [0, 1, 2]:
        raise ModelError(f"{source}: network_io transpose {list(transpose)} is not a permutation of 0, 1, 2.")
    mirror = tuple(data.get("mirror_axes", ()))
    if any(a not in (0, 1, 2) for a in mirror) or len(set(mirror)) != len(mirror):
        raise ModelError(f"{source}: network_io mirror_axes {list(mirror)} must be distinct axes 0, 1, 2.")
    outputs = data.get("outputs", 1)
    activation = data.get("activation", "sigmoid")
    chosen = tuple(data.get("channels", (0,)))
    if not isinstance(outputs, int) or isinstance(outputs, bool) or outputs < 1:
        raise ModelError(f"{source}: network_io outputs {outputs!r} must be a positive integer.")
    if activation not in ACTIVATIONS:
        raise ModelError(f"{source}: network_io activation {activation!r} is not one of {', '.join(ACTIVATIONS)}.")
    if (not chosen or len(set(chosen)) != len(chosen)
            or any(not isinstance(c, int) or not 0 <= c < outputs for c in chosen)):
        raise ModelError(f"{source}: network_io channels {list(chosen)} must be distinct output "
                         f"channels in 0..{outputs - 1}.")
    if activation == "softmax" and (outputs < 2 or len(chosen) == outputs):
        raise ModelError(f"{source}: network_io softmax needs >= 2 outputs and channels that leave "
                         "at least one background class.")
    if activation == "sigmoid" and len(chosen) != 1:
        raise ModelError(f"{source}: network_io sigmoid output takes exactly one channel, not {list(chosen)}.")
    tiling = data.get("tiling", "window")
    if tiling not in ("window", "nnunet"):
        raise ModelError(f"{source}: network_io tiling {tiling!r} is not window or nnunet.")
    flips = flips_for_orientation(data.get("orientation", "LPS"), source)
    return NetworkIO(tuple(channels_in), flips, transpose, tuple(sorted(mirror)), outputs,
                     activation, chosen, tiling)


def channel_index(io: NetworkIO, input_sequences: list[str]) -> list[int]:
    """For each network input channel, the index of its sequence in the pipeline's channel order."""
    return [list(input_sequences).index(s) for s in io.input_channels]


def nnunet_steps(size: int, tile: int, step: float) -> list[int]:
    """Window starts along one axis as nnU-Net's ``compute_steps_for_sliding_window``."""
    n = int(np.ceil((size - tile) / (tile * step))) + 1
    if n == 1:
        return [0]
    actual = (size - tile) / (n - 1)
    return [int(np.round(actual * i)) for i in range(n)]


def nnunet_gaussian(tile: tuple[int, ...], sigma_scale: float = 1.0 / 8) -> np.ndarray:
    """nnU-Net's ``compute_gaussian`` window weights (max 10, zeros raised to the smallest weight)."""
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(tile, np.float32)
    tmp[tuple(t // 2 for t in tile)] = 1
    g = gaussian_filter(tmp, [t * sigma_scale for t in tile], 0, mode="constant", cval=0)
    g = g / g.max() * 10
    g[g == 0] = g[g != 0].min()
    return g.astype(np.float32)

