"""Which arithmetic inference uses, decided from the machine it runs on.

bf16 autocast is 1.5-2.5x faster than fp32 on CPUs with native bf16 instructions
(AVX-512 BF16, AMX) but 10-20x *slower* on CPUs without them (AVX2 only), where
oneDNN emulates it (SPEC.md). So ``auto`` picks bf16 + channels_last_3d only when
the CPU has them, fp32 otherwise, and fp16 autocast on CUDA. Where OpenVINO runs the forward,
``auto`` runs the model package's int8 network for the weights being run, if the card lets it
(:mod:`.int8_network`), instead of fp32 on a CPU without native bf16 that has AVX2 (~1.8x faster
than OpenVINO fp32 on an AVX2-only CPU) and instead of bf16 on a CPU with native bf16 that has
AVX-512 VNNI (3.8x torch bf16's forward on an AMD EPYC with both); its agreement in docs/speed.md.
The decision and the features it was made from go into run.json.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass

from .errors import OptionError
from .options import Autocast, Device, Precision, values

PRECISIONS = values(Precision)
# /proc/cpuinfo flags that mean the CPU computes bf16 natively (AVX-512 BF16, AMX).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# ``auto`` runs a package's int8 network only on CPUs with this flag: the kind it was measured on
# (1.8x OpenVINO fp32 on an AVX2-only AMD EPYC, docs/speed.md); elsewhere (ARM, pre-AVX2 x86) fp32.
INT8_MEASURED_FLAG = "avx2"
# On a CPU with native bf16, ``auto`` runs the int8 network instead of bf16 only where the CPU also
# has this flag (8-bit dot products): the kind measured (AMD EPYC with avx512_bf16 + avx512_vnni: the
# demo's int8 forward 0.83 s against 2.6 s in torch bf16, docs/speed.md).
INT8_OVER_BF16_FLAG = "avx512_vnni"
# Flags recorded in run.json and benchmark results (what decides speed on a CPU).
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                  "amx_tile", "amx_int8")
# ONEDNN_MAX_CPU_ISA values that still allow bf16 instructions (oneDNN's names).
_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX10_1_512_AMX",
              "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "ALL")


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU offers for inference.

    model: the CPU's model name from /proc/cpuinfo ("" when unknown).
    flags: the :data:`REPORTED_FLAGS` the CPU has.
    mkldnn_bf16: torch's oneDNN says it supports bf16 on this CPU.
    onednn_max_isa: the ONEDNN_MAX_CPU_ISA environment variable ("" when unset); it caps
        the instructions oneDNN uses, e.g. ``AVX2`` to mimic an AVX2-only machine.
    """

    model: str
    flags: tuple[str, ...]
    mkldnn_bf16: bool
    onednn_max_isa: str
    threads: int

    @property
    def native_bf16(self) -> bool:
        """bf16 runs in hardware: a native flag, oneDNN's support, and no ISA cap below bf16."""
        capped = bool(self.onednn_max_isa) and self.onednn_max_isa.upper() not in _BF16_ISAS
        return any(f in self.flags for f in NATIVE_BF16_FLAGS) and self.mkldnn_bf16 and not capped

    def as_dict(self) -> dict:
        return {**asdict(self), "native_bf16": self.native_bf16}


def _cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, set[str]]:
    model, flags = "", set()
    try:
        with open(path) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux: no flags, so no bf16 guess (fp32 is always safe)
        pass
    return model, flags


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """The features of this machine's CPU (read once per process)."""
    import torch

    model, flags = _cpuinfo()
    try:
        mkldnn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private API: absent in some builds
        mkldnn_bf16 = False
    return CpuFeatures(model=model, flags=tuple(f for f in REPORTED_FLAGS if f in flags),
                       mkldnn_bf16=mkldnn_bf16 and torch.backends.mkldnn.is_available(),
                       onednn_max_isa=os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
                       threads=torch.get_num_threads())


@dataclass(frozen=True)
class PrecisionChoice:
    """The arithmetic one run uses.

    autocast: ``fp32`` (none), ``bf16`` or ``fp16`` autocast.
    channels_last: network and input in channels_last_3d memory format (helps oneDNN's bf16).
    reason: why, in words, for run.json.
    int8: the package's int8 network runs (through OpenVINO; ``autocast`` is then fp32, what
        the rest of the run, deepbet included, uses).
    native_bf16: bf16 on a CPU that computes it natively (where OpenVINO may run it,
        :func:`~.backends.choose_backend`); False for every other choice.
    """

    autocast: Autocast
    channels_last: bool
    reason: str
    int8: bool = False
    native_bf16: bool = False


def choose_precision(requested: Precision | str, device: Device | str,
                     features: CpuFeatures | None = None, int8_available: bool = False) -> PrecisionChoice:
    """Resolve ``requested`` (:class:`~BrainMetSegLib.options.Precision`) for ``device``
    (``cpu`` or ``cuda``). ``int8_available``: the run has an int8 network for its weights and
    OpenVINO runs its forward (``int8`` asked without it is an :class:`OptionError`)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    if device == Device.CUDA:
        if requested == Precision.INT8:
            raise OptionError("--precision int8 runs on the CPU (OpenVINO), not on CUDA; use --device cpu.")
        if requested == Precision.AUTO:
            return PrecisionChoice(Autocast.FP16, False, "CUDA: fp16 autocast")
        return PrecisionChoice(Autocast(requested), False, f"CUDA: {requested} as asked")
    if requested == Precision.FP32:
        return PrecisionChoice(Autocast.FP32, False, "fp32 as asked")
    if requested == Precision.INT8:
        if not int8_available:
            raise OptionError("--precision int8: no int8 network for this run (the model package ships none, "
                              "or OpenVINO does not run the forward); use --precision auto or fp32.")
        return PrecisionChoice(Autocast.FP32, False, "int8 as asked (the package's int8 network, OpenVINO)", True)
    features = features or cpu_features()
    native = features.native_bf16
    if requested == Precision.BF16:
        return PrecisionChoice(Autocast.BF16, True, "bf16 as asked" + ("" if native else
                               " (this CPU has no native bf16: emulated, expect it to be much slower)"),
                               native_bf16=native)
    if native:
        bf16_flags = ", ".join(f for f in NATIVE_BF16_FLAGS if f in features.flags)
        if int8_available and INT8_OVER_BF16_FLAG in features.flags:
            return PrecisionChoice(Autocast.FP32, False, f"auto: CPU has native bf16 ({bf16_flags}) and "
                                   f"{INT8_OVER_BF16_FLAG}; the package's int8 network (OpenVINO)", True)
        return PrecisionChoice(Autocast.BF16, True, f"auto: CPU has native bf16 ({bf16_flags})", native_bf16=True)
    why = (f"ONEDNN_MAX_CPU_ISA={features.onednn_max_isa}" if features.onednn_max_isa
           and any(f in features.flags for f in NATIVE_BF16_FLAGS) else "no native bf16 on this CPU")
    if int8_available and INT8_MEASURED_FLAG in features.flags:
        return PrecisionChoice(Autocast.FP32, False, f"auto: {why}; the package's int8 network (OpenVINO)", True)
    if int8_available:
        why += f"; int8 not measured on a CPU without {INT8_MEASURED_FLAG.upper()} (e.g. ARM)"
    return PrecisionChoice(Autocast.FP32, False, f"auto: {why}, fp32")
