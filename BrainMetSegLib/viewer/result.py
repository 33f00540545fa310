"""A ``brainmetseg segment`` output folder, as the viewer reads it.

The folder holds ``run.json`` (provenance; the CE-T1 path is ``inputs.t1ce.path``), the
instance label map, the probability map and the lesion table (``lesions.json``), all on
the CE-T1's grid. Every problem is reported as :class:`~BrainMetSegLib.errors.InputError`
naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ..images import read_image, same_geometry
from ..operating_point import OperatingPoint
from ..run_record import read_run


@dataclass(frozen=True)
class ResultFolder:
    """Paths of one result folder and its run.json (parsed); ``operating_point``: the one
    the run's lesions were made with (run.json's settings)."""

    folder: Path
    run: dict
    image_path: Path
    labels_path: Path
    probability_path: Path
    table_path: Path
    operating_point: OperatingPoint
    warnings: tuple[str, ...] = field(default=())

    @classmethod
    def open(cls, folder: str | Path, image: str | Path | None = None) -> ResultFolder:
        """Check ``folder`` and locate its files; ``image`` overrides the CE-T1 named in run.json."""
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"{folder}: result folder not found (give the OUTDIR of `brainmetseg segment`).")
        run_path = folder / "run.json"
        if not run_path.is_file():
            cases = sorted(p.parent.name for p in folder.glob("*/run.json"))
            if cases:  # a batch output: one result folder per case
                shown = ", ".join(cases[:3]) + (", ..." if len(cases) > 3 else "")
                raise InputError(f"{folder}: a batch output folder; open one case's folder ({shown}).")
            raise InputError(f"{run_path}: not found; {folder} is not a `brainmetseg segment` result folder.")
        run = read_run(folder)  # every field it uses checked by type, the file named otherwise
        outputs = run.get("outputs") or {}
        names = {"labels": outputs.get("labels"), "probability": outputs.get("probability"),
                 "table": outputs.get("table_json", "lesions.json")}
        for key, name in names.items():
            if not name:
                raise InputError(f"{run_path}: names no {key} output; was it written by `brainmetseg segment`?")
        paths = {key: folder / name for key, name in names.items()}
        for key, path in paths.items():
            if not path.is_file():
                raise InputError(f"{path}: {key} file named in {run_path.name} is missing.")
        if image is None:
            recorded = ((run.get("inputs") or {}).get("t1ce") or {}).get("path")
            if not recorded:
                raise InputError(f"{run_path}: records no CE-T1 path; pass it with --image.")
            image_path = Path(recorded)
            if not image_path.is_absolute():
                image_path = folder / image_path
            if not image_path.exists():
                raise InputError(f"{image_path}: CE-T1 named in {run_path} not found; pass it with --image.")
        else:
            image_path = Path(image)
            if not image_path.exists():
                raise InputError(f"{image_path}: CE-T1 file not found.")
        try:
            point = OperatingPoint.from_settings(run.get("settings") or {}, str(run_path))
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return cls(folder, run, image_path, paths["labels"], paths["probability"], paths["table"],
                   point, tuple(str(w) for w in run.get("warnings") or ()))

    def read_table(self) -> list[dict]:
        try:
            data = json.loads(self.table_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{self.table_path}: cannot read the lesion table ({exc}).") from None
        rows = data.get("lesions") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise InputError(f"{self.table_path}: no 'lesions' list; not a lesion table.")
        return rows

    def read_images(self) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
        """(CE-T1 float32, labels uint16, probability float32), checked to share one grid."""
        image = sitk.Cast(_scalar3d(read_image(self.image_path, "CE-T1")), sitk.sitkFloat32)
        labels = _read_output(self.labels_path, "label map")
        if labels.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkInt16,
                                       sitk.sitkInt32, sitk.sitkUInt32, sitk.sitkInt8):
            raise InputError(f"{self.labels_path}: the label map is not an integer image.")
        labels = sitk.Cast(labels, sitk.sitkUInt16)
        probability = sitk.Cast(_read_output(self.probability_path, "probability map"), sitk.sitkFloat32)
        for path, other in ((self.labels_path, labels), (self.probability_path, probability)):
            if not same_geometry(image, other):
                raise InputError(f"{path}: not on the CE-T1's grid ({self.image_path}); "
                                 "was the result made from another image? Pass the right one with --image.")
        return image, labels, probability


def _read_output(path: Path, role: str) -> sitk.Image:
    """Read an output image (a label map may be all zeros, so no constant-image check)."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise InputError(f"{path}: cannot read the {role} ({last[:200]}).") from None
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() not in (3, 4):
        raise InputError(f"{path}: the {role} is not a 3D scalar image.")
    return _scalar3d(image)


def _scalar3d(image: sitk.Image) -> sitk.Image:
    return image[:, :, :, 0] if image.GetDimension() == 4 else image
