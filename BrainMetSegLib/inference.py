"""Inference over the cropped brain: one forward when it fits in memory, else windows.

Modes (``InferenceConfig.mode``):

- ``"whole"``: the cropped volume, zero-padded to a multiple of the architecture's size
  divisor (32 for FlexibleUNet), in ONE forward. The brain is computed once instead of
  ~8 times by 50 %-overlapping 128^3 windows.
- ``"paper"``: the paper's sliding window: the card's patch (128^3) stepping by
  ``patch * (1 - overlap)`` voxels, overlapping predictions averaged
  (``blend_mode="constant"``) or gaussian-weighted.
- ``"auto"``: ``whole`` when its estimated memory fits ``memory_budget_mb``, otherwise
  the largest windows (multiples of the divisor) that fit, overlapping by
  ``fallback_overlap``.

Memory is estimated as voxels x bytes per voxel, where bytes per voxel = the network's
convolution outputs per input voxel (counted on a tiny forward) x :data:`LIVE_BYTES_PER_ELEMENT`,
a factor measured as the peak resident memory of whole forwards of the paper's network
and the demo network (fp32: 405 and 326 bytes/voxel for 61 and 43 outputs/voxel; bf16 +
channels_last: 250 and 174), rounded up, x :data:`BACKEND_MEMORY_FACTOR` (OpenVINO's fp32
forward of the demo network on 128x160x128 peaked at 154 bytes/voxel against torch's 304, the
paper network's on 192x256x192 at 268, bf16 138).

The forward runs in torch or, on a CPU running fp32 or native bf16, in OpenVINO (``InferenceConfig.backend``,
:mod:`BrainMetSegLib.backends`; the exported network is cached on disk,
:mod:`BrainMetSegLib.openvino_backend`).

Windows are run by MONAI's ``sliding_window_inference`` in every mode (one window for
``whole``); the logit map becomes probabilities with a sigmoid. Cancellation and
progress are handled between windows.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .backends import BackendChoice, choose_backend
from .conv_counts import outputs_per_voxel
from .errors import ModelError, NotEnoughMemoryError, OptionError
from .memory import memory_budget
from .mirroring import mirror_sets, mirrored
from .options import (
    MIRROR_AXES_ZYX,
    Autocast,
    Backend,
    BlendMode,
    Device,
    InferenceMode,
    Mirroring,
    PlanMode,
    Precision,
    as_options,
)
from .precision import PrecisionChoice, choose_precision
from .progress import ProgressCallback, ProgressEvent, Stage, check_cancelled, no_progress

if TYPE_CHECKING:
    from .int8_network import Int8Network

# Peak resident bytes per convolution output element per input voxel, by autocast dtype
# (measured, see the module docstring; fp32 keeps ~2 live float32 copies, bf16 ~2.25 bf16).
LIVE_BYTES_PER_ELEMENT = {Autocast.FP32: 8.0, Autocast.BF16: 4.5, Autocast.FP16: 4.5}
# The same per backend, relative to torch. OpenVINO, measured as peak RSS over one forward
# (docs/speed.md): demo network fp32 3.6 bytes per element (torch 7.1), bf16 1.8; the paper's
# network at 192x256x192 fp32 4.39 (267.6 bytes per voxel), bf16 2.26 (137.7): 0.6 keeps the
# estimate above every one (paper: 4.8 and 2.7 bytes per element).
BACKEND_MEMORY_FACTOR = {Backend.TORCH: 1.0, Backend.OPENVINO: 0.6}


@dataclass(frozen=True)
class InferenceConfig:
    """Inference settings.

    mode: ``"auto"``, ``"whole"`` or ``"paper"`` (see the module docstring).
    patch_size: the paper-mode window (x, y, z) in voxels.
    overlap: fraction of a paper-mode window shared with its neighbour along each axis.
    blend_mode: ``"constant"`` (average) or ``"gaussian"``, where windows overlap.
    device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    precision: ``"auto"`` (bf16 + channels_last_3d on CPUs with native bf16, fp32 on other
        CPUs, fp16 autocast on CUDA), ``"fp32"`` or ``"bf16"``.
    size_divisor: every input dimension of the network must be a multiple of this (voxels).
    memory_budget_mb: memory the forward may use in ``auto`` mode (MiB); ``None`` = derived
        from the memory available now (:mod:`BrainMetSegLib.memory`).
    bytes_per_voxel: override of the estimated peak bytes per input voxel.
    fallback_overlap: overlap of the large windows ``auto`` uses when whole does not fit.
    backend: ``"auto"`` (OpenVINO on a CPU running fp32, or bf16 natively, when it imports and the
        network has a package identity, torch otherwise), ``"torch"`` or ``"openvino"``
        (:mod:`BrainMetSegLib.backends`).
    backend_cache: folder of OpenVINO's exported networks; None = ``$BRAINMETSEG_CACHE/openvino``.
    mirror: test-time mirroring (:class:`~BrainMetSegLib.options.Mirroring`): every window also
        runs flipped along the mirrored axes, logits averaged over the 2^k flip combinations.
    Choices given as strings become the enum members of :mod:`~BrainMetSegLib.options` on creation.
    """

    mode: InferenceMode = InferenceMode.AUTO
    patch_size: tuple[int, int, int] = (128, 128, 128)
    overlap: float = 0.5
    blend_mode: BlendMode = BlendMode.CONSTANT
    device: Device = Device.AUTO
    precision: Precision = Precision.AUTO
    sw_batch_size: int = 1
    size_divisor: int = 32
    memory_budget_mb: float | None = None
    bytes_per_voxel: float | None = None
    fallback_overlap: float = 0.25
    backend: Backend = Backend.AUTO
    backend_cache: str | None = None
    mirror: Mirroring = Mirroring.NONE

    def __post_init__(self):
        as_options(self, mode=(InferenceMode, "--inference-mode"), blend_mode=(BlendMode, "--blend"),
                   device=(Device, "--device"), precision=(Precision, "--precision"),
                   backend=(Backend, "--backend"), mirror=(Mirroring, "--mirror"))


@dataclass(frozen=True)
class WindowPlan:
    """How one volume is run: windows of ``roi_zyx`` voxels, ``windows`` of them.

    mode: ``"whole"``, ``"windows"`` (auto's large-window fallback) or ``"paper"``.
    estimated_mib: estimated memory of one window's forward (MiB).
    budget_source: where ``budget_mib`` came from (``--memory-budget`` or the memory available).
    """

    mode: PlanMode
    roi_zyx: tuple[int, int, int]
    overlap: float
    blend_mode: BlendMode
    windows: int
    estimated_mib: float
    budget_mib: float
    bytes_per_voxel: float
    precision: PrecisionChoice
    budget_source: str = ""
    backend: BackendChoice = BackendChoice(Backend.TORCH, Backend.TORCH, "torch")


def resolve_device(device: Device | str) -> Device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without CUDA is an error."""
    import torch

    from .errors import InputError

    if device == Device.AUTO:
        return Device.CUDA if torch.cuda.is_available() else Device.CPU
    if device == Device.CUDA and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA device is available; use --device cpu.")
    if device not in (Device.CPU, Device.CUDA):
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda.")
    return Device(device)


def count_windows(shape_zyx, roi_zyx, overlap: float) -> int:
    """Number of windows MONAI's sliding window visits over a (Z, Y, X) volume."""
    n = 1
    for size, roi in zip(shape_zyx, roi_zyx, strict=True):
        n *= _windows_along(size, roi, overlap)
    return n


def _windows_along(size: int, roi: int, overlap: float) -> int:
    if size <= roi:
        return 1
    step = max(int(roi * (1 - overlap)), 1)
    return math.ceil((size - roi) / step) + 1


def autocast(device: Device, precision: Autocast | Precision):
    """Mixed-precision context: bf16/fp16 when asked, fp16 for ``auto`` on CUDA, else none."""
    import contextlib

    import torch

    if precision == Autocast.BF16:
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    if precision == Autocast.FP16 or (precision == Precision.AUTO and device == Device.CUDA):
        return torch.autocast(device_type=device, dtype=torch.float16)
    return contextlib.nullcontext()


def padded_shape(shape_zyx, divisor: int) -> tuple[int, ...]:
    """``shape_zyx`` rounded up to multiples of ``divisor`` (voxels)."""
    return tuple(int(math.ceil(s / divisor) * divisor) for s in shape_zyx)


def _cheapest_fitting_roi(shape, padded, minimum, max_voxels: float, divisor: int,
                         overlap: float) -> tuple[int, ...]:
    """The window (multiples of ``divisor``, from ``minimum`` (the paper's patch, so window
    borders are no closer than in paper mode) up to ``padded``) within ``max_voxels`` that
    computes the fewest voxels over ``shape`` in all (ties: fewer windows, then larger)."""
    import itertools

    sizes = [range(min(p, int(math.ceil(m / divisor) * divisor)), p + 1, divisor)
             for p, m in zip(padded, minimum, strict=True)]
    best, best_key = None, None
    for roi in itertools.product(*sizes):
        voxels = math.prod(roi)
        n = count_windows(shape, roi, overlap)
        # nothing fits: the smallest window (the paper's patch) is the best left
        key = (0, n * voxels, n, -voxels) if voxels <= max_voxels else (1, voxels, n, 0)
        if best_key is None or key < best_key:
            best, best_key = roi, key
    return tuple(best)


def plan_windows(net, shape_czyx, config: InferenceConfig, device: str,
                 backend: BackendChoice | None = None, network_id: dict | None = None,
                 precision: PrecisionChoice | None = None) -> WindowPlan:
    """Decide mode, window size and precision for a (C, Z, Y, X) volume on ``device``, with the
    forward run by ``backend`` (None: torch); ``network_id`` keys the network's convolution
    count on disk (:mod:`.conv_counts`); ``precision``: already resolved (None: resolve
    ``config.precision`` without an int8 network)."""
    precision = precision or choose_precision(config.precision, device)
    backend = backend or BackendChoice(config.backend, Backend.TORCH, "torch")
    shape = tuple(shape_czyx[1:])
    bpv = config.bytes_per_voxel or (outputs_per_voxel(net, shape_czyx[0], config.size_divisor, network_id)
                                     * LIVE_BYTES_PER_ELEMENT[precision.autocast]
                                     * BACKEND_MEMORY_FACTOR[backend.used])
    chosen = memory_budget(config.memory_budget_mb, device)
    budget = chosen.mib

    def plan(mode, roi, overlap, blend):
        return WindowPlan(mode, tuple(int(r) for r in roi), overlap, blend,
                          count_windows(shape, roi, overlap),
                          round(math.prod(roi) * bpv / 2**20, 1), round(budget, 1), round(bpv, 1), precision,
                          chosen.source, backend)

    if config.mode == InferenceMode.PAPER:
        return plan(PlanMode.PAPER, config.patch_size[::-1], config.overlap, config.blend_mode)
    # never below the card's patch: the network has not seen smaller inputs (and a tiny
    # volume would shrink to nothing in its deepest layer)
    padded = tuple(max(p, int(m)) for p, m in zip(padded_shape(shape, config.size_divisor),
                                                  config.patch_size[::-1], strict=True))
    if config.mode == InferenceMode.WHOLE or math.prod(padded) * bpv <= budget * 2**20:
        return plan(PlanMode.WHOLE, padded, 0.0, BlendMode.CONSTANT)
    roi = _cheapest_fitting_roi(shape, padded, config.patch_size[::-1], budget * 2**20 / bpv,
                                config.size_divisor, config.fallback_overlap)
    return plan(PlanMode.WINDOWS, roi, config.fallback_overlap, config.blend_mode)


def _run(net, array: np.ndarray, plan: WindowPlan, device: Device, sw_batch: int,
         progress: ProgressCallback, cancel: threading.Event | None, forward=None,
         mirror: Mirroring = Mirroring.NONE) -> np.ndarray:
    """``forward`` (torch tensor -> torch tensor; an OpenVINO network) replaces ``net``'s when given
    (``net`` is then not touched: a :class:`~.lazy_network.LazyNetwork` stays unbuilt)."""
    import torch

    total = plan.windows
    done = [0]
    # OpenVINO reads a plain contiguous array (channels_last is torch's bf16 layout)
    channels_last = plan.precision.channels_last and forward is None
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    flips = mirror_sets(mirror)

    def predictor(batch):
        check_cancelled(cancel)
        out = mirrored(forward or net, batch.contiguous(memory_format=memory_format), flips)
        done[0] += batch.shape[0]
        progress(ProgressEvent(Stage.INFERENCE, min(done[0] / total, 1.0),
                               f"window {min(done[0], total)}/{total} on {device}"))
        return out.float().contiguous()

    if forward is None:
        net = net.to(device=device, memory_format=memory_format).eval()
    x = torch.from_numpy(np.ascontiguousarray(array))[None].to(device)
    with torch.inference_mode(), autocast(device, plan.precision.autocast):
        if plan.blend_mode == BlendMode.CONSTANT and all(r >= s for r, s in zip(plan.roi_zyx, array.shape[1:],
                                                                                strict=True)):
            logits = one_window(predictor, x, plan.roi_zyx)
        else:
            from monai.inferers import sliding_window_inference

            logits = sliding_window_inference(x, plan.roi_zyx, sw_batch, predictor, overlap=plan.overlap,
                                              mode=plan.blend_mode, padding_mode="constant", cval=0.0)
    return torch.sigmoid(logits[0, 0].float()).cpu().numpy()


def one_window(predictor, x, roi_zyx):
    """MONAI's ``sliding_window_inference`` (constant blending) of a (N, C, Z, Y, X) tensor that
    fits in one window (``roi_zyx`` >= its size on every axis), without importing MONAI (~3 s of CPU, all its
    subpackages): zero padding split as MONAI splits it (half before, the rest after), one call
    of ``predictor``, the padding cropped. MONAI averages one window as 0 + 1 x logit, / 1: the
    same numbers (``Testing/test_inference_modes.py`` compares both)."""
    import torch.nn.functional as F

    shape = x.shape[2:]
    pad: list[int] = []
    for size, roi in zip(reversed(shape), reversed(roi_zyx), strict=True):  # F.pad: last axis first
        diff = max(int(roi) - int(size), 0)
        pad += [diff // 2, diff - diff // 2]
    out = predictor(F.pad(x, pad, mode="constant", value=0.0) if any(pad) else x)
    before = pad[::2][::-1]  # Z, Y, X
    return out[(slice(None), slice(None), *(slice(b, b + n) for b, n in zip(before, shape, strict=True)))]


def resolve_backend(net, in_channels: int, config: InferenceConfig, device: Device,
                    network_id: dict | None = None, progress: ProgressCallback = no_progress,
                    int8: Int8Network | None = None) -> tuple[BackendChoice, object, dict, PrecisionChoice]:
    """The backend for this run, its forward (None: the torch network itself), run.json's
    record of it and the precision. ``int8``: the package's int8 network for these weights,
    which runs where the precision resolves to it. An OpenVINO export that fails or disagrees
    with torch is an error when ``openvino`` was asked for; under ``auto`` torch runs instead,
    with a warning."""
    precision = choose_precision(config.precision, device, int8_available=int8 is not None and device == Device.CPU)
    choice = choose_backend(config.backend, device, precision.autocast, has_identity=network_id is not None,
                            native_bf16=precision.native_bf16)
    if precision.int8:
        if choice.used != Backend.OPENVINO:  # the caller offers int8 only where OpenVINO runs
            raise OptionError(f"the int8 network runs through OpenVINO, and the backend resolved to torch "
                              f"({choice.reason}).")
        forward, record = int8.forward()
        choice = BackendChoice(choice.asked, Backend.OPENVINO, f"{choice.reason}; int8 network")
        return choice, forward, record, precision
    if choice.used != Backend.OPENVINO:
        return choice, None, {}, precision
    from .openvino_backend import INFERENCE_PRECISION, openvino_forward

    try:
        forward, record = openvino_forward(net, in_channels, config.size_divisor, network_id, config.backend_cache,
                                           lambda message: progress(ProgressEvent(Stage.INFERENCE, 0.0, message)),
                                           precision=INFERENCE_PRECISION[precision.autocast])
    except ModelError as exc:
        if choice.asked == Backend.OPENVINO:
            raise
        warnings.warn(f"{exc} Running torch instead.", RuntimeWarning, stacklevel=3)
        fallback = BackendChoice(choice.asked, Backend.TORCH,
                                 f"auto: openvino failed ({exc}); torch {precision.autocast}")
        return fallback, None, {}, precision
    return choice, forward, record, precision


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    # OpenVINO reports a failed allocation as a RuntimeError naming std::bad_alloc
    return isinstance(exc, RuntimeError) and "bad_alloc" in str(exc)


def predict(net, array: np.ndarray, config: InferenceConfig = InferenceConfig(),
            progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None, info: dict | None = None,
            network_id: dict | None = None, int8: Int8Network | None = None) -> np.ndarray:
    """Metastasis probability (Z, Y, X) float32 for a (C, Z, Y, X) float32 array.

    When a forward runs out of memory it retries with one window per batch and the
    paper's windows, then on the CPU, and warns each time; :class:`NotEnoughMemoryError`
    when the CPU fails too. ``info``, when given, receives the plan that produced the
    result (mode, window size, windows, precision, backend, memory estimate) for run.json.
    ``network_id``: the network's identity (a model package's weights and architecture,
    :meth:`~BrainMetSegLib.models.ModelPackage.network_identity`), which keys OpenVINO's cache.
    ``int8``: the package's int8 network for the weights ``net`` holds
    (:meth:`~BrainMetSegLib.models.ModelPackage.int8_network`), run where the precision resolves
    to int8 (:func:`~BrainMetSegLib.precision.choose_precision`).
    """
    import torch

    progress = progress or no_progress
    device = resolve_device(config.device)
    if hasattr(net, "predict_volume"):  # an imported model that tiles as its framework does
        if config.backend == Backend.OPENVINO:
            raise OptionError("--backend openvino: this model runs through its framework's own predictor; "
                              "use --backend auto or torch.")
        if config.mirror != Mirroring.NONE:
            raise OptionError("--mirror: this model runs through its framework's own predictor, which mirrors "
                              "as its card's network_io mirror_axes say; use --mirror none.")
        if info is not None:
            info.clear()
            info.update({"mode": PlanMode.IMPORTED_FRAMEWORK, "mode_requested": config.mode, "device": device,
                         "backend": {"asked": config.backend, "used": Backend.TORCH,
                                     "reason": "the framework's own predictor (torch)"}})
        return net.predict_volume(array, device, progress, cancel)
    backend, forward, record, precision = resolve_backend(net, array.shape[0], config, device, network_id,
                                                          progress, int8)
    attempts = [(device, config.sw_batch_size, config)]
    if config.sw_batch_size > 1 or config.mode != InferenceMode.PAPER:
        attempts.append((device, 1, replace(config, mode=InferenceMode.PAPER)))
    if device == Device.CUDA:
        attempts.append((Device.CPU, 1, config))
    for i, (dev, batch, cfg) in enumerate(attempts):
        try:
            plan = plan_windows(net, array.shape, cfg, dev, backend if dev == device else None, network_id,
                                precision if dev == device else None)
            out = _run(net, array, plan, dev, batch, progress, cancel,
                       forward if plan.backend.used == Backend.OPENVINO else None, config.mirror)
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as exc:
            if not _out_of_memory(exc):
                raise
            if dev == Device.CUDA:
                torch.cuda.empty_cache()
            if i + 1 == len(attempts):
                raise NotEnoughMemoryError(
                    f"out of memory during inference on {dev} ({type(exc).__name__}); "
                    "use --inference-mode paper, a smaller patch size or a machine with more memory."
                ) from None
            nxt = attempts[i + 1]
            warnings.warn(f"out of memory on {dev} with {batch} window(s) per batch; retrying on "
                          f"{nxt[0]} with {nxt[1]} ({nxt[2].mode} mode).", RuntimeWarning, stacklevel=2)
            continue
        if info is not None:
            info.clear()
            info.update({**asdict(plan), "device": dev, "mode_requested": config.mode,
                         "roi_xyz": list(plan.roi_zyx[::-1]), "shape_xyz": list(array.shape[1:][::-1])})
            info["backend"].update(record if plan.backend.used == Backend.OPENVINO else {})
            info["mirror"] = {"mode": config.mirror, "axes_zyx": list(MIRROR_AXES_ZYX[config.mirror]),
                              "forwards_per_window": len(mirror_sets(config.mirror))}
            info.pop("roi_zyx")
        return out
    raise AssertionError("unreachable")
