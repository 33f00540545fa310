"""Volumes in and out of MRML through numpy and IJK-to-RAS matrices (no ``sitkUtils``).

Arrays are (K, J, I) = (slice, row, column), as ``slicer.util.arrayFromVolume`` gives
them. ``ijk_to_ras`` is the 4x4 matrix of the volume's own (local) RAS frame, before
any parent transform: RAS mm = ijk_to_ras @ (i, j, k, 1).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def matrix_to_vtk(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    out = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(matrix[r, c]))
    return out


def matrix_from_vtk(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras_of_image(image: sitk.Image) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a SimpleITK image (whose geometry is LPS)."""
    d = np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing())
    m = np.eye(4)
    m[:3, :3] = _LPS_FROM_RAS @ d
    m[:3, 3] = _LPS_FROM_RAS @ np.asarray(image.GetOrigin())
    return m


def image_from_array(array_kji: np.ndarray, ijk_to_ras: np.ndarray) -> sitk.Image:
    """A SimpleITK image (LPS geometry) of a (K, J, I) array with an IJK-to-RAS matrix.

    Raises ValueError for a sheared or singular matrix (SimpleITK needs orthogonal axes).
    """
    lps = _LPS_FROM_RAS @ np.asarray(ijk_to_ras, float)[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"IJK-to-RAS matrix has a zero-length axis: {ijk_to_ras.tolist()}")
    direction = lps / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ValueError("IJK-to-RAS matrix is sheared (axes not orthogonal); cannot measure on it")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_kji))
    image.SetSpacing(spacing.tolist())
    image.SetDirection(direction.ravel().tolist())
    image.SetOrigin((_LPS_FROM_RAS @ np.asarray(ijk_to_ras, float)[:3, 3]).tolist())
    return image


def array_and_matrix(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(K, J, I) array (a copy) and IJK-to-RAS matrix of a SimpleITK image."""
    return sitk.GetArrayFromImage(image), ijk_to_ras_of_image(image)


def image_data(array_kji: np.ndarray) -> vtk.vtkImageData:
    """A vtkImageData holding a copy of a (K, J, I) array (origin 0, spacing 1)."""
    array_kji = np.ascontiguousarray(array_kji)
    if array_kji.ndim != 3:
        raise ValueError(f"expected a 3D (K, J, I) array, got shape {array_kji.shape}")
    data = vtk.vtkImageData()
    data.SetDimensions(array_kji.shape[2], array_kji.shape[1], array_kji.shape[0])
    scalars = numpy_support.numpy_to_vtk(array_kji.ravel(), deep=True)
    scalars.SetName("ImageScalars")
    data.GetPointData().SetScalars(scalars)
    return data


def set_volume(volume_node, array_kji: np.ndarray, ijk_to_ras: np.ndarray) -> None:
    """Replace the voxels and geometry of a volume node (scalar or label map)."""
    volume_node.SetIJKToRASMatrix(matrix_to_vtk(ijk_to_ras))
    volume_node.SetAndObserveImageData(image_data(array_kji))


def volume_array(volume_node) -> tuple[np.ndarray, np.ndarray]:
    """(K, J, I) array (a copy) and local IJK-to-RAS matrix of a volume node."""
    data = volume_node.GetImageData()
    if data is None or data.GetPointData().GetScalars() is None:
        raise ValueError(f"volume {volume_node.GetName()!r} has no voxels")
    dims = data.GetDimensions()
    array = numpy_support.vtk_to_numpy(data.GetPointData().GetScalars())
    if array.ndim != 1:
        raise ValueError(f"volume {volume_node.GetName()!r} has {array.shape[1]} components; expected a scalar volume")
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return array.reshape(dims[::-1]).copy(), matrix_from_vtk(matrix)


def oriented_image(array_kji: np.ndarray, ijk_to_ras: np.ndarray):
    """A ``vtkOrientedImageData`` (Slicer's segment storage type) of a (K, J, I) array."""
    from slicer import vtkOrientedImageData

    data = image_data(array_kji)
    out = vtkOrientedImageData()
    out.SetDimensions(data.GetDimensions())
    out.GetPointData().SetScalars(data.GetPointData().GetScalars())
    out.SetImageToWorldMatrix(matrix_to_vtk(ijk_to_ras))
    return out


def oriented_image_array(image) -> np.ndarray:
    """(K, J, I) copy of a ``vtkOrientedImageData``'s voxels."""
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1]).copy()


def write_volume(volume_node, path) -> None:
    """Write a volume node to ``path`` (format from the extension, uncompressed) without
    touching the node's own storage node: the scene is left exactly as it was."""
    scene = volume_node.GetScene()
    storage = scene.CreateNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    try:
        storage.SetFileName(str(path))
        storage.UseCompressionOff()
        if not storage.WriteData(volume_node):
            raise OSError(f"could not write volume {volume_node.GetName()!r} to {path}")
    finally:
        storage.UnRegister(None)  # CreateNodeByClass hands over a reference; never added to the scene
