"""Sliding-window inference with MONAI, on CUDA when present, otherwise CPU.

Windows of the card's patch size step by ``patch * (1 - overlap)`` voxels; where
windows overlap their predictions are averaged (``blend_mode="constant"``, the
paper) or gaussian-weighted. The logit map is turned into probabilities with a
sigmoid. Cancellation and progress are handled between windows.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import NotEnoughMemoryError
from .progress import ProgressCallback, ProgressEvent, Stage, check_cancelled, no_progress


@dataclass(frozen=True)
class InferenceConfig:
    """Sliding-window settings.

    patch_size: window size (x, y, z) in voxels.
    overlap: fraction of a window shared with its neighbour along each axis.
    blend_mode: ``"constant"`` (average) or ``"gaussian"``.
    device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` (fp16 autocast on CUDA, fp32 on CPU).
    """

    patch_size: tuple[int, int, int] = (128, 128, 128)
    overlap: float = 0.5
    blend_mode: str = "constant"
    device: str = "auto"
    precision: str = "auto"
    sw_batch_size: int = 1


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; ``"cuda"`` without CUDA is an error."""
    import torch

    from .errors import InputError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA device is available; use --device cpu.")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda.")
    return device


def count_windows(shape_zyx, roi_zyx, overlap: float) -> int:
    """Number of windows MONAI's sliding window visits over a (Z, Y, X) volume."""
    n = 1
    for size, roi in zip(shape_zyx, roi_zyx, strict=True):
        if size <= roi:
            continue
        step = max(int(roi * (1 - overlap)), 1)
        n *= math.ceil((size - roi) / step) + 1
    return n


def autocast(device: str, precision: str):
    """Mixed-precision context: bf16 when asked, fp16 for ``auto`` on CUDA, else none."""
    import contextlib

    import torch

    if precision == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    if precision == "auto" and device == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _run(net, array: np.ndarray, config: InferenceConfig, device: str, sw_batch: int,
         progress: ProgressCallback, cancel: threading.Event | None) -> np.ndarray:
    import torch
    from monai.inferers import sliding_window_inference

    roi = tuple(config.patch_size[::-1])
    total = count_windows(array.shape[1:], roi, config.overlap)
    done = [0]

    def predictor(batch):
        check_cancelled(cancel)
        out = net(batch)
        done[0] += batch.shape[0]
        progress(ProgressEvent(Stage.INFERENCE, min(done[0] / total, 1.0),
                               f"window {min(done[0], total)}/{total} on {device}"))
        return out.float()

    net = net.to(device).eval()
    x = torch.from_numpy(np.ascontiguousarray(array))[None].to(device)
    with torch.inference_mode(), autocast(device, config.precision):
        logits = sliding_window_inference(x, roi, sw_batch, predictor, overlap=config.overlap,
                                          mode=config.blend_mode, padding_mode="constant", cval=0.0)
    return torch.sigmoid(logits[0, 0].float()).cpu().numpy()


def predict(net, array: np.ndarray, config: InferenceConfig = InferenceConfig(),
            progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None) -> np.ndarray:
    """Metastasis probability (Z, Y, X) float32 for a (C, Z, Y, X) float32 array.

    On CUDA out-of-memory it retries with one window per batch, then on the CPU,
    and warns each time; :class:`NotEnoughMemoryError` when the CPU fails too.
    """
    import torch

    progress = progress or no_progress
    device = resolve_device(config.device)
    if hasattr(net, "predict_volume"):  # an imported model that tiles as its framework does
        return net.predict_volume(array, device, progress, cancel)
    attempts = [(device, config.sw_batch_size)]
    if device == "cuda":
        if config.sw_batch_size > 1:
            attempts.append(("cuda", 1))
        attempts.append(("cpu", 1))
    for i, (dev, batch) in enumerate(attempts):
        try:
            return _run(net, array, config, dev, batch, progress, cancel)
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            if dev == "cuda":
                torch.cuda.empty_cache()
            if i + 1 == len(attempts):
                raise NotEnoughMemoryError(
                    f"out of memory during inference on {dev} ({type(exc).__name__}); "
                    "use a smaller patch size or a machine with more memory.") from None
            nxt = attempts[i + 1]
            warnings.warn(f"out of memory on {dev} with {batch} window(s) per batch; "
                          f"retrying on {nxt[0]} with {nxt[1]}.", RuntimeWarning, stacklevel=2)
    raise AssertionError("unreachable")
