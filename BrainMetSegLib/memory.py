"""How much memory one network forward may use: the default ``--memory-budget``.

The budget follows the machine: its memory (the smaller of /proc/meminfo's ``MemTotal`` and
this process's cgroup limit, v2 ``memory.max`` or v1 ``memory.limit_in_bytes``), less
:data:`PIPELINE_RESERVE_MB` for everything else the
pipeline holds while the forward runs (the interpreter, torch and MONAI, the model, deepbet,
the images and the probability map), times :data:`AVAILABLE_FRACTION` so that other programs
and the estimate's error keep room. The machine's size, not the memory free at the moment:
the budget picks the inference plan (one forward or windows), and the plan changes the
probabilities at window edges, so the same scan on the same machine must always get the same
plan (free memory varies from run to run). On CUDA: the free GPU memory times the same fraction.
The value and where it came from go into run.json (``inference_run.budget_source``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .options import Device

# MiB the rest of the pipeline needs next to the forward (peak RSS outside the forward
# measured at 1.0-1.4 GiB: torch + MONAI + a loaded model + deepbet + images).
PIPELINE_RESERVE_MB = 1536.0
# Share of what is left that the forward may take.
AVAILABLE_FRACTION = 0.5
# Never plan below this (MiB): the planner then falls back to the card's patch anyway.
MINIMUM_BUDGET_MB = 256.0
# Used when the available memory cannot be read (not Linux, no CUDA query): what fits a
# whole-brain bf16 forward of the paper's network (~1.9 GB) on a 4 GB-RSS pipeline.
FALLBACK_BUDGET_MB = 2560.0

_CGROUP_V2 = "/sys/fs/cgroup/memory.max"
_CGROUP_V1 = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
# cgroup v1 writes "no limit" as a huge number (PAGE_COUNTER_MAX pages)
_NO_LIMIT = 2**60


@dataclass(frozen=True)
class MemoryBudget:
    """mib: memory the forward may use (MiB); source: where the value came from, in words."""

    mib: float
    source: str


def meminfo_total_mb(path: str = "/proc/meminfo") -> float | None:
    """``MemTotal`` of /proc/meminfo in MiB (None when unreadable)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_bytes(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def cgroup_limit_mb(root: str = "") -> float | None:
    """This process's cgroup memory limit in MiB, v2 then v1; None without a limit. ``root``
    prefixes the paths (tests)."""
    for limit_path in (_CGROUP_V2, _CGROUP_V1):
        limit = _read_bytes(root + limit_path)
        if limit is not None and limit < _NO_LIMIT:
            return limit / 2**20
    return None


def machine_memory_mb(root: str = "") -> tuple[float | None, str]:
    """The memory this process may use at most (MiB) and what it was read from."""
    meminfo = meminfo_total_mb(root + "/proc/meminfo")
    cgroup = cgroup_limit_mb(root)
    if cgroup is not None and (meminfo is None or cgroup < meminfo):
        return cgroup, f"cgroup limit {cgroup:.0f} MiB"
    if meminfo is not None:
        return meminfo, f"MemTotal {meminfo:.0f} MiB"
    return None, "machine memory unreadable"


def budget_from_available(available_mb: float) -> float:
    """The forward's budget (MiB) for ``available_mb`` of memory."""
    return max((available_mb - PIPELINE_RESERVE_MB) * AVAILABLE_FRACTION, MINIMUM_BUDGET_MB)


def cpu_memory_budget(root: str = "") -> MemoryBudget:
    """The default CPU budget from the machine's memory."""
    available, where = machine_memory_mb(root)
    if available is None:
        return MemoryBudget(FALLBACK_BUDGET_MB, f"fixed {FALLBACK_BUDGET_MB:.0f} MiB ({where})")
    mib = budget_from_available(available)
    return MemoryBudget(round(mib, 1), f"auto: ({where} - {PIPELINE_RESERVE_MB:.0f} MiB for the rest of the "
                                       f"pipeline) x {AVAILABLE_FRACTION:g}")


def cuda_memory_budget() -> MemoryBudget:
    """The default CUDA budget: free GPU memory x :data:`AVAILABLE_FRACTION`."""
    import torch

    try:
        free = torch.cuda.mem_get_info()[0] / 2**20
    except (RuntimeError, AssertionError):  # no usable CUDA
        return MemoryBudget(FALLBACK_BUDGET_MB, f"fixed {FALLBACK_BUDGET_MB:.0f} MiB (CUDA free memory unreadable)")
    return MemoryBudget(round(max(free * AVAILABLE_FRACTION, MINIMUM_BUDGET_MB), 1),
                        f"auto: CUDA free {free:.0f} MiB x {AVAILABLE_FRACTION:g}")


def memory_budget(requested_mb: float | None, device: Device) -> MemoryBudget:
    """``requested_mb`` (``--memory-budget``) when given, else the default for ``device``."""
    if requested_mb is not None:
        return MemoryBudget(float(requested_mb), "--memory-budget")
    if device == Device.CUDA:
        return cuda_memory_budget()
    return cpu_memory_budget()
