"""Lesions as segments and back: one segment per lesion id from a label map, and the
segments as one label map on a reference volume's grid.

Segment ``Metastasis_N`` holds exactly the voxels labelled N, with the fixed colour of N
and the DICOM terminology "Neoplasm, Secondary" in "Brain"
(:mod:`BrainMetSegLib.lesion_vocabulary`). Label maps are (K, J, I) arrays with a 4x4
IJK-to-RAS matrix of the volume's own frame (before parent transforms).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import slicer
import vtk

from .. import lesion_vocabulary as vocabulary
from . import scene as scene_tools
from . import volumes


def present_ids(labels_kji: np.ndarray) -> list[int]:
    """Label values > 0 present in a label map (ascending), in one O(voxels) pass."""
    counts = np.bincount(np.asarray(labels_kji).ravel().astype(np.int64, copy=False))
    return [int(v) for v in np.flatnonzero(counts[1:]) + 1]


def set_segments(segmentation, labels_kji: np.ndarray, ijk_to_ras: np.ndarray,
                 lesion_ids: Sequence[int] | None = None, style=None) -> list[str]:
    """Replace every segment of ``segmentation`` by one segment per lesion id.

    labels_kji: instance label map on the grid ``ijk_to_ras`` (the segmentation's local
    frame); lesion_ids: the ids to make segments of, in segment order (default: all ids
    present, ascending); every id present must be listed. Segment ``Metastasis_N`` holds
    exactly the voxels labelled N. The segments share one labelmap (label value = segment
    index + 1), built the way Slicer's ``ImportLabelmapToSegmentationNode`` builds it but
    without its per-segment clearing, which grows with the square of the segment count
    (1600 specks: 2 s instead of 0.2 s). No helper node is added to the scene. Returns
    the segment ids. style: lesion id -> (segment id, name, RGB 0..1) (default
    ``Metastasis_N``, "Metastasis N", the module's colour of N).
    """
    scene_tools.segmentations_logic(segmentation.GetScene())  # converters, on a bare scene too
    labels_kji = np.asarray(labels_kji)
    present = present_ids(labels_kji)
    lesion_ids = present if lesion_ids is None else [int(v) for v in lesion_ids]
    missing = sorted(set(present) - set(lesion_ids))
    if missing:
        raise ValueError(f"label map has lesion ids {missing[:10]} that are not in lesion_ids")
    # label value i + 1 <-> i-th segment, so the shared labelmap is renumbered
    dtype = np.uint8 if len(lesion_ids) < 2**8 else np.uint16 if len(lesion_ids) < 2**16 else np.int32
    lut = np.zeros(max(lesion_ids + present, default=0) + 1, dtype)
    lut[lesion_ids] = np.arange(1, len(lesion_ids) + 1)
    shared = volumes.oriented_image(lut[labels_kji.astype(np.int64, copy=False)], ijk_to_ras)
    labelmap = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    surface = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    old = segmentation.GetSegmentation()
    show_surfaces = old.GetNumberOfSegments() > 0 and old.ContainsRepresentation(surface)
    # A fresh vtkSegmentation is swapped in (as Slicer's storage node does when reading a
    # file): removing thousands of segments that share a labelmap clears the labelmap once
    # per segment (2000 specks: 8 s; 5000: over a minute) ...
    fresh = slicer.vtkSegmentation()
    fresh.SetSourceRepresentationName(labelmap)
    fresh.CopyConversionParameters(old)  # reference geometry and conversion settings
    style = style or (lambda n: (vocabulary.segment_id(n), vocabulary.segment_name(n), vocabulary.segment_color(n)))
    segment_ids = []
    for value, lesion_id in enumerate(lesion_ids, start=1):
        segment_id, name, colour = style(lesion_id)
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.SetColor(*colour)
        segment.SetTerminology(vocabulary.METASTASIS_TERMINOLOGY)
        segment.AddRepresentation(labelmap, shared)
        segment.SetLabelValue(value)
        if not fresh.AddSegment(segment, segment_id):
            raise RuntimeError(f"{segmentation.GetName()}: could not add segment {lesion_id}")
        segment_ids.append(segment_id)
    segmentation.SetAndObserveSegmentation(fresh)
    # ... and deleting the old one would remove its segments one by one: detach their
    # labelmaps first (the node no longer observes it), so it goes in O(segments)
    for n in range(old.GetNumberOfSegments()):
        old.GetNthSegment(n).RemoveAllRepresentations()
    del old
    for n in range(segmentation.GetNumberOfDisplayNodes()):
        segmentation_display = segmentation.GetNthDisplayNode(n)
        if segmentation_display is not None and segmentation_display.IsA("vtkMRMLSegmentationDisplayNode"):
            segmentation_display.ClearSegmentDisplayProperties()  # visibility etc. of the old segments
    if show_surfaces:
        segmentation.CreateClosedSurfaceRepresentation()
    segmentation.CreateDefaultDisplayNodes()
    return segment_ids


def segments_label_map(segmentation, reference_volume, only: Sequence[str] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The segments (all, or the ids in ``only``) as one label map on ``reference_volume``'s
    grid (no node is added).

    Returns (labels_kji, ijk_to_ras of the reference volume, segment ids): voxel value
    i + 1 = i-th segment id (0 = none); where segments overlap the later one wins (as in
    Slicer's merged labelmaps); parts outside the reference grid are cut off.
    """
    ids = vtk.vtkStringArray()
    if only is None:
        segmentation.GetSegmentation().GetSegmentIDs(ids)
    else:
        for segment_id in only:
            ids.InsertNextValue(segment_id)
    segment_ids = [ids.GetValue(i) for i in range(ids.GetNumberOfValues())]
    if reference_volume.GetImageData() is None:
        raise ValueError(f"reference volume {reference_volume.GetName()!r} has no voxels")
    dims, ijk_to_ras = volume_grid(reference_volume)
    labels = _label_map_on_grid(segmentation, reference_volume, segment_ids, dims, ijk_to_ras)
    if labels is None:  # another grid or another transform: let Slicer resample
        labels = _label_map_by_slicer(segmentation, reference_volume, ids, dims)
    return labels, ijk_to_ras, segment_ids


def _label_map_on_grid(segmentation, reference_volume, segment_ids, dims, ijk_to_ras):
    """The merged label map read straight from the segments' (shared) labelmaps when they
    lie on the reference grid (same axes and spacing, whole-voxel offset, same parent
    transform), else None. One pass per shared labelmap instead of one per segment."""
    if segmentation.GetParentTransformNode() is not reference_volume.GetParentTransformNode():
        return None
    name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    seg = segmentation.GetSegmentation()
    layers: dict[str, tuple[object, list[tuple[int, int]]]] = {}
    for index, segment_id in enumerate(segment_ids, start=1):
        segment = seg.GetSegment(segment_id)
        image = segment.GetRepresentation(name)
        if image is None:
            return None
        if image.IsEmpty():
            continue
        layer = layers.setdefault(image.GetAddressAsString(""), (image, []))
        layer[1].append((index, segment.GetLabelValue()))
    out = np.zeros(tuple(dims[::-1]), np.uint16 if len(segment_ids) < 2**16 else np.int32)
    for image, pairs in layers.values():
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        m = volumes.matrix_from_vtk(matrix)
        if not np.allclose(m[:3, :3], ijk_to_ras[:3, :3], atol=1e-6):
            return None
        extent = image.GetExtent()
        shift = np.linalg.solve(ijk_to_ras[:3, :3], m[:3, 3] - ijk_to_ras[:3, 3])
        start = shift + [extent[0], extent[2], extent[4]]  # reference (i, j, k) of the first voxel
        if not np.allclose(start, np.round(start), atol=1e-3):
            return None
        start = np.round(start).astype(int)
        values = volumes.oriented_image_array(image)
        lut = np.zeros(int(values.max()) + 1 if values.size else 1, out.dtype)
        for index, label_value in pairs:
            if label_value < len(lut):
                lut[label_value] = index
        mapped = lut[values]
        src, dst = [], []
        for axis in (2, 1, 0):  # array axes (k, j, i) <- reference axes (i, j, k) reversed
            lo = start[axis]
            hi = lo + values.shape[2 - axis]
            a, b = max(lo, 0), min(hi, dims[axis])
            if a >= b:
                break
            src.append(slice(a - lo, b - lo))
            dst.append(slice(a, b))
        else:
            # later segments win where they overlap (they have the higher index)
            np.maximum(out[tuple(dst)], mapped[tuple(src)], out=out[tuple(dst)])
    return out


def _label_map_by_slicer(segmentation, reference_volume, ids, dims) -> np.ndarray:
    logic = scene_tools.segmentations_logic(segmentation.GetScene())
    merged = slicer.vtkOrientedImageData()
    logic.GenerateMergedLabelmapInReferenceGeometry(
        segmentation, reference_volume, ids, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, merged)
    if ids.GetNumberOfValues() == 0 or merged.GetPointData().GetScalars() is None:
        return np.zeros(tuple(dims[::-1]), np.uint16)
    labels = volumes.oriented_image_array(merged)
    if labels.shape != tuple(dims[::-1]):
        raise RuntimeError(f"merged labelmap {labels.shape} is not on the reference grid {dims[::-1]}")
    return labels


def volume_grid(volume_node) -> tuple[tuple[int, int, int], np.ndarray]:
    """(dimensions (I, J, K) in voxels, 4x4 IJK-to-RAS matrix of the volume's own frame)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return volume_node.GetImageData().GetDimensions(), volumes.matrix_from_vtk(matrix)
