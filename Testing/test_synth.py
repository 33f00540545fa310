"""Synthetic phantoms (BrainMetSegLib.synth): ground truth, contrasts, confounders, layout, determinism.

Cases are small (brain field of view, 2-3 mm voxels) so the module runs in well under a minute
once the MNI152 template is prepared (once per process).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cc3d
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.cli import main as cli_main
from BrainMetSegLib.errors import OutputError
from BrainMetSegLib.synth import SynthConfig, case_seed, make_case, write_dataset
from BrainMetSegLib.synth import config as C
from BrainMetSegLib.synth.lesions import draw_count, draw_diameters
from BrainMetSegLib.synth.templates import REGION_JUNCTION, TISSUE_WM, colin27_available

SMALL = dict(anatomy="mni152", spacing_mm=3.0, field_of_view="brain")


def arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


@pytest.fixture(scope="module")
def many() -> object:
    """A > 10 lesion case on a 2 mm grid with the full acquisition chain."""
    return make_case(11, SynthConfig(anatomy="mni152", spacing_mm=2.0, field_of_view="brain", stratum=">10"))


@pytest.fixture(scope="module")
def clean_cases() -> dict:
    """Per pattern: larger lesions, no acquisition effects, 1.5 mm grid, so contrasts are exact."""
    return {p: make_case(5 + k, SynthConfig(anatomy="mni152", spacing_mm=1.5, field_of_view="brain", n_lesions=3,
                                            diameter_range_mm=(10.0, 18.0), patterns=(p,), acquisition=False))
            for k, p in enumerate(C.PATTERNS)}


@pytest.fixture(scope="module")
def clean(clean_cases):
    return clean_cases["ring"]


def test_lesions_inside_brain_with_stated_volume_and_centre(many):
    lab, brain = arr(many.labels), arr(many.brain)
    assert many.labels.GetPixelID() == sitk.sitkUInt16 and many.brain.GetPixelID() == sitk.sitkUInt8
    assert len(many.lesions) >= 11
    assert np.all(brain[lab > 0] == 1), "a labelled voxel lies outside the brain mask"
    voxel_mm3 = float(np.prod(many.labels.GetSpacing()))
    assert sorted(les["id"] for les in many.lesions) == sorted(np.unique(lab[lab > 0]).tolist())
    for les in many.lesions:
        idx = np.argwhere(lab == les["id"])
        assert les["volume_mm3"] == pytest.approx(len(idx) * voxel_mm3)
        # JSON centre (RAS) = label centroid (LPS physical point with x, y negated).
        lps = np.array(many.labels.TransformContinuousIndexToPhysicalPoint(idx.mean(0)[::-1].tolist()))
        assert np.allclose(les["centre_ras_mm"], lps * [-1, -1, 1], atol=0.01)
        assert les["pattern"] in C.PATTERNS and les["location"] in C.LOCATIONS
        assert C.STRATA[">10"][0] <= len(many.lesions)
    # Every lesion is its own 26-connected component (instances never touch).
    _, n = cc3d.connected_components(lab > 0, connectivity=26, return_N=True)
    assert n == len(many.lesions)


def test_volume_matches_nominal_diameter_within_voxelisation(clean_cases):
    for les in (les for case in clean_cases.values() for les in case.lesions):
        sphere = np.pi / 6 * les["diameter_mm"] ** 3
        # Shape perturbation and 1.5 mm voxels: within 35 % of the nominal sphere.
        assert 0.65 * sphere < les["volume_mm3"] < 1.35 * sphere, les


@pytest.mark.parametrize("stratum", list(C.STRATA))
def test_counts_follow_requested_stratum(stratum):
    case = make_case(case_seed(3, len(stratum)), SynthConfig(**SMALL, stratum=stratum))
    lo, hi = C.STRATA[stratum]
    assert lo <= len(case.lesions) <= hi
    assert case.info["stratum"] == stratum


def test_strata_and_sizes_follow_cohort_statistics():
    rng = np.random.default_rng(0)
    strata = [draw_count(rng, None, None)[1] for _ in range(4000)]
    for name, p in C.STRATUM_PROBABILITIES.items():
        assert strata.count(name) / len(strata) == pytest.approx(p, abs=0.03)
    d = np.concatenate([draw_diameters(rng, 10, (2.0, 30.0)) for _ in range(300)])
    assert d.min() >= 2.0 and d.max() <= 30.0
    volume_cm3 = np.pi / 6 * d**3 / 1000
    assert 0.04 <= np.median(volume_cm3) <= 0.26  # median lesion volume of real cohorts
    assert np.mean(d < 10) > 0.7 and np.any(d > 15)  # skewed small with a tail of large ones


@pytest.mark.parametrize("pattern", C.PATTERNS)
def test_lesion_contrast_in_stated_range_per_pattern(clean_cases, pattern):
    from scipy import ndimage

    clean = clean_cases[pattern]
    img = arr(clean.image).astype(float) / clean.wm_level
    lab = arr(clean.labels)
    tissue = arr(clean.tissue)
    assert len(clean.lesions) == 3
    for les in clean.lesions:
        assert les["pattern"] == pattern
        mask = lab == les["id"]
        core = ndimage.binary_erosion(mask, iterations=1)
        shell = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask, iterations=1)
        lo, hi = C.LESION_MEAN_CONTRAST[les["pattern"]]
        assert lo <= img[mask].mean() <= hi, les
        enh_lo, enh_hi = C.ENHANCEMENT_RANGE
        if les["pattern"] == "nodular":
            assert enh_lo - 0.05 <= img[core].mean() <= enh_hi + 0.05
            assert img[core].mean() > 1.25 * img[shell].mean()  # brighter than its surroundings
        elif les["pattern"] == "ring":
            centre = np.round(np.argwhere(mask).mean(0)).astype(int)
            z, y, x = centre
            necrotic = img[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2].mean()
            assert C.NECROSIS_RANGE[0] - 0.05 <= necrotic <= C.NECROSIS_RANGE[1] + 0.1
            assert enh_lo - 0.01 <= img[mask].max() <= (enh_hi + 0.01) * 1.2  # the rim enhances
            assert img[mask].max() > 1.3 * img[shell].mean()
        else:
            # Heterogeneous: enhancing parts and non-enhancing parts side by side.
            assert enh_lo - 0.2 <= img[mask].max() <= enh_hi + 0.01
            assert img[core].min() < 0.85 * img[mask].max()
    # Normal white matter, away from lesions and oedema, sits at the reference level (WM = 1).
    far = ~ndimage.binary_dilation(lab > 0, iterations=15)
    assert 0.92 < np.median(img[(tissue == TISSUE_WM) & far]) < 1.08


def test_confounders_enhance_and_are_never_labelled(clean, many):
    for case in (clean, many):
        lab = arr(case.labels)
        for name, mask in case.confounders.items():
            m = arr(mask) > 0
            assert not np.any(m & (lab > 0)), f"{name} carries a lesion label"
    img = arr(clean.image).astype(float) / clean.wm_level
    vessels = arr(clean.confounders["vessels"]) > 0
    dura = arr(clean.confounders["dura"]) > 0
    choroid = arr(clean.confounders["choroid"]) > 0
    assert vessels.sum() > 100 and dura.sum() > 100 and choroid.sum() > 5
    # Vessels look like lesions: as bright as enhancing tissue.
    assert np.median(img[vessels]) > 1.2
    assert np.median(img[choroid]) > 1.1


def test_written_dataset_layout_geometry_and_determinism(tmp_path: Path):
    cfg = SynthConfig(**SMALL, n_lesions=4)
    a, b = tmp_path / "a", tmp_path / "b"
    write_dataset(a, 2, seed=7, config=cfg, preview=True)
    write_dataset(b, 2, seed=7, config=cfg, preview=True)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert {str(f) for f in files} >= {
        "dataset.json", "imagesTr/synth_000_0000.nii.gz", "labelsTr/synth_000.nii.gz",
        "instancesTr/synth_001.nii.gz", "brainmasksTr/synth_001.nii.gz", "lesionsTr/synth_000.json",
        "preview/synth_001.png"}

    def digest(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    assert [digest(a / f) for f in files] == [digest(b / f) for f in files], "same seed, different bytes"
    # Case k does not depend on N.
    c = tmp_path / "c"
    write_dataset(c, 1, seed=7, config=cfg, start=1)
    assert digest(c / "imagesTr/synth_001_0000.nii.gz") == digest(a / "imagesTr/synth_001_0000.nii.gz")
    # Another seed gives another case.
    d = tmp_path / "d"
    write_dataset(d, 1, seed=8, config=cfg)
    assert digest(d / "imagesTr/synth_000_0000.nii.gz") != digest(a / "imagesTr/synth_000_0000.nii.gz")

    desc = json.loads((a / "dataset.json").read_text())
    assert desc["channel_names"] == {"0": "CE-T1"}
    assert desc["labels"] == {"background": 0, "metastasis": 1}
    assert desc["numTraining"] == 2 and desc["file_ending"] == ".nii.gz"
    assert desc["synthetic"]["seed"] == 7 and desc["synthetic"]["options"]["n_lesions"] == 4
    # Extending the dataset (start=2) keeps the old cases and counts them all.
    write_dataset(c, 1, seed=7, config=cfg, start=2)
    assert json.loads((c / "dataset.json").read_text())["numTraining"] == 2
    with pytest.raises(OutputError, match="already exists"):
        write_dataset(c, 1, seed=7, config=cfg, start=2)
    # Binary labels for nnU-Net, instances matching the JSON, RAS centres through the NIfTI affine.
    binary = nib.load(a / "labelsTr/synth_000.nii.gz")
    inst = nib.load(a / "instancesTr/synth_000.nii.gz")
    image = nib.load(a / "imagesTr/synth_000_0000.nii.gz")
    assert np.allclose(binary.affine, inst.affine) and np.allclose(image.affine, inst.affine)
    assert binary.get_data_dtype() == np.uint8 and inst.get_data_dtype() == np.uint16
    assert image.get_data_dtype() == np.int16
    bdata, idata = np.asanyarray(binary.dataobj), np.asanyarray(inst.dataobj)
    assert set(np.unique(bdata)) <= {0, 1} and np.array_equal(bdata > 0, idata > 0)
    lesions = json.loads((a / "lesionsTr/synth_000.json").read_text())["lesions"]
    assert len(lesions) == 4
    for les in lesions:
        ijk = np.argwhere(idata == les["id"]).mean(0)
        ras = inst.affine[:3, :3] @ ijk + inst.affine[:3, 3]
        assert np.allclose(ras, les["centre_ras_mm"], atol=0.01)


def test_anisotropic_acquisition_blurs_the_thick_axis():
    cfg = SynthConfig(anatomy="mni152", spacing_mm=(1.5, 1.5, 1.5), field_of_view="brain", n_lesions=1,
                      anisotropic_acquisition=(1.5, 1.5, 4.5), confounders=False)
    case = make_case(2, cfg)
    assert case.info["acquisition"]["acquired_spacing_mm"] == [1.5, 1.5, 4.5]
    img = arr(case.image).astype(float)
    brain = arr(case.brain) > 0
    dz = np.abs(np.diff(img, axis=0))[brain[1:] & brain[:-1]].mean()
    dx = np.abs(np.diff(img, axis=2))[brain[:, :, 1:] & brain[:, :, :-1]].mean()
    assert dz < 0.8 * dx
    assert case.image.GetSpacing() == (1.5, 1.5, 1.5)


def test_spacing_range_gives_per_case_spacing():
    cfg = SynthConfig(anatomy="mni152", field_of_view="brain", spacing_range_mm=(2.5, 3.5), n_lesions=2)
    spacings = {make_case(s, cfg).image.GetSpacing() for s in (1, 2)}
    assert len(spacings) == 2
    for sx, sy, sz in spacings:
        assert sx == sy and 2.5 <= sx <= 3.5 and 2.5 <= sz <= 3.5


def test_tissue_regions_give_grey_white_junction_lesions():
    case = make_case(4, SynthConfig(**SMALL, n_lesions=30, diameter_range_mm=(2.0, 4.0)))
    locations = [les["location"] for les in case.lesions]
    assert locations.count("gw_junction") > len(locations) / 3
    assert REGION_JUNCTION == 1 and TISSUE_WM == 3


@pytest.mark.skipif(not colin27_available(), reason="Debian mricron-data (Colin27) not installed")
def test_colin27_has_real_skull():
    case = make_case(1, SynthConfig(anatomy="colin27", spacing_mm=3.0, n_lesions=2))
    img = arr(case.image).astype(float) / case.wm_level
    brain = arr(case.brain) > 0
    assert case.info["anatomy"] == "colin27"
    # Scalp and skull: plenty of signal outside the brain mask.
    assert (img[~brain] > 0.3).sum() > 0.3 * brain.sum()


def test_cli_writes_and_refuses_to_overwrite(tmp_path: Path, capsys):
    out = tmp_path / "ds"
    args = ["synth", "-n", "1", "-o", str(out), "--seed", "3", "--anatomy", "mni152", "--spacing", "3",
            "--field-of-view", "brain", "--stratum", "1-3", "--progress", "none"]
    assert cli_main(args) == 0
    assert (out / "imagesTr/synth_000_0000.nii.gz").is_file() and (out / "dataset.json").is_file()
    assert cli_main(args) == 4
    assert "already exists" in capsys.readouterr().err
    assert cli_main([*args, "--overwrite"]) == 0


def test_bad_options_are_clear_errors():
    from BrainMetSegLib.errors import InputError

    with pytest.raises(InputError, match="stratum"):
        SynthConfig(stratum="2-5")
    with pytest.raises(InputError, match="patterns"):
        SynthConfig(patterns=("spiky",))
    with pytest.raises(InputError, match="diameter_range_mm"):
        SynthConfig(diameter_range_mm=(10, 5))
    nan = float("nan")  # `--spacing nan` had ended in an internal error
    for option in ({"spacing_mm": nan}, {"spacing_mm": (1.0, nan, 1.0)},
                   {"anisotropic_acquisition": (nan, 1.0, 1.0)}, {"anisotropic_acquisition": (1.0, 1.0, float("inf"))}):
        with pytest.raises(InputError, match="spacing"):
            SynthConfig(**option)


def test_followups_refuse_the_reacquisition_options_they_cannot_honour(tmp_path: Path, capsys):
    # Follow-up series are rendered on the axis-aligned grid: taking --oblique there would write
    # an upright dataset while the user asked for an oblique one (silently ignored before).
    args = ["synth", "-n", "1", "-o", str(tmp_path / "ds"), "--spacing", "3", "--followups", "1",
            "--progress", "none"]
    for extra in (["--oblique", "20", "10"], ["--slice-thickness", "5"]):
        assert cli_main([*args, *extra]) == 2
        assert extra[0] in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_followup_options_without_followups_are_refused_not_ignored(tmp_path: Path, capsys):
    args = ["synth", "-n", "1", "-o", str(tmp_path / "ds"), "--spacing", "3", "--progress", "none"]
    for extra, named in ((["--followup-scenario", "repeat"], "--followup-scenario"),
                         (["--followup-motion", "0", "0"], "--followup-motion"),
                         (["--followup-interpolation", "cubic"], "--followup-interpolation")):
        assert cli_main([*args, *extra]) == 2
        assert f"{named}: only for follow-ups" in capsys.readouterr().err
    for motion in (["nan", "3"], ["-1", "3"], ["6", "51"]):
        assert cli_main([*args, "--followups", "1", "--followup-motion", *motion]) == 2
        assert "follow-up movement" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_same_case_whatever_the_thread_count():
    """Byte-identical arrays with one thread (torch, BLAS, ITK) and with the defaults."""
    import torch
    from threadpoolctl import threadpool_limits

    cfg = SynthConfig(**SMALL, n_lesions=3, anisotropic_acquisition=(3.0, 3.0, 6.0))

    def digest(case) -> str:
        h = hashlib.sha256()
        for img in (case.image, case.labels, case.brain):
            h.update(arr(img).tobytes())
        return h.hexdigest()

    reference = digest(make_case(9, cfg))
    torch_threads, itk_threads = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    try:
        torch.set_num_threads(1)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        with threadpool_limits(1):
            single = digest(make_case(9, cfg))
    finally:
        torch.set_num_threads(torch_threads)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_threads)
    assert single == reference
