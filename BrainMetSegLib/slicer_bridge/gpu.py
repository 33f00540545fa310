"""NVIDIA GPU names and memory from ``nvidia-smi`` (shown next to the device selector,
without importing torch)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU: its name and total memory (MiB)."""

    name: str
    memory_mib: int

    def __str__(self) -> str:
        return f"{self.name} ({self.memory_mib / 1024:.1f} GB)"


NVIDIA_SMI_ARGS = ("--query-gpu=name,memory.total", "--format=csv,noheader,nounits")


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """GPUs from ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.splitlines():
        if "," not in line:
            continue
        name, _, mem = line.rpartition(",")
        try:
            gpus.append(GpuInfo(name.strip(), int(float(mem.strip()))))
        except ValueError:
            continue
    return gpus


def detect_gpus(which=shutil.which, timeout: float = 5.0) -> list[GpuInfo]:
    """NVIDIA GPUs on this machine via ``nvidia-smi`` (no torch import); [] if none."""
    exe = which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, *NVIDIA_SMI_ARGS], capture_output=True, text=True,
                             timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(out.stdout) if out.returncode == 0 else []
