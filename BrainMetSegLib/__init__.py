"""BrainMetSeg: find, outline and measure brain metastases on contrast-enhanced T1 MRI.

The headless library behind the 3D Slicer extension. It never imports ``slicer``,
``qt`` or ``vtk``. Heavy modules (torch, MONAI) are imported lazily so that
``import BrainMetSegLib`` stays cheap.
"""

__version__ = "0.1.0"
