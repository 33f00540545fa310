"""Networks of imported models, built from their own code by allow-listed names.

- ``nnUNet``: nnU-Net v2's architectures from ``dynamic_network_architectures`` (the package
  nnU-Net builds its networks with), from the plans' ``network_class_name`` and ``arch_kwargs``;
  this is what nnU-Net's ``get_network_from_plans`` does, except that the class and the
  ``torch.nn`` operations are looked up in allow-lists instead of importing any dotted name a
  plans file holds (importing by name runs the named module's code).
- ``MONAI``: any network class of ``monai.networks.nets`` with literal (JSON) arguments, as a
  MONAI bundle's ``network_def`` names it.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ModelError

DYNAMIC_PACKAGE = "dynamic_network_architectures.architectures."

# The torch.nn building blocks nnU-Net plans name (conv, norm, dropout, non-linearity).
_TORCH_OPS = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose2d", "ConvTranspose3d", "InstanceNorm2d",
              "InstanceNorm3d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "LayerNorm", "Dropout",
              "Dropout2d", "Dropout3d", "LeakyReLU", "ReLU", "PReLU", "ELU", "GELU", "SiLU", "Tanh")


def _torch_op(name: str):
    import torch

    for op in _TORCH_OPS:
        cls = getattr(torch.nn, op)
        if name in (f"torch.nn.{op}", f"{cls.__module__}.{op}"):
            return cls
    raise ModelError(f"nnU-Net plans name the operation {name!r}, which is not on BrainMetSeg's "
                     f"allow-list of torch.nn operations ({', '.join(_TORCH_OPS)}).")


def dynamic_network_class(name: str):
    """The ``dynamic_network_architectures`` class called ``name`` (a dotted path inside it)."""
    import torch

    if not isinstance(name, str) or not name.startswith(DYNAMIC_PACKAGE):
        raise ModelError(f"network class {name!r} is not part of dynamic_network_architectures; "
                         "BrainMetSeg builds nnU-Net networks only from that package.")
    module_name, _, class_name = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("dynamic_network_architectures"):
            if exc.name == "dynamic_network_architectures":
                raise ModelError("nnU-Net models need the package dynamic-network-architectures: "
                                 "pip install 'BrainMetSegLib[nnunet]'.") from None
            raise ModelError(f"network class {name!r}: no such module in the installed "
                             "dynamic-network-architectures.") from None
        raise ModelError(f"network class {name!r} needs {exc.name}, which is not installed.") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ModelError(f"network class {name!r} is not a network in dynamic-network-architectures.")
    return cls


def nnunet_network(in_channels: int, out_channels: int, network_class: str, arch_kwargs: dict,
                   arch_kwargs_requires_import: list[str] = (), **unused: Any):
    """An nnU-Net v2 network (deep supervision off, as nnU-Net's predictor builds it)."""
    if unused:
        raise ModelError(f"nnUNet architecture_args have unknown keys {sorted(unused)}.")
    cls = dynamic_network_class(network_class)
    kwargs = dict(arch_kwargs)
    for key in arch_kwargs_requires_import:
        if kwargs.get(key) is not None:
            kwargs[key] = _torch_op(kwargs[key])
    kwargs["deep_supervision"] = False
    try:
        return cls(input_channels=in_channels, num_classes=out_channels, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelError(f"cannot build {network_class} from the plans' arch_kwargs: {exc}") from None


def monai_network(in_channels: int, out_channels: int, target: str, args: dict | None = None):
    """A ``monai.networks.nets`` class by name with literal arguments (in/out channels set here)."""
    import monai.networks.nets as nets
    import torch

    name = str(target).removeprefix("monai.networks.nets.")
    cls = getattr(nets, name, None) if "." not in name else None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ModelError(f"network {target!r} is not a class of monai.networks.nets.")
    kwargs = dict(args or {})
    kwargs["in_channels"], kwargs["out_channels"] = in_channels, out_channels
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelError(f"cannot build MONAI {name} with arguments {args}: {exc}") from None
