"""How a result's nodes find each other in the scene: node-reference roles and attributes.

A result is three nodes linked by node references (which follow node-ID changes
when a scene is saved, reloaded or imported into another scene):

- the segmentation (one segment per lesion), reference geometry = the input volume,
  under the input's parent transform;
- the probability volume (float32, the input's grid, same transform);
- the lesion table (``vtkMRMLTableNode``, one row per segment, columns typed, locked).

The attributes record what the links cannot: the operating point the segments were
made with, whether they were edited since, the model, and the frame of the centroids.
"""

from __future__ import annotations

from dataclasses import dataclass

import slicer

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


@dataclass
class ResultNodes:
    """The nodes of one result (any may be None when looked up from a partial result)."""

    segmentation: object
    table: object
    probability: object
    input_volume: object = None


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


def new_table(segmentation):
    """A new lesion table node for ``segmentation`` (linked to it), for a result that has none."""
    scene = segmentation.GetScene()
    table = scene.AddNewNodeByClass("vtkMRMLTableNode",
                                    scene.GenerateUniqueName(f"{segmentation.GetName()} lesions"))
    segmentation.SetNodeReferenceID(ROLE_TABLE, table.GetID())
    return table
