"""The module's run path without Slicer: volume nodes of a slicer-core scene -> the library's CLI
in a subprocess (tiny untrained model) -> segments, table and probability in the scene."""

from __future__ import annotations

import json
import sys

import numpy as np
import SimpleITK as sitk
import slicer

from BrainMetSegLib import mrml
from BrainMetSegLib import slicer_bridge as bridge
from BrainMetSegLib.mrml import volumes
from BrainMetSegLib.operating_point import OperatingPoint
from conftest import make_volume


def scene_with_volume():
    scene = slicer.vtkMRMLScene()
    mrml.segmentations_logic(scene)
    image = make_volume(shape_zyx=(24, 28, 32), spacing_xyz=(1.5, 1.2, 2.0),
                        direction=(0, 0, 1, 1, 0, 0, 0, 1, 0), origin=(10.0, -5.0, 3.0))
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CE-T1")
    volumes.set_volume(volume, *volumes.array_and_matrix(image))
    return scene, volume


def test_cli_run_into_scene(tiny_model, tmp_path):
    scene, volume = scene_with_volume()
    before = mrml.node_counts(scene)
    options = bridge.RunOptions(model=str(tiny_model.folder), device="cpu", brain_mask="none",
                                threshold=0.45, min_volume_mm3=0.0, outline_threshold=0.3)
    shown = []
    run = mrml.start_segmentation(scene, volume, options, temp_dir=tmp_path, python=sys.executable,
                                  keep_files=True, after_import=shown.append)
    run.wait()
    assert run.status == "done", run.error_message + "\n".join(run.monitor.log[-20:])
    nodes = run.value
    assert shown == [nodes]
    # the result's nodes and nothing else (no storage node left from writing the input) ...
    assert mrml.node_counts(scene) - before == {
        "vtkMRMLSegmentationNode": 1, "vtkMRMLSegmentationDisplayNode": 1, "vtkMRMLTableNode": 1,
        "vtkMRMLScalarVolumeNode": 1, "vtkMRMLScalarVolumeDisplayNode": 1}
    outputs = run.run_folder.collect_outputs(run.monitor.result.outputs)
    written = sitk.ReadImage(str(outputs["labels"]))
    labels, matrix, ids = mrml.segments_label_map(nodes.segmentation, volume)
    np.testing.assert_array_equal(labels, sitk.GetArrayFromImage(written))  # ... and voxel-exact
    np.testing.assert_allclose(matrix, volumes.ijk_to_ras_of_image(written), atol=1e-9)
    rows = json.loads(outputs["table_json"].read_text())["lesions"]
    assert nodes.table.GetNumberOfRows() == len(rows) == len(ids) == run.monitor.result.lesions > 0
    # the outline went to the CLI (run.json) and the scene records the full operating point
    assert "--outline-threshold" in run.command
    assert mrml.operating_point(nodes.segmentation) == OperatingPoint(0.45, 0.0, 0.3)
    # the model is recorded on the segmentation (a later DICOM export names it)
    model = json.loads(nodes.segmentation.GetAttribute(mrml.ATTR_MODEL))
    assert model["name"] == "tiny-test" and len(model["sha256"]) == 64
    prob, _ = volumes.volume_array(nodes.probability)
    np.testing.assert_allclose(prob, sitk.GetArrayFromImage(sitk.ReadImage(str(outputs["probability"]))))


def test_failed_and_cancelled_runs_leave_the_scene_unchanged(tmp_path):
    scene, volume = scene_with_volume()
    before = mrml.node_counts(scene)
    bad = bridge.RunOptions(model=str(tmp_path / "no-such-model"), device="cpu", brain_mask="none")
    run = mrml.start_segmentation(scene, volume, bad, temp_dir=tmp_path, python=sys.executable)
    run.wait()
    assert run.status == "failed" and "no-such-model" in run.error_message
    assert mrml.node_counts(scene) == before
    assert not run.run_folder.path.exists()
    good = bridge.RunOptions(device="cpu", brain_mask="none")
    run = mrml.start_segmentation(scene, volume, good, temp_dir=tmp_path, python=sys.executable)
    run.cancel()
    run.wait()
    assert run.status == "cancelled"
    assert mrml.node_counts(scene) == before
    assert not run.run_folder.path.exists()
