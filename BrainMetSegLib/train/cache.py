"""Preprocessed training cases, cached on disk.

Each case goes through :func:`BrainMetSegLib.preprocess.preprocess` - the same code
inference runs - once; the result is stored as ``<cache>/<case_id>-<key>.npz`` where
``key`` hashes the input files' sha256 and the preprocessing config, so a changed
file or setting gives a new entry and stale entries are never read.

Stored arrays (on the cropped model grid, axis order (Z, Y, X)):
``image`` (C, Z, Y, X) float32, ``label`` (Z, Y, X) uint8 (0/1), ``brain`` (Z, Y, X) bool
(the dilated brain mask), ``fg`` / ``bg`` int64 flat indices of lesion voxels and of a
sample of non-lesion brain voxels (patch centres), ``spacing_xyz`` float64 (mm).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..checksums import sha256_file
from ..errors import InputError
from ..images import read_scalar_volume, same_geometry
from ..preprocess import PreprocessConfig, preprocess
from .dataset import CaseRecord

CACHE_VERSION = "1"
# Non-lesion patch centres kept per case: enough for variety, small on disk.
MAX_BACKGROUND_CENTRES = 200_000


def cache_key(case: CaseRecord, config: PreprocessConfig) -> str:
    """Hash of the case's files (sha256 of each) and the preprocessing settings."""
    digest = hashlib.sha256()
    files = [*case.images, case.label] + ([case.brain_mask] if case.brain_mask else [])
    for f in files:
        digest.update(sha256_file(f).encode())
    digest.update(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
    digest.update(CACHE_VERSION.encode())
    return digest.hexdigest()[:16]


def preprocess_case(case: CaseRecord, config: PreprocessConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Preprocess one labelled case exactly as inference does, plus its label on the model grid.

    The label goes onto the model grid with nearest-neighbour resampling. A brain mask
    file listed with the case (``brainmasksTr`` / manifest ``brain_mask``) replaces the
    config's method.
    """
    images = [read_scalar_volume(p, role=f"channel {i} of {case.case_id}") for i, p in enumerate(case.images)]
    for p, im in zip(case.images[1:], images[1:], strict=True):
        if not same_geometry(images[0], im, tol_mm=1e-2):
            raise InputError(f"{p}: not on the CE-T1's grid; co-register it to the CE-T1 first.")
    mask = read_scalar_volume(case.brain_mask, role="brain mask") if case.brain_mask else None
    pre = preprocess(images, config, brain_mask=mask)
    label_image = read_scalar_volume(case.label, role=f"label of {case.case_id}")
    label = (pre.geometry.to_model_grid(label_image, linear=False) > 0).astype(np.uint8)
    fg = np.flatnonzero(label)
    bg = np.flatnonzero(pre.brain & (label == 0))
    if bg.size > MAX_BACKGROUND_CENTRES:
        rng = np.random.default_rng(seed)
        bg = np.sort(rng.choice(bg, MAX_BACKGROUND_CENTRES, replace=False))
    return {"image": pre.array, "label": label, "brain": pre.brain, "fg": fg.astype(np.int64),
            "bg": bg.astype(np.int64), "spacing_xyz": np.asarray(pre.geometry.model_grid.spacing_xyz)}


def _atomic_savez(path: Path, arrays: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part.npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


class CaseCache:
    """On-disk cache of preprocessed cases in ``folder``."""

    def __init__(self, folder: str | Path, config: PreprocessConfig):
        self.folder = Path(folder)
        self.config = config
        self.folder.mkdir(parents=True, exist_ok=True)
        self._keys: dict[str, str] = {}

    def path(self, case: CaseRecord) -> Path:
        if case.case_id not in self._keys:
            self._keys[case.case_id] = cache_key(case, self.config)
        return self.folder / f"{case.case_id}-{self._keys[case.case_id]}.npz"

    def ensure(self, case: CaseRecord) -> Path:
        """Preprocess ``case`` unless a valid cache entry exists; returns the entry's path."""
        path = self.path(case)
        if not path.is_file():
            _atomic_savez(path, preprocess_case(case, self.config))
        return path

    def load(self, case: CaseRecord) -> dict[str, np.ndarray]:
        path = self.ensure(case)
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
