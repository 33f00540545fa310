"""Scene plumbing shared by the scene layer: logic registration, node removal, slice nodes."""

from __future__ import annotations

from collections import Counter

import slicer

# slicer-core scenes: the segmentations logic we created for each scene (kept alive with it).
_SEGMENTATION_LOGICS: dict[str, object] = {}


def segmentations_logic(scene):
    """Slicer's segmentations module logic for ``scene``.

    Inside the Slicer application this is ``slicer.modules.segmentations.logic()``. On a
    bare slicer-core scene no module logic exists, and segments cannot even be created
    ("Unable to construct empty representation type 'Binary labelmap'") until a
    ``vtkSlicerSegmentationsModuleLogic`` has been given a scene (that registers the
    representation converters): one is created and kept for the scene.
    """
    modules = getattr(slicer, "modules", None)
    if modules is not None and hasattr(modules, "segmentations"):
        return modules.segmentations.logic()
    key = scene.GetAddressAsString("")
    logic = _SEGMENTATION_LOGICS.get(key)
    if logic is None or logic.GetMRMLScene() is not scene:
        logic = slicer.vtkSlicerSegmentationsModuleLogic()
        logic.SetMRMLScene(scene)
        _SEGMENTATION_LOGICS[key] = logic
    return logic


def node_counts(scene) -> Counter:
    """Number of nodes of each class in ``scene`` (to check nothing is left behind)."""
    return Counter(scene.GetNthNode(i).GetClassName() for i in range(scene.GetNumberOfNodes()))


def remove_nodes(scene, nodes) -> None:
    """Remove nodes with their display and storage nodes (``RemoveNode`` alone leaves
    those behind as orphans that are saved with the scene)."""
    for node in nodes:
        if node is None or node.GetScene() is not scene:
            continue
        owned = []
        for getter, count in (("GetNthDisplayNode", "GetNumberOfDisplayNodes"),
                              ("GetNthStorageNode", "GetNumberOfStorageNodes")):
            if hasattr(node, count):
                owned += [getattr(node, getter)(i) for i in range(getattr(node, count)())]
        scene.RemoveNode(node)
        for other in owned:
            if other is not None and other.GetScene() is scene:
                scene.RemoveNode(other)


def slice_nodes(scene) -> list:
    """The scene's slice nodes; when it has none (no layout: ``--no-main-window`` or a
    bare slicer-core scene), adds Red/Yellow/Green axial/sagittal/coronal ones the way
    Slicer's layout does (orientation presets first, nodes through the scene)."""
    nodes = [scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))]
    if nodes:
        return nodes
    default = scene.GetDefaultNodeByClass("vtkMRMLSliceNode")
    if default is None or not default.HasSliceOrientationPreset("Axial"):
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)  # RAS: right on screen left
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode", name)  # gets the presets
        slice_node.SetLayoutName(name)
        slice_node.SetSingletonTag(name)
        slice_node.SetOrientation(orientation)
        nodes.append(slice_node)
    return nodes


def segment_editor_node(scene, segmentation, source_volume=None):
    """The Segment Editor's parameter node (its "SegmentEditor" singleton, created as the
    Segment Editor does when missing), showing ``segmentation`` on ``source_volume``."""
    editor = scene.GetSingletonNode("SegmentEditor", "vtkMRMLSegmentEditorNode")
    if editor is None:
        editor = scene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
        editor.UnRegister(None)
        editor.SetSingletonTag("SegmentEditor")
        editor = scene.AddNode(editor)
    if editor.GetSegmentationNode() is not segmentation:
        editor.SetAndObserveSegmentationNode(segmentation)
    if source_volume is not None and editor.GetSourceVolumeNode() is not source_volume:
        editor.SetAndObserveSourceVolumeNode(source_volume)
    return editor
