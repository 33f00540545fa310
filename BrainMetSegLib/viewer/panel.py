"""The review page's user interface: toolbar, side panel tabs (lesions, edit, DICOM, run)
and the views' grid, built with trame's Vuetify widgets.

Every function takes the :class:`~BrainMetSegLib.viewer.app.ViewerApp` whose methods
handle the clicks and whose trame state the widgets show. DOM elements the browser test
reads carry ``data-testid`` attributes.
"""

from __future__ import annotations

from trame.widgets import html
from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout
from trame_vuetify.widgets import vuetify3 as v3

from ..operating_point import SLIDER_RANGE, SLIDER_STEP

TABLE_HEADERS = (("", ""), ("", ""), ("id", ""), ("volume", "mm³"), ("longest", "mm"),
                 ("RANO-BM", "mm"), ("meas.", ""), ("p max", ""), ("p lesion", ""))


def build_page(app):
    """The page: toolbar (message, unsaved-edits chip, Save), side panel, the four views;
    returns the page layout. Handlers are ``app``'s methods, values its trame state."""
    with SinglePageWithDrawerLayout(app.server, theme="dark") as layout:
        layout.title.set_text("BrainMetSeg review")
        layout.drawer.width = 470
        layout.footer.hide()
        with layout.toolbar:
            v3.VSpacer()
            html.Span("{{ message }}", classes=("message_error ? 'text-red mx-2' : 'text-grey-lighten-1 mx-2'",),
                      raw_attrs=['data-testid="message"'])
            v3.VChip("unsaved edits", v_if=("edited",), color="orange", size="small", classes="mx-2")
            v3.VBtn("Save", prepend_icon="mdi-content-save", click=app.save, raw_attrs=['data-testid="save"'],
                    variant="tonal", classes="mx-2")
        with layout.drawer:
            side_panel(app)
        with layout.content:
            with html.Div(style="height: calc(100vh - 64px); display: flex;"):
                app.layout_manager.initialize_layout_grid(layout)
    return layout


def side_panel(app) -> None:
    """Tabs: lesions (operating point, overlay, table), edit tools, DICOM, run information."""
    with v3.VTabs(v_model=("panel_tab",), density="compact", grow=True):
        v3.VTab("Lesions", value="lesions")
        v3.VTab("Edit", value="edit")
        v3.VTab("DICOM", value="dicom")
        v3.VTab("Run", value="run")
    with v3.VWindow(v_model=("panel_tab",), classes="pa-2"):
        with v3.VWindowItem(value="lesions"):
            lesions_tab(app)
        with v3.VWindowItem(value="edit"):
            edit_tab(app)
        with v3.VWindowItem(value="dicom"):
            dicom_tab(app)
        with v3.VWindowItem(value="run"):
            run_tab(app)


def lesions_tab(app) -> None:
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
                         click=(app.jump, "[row.lesion_id]"),
                         classes=("row.lesion_id === selected_lesion ? 'bg-blue-grey-darken-3' : ''",),
                         style="cursor: pointer;",
                         raw_attrs=['data-testid="lesion-row"', ':data-lesion-id="row.lesion_id"']):
                with html.Td(classes="px-1", click="$event.stopPropagation()"):
                    v3.VCheckboxBtn(model_value=("row.visible",), density="compact",
                                    update_modelValue=(app.set_visible, "[row.lesion_id, $event]"))
                with html.Td(classes="px-1", click="$event.stopPropagation()"):
                    html.Input(type="color", value=("row.color",), style="width: 24px; height: 20px;",
                               change=(app.set_color, "[row.lesion_id, $event.target.value]"))
                for key in ("lesion_id", "volume", "longest", "rano", "measurable", "pmax", "plesion"):
                    html.Td(f"{{{{ row.{key} }}}}", classes="px-1 text-no-wrap")


def edit_tab(app) -> None:
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
        v3.VBtn("Undo", click=app.undo, size="small", variant="tonal", prepend_icon="mdi-undo")
        v3.VBtn("Redo", click=app.redo, size="small", variant="tonal", prepend_icon="mdi-redo")
        v3.VBtn("Keep largest island", click=app.keep_largest, size="small", variant="tonal")
        v3.VBtn("Add lesion", click=app.add_lesion, size="small", variant="tonal", prepend_icon="mdi-plus")
        v3.VBtn("Re-measure", click=app.remeasure, size="small", variant="tonal")
        v3.VBtn("Discard edits", click=app.discard, size="small", variant="tonal", disabled=("!edited",))
    html.Div("Save writes a new folder review_NNN beside the originals (label map, re-measured "
             "table, review.json with the edits); the originals are never changed.",
             classes="text-caption my-2")
    with html.Div(v_if=("saved_versions.length",), classes="text-caption"):
        html.Div("Saved this session:")
        html.Div("{{ p }}", v_for="p in saved_versions", key="p")


def dicom_tab(app) -> None:
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
    v3.VBtn("Export saved version to DICOM", click=app.export_dicom, size="small", variant="tonal",
            disabled=("!dicom_reference || !saved_versions.length || edited",),
            raw_attrs=['data-testid="dicom-export"'])
    html.Div("Reference series: {{ dicom_reference || 'none (the CE-T1 is not a DICOM series)' }}",
             classes="text-caption my-2", style="word-break: break-all;")


def run_tab(app) -> None:
    with v3.VTable(density="compact", raw_attrs=['data-testid="run-info"']):
        with html.Tbody(), html.Tr(v_for="(r, i) in run_info", key="i"):
            html.Td("{{ r.section }}", classes="px-1 text-grey")
            html.Td("{{ r.key }}", classes="px-1")
            html.Td("{{ r.value }}", classes="px-1", style="word-break: break-all;")
