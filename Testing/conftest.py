"""Shared fixtures: small volumes and a tiny model package (CPU, no network).

torch is imported only by the fixtures and tests that use it, so the pure-Python tests
(the Slicer bridge) run without it; OMP_NUM_THREADS caps torch's threads (read when torch
is first imported) at the 2 cores the suite is sized for.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

os.environ.setdefault("OMP_NUM_THREADS", "2")


def load_script(path: Path | str, name: str | None = None):
    """A script outside the package (benchmarks/, docs/, tools/) imported as a module, its
    ``__main__`` block not run; registered in sys.modules (dataclasses look their module up there)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(name or f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def make_volume(shape_zyx=(40, 48, 56), spacing_xyz=(1.0, 1.0, 1.0), direction=None,
                origin=(0.0, 0.0, 0.0), seed=0) -> sitk.Image:
    """A noisy 'brain-like' block (float32): values ~100 inside an ellipsoid, 0 outside."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape_zyx, dtype=float)
    c = [(s - 1) / 2 for s in shape_zyx]
    inside = sum(((g - ci) / (0.45 * s)) ** 2 for g, ci, s in zip((z, y, x), c, shape_zyx)) <= 1
    arr = np.where(inside, rng.normal(100, 5, shape_zyx), 0).astype(np.float32)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def tiny_package(folder, spacing_mm: float = 2.0, name: str = "tiny-test"):
    """An untrained BasicUNet package (32^3 windows at ``spacing_mm``; valid card, real sha256)."""
    import torch

    from BrainMetSegLib.architectures import build_network
    from BrainMetSegLib.models import ModelCard, save_package

    torch.manual_seed(0)
    card = ModelCard(name=name, version="0.0", architecture="BasicUNet",
                     architecture_args={"features": [4, 4, 8, 8, 16, 4]},
                     spacing_mm=[spacing_mm] * 3, patch_size=[32, 32, 32], trained=False)
    net = build_network(card.architecture, 1, 1, card.architecture_args)
    return save_package(net, card, folder)


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory):
    """$BRAINMETSEG_CACHE for the session: exported networks (OpenVINO) and downloads go to a
    temporary folder, never the user's ~/.cache, and one export of a tiny model serves the suite."""
    old = os.environ.get("BRAINMETSEG_CACHE")
    os.environ["BRAINMETSEG_CACHE"] = str(tmp_path_factory.mktemp("user_cache"))
    yield os.environ["BRAINMETSEG_CACHE"]
    if old is None:
        os.environ.pop("BRAINMETSEG_CACHE", None)
    else:
        os.environ["BRAINMETSEG_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """An untrained BasicUNet package at 2 mm with 32^3 windows."""
    return tiny_package(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def volume_file(tmp_path):
    path = tmp_path / "ce_t1.nii.gz"
    sitk.WriteImage(make_volume(), str(path))
    return path
