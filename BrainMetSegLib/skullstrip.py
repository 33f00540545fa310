"""Brain extraction with deepbet (MIT, TorchScript weights inside its wheel; nothing downloaded).

deepbet can carve part of a ring-enhancing lesion at the brain surface out of its
mask (SPEC.md), so callers dilate the mask before it gates anything.
"""

from __future__ import annotations

import copy
import functools
import warnings

import numpy as np

from .errors import InputError, ModelError
from .options import Device

# deepbet resizes its crop of the brain to this cube (voxels) for its network; its own default is
# 256. 224 keeps the mask (Dice >= 0.98 against 256 on 4 phantoms) for 0.67x the voxels. With demo
# 2.3.0 it cost 2 false lesions on the sample, so 256 stayed; with 2.6.0 a rule written first was met
# (seed 6000, 20 phantoms, original / tilted 15 / 5 mm: 469 lesions against 470, 13 false against 12,
# outside the brain 1 and 1; the sample 10 lesions, all true, against 9) and the preprocessing of a
# case is 0.5 s shorter (paired 0.87-0.89), so 224 it is (docs/speed.md).
DEEPBET_GRID = 224
# ...except for scans the thick-slice weights run (slice spacing above their split): the thick
# network and its scorer were made and measured with 256^3 masks and react to the small change of
# the brain's normalisation statistics (seed 6000 at 3/5/7 mm: 224 found 431 lesions against 437, 28
# false against 24; fresh seeds 10400/10500 at 5/7 mm: 123 against 124, 34 false against 32, 3
# outside the brain against 1), so those scans keep 256 (docs/robustness.md).
DEEPBET_GRID_THICK = 256
# deepbet's network takes inputs whose sides are multiples of this (voxels): 48 fails, 32 and 64 run.
DEEPBET_DIVISOR = 32


@functools.cache
def deepbet_identity(network: str = "model") -> dict:
    """What keys one of deepbet's exported networks (``model``: the brain network, as before;
    ``bbox_model``: the box finder): its version and the weights file's sha256."""
    from importlib.metadata import version

    from deepbet.bet import DATA_PATH

    from .checksums import sha256_file

    identity = {"deepbet": version("deepbet"), "model_sha256": sha256_file(f"{DATA_PATH}/models/{network}.pt")}
    return identity if network == "model" else {**identity, "network": network}


class _ModuleLike:
    """An OpenVINO forward as deepbet's ``run_model`` calls its network: ``parameters()`` (it
    reads the device from them) and a call."""

    def __init__(self, forward):
        self.forward = forward

    def parameters(self):
        import torch

        return iter([torch.zeros(0)])

    def __call__(self, x):
        return self.forward(x)


def _with_openvino(bet, cache_dir, info: dict | None, precision: str = "f32"):
    """A shallow copy of ``bet`` whose brain network runs in OpenVINO and, on a
    :class:`~.deepbet_fast.FastBrainExtraction`, whose 128^3 box finder may too (its box is
    used only when certain, :func:`~.deepbet_fast.box_is_certain`), each exported once and
    cached (:mod:`.openvino_backend`); ``bet`` itself when the brain network's export fails or
    disagrees with torch, torch's box finder when its does (warned; recorded in ``info``)."""
    from .openvino_backend import openvino_forward

    try:
        forward, record = openvino_forward(bet.model, 1, DEEPBET_DIVISOR, deepbet_identity(), cache_dir,
                                           outputs="probability", precision=precision)
    except ModelError as exc:
        warnings.warn(f"deepbet: {exc} Running torch instead.", RuntimeWarning, stacklevel=3)
        if info is not None:
            info["deepbet_backend"] = {"used": "torch", "reason": f"openvino failed ({exc})"}
        return bet
    if info is not None:
        info["deepbet_backend"] = {"used": "openvino", **record}
    bet = copy.copy(bet)
    bet.model = _ModuleLike(forward)
    if hasattr(bet, "bbox_openvino"):
        bet.bbox_openvino, box_record = _box_finder_openvino(bet.bbox_model, cache_dir)
        if info is not None:
            info["deepbet_backend"]["box_finder"] = box_record
    return bet


def _box_finder_openvino(bbox_model, cache_dir) -> tuple[object, dict]:
    """deepbet's box finder through OpenVINO (None when its export fails: torch's runs) and
    run.json's record of it."""
    from .openvino_backend import openvino_forward

    try:
        forward, record = openvino_forward(bbox_model, 1, DEEPBET_DIVISOR, deepbet_identity("bbox_model"),
                                           cache_dir, outputs="probability")
    except ModelError as exc:
        warnings.warn(f"deepbet's box finder: {exc} Running torch instead.", RuntimeWarning, stacklevel=4)
        return None, {"used": "torch", "reason": f"openvino failed ({exc})"}
    return forward, {"used": "openvino where its box is certain, else torch", "cache": record["cache"],
                     "compile_s": record["compile_s"], "check": record.get("check")}


@functools.lru_cache(maxsize=1)
def _deepbet(device: Device):
    from .deepbet_fast import FastBrainExtraction  # deepbet's, same output, less array work

    return FastBrainExtraction(no_gpu=device == Device.CPU)


def _run_bf16(bet, ras: np.ndarray, grid: int = DEEPBET_GRID) -> np.ndarray:
    import torch

    bet.model.to(memory_format=torch.channels_last_3d)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return bet.run_model(ras.copy(), shape=(grid,) * 3)
    finally:
        bet.model.to(memory_format=torch.contiguous_format)


def deepbet_mask(array_zyx_lps: np.ndarray, device: Device = Device.CPU, threshold: float = 0.5,
                 bf16: bool = False, openvino: bool = False, cache_dir: str | None = None,
                 info: dict | None = None, grid: int = DEEPBET_GRID) -> np.ndarray:
    """Brain mask of a T1-like volume on an identity-direction LPS grid.

    array_zyx_lps: (Z, Y, X) float array, axes increasing towards S, P, L.
    bf16: run deepbet's network under bf16 autocast with channels_last_3d weights on
        the CPU (for CPUs with native bf16; 6 of 7 interleaved runs faster than fp32, mask
        Dice 0.9998 against fp32 on a phantom, docs/speed.md).
    openvino: run deepbet's brain network in OpenVINO (CPU; with the inference's OpenVINO
        backend; in bf16 with ``bf16``: 0.51-0.58 s against torch bf16's 0.68 s on the sample,
        mask Dice 0.9998, docs/speed.md), its export cached in ``cache_dir`` (None: ``$BRAINMETSEG_CACHE/openvino``);
        ``info`` (a dict) then receives ``deepbet_backend``, the record of it.
    deepbet's network sees its brain crop resized to ``grid`` ^3 voxels (:data:`DEEPBET_GRID`;
    ``info["deepbet_grid"]`` records it).
    Returns a bool (Z, Y, X) mask: largest component, holes filled.
    """
    # deepbet works on RAS-canonical (X, Y, Z) arrays as nibabel gives them.
    ras = np.ascontiguousarray(array_zyx_lps.transpose(2, 1, 0)[::-1, ::-1, :], dtype=np.float32)
    if info is not None:
        info["deepbet_grid"] = grid
    bet = _deepbet(device)
    if openvino and device == Device.CPU:
        bet = _with_openvino(bet, cache_dir, info, "bf16" if bf16 else "f32")
    try:
        if bf16 and device == Device.CPU and not isinstance(bet.model, _ModuleLike):
            prob = _run_bf16(bet, ras, grid)
        else:  # ras is this call's own array and run_model reads it (nan_to_num makes a new one)
            prob = bet.run_model(ras, shape=(grid,) * 3)
        mask = bet.postprocess(prob > threshold)
        if info is not None and "box_finder" in info.get("deepbet_backend", {}):
            info["deepbet_backend"]["box_finder"]["box_from"] = bet.box_backend
    except (AssertionError, ValueError) as exc:
        raise InputError(f"brain extraction found no brain in the image ({exc}); "
                         "pass --brain-mask none for an already skull-stripped image "
                         "or --brain-mask PATH with a mask.") from None
    return np.ascontiguousarray(np.asarray(mask, bool)[::-1, ::-1, :].transpose(2, 1, 0))
