"""The web application for a ``brainmetseg compare`` folder: the same four Slicer views, a
time-point selector, the RANO-BM radiographic response per time point and the longitudinal
lesion table (click a row to centre the views on that lesion on the scan shown).

Read-only: editing and saving are for single results (:mod:`.app`).
"""

from __future__ import annotations

from trame.app import TrameApp
from trame.widgets import html
from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout
from trame_vuetify.widgets import vuetify3 as v3

from ..errors import BrainMetSegError
from ..longitudinal.rano import NOT_FROM_IMAGES
from .layout import slicer_views
from .longitudinal import CompareFolder, CompareSession

TABLE = (("id", "track_id"), ("role", "role"), ("status", "status"), ("volume mm³", "volume"),
         ("RANO-BM mm", "rano"), ("Δ vol.", "change_volume"), ("Δ diam.", "change_longest"))


class CompareApp(TrameApp):
    """One compare folder in the browser. ``server``: a trame server (a new one when None)."""

    def __init__(self, compare: CompareFolder, server=None):
        super().__init__(server, client_type="vue3")
        self.compare = compare
        self.slicer_app, self.layout_manager = slicer_views(self.server)
        self.session = CompareSession(self.slicer_app, compare)
        self.session.load(0)
        s = self.state
        s.trame__title = f"BrainMetSeg follow-up - {compare.folder.name}"
        s.timepoint = 0
        s.timepoint_names = [{"index": k, "name": n} for k, n in enumerate(compare.names)]
        s.responses = compare.responses()
        s.rano_note = NOT_FROM_IMAGES
        s.message = ""
        self._refresh_rows()
        self._build_ui()

    def _refresh_rows(self) -> None:
        self.state.track_rows = [{k: v for k, v in r.items() if k != "centroid_ras"}
                                 for r in self.compare.table(self.session.timepoint)]

    def jump(self, track_id: int) -> None:
        try:
            r, a, s = self.session.jump_to_track(int(track_id))
            self.state.message = f"Lesion {track_id}: R {r:.1f}, A {a:.1f}, S {s:.1f} mm"
        except BrainMetSegError as exc:
            self.state.message = str(exc)

    def _build_ui(self) -> None:
        @self.state.change("timepoint")
        def _timepoint(timepoint, **_):
            try:
                self.session.show(int(timepoint))
            except BrainMetSegError as exc:
                self.state.message = str(exc)
                return
            self._refresh_rows()
            self.state.message = f"Time point {self.compare.names[int(timepoint)]}"

        with SinglePageWithDrawerLayout(self.server, theme="dark") as layout:
            self.ui = layout
            layout.title.set_text("BrainMetSeg follow-up")
            layout.drawer.width = 520
            layout.footer.hide()
            with layout.toolbar:
                v3.VSpacer()
                html.Span("{{ message }}", classes="text-grey-lighten-1 mx-2", raw_attrs=['data-testid="message"'])
            with layout.drawer, html.Div(classes="pa-2"):
                with v3.VBtnToggle(v_model=("timepoint",), mandatory=True, density="compact", divided=True,
                                   classes="mb-2", raw_attrs=['data-testid="timepoints"']):
                    v3.VBtn("{{ t.name }}", v_for="t in timepoint_names", key="t.index", value=("t.index",))
                with v3.VTable(density="compact", raw_attrs=['data-testid="rano"']):
                    with html.Thead(), html.Tr():
                        for name in ("time point", "RANO-BM response", "target sum mm", "vs baseline",
                                     "vs nadir"):
                            html.Th(name, classes="px-1")
                    with html.Tbody():
                        with html.Tr(v_for="r in responses", key="r.index", title=("r.reasons",),
                                     classes=("(r.index === timepoint ? 'bg-blue-grey-darken-3' : '') + "
                                              "(r.caution ? ' text-amber' : '')",)):
                            for key in ("name", "response", "target_sum", "from_baseline", "from_nadir"):
                                html.Td(f"{{{{ r.{key} }}}}", classes="px-1 text-no-wrap")
                html.Div("{{ rano_note }}", classes="text-caption my-1 text-grey")
                with v3.VTable(density="compact", hover=True, fixed_header=True, height="calc(100vh - 360px)",
                               raw_attrs=['data-testid="track-table"']):
                    with html.Thead(), html.Tr():
                        html.Th("", classes="px-1")
                        for name, _ in TABLE:
                            html.Th(name, classes="px-1")
                        html.Th("", classes="px-1")
                    with html.Tbody(), html.Tr(v_for="row in track_rows", key="row.track_id",
                                               click=(self.jump, "[row.track_id]"), style="cursor: pointer;",
                                               raw_attrs=['data-testid="track-row"',
                                                          ':data-track-id="row.track_id"']):
                        with html.Td(classes="px-1"):
                            html.Span(style=("{background: row.color, display: 'inline-block', width: '14px', "
                                             "height: '14px', borderRadius: '3px'}",))
                        for _, key in TABLE:
                            html.Td(f"{{{{ row.{key} }}}}", classes="px-1 text-no-wrap")
                        html.Td("{{ row.new ? 'new' : (row.resolved ? 'resolved' : '') }}", classes="px-1")
            with layout.content:
                with html.Div(style="height: calc(100vh - 64px); display: flex;"):
                    self.layout_manager.initialize_layout_grid(layout)
