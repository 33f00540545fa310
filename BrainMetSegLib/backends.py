"""Which engine runs the network's forward: torch, or OpenVINO on the CPU.

On a CPU without native bf16 the forward is fp32, and OpenVINO's fp32 kernels were measured
~2-3.5x faster than torch's (oneDNN) on the same network and input on an AVX2-only AMD EPYC; on a
CPU with native bf16 OpenVINO's bf16 kernels were measured 1.7x faster than torch's bf16 autocast
(the paper's network, one 192x256x192 forward, AMD EPYC with avx512_bf16; docs/speed.md). On
CUDA torch stays. ``auto`` therefore picks OpenVINO on the CPU when the precision resolves to
fp32, or to bf16 on a CPU that computes it natively (elsewhere OpenVINO would quietly run fp32
instead of the bf16 asked for), ``openvino`` imports, and the network has an identity to key the
exported copy's cache by (a model package's weights; see :mod:`.openvino_backend`); torch
otherwise. The choice and why go into run.json (``inference_run.backend``). ``openvino`` asked
for where it cannot run is an :class:`~.errors.OptionError`, never a silent fallback.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

from .errors import OptionError
from .options import Autocast, Backend, Device


@dataclass(frozen=True)
class BackendChoice:
    """The engine one run uses: ``asked`` (the option), ``used`` (torch or openvino), ``reason``."""

    asked: Backend
    used: Backend
    reason: str


def openvino_problem() -> str:
    """Why OpenVINO cannot be used here, in words; "" when it imports."""
    try:
        import openvino  # noqa: F401
    except Exception as exc:  # ImportError, or a broken native library (OSError, RuntimeError)
        return f"openvino does not import ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return ""


def choose_backend(requested: Backend | str, device: Device | str, autocast: Autocast | str,
                   has_identity: bool = True, problem: str | None = None,
                   native_bf16: bool = False) -> BackendChoice:
    """Resolve ``requested`` for a forward on ``device`` in ``autocast`` arithmetic.

    has_identity: the network has a stable identity (a model package's weights) to key the
        exported copy's cache; ``auto`` runs torch without one (e.g. a network being trained,
        whose weights change between calls).
    problem: why OpenVINO is unavailable ("" = available; None = find out by importing it).
    native_bf16: the CPU computes bf16 natively (:attr:`~.precision.CpuFeatures.native_bf16`);
        only there does OpenVINO run bf16 (elsewhere it would run fp32 in its place).
    """
    requested = Backend(requested)
    if requested == Backend.TORCH:
        return BackendChoice(requested, Backend.TORCH, "torch as asked")
    if requested == Backend.OPENVINO:
        why_not = _openvino_refusal(device, autocast, problem, native_bf16)
        if why_not:
            raise OptionError(f"--backend openvino: {why_not}; use --backend torch or auto.")
        return BackendChoice(requested, Backend.OPENVINO, "openvino as asked")
    if device != Device.CPU:
        return BackendChoice(requested, Backend.TORCH, f"auto: {device} runs torch")
    if autocast == Autocast.BF16 and not native_bf16:
        return BackendChoice(requested, Backend.TORCH, "auto: bf16 asked on a CPU without native bf16 runs in "
                                                        "torch (OpenVINO would run fp32 instead)")
    if not has_identity:
        return BackendChoice(requested, Backend.TORCH, "auto: the network has no package identity to key "
                                                        "an exported copy by; torch")
    problem = openvino_problem() if problem is None else problem
    if problem:
        return BackendChoice(requested, Backend.TORCH, f"auto: {problem}; torch {autocast}")
    if autocast == Autocast.BF16:
        return BackendChoice(requested, Backend.OPENVINO, "auto: bf16 on a CPU with native bf16, openvino "
                                                           "(faster bf16 kernels)")
    return BackendChoice(requested, Backend.OPENVINO, "auto: fp32 on the CPU, openvino (faster fp32 kernels)")


def _openvino_refusal(device, autocast, problem: str | None, native_bf16: bool) -> str:
    if device != Device.CPU:
        return f"runs on the CPU only, not {device}"
    if autocast == Autocast.BF16 and not native_bf16:
        return ("runs bf16 only on a CPU with native bf16 (AVX-512 BF16 or AMX), and this one has none "
                "(add --precision fp32)")
    if autocast not in (Autocast.FP32, Autocast.BF16):
        return f"runs fp32 or bf16, and the precision resolved to {autocast} (add --precision fp32)"
    return openvino_problem() if problem is None else problem


@functools.cache  # a class built on first use: this module imports without torch
def _zero_pad_shortcut_class():
    import torch

    class ZeroPadShortcut(torch.nn.Module):
        """MONAI ResNet's type-A shortcut (stride subsampling, channels zero-padded to
        ``planes``) without the ``.data`` that a trace records as a constant of the example's
        values and size."""

        def __init__(self, stride: int, planes: int):
            super().__init__()
            self.stride, self.planes = stride, planes

        def forward(self, x):
            out = torch.nn.functional.avg_pool3d(x, kernel_size=1, stride=self.stride)
            return torch.nn.functional.pad(out, (0, 0, 0, 0, 0, 0, 0, self.planes - out.shape[1]))

    return ZeroPadShortcut


def traceable_copy(net):
    """A deep copy of ``net`` (eval mode) whose type-A ResNet shortcuts trace and export with any
    input size. MONAI's ``_downsample_basic_block`` concatenates ``out.data``, which a trace
    (ONNX export, OpenVINO's PyTorch frontend) freezes into a constant holding the example's
    values and size: an export then fails at other sizes or, at the example's size, silently
    replaces the shortcut by a constant."""
    net = copy.deepcopy(net)
    shortcut_class = None
    for module in list(net.modules()):
        shortcut = getattr(module, "downsample", None)
        if isinstance(shortcut, functools.partial) and shortcut.func.__name__ == "_downsample_basic_block":
            shortcut_class = shortcut_class or _zero_pad_shortcut_class()
            module.downsample = shortcut_class(shortcut.keywords["stride"], shortcut.keywords["planes"])
    return net.eval()
