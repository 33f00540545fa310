"""The viewer's DICOM side (issue 16): the objects of ``segment --dicom`` offered for download,
and a reviewed version exported to DICOM SEG / SR / RTSTRUCT into its own folder, read back by
highdicom equal to the corrected label map. Offscreen (no browser); a small axial phantom
series written by SimpleITK (Testing/dicom_phantoms.py).
"""

from __future__ import annotations

import hashlib
import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from BrainMetSegLib.dicom import ModelIdentity, export_dicom
from BrainMetSegLib.errors import OutputError
from BrainMetSegLib.images import read_image
from BrainMetSegLib.lesion_vocabulary import segment_id
from BrainMetSegLib.lesions import lesion_table
from BrainMetSegLib.outputs import write_result
from BrainMetSegLib.pipeline import Result
from BrainMetSegLib.viewer import render
from BrainMetSegLib.viewer.exchange import EXPORT_RECORD, dicom_files, reference_series
from BrainMetSegLib.viewer.result import ResultFolder
from BrainMetSegLib.viewer.session import ReviewError, ReviewSession
from dicom_phantoms import LESIONS, lesion_labels, phantom_image, write_series

MODEL = {"name": "phantom-model", "version": "9.8.7", "sha256": "ab" * 32}


@pytest.fixture(scope="module")
def dicom_result(tmp_path_factory):
    """A result folder made from a DICOM series, with the objects ``segment --dicom`` writes."""
    root = tmp_path_factory.mktemp("viewer_dicom")
    files = write_series(phantom_image("axial"), root / "series")
    image = read_image(root / "series")
    labels = lesion_labels(image, LESIONS)
    probability = sitk.Cast(labels > 0, sitk.sitkFloat32) * 0.9
    table = lesion_table(labels, probability)
    provenance = {"settings": {"threshold_used": 0.5, "min_volume_mm3_used": 0.0},
                  "inputs": {"t1ce": {"path": str(root / "series")}}, "model": MODEL}
    out = root / "result"
    write_result(Result("phantom", labels, probability, table, {"inference": 0.0}, provenance), out, ".nii.gz")
    export_dicom(labels, table, root / "series", out, ("seg", "sr", "rtstruct"),
                 ModelIdentity(MODEL["name"], MODEL["version"], MODEL["sha256"]))
    return out, files


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_segment_dicom_objects_are_offered_for_download(dicom_result, tmp_path):
    folder, _ = dicom_result
    assert [p.name for p in dicom_files(folder)] == ["lesions_seg.dcm", "lesions_sr.dcm", "lesions_rtstruct.dcm"]
    assert dicom_files(tmp_path) == []
    assert reference_series(ResultFolder.open(folder)) == folder.parent / "series"


def test_reviewed_version_exports_to_dicom_equal_to_the_corrected_labels(dicom_result):
    folder, files = dicom_result
    before = _digests(folder)
    session = ReviewSession(render.offscreen_app((200, 200)), ResultFolder.open(folder))
    session.load()
    with pytest.raises(ReviewError, match="Save first"):
        session.export_dicom()
    # The reviewer deletes lesion 2: ids 1, 3, 4 remain (a gap the SEG cannot have).
    session.segmentation_node.GetSegmentation().RemoveSegment(segment_id(2))
    version = session.save()
    corrected = sitk.GetArrayFromImage(sitk.ReadImage(str(version / "lesion_labels.nii.gz")))
    assert sorted(set(np.unique(corrected)) - {0}) == [1, 3, 4]

    paths = session.export_dicom()
    assert {p.parent for p in paths.values()} == {version}
    assert sorted(paths) == ["dicom_rtstruct", "dicom_seg", "dicom_sr"]
    record = json.loads((version / EXPORT_RECORD).read_text())
    assert record["segment_number_to_lesion_id"] == {"1": 1, "2": 3, "3": 4}

    seg = hd.seg.segread(paths["dicom_seg"])
    assert seg.number_of_segments == 3
    algo = seg.get_segment_description(1).SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == MODEL["name"]
    assert "review_001" in str(algo.AlgorithmParameters)
    assert "outline_threshold_used" in str(algo.AlgorithmParameters)  # run.json before outlines: = detection
    sop_uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    pixels = seg.get_pixels_by_source_instance(sop_uids, combine_segments=True, skip_overlap_checks=True)
    lut = np.zeros(5, np.uint16)
    lut[[1, 3, 4]] = [1, 2, 3]
    assert np.array_equal(pixels, lut[corrected])
    sr = hd.sr.srread(paths["dicom_sr"])
    assert sr.Modality == "SR"

    # Never over the originals: the result folder's files (including its DICOM objects) are unchanged.
    assert _digests(folder) == before
    with pytest.raises(OutputError, match="already exported"):
        session.export_dicom()


def test_export_refused_without_a_dicom_reference(tmp_path):
    from viewer_data import make_result_folder

    # (no scene needed: the export is refused before anything is drawn)
    session = ReviewSession(None, ResultFolder.open(make_result_folder(tmp_path)))
    with pytest.raises(ReviewError, match="not a DICOM series"):
        session.export_dicom()
