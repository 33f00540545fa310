"""Training datasets: the nnU-Net raw layout or a CSV manifest, and the geometry check.

nnU-Net raw layout (v2)::

    DATA/dataset.json                 channel_names {"0": "CE-T1", ...}, file_ending
    DATA/imagesTr/<case>_0000<ending> CE-T1 (channel 0), <case>_0001... further sequences
    DATA/labelsTr/<case><ending>      lesion mask (0 background, > 0 metastasis)
    DATA/brainmasksTr/<case><ending>  optional brain mask (written by ``brainmetseg synth``)

CSV manifest: one row per case with columns ``case_id``, ``label``, one column per
input sequence (``t1ce`` first and required; ``t1``, ``t2``, ``flair`` optional), and
optionally ``brain_mask`` and ``split`` (``train``, ``val`` or ``test``). Relative
paths are relative to the CSV's folder.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..sequences import SEQUENCES
from ..textfiles import read_json_object

SPLITS = ("train", "val", "test")

# nnU-Net channel names as people write them -> the sequence names model cards use.
_CHANNEL_ALIASES = {
    "ce-t1": "t1ce", "cet1": "t1ce", "t1ce": "t1ce", "t1c": "t1ce", "t1gd": "t1ce", "t1-ce": "t1ce",
    "t1+c": "t1ce", "t1post": "t1ce", "post": "t1ce", "t1": "t1", "t1w": "t1", "pre": "t1",
    "t2": "t2", "t2w": "t2", "flair": "flair", "t2-flair": "flair",
}


@dataclass
class CaseRecord:
    """One labelled case: image paths in sequence order (CE-T1 first), label, optional mask/split."""

    case_id: str
    images: list[Path]
    label: Path
    brain_mask: Path | None = None
    split: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Dataset:
    """Cases of a training dataset and the input sequences of its channels, in order."""

    cases: list[CaseRecord]
    sequences: list[str]
    source: Path
    description: dict = field(default_factory=dict)


def sequence_name(channel_name: str) -> str:
    """Card sequence name (``t1ce``, ``t1``, ``t2``, ``flair``) of an nnU-Net channel name."""
    key = channel_name.strip().lower().replace(" ", "").replace("_", "-")
    return _CHANNEL_ALIASES.get(key, _CHANNEL_ALIASES.get(key.replace("-", ""), key))


def read_nnunet(folder: str | Path) -> Dataset:
    """Read an nnU-Net raw dataset folder (``dataset.json``, ``imagesTr``, ``labelsTr``)."""
    folder = Path(folder)
    desc_path = folder / "dataset.json"
    if not desc_path.is_file():
        raise InputError(f"{folder}: not an nnU-Net raw dataset (dataset.json is missing).")
    desc = read_json_object(desc_path, "dataset.json")
    channels = desc.get("channel_names") or desc.get("modality")
    if not channels:
        raise InputError(f"{desc_path}: no channel_names; name the channels, e.g. {{\"0\": \"CE-T1\"}}.")
    order = sorted(channels, key=int)
    sequences = [sequence_name(channels[k]) for k in order]
    if sequences[0] != "t1ce":
        raise InputError(f"{desc_path}: channel 0 is {channels[order[0]]!r}; BrainMetSeg needs the "
                         "contrast-enhanced T1 as channel 0 (name it 'CE-T1').")
    ending = desc.get("file_ending", ".nii.gz")
    labels_dir, images_dir = folder / "labelsTr", folder / "imagesTr"
    if not labels_dir.is_dir() or not images_dir.is_dir():
        raise InputError(f"{folder}: imagesTr/ and labelsTr/ are both needed.")
    cases: list[CaseRecord] = []
    problems: list[str] = []
    for label in sorted(labels_dir.glob(f"*{ending}")):
        cid = label.name[: -len(ending)]
        images = [images_dir / f"{cid}_{int(k):04d}{ending}" for k in order]
        missing = [p.name for p in images if not p.is_file()]
        if missing:
            problems.append(f"{cid}: missing {', '.join(missing)}")
            continue
        mask = folder / "brainmasksTr" / f"{cid}{ending}"
        cases.append(CaseRecord(cid, images, label, mask if mask.is_file() else None))
    if problems:
        raise InputError(f"{images_dir}: images missing for {len(problems)} case(s): "
                         + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
    if not cases:
        raise InputError(f"{labels_dir}: no label files ending in {ending}.")
    return Dataset(cases, sequences, folder, desc)


def read_manifest(path: str | Path) -> Dataset:
    """Read a CSV manifest (``case_id``, ``label``, ``t1ce`` [, ``t1``, ``t2``, ``flair``,
    ``brain_mask``, ``split``])."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found.")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    needed = {"case_id", "label", "t1ce"} - set(columns)
    if needed:
        raise InputError(f"{path}: manifest lacks column(s) {', '.join(sorted(needed))} "
                         f"(has {', '.join(columns)}).")
    sequences = [s for s in SEQUENCES if s in columns]
    base = path.parent
    cases, seen = [], set()
    for n, row in enumerate(rows, start=2):
        cid = row["case_id"]
        if not cid or not re.fullmatch(r"[A-Za-z0-9._-]+", cid):
            raise InputError(f"{path}, line {n}: case_id {cid!r} must be letters, digits, '.', '_', '-'.")
        if cid in seen:
            raise InputError(f"{path}, line {n}: case_id {cid!r} appears twice.")
        seen.add(cid)
        paths = {}
        for col in [*sequences, "label"] + (["brain_mask"] if row.get("brain_mask") else []):
            if not row.get(col):
                raise InputError(f"{path}, line {n}: case {cid} has no {col} path.")
            p = Path(row[col])
            p = p if p.is_absolute() else base / p
            if not p.exists():
                raise InputError(f"{path}, line {n}: case {cid}: {col} file {p} not found.")
            paths[col] = p
        split = row.get("split") or None
        if split is not None and split.lower() not in SPLITS:
            raise InputError(f"{path}, line {n}: split {split!r} must be one of {', '.join(SPLITS)}.")
        cases.append(CaseRecord(cid, [paths[s] for s in sequences], paths["label"],
                                paths.get("brain_mask"), split.lower() if split else None))
    if not cases:
        raise InputError(f"{path}: manifest has no cases.")
    return Dataset(cases, sequences, path)


def load_dataset(source: str | Path) -> Dataset:
    """A dataset from an nnU-Net raw folder or a ``.csv`` manifest."""
    source = Path(source)
    if source.is_dir():
        return read_nnunet(source)
    if source.suffix.lower() == ".csv":
        return read_manifest(source)
    raise InputError(f"{source}: give an nnU-Net raw dataset folder or a .csv manifest.")


# ---------------------------------------------------------------------------------------------
# Geometry check


@dataclass(frozen=True)
class GeometryTolerance:
    """spacing_mm / origin_mm: absolute tolerances in mm; direction: absolute, on cosines."""

    spacing_mm: float = 1e-3
    origin_mm: float = 1e-2
    direction: float = 1e-4


@dataclass
class GeometryIssue:
    case_id: str
    file: Path
    problems: list[str]

    def __str__(self) -> str:
        return f"{self.case_id}: {self.file.name}: " + "; ".join(self.problems)


def _header(path: Path) -> dict:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read the image header ({str(exc).strip().splitlines()[-1]}).") from None
    size = reader.GetSize()
    n = 3
    direction = np.asarray(reader.GetDirection(), float).reshape(reader.GetDimension(), -1)[:n, :n]
    return {"size": tuple(size[:n]), "spacing": np.asarray(reader.GetSpacing()[:n]),
            "origin": np.asarray(reader.GetOrigin()[:n]), "direction": direction.ravel()}


def compare_headers(ref: dict, other: dict, tol: GeometryTolerance) -> list[str]:
    """What differs between two image headers (size, spacing, origin, direction), in words."""
    problems = []
    if ref["size"] != other["size"]:
        problems.append(f"size {other['size']} != {ref['size']}")
    if not np.allclose(ref["spacing"], other["spacing"], atol=tol.spacing_mm, rtol=0):
        problems.append(f"spacing {np.round(other['spacing'], 4).tolist()} != "
                        f"{np.round(ref['spacing'], 4).tolist()} mm")
    if not np.allclose(ref["origin"], other["origin"], atol=tol.origin_mm, rtol=0):
        shift = float(np.linalg.norm(other["origin"] - ref["origin"]))
        problems.append(f"origin shifted by {shift:.3g} mm")
    if not np.allclose(ref["direction"], other["direction"], atol=tol.direction, rtol=0):
        problems.append("direction differs")
    return problems


def check_geometry(cases: list[CaseRecord], tol: GeometryTolerance = GeometryTolerance()) -> list[GeometryIssue]:
    """Compare every image, label and brain mask of a case with its CE-T1 (headers only).

    Returns one issue per mismatching file; an empty list means every case is consistent.
    """
    issues = []
    for case in cases:
        ref = _header(case.images[0])
        others = [*case.images[1:], case.label] + ([case.brain_mask] if case.brain_mask else [])
        for path in others:
            problems = compare_headers(ref, _header(path), tol)
            if problems:
                issues.append(GeometryIssue(case.case_id, path, problems))
    return issues


def geometry_report_csv(issues: list[GeometryIssue]) -> str:
    lines = ["case_id,file,problems"]
    for issue in issues:
        lines.append(f"{issue.case_id},{issue.file},\"{'; '.join(issue.problems)}\"")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Splits


def kfold_split(case_ids: list[str], n_folds: int, fold: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation) case ids of fold ``fold`` of ``n_folds``: a seeded permutation of the
    sorted ids cut into near-equal folds, so a fold does not depend on the listing order."""
    if n_folds < 2:
        raise InputError(f"--folds {n_folds}: k-fold needs at least 2 folds.")
    if not 0 <= fold < n_folds:
        raise InputError(f"--fold {fold}: must be between 0 and {n_folds - 1} (or 'all').")
    ids = sorted(case_ids)
    if len(ids) < n_folds:
        raise InputError(f"{len(ids)} case(s) cannot be split into {n_folds} folds; use fewer folds.")
    order = np.random.default_rng(seed).permutation(len(ids))
    parts = np.array_split(order, n_folds)
    val = sorted(ids[i] for i in parts[fold])
    train = sorted(set(ids) - set(val))
    return train, val


def split_cases(dataset: Dataset, fold: str | int, n_folds: int,
                seed: int) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """Training and validation cases.

    A manifest ``split`` column wins when present (``test`` rows are left out);
    otherwise fold ``fold`` of a seeded k-fold split; ``fold="all"`` trains on every
    case without validation.
    """
    cases = [c for c in dataset.cases if c.split != "test"]
    if any(c.split for c in cases) and str(fold) != "all":
        train = [c for c in cases if c.split in (None, "train")]
        val = [c for c in cases if c.split == "val"]
        return train, val
    if str(fold) == "all":
        return cases, []
    train_ids, val_ids = kfold_split([c.case_id for c in cases], n_folds, int(fold), seed)
    by_id = {c.case_id: c for c in cases}
    return [by_id[i] for i in train_ids], [by_id[i] for i in val_ids]
