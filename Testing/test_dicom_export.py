"""DICOM SEG, SR and RTSTRUCT export, checked by tools the project did not write.

- dciodvfy (Debian dicom3tools) validates every object against the DICOM IODs;
- dcmqi (PyPI wheel with its binaries; what Slicer's QuantitativeReporting uses):
  segimage2itkimage reads the SEG back voxel-exactly, tid1500reader reads every SR value;
- highdicom reads the SEG and the SR back;
- the SEG is also read by plain pydicom (frames placed by their Image Position (Patient)
  on SimpleITK's grid of the source series): voxel-exact against the label map;
- RTSTRUCT contours are rasterised by skimage.draw.polygon (even-odd) on the referenced
  slices found from the contour's referenced SOP instance: Dice per lesion and plane checks.
Phantoms: axial, oblique and sagittal series written by SimpleITK (Testing/dicom_phantoms.py).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from skimage.draw import polygon

from BrainMetSegLib.cli import main
from BrainMetSegLib.dicom import (
    ModelIdentity,
    export_dicom,
    operating_parameters,
    read_reference_series,
)
from BrainMetSegLib.errors import InputError
from BrainMetSegLib.images import read_image
from BrainMetSegLib.lesion_vocabulary import segment_color
from BrainMetSegLib.lesions import lesion_table
from BrainMetSegLib.operating_point import OperatingPoint
from dicom_phantoms import LESIONS, PATIENT, lesion_labels, phantom_image, write_series

MODEL = ModelIdentity("phantom-model", "9.8.7", "ab" * 32, {"threshold_used": "0.5"})
# The outside clients are required, not optional: CI installs dciodvfy from Debian
# (.ci/apt-packages.txt, by .ci/install-extras) and dcmqi from PyPI (the `test` extra).
INSTALL_HINT = {"dciodvfy": "Debian dicom3tools: bash .ci/install-extras",
                "segimage2itkimage": "PyPI dcmqi: pip install -e '.[test]'",
                "tid1500reader": "PyPI dcmqi: pip install -e '.[test]'"}


# dcmqi 1.5.7 wheels exist for these (pyproject's marker); elsewhere its tests cannot run.
DCMQI_PLATFORM = (platform.system(), platform.machine()) in {("Linux", "x86_64"), ("Windows", "AMD64")}


def client(name: str) -> str:
    """The outside tool's path: a failure when it is missing (never a skip), except dcmqi on a
    platform it has no wheel for."""
    path = shutil.which(name)
    if path is None and name != "dciodvfy" and not DCMQI_PLATFORM:
        pytest.skip(f"no dcmqi wheel for {platform.system()} {platform.machine()}")
    assert path, f"{name} not found ({INSTALL_HINT[name]})"
    return path


def dciodvfy(path) -> str:
    """dciodvfy's report (it writes to stderr); the lines starting 'Error' are failures."""
    run = subprocess.run([client("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    return run.stdout + run.stderr


@pytest.fixture(scope="module", params=["axial", "oblique", "sagittal"])
def exported(request, tmp_path_factory):
    """A phantom series, its label map and table, and the three exported objects."""
    root = tmp_path_factory.mktemp(f"dicom_{request.param}")
    image = phantom_image(request.param)
    files = write_series(image, root / "series")
    labels = lesion_labels(read_image(root / "series"), LESIONS)
    table = lesion_table(labels)
    paths = export_dicom(labels, table, root / "series", root / "out", ("seg", "sr", "rtstruct"), MODEL)
    return {"geometry": request.param, "files": files, "labels": labels, "table": table,
            "paths": paths, "series": root / "series"}


def test_dciodvfy_reports_no_errors(exported):
    for key, path in exported["paths"].items():
        report = dciodvfy(path)
        problems = [line for line in report.splitlines() if line.startswith(("Error", "Warning"))]
        assert not problems, f"{key} ({exported['geometry']}):\n{report}"
        expected = {"dicom_seg": "Segmentation", "dicom_sr": "Comprehensive3DSR",
                    "dicom_rtstruct": "RTStructureSet"}[key]
        assert expected in report


def test_identity_copied_and_uids_new(exported):
    source = pydicom.dcmread(exported["files"][0], stop_before_pixels=True)
    for path in exported["paths"].values():
        ds = pydicom.dcmread(path)
        assert ds.PatientName == PATIENT["0010|0010"] and ds.PatientID == PATIENT["0010|0020"]
        assert ds.PatientBirthDate == source.PatientBirthDate and ds.AccessionNumber == "ACC016"
        # Patient Study module: highdicom copies it into SEG and SR; the RTSTRUCT carries it too
        assert (ds.PatientWeight, ds.PatientSize) == (source.PatientWeight, source.PatientSize) == (72.5, 1.78)
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.SOPInstanceUID not in {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
                                         for f in exported["files"][:3]}
    uids = {pydicom.dcmread(p).SeriesInstanceUID for p in exported["paths"].values()}
    assert len(uids) == 3


def test_non_ascii_identity_and_long_model_name(tmp_path):
    """A UTF-8 patient name (Specific Character Set ISO_IR 192) reads back the same; an
    80-character model name is cut to DICOM's 64-character LO values, still valid."""
    image = phantom_image("axial", size_xyz=(12, 14, 8))
    for f in write_series(image, tmp_path / "s"):
        ds = pydicom.dcmread(f)
        ds.SpecificCharacterSet, ds.PatientName = "ISO_IR 192", "Müller^Jörg"
        ds.save_as(f)
    labels = lesion_labels(image, [((3.0, -7.5, 12.0), 3.0, 0.0)])
    model = ModelIdentity("m" * 80, "1.0")
    out = export_dicom(labels, lesion_table(labels), tmp_path / "s", tmp_path / "o", ("seg", "sr", "rtstruct"),
                       model)
    for path in out.values():
        ds = pydicom.dcmread(path)
        assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == "Müller^Jörg"
        assert ds.get("ManufacturerModelName", "m" * 64) == "m" * 64  # SR: none
        assert "Error" not in dciodvfy(path), dciodvfy(path)


def test_operating_point_recorded_with_the_outline():
    """The objects' algorithm parameters are the run's operating point, outline included; a
    run made before outlines existed records its detection threshold as the outline."""
    new = {"threshold_used": 0.9, "min_volume_mm3_used": 10.0, "outline_threshold_used": 0.4, "device": "cpu"}
    assert ModelIdentity.from_provenance({"model": {"name": "m", "version": "1"}, "settings": new}).parameters == {
        "threshold_used": "0.9", "min_volume_mm3_used": "10.0", "outline_threshold_used": "0.4"}
    assert operating_parameters({"threshold_used": 0.8, "min_volume_mm3_used": 5}) == {
        "threshold_used": "0.8", "min_volume_mm3_used": "5.0", "outline_threshold_used": "0.8"}
    assert operating_parameters(OperatingPoint(0.7, 0.0, 0.3))["outline_threshold_used"] == "0.3"
    assert operating_parameters({}) == operating_parameters(None) == {}


def test_seg_read_back_by_highdicom(exported):
    seg = hd.seg.segread(exported["paths"]["dicom_seg"])
    assert seg.number_of_segments == len(exported["table"]) == len(LESIONS)
    source = pydicom.dcmread(exported["files"][0], stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    for n in range(1, len(LESIONS) + 1):
        desc = seg.get_segment_description(n)
        assert desc.segment_label == f"Metastasis {n}"
        assert (desc.segmented_property_type.value, desc.segmented_property_type.scheme_designator) == (
            "14799000", "SCT")
        assert desc.segmented_property_category.value == "49755003"
        algo = desc.SegmentationAlgorithmIdentificationSequence[0]
        assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("phantom-model", "9.8.7")
    # highdicom's own volume reconstruction agrees with the label map, voxel by voxel
    sop_uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in exported["files"]]
    pixels = seg.get_pixels_by_source_instance(sop_uids, combine_segments=True,
                                               skip_overlap_checks=True)
    truth = _labels_in_file_order(exported)
    assert np.array_equal(pixels, truth)


def _labels_in_file_order(exported) -> np.ndarray:
    """The label map as (file, row, column): files are written along the image's z axis."""
    return sitk.GetArrayFromImage(exported["labels"])


def test_seg_read_back_independently_voxel_exact(exported):
    """pydicom only: unpack the bit frames, place each by its Image Position (Patient) on
    SimpleITK's grid of the source series, check each frame's source-image reference."""
    ds = pydicom.dcmread(exported["paths"]["dicom_seg"])
    grid = read_image(exported["series"])
    uid_at_k = {k: pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
                for k, f in enumerate(exported["files"])}
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    d = np.reshape(grid.GetDirection(), (3, 3))
    assert np.allclose(iop, np.r_[d[:, 0], d[:, 1]], atol=1e-5)
    volume = np.zeros(sitk.GetArrayViewFromImage(grid).shape, np.uint16)
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence):
        ipp = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        index = np.asarray(grid.TransformPhysicalPointToContinuousIndex(ipp))
        assert np.allclose(index, np.round(index), atol=1e-3) and np.allclose(index[:2], 0, atol=1e-3)
        k = int(round(index[2]))
        # one-segment SEGs keep the segment identification in the shared groups
        ident = item.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        segment = ident[0].ReferencedSegmentNumber
        assert not np.any(volume[k][frame > 0]), "segments overlap"
        volume[k][frame > 0] = segment
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert source.ReferencedSOPInstanceUID == uid_at_k[k]
    assert np.array_equal(volume, sitk.GetArrayFromImage(exported["labels"]))


def test_sr_read_back_by_highdicom(exported):
    sr = hd.sr.srread(exported["paths"]["dicom_sr"])
    seg = pydicom.dcmread(exported["paths"]["dicom_seg"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(exported["table"])
    for group, row in zip(groups, exported["table"]):
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert list(ref.referenced_segment_numbers) == [row["lesion_id"]]
        assert group.tracking_identifier == f"Metastasis {row['lesion_id']}"
        values = {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
        assert values["Volume"] == (pytest.approx(row["volume_mm3"]), "mm3")
        assert values["Maximum 3D Diameter of a Mesh"][0] == pytest.approx(row["longest_diameter_mm"])
        assert values["Long axis"][0] == pytest.approx(row["axial_longest_diameter_mm"])
        assert values["Perpendicular Axis"][0] == pytest.approx(row["axial_perpendicular_diameter_mm"])
        assert group.finding_type.value == "14799000"


def run_client(*args, timeout: int = 120) -> str:
    """Run one of dcmqi's tools; its output (warnings "W:" included) is returned."""
    run = subprocess.run([client(args[0]), *map(str, args[1:])], capture_output=True, text=True,
                         timeout=timeout)
    assert run.returncode == 0, f"{args[0]} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    return run.stdout + run.stderr


def test_seg_read_back_by_dcmqi_voxel_exact(exported, tmp_path):
    """dcmqi's segimage2itkimage (Slicer QuantitativeReporting's reader) gives the label map
    back voxel for voxel, segment labels and colours as written, and warns about nothing
    (it warned about the missing Content Creator's Name before)."""
    said = run_client("segimage2itkimage", "--inputDICOM", exported["paths"]["dicom_seg"],
                      "--outputDirectory", tmp_path, "--outputType", "nrrd", "--mergeSegments")
    assert not [line for line in said.splitlines() if line.startswith(("W:", "E:"))], said
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["ContentCreatorName"] == ""  # present (Type 2), empty: no person made it
    truth = sitk.GetArrayFromImage(exported["labels"])
    grid = exported["labels"]
    volume = np.zeros_like(truth)
    for number, segments in enumerate(meta["segmentAttributes"], start=1):
        image = sitk.ReadImage(str(tmp_path / f"{number}.nrrd"))
        # dcmqi crops to the slices holding segments: the same lattice, shifted by whole voxels
        assert np.allclose(image.GetDirection(), grid.GetDirection(), atol=1e-5)
        assert np.allclose(image.GetSpacing(), grid.GetSpacing(), atol=1e-5)
        offset = np.asarray(grid.TransformPhysicalPointToContinuousIndex(image.GetOrigin()))
        assert np.allclose(offset, np.round(offset), atol=1e-3), offset
        i, j, k = (int(v) for v in np.round(offset))
        values = sitk.GetArrayFromImage(image)
        to_lesion = {s["labelID"]: int(s["SegmentLabel"].removeprefix("Metastasis ")) for s in segments}
        for s in segments:
            assert s["recommendedDisplayRGBValue"] == [round(255 * c) for c in segment_color(to_lesion[s["labelID"]])]
        region = volume[k:k + values.shape[0], j:j + values.shape[1], i:i + values.shape[2]]
        assert region.shape == values.shape
        for label, lesion in to_lesion.items():
            region[values == label] = lesion
    assert np.array_equal(volume, truth)


def test_sr_read_back_by_dcmqi(exported, tmp_path):
    """dcmqi's tid1500reader: one measurement group per lesion, referencing its segment, every
    value equal to the lesion table's within the text rounding, units as written."""
    run_client("tid1500reader", "--inputDICOM", exported["paths"]["dicom_sr"],
               "--outputMetadata", tmp_path / "sr.json")
    report = json.loads((tmp_path / "sr.json").read_text())
    assert report["CompletionFlag"] == "COMPLETE" and report["VerificationFlag"] == "UNVERIFIED"
    groups = report["Measurements"]
    assert len(groups) == len(exported["table"])
    columns = {"Volume": ("volume_mm3", "mm3"),
               "Maximum 3D Diameter of a Mesh": ("longest_diameter_mm", "mm"),
               "Long axis": ("axial_longest_diameter_mm", "mm"),
               "Perpendicular Axis": ("axial_perpendicular_diameter_mm", "mm")}
    for group, row in zip(groups, exported["table"]):
        assert group["ReferencedSegment"] == row["lesion_id"]
        assert group["TrackingIdentifier"] == f"Metastasis {row['lesion_id']}"
        assert group["Finding"]["CodeValue"] == "14799000" and group["FindingSite"]["CodeValue"] == "12738006"
        got = {m["quantity"]["CodeMeaning"]: m for m in group["measurementItems"]}
        assert set(got) == set(columns)
        for meaning, (column, unit) in columns.items():
            assert got[meaning]["units"]["CodeValue"] == unit
            assert float(got[meaning]["value"]) == pytest.approx(row[column], rel=1e-9, abs=1e-9)


def test_content_creator_and_rt_attributes(exported):
    """SEG: Content Creator's Name present (Type 2 in its Content Identification macro), empty.
    SR and RTSTRUCT have no such attribute in their IODs (dciodvfy would flag it as not in
    the IOD): their author is the SR's device observer / the RTSTRUCT's Operators' Name.
    RTSTRUCT: every ROI interpreted as GTV, interpreter empty (Type 2), unapproved."""
    seg = pydicom.dcmread(exported["paths"]["dicom_seg"], stop_before_pixels=True)
    assert "ContentCreatorName" in seg and seg.ContentCreatorName == ""
    for key in ("dicom_sr", "dicom_rtstruct"):
        assert "ContentCreatorName" not in pydicom.dcmread(exported["paths"][key])
    rt = pydicom.dcmread(exported["paths"]["dicom_rtstruct"])
    assert [o.RTROIInterpretedType for o in rt.RTROIObservationsSequence] == ["GTV"] * len(LESIONS)
    assert all(o.ROIInterpreter == "" for o in rt.RTROIObservationsSequence)
    assert rt.ApprovalStatus == "UNAPPROVED" and "OperatorsName" in rt


def rasterise_rtstruct(path, series_files, grid: sitk.Image) -> dict[int, np.ndarray]:
    """ROI number -> mask on ``grid`` (k, j, i), by skimage.draw.polygon with the even-odd
    rule, each contour on the slice of its referenced SOP instance; contours off that
    slice's plane fail the test."""
    slices = {}
    for f in series_files:
        s = pydicom.dcmread(f, stop_before_pixels=True)
        slices[s.SOPInstanceUID] = s
    ds = pydicom.dcmread(path)
    shape = sitk.GetArrayViewFromImage(grid).shape
    masks = {}
    for roi in ds.ROIContourSequence:
        mask = np.zeros(shape, bool)
        for contour in roi.ContourSequence:
            assert contour.ContourGeometricType == "CLOSED_PLANAR"
            s = slices[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            ipp = np.asarray(s.ImagePositionPatient, float)
            iop = np.asarray(s.ImageOrientationPatient, float)
            row_dir, col_dir = iop[:3], iop[3:]
            dy, dx = (float(v) for v in s.PixelSpacing)
            pts = np.reshape(np.asarray(contour.ContourData, float), (-1, 3)) - ipp
            assert len(pts) == contour.NumberOfContourPoints
            assert np.abs(pts @ np.cross(row_dir, col_dir)).max() < 2e-3, "contour off its slice plane"
            cols, rows = pts @ row_dir / dx, pts @ col_dir / dy
            k = int(round(grid.TransformPhysicalPointToContinuousIndex(ipp.tolist())[2]))
            rr, cc = polygon(rows, cols, shape[1:])
            plane = np.zeros(shape[1:], bool)
            plane[rr, cc] = True
            mask[k] ^= plane
        masks[int(roi.ReferencedROINumber)] = mask
    return masks


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_rtstruct_round_trip(exported):
    ds = pydicom.dcmread(exported["paths"]["dicom_rtstruct"])
    names = [roi.ROIName for roi in ds.StructureSetROISequence]
    assert names == [f"Metastasis {n}" for n in range(1, len(LESIONS) + 1)]
    assert all(roi.ROIGenerationAlgorithm == "AUTOMATIC" for roi in ds.StructureSetROISequence)
    source = pydicom.dcmread(exported["files"][0], stop_before_pixels=True)
    assert ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID == source.FrameOfReferenceUID
    grid = read_image(exported["series"])
    labels = sitk.GetArrayFromImage(exported["labels"])
    masks = rasterise_rtstruct(exported["paths"]["dicom_rtstruct"], exported["files"], grid)
    for row in exported["table"]:
        truth = labels == row["lesion_id"]
        got = masks[row["lesion_id"]]
        assert set(np.flatnonzero(got.any(axis=(1, 2)))) == set(np.flatnonzero(truth.any(axis=(1, 2))))
        if row["longest_diameter_mm"] >= 5.0:
            assert dice(got, truth) >= 0.95, (exported["geometry"], row["lesion_id"], dice(got, truth))
        # contours half-way between pixel centres give the mask back exactly (all sizes)
        assert np.array_equal(got, truth), (exported["geometry"], row["lesion_id"], dice(got, truth))
    # the ring lesion (1) has holes on some slices: inner contours, subtracted by the even-odd rule
    ring = ds.ROIContourSequence[0].ContourSequence
    ring_slices = {c.ContourImageSequence[0].ReferencedSOPInstanceUID for c in ring}
    assert len(ring) > len(ring_slices)


def test_reference_errors_name_the_file(tmp_path):
    image = phantom_image("axial", size_xyz=(12, 14, 8))
    files = write_series(image, tmp_path / "s")
    labels = lesion_labels(image, [((3.0, -7.5, 12.0), 3.0, 0.0)])
    table = lesion_table(labels)
    with pytest.raises(InputError, match="not found"):
        read_reference_series(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not dicom")
    with pytest.raises(InputError, match="no DICOM image files"):
        read_reference_series(tmp_path / "empty")
    # geometry mismatch: a label map on a grid shifted by half a voxel
    shifted = sitk.Image(labels)
    shifted.SetOrigin(tuple(np.asarray(labels.GetOrigin()) + [0.45, 0.0, 0.0]))
    with pytest.raises(InputError, match="does not match the image geometry"):
        export_dicom(shifted, table, tmp_path / "s", tmp_path / "o", ("seg",), MODEL)
    coarse = sitk.Resample(labels, [6, 7, 4], sitk.Transform(), sitk.sitkNearestNeighbor,
                           labels.GetOrigin(), [s * 2 for s in labels.GetSpacing()], labels.GetDirection())
    with pytest.raises(InputError, match="does not match"):
        export_dicom(coarse, lesion_table(coarse), tmp_path / "s", tmp_path / "o", ("seg",), MODEL)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    # the series as a list of files (as Slicer's DICOM database gives it) reads the same
    assert read_reference_series(files[::-1]).files == read_reference_series(tmp_path / "s").files
    with pytest.raises(InputError, match="IM0099.dcm: DICOM reference file not found"):
        read_reference_series([*files, tmp_path / "s" / "IM0099.dcm"])
    # a missing slice in the middle
    files[3].unlink()
    with pytest.raises(InputError, match=r"1 slice\(s\) missing between IM0003.dcm and IM0005.dcm"):
        read_reference_series(tmp_path / "s")
    # a second series in the folder
    write_series(image[:, :, :2], tmp_path / "s", series_uid="1.2.826.0.1.3680043.8.498.16.9")
    with pytest.raises(InputError, match="2 DICOM series"):
        read_reference_series(tmp_path / "s")


def test_flipped_nifti_grid_maps_onto_the_series(tmp_path):
    """A label map on a flipped/permuted copy of the grid (as after DICOM->NIfTI) exports the
    same SEG voxels as one on the series' own grid."""
    image = phantom_image("oblique", size_xyz=(14, 16, 10))
    write_series(image, tmp_path / "s")
    labels = lesion_labels(image, [((3.0, -7.5, 12.0), 3.5, 0.0)])
    flipped = sitk.Flip(sitk.PermuteAxes(labels, [1, 0, 2]), [True, False, True])
    out = export_dicom(flipped, lesion_table(flipped), tmp_path / "s", tmp_path / "o", ("seg",), MODEL)
    seg = hd.seg.segread(out["dicom_seg"])
    files = sorted((tmp_path / "s").glob("*.dcm"))
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, skip_overlap_checks=True)
    assert np.array_equal(pixels, sitk.GetArrayFromImage(labels))


def test_seg_slice_spacing_is_the_step_when_the_source_states_another(tmp_path):
    """Converters write SpacingBetweenSlices 1 whatever the step (so did GDCM for 2D slices):
    the SEG's pixel measures carry the step between slice positions, not the stated value."""
    image = phantom_image("oblique", size_xyz=(14, 16, 10))  # 1.2 mm between slices
    for f in write_series(image, tmp_path / "s"):
        ds = pydicom.dcmread(f)
        assert float(ds.SpacingBetweenSlices) == pytest.approx(1.2)  # the writer's own value
        ds.SpacingBetweenSlices = "1"
        ds.save_as(f)
    labels = lesion_labels(image, [((3.0, -7.5, 12.0), 3.5, 0.0)])
    out = export_dicom(labels, lesion_table(labels), tmp_path / "s", tmp_path / "o", ("seg",), MODEL)
    seg = hd.seg.segread(out["dicom_seg"])
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SpacingBetweenSlices) == pytest.approx(1.2)
    assert float(measures.SliceThickness) == pytest.approx(1.2)


def test_no_lesion_writes_a_no_findings_sr_and_existing_files_are_kept(tmp_path):
    """No lesion: no SEG (it needs a segment) and no RTSTRUCT (a ROI), but an asked-for SR is
    written as a "no findings" report, read by highdicom, dcmqi and dciodvfy."""
    image = phantom_image("axial", size_xyz=(12, 14, 8))
    write_series(image, tmp_path / "s")
    empty = lesion_labels(image, [])
    assert export_dicom(empty, [], tmp_path / "s", tmp_path / "o", ("seg", "rtstruct"), MODEL) == {}
    out = export_dicom(empty, [], tmp_path / "s", tmp_path / "o", "all", MODEL)
    assert list(out) == ["dicom_sr"] and sorted(p.name for p in (tmp_path / "o").iterdir()) == ["lesions_sr.dcm"]
    report = dciodvfy(out["dicom_sr"])
    assert not [line for line in report.splitlines() if line.startswith(("Error", "Warning"))], report
    sr = hd.sr.srread(out["dicom_sr"])
    assert sr.content.get_volumetric_roi_measurement_groups() == []
    run_client("tid1500reader", "--inputDICOM", out["dicom_sr"], "--outputMetadata", tmp_path / "sr.json")
    (group,) = json.loads((tmp_path / "sr.json").read_text())["Measurements"]
    assert group["TrackingIdentifier"] == "No metastasis found" and group["measurementItems"] == []
    (evaluation,) = group["qualitativeEvaluations"]
    assert (evaluation["conceptCode"]["CodeValue"], evaluation["conceptValue"]["CodeMeaning"]) == (
        "14799000", "Absent")
    assert group["measurementAlgorithmIdentification"]["AlgorithmName"] == "phantom-model"
    # a table that disagrees with an empty label map is refused
    with pytest.raises(InputError, match="disagree"):
        export_dicom(empty, [{"lesion_id": 1}], tmp_path / "s", tmp_path / "o2", "all", MODEL)
    labels = lesion_labels(image, [((3.0, -7.5, 12.0), 3.0, 0.0)])
    (tmp_path / "o" / "lesions_seg.dcm").write_bytes(b"keep")
    with pytest.raises(Exception, match="--overwrite"):
        export_dicom(labels, lesion_table(labels), tmp_path / "s", tmp_path / "o", ("seg",), MODEL)
    assert (tmp_path / "o" / "lesions_seg.dcm").read_bytes() == b"keep"
    out = export_dicom(labels, lesion_table(labels), tmp_path / "s", tmp_path / "o", ("seg",), MODEL,
                       overwrite=True)
    assert pydicom.dcmread(out["dicom_seg"]).Modality == "SEG"
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["lesions_seg.dcm", "lesions_sr.dcm"]


def run_cli(*args, capsys):
    code = main(["segment", *map(str, args)])
    out, err = capsys.readouterr()
    return code, err


def test_cli_dicom_outputs(tiny_model, tmp_path, capsys):
    """segment --dicom all on a DICOM folder; and on a NIfTI with --dicom-reference."""
    image = phantom_image("oblique", size_xyz=(24, 28, 16))
    write_series(image, tmp_path / "s")
    common = ["--model", tiny_model.folder, "--brain-mask", "none", "--device", "cpu", "--quiet",
              "--threshold", "0.2", "--min-volume", "0"]
    code, err = run_cli(tmp_path / "s", "-o", tmp_path / "o", "--dicom", "all", *common, "--outline-threshold", "0.1",
                        capsys=capsys)
    assert code == 0, err
    labels = sitk.ReadImage(str(tmp_path / "o" / "lesion_labels.nii.gz"))
    n = int(sitk.GetArrayViewFromImage(labels).max())
    assert n >= 1, "the tiny model should find something at threshold 0.2"
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert {"lesions_seg.dcm", "lesions_sr.dcm", "lesions_rtstruct.dcm"} <= names
    seg = hd.seg.segread(tmp_path / "o" / "lesions_seg.dcm")
    assert seg.number_of_segments == n
    algorithm = seg.get_segment_description(1).SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "tiny-test"
    assert "outline_threshold_used=0.1" in str(algorithm.AlgorithmParameters), algorithm.AlgorithmParameters
    # no lesion: said, and only the no-findings SR written
    code, err = run_cli(tmp_path / "s", "-o", tmp_path / "o0", "--dicom", "all", *common[:-5],
                        "--threshold", "0.999", "--progress", "none", capsys=capsys)
    assert code == 0 and "no lesion: wrote the no-findings SR only" in err
    assert [p.name for p in (tmp_path / "o0").glob("*.dcm")] == ["lesions_sr.dcm"]
    # NIfTI input + --dicom-reference; a mismatched reference fails before inference
    nifti = tmp_path / "ce_t1.nii.gz"
    sitk.WriteImage(read_image(tmp_path / "s"), str(nifti))
    code, err = run_cli(nifti, "-o", tmp_path / "o2", "--dicom", "seg,rtstruct", "--dicom-reference",
                        tmp_path / "s", *common, capsys=capsys)
    assert code == 0, err
    assert {p.name for p in (tmp_path / "o2").iterdir()} >= {"lesions_seg.dcm", "lesions_rtstruct.dcm"}
    other = phantom_image("axial", size_xyz=(24, 28, 16))
    write_series(other, tmp_path / "axial")
    code, err = run_cli(nifti, "-o", tmp_path / "o3", "--dicom", "seg", "--dicom-reference",
                        tmp_path / "axial", *common, capsys=capsys)
    assert code == 2 and "does not match the image geometry" in err and str(tmp_path / "axial") in err
    assert not (tmp_path / "o3" / "lesion_labels.nii.gz").exists()
    code, err = run_cli(nifti, "-o", tmp_path / "o4", "--dicom", "seg", *common, capsys=capsys)
    assert code == 2 and "--dicom-reference" in err and str(nifti) in err
    code, err = run_cli(nifti, "-o", tmp_path / "o5", "--dicom", "sr", "--dicom-reference", tmp_path / "s",
                        *common, capsys=capsys)
    assert code == 2 and "needs seg" in err


def test_cli_batch_dicom_folders(tiny_model, tmp_path, capsys):
    """Batch of DICOM folders: each case gets its objects; an incomplete series fails only its case."""
    for name in ("good", "gap"):
        files = write_series(phantom_image("axial", size_xyz=(20, 24, 12)), tmp_path / name)
    files[5].unlink()
    code, err = run_cli(tmp_path / "good", tmp_path / "gap", "-o", tmp_path / "o", "--dicom", "seg,rtstruct",
                        "--model", tiny_model.folder, "--brain-mask", "none", "--device", "cpu",
                        "--threshold", "0.2", "--min-volume", "0", "--progress", "none", capsys=capsys)
    assert code == 1
    assert "case gap failed" in err and "1 slice(s) missing between IM0005.dcm and IM0007.dcm" in err
    assert {p.name for p in (tmp_path / "o" / "good").glob("*.dcm")} == {"lesions_seg.dcm",
                                                                       "lesions_rtstruct.dcm"}
    assert not list((tmp_path / "o" / "gap").glob("*.dcm"))
