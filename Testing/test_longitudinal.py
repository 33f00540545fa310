"""Follow-up comparison: matching rules, registration on a moved head, tracks against the
synthetic ground truth (a lesion that disappears and a new one), synth follow-ups, the CLI.

Synthetic series are small (brain field of view, 3 mm voxels) so the module runs in well under
a minute once the MNI152 template is prepared.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.cli import main as cli_main
from BrainMetSegLib.longitudinal import (
    CompareConfig,
    MatchConfig,
    Registration,
    TimePoint,
    compare_timepoints,
    match_lesions,
    register_followup,
)
from BrainMetSegLib.longitudinal.matching import Reference
from BrainMetSegLib.longitudinal.registration import transform_error_mm
from BrainMetSegLib.synth import SynthConfig, make_case
from BrainMetSegLib.synth.followup import FollowupConfig, make_series
from conftest import tiny_package

SMALL = SynthConfig(anatomy="mni152", spacing_mm=3.0, field_of_view="brain", n_lesions=5, diameter_range_mm=(8.0, 20.0))
SEED = 2  # mixed scenario: one lesion disappears, one is new (checked below)


@pytest.fixture(scope="module")
def series():
    return make_series(SEED, SMALL, 1, FollowupConfig(scenario="mixed"))


# --- matching rules on hand-made arrays -------------------------------------------------------

def _ball(shape, centre, r):
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= r * r


def _refs(labels):
    out = {}
    for t in np.unique(labels[labels > 0]):
        vox = np.flatnonzero(labels.ravel() == t)
        out[int(t)] = Reference(vox, np.argwhere(labels == t).mean(0)[::-1].astype(float))
    return out


def test_matching_overlap_split_merge_distance_new_absent():
    shape = (40, 40, 80)
    base = np.zeros(shape, np.int32)
    base[_ball(shape, (10, 10, 10), 4)] = 1  # will split
    base[_ball(shape, (10, 10, 30), 3)] = 2  # merges with 3
    base[_ball(shape, (10, 10, 38), 3)] = 3
    base[_ball(shape, (30, 30, 10), 4)] = 4  # shrinks to a voxel next to where it was
    base[_ball(shape, (30, 30, 40), 3)] = 5  # disappears
    base[_ball(shape, (30, 10, 60), 3)] = 6  # unchanged
    fu = np.zeros(shape, np.int32)
    fu[_ball(shape, (10, 10, 7), 2)] = 1
    fu[_ball(shape, (10, 10, 13), 2)] = 2
    fu[(_ball(shape, (10, 10, 30), 3) | _ball(shape, (10, 10, 38), 3)) | (
        np.indices(shape)[2] >= 30) & (np.indices(shape)[2] <= 38) & _ball(shape, (10, 10, 34), 2)] = 3
    fu[30, 30, 16] = 4  # 6 voxels away from lesion 4's centre: no overlap, within 8 mm
    fu[_ball(shape, (30, 10, 60), 3)] = 5
    fu[_ball(shape, (5, 35, 70), 2)] = 6  # new
    cents = {int(k): np.argwhere(fu == k).mean(0)[::-1].astype(float) for k in np.unique(fu[fu > 0])}
    res = match_lesions(_refs(base), fu, cents, MatchConfig(max_distance_mm=8.0))
    kinds = {tuple(link.tracks): (link.kind, link.lesions, link.method) for link in res.links}
    assert kinds[(1,)] == ("split", [1, 2], "overlap")
    assert kinds[(2, 3)] == ("merged", [3], "overlap")
    assert kinds[(4,)] == ("matched", [4], "distance")
    assert kinds[(6,)] == ("matched", [5], "overlap")
    assert res.new == [6] and res.absent == [5]
    # Beyond the distance limit the shrunken lesion is absent and the voxel is new.
    res = match_lesions(_refs(base), fu, cents, MatchConfig(max_distance_mm=5.0))
    assert 4 in res.absent and 4 in res.new


def test_a_fragment_touching_a_tracked_lesion_is_that_lesion_never_new():
    shape = (20, 20, 60)
    base = np.zeros(shape, np.int32)
    base[_ball(shape, (10, 10, 10), 5)] = 1
    fu = np.zeros(shape, np.int32)
    fu[_ball(shape, (10, 10, 9), 3)] = 1  # the lesion, smaller
    fu[_ball(shape, (10, 10, 17), 1)] = 2  # a fragment abutting its extent (nearest voxel 1 mm away)
    fu[_ball(shape, (10, 10, 24), 2)] = 3  # 7 mm clear of it: new
    fu[_ball(shape, (10, 10, 40), 3)] = 4  # far away: new
    cents = {int(k): np.argwhere(fu == k).mean(0)[::-1].astype(float) for k in np.unique(fu[fu > 0])}
    res = match_lesions(_refs(base), fu, cents, MatchConfig(max_distance_mm=0.0), spacing_xyz=(1.0, 1.0, 1.0))
    assert [(link.tracks, link.lesions, link.kind) for link in res.links] == [([1], [1, 2], "split")]
    assert res.new == [3, 4] and res.absent == []
    # With no contact allowed, the abutting fragment is new: the rule is the contact distance (mm).
    res = match_lesions(_refs(base), fu, cents, MatchConfig(contact_mm=0.0, max_distance_mm=0.0))
    assert 2 in res.new
    # Contact is measured in mm: on a 0.5 mm grid the fragment is 0.5 mm away.
    res = match_lesions(_refs(base), fu, cents, MatchConfig(contact_mm=0.6, max_distance_mm=0.0),
                        spacing_xyz=(0.5, 0.5, 0.5))
    assert res.links[0].lesions == [1, 2]


# --- registration on a moved head --------------------------------------------------------------

def test_registration_recovers_the_head_movement(series):
    baseline, (fu,) = series
    assert max(abs(a) for a in fu.movement["rotation_deg_ras"]) > 1.0  # it did move
    reg = register_followup(baseline.image, fu.case.image)
    brain = sitk.GetArrayFromImage(baseline.brain) > 0
    idx = np.argwhere(brain)[:: 97]
    pts = np.array([baseline.image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in p[::-1]))
                    for p in idx])
    err = transform_error_mm(reg.transform, fu.transform, pts)
    untouched = transform_error_mm(sitk.Euler3DTransform(), fu.transform, pts)
    assert np.median(untouched) > 4.0
    assert np.max(err) < 1.5, f"registration error up to {np.max(err):.2f} mm (3 mm voxels)"


def test_overlap_check_refuses_another_place():
    a = sitk.Image(20, 20, 20, sitk.sitkFloat32)
    b = sitk.Image(20, 20, 20, sitk.sitkFloat32)
    b.SetOrigin((500.0, 0.0, 0.0))
    from BrainMetSegLib.errors import InputError

    with pytest.raises(InputError, match="fu.nii.gz: the scan does not overlap the baseline"):
        register_followup(a, b, "fu.nii.gz")


# --- tracks against the synthetic truth ---------------------------------------------------------

def test_tracks_match_the_synthetic_correspondence(series):
    baseline, (fu,) = series
    assert fu.resolved and any(v is None for v in fu.correspondence.values()), "seed must give a gone and a new lesion"
    assert make_case(SEED, SMALL).lesions == baseline.lesions  # baseline = the dataset's case
    result = compare_timepoints([TimePoint("base", baseline.image, baseline.labels),
                                 TimePoint("fu", fu.case.image, fu.case.labels)])
    got = {}
    for tr in result.tracks:
        for lid in tr.at[1].lesion_ids:
            got[lid] = tr.track_id if tr.new_at is None else None
    assert got == fu.correspondence
    gone = sorted(tr.track_id for tr in result.tracks if tr.resolved_at == 1)
    assert gone == fu.resolved
    new = [tr for tr in result.tracks if tr.new_at == 1]
    assert len(new) == sum(v is None for v in fu.correspondence.values()) and new[0].at[1].status == "new"
    # The track label map carries track ids on the follow-up's grid.
    tmap = sitk.GetArrayFromImage(result.track_maps[1])
    fl = sitk.GetArrayFromImage(fu.case.labels)
    for lid, tid in fu.correspondence.items():
        if tid is not None:
            assert set(np.unique(tmap[fl == lid])) == {tid}
    # Plain data for the front ends.
    doc = json.loads(json.dumps(result.to_dict()))
    assert {"timepoints", "tracks", "rano_bm"} <= set(doc) and doc["tracks"][0]["colour_rgb"]
    assert doc["rano_bm"]["timepoints"][0]["radiographic_only"] is True


def test_given_registration_is_used_and_wrong_one_breaks_matching(series):
    baseline, (fu,) = series
    tps = [TimePoint("base", baseline.image, baseline.labels), TimePoint("fu", fu.case.image, fu.case.labels)]
    truth = Registration(fu.transform)
    good = compare_timepoints(tps, registrations=[None, truth])
    matched = sum(1 for tr in good.tracks if tr.new_at is None and tr.at[1].seen)
    assert matched == sum(v is not None for v in fu.correspondence.values())
    shifted = sitk.TranslationTransform(3, (40.0, 0.0, 0.0))
    bad = compare_timepoints(tps, CompareConfig(match=MatchConfig(max_distance_mm=2.0)),
                             registrations=[None, Registration(shifted)])
    assert sum(1 for tr in bad.tracks if tr.new_at is None and tr.at[1].seen) < matched


# --- synth follow-ups -----------------------------------------------------------------------------

def test_synth_followups_keep_the_dataset_and_are_deterministic(tmp_path: Path):
    common = ["synth", "-n", "1", "--seed", "4", "--anatomy", "mni152", "--spacing", "3", "--field-of-view",
              "brain", "--lesions", "4", "--diameter", "8", "20", "--progress", "none"]
    assert cli_main(common + ["-o", str(tmp_path / "plain")]) == 0
    assert cli_main(common + ["-o", str(tmp_path / "a"), "--followups", "2"]) == 0
    assert cli_main(common + ["-o", str(tmp_path / "b"), "--followups", "2"]) == 0

    def digest(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    for rel in ("imagesTr/synth_000_0000.nii.gz", "instancesTr/synth_000.nii.gz", "lesionsTr/synth_000.json"):
        assert digest(tmp_path / "plain" / rel) == digest(tmp_path / "a" / rel), rel
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "followups").iterdir())
    assert len(files) == 6
    assert [digest(tmp_path / "a" / f) for f in files] == [digest(tmp_path / "b" / f) for f in files]
    truth = json.loads((tmp_path / "a" / "followups" / "synth_000_fu2.json").read_text())
    assert truth["baseline"] == "synth_000" and truth["true_rano_bm"]["response"] in ("CR", "PR", "SD", "PD")
    assert "corticosteroid" in truth["true_rano_bm"]["note"]
    ids = {int(k) for k in truth["truth"]["correspondence"]}
    inst = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a" / "followups" / "synth_000_fu2_instances.nii.gz")))
    assert ids == set(np.unique(inst[inst > 0]).tolist())
    assert cli_main(common + ["-o", str(tmp_path / "a"), "--followups", "2"]) == 4  # exists: refuses


def test_followup_scenarios(series):
    _, (fu,) = series
    assert fu.scenario == "mixed"
    base, fus = make_series(SEED, SMALL, 1, FollowupConfig(scenario="complete", max_rotation_deg=0, max_shift_mm=0))
    assert fus[0].case.lesions == [] and fus[0].resolved == [r["id"] for r in base.lesions]
    assert not sitk.GetArrayFromImage(fus[0].case.labels).any()
    # Without movement the anatomy stays in place: the brain masks agree (lesions aside).
    a, b = sitk.GetArrayFromImage(base.brain) > 0, sitk.GetArrayFromImage(fus[0].case.brain) > 0
    assert (a & b).sum() / (a | b).sum() > 0.97
    from BrainMetSegLib.errors import InputError

    with pytest.raises(InputError, match="scenario"):
        FollowupConfig(scenario="worse")


def test_a_repeat_followup_is_a_rescan_of_unchanged_lesions():
    """'repeat' (test-retest): every lesion exactly as before, no new one, a fresh acquisition;
    without movement the very same label map; "auto" never draws it."""
    from BrainMetSegLib.synth.followup import SCENARIO_PROBABILITIES

    base, fus = make_series(SEED, SMALL, 2, FollowupConfig(scenario="repeat", max_rotation_deg=0, max_shift_mm=0))
    labels = sitk.GetArrayFromImage(base.labels)
    for fu in fus:
        assert fu.scenario == "repeat" and set(fu.scales.values()) == {1.0} and fu.resolved == []
        assert np.array_equal(sitk.GetArrayFromImage(fu.case.labels), labels)
        assert fu.track_of == {r["id"]: r["id"] for r in base.lesions if r["voxels"] > 0}
        image = sitk.GetArrayFromImage(fu.case.image)
        assert not np.array_equal(image, sitk.GetArrayFromImage(base.image))  # new noise and bias field
        # the baseline's protocol: point spread, acquisition grid, noise level; a new bias field
        acq, base_acq = fu.case.info["acquisition"], base.info["acquisition"]
        for key in ("blur_sigma_voxels", "noise_sigma_wm", "acquired_spacing_mm"):
            assert acq.get(key) == base_acq.get(key)
        assert acq["bias_strength"] != base_acq["bias_strength"]
    assert "repeat" not in SCENARIO_PROBABILITIES
    _, (moved,) = make_series(SEED, SMALL, 1, FollowupConfig(scenario="repeat"))
    assert {r["id"]: r["voxels"] for r in moved.case.lesions}.keys() == {r["id"] for r in base.lesions}


def test_a_cubic_move_blurs_the_followup_less_than_a_linear_one():
    """The painted head is moved onto the grid before the acquisition; linear interpolation blurs
    its edges (which the baseline never has), a cubic spline far less; labels identical."""
    clean = SynthConfig(anatomy="mni152", spacing_mm=3.0, field_of_view="brain", n_lesions=3,
                        diameter_range_mm=(8.0, 20.0), acquisition=False)

    def edges(img):
        return float(np.abs(np.diff(sitk.GetArrayFromImage(img).astype(float), axis=2)).mean())

    base, (linear,) = make_series(SEED, clean, 1, FollowupConfig(scenario="repeat"))
    _, (cubic,) = make_series(SEED, clean, 1, FollowupConfig(scenario="repeat", interpolation="cubic"))
    assert edges(linear.case.image) < edges(cubic.case.image) <= 1.05 * edges(base.image)
    assert np.array_equal(sitk.GetArrayFromImage(linear.case.labels), sitk.GetArrayFromImage(cubic.case.labels))
    assert sitk.GetArrayFromImage(cubic.case.image).min() >= 0
    from BrainMetSegLib.errors import InputError

    with pytest.raises(InputError, match="interpolation"):
        FollowupConfig(interpolation="quintic")


# --- the command --------------------------------------------------------------------------------

def _write(img: sitk.Image, path: Path) -> str:
    sitk.WriteImage(img, str(path))
    return str(path)


def test_compare_command_writes_table_report_and_refuses_overwrite(series, tmp_path: Path, capsys):
    baseline, (fu,) = series
    imgs = [_write(baseline.image, tmp_path / "b.nii.gz"), _write(fu.case.image, tmp_path / "f.nii.gz")]
    labs = [_write(baseline.labels, tmp_path / "bl.nii.gz"), _write(fu.case.labels, tmp_path / "fl.nii.gz")]
    out = tmp_path / "cmp"
    args = ["compare", *imgs, "--labels", *labs, "-o", str(out), "--progress", "none", "--days", "0", "90"]
    assert cli_main(args) == 0
    for name in ("longitudinal.json", "longitudinal.csv", "rano_bm.csv", "report.html", "curves.png", "montage.png",
                 "tracks_0.nii.gz", "tracks_1.nii.gz"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "longitudinal.json").read_text())
    assert doc["timepoints"][1]["days"] == 90 and doc["timepoints"][1]["registration"]["type"] == "rigid"
    html = (out / "report.html").read_text()
    assert "radiographic" in html and "corticosteroid" in html and "data:image/png;base64," in html
    assert "RANO-BM" in capsys.readouterr().err
    assert cli_main(args) == 4  # outputs exist
    assert "already exists" in capsys.readouterr().err
    # Bad input: one line, non-zero, names the problem.
    assert cli_main(["compare", imgs[0], "-o", str(tmp_path / "x")]) == 2
    assert cli_main(["compare", *imgs, "--labels", labs[0], "-o", str(tmp_path / "x")]) == 2
    assert "one value per input" in capsys.readouterr().err
    assert cli_main(["compare", imgs[0], str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "x")]) == 2
    assert "missing.nii.gz: not found" in capsys.readouterr().err
    # A label map on another grid is refused, naming the file.
    small = sitk.Image(5, 5, 5, sitk.sitkUInt16)
    small[2, 2, 2] = 1
    wrong = _write(small, tmp_path / "wrong.nii.gz")
    assert cli_main(["compare", *imgs, "--labels", labs[0], wrong, "-o", str(tmp_path / "y")]) == 2
    assert "wrong.nii.gz: the label map is not on the grid" in capsys.readouterr().err


def _result_folder(folder: Path, image: sitk.Image, labels: sitk.Image) -> Path:
    """A folder as `segment` writes it (labels, lesions.json, run.json naming the scan)."""
    from BrainMetSegLib.checksums import sha256_file
    from BrainMetSegLib.lesions import lesion_table

    folder.mkdir(parents=True)
    scan = _write(image, folder.parent / f"{folder.name}_scan.nii.gz")
    _write(labels, folder / "lesion_labels.nii.gz")
    (folder / "lesions.json").write_text(json.dumps({"lesions": lesion_table(labels)}))
    (folder / "run.json").write_text(json.dumps({"inputs": {"t1ce": {"path": scan, "sha256": sha256_file(scan)}}}))
    return folder


def test_compare_reads_segment_result_folders(series, tmp_path: Path, capsys):
    baseline, (fu,) = series
    a = _result_folder(tmp_path / "base", baseline.image, baseline.labels)
    b = _result_folder(tmp_path / "fu", fu.case.image, fu.case.labels)
    assert cli_main(["compare", str(a), str(b), "-o", str(tmp_path / "cmp"), "--progress", "none", "--quiet"]) == 0
    doc = json.loads((tmp_path / "cmp" / "longitudinal.json").read_text())
    assert [t["name"] for t in doc["timepoints"]] == ["base", "fu"]
    assert len(doc["tracks"]) == len(baseline.lesions) + sum(v is None for v in fu.correspondence.values())
    # The scan changed after it was segmented: refused, naming it.
    _write(fu.case.image * 2, tmp_path / "fu_scan.nii.gz")
    assert cli_main(["compare", str(a), str(b), "-o", str(tmp_path / "cmp2")]) == 2
    assert "fu_scan.nii.gz: the scan changed since" in capsys.readouterr().err


def test_compare_grid_shifts_must_match_the_result_folders(series, tmp_path: Path, capsys):
    """compare --grid-shifts N sets how scans are segmented on the way; given result folders made
    another way, it is refused naming the folder, not left to hold for nothing."""
    baseline, (fu,) = series
    a = _result_folder(tmp_path / "base", baseline.image, baseline.labels)
    b = _result_folder(tmp_path / "fu", fu.case.image, fu.case.labels)
    out = ["-o", str(tmp_path / "cmp"), "--progress", "none", "--quiet"]
    assert cli_main(["compare", str(a), str(b), "--grid-shifts", "4", *out]) == 2
    assert "base: segmented with --grid-shifts 1, but --grid-shifts 4 was asked" in capsys.readouterr().err
    for folder in (a, b):
        run = json.loads((folder / "run.json").read_text())
        (folder / "run.json").write_text(json.dumps({**run, "settings": {"grid_shifts": 4}}))
    assert cli_main(["compare", str(a), str(b), "--grid-shifts", "4", *out]) == 0
    with pytest.raises(SystemExit) as exit_:
        cli_main(["compare", str(a), str(b), "--grid-shifts", "3", "-o", str(tmp_path / "c3")])
    assert exit_.value.code == 2 and not (tmp_path / "c3").exists()


def test_prior_lowers_the_threshold_only_where_the_baseline_had_a_lesion():
    from BrainMetSegLib.longitudinal.prior import PriorConfig, guided_labels, prior_region
    from BrainMetSegLib.operating_point import OperatingPoint

    shape = (30, 30, 60)
    prior = np.zeros(shape, np.uint16)
    prior[_ball(shape, (15, 15, 15), 4)] = 1
    prior_img = sitk.GetImageFromArray(prior)
    prior_img.SetSpacing((1.0, 1.0, 1.0))
    fu = sitk.Image(prior_img.GetSize(), sitk.sitkFloat32)
    fu.CopyInformation(prior_img)
    # The follow-up head moved 5 mm along x (LPS): the baseline lesion sits at x + 5 on it.
    reg = Registration(sitk.TranslationTransform(3, (5.0, 0.0, 0.0)))
    region = prior_region(prior_img, fu, reg, margin_mm=2.0)
    assert region[15, 15, 20] and not region[15, 15, 10 - 2] and region.sum() > prior.sum()
    prob = np.zeros(shape, np.float32)
    prob[_ball(shape, (15, 15, 20), 2)] = 0.5  # faint, where the prior lesion now is
    prob[_ball(shape, (15, 15, 45), 2)] = 0.5  # faint, elsewhere
    prob_img = sitk.GetImageFromArray(prob)
    prob_img.CopyInformation(fu)
    point = OperatingPoint(0.8, 0.0)
    guided = sitk.GetArrayFromImage(guided_labels(prob_img, region, point, PriorConfig(threshold_factor=0.5)))
    assert guided[15, 15, 20] > 0 and guided[15, 15, 45] == 0 and guided.max() == 1
    plain = sitk.GetArrayFromImage(guided_labels(prob_img, np.zeros(shape, bool), point))
    assert plain.max() == 0
    # With an outline threshold, lesions inside the prior are drawn out to at most the lowered threshold.
    prob[_ball(shape, (15, 15, 20), 3) & (prob == 0)] = 0.3
    prob_img = sitk.GetImageFromArray(prob)
    prob_img.CopyInformation(fu)
    outlined = sitk.GetArrayFromImage(guided_labels(prob_img, region, OperatingPoint(0.8, 0.0, 0.25)))
    assert (outlined == 1).sum() == _ball(shape, (15, 15, 20), 3).sum()


@pytest.fixture(scope="module")
def coarse_model(tmp_path_factory):
    """An untrained BasicUNet package on a 6 mm grid: a whole synthetic head is one 32^3 window."""
    return tiny_package(tmp_path_factory.mktemp("models") / "coarse", 6.0, "coarse-test")


def test_compare_segments_scans_on_the_way_with_prior(series, coarse_model, tmp_path: Path):
    baseline, (fu,) = series
    imgs = [_write(baseline.image, tmp_path / "base.nii.gz"), _write(fu.case.image, tmp_path / "fu.nii.gz")]
    out = tmp_path / "cmp"
    assert cli_main(["compare", *imgs, "-o", str(out), "--model", str(coarse_model.folder), "--brain-mask", "none",
                     "--device", "cpu", "--prior", "--progress", "none", "--quiet"]) == 0
    for name in ("base", "fu"):
        assert (out / "segmentations" / name / "lesion_labels.nii.gz").is_file()
    for name in ("base", "fu"):  # the prior acts on every time point alike
        run = json.loads((out / "segmentations" / name / "run.json").read_text())
        assert run["prior"]["threshold_factor"] == 0.5 and "symmetric" in run["prior"]["rule"]
    doc = json.loads((out / "longitudinal.json").read_text())
    assert doc["brainmetseg_compare"]["prior"]["threshold_factor"] == 0.5
    assert doc["timepoints"][1]["registration"]["type"] == "rigid"


def test_prior_on_candidate_stage_runs_acts_on_the_stages_decision_on_every_scan(series, coarse_model,
                                                                                 tmp_path: Path):
    """--prior on a scorer's runs is no longer refused: it promotes possible lesions where another
    scan has a lesion (never re-thresholds), on every time point alike, and says so."""
    from test_candidates import scored_copy

    baseline, (fu,) = series
    scored = scored_copy(coarse_model.folder, tmp_path / "scored")
    imgs = [_write(baseline.image, tmp_path / "base.nii.gz"), _write(fu.case.image, tmp_path / "fu.nii.gz")]
    common = [*imgs, "--model", str(scored), "--brain-mask", "none", "--device", "cpu", "--progress", "none", "--quiet"]
    out = tmp_path / "cmp"
    assert cli_main(["compare", *common, "-o", str(out), "--prior"]) == 0
    doc = json.loads((out / "longitudinal.json").read_text())
    prior = doc["brainmetseg_compare"]["prior"]
    assert "candidate stage" in prior["rule"] and prior["sensitive_cut"] > 0
    assert set(prior["promoted"]) == {"base", "fu"}  # every time point, promoted or not
    for name in ("base", "fu"):
        run = json.loads((out / "segmentations" / name / "run.json").read_text())
        assert run["prior"] == prior and run["settings"]["candidate_stage"]
