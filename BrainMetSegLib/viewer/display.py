"""How a review looks in Slicer's views: the CE-T1 under the probability overlay in the
slice views, the segments' fill, and the views fitted to the scene.

Views: slice views Red / Green / Yellow = axial / coronal / sagittal, and the 3D view,
from ``slicer_app.view_manager`` (trame-slicer). No VTK or trame import here: the
functions only call the views' and nodes' methods.
"""

from __future__ import annotations

PROBABILITY_COLORMAP = "vtkMRMLColorTableNodeIron"
# Probabilities below this are drawn transparent in the overlay (the map is ~0 almost everywhere).
OVERLAY_FLOOR = 0.05


def style_probability_overlay(probability_node) -> None:
    """The probability map in the iron colour map, transparent below OVERLAY_FLOOR."""
    display = probability_node.GetDisplayNode()
    display.SetAndObserveColorNodeID(PROBABILITY_COLORMAP)
    display.SetApplyThreshold(1)
    display.SetLowerThreshold(OVERLAY_FLOOR)
    display.SetUpperThreshold(1.0)


def style_segments(segmentation_node) -> None:
    """Half-transparent fill, opaque outline in the slice views."""
    seg_display = segmentation_node.GetDisplayNode()
    seg_display.SetOpacity2DFill(0.5)
    seg_display.SetOpacity2DOutline(1.0)


def show_layers(app, volume_node, probability_node) -> None:
    """The CE-T1 as background and the (hidden) probability map as foreground of every
    slice view; only the axial plane shown in 3D."""
    for view in app.view_manager.get_slice_views():
        view.set_background_volume_id(volume_node.GetID())
        view.set_foreground_volume_id(probability_node.GetID())
        view.set_foreground_opacity(0.0)
        # Only the axial plane in 3D: three opaque planes would hide most lesion surfaces.
        view.set_visible_in_3d(view.get_orientation() == "Axial")


def reset_views(app) -> None:
    """Fit the slice views to the scene; turn the 3D views to look from front-left-above."""
    for view in app.view_manager.get_slice_views():
        view.fit_view_to_content()
        view.schedule_render()
    for view in app.view_manager.get_threed_views():
        view.reset_view()
        camera = view.first_renderer().GetActiveCamera()
        camera.Azimuth(35)  # from front-left-above, so lesions over and under the axial plane show
        camera.Elevation(35)
        camera.OrthogonalizeViewUp()
        view.first_renderer().ResetCamera()
        camera.Zoom(1.4)
