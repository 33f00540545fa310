"""What clinics send (issue 24): oblique grids, thick 2D slices, other fields of view.

Re-acquisition of a scan (synth.reacquire), the field-of-view mask and deepbet's grid
(geometry, preprocess), the model card's acquisition ranges and the warnings they give, and one
oblique and one thick-slice phantom end to end through ``brainmetseg segment``.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BrainMetSegLib.acquisition import ScanAcquisition, acquisition_notes
from BrainMetSegLib.cli import main
from BrainMetSegLib.errors import InputError, ModelError
from BrainMetSegLib.geometry import Grid, field_of_view_mask, nearest_axes_direction, obliquity_deg
from BrainMetSegLib.models import ModelCard
from BrainMetSegLib.preprocess import PreprocessConfig, preprocess
from BrainMetSegLib.synth import SynthConfig, make_case
from BrainMetSegLib.synth.reacquire import Reacquisition, reacquire, rotation
from conftest import make_volume

CARD_ACQ = {"slice_thickness_mm": [1.0, 3.0], "in_plane_spacing_mm": [1.0, 1.0], "obliquity_deg": 0.0}
SMALL = dict(anatomy="mni152", spacing_mm=3.0, field_of_view="brain", n_lesions=2,
             diameter_range_mm=(12.0, 16.0), deformation=0.0)


def _image(spacing=(1.0, 1.0, 1.0), direction=None, shape=(40, 48, 56)) -> sitk.Image:
    return make_volume(shape, spacing, direction)


def test_acquisition_notes_name_the_number_and_the_tested_range():
    thick = acquisition_notes(_image((0.5, 0.5, 7.0)), CARD_ACQ, "demo")
    assert thick[0].startswith("slice spacing 7 mm; model demo was tested on slices of 1-3 mm.")
    assert "in-plane spacing 0.5 x 0.5 mm; model demo was tested on 1 mm." in thick[1]
    tilted = rotation((25, 15)).ravel().tolist()
    oblique = acquisition_notes(_image(direction=tilted), CARD_ACQ, "demo")
    assert oblique == ["the scan's planes are oblique by 29 degrees; model demo was tested on axis-aligned scans."]
    # within the ranges (a scanner's 0.94 mm counts as 1 mm, 2 degrees of planning as none)
    assert acquisition_notes(_image((0.94, 0.94, 3.0), rotation((2, 0)).ravel().tolist()), CARD_ACQ, "demo") == []
    assert acquisition_notes(_image((0.5, 0.5, 7.0)), {}, "demo") == []  # a card that states none


def test_thick_slice_notes_quote_the_measured_sensitivity():
    card = {"slice_thickness_mm": [1.0, 1.0],
            "measured_by_slice_mm": [[5, 0.64, 0.55], [1, 0.988, 0.1], [3, 0.787, 0.5]]}
    assert ModelCard(name="m", version="1", architecture="BasicUNet", acquisition=card).acquisition[
        "measured_by_slice_mm"] == [[1.0, 0.988, 0.1], [3.0, 0.787, 0.5], [5.0, 0.64, 0.55]]  # sorted on load
    two = acquisition_notes(_image((1.0, 1.0, 2.0)), card, "demo")[0]
    assert two.startswith("slice spacing 2 mm; model demo was tested on slices of 1 mm.")
    assert two.endswith("On phantoms with 3 mm slices it found 0.79 of the lesions and 0.50 false ones per case "
                        "(0.99 and 0.10 at 1 mm).")
    assert "with 5 mm slices it found 0.64" in acquisition_notes(_image((1.0, 1.0, 5.3)), card, "demo")[0]
    assert "with 5 mm slices it found 0.64" in acquisition_notes(_image((1.0, 1.0, 9.0)), card, "demo")[0]
    assert acquisition_notes(_image((1.0, 1.0, 1.05)), card, "demo") == []  # within the tolerance
    thin = acquisition_notes(_image((0.5, 0.5, 0.5)), {**card, "in_plane_spacing_mm": [0.5, 1.0]}, "demo")
    assert thin and "On phantoms" not in thin[0]  # thinner than every measurement: nothing to quote


def test_scan_acquisition_slice_axis_is_the_coarsest_whatever_its_order():
    scan = ScanAcquisition.of(_image((5.0, 0.9, 0.8)))
    assert scan.slice_spacing_mm == 5.0 and scan.in_plane_spacing_mm == (0.9, 0.8)
    assert scan.obliquity_deg == 0.0
    assert scan.slice_plane == "sagittal"  # the coarse axis is x (L-R)
    assert ScanAcquisition.of(_image((1.0, 1.0, 1.05))).slice_plane is None  # 3D: no slice plane


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_thick_slice_notes_say_when_the_scans_plane_is_not_the_measured_one(plane):
    """Written as DICOM orients each plane (slice axis last); the measured figures are axial."""
    spec = Reacquisition(slice_thickness_mm=5.0, in_plane_mm=1.0, margin_mm=0.0, slice_plane=plane)
    scan = reacquire({"image": _image()}, spec)["image"]
    assert ScanAcquisition.of(scan).slice_plane == plane
    card = {"slice_thickness_mm": [1.0, 3.0], "measured_by_slice_mm": [[1, 0.95, 0.25], [5, 0.88, 0.5]]}
    note = acquisition_notes(scan, card, "demo")[0]
    assert note.endswith("(0.95 and 0.25 at 1 mm; measured on axial slices, this scan's are coronal)."
                         if plane == "coronal" else
                         "(0.95 and 0.25 at 1 mm; measured on axial slices, this scan's are sagittal)."
                         if plane == "sagittal" else "(0.95 and 0.25 at 1 mm)."), note


@pytest.mark.parametrize("bad, words", [
    ({"slice_thickness_mm": [3, 1]}, "min 3 is above max 1"),
    ({"slice_thickness_mm": 3}, "must be [min, max]"),
    ({"in_plane_spacing_mm": [0, 1]}, "must be > 0"),
    ({"obliquity_deg": 120}, "must be >= 0 and <= 90"),
    ({"obliquity": 10}, "unknown keys ['obliquity']"),
    ("1-3 mm", "must be an object"),
    ({"measured_by_slice_mm": [[3, 1.2, 0.5]]}, "sensitivity must be"),
    ({"measured_by_slice_mm": [[3, 0.8, -1]]}, "false positives per case must be"),
    ({"measured_by_slice_mm": [[3, 0.8, 0.5], [3.0, 0.7, 0.4]]}, "given twice"),
    ({"measured_by_slice_mm": [[3, 0.8]]}, "[slice mm, sensitivity, false positives per case]"),
])
def test_card_acquisition_is_checked(bad, words):
    with pytest.raises(ModelError) as err:
        ModelCard(name="m", version="1", architecture="BasicUNet", acquisition=bad)
    assert "'acquisition'" in str(err.value) and words in str(err.value)


def test_card_acquisition_numbers_become_floats():
    card = ModelCard(name="m", version="1", architecture="BasicUNet",
                     acquisition={"slice_thickness_mm": [1, 3], "obliquity_deg": 0})
    assert card.acquisition == {"slice_thickness_mm": [1.0, 3.0], "obliquity_deg": 0.0}


def test_nearest_axes_direction_keeps_the_scans_planes_in_lps_order():
    tilted = rotation((25, 15))
    sagittal = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float) @ tilted  # columns: P, I, L-ish
    d = nearest_axes_direction(sagittal.ravel())
    assert np.allclose(np.abs(d.T @ sagittal).max(axis=0), 1)  # same axes (signed, reordered)
    assert np.all(np.diag(d) > 0.8) and np.isclose(np.linalg.det(d), 1)
    assert obliquity_deg(sagittal.ravel()) == pytest.approx(obliquity_deg(tilted.ravel()))
    assert obliquity_deg(np.diag([-1.0, -1.0, 1.0]).ravel()) == 0.0


def test_field_of_view_mask_is_where_the_input_was_measured():
    image = _image(direction=rotation((30, 0)).ravel().tolist())
    src, grid = Grid.of(image), Grid((70, 70, 70), (1.0, 1.0, 1.0), (-20.0, -20.0, -20.0))
    fov = field_of_view_mask(src, grid)
    assert 0 < fov.sum() < fov.size
    # every voxel inside is within half a voxel of the input's extent, in the input's own frame
    kji = np.argwhere(fov)
    pts = np.asarray(grid.origin_lps) + kji[:, ::-1] * 1.0
    local = (pts - np.asarray(src.origin_lps)) @ np.reshape(src.direction, (3, 3))
    assert np.all(local >= -0.5 - 1e-6) and np.all(local <= np.asarray(src.size_xyz) - 0.5 + 1e-6)


def test_preprocess_keeps_the_brain_inside_the_field_of_view():
    """'none' masks by non-zero voxels; the oblique scan's zero-filled wedges never count as brain,
    and the dilated gate stops at the field of view too."""
    image = _image(direction=rotation((25, 15)).ravel().tolist(), shape=(40, 48, 56))
    arr = sitk.GetArrayFromImage(image)
    arr[arr == 0] = 5.0  # air the scanner measured: every voxel of the input is non-zero
    full = sitk.GetImageFromArray(arr)
    full.CopyInformation(image)
    pre = preprocess([full], PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0), brain_mask="none"))
    fov = field_of_view_mask(Grid.of(full), pre.geometry.model_grid)
    assert pre.brain.any() and not (pre.brain & ~fov).any()
    assert pre.fov_ml > 0 and np.all(pre.array[0][~fov] == 0)


def test_reacquire_oblique_keeps_the_head_where_it_was():
    case = make_case(3, SynthConfig(**SMALL, acquisition=False))
    out = reacquire({"image": case.image, "labels": case.labels}, Reacquisition(tilt_deg=(25, 15)),
                    labels=("labels",))
    assert obliquity_deg(out["image"].GetDirection()) > 20
    for k in (1, 2):
        before, after = (_centroid_lps(im, k) for im in (case.labels, out["labels"]))
        assert np.linalg.norm(before - after) < 1.5  # mm: same lesion, same place


def test_reacquire_thick_slices_average_the_slab():
    """A 1 mm bright sheet inside a 5 mm slab shows as 1/5 of its brightness (a 2D slice's
    partial volume), not at full brightness or not at all as subsampling would."""
    arr = np.zeros((60, 20, 20), np.float32)
    arr[32, :, :] = 100.0
    image = sitk.GetImageFromArray(arr)
    out = reacquire({"image": image}, Reacquisition(slice_thickness_mm=5.0, margin_mm=0.0, in_plane_mm=1.0))
    got = sitk.GetArrayFromImage(out["image"])
    assert out["image"].GetSpacing()[2] == 5.0
    assert got.max() == pytest.approx(20.0, abs=2.0)
    assert got.sum() * 5.0 == pytest.approx(arr.sum(), rel=0.05)  # signal kept, spread over 5 mm


@pytest.mark.parametrize("plane, normal_lps, sheet_axis", [
    ("coronal", (0, 1, 0), 1),   # slices stacked along P: a coronal sheet (fixed y) is averaged
    ("sagittal", (-1, 0, 0), 2),  # slices stacked along R: a sagittal sheet (fixed x) is averaged
])
def test_reacquire_coronal_and_sagittal_slices_average_their_slab(plane, normal_lps, sheet_axis):
    """The thick axis runs along A-P (coronal) or L-R (sagittal), the grid stays right-handed
    and a point keeps its place (no mirrored or swapped axes)."""
    arr = np.full((40, 60, 50), 50.0, np.float32)  # (Z, Y, X); all "head", so the grid covers it
    index = [slice(None)] * 3
    index[sheet_axis] = 32
    arr[tuple(index)] = 150.0
    arr[10, 20, 15] = 5000.0  # a marker, off the sheet
    image = sitk.GetImageFromArray(arr)
    spec = Reacquisition(slice_thickness_mm=5.0, in_plane_mm=1.0, margin_mm=0.0, slice_plane=plane)
    assert spec.label == f"slice5mm-{plane}"
    out = reacquire({"image": image}, spec)["image"]
    d = np.reshape(out.GetDirection(), (3, 3))
    assert np.allclose(d[:, 2], normal_lps) and np.linalg.det(d) == pytest.approx(1.0)
    assert out.GetSpacing() == (1.0, 1.0, 5.0)
    got = sitk.GetArrayFromImage(out)
    sheet = got[got < 1000]
    assert sheet.max() == pytest.approx(70.0, abs=3.0)  # 1 mm of +100 in a 5 mm slab (0.5 mm sub-steps)
    marker = np.unravel_index(np.argmax(got), got.shape)
    at = np.asarray(out.TransformContinuousIndexToPhysicalPoint([float(i) for i in marker[::-1]]))
    assert np.allclose(at[[i for i in range(3) if normal_lps[i] == 0]], [(15, 20, 10)[i] for i in range(3)
                                                                         if normal_lps[i] == 0])
    assert abs(np.dot(at, np.abs(normal_lps)) - np.dot((15, 20, 10), np.abs(normal_lps))) <= 2.5


def test_reacquire_slice_plane_is_checked():
    with pytest.raises(ValueError, match="slice_plane 'oblique'"):
        Reacquisition(slice_thickness_mm=5.0, slice_plane="oblique")
    with pytest.raises(InputError, match="needs a slice thickness"):
        SynthConfig(slice_plane="coronal")


def test_reacquire_reformat_samples_the_slice_centres():
    """slab=False: every 5th plane as it is (a thin-slice reformat at 5 mm spacing): the bright
    sheet is either missed or kept at full brightness, never averaged."""
    arr = np.zeros((60, 20, 20), np.float32)
    arr[32, :, :] = 100.0
    image = sitk.GetImageFromArray(arr)
    spec = Reacquisition(slice_thickness_mm=5.0, margin_mm=0.0, in_plane_mm=1.0, slab=False)
    assert spec.label == "reformat5mm"
    got = sitk.GetArrayFromImage(reacquire({"image": image}, spec)["image"])
    assert set(np.unique(np.round(got, 3))) <= {0.0, 100.0}


def test_synth_writes_oblique_and_thick_slice_cases():
    oblique = make_case(3, SynthConfig(**SMALL, oblique_deg=(20.0, 10.0)))
    thick = make_case(3, SynthConfig(**SMALL, slice_thickness_mm=6.0))
    assert obliquity_deg(oblique.image.GetDirection()) > 15
    assert thick.image.GetSpacing()[2] == 6.0 and thick.labels.GetSpacing()[2] == 6.0
    for case in (oblique, thick):
        lab = sitk.GetArrayFromImage(case.labels)
        assert [les["voxels"] for les in case.lesions] == [int((lab == les["id"]).sum()) for les in case.lesions]
        assert case.info["reacquisition"]["spacing_mm"] == list(case.image.GetSpacing())
        brain = sitk.GetArrayFromImage(case.brain)
        assert np.all(brain[lab > 0] == 1)


def _centroid_lps(labels: sitk.Image, k: int) -> np.ndarray:
    kji = np.argwhere(sitk.GetArrayFromImage(labels) == k).mean(axis=0)
    return np.asarray(labels.TransformContinuousIndexToPhysicalPoint(kji[::-1].tolist()))


@pytest.fixture(scope="module")
def tested_model(tiny_model, tmp_path_factory):
    """The tiny package with the demo card's acquisition ranges."""
    folder = tmp_path_factory.mktemp("acq") / "tiny"
    shutil.copytree(tiny_model.folder, folder)
    card = json.loads((folder / "model.json").read_text())
    card["acquisition"] = CARD_ACQ
    (folder / "model.json").write_text(json.dumps(card))
    return folder


@pytest.mark.parametrize("options, warning", [
    (dict(oblique_deg=(25.0, 15.0)), "the scan's planes are oblique by 29 degrees"),
    (dict(slice_thickness_mm=7.0, in_plane_mm=1.0),
     "slice spacing 7 mm; model tiny-test was tested on slices of 1-3 mm"),
    (dict(slice_thickness_mm=7.0, in_plane_mm=1.0, slice_plane="coronal"),
     "slice spacing 7 mm; model tiny-test was tested on slices of 1-3 mm"),
])
def test_oblique_and_thick_slice_phantoms_end_to_end(options, warning, tested_model, tmp_path, capsys):
    case = make_case(3, SynthConfig(**{**SMALL, "spacing_mm": 2.0}, skull=False, **options))
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(case.image, str(path))
    out = tmp_path / "out"
    code = main(["segment", str(path), "-o", str(out), "--model", str(tested_model), "--brain-mask", "none",
                 "--device", "cpu", "--progress", "none", "--threshold", "0.5"])
    err = capsys.readouterr().err
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert any(w.startswith(warning) for w in run["warnings"]), run["warnings"]
    assert f"warning: {warning}" in err
    labels = sitk.ReadImage(str(out / "lesion_labels.nii.gz"))
    assert labels.GetSize() == case.image.GetSize()
    assert np.allclose(labels.GetDirection(), case.image.GetDirection())
    assert np.allclose(labels.GetSpacing(), case.image.GetSpacing())
    prob = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "probability.nii.gz")))
    spacing = case.image.GetSpacing()
    outside_mm = ndimage.distance_transform_edt(sitk.GetArrayFromImage(case.image) == 0, sampling=spacing[::-1])
    assert prob.max() > 0
    # nothing beyond the 4 mm gate around the brain (+ a voxel of each grid and of the mask per resampling)
    assert not prob[outside_mm > 4.0 + 2 * 2.0 + 2 * max(spacing)].any()


def test_deepbet_sees_the_oblique_scans_own_planes_not_zero_filled_wedges(monkeypatch):
    """deepbet is given the scan's own field of view (every voxel measured), and its mask comes
    back onto the axis-aligned model grid in the right place; before, it got the axis-aligned
    box around the tilted scan, ~half of it zero-filled."""
    import torch

    from BrainMetSegLib import skullstrip

    seen = []

    class FakeBet:
        model = torch.nn.Conv3d(1, 2, 3)

        def run_model(self, x, **kwargs):
            seen.append(float((x == 0).mean()))
            return (x > 50).astype(np.float32)  # "brain": the bright ellipsoid

        def postprocess(self, mask):
            return mask

    monkeypatch.setattr(skullstrip, "_deepbet", lambda device: FakeBet())
    image = _image(direction=rotation((25, 15)).ravel().tolist(), shape=(40, 48, 56))
    arr = sitk.GetArrayFromImage(image)
    arr[arr == 0] = 5.0  # measured air
    scan = sitk.GetImageFromArray(arr)
    scan.CopyInformation(image)
    config = PreprocessConfig(spacing_mm=(1.0, 1.0, 1.0))
    after = preprocess([scan], config)
    before = preprocess([scan], PreprocessConfig(spacing_mm=(1.0, 1.0, 1.0), skullstrip_grid="model-grid"))
    assert seen[0] < 0.02 and seen[1] > 0.3  # zero-filled share of what deepbet saw
    ellipsoid_ml = (arr > 50).sum() / 1000.0
    assert after.brain_ml == pytest.approx(ellipsoid_ml, rel=0.05)
    assert before.brain_ml == pytest.approx(ellipsoid_ml, rel=0.05)  # a perfect fake agrees on both


@pytest.mark.parametrize(("spacing_mm", "refused"), [(5.0, False), (10.0, True)])
def test_a_head_and_neck_field_of_view_runs_a_metre_wide_one_is_refused(spacing_mm, refused):
    """60 x 60 x 80 voxels of 5 mm cover 300 x 300 x 400 mm (a head-and-neck scan: 62 M voxels on
    a 0.833 mm grid); of 10 mm, 600 x 600 x 800 mm (497 M): refused, naming extent and spacing."""
    from BrainMetSegLib.geometry import axis_aligned_grid
    from BrainMetSegLib.plausibility import model_grid_problem

    image = sitk.Image(60, 60, 80, sitk.sitkUInt8)
    image.SetSpacing((spacing_mm,) * 3)
    grid = axis_aligned_grid(image, (0.833,) * 3)
    problem = model_grid_problem(image, grid.size_xyz, grid.spacing_xyz)
    assert (problem is not None) == refused
    if refused:
        assert "600 x 600 x 800 mm" in problem and "10 x 10 x 10 mm" in problem
