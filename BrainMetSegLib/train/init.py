r"""Initialisation: 2D ImageNet ResNet weights inflated to 3D (as the paper did), or 3D weights.

:func:`init_from_weights` starts from trained 3D weights instead (fine-tuning, or keeping
part of an earlier run): a model package, a training checkpoint or a safetensors state
dict; tensors are taken by name where the shapes fit, optionally only those whose names
match a pattern (e.g. ``^encoder\.`` keeps the encoder and starts the decoder afresh).

The source is a local file holding a torchvision ResNet state dict (``conv1.weight``
(64, 3, 7, 7), ``bn1.*``, ``layer1.0.conv1.weight`` ...), either a plain PyTorch file
(loaded with ``torch.load(weights_only=True)``: tensors only, no code) or safetensors.
Nothing is downloaded.

Inflation (I3D, Carreira & Zisserman 2017): a 2D kernel (k, k) becomes (k, k, k) by
repeating it along the new depth axis and dividing by k, so a volume made of identical
slices gives the 2D response. The RGB input filters of ``conv1`` are summed and spread
evenly over the network's input channels (a grey image gives the RGB response).
Batch-norm tensors are copied. torchvision's 1x1 ``downsample`` shortcuts have no
counterpart in MONAI's parameter-free (type A) shortcuts and ``fc`` none in an encoder:
both are reported as skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import InputError, ModelError
from .checkpoint import NETWORK_PREFIX, network_tensors


@dataclass
class InflationReport:
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A 2D state dict from a safetensors file or a tensors-only PyTorch file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: encoder weights file not found.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from ..importers.checkpoint import load_checkpoint

    try:
        state = load_checkpoint(path, allowed=[])  # tensors only; TorchScript and code refused
    except ModelError as exc:
        raise InputError(f"{exc} Expected a plain tensor state dict.") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a dict of tensors (a torchvision state dict).")
    return state


def inflate_conv(weight_2d: torch.Tensor, in_channels: int | None = None) -> torch.Tensor:
    """(O, I, kh, kw) -> (O, I', kh, kh, kw): repeat along depth / kh; ``in_channels`` sums the
    2D input filters and spreads them evenly over ``in_channels`` inputs."""
    w = weight_2d.float()
    if in_channels is not None and in_channels != w.shape[1]:
        w = w.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
    depth = w.shape[2]
    return w.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth


def inflate_into(net: torch.nn.Module, state_2d: dict[str, torch.Tensor], prefix: str = "encoder.") -> InflationReport:
    """Copy an inflated 2D ResNet state dict into the encoder of ``net`` (in place).

    Raises :class:`ModelError` when the shapes cannot match (e.g. a slim backbone with
    other widths than the 2D network), naming the first offending tensor.
    """
    target = net.state_dict()
    report = InflationReport()
    new = {}
    for key, value in state_2d.items():
        dest = prefix + key
        if dest not in target:
            report.skipped.append(key)
            continue
        want = target[dest]
        if value.ndim == 4 and want.ndim == 5:
            in_ch = want.shape[1] if key == "conv1.weight" else None
            value = inflate_conv(value, in_ch)
        if tuple(value.shape) != tuple(want.shape):
            raise ModelError(f"encoder weights do not fit: {key} is {tuple(value.shape)} after inflation, "
                             f"the network's {dest} is {tuple(want.shape)} (is the backbone resnet34?).")
        new[dest] = value.to(want.dtype)
        report.loaded.append(key)
    report.missing = sorted(k for k in target if k.startswith(prefix) and k not in new)
    if not report.loaded:
        raise ModelError("no tensor of the 2D weights matches the network's encoder; "
                         "expected a torchvision ResNet state dict (conv1.weight, layer1.0.conv1.weight, ...).")
    net.load_state_dict({**target, **new}, strict=True)
    return report


def init_encoder(net: torch.nn.Module, path: str | Path) -> InflationReport:
    """Initialise ``net``'s encoder from a local 2D torchvision ResNet weights file."""
    return inflate_into(net, read_state_dict(path))


def read_3d_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Network tensors from a model package folder (sha256 checked), a training checkpoint
    (``model.*`` tensors; the optimiser's are dropped) or a safetensors state dict."""
    from safetensors.torch import load_file

    from ..models import load_package, verify_weights

    path = Path(path)
    if path.is_dir():
        package = load_package(path)
        verify_weights(package)
        path = package.weights_path
    elif not path.is_file() or path.suffix != ".safetensors":
        raise InputError(f"{path}: initial weights must be a model package folder or a .safetensors file.")
    tensors = load_file(str(path))
    return network_tensors(tensors) if any(k.startswith(NETWORK_PREFIX) for k in tensors) else tensors


def init_from_weights(net: torch.nn.Module, path: str | Path, select: str | None = None) -> InflationReport:
    """Copy the tensors of ``path`` (see :func:`read_3d_weights`) into ``net`` (in place) where
    the name exists, matches the regular expression ``select`` (all when None) and the
    shape fits; everything else keeps its fresh initialisation and is reported."""
    pattern = re.compile(select) if select else None
    source = read_3d_weights(path)
    target = net.state_dict()
    report = InflationReport()
    new = {}
    for key, value in source.items():
        if (key not in target or (pattern and not pattern.search(key))
                or tuple(value.shape) != tuple(target[key].shape)):
            report.skipped.append(key)
            continue
        new[key] = value.to(target[key].dtype)
        report.loaded.append(key)
    report.missing = sorted(k for k in target if k not in new)
    if not report.loaded:
        raise ModelError(f"{path}: no tensor fits the network (names or shapes differ"
                         + (f", or none matches {select!r}" if select else "") + ").")
    net.load_state_dict({**target, **new}, strict=True)
    return report
