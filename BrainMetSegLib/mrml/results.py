"""A segmentation result in an MRML scene: create, link, re-threshold, re-measure, jump, remove.

A result is three nodes linked by node references (which follow node-ID changes
when a scene is saved, reloaded or imported into another scene):

- the segmentation (one segment per lesion, ``Metastasis_N`` / "Metastasis N", fixed
  colour per N, DICOM terminology "Neoplasm, Secondary" in "Brain"), reference
  geometry = the input volume, under the input's parent transform;
- the probability volume (float32, the input's grid, same transform);
- the lesion table (``vtkMRMLTableNode``, one row per segment, columns typed, locked).

Coordinates: the table's centroid columns are RAS mm in the *local* frame of the volume
the lesions were measured on (the input volume; "MeasuredOn" reference), before any
parent transform; :func:`lesion_world_ras` maps them through the parent transforms.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from .. import lesion_vocabulary as vocabulary
from .. import lesions
from ..operating_point import OperatingPoint, lesion_labels
from . import scene as scene_tools
from . import volumes

# Node reference roles that link a result (scene-save safe, unlike IDs in attributes).
ROLE_INPUT = "brainmetsegInput"  # segmentation -> input (CE-T1) volume
ROLE_PROBABILITY = "brainmetsegProbability"  # segmentation -> probability volume
ROLE_TABLE = "brainmetsegTable"  # segmentation -> lesion table
ROLE_SEGMENTATION = "brainmetsegSegmentation"  # table -> segmentation
ROLE_MEASURED_ON = "brainmetsegMeasuredOn"  # table -> volume whose local RAS frame the centroids are in
# Attributes
# segmentation: the operating point the segments were made with (detection threshold, smallest
# lesion kept in mm^3, outline threshold); empty when the segments are no thresholding (edited)
ATTR_THRESHOLD = "BrainMetSeg.Threshold"
ATTR_MIN_VOLUME = "BrainMetSeg.MinLesionVolumeMm3"
ATTR_OUTLINE = "BrainMetSeg.OutlineThreshold"  # absent in scenes saved before outlines existed
ATTR_SEGMENTS_STATE = "BrainMetSeg.SegmentsState"  # segmentation: segments as last thresholded
ATTR_SEGMENT_IDS = "BrainMetSeg.SegmentIDs"  # table: JSON list, segment id of each row
ATTR_CENTROID_FRAME = "BrainMetSeg.CentroidFrame"  # table: words saying which frame centroids are in
ATTR_MODEL = "BrainMetSeg.Model"  # segmentation: JSON {name, version, sha256} of the model that made it

# Segment states recorded by another process (a scene saved and loaded again) never match
# this one's: there, whether the segments were edited is unknown and treated as edited.
_SESSION = uuid.uuid4().hex
PROBABILITY_COLOR_NODE_IDS = ("vtkMRMLColorTableNodeFileColdToHotRainbow.txt",
                              "vtkMRMLColorTableNodeRainbow")


@dataclass
class ResultNodes:
    """The nodes of one result (any may be None when looked up from a partial result)."""

    segmentation: object
    table: object
    probability: object
    input_volume: object = None


@dataclass(frozen=True)
class LesionResult:
    """What the pipeline produced, on the input volume's grid.

    labels_kji: instance label map (K, J, I), lesion id per voxel (0 = background);
    probability_kji: float probability (K, J, I) or None; ijk_to_ras: 4x4 local
    IJK-to-RAS matrix of that grid (the input volume's); rows: the lesion table
    (``lesions.COLUMNS``), one row per lesion id present in ``labels_kji``;
    operating_point: the :class:`~BrainMetSegLib.operating_point.OperatingPoint` the labels
    were made with (None: unknown, e.g. a hand-made label map); model: the model that made them (``run.json``'s "model": name, version, sha256).
    """

    labels_kji: np.ndarray
    probability_kji: np.ndarray | None
    ijk_to_ras: np.ndarray
    rows: Sequence[Mapping]
    operating_point: OperatingPoint | None = None
    model: Mapping | None = None

    @classmethod
    def from_images(cls, labels: sitk.Image, probability: sitk.Image | None, rows,
                    operating_point: OperatingPoint | None = None, model=None) -> LesionResult:
        """From SimpleITK images (e.g. the CLI's output files or ``pipeline.segment``)."""
        labels_kji, ijk_to_ras = volumes.array_and_matrix(labels)
        prob = None if probability is None else sitk.GetArrayFromImage(probability).astype(np.float32)
        if prob is not None and prob.shape != labels_kji.shape:
            raise ValueError(f"probability map {prob.shape} and label map {labels_kji.shape} differ in size")
        return cls(labels_kji, prob, ijk_to_ras, list(rows), operating_point, model)


# ---------------------------------------------------------------- building blocks


def _present_ids(labels_kji: np.ndarray) -> list[int]:
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
    present = _present_ids(labels_kji)
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
    dims, ijk_to_ras = _geometry(reference_volume)
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


def _geometry(volume_node) -> tuple[tuple[int, int, int], np.ndarray]:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return volume_node.GetImageData().GetDimensions(), volumes.matrix_from_vtk(matrix)


def fill_table(table, rows: Sequence[Mapping], segment_ids: Sequence[str], segmentation=None,
               measured_on=None) -> None:
    """Write lesion rows into ``table`` (all columns replaced; typed vtk arrays, units,
    descriptions). segment_ids: one per row; measured_on: the volume whose local RAS
    frame the centroid columns are in."""
    if len(segment_ids) != len(rows):
        raise ValueError(f"{len(segment_ids)} segment ids for {len(rows)} rows")
    names = []
    seg = segmentation.GetSegmentation() if segmentation is not None else None
    for segment_id, row in zip(segment_ids, rows, strict=True):
        segment = seg.GetSegment(segment_id) if seg is not None else None
        names.append(segment.GetName() if segment else vocabulary.segment_name(int(row["lesion_id"])))
    was = table.StartModify()
    try:
        table.SetLocked(False)
        table.RemoveAllColumns()
        for column, values in vocabulary.table_columns(rows, names):
            array = {"string": vtk.vtkStringArray, "int": vtk.vtkIntArray,
                     "bool": vtk.vtkIntArray}.get(column.kind, vtk.vtkDoubleArray)()
            array.SetName(column.name)
            for value in values:
                array.InsertNextValue(value)
            table.AddColumn(array)
            if column.unit:
                table.SetColumnUnitLabel(column.name, column.unit)
            table.SetColumnDescription(column.name, column.description)
            table.SetColumnTitle(column.name, column.name)
        table.SetUseColumnTitleAsColumnHeader(True)
        table.SetAttribute(ATTR_SEGMENT_IDS, json.dumps(list(segment_ids)))
        if segmentation is not None:
            table.SetNodeReferenceID(ROLE_SEGMENTATION, segmentation.GetID())
        if measured_on is not None:
            table.SetNodeReferenceID(ROLE_MEASURED_ON, measured_on.GetID())
            table.SetAttribute(ATTR_CENTROID_FRAME,
                               f"RAS mm in the own frame of volume '{measured_on.GetName()}' "
                               "(parent transforms not applied)")
        table.SetLocked(True)  # measurements are computed, not typed in
    finally:
        table.EndModify(was)


def link_result(nodes: ResultNodes) -> None:
    """References between the nodes, the input's parent transform on the outputs, the
    input as the segmentation's reference geometry, and the outputs placed under the
    input's subject-hierarchy parent (its study)."""
    segmentation, table, prob, volume = nodes.segmentation, nodes.table, nodes.probability, nodes.input_volume
    segmentation.SetNodeReferenceID(ROLE_INPUT, volume.GetID())
    segmentation.SetNodeReferenceID(ROLE_TABLE, table.GetID() if table else None)
    segmentation.SetNodeReferenceID(ROLE_PROBABILITY, prob.GetID() if prob else None)
    if table is not None:
        table.SetNodeReferenceID(ROLE_SEGMENTATION, segmentation.GetID())
    transform_id = volume.GetTransformNodeID()
    for output in (segmentation, prob):
        if output is not None:
            output.SetAndObserveTransformNodeID(transform_id)
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segmentation.SetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole(), volume.GetID())
    scene = volume.GetScene()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = sh.GetItemParent(sh.GetItemByDataNode(volume)) if sh.GetItemByDataNode(volume) else 0
    if not parent or parent == sh.GetSceneItemID():
        return
    for output in (segmentation, table, prob):
        if output is None:
            continue
        item = sh.GetItemByDataNode(output)
        if item:  # Slicer's subject-hierarchy plugins created it
            sh.SetItemParent(item, parent)
        else:  # slicer-core scene: no plugin logic creates items for new nodes
            sh.CreateItem(parent, output)


def _show(nodes: ResultNodes) -> None:
    """Display nodes for the outputs (probability shown 0..1 in a rainbow colour map)."""
    nodes.segmentation.CreateDefaultDisplayNodes()
    prob = nodes.probability
    if prob is None:
        return
    if prob.GetDisplayNode() is None:
        prob.CreateDefaultDisplayNodes()
    display = prob.GetDisplayNode()
    scene = prob.GetScene()
    for color_id in PROBABILITY_COLOR_NODE_IDS:
        if scene.GetNodeByID(color_id) is not None:
            display.SetAndObserveColorNodeID(color_id)
            break
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 1.0)


# ---------------------------------------------------------------- the result API


def import_result(scene, input_volume, result: LesionResult, segmentation=None, table=None,
                  probability=None, base_name: str | None = None) -> ResultNodes:
    """Put ``result`` into ``scene`` for ``input_volume``; returns the result's nodes.

    Output nodes that are given are updated; missing ones are created (names from
    ``base_name``, default the input's name). ``result`` must be on the input's grid.
    On any error the nodes created here are removed again with their display and
    storage nodes, so a failed import leaves the scene as it was (updated nodes keep
    whatever was written before the error).
    """
    dims, matrix = _geometry(input_volume)
    if result.labels_kji.shape != tuple(dims[::-1]) or not np.allclose(matrix, result.ijk_to_ras, atol=1e-4):
        raise ValueError(f"the result's grid {result.labels_kji.shape} does not match the input volume "
                         f"{input_volume.GetName()!r} {tuple(dims[::-1])} (size or IJK-to-RAS differ)")
    ids_in_rows = [int(r["lesion_id"]) for r in result.rows]
    present = set(_present_ids(result.labels_kji))
    if result.probability_kji is not None and result.probability_kji.shape != result.labels_kji.shape:
        raise ValueError(f"probability map {result.probability_kji.shape} and label map "
                         f"{result.labels_kji.shape} differ in size")
    if set(ids_in_rows) != present:
        raise ValueError(f"lesion table ids {sorted(ids_in_rows)} differ from the label map's {sorted(present)}")
    base = base_name or input_volume.GetName()
    created = []

    def create(class_name, name):
        node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
        created.append(node)
        return node

    try:
        segmentation = segmentation or create("vtkMRMLSegmentationNode", f"{base} metastases")
        table = table or create("vtkMRMLTableNode", f"{base} lesions")
        if result.probability_kji is not None:
            probability = probability or create("vtkMRMLScalarVolumeNode", f"{base} metastasis probability")
            volumes.set_volume(probability, result.probability_kji.astype(np.float32), result.ijk_to_ras)
        nodes = ResultNodes(segmentation, table, probability, input_volume)
        link_result(nodes)
        segment_ids = set_segments(segmentation, result.labels_kji, result.ijk_to_ras, ids_in_rows)
        fill_table(table, result.rows, segment_ids, segmentation, input_volume)
        _show(nodes)
        _record_operating_point(segmentation, result.operating_point)
        if result.model is not None:
            segmentation.SetAttribute(ATTR_MODEL, json.dumps(dict(result.model)))
    except Exception:
        scene_tools.remove_nodes(scene, created)
        raise
    return nodes


def result_nodes(node) -> ResultNodes:
    """The result a segmentation or table node belongs to (links followed)."""
    segmentation = node
    if node.IsA("vtkMRMLTableNode"):
        segmentation = node.GetNodeReference(ROLE_SEGMENTATION)
        if segmentation is None:
            return ResultNodes(None, node, None, None)
    table = segmentation.GetNodeReference(ROLE_TABLE)
    return ResultNodes(segmentation, table, segmentation.GetNodeReference(ROLE_PROBABILITY),
                       segmentation.GetNodeReference(ROLE_INPUT))


def _segments_state(segmentation) -> str:
    """Segment ids and the newest modification time of their labelmaps (this process)."""
    seg = segmentation.GetSegmentation()
    ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    mtimes = [seg.GetSegment(i).GetRepresentation(name) for i in ids]
    newest = max((m.GetMTime() for m in mtimes if m is not None), default=0)
    return json.dumps([_SESSION, ids, newest])


def _record_operating_point(segmentation, point: OperatingPoint | None) -> None:
    values = (None, None, None) if point is None else (point.threshold, point.min_volume_mm3, point.outline)
    for attr, value in zip((ATTR_THRESHOLD, ATTR_MIN_VOLUME, ATTR_OUTLINE), values, strict=True):
        segmentation.SetAttribute(attr, "" if value is None else repr(float(value)))
    segmentation.SetAttribute(ATTR_SEGMENTS_STATE, _segments_state(segmentation))


def operating_point(segmentation) -> OperatingPoint | None:
    """The operating point the segments were last thresholded with; None when unknown (made
    by hand, or after "Update table" from edited segments). A scene saved before outlines
    existed has no outline attribute: its segments were drawn at the detection threshold."""
    threshold, min_volume, outline = (segmentation.GetAttribute(a) for a in
                                      (ATTR_THRESHOLD, ATTR_MIN_VOLUME, ATTR_OUTLINE))
    if not threshold:
        return None
    return OperatingPoint(float(threshold), float(min_volume or 0.0), float(outline) if outline else None)


def segments_edited(segmentation) -> bool:
    """True when the segments may differ from the last thresholding: painted, erased,
    added or removed since, or loaded from a saved scene (where it cannot be known)."""
    return segmentation.GetAttribute(ATTR_SEGMENTS_STATE) != _segments_state(segmentation)


def can_rethreshold(segmentation) -> bool:
    """True when the segmentation is a result with its probability map still in the scene."""
    return bool(segmentation is not None and segmentation.GetNodeReference(ROLE_PROBABILITY) is not None
                and segmentation.GetNodeReference(ROLE_INPUT) is not None)


class RethresholdAction(enum.Enum):
    """What a front end does when the operating point it shows changes."""

    NOTHING = "nothing"  # the segments already are that operating point, or no probability map
    RETHRESHOLD = "rethreshold"  # replace the segments (they were not edited)
    CONFIRM = "confirm"  # replacing would lose edits: ask the user first


def rethreshold_action(segmentation, point: OperatingPoint) -> RethresholdAction:
    """Decide whether ``point`` should replace the segments.

    A scene load or parameter-node restore that sets the controls to the values the
    segments were made with does nothing, edited or not; other values re-threshold
    unedited segments and need confirmation for edited ones.
    """
    if not can_rethreshold(segmentation):
        return RethresholdAction.NOTHING
    if point.same_labels(operating_point(segmentation)):
        return RethresholdAction.NOTHING
    return RethresholdAction.CONFIRM if segments_edited(segmentation) else RethresholdAction.RETHRESHOLD


class TooManyLesions(ValueError):
    """A re-threshold would make more lesions than the caller can show (segments unchanged)."""


def rethreshold(segmentation, point: OperatingPoint, max_lesions: int | None = None) -> int:
    """Apply ``point`` to the result's probability map (no model run) by
    :func:`~BrainMetSegLib.operating_point.lesion_labels`: replace the segments and the
    table rows, record the point. Returns the number of lesions. With ``max_lesions``, a
    point giving more lesions raises :class:`TooManyLesions` and changes nothing."""
    nodes = result_nodes(segmentation)
    if nodes.probability is None or nodes.input_volume is None:
        raise ValueError(f"{segmentation.GetName()}: no BrainMetSeg probability map to re-threshold")
    if not isinstance(point, OperatingPoint):
        raise TypeError(f"rethreshold takes an OperatingPoint, not {point!r}")
    prob, ijk_to_ras = volumes.volume_array(nodes.probability)
    prob_image = volumes.image_from_array(prob.astype(np.float32, copy=False), ijk_to_ras)
    labels = lesion_labels(prob_image, point)
    count = int(sitk.GetArrayViewFromImage(labels).max())  # ids are 1..N
    if max_lesions is not None and count > max_lesions:
        raise TooManyLesions(f"{point.describe()} gives {count} lesions (more than {max_lesions})")
    rows = lesions.lesion_table(labels, prob_image)
    segment_ids = set_segments(segmentation, sitk.GetArrayViewFromImage(labels), ijk_to_ras,
                               [int(r["lesion_id"]) for r in rows])
    table = nodes.table or _new_table(segmentation)
    fill_table(table, rows, segment_ids, segmentation, nodes.input_volume)
    _record_operating_point(segmentation, point)
    return len(rows)


def _new_table(segmentation):
    scene = segmentation.GetScene()
    table = scene.AddNewNodeByClass("vtkMRMLTableNode",
                                    scene.GenerateUniqueName(f"{segmentation.GetName()} lesions"))
    segmentation.SetNodeReferenceID(ROLE_TABLE, table.GetID())
    return table


def update_table(segmentation, reference_volume=None) -> int:
    """Re-measure the lesions from the segments as they are now (after edits: painted,
    erased, added or split segments). One row per non-empty segment, in segment order;
    each segment is one lesion whatever its connectivity. Measured on the grid of
    ``reference_volume`` (default: the result's input volume). Returns the row count.
    """
    nodes = result_nodes(segmentation)
    reference_volume = reference_volume or nodes.input_volume
    if reference_volume is None:
        raise ValueError(f"{segmentation.GetName()}: give the volume the segmentation was made on")
    labels, ijk_to_ras, segment_ids = segments_label_map(segmentation, reference_volume)
    prob_image = None
    if nodes.probability is not None:
        prob, prob_matrix = volumes.volume_array(nodes.probability)
        if prob.shape == labels.shape and np.allclose(prob_matrix, ijk_to_ras, atol=1e-4) \
                and nodes.probability.GetTransformNodeID() == reference_volume.GetTransformNodeID():
            prob_image = volumes.image_from_array(prob.astype(np.float32, copy=False), ijk_to_ras)
    rows = lesions.lesion_table(volumes.image_from_array(labels, ijk_to_ras), prob_image)
    row_ids = [segment_ids[int(r["lesion_id"]) - 1] for r in rows]
    table = nodes.table or _new_table(segmentation)
    fill_table(table, rows, row_ids, segmentation, reference_volume)
    # the segments are no longer the thresholded probability map
    _record_operating_point(segmentation, None)
    return len(rows)


def lesion_world_ras(table, row: int) -> tuple[float, float, float]:
    """World RAS (mm) of the centroid on ``row``: the table's local centroid mapped
    through the parent transforms of the volume it was measured on."""
    if not 0 <= row < table.GetNumberOfRows():
        raise IndexError(f"row {row} is not in the table ({table.GetNumberOfRows()} rows)")
    local = []
    for axis in "ras":
        column = table.GetColumnIndex(f"centroid_{axis}")
        if column < 0:
            raise ValueError(f"table {table.GetName()!r} has no centroid_{axis} column")
        local.append(float(table.GetTable().GetColumn(column).GetValue(row)))
    frame = table.GetNodeReference(ROLE_MEASURED_ON)
    transform_node = frame.GetParentTransformNode() if frame is not None else None
    if transform_node is None:
        return tuple(local)
    to_world = vtk.vtkGeneralTransform()
    transform_node.GetTransformToWorld(to_world)
    return tuple(to_world.TransformPoint(local))


def jump_to_lesion(table, row: int, select_segment: bool = True) -> tuple[float, float, float]:
    """Centre every slice view on the lesion of ``row`` and (optionally) make its segment
    the Segment Editor's selected one. Returns the world RAS point jumped to (mm)."""
    r, a, s = lesion_world_ras(table, row)
    scene = table.GetScene()
    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
    segmentation = table.GetNodeReference(ROLE_SEGMENTATION)
    ids = json.loads(table.GetAttribute(ATTR_SEGMENT_IDS) or "[]")
    if select_segment and segmentation is not None and row < len(ids) \
            and segmentation.GetSegmentation().GetSegment(ids[row]) is not None:
        editor = scene_tools.segment_editor_node(scene, segmentation,
                                                 segmentation.GetNodeReference(ROLE_INPUT))
        editor.SetSelectedSegmentID(ids[row])
    return r, a, s


def remove_result(nodes: ResultNodes) -> None:
    """Remove a result's segmentation, table and probability volume with their display
    and storage nodes (the input volume stays)."""
    parts = [n for n in (nodes.segmentation, nodes.table, nodes.probability) if n is not None]
    if parts:
        scene_tools.remove_nodes(parts[0].GetScene(), parts)
