"""Phantoms written as DICOM MR series (``brainmetseg synth --dicom``,
BrainMetSegLib.synth.dicom_writer): read back, the series is the NIfTI image (size, spacing,
origin, orientation, values); identity: one patient per case, one study per scan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from BrainMetSegLib.cli import main as cli_main
from BrainMetSegLib.dicom_series import read_dicom_series
from BrainMetSegLib.errors import OutputError
from BrainMetSegLib.synth import SynthConfig, write_dataset
from BrainMetSegLib.synth.dicom_writer import phantom_identity, write_dicom_series
from dicom_phantoms import GEOMETRIES, phantom_image

SMALL = dict(anatomy="mni152", spacing_mm=3.0, field_of_view="brain")


def assert_same_image(dicom: sitk.Image, nifti: sitk.Image) -> None:
    """Same grid and voxels; origin to 1e-5 mm (the NIfTI header stores float32)."""
    assert dicom.GetSize() == nifti.GetSize()
    assert np.allclose(dicom.GetSpacing(), nifti.GetSpacing(), atol=1e-6)
    assert np.allclose(dicom.GetDirection(), nifti.GetDirection(), atol=1e-6)
    assert np.allclose(dicom.GetOrigin(), nifti.GetOrigin(), atol=1e-5)
    assert dicom.GetPixelID() == nifti.GetPixelID()
    assert np.array_equal(sitk.GetArrayFromImage(dicom), sitk.GetArrayFromImage(nifti))


def read_series(folder: Path) -> sitk.Image:
    """The pipeline's DICOM reader (every file checked; no warning expected)."""
    warnings: list[str] = []
    image = read_dicom_series(folder, warnings)
    assert warnings == []
    return image


def first_header(folder: Path) -> pydicom.Dataset:
    return pydicom.dcmread(sorted(folder.glob("IM*.dcm"))[0], stop_before_pixels=True)


def test_synth_dicom_series_read_back_as_the_nifti(tmp_path: Path):
    out = tmp_path / "d"
    write_dataset(out, 1, seed=3, config=SynthConfig(**SMALL, n_lesions=2), followups=1, dicom=True)
    base = read_series(out / "dicom/synth_000")
    assert_same_image(base, sitk.ReadImage(str(out / "imagesTr/synth_000_0000.nii.gz")))
    assert_same_image(read_series(out / "dicom/synth_000_fu1"),
                      sitk.ReadImage(str(out / "followups/synth_000_fu1_0000.nii.gz")))
    assert len(list((out / "dicom/synth_000").glob("IM*.dcm"))) == base.GetDepth()
    b, f = first_header(out / "dicom/synth_000"), first_header(out / "dicom/synth_000_fu1")
    assert b.Modality == "MR" and b.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert b.PatientID == f.PatientID and str(b.PatientName) == "Synthetic^synth_000"
    assert b.PatientID.startswith("synth_000-")
    assert b.StudyInstanceUID != f.StudyInstanceUID and b.SeriesInstanceUID != f.SeriesInstanceUID
    assert b.FrameOfReferenceUID != f.FrameOfReferenceUID  # the head moved: another scanner session
    assert (b.StudyDate, f.StudyDate) == ("20200101", "20200325")
    desc = json.loads((out / "dataset.json").read_text())
    assert "dicom/<case>" in desc["synthetic"]["dicom_layout"]
    # An existing series folder is not replaced without overwrite.
    with pytest.raises(OutputError, match="synth_000.* already exists"):
        write_dataset(out, 1, seed=3, config=SynthConfig(**SMALL, n_lesions=2), dicom=True)


def test_phantom_identity_follows_the_case_and_its_options():
    prov = {"generator_version": "x", "dataset_seed": 1, "case_seed": 11, "options": {"a": 1}}
    a, again = phantom_identity("synth_000", prov), phantom_identity("synth_000", dict(prov))
    assert a == again  # written again: the same UIDs
    other_seed = phantom_identity("synth_000", {**prov, "dataset_seed": 2, "case_seed": 12})
    assert other_seed.patient_id != a.patient_id and other_seed.study_uid != a.study_uid
    fu = phantom_identity("synth_000", prov, followup=2)
    assert fu.patient_id == a.patient_id and fu.study_uid != a.study_uid and fu.study_date == "20200617"
    for uid in (a.study_uid, a.series_uid, a.frame_uid):
        assert uid.startswith("2.25.") and len(uid) <= 64 and uid.replace(".", "").isdigit()


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_series_of_each_geometry_read_back(tmp_path: Path, geometry: str):
    image = phantom_image(geometry, size_xyz=(12, 14, 9))
    folder = write_dicom_series(image, tmp_path / "s", phantom_identity("p", None))
    assert_same_image(read_series(folder), image)


def test_left_handed_stack_written_reversed_at_the_same_positions(tmp_path: Path):
    image = phantom_image("axial", size_xyz=(12, 14, 9))
    image.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))  # slices run foot-wards: x cross y is -z
    back = read_series(write_dicom_series(image, tmp_path / "s", phantom_identity("p", None)))
    assert np.allclose(back.GetDirection(), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert np.allclose(back.GetOrigin(), image.TransformIndexToPhysicalPoint((0, 0, 8)), atol=1e-5)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image)[::-1])


def test_write_dicom_series_refuses_and_replaces(tmp_path: Path):
    image = phantom_image("axial", size_xyz=(8, 8, 4))
    identity = phantom_identity("p", None)
    folder = write_dicom_series(image, tmp_path / "s", identity)
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        write_dicom_series(image, folder, identity)
    write_dicom_series(image[:, :, :3], folder, identity, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["IM0001.dcm", "IM0002.dcm", "IM0003.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folder left
    again = write_dicom_series(image[:, :, :3], tmp_path / "again", identity)
    assert [f.read_bytes() for f in sorted(again.iterdir())] == [f.read_bytes() for f in sorted(folder.iterdir())]
    with pytest.raises(ValueError, match="integer image"):
        write_dicom_series(sitk.Cast(image, sitk.sitkFloat32), tmp_path / "f", identity)
    assert not (tmp_path / "f").exists()


def test_synth_help_names_dicom(capsys):
    with pytest.raises(SystemExit):
        cli_main(["synth", "-h"])
    assert "--dicom" in capsys.readouterr().out
