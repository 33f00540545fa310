"""Checkpoint averaging: the network weights of several kept epochs, averaged element-wise.

The mean of the last few checkpoints of one run (Vaswani et al. 2017; Izmailov et al. 2018,
"SWA") sits nearer the centre of the low-loss region the optimiser wanders in than any one of
them, and costs nothing at inference (one network). Batch-norm running statistics are averaged
like the weights, which is fair for checkpoints of one run close together in training (SWA's
exact remedy, recomputing them over the training data, was tried on this project's network and
made it worse; docs/training/demo_model.md). Integer buffers (batch counters) come from the
newest checkpoint.

Kept checkpoints are ``OUT/checkpoints/epoch_NNNN.safetensors`` (network tensors only, written
every ``TrainConfig.keep_every`` epochs).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import InputError
from .checkpoint import network_tensors

KEPT_PATTERN = re.compile(r"^epoch_(\d{4,})\.safetensors$")


def kept_name(epoch: int) -> str:
    """Checkpoint name (no suffix) of the kept weights of ``epoch``."""
    return f"epoch_{epoch:04d}"


def kept_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every kept checkpoint in ``folder``, oldest first."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob("epoch_*.safetensors")
             if (m := KEPT_PATTERN.match(p.name))]
    return sorted(found)


def average_states(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the network tensors (:func:`.checkpoint.network_tensors`) of
    ``paths`` (oldest first).

    Floating tensors are averaged in float64 and stored in their own dtype; integer tensors
    are the last checkpoint's. Checkpoints that disagree on names or shapes are refused.
    """
    from safetensors.torch import load_file

    if not paths:
        raise InputError("checkpoint averaging: no checkpoint to average.")
    total: dict[str, torch.Tensor] = {}
    reference: dict[str, torch.Tensor] = {}
    for path in paths:
        tensors = network_tensors(load_file(str(path)))
        if reference and (tensors.keys() != reference.keys()
                          or any(tensors[k].shape != reference[k].shape for k in tensors)):
            raise InputError(f"{path}: its tensors differ from {paths[0].name}'s; not one run's checkpoints.")
        for key, value in tensors.items():
            if value.is_floating_point():
                total[key] = total.get(key, 0) + value.double()
        reference = tensors
    return {k: (total[k] / len(paths)).to(v.dtype) if v.is_floating_point() else v.clone()
            for k, v in reference.items()}


def load_average(folder: Path, last: int, net: torch.nn.Module) -> list[int]:
    """Load the mean of the ``last`` newest kept checkpoints of ``folder`` into ``net``;
    the epochs averaged. Fewer kept checkpoints than ``last`` is an error, not a quiet
    average of fewer."""
    kept = kept_checkpoints(folder)
    if len(kept) < last:
        raise InputError(f"{folder}: {len(kept)} kept checkpoint(s), {last} asked to average "
                         "(train longer, or keep them more often with --keep-every).")
    chosen = kept[-last:]
    net.load_state_dict(average_states([p for _, p in chosen]), strict=True)
    return [e for e, _ in chosen]
