"""A ``brainmetseg compare`` output folder in the viewer: the longitudinal table, the RANO-BM
radiographic response per follow-up, and one time point at a time in Slicer's views.

The folder holds ``longitudinal.json`` (time points, tracks, RANO-BM) and ``tracks_<k>``:
time point k's label map with track ids on that scan's own grid (same id = same lesion on
every scan). Each time point is shown on its own scan (the CE-T1 its ``segment`` result was
made from, or the scan given to ``compare``); segment "Lesion i" holds track i, coloured
``track_colour(i)`` on every time point, so a matched lesion keeps its colour. Centroids
(RAS mm) are each scan's own, as the table's measurements are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..images import read_image, same_geometry
from ..longitudinal.colours import track_colour
from ..longitudinal.rano import CAUTION, RESPONSE_WORDS
from ..run_record import read_run
from .display import reset_views  # no VTK: this module must not load it at import

DOC = "longitudinal.json"


def is_compare_folder(folder: str | Path) -> bool:
    return (Path(folder) / DOC).is_file() and not (Path(folder) / "run.json").is_file()


def _scan_of(source: str, doc_path: Path) -> Path:
    """The scan of a time point: its ``segment`` folder's CE-T1 (run.json), or the scan itself."""
    path = Path(source)
    run_path = path / "run.json"
    if run_path.is_file():
        recorded = ((read_run(path).get("inputs") or {}).get("t1ce") or {}).get("path")
        if not recorded:
            raise InputError(f"{run_path}: records no CE-T1 path.")
        path = Path(recorded) if Path(recorded).is_absolute() else path / recorded
    if not source or not path.exists():
        raise InputError(f"{path}: the scan of a time point in {doc_path} is not there any more.")
    return path


def response_text(response: str) -> str:
    """A response as the viewer shows it: the code, spelled out where a code would mislead
    ("PD to be confirmed" is not PD; "NE": not evaluable)."""
    return f"{response}: {RESPONSE_WORDS[response]}" if response in CAUTION else response


def _pct(value) -> str:
    return "" if value is None else f"{float(value):+.0f} %"


def _mm(value, digits: int = 1) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"


@dataclass(frozen=True)
class CompareFolder:
    """Paths of a ``compare`` output folder and its longitudinal.json (parsed)."""

    folder: Path
    doc: dict
    scans: tuple[Path, ...]
    track_maps: tuple[Path, ...]

    @classmethod
    def open(cls, folder: str | Path) -> CompareFolder:
        folder = Path(folder)
        doc_path = folder / DOC
        try:
            doc = json.loads(doc_path.read_text(encoding="utf-8"))
            timepoints, tracks = doc["timepoints"], doc["tracks"]
            if not isinstance(timepoints, list) or not isinstance(tracks, list) or len(timepoints) < 2:
                raise ValueError("needs a list of at least two time points and a list of tracks")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{doc_path}: not a `brainmetseg compare` record ({exc}).") from None
        maps = []
        for k in range(len(timepoints)):
            found = sorted(p for p in folder.glob(f"tracks_{k}.*") if p.is_file())
            if len(found) != 1:
                raise InputError(f"{folder / f'tracks_{k}.nii.gz'}: time point {k}'s label map with track ids "
                                 f"is {'missing' if not found else 'ambiguous'}.")
            maps.append(found[0])
        scans = tuple(_scan_of(str(tp.get("source") or ""), doc_path) for tp in timepoints)
        return cls(folder, doc, scans, tuple(maps))

    @property
    def names(self) -> list[str]:
        return [str(tp.get("name", k)) for k, tp in enumerate(self.doc["timepoints"])]

    def read(self, k: int) -> tuple[sitk.Image, sitk.Image]:
        """(scan float32, track label map uint16) of time point k, checked to share one grid."""
        image = read_image(self.scans[k], f"CE-T1 of time point {k}")
        if image.GetDimension() == 4:
            image = image[:, :, :, 0]
        try:
            labels = sitk.ReadImage(str(self.track_maps[k]))
        except RuntimeError:
            raise InputError(f"{self.track_maps[k]}: cannot read the label map.") from None
        if not same_geometry(image, labels):
            raise InputError(f"{self.track_maps[k]}: not on the grid of its scan {self.scans[k]}.")
        return sitk.Cast(image, sitk.sitkFloat32), sitk.Cast(labels, sitk.sitkUInt16)

    def table(self, k: int) -> list[dict]:
        """The longitudinal table at time point k: one row per track (stable id), its colour,
        status, measures on scan k and change since the lesion's first measurement."""
        rows = []
        for tr in self.doc["tracks"]:
            at = tr["at"][k]
            change = tr.get("change_pct") or {}
            rows.append({
                "track_id": int(tr["track_id"]), "role": tr.get("role", ""),
                "color": "#" + "".join(f"{int(c):02x}" for c in track_colour(int(tr["track_id"]))),
                "status": at["status"], "volume": _mm(at.get("volume_mm3")),
                "rano": (f"{_mm(at.get('longest_mm'))} × {_mm(at.get('perpendicular_mm'))}"
                         if at.get("longest_mm") is not None else ""),
                "change_volume": _pct((change.get("volume") or [None] * (k + 1))[k]),
                "change_longest": _pct((change.get("longest") or [None] * (k + 1))[k]),
                "new": tr.get("new_at") == k,
                "resolved": tr.get("resolved_at") is not None and k >= int(tr["resolved_at"]),
                "centroid_ras": at.get("centroid_ras_mm"),
            })
        return rows

    def responses(self) -> list[dict]:
        """RANO-BM per time point; the baseline has none. Radiographic only (no steroid dose
        or clinical status: see ``note``)."""
        rano = self.doc.get("rano_bm") or {}
        by_index = {int(t["index"]): t for t in rano.get("timepoints") or []}
        out = []
        for k, name in enumerate(self.names):
            t = by_index.get(k)
            out.append({
                "index": k, "name": name, "days": self.doc["timepoints"][k].get("days"),
                "response": "baseline" if t is None else f"{response_text(t['response'])} (radiographic)",
                "caution": t is not None and t["response"] in CAUTION,
                "target_sum": _mm(rano.get("baseline_sum_mm") if t is None else t["target_sum_mm"]),
                "from_baseline": "" if t is None else _pct(t.get("change_from_baseline_pct")),
                "from_nadir": "" if t is None else _pct(t.get("change_from_nadir_pct")),
                "reasons": "" if t is None else "; ".join(t.get("reasons") or []),
            })
        return out


class CompareSession:
    """A compare folder in ``slicer_app``'s scene, one time point at a time."""

    def __init__(self, slicer_app, compare: CompareFolder):
        self.app = slicer_app
        self.compare = compare
        self.timepoint = -1
        self.volume_node = self.segmentation_node = None

    @property
    def scene(self):
        return self.app.scene

    def load(self, k: int = 0) -> None:
        from .. import mrml

        self.volume_node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CE-T1")
        self.segmentation_node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Lesions")
        mrml.segmentations_logic(self.scene)
        self.volume_node.CreateDefaultDisplayNodes()
        self.segmentation_node.CreateDefaultDisplayNodes()
        self.show(k)
        display = self.segmentation_node.GetDisplayNode()
        display.SetOpacity2DFill(0.5)
        for view in self.app.view_manager.get_slice_views():
            view.set_background_volume_id(self.volume_node.GetID())
            view.set_visible_in_3d(view.get_orientation() == "Axial")
        self.reset_views()

    def show(self, k: int) -> list[int]:
        """Show time point k (its scan and its lesions as track segments); returns the track ids."""
        from .. import mrml

        if not 0 <= k < len(self.compare.scans):
            raise InputError(f"time point {k} does not exist (0..{len(self.compare.scans) - 1}).")
        image, labels = self.compare.read(k)
        mrml.set_volume(self.volume_node, *mrml.array_and_matrix(image))
        array, matrix = mrml.array_and_matrix(labels)
        self.segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(self.volume_node)
        ids = mrml.set_segments(self.segmentation_node, array, matrix)
        segmentation = self.segmentation_node.GetSegmentation()
        display = self.segmentation_node.GetDisplayNode()
        tracks = [int(i) for i in np.unique(array) if i]
        for seg_id in ids:  # before any segment changes: each change updates them all
            display.SetSegmentDisplayPropertiesToDefault(seg_id)
        for seg_id, track_id in zip(ids, tracks, strict=True):
            segment = segmentation.GetSegment(seg_id)
            segment.SetName(f"Lesion {track_id}")
            segment.SetColor(*(c / 255.0 for c in track_colour(track_id)))
        self.segmentation_node.CreateClosedSurfaceRepresentation()
        self.timepoint = k
        return tracks

    def reset_views(self) -> None:
        reset_views(self.app)

    def segment_colours(self) -> dict[int, str]:
        """Track id -> colour (#rrggbb) of the segments shown now."""
        segmentation = self.segmentation_node.GetSegmentation()
        out = {}
        for n in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(n)
            track_id = int(segment.GetName().split()[-1])
            out[track_id] = "#" + "".join(f"{int(round(255 * c)):02x}" for c in segment.GetColor())
        return out

    def jump_to_track(self, track_id: int) -> tuple[float, float, float]:
        """Centre the slice views on the track's centroid on the time point shown (RAS mm)."""
        import slicer

        row = next((r for r in self.compare.table(self.timepoint) if r["track_id"] == int(track_id)), None)
        if row is None or not row["centroid_ras"]:
            raise InputError(f"lesion {track_id} is not seen on time point {self.timepoint}.")
        r, a, s = (float(v) for v in row["centroid_ras"])
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.scene, r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        return r, a, s
