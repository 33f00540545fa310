"""One review session: a result folder shown in a Slicer scene, re-thresholded, edited, saved.

The session holds no user-interface code: the web application (:mod:`.app`) and the
offscreen tests drive the same methods. Scene content (volumes, one segment per lesion,
the lesion table node and their links, re-threshold, re-measure, jump) is made by the
library's MRML scene layer :mod:`BrainMetSegLib.mrml`, the code the Slicer module uses;
this module adds only the review bookkeeping (what the segments started from, the edits,
save, export). The lesions as shown come from :mod:`.lesion_rows`, the edit tools from
:mod:`.editing`, the views' look from :mod:`.display`.

Views (slice views Red / Green / Yellow = axial / coronal / sagittal, and the 3D view)
must exist in ``slicer_app.view_manager`` before :meth:`ReviewSession.load` so their
layers can be set. Coordinates are RAS mm; label maps are (K, J, I) = (Z, Y, X) arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import mrml
from ..images import format_family, same_geometry
from ..lesion_vocabulary import lesion_id_from_segment_name, segment_id
from ..lesions import lesion_table
from ..operating_point import OperatingPoint
from . import editing
from .display import reset_views, show_layers, style_probability_overlay, style_segments
from .editing import effect_label
from .exchange import export_review_dicom, reference_series
from .lesion_rows import (
    LesionRow,
    lesion_segments,
    measured_rows,
    rgb_color,
    segments_as_labels,
    shown_rows,
    table_row_index,
)
from .result import ResultFolder
from .review import ReviewError, save_review  # ReviewError: importable from here too

# Far below the operating point the map breaks into thousands of specks: a table of
# thousands of rows is no review, so the viewer refuses and says why.
MAX_LESIONS = 500
UNDO_LIMIT = 20


class ReviewSession:
    """A result folder in ``slicer_app``'s scene (a trame-slicer ``SlicerApp``)."""

    def __init__(self, slicer_app, result: ResultFolder):
        self.app = slicer_app
        self.result = result
        self.image, self.original_labels, self.probability = result.read_images()
        # The lesion table the current segments started from (the original, or a re-threshold).
        self.base_rows: list[dict] = result.read_table()
        self.operating_point: OperatingPoint = result.operating_point  # of the segments shown
        self.base_labels = self.original_labels
        # What "discard edits" goes back to: the last saved version, else the start.
        self._restore = (self.base_labels, self.base_rows)
        self.operations: list[dict] = []
        self.edited = False
        self.saved: list[Path] = []
        self.volume_node = self.probability_node = self.segmentation_node = self.table_node = None
        self._loading = False

    # ----------------------------------------------------------------- scene
    @property
    def scene(self):
        return self.app.scene

    @property
    def editor(self):
        return self.app.segmentation_editor

    def load(self) -> None:
        """Build the scene: CE-T1, probability overlay, one segment per lesion, views set up."""
        self._loading = True
        try:
            self.volume_node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CE-T1")
            mrml.set_volume(self.volume_node, *mrml.array_and_matrix(self.image))
            self.volume_node.CreateDefaultDisplayNodes()
            result = mrml.LesionResult.from_images(self.original_labels, self.probability, self.base_rows,
                                                   self.operating_point)
            nodes = mrml.import_result(self.scene, self.volume_node, result,
                                       base_name=str(self.result.run.get("case") or "CE-T1"))
            self.segmentation_node, self.table_node = nodes.segmentation, nodes.table
            self.probability_node = nodes.probability
            style_probability_overlay(self.probability_node)
            from undo_stack import UndoStack  # trame-slicer's dependency

            # Undo / redo of single strokes (the segment editor records labelmap changes).
            self.editor.set_undo_stack(UndoStack(undo_limit=UNDO_LIMIT))
            self.editor.set_active_segmentation(self.segmentation_node, self.volume_node)
            self.editor.set_surface_representation_enabled(True)
            style_segments(self.segmentation_node)
            show_layers(self.app, self.volume_node, self.probability_node)
            self.reset_views()
            if self.segments():  # open at the largest lesion (id 1 by the library's numbering)
                self.jump_to_lesion(min(lesion_id for _, lesion_id in self.segments()))
        finally:
            self._loading = False
        self.editor.segmentation_modified.connect(self._on_segmentation_modified)

    def reset_views(self) -> None:
        reset_views(self.app)

    def _on_segmentation_modified(self, *_):
        if self._loading:
            return
        self.edited = True
        effect = self.editor.active_effect_name
        if effect and effect_label(effect) not in ("", "notool"):
            op = {"effect": effect_label(effect), "segment": self.editor.get_active_segment_id()}
            if not self.operations or self.operations[-1] != op:
                self.operations.append(op)

    # ----------------------------------------------------------------- lesions
    def segments(self) -> list[tuple[str, int]]:
        """(segment id, lesion id) of every lesion segment, in segment order."""
        return lesion_segments(self.segmentation_node)

    def table_rows(self) -> list[tuple[str, dict]]:
        """(segment id, measures) of each row of the scene's lesion table node."""
        return measured_rows(self.table_node)

    def rows(self) -> list[LesionRow]:
        """The lesion table as shown: one row per segment (measures from the table node,
        empty for a lesion drawn since the last measurement), colour and visibility."""
        return shown_rows(self.segmentation_node, self.table_node)

    def _table_row_index(self, lesion_id: int) -> int:
        return table_row_index(self.table_node, lesion_id)

    def lesion_ras(self, lesion_id: int) -> tuple[float, float, float]:
        """World RAS (mm) of the lesion's centroid, from the scene's table node."""
        return mrml.lesion_world_ras(self.table_node, self._table_row_index(lesion_id))

    def jump_to_lesion(self, lesion_id: int) -> tuple[float, float, float]:
        """Centre all slice views on the lesion's centroid (RAS mm) and make it the edited segment."""
        ras = mrml.jump_to_lesion(self.table_node, self._table_row_index(lesion_id), select_segment=False)
        self.select_lesion(lesion_id)
        return ras

    def select_lesion(self, lesion_id: int) -> None:
        seg_id = segment_id(lesion_id)
        if self.segmentation_node.GetSegmentation().GetSegment(seg_id) is not None:
            self.editor.set_active_segment_id(seg_id)

    def set_lesion_visible(self, lesion_id: int, visible: bool) -> None:
        self.segmentation_node.GetDisplayNode().SetSegmentVisibility(segment_id(lesion_id), bool(visible))

    def set_lesion_color(self, lesion_id: int, color_hex: str) -> None:
        segment = self.segmentation_node.GetSegmentation().GetSegment(segment_id(lesion_id))
        if segment is None:
            raise ReviewError(f"lesion {lesion_id} has no segment.")
        segment.SetColor(*rgb_color(color_hex))

    def set_probability_overlay(self, opacity: float) -> None:
        """Probability map over the CE-T1 in the slice views (0 hides it)."""
        for view in self.app.view_manager.get_slice_views():
            view.set_foreground_opacity(float(np.clip(opacity, 0.0, 1.0)))

    def set_segment_opacity(self, opacity: float) -> None:
        self.segmentation_node.GetDisplayNode().SetOpacity2DFill(float(np.clip(opacity, 0.0, 1.0)))

    # ----------------------------------------------------------------- threshold
    def apply_threshold(self, point: OperatingPoint, discard_edits: bool = False) -> int:
        """Apply ``point`` to the probability map (no model run) through the scene layer, which
        makes the segments and measures the table once; returns the lesion count.

        Refused while there are unsaved edits, unless ``discard_edits``, and when the point
        gives more than MAX_LESIONS lesions (the segments then stay as they were).
        """
        if not isinstance(point, OperatingPoint):
            raise TypeError(f"apply_threshold takes an OperatingPoint, not {point!r}")
        if self.edited and not discard_edits:
            raise ReviewError("unsaved edits: save them, or discard them to re-threshold.")
        self._edits_off()
        try:
            n = mrml.rethreshold(self.segmentation_node, point, max_lesions=MAX_LESIONS)
        except mrml.TooManyLesions as exc:
            raise ReviewError(f"{exc}; raise the threshold or the minimum volume.") from None
        finally:
            self._loading = False
        self.operating_point = point
        self._new_base()
        return n

    def discard_edits(self) -> None:
        """Back to the segments and table as last saved (or as loaded / re-thresholded)."""
        self._edits_off()
        labels, rows = self._restore
        try:
            ids = mrml.set_segments(self.segmentation_node, sitk.GetArrayFromImage(labels),
                                    mrml.ijk_to_ras_of_image(labels), [int(r["lesion_id"]) for r in rows])
            mrml.fill_table(self.table_node, rows, ids, self.segmentation_node, self.volume_node)
        finally:
            self._loading = False
        self.edited = False
        if self.segments():
            self.editor.set_active_segment_id(self.segments()[0][0])

    def remeasure(self) -> int:
        """Re-measure the table from the segments as they are now; returns the row count."""
        return len(self._fill_table(self.current_labels()))

    def _fill_table(self, labels: sitk.Image) -> list[dict]:
        """The table node filled with :func:`~BrainMetSegLib.lesions.lesion_table` of ``labels``
        (ids as the reviewer sees them), exactly what Save writes."""
        # lesions as drawn at the operating point: on the probability's outline; edited: labels
        rows = lesion_table(labels, self.probability, self.operating_point.outline)
        mrml.fill_table(self.table_node, rows, [segment_id(int(r["lesion_id"])) for r in rows],
                        self.segmentation_node, self.volume_node)
        return rows

    def _edits_off(self) -> None:
        """Before the segments are replaced: no effect active, no undo into the old segments."""
        self.editor.deactivate_effect()
        self.editor.undo_stack.clear()
        self._loading = True

    def undo(self) -> bool:
        """Undo the last edit (stroke, island operation); False when there is none."""
        stack = self.editor.undo_stack
        if not stack.can_undo():
            return False
        stack.undo()
        self.edited = True
        self.operations.append({"effect": "undo", "segment": self.editor.get_active_segment_id()})
        return True

    def redo(self) -> bool:
        stack = self.editor.undo_stack
        if not stack.can_redo():
            return False
        stack.redo()
        self.edited = True
        self.operations.append({"effect": "redo", "segment": self.editor.get_active_segment_id()})
        return True

    def _new_base(self) -> None:
        """The segments as they are now become what a review is compared with (a new start)."""
        self.base_labels = self.current_labels()
        self.base_rows = [{**m, "lesion_id": lesion_id_from_segment_name(seg_id)} for seg_id, m in self.table_rows()]
        self._restore = (self.base_labels, self.base_rows)
        self.edited, self.operations = False, []
        if self.segments():
            self.editor.set_active_segment_id(self.segments()[0][0])

    # ----------------------------------------------------------------- editing
    def add_lesion(self) -> int:
        """An empty segment for a lesion the model missed; returns its lesion id."""
        lesion_id = max((lid for _, lid in self.segments()), default=0) + 1
        seg_id = editing.add_empty_lesion(self.segmentation_node, lesion_id)
        self.editor.set_active_segment_id(seg_id)
        self.operations.append({"effect": "add", "segment": seg_id})
        return lesion_id

    def set_effect(self, name: str, brush_diameter_mm: float | None = None) -> None:
        """Activate "paint", "erase", "islands" (click an island to keep it) or "none"."""
        editing.activate_effect(self.editor, name, brush_diameter_mm)

    def set_brush_diameter(self, diameter_mm: float) -> None:
        """Brush diameter of paint / erase in mm (not relative to the screen)."""
        editing.set_brush_diameter(self.editor, diameter_mm)

    def keep_largest_island(self) -> None:
        """Keep only the largest 26-connected piece of the selected lesion's segment."""
        editing.keep_largest_island(self.editor)
        self.operations.append({"effect": "keep largest island", "segment": self.editor.get_active_segment_id()})
        self.edited = True

    def current_labels(self) -> sitk.Image:
        """The segments as an instance label map on the CE-T1 grid (lesion id per voxel)."""
        image = segments_as_labels(self.segmentation_node, self.volume_node)
        if not same_geometry(image, self.probability):
            raise ReviewError("the segmentation is not on the CE-T1's grid any more.")
        image.CopyInformation(self.probability)  # the exact header of the originals
        return image

    # ----------------------------------------------------------------- save
    def save(self) -> Path:
        """Write the corrected label map and re-measured table as a new version; returns its folder."""
        labels = self.current_labels()
        source = {
            "case": self.result.run.get("case"),
            "result_folder": str(self.result.folder),
            "labels": self.result.labels_path.name,
            "probability": self.result.probability_path.name,
            "table": self.result.table_path.name,
            # the operating point of run.json (original) and the one the review started from
            **_point_record(self.result.operating_point, "_original"),
            **_point_record(self.operating_point, ""),
            "rethresholded": not self.operating_point.same_labels(self.result.operating_point),
        }
        originals = [self.result.labels_path, self.result.probability_path, self.result.table_path,
                     self.result.folder / "run.json"]
        folder = save_review(self.result.folder, labels, self.probability, self.base_labels,
                             ext=format_family(self.result.labels_path), source=source,
                             operations=self.operations, originals=originals,
                             outline=self.operating_point.outline)
        self._restore = (labels, self._fill_table(labels))
        self.saved.append(folder)
        self.edited = False
        return folder

    def export_dicom(self, kinds: tuple[str, ...] = ("seg", "sr", "rtstruct")) -> dict[str, Path]:
        """The last saved version as DICOM SEG / SR / RTSTRUCT, written into its folder.

        Needs the CE-T1's DICOM series (the result's input) and a saved, unedited state.
        """
        reference = reference_series(self.result)
        if reference is None:
            raise ReviewError(f"{self.result.image_path}: not a DICOM series; the DICOM export needs the "
                              "CE-T1's series (segment a DICOM folder).")
        if not self.saved:
            raise ReviewError("nothing saved yet: Save first; the DICOM export is of a saved version.")
        if self.edited:
            raise ReviewError("unsaved edits: Save them first; the DICOM export is of a saved version.")
        return export_review_dicom(self.saved[-1], reference, self.result.run, kinds)


def _point_record(point: OperatingPoint, suffix: str) -> dict:
    """review.json's names for an operating point (threshold, min_volume_mm3, outline_threshold)."""
    return {f"{key.removesuffix('_used')}{suffix}": value for key, value in point.as_settings().items()}
