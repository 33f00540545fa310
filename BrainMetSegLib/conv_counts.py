"""Convolution outputs per input voxel of a network, the factor of its memory estimate.

Counted on one tiny forward (``divisor x divisor x 2 divisor`` voxels) with hooks on every
``Conv3d`` / ``ConvTranspose3d``. That forward costs ~1-1.5 s of CPU on 2 AVX2 cores (the demo
network; every convolution runs once), and on the OpenVINO path it is the only torch forward
of a run, so the count of a package's network (one with an identity: weights sha256,
architecture, I/O) is also kept on disk, ``<cache>/conv_counts/<key>.json`` (``<cache>``:
``$BRAINMETSEG_CACHE``, :func:`~.resources.user_cache_root`; ``<key>``: sha256 of the identity,
input channels and divisor), and read back by the next process: the same number, no forward.
A file that cannot be read or does not hold its key and a positive count is ignored (counted
again); one that cannot be written is skipped (the count is only a cache).
"""

from __future__ import annotations

import hashlib
import json
import math
import weakref
from pathlib import Path

from .resources import user_cache_root

# Bump when what is counted changes: older files are then not found.
COUNT_FORMAT = 1
_IN_PROCESS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def count_key(identity: dict, in_channels: int, divisor: int) -> str:
    """The file's name: sha256 (first 32 hex digits) of what the count depends on."""
    text = json.dumps({"identity": identity, "in_channels": int(in_channels), "divisor": int(divisor),
                       "format": COUNT_FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def count_path(key: str) -> Path:
    return user_cache_root() / "conv_counts" / f"{key}.json"


def _read(key: str) -> float | None:
    try:
        data = json.loads(count_path(key).read_text())
        value = float(data["outputs_per_voxel"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if data.get("key") == key and math.isfinite(value) and value > 0 else None


def _write(key: str, value: float) -> None:
    from .errors import OutputError
    from .staging import commit, stage_text

    path = count_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        commit([(stage_text(json.dumps({"key": key, "outputs_per_voxel": value}) + "\n", path), path)])
    except (OSError, OutputError):
        pass


def count_outputs_per_voxel(net, in_channels: int, divisor: int) -> float:
    """Convolution output elements per input voxel, counted on a forward of
    ``divisor x divisor x 2 divisor`` voxels (the smallest input whose deepest level has more
    than one voxel, as instance norm needs)."""
    import torch

    total = [0]

    def hook(module, inputs, output):
        total[0] += output.numel()

    convs = (torch.nn.Conv3d, torch.nn.ConvTranspose3d)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, convs)]
    device = next(net.parameters(), torch.zeros(0)).device
    try:
        with torch.inference_mode():
            net(torch.zeros((1, in_channels, divisor, divisor, 2 * divisor), device=device))
    finally:
        for h in handles:
            h.remove()
    return total[0] / (2 * divisor ** 3)


def outputs_per_voxel(net, in_channels: int, divisor: int, identity: dict | None = None) -> float:
    """:func:`count_outputs_per_voxel`, kept per network object in the process and, for a
    network with an ``identity``, on disk (see the module docstring)."""
    if net in _IN_PROCESS:
        return _IN_PROCESS[net]
    key = None if identity is None else count_key(identity, in_channels, divisor)
    value = None if key is None else _read(key)
    if value is None:
        value = count_outputs_per_voxel(net, in_channels, divisor)
        if key is not None:
            _write(key, value)
    _IN_PROCESS[net] = value
    return value
