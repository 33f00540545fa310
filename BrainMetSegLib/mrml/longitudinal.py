"""A follow-up comparison in an MRML scene: one segmentation per time point, one table.

Each time point's CE-T1 and its track label map (``LongitudinalResult.track_maps[k]`` or the
``tracks_<k>`` file of ``brainmetseg compare``) become a volume and a segmentation whose
segments are the tracks: segment id ``Lesion_<track>``, name "Lesion <track>", colour
``track_colour(track)`` — the same on every time point, so a matched lesion has the same id,
name and colour on every scan (and in the report and the viewer).

Placement: **no resampling**. Each follow-up volume and its segmentation stay on their own
grid (measurements stay those of the scan) and are put under a linear transform node holding
the rigid registration (follow-up -> baseline, RAS), so they overlay the baseline in world
coordinates; the transform node sits under the baseline volume's own parent transform, if any.
Centroids in the table are RAS mm on each scan's own grid (before the transform).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import vtk

from ..longitudinal import LongitudinalResult, track_colour
from . import scene as scene_tools
from . import volumes
from .segments import set_segments, volume_grid

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
UNITS = {"volume_mm3": "mm3", "_pct": "%", "_mm": "mm"}


@dataclass
class ComparisonNodes:
    """Per time point (baseline first): volume, segmentation, transform (None for the
    baseline); the longitudinal table (one row per track and time point) and the RANO-BM
    table (one row per follow-up; radiographic response only, see its "BrainMetSeg.Note")."""

    volumes: list
    segmentations: list
    transforms: list
    table: object
    rano_table: object


def track_style(track_id: int) -> tuple[str, str, tuple[float, float, float]]:
    """Segment id, name and colour (RGB 0..1) of a track, the same on every time point."""
    return f"Lesion_{track_id}", f"Lesion {track_id}", tuple(c / 255.0 for c in track_colour(track_id))


def followup_to_baseline_ras(transform: sitk.Transform) -> np.ndarray:
    """4x4 RAS matrix taking follow-up points to baseline points, from a registration's
    transform (baseline LPS -> follow-up LPS, as ITK registration returns it; must be affine)."""
    inverse = transform.GetInverse()
    points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float) * 100.0
    mapped = np.array([inverse.TransformPoint(tuple(p)) for p in points])
    lps = np.eye(4)
    lps[:3, :3] = ((mapped[1:] - mapped[0]) / 100.0).T
    lps[:3, 3] = mapped[0]
    return LPS_TO_RAS @ lps @ LPS_TO_RAS


def import_comparison(scene, result: LongitudinalResult, images: Sequence) -> ComparisonNodes:
    """Load ``result`` into ``scene``. images: per time point a ``SimpleITK.Image`` (the scan
    the comparison was run on; a volume node is created) or an existing volume node on that
    scan's grid (its parent transform is replaced for follow-ups). On error the nodes created
    here are removed again."""
    names = [t.name for t in result.timepoints]
    if not len(names) == len(images) == len(result.track_maps) == len(result.registrations):
        raise ValueError("one image, track map and registration per time point")
    created = []

    def create(class_name, name):
        node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
        created.append(node)
        return node

    out = ComparisonNodes([], [], [], None, None)
    try:
        for k, (name, image, tracks) in enumerate(zip(names, images, result.track_maps, strict=True)):
            volume = image
            if isinstance(image, sitk.Image):
                volume = create("vtkMRMLScalarVolumeNode", name)
                volumes.set_volume(volume, *volumes.array_and_matrix(image))
                volume.CreateDefaultDisplayNodes()
            labels, ijk_to_ras = volumes.array_and_matrix(tracks)
            dims, matrix = volume_grid(volume)
            if labels.shape != tuple(dims[::-1]) or not np.allclose(matrix, ijk_to_ras, atol=1e-4):
                raise ValueError(f"time point {name!r}: the track map is not on the grid of its scan")
            segmentation = create("vtkMRMLSegmentationNode", f"{name} lesions")
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
            set_segments(segmentation, labels, ijk_to_ras, style=track_style)
            transform = None
            if k > 0:
                if result.registrations[k] is None:
                    raise ValueError(f"time point {name!r}: no registration to the baseline")
                transform = create("vtkMRMLLinearTransformNode", f"{name} to {names[0]} (rigid)")
                transform.SetMatrixTransformToParent(volumes.matrix_to_vtk(
                    followup_to_baseline_ras(result.registrations[k].transform)))
                transform.SetAndObserveTransformNodeID(out.volumes[0].GetTransformNodeID())
                volume.SetAndObserveTransformNodeID(transform.GetID())
            segmentation.SetAndObserveTransformNodeID(volume.GetTransformNodeID())
            out.volumes.append(volume)
            out.segmentations.append(segmentation)
            out.transforms.append(transform)
        out.table = create("vtkMRMLTableNode", f"{names[0]} longitudinal lesions")
        fill_rows_table(out.table, result.table_rows())
        out.rano_table = create("vtkMRMLTableNode", f"{names[0]} RANO-BM (radiographic)")
        fill_rows_table(out.rano_table, result.rano_rows())
        out.rano_table.SetAttribute("BrainMetSeg.Note", result.rano.note)
        caution = caution_note(result)
        if caution:
            out.rano_table.SetAttribute("BrainMetSeg.Caution", caution)
    except Exception:
        scene_tools.remove_nodes(scene, created)
        raise
    return out


def caution_note(result: LongitudinalResult) -> str:
    """The follow-ups whose response is "not evaluable" or "PD to be confirmed", with why, for the
    RANO-BM table's "BrainMetSeg.Caution" attribute (empty when none)."""
    from ..longitudinal.rano import CAUTION, RESPONSE_WORDS

    return " | ".join(f"{result.timepoints[r.index].name}: {RESPONSE_WORDS[r.response]} ({'; '.join(r.reasons)})"
                      for r in result.rano.timepoints if r.response in CAUTION)


def load_comparison_folder(scene, folder: str | Path) -> ComparisonNodes:
    """Load the output folder of ``brainmetseg compare``: ``longitudinal.json`` (time points,
    registrations, tracks, RANO-BM), ``tracks_<k>.*`` and each time point's scan (a ``segment``
    result folder's CE-T1, checked against its run.json, or the scan itself)."""
    from .. import records
    from ..errors import InputError
    from ..images import read_mask_image, read_scalar_volume
    from ..longitudinal.sources import from_result_folder, is_result_folder

    folder = Path(folder)
    doc_path = folder / "longitudinal.json"
    doc = records.read(doc_path, "the comparison record", {
        "timepoints": records.array(records.obj({"source": records.string(required=True),
                                                 "name": records.string()}), required=True),
        "tracks": records.array(records.obj(), required=True), "rano_bm": records.obj(required=True)})
    images, maps = [], []
    for k, info in enumerate(doc["timepoints"]):
        source = info["source"]
        images.append(from_result_folder(source).image if is_result_folder(source)
                      else read_scalar_volume(source, "CE-T1"))
        found = sorted(folder.glob(f"tracks_{k}.*"))
        if not found:
            raise ValueError(f"{folder}: tracks_{k} (time point {info['name']!r}) is missing")
        maps.append(read_mask_image(found[0], "label map"))
    try:
        result = LongitudinalResult.from_dict(doc, maps)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # deeper fields, typed by from_dict
        raise InputError(f"{doc_path}: not a `brainmetseg compare` record (field {exc} missing or of the "
                         "wrong type).") from None
    return import_comparison(scene, result, images)


def fill_rows_table(table, rows: Sequence[dict]) -> None:
    """Rows (``LongitudinalResult.table_rows()``, ``.rano_rows()``) as typed columns: text,
    integers (booleans as 0/1), or doubles (missing = NaN); units mm, mm3, %."""
    was = table.StartModify()
    try:
        table.SetLocked(False)
        table.RemoveAllColumns()
        for column in (list(rows[0]) if rows else ["track_id"]):
            values = [r.get(column) for r in rows]
            present = [v for v in values if v is not None]
            if any(isinstance(v, str) for v in present):
                array, cells = vtk.vtkStringArray(), ["" if v is None else str(v) for v in values]
            elif present and len(present) == len(values) and all(isinstance(v, (bool, int, np.integer))
                                                                  for v in present):
                array, cells = vtk.vtkIntArray(), [int(v) for v in values]
            else:
                array, cells = vtk.vtkDoubleArray(), [math.nan if v is None else float(v) for v in values]
            array.SetName(column)
            for cell in cells:
                array.InsertNextValue(cell)
            table.AddColumn(array)
            unit = next((u for suffix, u in UNITS.items() if column.endswith(suffix)), "")
            if unit:
                table.SetColumnUnitLabel(column, unit)
            table.SetColumnTitle(column, column)
        table.SetUseColumnTitleAsColumnHeader(True)
        table.SetLocked(True)
    finally:
        table.EndModify(was)
