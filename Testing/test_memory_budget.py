"""The default memory budget follows the machine: MemTotal and cgroup limits (not the memory
free at the moment, which would make the inference plan and so the result vary), recorded."""

from pathlib import Path

import pytest
import torch

from BrainMetSegLib import memory
from BrainMetSegLib.architectures import build_network
from BrainMetSegLib.inference import InferenceConfig, plan_windows


def fake_machine(root: Path, total_kb: int | None, v2=None, v1=None) -> str:
    """A /proc and /sys/fs/cgroup tree under ``root``; v2 / v1 = (limit, usage) as text."""
    (root / "proc").mkdir(parents=True)
    if total_kb is not None:  # what is free now must not matter
        (root / "proc" / "meminfo").write_text(f"MemTotal: {total_kb} kB\nMemAvailable: 1024 kB\n")
    cg = root / "sys" / "fs" / "cgroup"
    if v2:
        cg.mkdir(parents=True)
        (cg / "memory.max").write_text(v2[0] + "\n")
        (cg / "memory.current").write_text(v2[1] + "\n")
    if v1:
        (cg / "memory").mkdir(parents=True)
        (cg / "memory" / "memory.limit_in_bytes").write_text(v1[0] + "\n")
        (cg / "memory" / "memory.usage_in_bytes").write_text(v1[1] + "\n")
    return str(root)


def test_budget_follows_the_machines_memory_not_what_is_free(tmp_path):
    small = memory.cpu_memory_budget(fake_machine(tmp_path / "a", 4 * 1024 * 1024))  # 4 GiB free
    large = memory.cpu_memory_budget(fake_machine(tmp_path / "b", 22 * 1024 * 1024))  # 22 GiB free
    assert small.mib == pytest.approx((4096 - memory.PIPELINE_RESERVE_MB) * memory.AVAILABLE_FRACTION)
    assert large.mib == pytest.approx((22528 - memory.PIPELINE_RESERVE_MB) * memory.AVAILABLE_FRACTION)
    assert "MemTotal 22528 MiB" in large.source
    # almost nothing free: the floor, not a negative budget
    assert memory.cpu_memory_budget(fake_machine(tmp_path / "c", 100 * 1024)).mib == memory.MINIMUM_BUDGET_MB


def test_cgroup_limit_caps_the_budget(tmp_path):
    gib = 2**30
    v2 = memory.cpu_memory_budget(fake_machine(tmp_path / "v2", 22 * 1024 * 1024,
                                               v2=(str(4 * gib), str(2 * gib))))  # a 4 GiB limit
    assert v2.mib == pytest.approx((4096 - memory.PIPELINE_RESERVE_MB) * memory.AVAILABLE_FRACTION)
    assert "cgroup" in v2.source
    v1 = memory.cpu_memory_budget(fake_machine(tmp_path / "v1", 22 * 1024 * 1024,
                                               v1=(str(4 * gib), str(gib))))
    assert v1.mib == pytest.approx((4096 - memory.PIPELINE_RESERVE_MB) * memory.AVAILABLE_FRACTION)
    # "max" (v2) and cgroup v1's huge "no limit" number leave MemTotal in charge
    unlimited = memory.cpu_memory_budget(fake_machine(tmp_path / "no", 8 * 1024 * 1024, v2=("max", "0"),
                                                      v1=("9223372036854771712", "0")))
    assert "MemTotal" in unlimited.source and unlimited.mib > 3000


def test_unreadable_memory_falls_back_to_the_fixed_budget(tmp_path):
    fallback = memory.cpu_memory_budget(fake_machine(tmp_path, None))
    assert fallback.mib == memory.FALLBACK_BUDGET_MB and "unreadable" in fallback.source


def test_explicit_budget_wins_and_the_plan_records_the_source():
    assert memory.memory_budget(900.0, "cpu") == memory.MemoryBudget(900.0, "--memory-budget")
    torch.manual_seed(0)
    net = build_network("BasicUNet", 1, 1, {"features": [4, 4, 8, 8, 16, 4]}).eval()
    config = InferenceConfig(device="cpu", precision="fp32", size_divisor=16, patch_size=(16, 16, 16))
    plan = plan_windows(net, (1, 40, 50, 60), config, "cpu")
    assert plan.budget_source.startswith(("auto:", "fixed")) and plan.budget_mib >= memory.MINIMUM_BUDGET_MB
    given = plan_windows(net, (1, 40, 50, 60), InferenceConfig(
        device="cpu", precision="fp32", size_divisor=16, patch_size=(16, 16, 16), memory_budget_mb=700.0), "cpu")
    assert (given.budget_mib, given.budget_source) == (700.0, "--memory-budget")
