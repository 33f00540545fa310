"""Offscreen Slicer views without a browser: the viewer's layout rendered to pixels.

Used by the tests and by anything that needs the picture the web viewer would send:
the same :class:`~trame_slicer.core.SlicerApp`, the same views (Red = axial, Green =
coronal, Yellow = sagittal, ThreeD), rendered by Slicer's displayable managers.
"""

from __future__ import annotations

import os

import numpy as np

# Without a display, VTK tries X first; EGL (Mesa llvmpipe on CPU) works headless.
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

VIEW_TAGS = ("Red", "Green", "Yellow", "ThreeD")


def view_definitions():
    from trame_slicer.views import ViewLayoutDefinition

    return [ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.coronal_view(),
            ViewLayoutDefinition.sagittal_view(), ViewLayoutDefinition.threed_view()]


def offscreen_app(size: tuple[int, int] = (400, 400)):
    """A SlicerApp with the four views created offscreen at ``size`` pixels (width, height).

    Views render only when :func:`capture` asks (each scene change would otherwise redraw
    all four views at once on the CPU).
    """
    from trame_slicer.core import SlicerApp
    from trame_slicer.views import DirectViewFactory

    app = SlicerApp()
    app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
    for definition in view_definitions():
        view = app.view_manager.create_view(definition)
        view.interactor().UpdateSize(*size)
        view.set_render_blocked(True)
    return app


def capture(view) -> np.ndarray:
    """The view's current picture as an RGB uint8 array, row 0 at the bottom (VTK display y)."""
    from slicer import vtkMRMLLayerDisplayableManager
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData

    view.render_window().Render()
    image = vtkImageData()
    vtkMRMLLayerDisplayableManager.RenderWindowBufferToImage(view.render_window(), image)
    width, height, _ = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[:, :, :3].copy()


def ras_to_display_xy(slice_view, ras) -> tuple[float, float]:
    """Display (x, y) pixel of a RAS point (mm) in a slice view (y from the bottom)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    xy_to_ras = slice_view.get_view_node().GetXYToRAS()
    inverse = vtkMatrix4x4()
    vtkMatrix4x4.Invert(xy_to_ras, inverse)
    x, y, _, _ = inverse.MultiplyPoint((*map(float, ras), 1.0))
    return x, y
