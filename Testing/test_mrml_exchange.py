"""Scene layer for clinical exchange, on Slicer's real MRML classes (slicer-core):

- DICOM export of a result's segments after Segment Editor-style edits (a segment deleted, one
  partly erased): the SEG read back by highdicom equals the scene's segments voxel for voxel;
- a longitudinal comparison loaded as one segmentation per time point (matched lesions share
  segment id, name and colour), the follow-up under the registration transform, the table.
"""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import slicer
import vtk

from BrainMetSegLib import lesions, mrml
from BrainMetSegLib.cli import main as cli_main
from BrainMetSegLib.errors import InputError
from BrainMetSegLib.images import read_image
from BrainMetSegLib.longitudinal import (
    NOT_FROM_IMAGES,
    LongitudinalResult,
    Registration,
    TimePoint,
    compare_timepoints,
)
from BrainMetSegLib.longitudinal.rano import RESPONSE_WORDS
from BrainMetSegLib.mrml import dicom_export, volumes
from BrainMetSegLib.mrml import longitudinal as scene_longitudinal
from BrainMetSegLib.operating_point import OperatingPoint
from dicom_phantoms import LESIONS, lesion_labels, phantom_image, write_series

MODEL = {"name": "phantom-model", "version": "9.8.7", "sha256": "cd" * 32}


def new_scene():
    scene = slicer.vtkMRMLScene()
    mrml.segmentations_logic(scene)
    return scene


def add_volume(scene, image, name):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    array, matrix = volumes.array_and_matrix(image)
    volumes.set_volume(node, array, matrix)
    return node


@pytest.fixture(scope="module", params=["oblique", "sagittal"])
def dicom_case(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"scene_dicom_{request.param}")
    files = write_series(phantom_image(request.param), root / "series")
    image = read_image(root / "series")
    return root, files, image, lesion_labels(image, LESIONS)


def _edited_result(dicom_case):
    """A result imported into a scene; segment 2 deleted, the upper half (k >= middle) of
    segment 1 erased. Returns (scene, nodes, the expected label map after renumbering)."""
    _, _, image, labels = dicom_case
    scene = new_scene()
    volume = add_volume(scene, image, "CE-T1")
    result = mrml.LesionResult.from_images(labels, None, lesions.lesion_table(labels),
                                           OperatingPoint(0.5, 10.0, 0.3), MODEL)
    nodes = mrml.import_result(scene, volume, result)
    segmentation = nodes.segmentation
    # unedited, the objects would carry the full operating point (outline included)
    assert dicom_export.model_identity(segmentation).parameters == {
        "threshold_used": "0.5", "min_volume_mm3_used": "10.0", "outline_threshold_used": "0.3"}
    segmentation.GetSegmentation().RemoveSegment("Metastasis_2")
    arr, ijk_to_ras = volumes.array_and_matrix(labels)
    first = arr == 1
    k_mid = int(np.median(np.nonzero(first)[0]))
    kept = first.copy()
    kept[k_mid:] = False
    assert 0 < kept.sum() < first.sum()
    logic = mrml.segmentations_logic(scene)
    assert logic.SetBinaryLabelmapToSegment(volumes.oriented_image(kept.astype(np.uint8), ijk_to_ras),
                                            segmentation, "Metastasis_1",
                                            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    expected = np.zeros_like(arr)
    expected[kept] = 1
    expected[arr == 3] = 2
    expected[arr == 4] = 3
    return scene, nodes, expected


def test_edited_segments_exported_voxel_exact(dicom_case, tmp_path):
    root, files, image, _ = dicom_case
    scene, nodes, expected = _edited_result(dicom_case)
    out = dicom_export.export_segmentation_dicom(nodes.segmentation, root / "series", tmp_path / "out")
    assert set(out.paths) == {"dicom_seg", "dicom_sr", "dicom_rtstruct"}
    assert out.segment_numbers == {"Metastasis_1": 1, "Metastasis_3": 2, "Metastasis_4": 3}
    # the scene's segments, read by the scene layer, are what we expect after the edits
    scene_labels, _, segment_ids = mrml.segments_label_map(nodes.segmentation, nodes.input_volume)
    assert segment_ids == ["Metastasis_1", "Metastasis_3", "Metastasis_4"]
    assert np.array_equal(scene_labels, expected)
    seg = hd.seg.segread(out.paths["dicom_seg"])
    assert seg.number_of_segments == 3
    assert [seg.get_segment_description(n).segment_label for n in (1, 2, 3)] == \
        ["Metastasis 1", "Metastasis 2", "Metastasis 3"]
    algorithm = seg.get_segment_description(1).SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("phantom-model", "9.8.7")
    assert "edited_in_slicer" in algorithm.AlgorithmParameters  # threshold no longer describes them
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, skip_overlap_checks=True)
    # files run along the series' z axis = the volume's k axis (the scene grid came from the series)
    assert np.array_equal(pixels, expected)
    # the report measures the edited lesions (re-measured, not the table of the run)
    sr = hd.sr.srread(out.paths["dicom_sr"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 3
    volumes_mm3 = sorted(float(m.value) for g in groups for m in g.get_measurements()
                         if m.name.meaning == "Volume")
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    truth = sorted(float((expected == n).sum()) * voxel_mm3 for n in (1, 2, 3))
    assert np.allclose(volumes_mm3, truth, rtol=1e-3)


def test_export_errors_and_reference_files(dicom_case, tmp_path):
    root, files, _, _ = dicom_case
    scene, nodes, _ = _edited_result(dicom_case)
    with pytest.raises(InputError, match="missing"):  # a slice removed from the series
        dicom_export.export_segmentation_dicom(nodes.segmentation, files[:3] + files[4:], tmp_path / "o")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    volume = nodes.input_volume
    with pytest.raises(ValueError, match="not loaded from DICOM"):
        dicom_export.reference_files(volume, {}.get)
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    volume.SetAttribute(dicom_export.ATTR_INSTANCE_UIDS, " ".join(uids))
    database = {u: str(f) for u, f in zip(uids, files)}
    assert dicom_export.reference_files(volume, database.get) == [str(f) for f in files]
    with pytest.raises(ValueError, match="1 of its DICOM files"):
        dicom_export.reference_files(volume, {**database, uids[2]: ""}.get)
    out = dicom_export.export_segmentation_dicom(nodes.segmentation, dicom_export.reference_files(
        volume, database.get), tmp_path / "o", ("seg",))
    assert list(out.paths) == ["dicom_seg"]
    with pytest.raises(Exception, match="exists"):  # never replaced without overwrite
        dicom_export.export_segmentation_dicom(nodes.segmentation, root / "series", tmp_path / "o", ("seg",))


# ---------------------------------------------------------------- longitudinal comparison

# baseline lesions (centre LPS mm, radius mm); the follow-up: 1 grew, 2 unchanged, 3 gone, one new
BASE_LESIONS = [((8.0, -6.0, 10.0), 7.0, 0.0), ((-14.0, 10.0, -4.0), 5.0, 0.0), ((10.0, 14.0, -12.0), 4.5, 0.0)]
NEW_LESION = ((-10.0, -14.0, 12.0), 4.5, 0.0)


def _moved():
    """Baseline -> follow-up LPS transform (as registration returns it): 6 degrees, 5 mm."""
    euler = sitk.Euler3DTransform()
    euler.SetRotation(*np.radians([4.0, -3.0, 6.0]))
    euler.SetTranslation((4.0, -3.0, 2.5))
    return euler


def _series():
    """(baseline image, labels), (follow-up image, labels): a smooth textured head, 2 mm voxels;
    the follow-up is the baseline moved by :func:`_moved`, on a grid with another origin."""
    rng = np.random.default_rng(3)
    grid = sitk.Image([48, 48, 40], sitk.sitkFloat32)
    grid.SetSpacing((2.0, 2.0, 2.0))
    grid.SetOrigin((-47.0, -47.0, -39.0))
    texture = sitk.GetImageFromArray(rng.normal(0, 1, (40, 48, 48)).astype(np.float32))
    texture.CopyInformation(grid)
    texture = sitk.SmoothingRecursiveGaussian(texture, 6.0)
    head = lesion_labels(grid, [((0.0, 0.0, 0.0), 40.0, 0.0)])
    anatomy = sitk.Cast(head, sitk.sitkFloat32) * 100.0 + texture * 400.0
    moved = _moved()
    fu_grid = sitk.Image(grid)
    fu_grid.SetOrigin((-45.0, -49.0, -36.0))
    fu_lesions = [(moved.TransformPoint(c), r * s, i) for (c, r, i), s in zip(BASE_LESIONS[:2], (1.3, 1.0))]
    fu_lesions.append((moved.TransformPoint(NEW_LESION[0]), NEW_LESION[1], 0.0))
    out = []
    for labels_grid, lesion_list, image in (
            (grid, BASE_LESIONS, anatomy),
            (fu_grid, fu_lesions, sitk.Resample(anatomy, fu_grid, moved.GetInverse(), sitk.sitkLinear, 0.0))):
        labels = lesion_labels(labels_grid, lesion_list)
        out.append((sitk.Cast(image + sitk.Cast(labels > 0, sitk.sitkFloat32) * 300.0, sitk.sitkFloat32), labels))
    return out


def _world_centroid(segmentation, volume, segment_id, labels):
    """World RAS centroid (mm) of a segment: its voxels (from the scene's label map) through
    the segmentation's parent transforms."""
    arr, _, ids = mrml.segments_label_map(segmentation, volume)
    kji = np.argwhere(arr == ids.index(segment_id) + 1).astype(float)
    _, ijk_to_ras = volumes.array_and_matrix(labels)
    local = (np.c_[kji[:, ::-1], np.ones(len(kji))] @ ijk_to_ras[:3].T).mean(axis=0)
    transform_node = segmentation.GetParentTransformNode()
    if transform_node is None:
        return local
    to_world = vtk.vtkGeneralTransform()
    transform_node.GetTransformToWorld(to_world)
    return np.array(to_world.TransformPoint(local))


def test_comparison_loaded_with_shared_tracks_and_overlay():
    (img0, lab0), (img1, lab1) = _series()
    result = compare_timepoints([TimePoint("baseline", img0, lab0), TimePoint("month 3", img1, lab1)],
                                registrations=[None, Registration(_moved())])
    scene = new_scene()
    before = mrml.node_counts(scene)
    nodes = scene_longitudinal.import_comparison(scene, result, [img0, img1])
    seg0, seg1 = nodes.segmentations
    ids = [[s.GetNthSegmentID(i) for i in range(s.GetNumberOfSegments())]
           for s in (seg0.GetSegmentation(), seg1.GetSegmentation())]
    assert ids == [["Lesion_1", "Lesion_2", "Lesion_3"], ["Lesion_1", "Lesion_2", "Lesion_4"]]
    for segment_id in ("Lesion_1", "Lesion_2"):  # matched: same name and colour on both scans
        a, b = seg0.GetSegmentation().GetSegment(segment_id), seg1.GetSegmentation().GetSegment(segment_id)
        assert a.GetName() == b.GetName() == segment_id.replace("_", " ")
        assert a.GetColor() == b.GetColor()
    assert seg0.GetSegmentation().GetSegment("Lesion_1").GetColor() != \
        seg0.GetSegmentation().GetSegment("Lesion_2").GetColor()
    # the follow-up stays on its own grid (voxel-exact) under the registration transform
    labels1, _, _ = mrml.segments_label_map(seg1, nodes.volumes[1])
    assert np.array_equal(labels1 > 0, sitk.GetArrayViewFromImage(lab1) > 0)
    assert nodes.transforms[0] is None and seg1.GetParentTransformNode() is nodes.transforms[1]
    assert nodes.volumes[1].GetParentTransformNode() is nodes.transforms[1]
    # ... so the unchanged lesion overlays its baseline self in world coordinates
    c0 = _world_centroid(seg0, nodes.volumes[0], "Lesion_2", lab0)
    c1 = _world_centroid(seg1, nodes.volumes[1], "Lesion_2", lab1)
    assert np.linalg.norm(c0 - c1) < 0.5, (c0, c1)
    table = nodes.table
    assert table.GetNumberOfRows() == 4 * 2
    status = table.GetTable().GetColumnByName("status")
    assert status.IsA("vtkStringArray")
    rows = [(table.GetCellText(r, table.GetColumnIndex("track_id")), status.GetValue(r))
            for r in range(table.GetNumberOfRows())]
    assert ("3", "absent") in rows and ("4", "new") in rows and ("4", "not-yet-seen") in rows
    volume_column = table.GetTable().GetColumnByName("volume_mm3")
    assert volume_column.IsA("vtkDoubleArray") and table.GetColumnUnitLabel("volume_mm3") == "mm3"
    assert np.isnan(volume_column.GetValue(rows.index(("3", "absent"))))
    rano = nodes.rano_table
    assert rano.GetNumberOfRows() == 1 and rano.GetColumnIndex("radiographic_response") >= 0
    assert rano.GetCellText(0, rano.GetColumnIndex("radiographic_response")) == result.rano.timepoints[0].response
    assert rano.GetCellText(0, rano.GetColumnIndex("response_in_words")) == RESPONSE_WORDS[
        result.rano.timepoints[0].response]
    assert rano.GetAttribute("BrainMetSeg.Note") == NOT_FROM_IMAGES  # steroids, clinical status
    # the plain-data round trip the folder loader relies on
    doc = json.loads(json.dumps(result.to_dict(), default=float))
    again = LongitudinalResult.from_dict(doc, result.track_maps)
    assert again.to_dict() == doc and again.table_rows() == result.table_rows()
    assert again.rano_rows() == result.rano_rows()
    points = np.array([[0.0, 0.0, 0.0], [30.0, -20.0, 10.0]])
    assert np.allclose([again.registrations[1].transform.TransformPoint(tuple(p)) for p in points],
                       [_moved().TransformPoint(tuple(p)) for p in points], atol=0.01)
    # a track map off its scan's grid: error, nothing left behind
    bad = sitk.Image(lab1)
    bad.SetOrigin((0.0, 0.0, 0.0))
    result.track_maps[1] = bad
    scene2 = new_scene()
    with pytest.raises(ValueError, match="month 3"):
        scene_longitudinal.import_comparison(scene2, result, [img0, img1])
    assert mrml.node_counts(scene2) == before


def test_compare_output_folder_loaded(tmp_path):
    """The folder ``brainmetseg compare`` writes (registration estimated by the library)."""
    (img0, lab0), (img1, lab1) = _series()
    for name, image in (("base", img0), ("base_labels", lab0), ("fu", img1), ("fu_labels", lab1)):
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
    code = cli_main(["compare", str(tmp_path / "base.nii.gz"), str(tmp_path / "fu.nii.gz"), "--labels",
                     str(tmp_path / "base_labels.nii.gz"), str(tmp_path / "fu_labels.nii.gz"),
                     "-o", str(tmp_path / "cmp"), "--quiet"])
    assert code == 0
    scene = new_scene()
    nodes = scene_longitudinal.load_comparison_folder(scene, tmp_path / "cmp")
    assert [v.GetName() for v in nodes.volumes] == ["base", "fu"]
    seg1 = nodes.segmentations[1].GetSegmentation()
    assert [seg1.GetNthSegmentID(i) for i in range(seg1.GetNumberOfSegments())] == \
        ["Lesion_1", "Lesion_2", "Lesion_4"]
    c0 = _world_centroid(nodes.segmentations[0], nodes.volumes[0], "Lesion_2", lab0)
    c1 = _world_centroid(nodes.segmentations[1], nodes.volumes[1], "Lesion_2", lab1)
    assert np.linalg.norm(c0 - c1) < 1.5, (c0, c1)  # estimated registration, 2 mm voxels
    assert nodes.table.GetNumberOfRows() == 8 and nodes.rano_table.GetNumberOfRows() == 1
    # the same columns as the CSV the command wrote
    header = (tmp_path / "cmp" / "longitudinal.csv").read_text().splitlines()[0].split(",")
    assert [nodes.table.GetColumnName(c) for c in range(nodes.table.GetNumberOfColumns())] == header


def _add_layer_segment(segmentation, mask_kji, ijk_to_ras, segment_id):
    """A segment with its own labelmap (its own layer, as painted with overlap allowed)."""
    segment = slicer.vtkSegment()
    segment.SetName(segment_id)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName(),
                              volumes.oriented_image(mask_kji.astype(np.uint8), ijk_to_ras))
    segment.SetLabelValue(1)
    assert segmentation.GetSegmentation().AddSegment(segment, segment_id)


def test_segments_in_other_layers_exported_and_overlaps_refused(dicom_case, tmp_path):
    root, files, _, labels = dicom_case
    scene, nodes, expected = _edited_result(dicom_case)
    _, ijk_to_ras = volumes.array_and_matrix(labels)
    corner = np.zeros(expected.shape, bool)
    corner[:3, :3, :3] = True  # away from every lesion
    assert not np.any(expected[corner])
    _add_layer_segment(nodes.segmentation, corner, ijk_to_ras, "Added")
    assert nodes.segmentation.GetSegmentation().GetNumberOfLayers() == 2
    out = dicom_export.export_segmentation_dicom(nodes.segmentation, root / "series", tmp_path / "a", ("seg",))
    assert out.segment_numbers["Added"] == 4
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    pixels = hd.seg.segread(out.paths["dicom_seg"]).get_pixels_by_source_instance(
        uids, combine_segments=True, skip_overlap_checks=True)
    assert np.array_equal(pixels, np.where(corner, 4, expected))
    # a segment overlapping a lesion: refused (a label map would give the voxels to one of them)
    _add_layer_segment(nodes.segmentation, expected == 2, ijk_to_ras, "Overlapping")
    with pytest.raises(ValueError, match="overlap"):
        dicom_export.export_segmentation_dicom(nodes.segmentation, root / "series", tmp_path / "b", ("seg",))
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
