"""The web application: Slicer's views of a review session in the browser (trame).

Layout: the axial view (large) beside the 3D, coronal and sagittal views; a side panel
with the lesion table (click a row to jump there; visibility and colour per lesion), the
operating point (detection threshold, outline threshold, minimum volume), the probability overlay,
the edit tools (paint,
erase, islands) and the run information (model, settings, timings, warnings). *Save*
writes a reviewed version (:mod:`.review`).

Everything the page shows is trame state computed from the session (:mod:`.session`);
this module holds that state and the actions. The views' layout is :mod:`.layout`, the
page's widgets :mod:`.panel`, the panel's text :mod:`.panel_text`.
"""

from __future__ import annotations

from trame.app import TrameApp

from ..errors import BrainMetSegError
from ..lesion_vocabulary import lesion_id_from_segment_name
from ..operating_point import OperatingPoint, follow
from .exchange import dicom_files, reference_series
from .layout import slicer_views
from .panel import build_page
from .panel_text import lesion_row_text, number_or_none, run_info
from .result import ResultFolder
from .session import ReviewError, ReviewSession

THRESHOLD_DEBOUNCE_S = 0.5


class ViewerApp(TrameApp):
    """One result folder in the browser. ``server``: a trame server (a new one when None)."""

    def __init__(self, result: ResultFolder, server=None):
        super().__init__(server, client_type="vue3")
        self.result = result
        self.slicer_app, self.layout_manager = slicer_views(self.server)
        self.session = ReviewSession(self.slicer_app, result)
        self.session.load()
        self.session.editor.segmentation_modified.connect(self._on_edit)
        self.red = self.slicer_app.view_manager.get_view("Red")
        self.red.modified.connect(self._on_axial_modified)
        self._init_state()
        self._build_ui()

    # ----------------------------------------------------------------- state
    def _init_state(self) -> None:
        s = self.state
        s.trame__title = f"BrainMetSeg review - {self.result.run.get('case', self.result.folder.name)}"
        self._show_point()
        s.overlay_opacity = 0.0
        s.segment_opacity = 0.5
        s.effect = "none"
        s.brush_mm = 5.0
        # The session opened at (and selected) the largest lesion.
        s.selected_lesion = lesion_id_from_segment_name(self.session.editor.get_active_segment_id() or "")
        s.message = ""
        s.message_error = False
        s.edited = False
        s.saved_versions = []
        s.run_info = run_info(self.result)
        s.panel_tab = "lesions"
        s.dicom_reference = str(reference_series(self.result) or "")
        # Only these files can be downloaded (the trigger takes an index into this list).
        self._downloads = dicom_files(self.result.folder)
        self._refresh_downloads()
        self._refresh_rows()
        self._on_axial_modified(self.red)

    def _refresh_rows(self) -> None:
        rows = [lesion_row_text(row) for row in self.session.rows()]
        self.state.lesion_rows = rows
        self.state.lesion_count = len(rows)

    def _refresh_downloads(self) -> None:
        self.state.dicom_downloads = [
            {"index": i, "name": p.name, "where": p.parent.name, "kb": f"{p.stat().st_size / 1024:.0f}"}
            for i, p in enumerate(self._downloads)]

    def download(self, index: int) -> bytes:
        """The bytes of download ``index`` (a DICOM object listed in the DICOM tab)."""
        return self._downloads[int(index)].read_bytes()

    def _show_message(self, message: str, error: bool = False) -> None:
        """The toolbar's message (red when ``error``)."""
        self.state.message = message
        self.state.message_error = error

    def _on_axial_modified(self, view) -> None:
        with self.state:
            self.state.axial_offset = round(float(view.get_slice_value()), 2)

    def _on_edit(self, *_):
        with self.state:
            self.state.edited = self.session.edited

    # ----------------------------------------------------------------- actions
    def jump(self, lesion_id: int) -> None:
        """Row click: centre the views on the lesion and make it the one the edit tools act on."""
        def run():
            ras = self.session.jump_to_lesion(int(lesion_id))
            self._show_message(f"Lesion {lesion_id}: R {ras[0]:.1f}, A {ras[1]:.1f}, S {ras[2]:.1f} mm")
        self.state.selected_lesion = int(lesion_id)
        self._report_errors(run)

    def set_visible(self, lesion_id: int, visible: bool) -> None:
        self.session.set_lesion_visible(int(lesion_id), bool(visible))
        self._refresh_rows()

    def set_color(self, lesion_id: int, color: str) -> None:
        self._report_errors(self.session.set_lesion_color, int(lesion_id), color)
        self._refresh_rows()

    def apply_threshold(self) -> None:
        """Re-threshold with the panel's operating point (detection threshold, outline
        threshold, minimum volume)."""
        self._cancel_pending()

        def run():
            point = self._panel_point()
            if point.same_labels(self.session.operating_point):
                return
            n = self.session.apply_threshold(point)
            self._refresh_rows()
            self.state.effect = "none"
            self.state.edited = False
            self._show_message(f"Threshold {point.threshold:g}, outline {point.outline:g}, minimum "
                               f"{point.min_volume_mm3:g} mm³: {n} lesion(s) (model not re-run).")
        self._report_errors(run)
        # Refused (unsaved edits, too many lesions, bad number): show what the segments are.
        self._show_point()

    def _panel_point(self) -> OperatingPoint:
        s = self.state
        values = {"detection threshold": s.threshold, "minimum volume": s.min_volume, "outline threshold": s.outline}
        for name, value in values.items():
            if number_or_none(value) is None:
                raise ReviewError(f"{name} {value!r} is not a number.")
        try:
            return OperatingPoint(*(number_or_none(v) for v in values.values()))
        except ValueError as exc:
            raise ReviewError(f"{exc}.") from None

    def _show_point(self) -> None:
        """The panel's controls set to the operating point of the segments shown."""
        point = self.session.operating_point
        self.state.threshold, self.state.outline = point.threshold, point.outline
        self.state.min_volume = point.min_volume_mm3

    def _follow(self, moved: str) -> None:
        """Keep outline <= detection by moving the other slider, then re-threshold (debounced)."""
        threshold, outline = number_or_none(self.state.threshold), number_or_none(self.state.outline)
        if threshold is not None and outline is not None:
            threshold, outline = follow(threshold, outline, moved)
            if (threshold, outline) != (number_or_none(self.state.threshold), number_or_none(self.state.outline)):
                self.state.threshold, self.state.outline = threshold, outline
        self._apply_later()

    def discard(self) -> None:
        self.session.discard_edits()
        self.state.edited = False
        self.state.effect = "none"
        self._refresh_rows()
        self._show_message("Edits discarded.")

    def add_lesion(self) -> None:
        lesion_id = self.session.add_lesion()
        self.state.selected_lesion = lesion_id
        self.state.effect = "paint"
        self._refresh_rows()
        self._show_message(f"Lesion {lesion_id} added: paint it in a slice view.")

    def undo(self) -> None:
        if not self.session.undo():
            self._show_message("Nothing to undo.")
        self.state.edited = self.session.edited

    def redo(self) -> None:
        if not self.session.redo():
            self._show_message("Nothing to redo.")
        self.state.edited = self.session.edited

    def keep_largest(self) -> None:
        self._report_errors(self.session.keep_largest_island)
        self.state.effect = "none"
        self.state.edited = self.session.edited

    def remeasure(self) -> None:
        def run():
            self.session.remeasure()
            self._refresh_rows()
            self._show_message("Table re-measured on the edited segments (not saved).")
        self._report_errors(run)

    def save(self) -> None:
        def run():
            folder = self.session.save()
            self._refresh_rows()
            self.state.edited = False
            self.state.saved_versions = [str(p) for p in self.session.saved]
            self._show_message(f"Saved {folder.name} in {folder.parent} (originals untouched).")
        self._report_errors(run)

    def export_dicom(self) -> None:
        def run():
            paths = self.session.export_dicom()
            if not paths:
                self._show_message("The saved version has no lesion: no DICOM object written.")
                return
            self._downloads += list(paths.values())
            self._refresh_downloads()
            folder = next(iter(paths.values())).parent
            kinds = ", ".join(k.removeprefix("dicom_").upper() for k in paths)
            self._show_message(f"DICOM {kinds} written in {folder}.")
        self._report_errors(run)

    def _report_errors(self, action, *args) -> None:
        """Run ``action(*args)``; a library error (refusal, bad value) becomes the toolbar's red message."""
        try:
            action(*args)
        except BrainMetSegError as exc:
            self._show_message(str(exc), error=True)

    # ----------------------------------------------------------------- reactive state
    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _apply_later(self) -> None:
        """Re-threshold THRESHOLD_DEBOUNCE_S after the last change (a drag sends many values)."""
        import asyncio

        self._cancel_pending()

        def fire():
            self._pending = None
            with self.state:
                self.apply_threshold()

        self._pending = asyncio.get_event_loop().call_later(THRESHOLD_DEBOUNCE_S, fire)

    def _bind(self) -> None:
        self._pending = None
        self.ctrl.trigger("download_dicom")(self.download)

        @self.state.change("threshold")
        def _detection(**_):
            self._follow("detection")

        @self.state.change("outline")
        def _outline(**_):
            self._follow("outline")

        @self.state.change("min_volume")
        def _min_volume(**_):
            self._apply_later()

        @self.state.change("effect")
        def _effect(effect, **_):
            self._report_errors(self.session.set_effect, effect, float(self.state.brush_mm))

        @self.state.change("brush_mm")
        def _brush(brush_mm, **_):
            self.session.set_brush_diameter(float(brush_mm))

        @self.state.change("overlay_opacity")
        def _overlay(overlay_opacity, **_):
            self.session.set_probability_overlay(float(overlay_opacity))

        @self.state.change("segment_opacity")
        def _opacity(segment_opacity, **_):
            self.session.set_segment_opacity(float(segment_opacity))

        @self.state.change("selected_lesion")
        def _selected(selected_lesion, **_):
            if selected_lesion is not None:
                self.session.select_lesion(int(selected_lesion))

    # ----------------------------------------------------------------- UI
    def _build_ui(self) -> None:
        self._bind()
        self.ui = build_page(self)
