"""The lesion table node: rows written from the library's lesion rows, and a row's lesion
found in the views.

Coordinates: the table's centroid columns are RAS mm in the *local* frame of the volume
the lesions were measured on (the "MeasuredOn" reference), before any parent transform;
:func:`lesion_world_ras` maps them through the parent transforms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import slicer
import vtk

from .. import lesion_vocabulary as vocabulary
from . import scene as scene_tools
from .links import (
    ATTR_CENTROID_FRAME,
    ATTR_SEGMENT_IDS,
    ROLE_INPUT,
    ROLE_MEASURED_ON,
    ROLE_SEGMENTATION,
)


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
