"""Scene content of a result: volumes and one segment per lesion (MRML, Qt-free).

PROVISIONAL: the project's MRML scene layer (``BrainMetSegLib.mrml``, the code the Slicer
module uses) replaces this module once it is merged; the viewer calls only the functions
below, so the swap is local. Volumes go in through numpy arrays and IJK-to-RAS matrices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from ..slicer_bridge.naming import METASTASIS_TERMINOLOGY, segment_color, segment_id, segment_name

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def ijk_to_ras(image: sitk.Image) -> np.ndarray:
    """4x4 matrix from (i, j, k) voxel index to RAS mm for a SimpleITK (LPS) image."""
    m = np.eye(4)
    d = np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing())
    m[:3, :3] = LPS_TO_RAS @ d
    m[:3, 3] = LPS_TO_RAS @ np.asarray(image.GetOrigin())
    return m


def _vtk_matrix(m: np.ndarray) -> vtkMatrix4x4:
    out = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


def add_volume(scene, image: sitk.Image, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node holding ``image`` (voxels copied, geometry from its LPS header)."""
    array = sitk.GetArrayFromImage(image)  # (k, j, i)
    data = vtkImageData()
    data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    data.GetPointData().SetScalars(numpy_to_vtk(array.ravel(), deep=True))
    node = scene.AddNewNodeByClass(class_name, name)
    node.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras(image)))
    node.SetAndObserveImageData(data)
    node.CreateDefaultDisplayNodes()
    return node


def remove_node(scene, node) -> None:
    """Remove ``node`` with its display and storage nodes (nothing left behind)."""
    if node is None:
        return
    for getter in ("GetDisplayNode", "GetStorageNode"):
        while (attached := getattr(node, getter, lambda: None)()) is not None:
            scene.RemoveNode(attached)
            if getattr(node, getter)() is attached:  # still referenced: stop
                break
    scene.RemoveNode(node)


def set_segments_from_labels(scene, segmentation_node, labels: sitk.Image, reference_volume,
                             segmentations_logic) -> list[int]:
    """Replace every segment of ``segmentation_node`` by one segment per lesion id in ``labels``.

    Lesion N becomes segment ``Metastasis_N`` named "Metastasis N" with the project's colour
    and terminology; returns the lesion ids in segment order.
    """
    array = sitk.GetArrayViewFromImage(labels)
    present = np.flatnonzero(np.bincount(array.ravel().astype(np.int64))[1:]) + 1
    segmentation = segmentation_node.GetSegmentation()
    was = segmentation_node.StartModify()
    try:
        segmentation.RemoveAllSegments()
        if len(present):
            # Compact ids 1..M so label value m maps onto the m-th requested segment id.
            lut = np.zeros(int(array.max()) + 1, np.uint16)
            lut[present] = np.arange(1, len(present) + 1)
            compact = sitk.GetImageFromArray(lut[array])
            compact.CopyInformation(labels)
            label_node = add_volume(scene, compact, "brainmetseg-import", "vtkMRMLLabelMapVolumeNode")
            ids = vtkStringArray()
            for lesion_id in present:
                ids.InsertNextValue(segment_id(int(lesion_id)))
            try:
                if not segmentations_logic.ImportLabelmapToSegmentationNode(label_node, segmentation_node, ids):
                    raise RuntimeError("Slicer could not import the lesion label map into the segmentation")
            finally:
                remove_node(scene, label_node)
        for lesion_id in present:
            style_segment(segmentation.GetSegment(segment_id(int(lesion_id))), int(lesion_id))
    finally:
        segmentation_node.EndModify(was)
    return [int(i) for i in present]


def style_segment(segment, lesion_id: int) -> None:
    segment.SetName(segment_name(lesion_id))
    segment.SetColor(*segment_color(lesion_id))
    segment.SetTag(segment.GetTerminologyEntryTagName(), METASTASIS_TERMINOLOGY)


def labels_from_segments(scene, segmentation_node, reference_volume, segments: Sequence[tuple[str, int]],
                         segmentations_logic, like: sitk.Image) -> sitk.Image:
    """Instance label map (uint16, ``like``'s grid) with ``lesion_id`` where each segment is.

    segments: (segment id, lesion id) pairs; a voxel in several segments gets the last one.
    """
    out = np.zeros(sitk.GetArrayViewFromImage(like).shape, np.uint16)
    if segments:
        label_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "brainmetseg-export")
        try:
            for seg_id, lesion_id in segments:
                ids = vtkStringArray()
                ids.InsertNextValue(seg_id)
                if not segmentations_logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, label_node,
                                                                         reference_volume):
                    raise RuntimeError(f"Slicer could not export segment {seg_id}")
                mask = _volume_array(label_node) > 0
                if mask.shape != out.shape:
                    raise RuntimeError(f"segment {seg_id} exported on a {mask.shape} grid, not {out.shape}")
                out[mask] = lesion_id
        finally:
            remove_node(scene, label_node)
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(like)
    return image


def _volume_array(node) -> np.ndarray:
    data = node.GetImageData()
    i, j, k = data.GetDimensions()
    return vtk_to_numpy(data.GetPointData().GetScalars()).reshape(k, j, i)


def jump_slices(scene, ras: Sequence[float]) -> None:
    """Centre every slice view of the scene on the RAS point (mm)."""
    from slicer import vtkMRMLSliceNode

    vtkMRMLSliceNode.JumpAllSlices(scene, float(ras[0]), float(ras[1]), float(ras[2]),
                                   vtkMRMLSliceNode.CenteredJumpSlice)
