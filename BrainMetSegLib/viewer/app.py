"""The web application: Slicer's views of a review session in the browser (trame).

Layout: the axial view (large) beside the 3D, coronal and sagittal views; a side panel
with the lesion table (click a row to jump there; visibility and colour per lesion), the
operating point (detection threshold, outline threshold, minimum volume), the probability overlay, the edit tools (paint,
erase, islands) and the run information (model, settings, timings, warnings). *Save*
writes a reviewed version (:mod:`.review`).

Everything the page shows is trame state computed from the session; DOM elements the
browser test reads carry ``data-testid`` attributes.
"""

from __future__ import annotations

import math

from trame.app import TrameApp
from trame.widgets import html
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import RemoteViewFactory
from trame_slicer.views import (
    Layout,
    LayoutDirection,
    NoScheduleRendering,
    SliceView,
    ThreeDView,
    ViewLayoutDefinition,
    ViewType,
)
from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout
from trame_vuetify.widgets import vuetify3 as v3

from ..errors import BrainMetSegError
from ..lesion_vocabulary import lesion_id_from_segment_name
from ..operating_point import SLIDER_RANGE, SLIDER_STEP, OperatingPoint, follow
from .exchange import dicom_files, reference_series
from .result import ResultFolder
from .session import ReviewError, ReviewSession

LAYOUT_ID = "brainmetseg-review"
THRESHOLD_DEBOUNCE_S = 0.5
TABLE_HEADERS = (("", ""), ("", ""), ("id", ""), ("volume", "mm³"), ("longest", "mm"),
                 ("RANO-BM", "mm"), ("meas.", ""), ("p max", ""), ("p lesion", ""))


def review_layout() -> Layout:
    """Axial view on the left (2/3 of the width), 3D, coronal and sagittal stacked on the right."""
    return Layout(LayoutDirection.Horizontal, [
        ViewLayoutDefinition.axial_view(),
        Layout(LayoutDirection.Vertical, [ViewLayoutDefinition.threed_view(),
                                          ViewLayoutDefinition.coronal_view(),
                                          ViewLayoutDefinition.sagittal_view()]),
    ], flex_sizes=["2", "1"])


def register_view_factories(view_manager, server) -> None:
    """trame-slicer's remote (streamed) slice and 3D views, created without rendering.

    trame-slicer's default factories build each view with direct rendering and switch to
    the streaming scheduler afterwards, so view construction renders every view ~60 times
    (about half the start-up time on a 2-core CPU); here views start with no rendering
    and the streaming scheduler draws them once the page asks.
    """
    from functools import partial

    from trame_slicer.app.ui import (
        create_vertical_slice_view_gutter_ui,
        create_vertical_view_gutter_ui,
    )

    for view_class, view_type, gutter in ((SliceView, ViewType.SLICE_VIEW, create_vertical_slice_view_gutter_ui),
                                          (ThreeDView, ViewType.THREE_D_VIEW, create_vertical_view_gutter_ui)):
        view_manager.register_factory(RemoteViewFactory(
            server, partial(view_class, scheduled_render_strategy=NoScheduleRendering()), view_type,
            populate_view_ui_f=gutter, target_fps=30.0, blur_fps=10.0, interactive_quality=50))


def slicer_views(server) -> tuple[SlicerApp, LayoutManager]:
    """A Slicer scene with the review layout's four views, served by ``server``."""
    server.enable_module(trame_slicer_module)
    slicer_app = SlicerApp()
    register_view_factories(slicer_app.view_manager, server)
    layout_manager = LayoutManager(slicer_app.scene, slicer_app.view_manager, server)
    layout_manager.register_layout(LAYOUT_ID, review_layout())
    layout_manager.set_layout(LAYOUT_ID)
    return slicer_app, layout_manager


def run_info(result: ResultFolder) -> list[dict]:
    """run.json as (section, key, value) rows for the side panel."""
    run = result.run
    model = run.get("model") or {}
    settings = run.get("settings") or {}
    rows = [("input", "CE-T1", str(result.image_path)),
            ("input", "case", str(run.get("case", ""))),
            ("model", "name", f"{model.get('name', '?')} {model.get('version', '')}".strip()),
            ("model", "trained", str(model.get("trained", "?"))),
            ("model", "sha256", str(model.get("sha256", ""))[:16])]
    for key in (*result.operating_point.as_settings(), "brain_mask", "device", "precision"):
        if key in settings:
            rows.append(("settings", key, str(settings[key])))
    if "device" in run:
        rows.append(("settings", "device used", str(run["device"])))
    for stage, seconds in (run.get("timings_s") or {}).items():
        rows.append(("timings", stage, f"{float(seconds):.1f} s"))
    for warning in result.warnings:
        rows.append(("warnings", "", warning))
    version = (run.get("library") or {}).get("version")
    if version:
        rows.append(("library", "BrainMetSegLib", str(version)))
    return [{"section": s, "key": k, "value": v} for s, k, v in rows]


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
        rows = []
        for row in self.session.rows():
            m = row.measures
            rows.append({
                "lesion_id": row.lesion_id, "name": row.name, "color": row.color_hex, "visible": row.visible,
                "volume": _fmt(m.get("volume_mm3"), 1), "longest": _fmt(m.get("longest_diameter_mm"), 1),
                "rano": (f"{_fmt(m.get('axial_longest_diameter_mm'), 1)} × "
                         f"{_fmt(m.get('axial_perpendicular_diameter_mm'), 1)}") if m else "",
                "measurable": "yes" if m.get("rano_bm_measurable") else ("no" if m else ""),
                "pmax": _fmt(m.get("max_probability"), 2),
                "plesion": _fmt(m.get("lesion_probability"), 2),  # calibrated; empty without a scorer
            })
        self.state.lesion_rows = rows
        self.state.lesion_count = len(rows)

    def _refresh_downloads(self) -> None:
        self.state.dicom_downloads = [
            {"index": i, "name": p.name, "where": p.parent.name, "kb": f"{p.stat().st_size / 1024:.0f}"}
            for i, p in enumerate(self._downloads)]

    def download(self, index: int) -> bytes:
        """The bytes of download ``index`` (a DICOM object listed in the DICOM tab)."""
        return self._downloads[int(index)].read_bytes()

    def _say(self, message: str, error: bool = False) -> None:
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
            self._say(f"Lesion {lesion_id}: R {ras[0]:.1f}, A {ras[1]:.1f}, S {ras[2]:.1f} mm")
        self.state.selected_lesion = int(lesion_id)
        self._guard(run)

    def set_visible(self, lesion_id: int, visible: bool) -> None:
        self.session.set_lesion_visible(int(lesion_id), bool(visible))
        self._refresh_rows()

    def set_color(self, lesion_id: int, color: str) -> None:
        self._guard(self.session.set_lesion_color, int(lesion_id), color)
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
            self._say(f"Threshold {point.threshold:g}, outline {point.outline:g}, minimum "
                      f"{point.min_volume_mm3:g} mm³: {n} lesion(s) (model not re-run).")
        self._guard(run)
        # Refused (unsaved edits, too many lesions, bad number): show what the segments are.
        self._show_point()

    def _panel_point(self) -> OperatingPoint:
        s = self.state
        values = {"detection threshold": s.threshold, "minimum volume": s.min_volume, "outline threshold": s.outline}
        for name, value in values.items():
            if _number(value) is None:
                raise ReviewError(f"{name} {value!r} is not a number.")
        try:
            return OperatingPoint(*(_number(v) for v in values.values()))
        except ValueError as exc:
            raise ReviewError(f"{exc}.") from None

    def _show_point(self) -> None:
        """The panel's controls set to the operating point of the segments shown."""
        point = self.session.operating_point
        self.state.threshold, self.state.outline = point.threshold, point.outline
        self.state.min_volume = point.min_volume_mm3

    def _follow(self, moved: str) -> None:
        """Keep outline <= detection by moving the other slider, then re-threshold (debounced)."""
        threshold, outline = _number(self.state.threshold), _number(self.state.outline)
        if threshold is not None and outline is not None:
            threshold, outline = follow(threshold, outline, moved)
            if (threshold, outline) != (_number(self.state.threshold), _number(self.state.outline)):
                self.state.threshold, self.state.outline = threshold, outline
        self._apply_later()

    def discard(self) -> None:
        self.session.discard_edits()
        self.state.edited = False
        self.state.effect = "none"
        self._refresh_rows()
        self._say("Edits discarded.")

    def add_lesion(self) -> None:
        lesion_id = self.session.add_lesion()
        self.state.selected_lesion = lesion_id
        self.state.effect = "paint"
        self._refresh_rows()
        self._say(f"Lesion {lesion_id} added: paint it in a slice view.")

    def undo(self) -> None:
        if not self.session.undo():
            self._say("Nothing to undo.")
        self.state.edited = self.session.edited

    def redo(self) -> None:
        if not self.session.redo():
            self._say("Nothing to redo.")
        self.state.edited = self.session.edited

    def keep_largest(self) -> None:
        self._guard(self.session.keep_largest_island)
        self.state.effect = "none"
        self.state.edited = self.session.edited

    def remeasure(self) -> None:
        def run():
            self.session.remeasure()
            self._refresh_rows()
            self._say("Table re-measured on the edited segments (not saved).")
        self._guard(run)

    def save(self) -> None:
        def run():
            folder = self.session.save()
            self._refresh_rows()
            self.state.edited = False
            self.state.saved_versions = [str(p) for p in self.session.saved]
            self._say(f"Saved {folder.name} in {folder.parent} (originals untouched).")
        self._guard(run)

    def export_dicom(self) -> None:
        def run():
            paths = self.session.export_dicom()
            if not paths:
                self._say("The saved version has no lesion: no DICOM object written.")
                return
            self._downloads += list(paths.values())
            self._refresh_downloads()
            folder = next(iter(paths.values())).parent
            self._say(f"DICOM {', '.join(k.removeprefix('dicom_').upper() for k in paths)} written in {folder}.")
        self._guard(run)

    def _guard(self, action, *args) -> None:
        try:
            action(*args)
        except BrainMetSegError as exc:
            self._say(str(exc), error=True)

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
            self._guard(self.session.set_effect, effect, float(self.state.brush_mm))

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
        with SinglePageWithDrawerLayout(self.server, theme="dark") as layout:
            self.ui = layout
            layout.title.set_text("BrainMetSeg review")
            layout.drawer.width = 470
            layout.footer.hide()
            with layout.toolbar:
                v3.VSpacer()
                html.Span("{{ message }}", classes=("message_error ? 'text-red mx-2' : 'text-grey-lighten-1 mx-2'",),
                          raw_attrs=['data-testid="message"'])
                v3.VChip("unsaved edits", v_if=("edited",), color="orange", size="small", classes="mx-2")
                v3.VBtn("Save", prepend_icon="mdi-content-save", click=self.save, raw_attrs=['data-testid="save"'],
                        variant="tonal", classes="mx-2")
            with layout.drawer:
                self._side_panel()
            with layout.content:
                with html.Div(style="height: calc(100vh - 64px); display: flex;"):
                    self.layout_manager.initialize_layout_grid(layout)

    def _side_panel(self) -> None:
        with v3.VTabs(v_model=("panel_tab",), density="compact", grow=True):
            v3.VTab("Lesions", value="lesions")
            v3.VTab("Edit", value="edit")
            v3.VTab("DICOM", value="dicom")
            v3.VTab("Run", value="run")
        with v3.VWindow(v_model=("panel_tab",), classes="pa-2"):
            with v3.VWindowItem(value="lesions"):
                self._lesions_tab()
            with v3.VWindowItem(value="edit"):
                self._edit_tab()
            with v3.VWindowItem(value="dicom"):
                self._dicom_tab()
            with v3.VWindowItem(value="run"):
                self._run_tab()

    def _lesions_tab(self) -> None:
        with html.Div(classes="d-flex align-center"):
            # Live: a change of any re-thresholds once the control is still for a moment.
            v3.VSlider(v_model=("threshold",), min=SLIDER_RANGE[0], max=SLIDER_RANGE[1], step=SLIDER_STEP,
                       label="detect", hide_details=True, thumb_label=True, density="compact", classes="mr-2",
                       disabled=("edited",), raw_attrs=['data-testid="threshold"'])
            v3.VTextField(v_model_number=("min_volume",), type="number", label="min mm³", hide_details=True,
                          density="compact", style="max-width: 90px;", disabled=("edited",))
        # Each detected lesion is drawn out to the connected region above this (<= detect).
        v3.VSlider(v_model=("outline",), min=SLIDER_RANGE[0], max=SLIDER_RANGE[1], step=SLIDER_STEP,
                   label="outline", hide_details=True, thumb_label=True, density="compact",
                   disabled=("edited",), raw_attrs=['data-testid="outline"'])
        v3.VSlider(v_model=("overlay_opacity",), min=0, max=1, step=0.05, label="probability overlay",
                   hide_details=True, density="compact", raw_attrs=['data-testid="overlay"'])
        v3.VSlider(v_model=("segment_opacity",), min=0, max=1, step=0.05, label="lesion fill",
                   hide_details=True, density="compact")
        with html.Div(classes="text-caption my-1"):
            html.Span("{{ lesion_count }} lesion(s); axial slice S = ")
            html.Span("{{ axial_offset }}", raw_attrs=['data-testid="axial-s"'])
            html.Span(" mm")
        with v3.VTable(density="compact", hover=True, fixed_header=True, height="calc(100vh - 370px)",
                       raw_attrs=['data-testid="lesion-table"']):
            with html.Thead(), html.Tr():
                for name, unit in TABLE_HEADERS:
                    html.Th(f"{name} {unit}".strip(), classes="px-1")
            with html.Tbody():
                with html.Tr(v_for="row in lesion_rows", key="row.lesion_id",
                             click=(self.jump, "[row.lesion_id]"),
                             classes=("row.lesion_id === selected_lesion ? 'bg-blue-grey-darken-3' : ''",),
                             style="cursor: pointer;",
                             raw_attrs=['data-testid="lesion-row"', ':data-lesion-id="row.lesion_id"']):
                    with html.Td(classes="px-1", click="$event.stopPropagation()"):
                        v3.VCheckboxBtn(model_value=("row.visible",), density="compact",
                                        update_modelValue=(self.set_visible, "[row.lesion_id, $event]"))
                    with html.Td(classes="px-1", click="$event.stopPropagation()"):
                        html.Input(type="color", value=("row.color",), style="width: 24px; height: 20px;",
                                   change=(self.set_color, "[row.lesion_id, $event.target.value]"))
                    for key in ("lesion_id", "volume", "longest", "rano", "measurable", "pmax", "plesion"):
                        html.Td(f"{{{{ row.{key} }}}}", classes="px-1 text-no-wrap")

    def _edit_tab(self) -> None:
        html.Div("Edited lesion: {{ selected_lesion === null ? 'none (click a row)' : 'Metastasis ' + "
                 "selected_lesion }}", classes="my-2")
        with v3.VBtnToggle(v_model=("effect",), mandatory=True, density="compact", divided=True,
                           classes="mb-2"):
            v3.VBtn("none", value="none", prepend_icon="mdi-cursor-default")
            v3.VBtn("paint", value="paint", prepend_icon="mdi-brush", raw_attrs=['data-testid="effect-paint"'])
            v3.VBtn("erase", value="erase", prepend_icon="mdi-eraser")
            v3.VBtn("islands", value="islands", prepend_icon="mdi-island")
        v3.VSlider(v_model=("brush_mm",), min=1, max=30, step=0.5, label="brush mm", thumb_label=True,
                   hide_details=True, density="compact")
        html.Div("Paint / erase: drag in a slice view. Islands: click the piece of the lesion to keep.",
                 classes="text-caption my-2")
        with html.Div(classes="d-flex flex-wrap ga-2"):
            v3.VBtn("Undo", click=self.undo, size="small", variant="tonal", prepend_icon="mdi-undo")
            v3.VBtn("Redo", click=self.redo, size="small", variant="tonal", prepend_icon="mdi-redo")
            v3.VBtn("Keep largest island", click=self.keep_largest, size="small", variant="tonal")
            v3.VBtn("Add lesion", click=self.add_lesion, size="small", variant="tonal", prepend_icon="mdi-plus")
            v3.VBtn("Re-measure", click=self.remeasure, size="small", variant="tonal")
            v3.VBtn("Discard edits", click=self.discard, size="small", variant="tonal", disabled=("!edited",))
        html.Div("Save writes a new folder review_NNN beside the originals (label map, re-measured "
                 "table, review.json with the edits); the originals are never changed.",
                 classes="text-caption my-2")
        with html.Div(v_if=("saved_versions.length",), classes="text-caption"):
            html.Div("Saved this session:")
            html.Div("{{ p }}", v_for="p in saved_versions", key="p")

    def _dicom_tab(self) -> None:
        html.Div("DICOM objects of this result (segment --dicom) and of exported review versions:",
                 classes="text-caption my-2")
        html.Div("none", v_if=("!dicom_downloads.length",), classes="text-caption text-grey")
        with html.Div(v_for="f in dicom_downloads", key="f.index", classes="d-flex align-center my-1"):
            v3.VBtn("{{ f.name }}", prepend_icon="mdi-download", size="small", variant="tonal",
                    click="utils.download(f.name, trigger('download_dicom', [f.index]), 'application/dicom')",
                    raw_attrs=['data-testid="dicom-download"'])
            html.Span("{{ f.where }}, {{ f.kb }} kB", classes="text-caption mx-2")
        html.Div("Export the last saved version (review_NNN) as DICOM SEG, SR and RTSTRUCT on the CE-T1's "
                 "series, into that version's folder (the originals are never written):",
                 classes="text-caption mt-4 mb-2")
        v3.VBtn("Export saved version to DICOM", click=self.export_dicom, size="small", variant="tonal",
                disabled=("!dicom_reference || !saved_versions.length || edited",),
                raw_attrs=['data-testid="dicom-export"'])
        html.Div("Reference series: {{ dicom_reference || 'none (the CE-T1 is not a DICOM series)' }}",
                 classes="text-caption my-2", style="word-break: break-all;")

    def _run_tab(self) -> None:
        with v3.VTable(density="compact", raw_attrs=['data-testid="run-info"']):
            with html.Tbody(), html.Tr(v_for="(r, i) in run_info", key="i"):
                html.Td("{{ r.section }}", classes="px-1 text-grey")
                html.Td("{{ r.key }}", classes="px-1")
                html.Td("{{ r.value }}", classes="px-1", style="word-break: break-all;")


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt(value, digits: int) -> str:
    if value is None:
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else ""  # NaN: not measured
