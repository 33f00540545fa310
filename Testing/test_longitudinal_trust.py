"""Follow-up comparisons that must not be trusted: refused or "not evaluable", with reasons.

Other patient (DICOM identity), other model or settings (run.json), a target outside the
follow-up's field of view (NE, never "resolved"), a change of voxel size (warned), --force with
a recorded reason, empty label maps (no lesion), the symmetric prior, front-end wording.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import dicom_phantoms
from BrainMetSegLib.cli import main as cli_main
from BrainMetSegLib.errors import InputError
from BrainMetSegLib.longitudinal import Registration, TimePoint, compare_timepoints
from BrainMetSegLib.longitudinal.consistency import SourceInfo, check_series, dicom_identity
from BrainMetSegLib.longitudinal.rano import NOT_EVALUABLE, PD_TO_CONFIRM


def _ball(shape, centre, r):
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= r * r


def _image(array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    return img


def _run(sha="a" * 64, **settings) -> dict:
    base = {"threshold_used": 0.95, "min_volume_mm3_used": 10.0, "outline_threshold_used": 0.4,
            "brain_mask": "deepbet", "mask_dilation_mm": 4.0, "inference_mode": "auto", "patch_size": None,
            "overlap": None, "blend_mode": None, "precision": "auto"}
    return {"model": {"name": "m", "version": "1", "sha256": sha}, "settings": {**base, **settings}}


# --- consistency checks ------------------------------------------------------------------------

def test_other_model_or_lesion_settings_are_refused_and_force_records_why():
    same = check_series([SourceInfo("t0", "a", _run()), SourceInfo("t1", "b", _run(brain_mask="/x/mask.nii.gz")),
                         SourceInfo("t2", "c", _run(brain_mask="/y/other.nii.gz"))])
    assert same.refusals == ["t1: segmented with brain_mask = file (t0: deepbet)",
                             "t2: segmented with brain_mask = file (t0: deepbet)"]
    f = check_series([SourceInfo("t0", "a", _run()), SourceInfo("t1", "b", _run(sha="b" * 64))])
    assert len(f.refusals) == 1 and "another model" in f.refusals[0]
    f = check_series([SourceInfo("t0", "a", _run()), SourceInfo("t1", "b", _run(threshold_used=0.999999))])
    assert f.refusals == ["t1: segmented with threshold_used = 0.999999 (t0: 0.95)"]
    f = check_series([SourceInfo("t0", "a", _run()), SourceInfo("t1", "b", _run(outline_threshold_used=0.95))])
    assert "outline_threshold_used" in f.refusals[0]
    # A run made before outlines existed drew lesions at the detection threshold.
    old = _run()
    del old["settings"]["outline_threshold_used"]
    assert check_series([SourceInfo("t0", "a", old), SourceInfo("t1", "b", _run(outline_threshold_used=0.95))]
                        ).refusals == []
    f = check_series([SourceInfo("t0", "a", _run()), SourceInfo("t1", "b", {**_run(), "prior": {"x": 1}})])
    assert "prior" in f.refusals[0]
    with pytest.raises(InputError, match="cannot be compared: t1: segmented with"):
        check_series([SourceInfo("t0", "a", _run()), SourceInfo("t1", "b", _run(min_volume_mm3_used=0))]).enforce(None)
    record = f.enforce("same scanner, re-run")
    assert record == {"reason": "same scanner, re-run", "overrode": f.refusals}
    # A hand-made label map has no run record: nothing to compare.
    assert check_series([SourceInfo("t0", "a", _run()), SourceInfo("t1", "b", None)]).refusals == []


def test_other_patient_and_date_order_are_refused():
    a = {"PatientID": "P1", "PatientName": "Doe^Jane", "PatientBirthDate": "19600101", "StudyDate": "20240101"}
    f = check_series([SourceInfo("t0", "a", dicom=a), SourceInfo("t1", "b", dicom={**a, "StudyDate": "20240401"})])
    assert f.refusals == []
    f = check_series([SourceInfo("t0", "a", dicom=a), SourceInfo("t1", "b", dicom={**a, "PatientID": "P2",
                                                                                   "PatientName": "Roe^Rick"})])
    assert [r.split(" (")[0] for r in f.refusals] == ["t1: another patient", "t1: another patient"]
    f = check_series([SourceInfo("t0", "a", dicom=a), SourceInfo("t1", "b", dicom={**a, "StudyDate": "20231201"})])
    assert "before the baseline" in f.refusals[0]


def test_voxel_size_or_grid_change_is_warned():
    base = _image(np.zeros((10, 10, 10), np.float32))
    thick = _image(np.zeros((4, 10, 10), np.float32), (1.0, 1.0, 3.0))
    f = check_series([SourceInfo("t0", "a"), SourceInfo("t1", "b")], [base, thick])
    assert f.refusals == [] and "slice thickness changed" in f.warnings[0]
    other_grid = _image(np.zeros((12, 10, 10), np.float32))
    f = check_series([SourceInfo("t0", "a"), SourceInfo("t1", "b")], [base, other_grid])
    assert "another scanner grid" in f.warnings[0]
    assert check_series([SourceInfo("t0", "a"), SourceInfo("t1", "b")], [base, base]).warnings == []


def test_dicom_series_of_two_patients_refused_by_compare_unless_forced(tmp_path: Path, capsys, monkeypatch):
    image = dicom_phantoms.phantom_image("axial")
    dicom_phantoms.write_series(image, tmp_path / "a")
    monkeypatch.setattr(dicom_phantoms, "PATIENT", {**dicom_phantoms.PATIENT, "0010|0020": "OTHER-7",
                                                    "0010|0010": "Other^Person"})
    # another acquisition (other voxels), not the same scan again
    dicom_phantoms.write_series(image + 1, tmp_path / "b", series_uid="1.2.826.0.1.3680043.8.498.16.9")
    assert dicom_identity(tmp_path / "a")["PatientID"] == "BMS-PH-016"
    assert dicom_identity(tmp_path / "b")["PatientID"] == "OTHER-7"
    from BrainMetSegLib.images import read_scalar_volume

    grid = read_scalar_volume(tmp_path / "a", "CE-T1")
    empty = sitk.Image(grid.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(grid)
    sitk.WriteImage(empty, str(tmp_path / "none.nii.gz"))  # all zero: no lesion
    args = ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--labels", str(tmp_path / "none.nii.gz"),
            str(tmp_path / "none.nii.gz"), "--progress", "none"]
    assert cli_main([*args, "-o", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert "cannot be compared" in err and "another patient (PatientID 'OTHER-7'" in err and "Traceback" not in err
    assert not (tmp_path / "cmp" / "longitudinal.json").exists()
    assert cli_main([*args, "-o", str(tmp_path / "cmp"), "--force", "patient renamed after merge"]) == 0
    doc = json.loads((tmp_path / "cmp" / "longitudinal.json").read_text())
    forced = doc["brainmetseg_compare"]["forced"]
    assert forced["reason"] == "patient renamed after merge" and "another patient" in forced["overrode"][0]
    assert doc["tracks"] == [] and doc["rano_bm"]["timepoints"][0]["response"] == "NED"
    assert "patient renamed after merge" in (tmp_path / "cmp" / "report.html").read_text()


# --- field of view -----------------------------------------------------------------------------

def test_target_outside_the_followup_field_of_view_is_not_evaluable_never_resolved():
    shape = (60, 40, 40)
    rng = np.random.default_rng(0)
    img = rng.normal(100, 10, shape).astype(np.float32)
    labels = np.zeros(shape, np.uint16)
    labels[_ball(shape, (12, 20, 20), 7)] = 1  # target near the top of the baseline (z = 5..19)
    labels[_ball(shape, (45, 20, 20), 7)] = 2  # target well inside
    base = TimePoint("t0", _image(img), _image(labels))
    # The follow-up: the same head, its field of view cut at z = 22 (lesion 1 is outside it);
    # lesion 2 shrank by 40 %.
    fu_labels = np.zeros(shape, np.uint16)
    fu_labels[_ball(shape, (45, 20, 20), 4)] = 1
    cut = _image(img[22:].copy()), _image(fu_labels[22:].copy())
    for part in cut:
        part.SetOrigin((0.0, 0.0, 22.0))
    fu = TimePoint("t1", *cut)
    identity = Registration(sitk.Euler3DTransform())
    result = compare_timepoints([base, fu], registrations=[None, identity])
    r = result.rano.timepoints[0]
    assert result.rano.targets == [1, 2]
    assert r.response == NOT_EVALUABLE and r.target_response == NOT_EVALUABLE
    track1 = next(tr for tr in result.tracks if tr.track_id == 1)
    assert track1.at[1].status == "not-evaluable" and track1.resolved_at is None
    assert any("outside this scan's field of view" in x for x in r.reasons)
    # The whole head on the follow-up: lesion 1 really gone -> it is resolved, and the response a PR.
    whole = TimePoint("t1", _image(img), _image(np.pad(fu_labels[22:], ((22, 0), (0, 0), (0, 0)))))
    result = compare_timepoints([base, whole], registrations=[None, identity])
    assert result.rano.timepoints[0].response == "PR"
    assert next(tr for tr in result.tracks if tr.track_id == 1).resolved_at == 1


def test_fragments_of_a_tracked_lesion_are_never_new_and_small_new_is_to_be_confirmed():
    shape = (50, 50, 70)
    img = _image(np.random.default_rng(1).normal(100, 10, shape).astype(np.float32))
    base = np.zeros(shape, np.uint16)
    base[_ball(shape, (25, 25, 20), 9)] = 1
    fu = np.zeros(shape, np.uint16)
    fu[_ball(shape, (25, 25, 20), 9) & (np.indices(shape)[2] < 19)] = 1  # the lesion broken in two pieces,
    fu[_ball(shape, (25, 25, 20), 9) & (np.indices(shape)[2] > 20)] = 2  # 2 voxels (mm) apart
    fu[_ball(shape, (25, 25, 31), 1)] = 3  # a fragment 1 mm outside its old extent
    fu[_ball(shape, (25, 25, 55), 3)] = 4  # a small new lesion far away (7 mm)
    identity = Registration(sitk.Euler3DTransform())
    result = compare_timepoints([TimePoint("t0", img, _image(base)), TimePoint("t1", img, _image(fu))],
                                registrations=[None, identity])
    tracks = {tr.track_id: tr for tr in result.tracks}
    assert tracks[1].at[1].status == "split" and sorted(tracks[1].at[1].lesion_ids) == [1, 2, 3]
    assert [tr.track_id for tr in result.tracks if tr.new_at == 1] == [2]
    r = result.rano.timepoints[0]
    assert r.new_lesions == [] and r.equivocal_new == [2] and r.response == PD_TO_CONFIRM
    assert any("split" in x for x in r.reasons)
    # Measured as one lesion (the pieces' union), not the sum of the pieces' diameters.
    assert tracks[1].at[1].longest_mm == pytest.approx(tracks[1].at[0].longest_mm, abs=3.5)
    assert r.target_response == "SD"


# --- front ends --------------------------------------------------------------------------------

def test_viewer_and_tables_spell_out_not_evaluable_and_to_be_confirmed():
    from BrainMetSegLib.viewer.longitudinal import response_text

    assert response_text(NOT_EVALUABLE) == "NE: not evaluable"
    assert response_text(PD_TO_CONFIRM) == "PD to be confirmed: progression to be confirmed"
    assert response_text("PR") == "PR"
    shape = (30, 30, 30)
    img = _image(np.random.default_rng(2).normal(100, 10, shape).astype(np.float32))
    base = np.zeros(shape, np.uint16)
    base[_ball(shape, (15, 15, 10), 6)] = 1
    fu = base.copy()
    fu[_ball(shape, (15, 15, 24), 2)] = 2
    result = compare_timepoints([TimePoint("t0", img, _image(base)), TimePoint("t1", img, _image(fu))],
                                registrations=[None, Registration(sitk.Euler3DTransform())])
    row = result.rano_rows()[0]
    assert row["radiographic_response"] == PD_TO_CONFIRM and row["response_in_words"] == "progression to be confirmed"
    from BrainMetSegLib.mrml.longitudinal import caution_note

    assert caution_note(result).startswith("t1: progression to be confirmed (equivocal new lesion(s) [2]")


# --- the prior acts on every time point alike ---------------------------------------------------

def test_symmetric_prior_treats_baseline_and_followup_alike():
    from BrainMetSegLib.longitudinal.prior import between, symmetric_prior
    from BrainMetSegLib.operating_point import OperatingPoint

    shape = (30, 30, 60)
    strong, faint = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    strong[_ball(shape, (15, 15, 15), 3)] = 0.99
    faint[_ball(shape, (15, 15, 20), 3)] = 0.6  # the same lesion, faint, on a head moved 5 mm (LPS x)
    p0, p1 = _image(strong), _image(faint)
    point = OperatingPoint(0.9, 0.0)
    moved = Registration(sitk.TranslationTransform(3, (5.0, 0.0, 0.0)))  # baseline -> follow-up
    assert np.allclose(between([None, moved], 1, 0).transform.TransformPoint((5.0, 0, 0)), (0, 0, 0))
    first = [_image((p > point.threshold).astype(np.uint16)) for p in (strong, faint)]
    # Follow-up faint, baseline strong: the baseline's lesion makes the follow-up's count.
    out = symmetric_prior([p0, p1], first, [None, moved], point)
    assert sitk.GetArrayViewFromImage(out[1])[15, 15, 20] == 1
    # The other way round (faint at baseline): the same rule recovers the baseline lesion.
    out = symmetric_prior([_image(np.roll(faint, -5, axis=2)), _image(np.roll(strong, 5, axis=2))],
                          [_image((np.roll(faint, -5, axis=2) > 0.9).astype(np.uint16)),
                           _image((np.roll(strong, 5, axis=2) > 0.9).astype(np.uint16))], [None, moved], point)
    assert sitk.GetArrayViewFromImage(out[0])[15, 15, 15] == 1
    assert [int(sitk.GetArrayViewFromImage(o).sum()) for o in out] == [int(_ball(shape, (15, 15, 15), 3).sum())] * 2


def test_compare_refuses_result_folders_of_another_model_or_threshold(tmp_path: Path, capsys):
    from BrainMetSegLib.checksums import sha256_file
    from BrainMetSegLib.lesions import lesion_table

    shape = (20, 20, 20)
    labels = np.zeros(shape, np.uint16)
    labels[_ball(shape, (10, 10, 10), 4)] = 1

    def folder(name: str, run: dict) -> str:
        f = tmp_path / name
        f.mkdir()
        scan = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(_image(np.random.default_rng(3).normal(100, 10, shape).astype(np.float32)), str(scan))
        sitk.WriteImage(_image(labels), str(f / "lesion_labels.nii.gz"))
        (f / "lesions.json").write_text(json.dumps({"lesions": lesion_table(_image(labels))}))
        (f / "run.json").write_text(json.dumps({**run, "inputs": {"t1ce": {"path": str(scan),
                                                                           "sha256": sha256_file(scan)}}}))
        return str(f)

    base = folder("t0", _run())
    for name, run, said in (("t1", _run(sha="b" * 64), "another model"),
                            ("t2", _run(threshold_used=0.999999), "threshold_used = 0.999999 (t0: 0.95)")):
        assert cli_main(["compare", base, folder(name, run), "-o", str(tmp_path / f"cmp_{name}"),
                         "--progress", "none"]) == 2
        err = capsys.readouterr().err
        assert said in err and "--force REASON" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("values", "says"), [
    (lambda ball: ball * 0.8, "non-integer values"),       # a probability map given with --labels
    (lambda ball: ball.astype(np.int16) - 1, "negative values"),
    (lambda ball: np.arange(ball.size).reshape(ball.shape) % 1500, "1499 distinct"),  # an image
])
def test_compare_labels_that_cannot_be_labels_are_refused(tmp_path, values, says):
    from BrainMetSegLib.longitudinal.sources import read_labels

    ball = _ball((20, 20, 20), (10, 10, 10), 4).astype(np.float32)
    image = _image(ball * 100)
    path = tmp_path / "labels.nii.gz"
    sitk.WriteImage(_image(values(ball).astype(np.float32)), str(path))
    with pytest.raises(InputError, match=says) as info:
        read_labels(path, image, tmp_path / "scan.nii.gz")
    assert str(path) in str(info.value)


def test_one_scan_given_twice_is_refused_by_input_and_by_voxels():
    """A follow-up that is the baseline again (the same file, or a copy with the same voxels)
    would read as stable disease: refused; a scan with one voxel changed is another scan."""
    run = {"inputs": {"t1ce": {"sha256": "b" * 64}}}
    f = check_series([SourceInfo("t0", "a.nii.gz", run=run), SourceInfo("t1", "b.nii.gz", run=run)])
    assert f.refusals == ["t1: the same scan as t0 (the same input): time points must be separate acquisitions"]
    assert check_series([SourceInfo("t0", "/x/a.nii.gz"), SourceInfo("t1", "/x/../x/a.nii.gz")]).refusals
    base = _image(np.arange(1000, dtype=np.float32).reshape(10, 10, 10))
    copy = _image(sitk.GetArrayFromImage(base))
    other = sitk.GetArrayFromImage(base)
    other[5, 5, 5] += 1
    sources = [SourceInfo("t0", "a"), SourceInfo("t1", "b"), SourceInfo("t2", "c")]
    f = check_series(sources, [base, _image(other), copy])
    assert f.refusals == ["t2: the same scan as t0 (identical voxels and grid): time points must be separate "
                          "acquisitions"]


@pytest.mark.parametrize(("option", "says"), [
    ({"days": (0.0, float("nan"))}, "every date must be a finite number of days"),
    ({"days": (0.0, float("inf"))}, "every date must be a finite number of days"),
    ({"days": (0.0, 30.0, 10.0)}, "dates must increase"),
    ({"max_distance_mm": float("nan")}, "--max-distance a finite distance"),
    ({"max_distance_mm": float("inf")}, "--max-distance a finite distance"),
    ({"contact_mm": float("nan")}, "--contact must be 0-10 mm"),
    ({"equivocal_below": float("nan")}, "a lesion probability 0-1"),
    ({"equivocal_below": 1.5}, "a lesion probability 0-1"),
])
def test_compare_refuses_dates_and_distances_that_are_not_finite(tmp_path, option, says):
    """``--days 0 nan`` had ended in an internal error; ``--max-distance nan`` was taken."""
    from BrainMetSegLib.longitudinal.series import CompareRequest, check_request

    n = len(option.get("days", (0, 1)))
    request = CompareRequest(tuple(str(tmp_path / f"s{k}.nii.gz") for k in range(n)), str(tmp_path / "o"),
                             **option)
    with pytest.raises(InputError, match=says):
        check_request(request)


def test_a_new_lesions_confidence_is_its_calibrated_lesion_probability():
    """The equivocal rule's confidence is the candidate stage's calibrated lesion probability (of
    pieces, the largest), never the network's peak probability (uncalibrated: a false lesion
    reaches p = 1.0 inside); without a candidate stage there is none."""
    from BrainMetSegLib.longitudinal.tracking import _combine

    def row(i, lesion_p=None):
        r = {"lesion_id": i, "volume_mm3": 100.0, "centroid_r": 0.0, "centroid_a": 0.0, "centroid_s": 0.0,
             "axial_longest_diameter_mm": 12.0, "axial_perpendicular_diameter_mm": 8.0, "longest_diameter_mm": 12.0,
             "axial_slices": 4, "max_probability": 1.0}
        return r if lesion_p is None else {**r, "lesion_probability": lesion_p}

    assert _combine(1, "new", [row(1, 0.78)], "").measure().confidence == 0.78
    assert _combine(1, "split", [row(1, 0.4), row(2, 0.95)], "").measure().confidence == 0.95
    assert _combine(1, "new", [row(1)], "").measure().confidence is None
    assert _combine(1, "split", [row(1, 0.4), row(2, 0.95)], "").measure().pieces == 2
