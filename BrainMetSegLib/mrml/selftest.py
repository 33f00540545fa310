"""The editing loop checked on any scene: Slicer's own (the module's "Reload and Test")
and a bare slicer-core scene (pytest runs the same function, Testing/test_mrml.py)."""

from __future__ import annotations

import numpy as np

from .. import lesions
from ..operating_point import OperatingPoint
from . import lesion_table, results, scene, thresholding, volumes


def check_editing_loop(mrml_scene) -> None:
    """Import a two-lesion synthetic result, re-threshold, erase a segment, update the table
    and jump to a lesion; raises AssertionError on any wrong outcome. Leaves no node behind."""
    k, j, i = np.mgrid[:40, :48, :48]
    prob = np.zeros(k.shape, np.float32)
    for (ck, cj, ci), radius in (((12, 14, 14), 6), ((28, 32, 30), 4)):
        distance = np.sqrt((k - ck) ** 2 + (j - cj) ** 2 + ((i - ci) * 1.2) ** 2)
        prob = np.maximum(prob, np.clip(1.2 - distance / radius, 0, 1))
    matrix = np.diag([1.2, 1.0, 1.0, 1.0])  # 1.2 mm along i
    before = scene.node_counts(mrml_scene)
    volume = mrml_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "BrainMetSeg self-test CE-T1")
    volumes.set_volume(volume, (prob * 100).astype(np.int16), matrix)
    nodes = None
    try:
        labels = lesions.label_instances(prob > 0.5, (1.2, 1.0, 1.0))
        rows = lesions.lesion_table(volumes.image_from_array(labels, matrix),
                                    volumes.image_from_array(prob, matrix))
        nodes = results.import_result(mrml_scene, volume,
                                      results.LesionResult(labels, prob, matrix, rows, OperatingPoint(0.5)))
        segmentation, table = nodes.segmentation, nodes.table
        assert segmentation.GetSegmentation().GetSegment("Metastasis_1").GetName() == "Metastasis 1"
        nothing = thresholding.RethresholdAction.NOTHING
        assert thresholding.rethreshold_action(segmentation, OperatingPoint(0.5, 0.0, 0.5)) is nothing
        assert thresholding.rethreshold(segmentation, OperatingPoint(0.9)) == 2
        assert thresholding.rethreshold(segmentation, OperatingPoint(0.9, 0.0, 0.5)) == 2  # outlined at 0.5
        voxels = table.GetTable().GetColumnByName("voxels")
        assert voxels.GetValue(0) + voxels.GetValue(1) == np.count_nonzero(prob > 0.5) > np.count_nonzero(prob > 0.9)
        assert thresholding.rethreshold(segmentation, OperatingPoint(0.5, 200.0)) == 1  # the larger (~370 mm3)
        assert thresholding.rethreshold(segmentation, OperatingPoint(0.5)) == 2
        segmentation.GetSegmentation().RemoveSegment("Metastasis_2")  # an edit
        assert thresholding.segments_edited(segmentation)
        assert thresholding.update_table(segmentation) == table.GetNumberOfRows() == 1
        r, a, s = lesion_table.jump_to_lesion(table, 0)
        assert abs(table.GetTable().GetColumnByName("centroid_s").GetValue(0) - s) < 1e-9
    finally:
        if nodes is not None:
            results.remove_result(nodes)
        scene.remove_nodes(mrml_scene, [volume])
    left = scene.node_counts(mrml_scene) - before
    left.pop("vtkMRMLSliceNode", None)  # the jump may add the layout's slice nodes, editor node
    left.pop("vtkMRMLSegmentEditorNode", None)
    assert not left, f"nodes left behind: {dict(left)}"
