"""How much memory one network forward may use: the default ``--memory-budget``.

The budget follows the machine: the memory available now (the smaller of /proc/meminfo's
``MemAvailable`` and the room left under this process's cgroup limit, v2 ``memory.max`` or
v1 ``memory.limit_in_bytes``), less :data:`PIPELINE_RESERVE_MB` for everything else the
pipeline holds while the forward runs (the interpreter, torch and MONAI, the model, deepbet,
the images and the probability map), times :data:`AVAILABLE_FRACTION` so that other programs
and the estimate's error keep room. On CUDA: the free GPU memory times the same fraction.
The value and where it came from go into run.json (``inference_run.budget_source``).
"""

from __future__ import annotations

from dataclasses import dataclass

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

_CGROUP_V2 = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current")
_CGROUP_V1 = ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")
# cgroup v1 writes "no limit" as a huge number (PAGE_COUNTER_MAX pages)
_NO_LIMIT = 2**60


@dataclass(frozen=True)
class MemoryBudget:
    """mib: memory the forward may use (MiB); source: where the value came from, in words."""

    mib: float
    source: str


def meminfo_available_mb(path: str = "/proc/meminfo") -> float | None:
    """``MemAvailable`` of /proc/meminfo in MiB (None when unreadable)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
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


def cgroup_room_mb(root: str = "") -> float | None:
    """MiB left under this process's cgroup memory limit (limit - usage), v2 then v1; None
    without a limit. ``root`` prefixes the paths (tests)."""
    for limit_path, usage_path in (_CGROUP_V2, _CGROUP_V1):
        limit = _read_bytes(root + limit_path)
        if limit is None or limit >= _NO_LIMIT:
            continue
        usage = _read_bytes(root + usage_path) or 0
        return max(limit - usage, 0) / 2**20
    return None


def available_memory_mb(root: str = "") -> tuple[float | None, str]:
    """The memory this process can still take (MiB) and what it was read from."""
    meminfo = meminfo_available_mb(root + "/proc/meminfo")
    cgroup = cgroup_room_mb(root)
    if cgroup is not None and (meminfo is None or cgroup < meminfo):
        return cgroup, f"cgroup limit ({cgroup:.0f} MiB left)"
    if meminfo is not None:
        return meminfo, f"MemAvailable {meminfo:.0f} MiB"
    return None, "available memory unreadable"


def budget_from_available(available_mb: float) -> float:
    """The forward's budget (MiB) for ``available_mb`` of free memory."""
    return max((available_mb - PIPELINE_RESERVE_MB) * AVAILABLE_FRACTION, MINIMUM_BUDGET_MB)


def cpu_memory_budget(root: str = "") -> MemoryBudget:
    """The default CPU budget from the memory available now."""
    available, where = available_memory_mb(root)
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


def memory_budget(requested_mb: float | None, device: str) -> MemoryBudget:
    """``requested_mb`` (``--memory-budget``) when given, else the default for ``device``."""
    if requested_mb is not None:
        return MemoryBudget(float(requested_mb), "--memory-budget")
    if device == "cuda":
        return cuda_memory_budget()
    return cpu_memory_budget()
