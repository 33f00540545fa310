"""Network architectures a model card may name, built with MONAI.

The paper's network is MONAI ``FlexibleUNet(backbone="resnet34", spatial_dims=3,
dropout=0.5)`` (70.6 M parameters). For CPU training and a bundled demo model this
module also registers *slim* ResNet backbones with the same block layout at
reduced width (``resnet34_w16``: 3-4-6-3 basic blocks, 16-32-64-128 channels),
so the paper's topology fits in a few MB.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .errors import ModelError

if TYPE_CHECKING:
    import torch

# (layers per stage, base width) of the slim backbones registered below.
_SLIM_BACKBONES = {
    "resnet34_w8": ([3, 4, 6, 3], 8),
    "resnet34_w16": ([3, 4, 6, 3], 16),
    "resnet34_w24": ([3, 4, 6, 3], 24),
    "resnet10_w16": ([1, 1, 1, 1], 16),
}


def _register_slim_backbones() -> None:
    from monai.networks.blocks import BaseEncoder
    from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
    from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetFeatures

    if "resnet34_w16" in FLEXUNET_BACKBONE.register_dict:
        return

    class SlimResNetEncoder(ResNet, BaseEncoder):
        """ResNet basic-block encoder at reduced width, for FlexibleUNet."""

        names = list(_SLIM_BACKBONES)

        def __init__(self, model_name: str, pretrained: bool = False, spatial_dims: int = 3,
                     in_channels: int = 1) -> None:
            if pretrained:
                raise ModelError(f"Backbone {model_name} has no pretrained weights; use pretrained=false.")
            layers, width = _SLIM_BACKBONES[model_name]
            super().__init__(block=ResNetBlock, layers=layers,
                             block_inplanes=[width, 2 * width, 4 * width, 8 * width],
                             spatial_dims=spatial_dims, n_input_channels=in_channels,
                             conv1_t_stride=2, shortcut_type="A", feed_forward=False,
                             bias_downsample=False)

        forward = ResNetFeatures.forward

        @classmethod
        def get_encoder_parameters(cls) -> list[dict]:
            return [{"model_name": n, "pretrained": False, "spatial_dims": 3, "in_channels": 1}
                    for n in cls.names]

        @classmethod
        def num_channels_per_output(cls) -> list[tuple[int, ...]]:
            return [tuple(w * m for m in (1, 1, 2, 4, 8)) for _, w in _SLIM_BACKBONES.values()]

        @classmethod
        def num_outputs(cls) -> list[int]:
            return [5] * len(cls.names)

        @classmethod
        def get_encoder_names(cls) -> list[str]:
            return cls.names

    FLEXUNET_BACKBONE.register_class(SlimResNetEncoder)


def _flexible_unet(in_channels: int, out_channels: int, **kw: Any):
    from monai.networks.nets import FlexibleUNet

    _register_slim_backbones()
    kw.setdefault("spatial_dims", 3)
    kw.setdefault("pretrained", False)
    if "decoder_channels" in kw:
        kw["decoder_channels"] = tuple(kw["decoder_channels"])
    return FlexibleUNet(in_channels=in_channels, out_channels=out_channels, **kw)


def _basic_unet(in_channels: int, out_channels: int, **kw: Any):
    from monai.networks.nets import BasicUNet

    kw.setdefault("spatial_dims", 3)
    if "features" in kw:
        kw["features"] = tuple(kw["features"])
    return BasicUNet(in_channels=in_channels, out_channels=out_channels, **kw)


def _segresnet(in_channels: int, out_channels: int, **kw: Any):
    from monai.networks.nets import SegResNet

    kw.setdefault("spatial_dims", 3)
    return SegResNet(in_channels=in_channels, out_channels=out_channels, **kw)


def _nnunet(in_channels: int, out_channels: int, **kw: Any):
    from .foreign_networks import nnunet_network

    return nnunet_network(in_channels, out_channels, **kw)


def _monai(in_channels: int, out_channels: int, **kw: Any):
    from .foreign_networks import monai_network

    return monai_network(in_channels, out_channels, **kw)


ARCHITECTURES = {
    "FlexibleUNet": _flexible_unet,
    "BasicUNet": _basic_unet,
    "SegResNet": _segresnet,
    # imported models (brainmetseg models import): see foreign_networks
    "nnUNet": _nnunet,
    "MONAI": _monai,
}

# The size every spatial input dimension must be a multiple of, per architecture, measured:
# FlexibleUNet downsamples 5 times and its decoder cannot concatenate otherwise (48^3 fails,
# 64^3 works); SegResNet downsamples len(blocks_down) - 1 times (default 3: 36^3 fails, 40^3
# works); BasicUNet downsamples 4 times but pads odd sizes itself (40^3 works), so it only
# needs windows of at least 16; whole-volume inference pads to the divisor all the same.
SIZE_DIVISOR = {"FlexibleUNet": 32, "SegResNet": 8, "BasicUNet": 16}
PADS_ITSELF = {"BasicUNet"}


def size_divisor(name: str, args: dict | None = None) -> int | None:
    """The multiple every spatial dimension of a window (patch) must be for ``name`` built
    with ``args``; None for imported networks (nnUNet, MONAI), whose cards do not say: they
    run on their card's own window."""
    if name == "SegResNet" and "blocks_down" in (args or {}):
        return 2 ** (len(args["blocks_down"]) - 1)
    return SIZE_DIVISOR.get(name)


def patch_size_problem(name: str, patch_size, args: dict | None = None) -> str | None:
    """Why ``patch_size`` (voxels, any axis order) does not suit architecture ``name``; None when it does."""
    divisor = size_divisor(name, args)
    if divisor is None:
        return None
    sizes = [int(s) for s in patch_size]
    if all(s >= divisor and (name in PADS_ITSELF or s % divisor == 0) for s in sizes):
        return None
    if name in PADS_ITSELF:
        return f"{name} needs every patch dimension to be at least {divisor}; {sizes} is not"
    fixed = [max(divisor, round(s / divisor) * divisor) for s in sizes]
    return (f"{name} needs every patch dimension to be a multiple of {divisor}; {sizes} is not "
            f"(nearest that works: {fixed})")


def build_network(name: str, in_channels: int, out_channels: int = 1, args: dict | None = None):
    """Build an (untrained) ``torch.nn.Module`` from an architecture name and its arguments."""
    if name not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}.")
    try:
        return ARCHITECTURES[name](in_channels, out_channels, **dict(args or {}))
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot build {name} with arguments {args}: {exc}") from None


def output_conv(net: torch.nn.Module) -> torch.nn.Conv3d:
    """The convolution that produces the logits: the last ``Conv3d`` in module order (the
    segmentation head of FlexibleUNet, ``final_conv`` of BasicUNet, ``conv_final`` of SegResNet)."""
    import torch

    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    if not convs:
        raise ModelError(f"{type(net).__name__} has no 3D convolution.")
    return convs[-1]


def init_output_prior(net: torch.nn.Module, prior: float) -> None:
    """Start the output at probability ``prior`` everywhere: bias = logit(prior), weights
    shrunk 10x (the focal-loss paper's prior initialisation, Lin et al. 2017).

    With default initialisation, a network facing ~0.1 % lesion voxels first learns
    "background" as positive ReLU features times negative head weights; lesions then end
    up as all-zero features whose probability is capped at sigmoid(bias) (seen here twice:
    0.52 and 0.49). Starting from "background everywhere" lets lesion voxels pull weights up.
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior {prior} must lie strictly between 0 and 1")
    import torch

    conv = output_conv(net)
    with torch.no_grad():
        conv.weight.mul_(0.1)
        if conv.bias is not None:
            conv.bias.fill_(math.log(prior / (1.0 - prior)))
