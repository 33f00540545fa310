"""The review's four Slicer views in the browser: trame-slicer's streamed views in one
layout, the axial view large beside the 3D, coronal and sagittal views (the review app
and the follow-up app use the same).
"""

from __future__ import annotations

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

LAYOUT_ID = "brainmetseg-review"


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
