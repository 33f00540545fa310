"""Save a reviewed result: a new version beside the originals, never over them.

``OUTDIR/review_NNN/`` (NNN = 001, 002, ... the next free number) receives the corrected
instance label map, the lesion table re-measured on it (``lesions.csv``, ``lesions.json``,
same columns as the originals) and ``review.json``: what was edited, lesion by lesion
(voxels before / after / added / removed), the threshold and minimum volume the review
started from, the edit operations in order and the sha256 of the original files. The
version is written into a temporary folder and renamed in one step, so an interrupted
save leaves no half-written version and an existing version is never replaced.

Lesion ids are those the reviewer saw (segment ``Metastasis N`` keeps id N; a lesion
drawn from scratch gets the next free id; an erased one disappears), so a row of the
reviewed table names the same lesion as the viewer did.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..checksums import sha256_file
from ..errors import InputError, OutputError
from ..images import same_geometry
from ..lesions import lesion_table
from ..outputs import _json_safe, table_csv
from ..slicer_seg import SEG_NRRD_NAME, segmentation_image
from ..staging import current_umask, write_image, write_text

REVIEW_PREFIX = "review_"


class ReviewError(InputError):
    """A review action that cannot be done in the session's current state."""


@dataclass(frozen=True)
class LesionChange:
    """How one lesion id changed between the label map the review started from and the saved one."""

    lesion_id: int
    status: str  # "unchanged", "edited", "added" or "removed"
    voxels_before: int
    voxels_after: int
    voxels_added: int
    voxels_removed: int


def lesion_changes(before_kji: np.ndarray, after_kji: np.ndarray) -> list[LesionChange]:
    """Per-lesion-id comparison of two instance label maps (same shape, (Z, Y, X))."""
    if before_kji.shape != after_kji.shape:
        raise ValueError(f"label maps differ in shape: {before_kji.shape} vs {after_kji.shape}")
    n = int(max(before_kji.max(initial=0), after_kji.max(initial=0))) + 1
    before_count = np.bincount(before_kji.ravel(), minlength=n)
    after_count = np.bincount(after_kji.ravel(), minlength=n)
    changed = before_kji != after_kji
    added = np.bincount(after_kji[changed].ravel(), minlength=n)
    removed = np.bincount(before_kji[changed].ravel(), minlength=n)
    out = []
    for lesion_id in range(1, n):
        b, a = int(before_count[lesion_id]), int(after_count[lesion_id])
        if b == 0 and a == 0:
            continue
        status = ("added" if b == 0 else "removed" if a == 0
                  else "edited" if added[lesion_id] or removed[lesion_id] else "unchanged")
        out.append(LesionChange(lesion_id, status, b, a, int(added[lesion_id]), int(removed[lesion_id])))
    return out


def next_version_name(folder: Path) -> str:
    numbers = [int(p.name[len(REVIEW_PREFIX):]) for p in folder.glob(f"{REVIEW_PREFIX}[0-9][0-9][0-9]")
               if p.name[len(REVIEW_PREFIX):].isdigit()]
    return f"{REVIEW_PREFIX}{max(numbers, default=0) + 1:03d}"


def save_review(folder: str | Path, labels: sitk.Image, probability: sitk.Image, base_labels: sitk.Image, *,
                ext: str, source: dict, operations: Sequence[dict] = (),
                originals: Sequence[Path] = (), outline: float | None = None) -> Path:
    """Write a reviewed version into ``folder/review_NNN/`` and return that folder.

    labels: the corrected instance label map (ids as the reviewer saw them);
    base_labels: the label map the review started from (the original, or a re-threshold
    of the probability map); both on ``probability``'s grid.
    source: what the review started from (threshold, minimum volume, original file names),
    stored as is in review.json; operations: the edit operations in order;
    originals: files whose sha256 is recorded (the originals stay untouched);
    outline: the probability the starting labels were drawn at: lesions left as drawn are
    measured on the probability's outline, edited ones on the label map
    (:func:`~BrainMetSegLib.lesions.lesion_table`).
    """
    folder = Path(folder)
    for name, image in (("corrected", labels), ("starting", base_labels)):
        if not same_geometry(image, probability):
            raise OutputError(f"{folder}: the {name} label map is not on the probability map's grid.")
    labels = sitk.Cast(labels, sitk.sitkUInt16)
    # Copies: a view of a temporary (the Cast) would point at freed memory.
    before = sitk.GetArrayFromImage(sitk.Cast(base_labels, sitk.sitkUInt16))
    after = sitk.GetArrayFromImage(labels)
    changes = lesion_changes(before, after)
    table = lesion_table(labels, probability, outline)
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{folder}: result folder is not writable; cannot save the review.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{REVIEW_PREFIX}", suffix=".part", dir=folder))
    try:
        names = {"labels": f"lesion_labels{ext}", "segmentation": SEG_NRRD_NAME, "table_csv": "lesions.csv",
                 "table_json": "lesions.json", "review": "review.json"}
        write_image(labels, tmp / names["labels"])
        write_image(segmentation_image(labels), tmp / names["segmentation"])
        write_text(table_csv(table), tmp / names["table_csv"])
        case = source.get("case")
        write_text(json.dumps(_json_safe({"case": case, "lesions": table}), indent=2) + "\n",
                   tmp / names["table_json"])
        record = {
            "case": case,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "library": {"name": "BrainMetSegLib", "version": __version__},
            "source": dict(source),
            "originals_sha256": {p.name: sha256_file(p) for p in originals},
            "lesions": len(table),
            "lesions_changed": sum(c.status != "unchanged" for c in changes),
            "changes": [asdict(c) for c in changes],
            "operations": list(operations),
            "outputs": names,
        }
        write_text(json.dumps(_json_safe(record), indent=2) + "\n", tmp / names["review"])
        os.chmod(tmp, 0o777 & ~current_umask())
        for _ in range(100):  # another saver may take a number between the listing and the rename
            target = folder / next_version_name(folder)
            try:
                os.rename(tmp, target)  # fails if target exists: a version is never replaced
                return target
            except OSError:
                if not target.exists():
                    raise
        raise OutputError(f"{folder}: could not find a free review version name.")
    except OSError as exc:
        raise OutputError(f"{folder}: cannot save the review ({exc}).") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
