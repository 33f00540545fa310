"""The MRML scene layer (BrainMetSegLib.mrml) against Slicer's real MRML classes (slicer-core).

Every test builds a bare ``vtkMRMLScene`` from PyPI's slicer-core (the ``test`` extra
installs it): segments, tables, transforms, slice nodes, the Segment Editor node,
terminology and scene files are Slicer's own C++ classes, not stand-ins.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

from BrainMetSegLib import lesion_vocabulary as naming
from BrainMetSegLib import lesions, mrml
from BrainMetSegLib.mrml import results, segments, volumes
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels

assert hasattr(slicer, "vtkMRMLScene"), (
    "the 'slicer' package is not slicer-core (PyPI's unrelated 'slicer' package shadows it?)")

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "Resources" / "Sample"
TERMINOLOGY = Path(__file__).resolve().parent / "data" / "terminology"


def new_scene():
    scene = slicer.vtkMRMLScene()
    mrml.segmentations_logic(scene)
    return scene


def add_volume(scene, array_kji, ijk_to_ras, name="CE-T1"):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    volumes.set_volume(node, array_kji, ijk_to_ras)
    node.CreateDefaultDisplayNodes()
    return node


def oblique_matrix(spacing=(0.9, 1.3, 2.5), origin=(12.0, -30.0, 5.0)):
    """IJK-to-RAS with permuted axes (i ~ superior, j ~ right, k ~ anterior), rotated 20/35
    degrees off the anatomical axes, anisotropic voxels (mm)."""
    a, b = np.radians(20), np.radians(35)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    permute = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], float)  # columns: i->S, j->R, k->A
    m = np.eye(4)
    m[:3, :3] = rz @ rx @ permute @ np.diag(spacing)
    m[:3, 3] = origin
    return m


def blobs(shape_kji, ijk_to_ras, centres_ras, radii_mm):
    """Instance labels (ids 1..n by decreasing radius) and a smooth probability map of
    balls given in RAS mm; probability 1 at each centre falling to 0.5 at its radius."""
    k, j, i = np.indices(shape_kji, dtype=float)
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1)
    ras = ijk1 @ ijk_to_ras[:3].T
    labels = np.zeros(shape_kji, np.uint16)
    prob = np.zeros(shape_kji, np.float32)
    for n, (centre, radius) in enumerate(zip(centres_ras, radii_mm), start=1):
        d = np.linalg.norm(ras - np.asarray(centre), axis=-1)
        labels[d <= radius] = n
        prob = np.maximum(prob, np.clip(1.0 - 0.5 * d / radius, 0, 1).astype(np.float32))
    return labels, prob


@pytest.fixture(scope="module")
def sample():
    """The bundled sample and its exact ground truth as the 'result' (12 lesions)."""
    image = sitk.ReadImage(str(SAMPLE / "sample_ce_t1.nii.gz"))
    gt = sitk.ReadImage(str(SAMPLE / "sample_ground_truth_instances.nii.gz"))
    truth = json.loads((SAMPLE / "sample_ground_truth_lesions.json").read_text())["lesions"]
    prob = sitk.Cast(gt > 0, sitk.sitkFloat32) * 0.9
    prob.CopyInformation(gt)
    return image, gt, prob, truth


def import_sample(scene, sample):
    image, gt, prob, _ = sample
    array, matrix = volumes.array_and_matrix(image)
    volume = add_volume(scene, array, matrix)
    result = mrml.LesionResult.from_images(gt, prob, lesions.lesion_table(gt, prob), OperatingPoint(0.5))
    return volume, mrml.import_result(scene, volume, result)


def segment_centroid_ras(segmentation, segment_id):
    """Local RAS centroid of a segment (parent transforms not applied), from Slicer's own
    binary labelmap and its geometry."""
    image = slicer.vtkOrientedImageData()
    assert mrml.segmentations_logic(segmentation.GetScene()).GetSegmentBinaryLabelmapRepresentation(
        segmentation, segment_id, image, False)
    label = segmentation.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    array = volumes.oriented_image_array(image)
    kji = np.argwhere(array == label).astype(float)
    extent = image.GetExtent()
    ijk = kji[:, ::-1] + [extent[0], extent[2], extent[4]]
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    m = volumes.matrix_from_vtk(matrix)
    return (np.c_[ijk, np.ones(len(ijk))] @ m[:3].T).mean(axis=0)


def table_column(table, name):
    column = table.GetTable().GetColumnByName(name)
    return [column.GetValue(r) for r in range(table.GetNumberOfRows())]


# ---------------------------------------------------------------- segments


def test_sample_segments_are_voxel_exact_named_coloured(sample):
    scene = new_scene()
    volume, nodes = import_sample(scene, sample)
    gt = sitk.GetArrayFromImage(sample[1])
    labels, _, ids = mrml.segments_label_map(nodes.segmentation, volume)
    n = int(gt.max())
    assert ids == [naming.segment_id(i) for i in range(1, n + 1)]
    np.testing.assert_array_equal(labels, gt)  # segment i (label i) holds exactly lesion i
    seg = nodes.segmentation.GetSegmentation()
    for lesion_id in range(1, n + 1):
        segment = seg.GetSegment(naming.segment_id(lesion_id))
        assert segment.GetName() == f"Metastasis {lesion_id}"
        assert segment.GetColor() == pytest.approx(naming.segment_color(lesion_id))
        assert segment.GetTerminology() == naming.METASTASIS_TERMINOLOGY
    assert nodes.table.GetNumberOfRows() == n
    assert table_column(nodes.table, "segment") == [f"Metastasis {i}" for i in range(1, n + 1)]
    # probability volume on the input grid, links and reference geometry in place
    prob, matrix = volumes.volume_array(nodes.probability)
    assert prob.shape == gt.shape and prob.dtype == np.float32
    np.testing.assert_allclose(matrix, volumes.ijk_to_ras_of_image(sample[0]))
    assert mrml.result_nodes(nodes.table) == nodes
    ref_role = nodes.segmentation.GetReferenceImageGeometryReferenceRole()
    assert nodes.segmentation.GetNodeReferenceID(ref_role) == volume.GetID()


def test_oblique_anisotropic_permuted_input_is_voxel_exact():
    scene = new_scene()
    m = oblique_matrix()
    shape = (24, 40, 44)  # (K, J, I)
    centre = m @ np.array([22, 20, 12, 1.0])
    centres = [centre[:3] + d for d in ([0, 0, 0], [14, 6, -8], [-12, -9, 7])]
    labels, prob = blobs(shape, m, centres, (7.0, 4.5, 3.0))
    volume = add_volume(scene, (prob * 1000).astype(np.int16), m)
    rows = lesions.lesion_table(volumes.image_from_array(labels, m))
    nodes = mrml.import_result(scene, volume, mrml.LesionResult(labels, prob, m, rows))
    out, out_matrix, ids = mrml.segments_label_map(nodes.segmentation, volume)
    np.testing.assert_allclose(out_matrix, m)
    np.testing.assert_array_equal(out, labels)
    assert len(ids) == 3
    # the IJK-to-RAS <-> SimpleITK (LPS) conversions are inverse to each other
    np.testing.assert_allclose(volumes.ijk_to_ras_of_image(volumes.image_from_array(labels, m)), m,
                               atol=1e-12)


def test_centroids_match_table_and_ground_truth(sample):
    scene = new_scene()
    _, nodes = import_sample(scene, sample)
    truth = {t["id"]: np.asarray(t["centre_ras_mm"]) for t in sample[3]}
    table = nodes.table
    ids = json.loads(table.GetAttribute(mrml.ATTR_SEGMENT_IDS))
    worst_table, worst_truth = 0.0, 0.0
    for row, segment_id in enumerate(ids):
        from_segment = segment_centroid_ras(nodes.segmentation, segment_id)
        in_table = np.array([table_column(table, f"centroid_{c}")[row] for c in "ras"])
        worst_table = max(worst_table, float(np.linalg.norm(from_segment - in_table)))
        lesion_id = table_column(table, "lesion_id")[row]
        worst_truth = max(worst_truth, float(np.linalg.norm(from_segment - truth[lesion_id])))
    print(f"segment vs table centroid: max {worst_table:.2e} mm; vs generator's centre: max {worst_truth:.3f} mm")
    assert worst_table < 1e-6
    # the ground truth's centre_ras_mm is its voxels' centroid, rounded to 0.001 mm
    assert worst_truth < 0.002


# ---------------------------------------------------------------- jump


def test_jump_maps_centroid_through_parent_transforms(sample):
    scene = new_scene()
    volume, nodes = import_sample(scene, sample)
    outer = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "outer")
    inner = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "inner")
    rotation = vtk.vtkTransform()
    rotation.RotateZ(15)
    inner.SetMatrixTransformToParent(rotation.GetMatrix())
    shift = vtk.vtkMatrix4x4()
    for axis, value in enumerate((30.0, -20.0, 10.0)):
        shift.SetElement(axis, 3, value)
    outer.SetMatrixTransformToParent(shift)
    inner.SetAndObserveTransformNodeID(outer.GetID())
    volume.SetAndObserveTransformNodeID(inner.GetID())
    mrml.link_result(nodes)  # outputs follow the input's transform
    assert nodes.segmentation.GetTransformNodeID() == inner.GetID()
    slice_nodes = mrml.slice_nodes(scene)
    assert [s.GetOrientation() for s in slice_nodes] == ["Axial", "Sagittal", "Coronal"]
    row = 2
    local = np.array([table_column(nodes.table, f"centroid_{c}")[row] for c in "ras"])
    expected = shift_rotate = (np.array([[np.cos(np.radians(15)), -np.sin(np.radians(15)), 0],
                                         [np.sin(np.radians(15)), np.cos(np.radians(15)), 0],
                                         [0, 0, 1]]) @ local) + [30.0, -20.0, 10.0]
    jumped = mrml.jump_to_lesion(nodes.table, row)
    np.testing.assert_allclose(jumped, expected, atol=1e-6)
    assert np.linalg.norm(np.asarray(jumped) - local) > 30  # not the untransformed point
    for s in slice_nodes:
        to_ras = s.GetSliceToRAS()
        np.testing.assert_allclose([to_ras.GetElement(a, 3) for a in range(3)], shift_rotate, atol=1e-4)
    editor = scene.GetSingletonNode("SegmentEditor", "vtkMRMLSegmentEditorNode")
    assert editor.GetSegmentationNode() is nodes.segmentation
    assert editor.GetSelectedSegmentID() == naming.segment_id(table_column(nodes.table, "lesion_id")[row])
    # the segment's own (local) centroid is the table's: the jump moved it by the transforms only
    np.testing.assert_allclose(segment_centroid_ras(nodes.segmentation, naming.segment_id(row + 1)),
                               local, atol=1e-6)


# ---------------------------------------------------------------- editing loop, no leaks


def synthetic_result(scene):
    m = oblique_matrix(spacing=(1.0, 1.2, 1.5), origin=(0.0, 0.0, 0.0))
    shape = (28, 40, 40)
    centre = m @ np.array([20, 20, 14, 1.0])
    centres = [centre[:3] + d for d in ([0, 0, 0], [13, 8, 0], [-12, -8, 4])]
    labels, prob = blobs(shape, m, centres, (7.0, 5.0, 3.5))
    volume = add_volume(scene, (prob * 800).astype(np.int16), m)
    rows = lesions.lesion_table(volumes.image_from_array(labels, m), volumes.image_from_array(prob, m))
    return volume, mrml.LesionResult(labels, prob, m, rows, OperatingPoint(0.5))


def test_no_node_left_behind(monkeypatch):
    scene = new_scene()
    volume, result = synthetic_result(scene)
    mrml.slice_nodes(scene)
    before = mrml.node_counts(scene)
    nodes = mrml.import_result(scene, volume, result)
    after_import = mrml.node_counts(scene)
    assert after_import - before == {"vtkMRMLSegmentationNode": 1, "vtkMRMLSegmentationDisplayNode": 1,
                                     "vtkMRMLTableNode": 1, "vtkMRMLScalarVolumeNode": 1,
                                     "vtkMRMLScalarVolumeDisplayNode": 1}
    counts = []
    for step in range(20):
        threshold = 0.3 + 0.03 * step
        point = OperatingPoint(threshold, 5.0 * (step % 3), threshold - 0.1 * (step % 2))
        counts.append(mrml.rethreshold(nodes.segmentation, point))
        assert mrml.node_counts(scene) == after_import, f"re-threshold {step + 1} added nodes"
    assert len(set(counts)) > 1  # the thresholds did change the lesions
    mrml.update_table(nodes.segmentation)
    assert mrml.node_counts(scene) == after_import

    def broken(*args, **kwargs):
        raise RuntimeError("import failed half-way")

    monkeypatch.setattr(results, "set_segments", broken)
    with pytest.raises(RuntimeError, match="half-way"):
        mrml.import_result(scene, volume, result)
    assert mrml.node_counts(scene) == after_import  # the rollback removed display nodes too
    monkeypatch.undo()
    mrml.remove_result(nodes)
    assert mrml.node_counts(scene) == before
    print(f"node counts: before {sum(before.values())}, after import {sum(after_import.values())}, "
          f"after 20 re-thresholds + update + failed import {sum(after_import.values())}, "
          f"after removal {sum(mrml.node_counts(scene).values())}")


def test_rethreshold_matches_library_and_records_operating_point():
    scene = new_scene()
    volume, result = synthetic_result(scene)
    nodes = mrml.import_result(scene, volume, result)
    assert mrml.operating_point(nodes.segmentation) == OperatingPoint(0.5, 0.0, 0.5)
    nodes.segmentation.CreateClosedSurfaceRepresentation()  # what the module shows in 3D: no edit
    assert not mrml.segments_edited(nodes.segmentation)
    n = mrml.rethreshold(nodes.segmentation, OperatingPoint(0.7, 20.0))
    prob_image = volumes.image_from_array(result.probability_kji, result.ijk_to_ras)
    expected = sitk.GetArrayFromImage(lesion_labels(prob_image, OperatingPoint(0.7, 20.0)))
    labels, _, ids = mrml.segments_label_map(nodes.segmentation, volume)
    np.testing.assert_array_equal(labels, expected)
    assert n == len(ids) == int(expected.max()) == nodes.table.GetNumberOfRows()
    assert mrml.operating_point(nodes.segmentation) == OperatingPoint(0.7, 20.0, 0.7)
    # the 3D surfaces shown before are shown for the new segments too; geometry kept
    surface = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    assert nodes.segmentation.GetSegmentation().ContainsRepresentation(surface)
    assert nodes.segmentation.GetNodeReferenceID(
        nodes.segmentation.GetReferenceImageGeometryReferenceRole()) == volume.GetID()
    with pytest.raises(TypeError, match="OperatingPoint"):
        mrml.rethreshold(nodes.segmentation, 0.5)  # a bare threshold: no silent default outline
    with pytest.raises(ValueError, match="threshold"):
        mrml.rethreshold(nodes.segmentation, OperatingPoint(1.5))


def test_rethreshold_with_an_outline_grows_lesions_exactly_like_lesion_labels(tmp_path):
    """Detect at 0.7, outline at 0.35: the segments and the table are lesion_labels' own,
    each lesion larger than detected, the same lesions; the point (outline included) is
    recorded on the node, survives a scene save and reload, and goes into the DICOM params."""
    scene = new_scene()
    volume, result = synthetic_result(scene)
    nodes = mrml.import_result(scene, volume, result)
    seg = nodes.segmentation
    prob_image = volumes.image_from_array(result.probability_kji, result.ijk_to_ras)
    detected = sitk.GetArrayFromImage(lesion_labels(prob_image, OperatingPoint(0.7, 20.0)))
    point = OperatingPoint(0.7, 20.0, 0.35)
    assert mrml.rethreshold_action(seg, point) is mrml.RethresholdAction.RETHRESHOLD
    n = mrml.rethreshold(seg, point)
    expected = sitk.GetArrayFromImage(lesion_labels(prob_image, point))
    labels, _, ids = mrml.segments_label_map(seg, volume)
    np.testing.assert_array_equal(labels, expected)
    assert n == len(ids) == int(detected.max()) == int(expected.max()) == 3
    # every lesion grew from its detection (same lesions, larger outlines)
    assert np.array_equal(expected > 0, (expected > 0) | (detected > 0))
    assert (expected > 0).sum() > 1.5 * (detected > 0).sum()
    rows = lesions.lesion_table(volumes.image_from_array(expected, result.ijk_to_ras), prob_image)
    np.testing.assert_allclose(table_column(nodes.table, "volume_mm3"), [r["volume_mm3"] for r in rows])
    assert mrml.operating_point(seg) == point
    assert seg.GetAttribute(mrml.ATTR_OUTLINE) == "0.35"
    assert mrml.rethreshold_action(seg, point) is mrml.RethresholdAction.NOTHING
    assert mrml.rethreshold_action(seg, OperatingPoint(0.7, 20.0, 0.4)) is mrml.RethresholdAction.RETHRESHOLD
    loaded = new_scene()
    loaded.SetURL(str(save_scene(scene, tmp_path / "saved")))
    assert loaded.Import()
    assert mrml.operating_point(loaded.GetFirstNodeByClass("vtkMRMLSegmentationNode")) == point
    # a scene saved before outlines existed: threshold and minimum volume only
    seg.RemoveAttribute(mrml.ATTR_OUTLINE)
    assert mrml.operating_point(seg) == OperatingPoint(0.7, 20.0)
    assert mrml.operating_point(seg).outline == 0.7


def test_slider_changes_never_replace_edited_segments_silently(tmp_path):
    """Bug 5: a programmatic slider change (scene load, parameter-node restore) re-thresholded
    and replaced every segment, losing manual edits."""
    action = mrml.RethresholdAction
    scene = new_scene()
    volume, result = synthetic_result(scene)
    nodes = mrml.import_result(scene, volume, result)
    seg = nodes.segmentation
    assert mrml.rethreshold_action(seg, OperatingPoint(0.5)) is action.NOTHING  # restore of the same values
    assert mrml.rethreshold_action(seg, OperatingPoint(0.5, 0.0, 0.5)) is action.NOTHING  # same lesions
    assert mrml.rethreshold_action(seg, OperatingPoint(0.6)) is action.RETHRESHOLD  # user moved the slider
    assert mrml.rethreshold_action(seg, OperatingPoint(0.5, 0.0, 0.4)) is action.RETHRESHOLD  # the outline
    mrml.rethreshold(seg, OperatingPoint(0.6))
    assert mrml.rethreshold_action(seg, OperatingPoint(0.6)) is action.NOTHING
    paint_edit(scene, nodes, volume, result.labels_kji, result.ijk_to_ras)
    assert mrml.segments_edited(seg)
    assert mrml.rethreshold_action(seg, OperatingPoint(0.6)) is action.NOTHING  # never touch edits unasked
    assert mrml.rethreshold_action(seg, OperatingPoint(0.5)) is action.CONFIRM
    assert mrml.rethreshold_action(seg, OperatingPoint(0.6, 0.0, 0.3)) is action.CONFIRM
    seg.GetSegmentation().RemoveSegment(naming.segment_id(1))
    assert mrml.rethreshold_action(seg, OperatingPoint(0.5)) is action.CONFIRM
    # a saved and reloaded scene: edits cannot be known, so a change asks first
    mrml.rethreshold(seg, OperatingPoint(0.5))
    loaded = new_scene()
    loaded.SetURL(str(save_scene(scene, tmp_path / "saved")))
    assert loaded.Import()
    reloaded = loaded.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    assert mrml.rethreshold_action(reloaded, OperatingPoint(0.5)) is action.NOTHING
    assert mrml.rethreshold_action(reloaded, OperatingPoint(0.7)) is action.CONFIRM
    unlinked = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert mrml.rethreshold_action(unlinked, OperatingPoint(0.7)) is action.NOTHING


def paint_edit(scene, nodes, volume, labels_kji, ijk_to_ras):
    """Paint a 3x3x3 cube at the edge of lesion 2 into segment 2 with the Segment Editor's
    own logic (its Add mode is what the paint brush does). Returns the paint mask."""
    k, j, i = np.argwhere(labels_kji == 2).max(axis=0)
    paint = np.zeros_like(labels_kji, dtype=np.uint8)
    paint[k - 1:k + 2, j:j + 3, i:i + 3] = 1
    editor = slicer.vtkSlicerSegmentEditorLogic()
    editor.SetMRMLScene(scene)
    editor.SetSegmentEditorNode(mrml.segment_editor_node(scene, nodes.segmentation, volume))
    editor.ModifySegmentByLabelmap(nodes.segmentation, naming.segment_id(2),
                                   volumes.oriented_image(paint, ijk_to_ras),
                                   slicer.vtkSlicerSegmentEditorLogic.ModificationModeAdd, False, True)
    return paint


def test_update_table_after_painted_edit():
    scene = new_scene()
    volume, result = synthetic_result(scene)
    nodes = mrml.import_result(scene, volume, result)
    volumes_before = table_column(nodes.table, "volume_mm3")
    voxel_mm3 = float(np.prod(np.linalg.norm(result.ijk_to_ras[:3, :3], axis=0)))
    paint = paint_edit(scene, nodes, volume, result.labels_kji, result.ijk_to_ras)
    added = int(((paint == 1) & (result.labels_kji != 2)).sum())
    # erase lesion 3
    nodes.segmentation.GetSegmentation().RemoveSegment(naming.segment_id(3))
    assert mrml.update_table(nodes.segmentation) == 2
    after = table_column(nodes.table, "volume_mm3")
    assert after[0] == pytest.approx(volumes_before[0])
    assert after[1] == pytest.approx(volumes_before[1] + added * voxel_mm3)
    assert table_column(nodes.table, "segment") == ["Metastasis 1", "Metastasis 2"]
    assert mrml.operating_point(nodes.segmentation) is None  # edited: no longer a threshold
    labels, _, _ = mrml.segments_label_map(nodes.segmentation, volume)
    expected = np.where(result.labels_kji == 3, 0, result.labels_kji)
    expected[(paint == 1) & (expected != 1)] = 2
    np.testing.assert_array_equal(labels, expected)


# ---------------------------------------------------------------- terminology, scene files


def test_terminology_entry_is_in_slicers_dicom_master_lists():
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    context = logic.LoadTerminologyFromFile(
        str(TERMINOLOGY / "SegmentationCategoryTypeModifier-DICOM-Master.subset.json"))
    region_context = logic.LoadRegionContextFromFile(
        str(TERMINOLOGY / "AnatomicRegionAndModifier-DICOM-Master.subset.json"))
    assert context == naming.TERMINOLOGY_CONTEXT and region_context == naming.ANATOMIC_CONTEXT
    entry = slicer.vtkSlicerTerminologyEntry()
    assert logic.DeserializeTerminologyEntry(naming.METASTASIS_TERMINOLOGY, entry)

    def code(obj):
        return (obj.GetCodingSchemeDesignator(), obj.GetCodeValue(), obj.GetCodeMeaning())

    categories = []
    for n in range(logic.GetNumberOfCategoriesInTerminology(context)):
        category = slicer.vtkSlicerTerminologyCategory()
        assert logic.GetNthCategoryInTerminology(context, n, category)
        categories.append(category)
    category = next(c for c in categories if code(c) == code(entry.GetCategoryObject()))
    assert code(category) == naming.CATEGORY_CODE
    assert category.GetShowAnatomy()  # Slicer lets an anatomic region be set for this category
    types = []
    for n in range(logic.GetNumberOfTypesInTerminologyCategory(context, category)):
        type_ = slicer.vtkSlicerTerminologyType()
        assert logic.GetNthTypeInTerminologyCategory(context, category, n, type_)
        types.append(code(type_))
    assert code(entry.GetTypeObject()) == naming.TYPE_CODE and naming.TYPE_CODE in types
    regions = []
    for n in range(logic.GetNumberOfRegionsInRegionContext(region_context)):
        region = slicer.vtkSlicerTerminologyType()
        assert logic.GetNthRegionInRegionContext(region_context, n, region)
        regions.append(code(region))
    assert code(entry.GetRegionObject()) == naming.REGION_CODE and naming.REGION_CODE in regions
    assert entry.GetTerminologyContextName() == context
    assert entry.GetRegionContextName() == region_context


def save_scene(scene, folder: Path) -> Path:
    """Write every storable node's data file, then the .mrml (what Slicer's Save does)."""
    folder.mkdir(parents=True, exist_ok=True)
    extensions = {"vtkMRMLSegmentationNode": ".seg.nrrd", "vtkMRMLTableNode": ".tsv"}
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLStorableNode")):
        node = scene.GetNthNodeByClass(n, "vtkMRMLStorableNode")
        if not node.GetStorageNode():
            node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
        if storage is None:
            continue
        name = "".join(ch if ch.isalnum() else "_" for ch in node.GetName())
        storage.SetFileName(str(folder / (name + extensions.get(node.GetClassName(), ".nrrd"))))
        assert storage.WriteData(node), node.GetName()
    path = folder / "scene.mrml"
    scene.SetRootDirectory(str(folder))
    scene.SetURL(str(path))
    assert scene.Commit()
    return path


def test_scene_saved_and_read_back(tmp_path):
    scene = new_scene()
    volume, result = synthetic_result(scene)
    nodes = mrml.import_result(scene, volume, result)
    table = nodes.table
    kinds = {table.GetColumnName(c): table.GetTable().GetColumn(c).GetDataTypeAsString()
             for c in range(table.GetNumberOfColumns())}
    values = {name: table_column(table, name) for name in kinds}
    path = save_scene(scene, tmp_path / "saved")

    loaded = new_scene()
    loaded.SetURL(str(path))
    assert loaded.Import()
    seg_node = loaded.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    back = mrml.result_nodes(seg_node)
    assert back.table is not None and back.probability is not None and back.input_volume is not None
    assert back.input_volume.GetName() == "CE-T1"
    seg = seg_node.GetSegmentation()
    assert seg.GetNumberOfSegments() == 3
    for lesion_id in (1, 2, 3):
        segment = seg.GetSegment(naming.segment_id(lesion_id))
        assert segment.GetName() == f"Metastasis {lesion_id}"
        assert segment.GetColor() == pytest.approx(naming.segment_color(lesion_id), abs=1e-6)
        assert segment.GetTerminology() == naming.METASTASIS_TERMINOLOGY
    labels, _, _ = mrml.segments_label_map(seg_node, back.input_volume)
    np.testing.assert_array_equal(labels, result.labels_kji)
    t = back.table
    assert {t.GetColumnName(c): t.GetTable().GetColumn(c).GetDataTypeAsString()
            for c in range(t.GetNumberOfColumns())} == kinds
    assert (kinds["segment"], kinds["lesion_id"], kinds["volume_mm3"]) == ("string", "int", "double")
    for name, column in values.items():
        got = table_column(t, name)
        if kinds[name] == "double":
            np.testing.assert_allclose(got, column, rtol=1e-5)  # the .tsv keeps 6 digits
        else:
            assert got == column, name
    assert t.GetColumnUnitLabel("volume_mm3") == "mm3"
    assert mrml.operating_point(seg_node) == OperatingPoint(0.5, 0.0, 0.5)
    # the reloaded result still re-thresholds and jumps
    assert mrml.rethreshold(seg_node, OperatingPoint(0.8)) >= 1
    mrml.slice_nodes(loaded)
    assert len(mrml.jump_to_lesion(back.table, 0)) == 3


def test_import_rejects_a_result_on_another_grid():
    scene = new_scene()
    volume, result = synthetic_result(scene)
    before = mrml.node_counts(scene)
    shifted = mrml.LesionResult(result.labels_kji, result.probability_kji,
                                result.ijk_to_ras + np.c_[np.zeros((4, 3)), [1, 0, 0, 0]], result.rows)
    with pytest.raises(ValueError, match="does not match the input volume"):
        mrml.import_result(scene, volume, shifted)
    wrong_rows = mrml.LesionResult(result.labels_kji, result.probability_kji, result.ijk_to_ras,
                                   result.rows[:2])
    with pytest.raises(ValueError, match="lesion table ids"):
        mrml.import_result(scene, volume, wrong_rows)
    assert mrml.node_counts(scene) == before


def test_module_self_test_on_a_bare_scene():
    """The check behind the module's "Reload and Test" passes on slicer-core and leaves nothing."""
    from BrainMetSegLib.mrml import selftest

    scene = new_scene()
    selftest.check_editing_loop(scene)
    selftest.check_editing_loop(scene)  # twice: no name clash, no leftovers


def test_thousands_of_specks_stay_interactive():
    """An untrained model at a low threshold: thousands of one-voxel lesions. Each must be its
    own voxel-exact segment, without the per-segment clearing that took 48 s for 1600."""
    scene = new_scene()
    rng = np.random.default_rng(0)
    labels = np.zeros((60, 96, 96), np.uint16)
    n = 3000
    labels.ravel()[rng.choice(labels.size, n, replace=False)] = np.arange(1, n + 1)
    matrix = oblique_matrix()
    volume = add_volume(scene, labels.astype(np.int16), matrix)
    t0 = time.perf_counter()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    ids = mrml.set_segments(segmentation, labels, matrix)
    seconds = time.perf_counter() - t0
    print(f"{n} segments in {seconds:.2f} s")
    assert len(ids) == segmentation.GetSegmentation().GetNumberOfSegments() == n
    out, _, _ = mrml.segments_label_map(segmentation, volume)
    np.testing.assert_array_equal(out, labels)
    assert seconds < 30  # the per-segment import takes minutes here


def test_label_map_read_from_layers_equals_slicers_merge():
    """segments_label_map reads the shared labelmaps directly when they lie on the reference
    grid; the result must be Slicer's own merged labelmap, overlaps and edits included."""
    scene = new_scene()
    volume, result = synthetic_result(scene)
    nodes = mrml.import_result(scene, volume, result)
    seg = nodes.segmentation
    paint_edit(scene, nodes, volume, result.labels_kji, result.ijk_to_ras)
    # a new segment overlapping lesion 1, in a layer of its own (as Slicer keeps overlaps)
    overlap = np.zeros_like(result.labels_kji, dtype=np.uint8)
    k, j, i = np.argwhere(result.labels_kji == 1).mean(axis=0).astype(int)
    overlap[k - 2:k + 3, j - 2:j + 3, i - 2:i + 8] = 1
    seg.GetSegmentation().AddEmptySegment("extra", "extra")
    mrml.segmentations_logic(scene).SetBinaryLabelmapToSegment(
        volumes.oriented_image(overlap, result.ijk_to_ras), seg, "extra",
        slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE, None, False, [])
    ids = vtk.vtkStringArray()
    seg.GetSegmentation().GetSegmentIDs(ids)
    dims, matrix = segments.volume_grid(volume)
    fast = segments._label_map_on_grid(seg, volume, [ids.GetValue(n) for n in range(ids.GetNumberOfValues())],
                                       dims, matrix)
    slow = segments._label_map_by_slicer(seg, volume, ids, dims)
    assert fast is not None
    np.testing.assert_array_equal(fast, slow)
    assert (fast == 4).sum() == overlap.sum()  # the later segment wins where they overlap
    # under a transform the segmentation does not share, Slicer resamples (no fast path)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    seg.SetAndObserveTransformNodeID(transform.GetID())
    assert segments._label_map_on_grid(seg, volume, ["extra"], dims, matrix) is None
    np.testing.assert_array_equal(mrml.segments_label_map(seg, volume)[0], slow)
