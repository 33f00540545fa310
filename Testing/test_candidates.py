"""The candidate stage: features of small synthetic arrays, the JSON scorer against sklearn,
and the pipeline with a scorer on a tiny model."""

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.candidate_stage import (
    OUTSIDE_BRAIN_MAX_FRACTION,
    REASON_BELOW_CUT,
    apply_scorer,
    outside_fractions,
)
from BrainMetSegLib.candidates import FEATURES, ZScoredWithin, candidate_features, zscore_within
from BrainMetSegLib.checksums import sha256_file
from BrainMetSegLib.errors import ModelError, OptionError
from BrainMetSegLib.lesions import Frame
from BrainMetSegLib.scorer import ScorerError, scorer_from_dict
from BrainMetSegLib.train.candidate_scorer import (
    export_gbt,
    export_logistic,
    fit_platt,
    lowest_cut,
    operating_curve,
    pool,
    reliability,
    scorer_json,
)

F = {name: n for n, name in enumerate(FEATURES)}
MODES = {"default": {"cut": 0.5, "review_from": 0.2}, "sensitive": {"cut": 0.2, "review_from": 0.1}}


def scene():
    """A 48^3 1 mm block, brain = a ball of radius 22; a sphere (r 3) at the centre and a tube
    (r 1, 14 mm long along x) 4 mm from the brain's edge, both bright, probability 0.95."""
    z, y, x = np.indices((48, 48, 48)).astype(float)
    brain = (z - 24) ** 2 + (y - 24) ** 2 + (x - 24) ** 2 <= 22 ** 2
    sphere = (z - 24) ** 2 + (y - 24) ** 2 + (x - 24) ** 2 <= 9
    tube = ((z - 40) ** 2 + (y - 24) ** 2 <= 1) & (abs(x - 24) <= 7)
    rng = np.random.default_rng(0)
    image = rng.normal(100, 5, brain.shape) * brain + 100 * (sphere | tube)
    prob = np.where(sphere | tube, 0.95, 0.01) * brain
    labels = np.zeros(brain.shape, np.int32)
    labels[sphere], labels[tube] = 1, 2
    return labels, prob.astype(np.float32), image.astype(np.float32), brain


def test_features_tell_a_round_lesion_from_a_tube_near_the_edge():
    labels, prob, image, brain = scene()
    f = candidate_features(labels, prob, zscore_within(image, brain), brain, Frame.from_spacing((1, 1, 1)), 0.5)
    assert f.shape == (2, len(FEATURES))
    sphere, tube = f
    assert sphere[F["elongation"]] < 1.2 < 3 < tube[F["elongation"]]
    assert sphere[F["fill_ratio"]] > 2 * tube[F["fill_ratio"]]
    assert np.exp(sphere[F["log_volume_mm3"]]) == pytest.approx(np.count_nonzero(labels == 1))
    assert np.exp(sphere[F["log_diameter_mm"]]) == pytest.approx(7, abs=1)
    assert sphere[F["contrast"]] > 5 and tube[F["contrast"]] > 5  # both bright against their shell
    assert sphere[F["edge_distance_mm"]] == pytest.approx(15.0)   # capped; truly ~22 mm
    assert tube[F["edge_distance_mm"]] == pytest.approx(6.0, abs=1.0)
    assert sphere[F["logit_max_probability"]] == pytest.approx(np.log(0.95 / 0.05), rel=1e-3)
    # array axis 0 (k) is LPS/RAS z: the tube at k = 40 sits higher than the centred sphere
    assert tube[F["superior_fraction"]] > sphere[F["superior_fraction"]] + 0.3


def test_features_of_a_single_voxel_and_of_no_candidate_are_finite():
    labels, prob, image, brain = scene()
    one = np.zeros_like(labels)
    one[24, 24, 10] = 1
    f = candidate_features(one, prob + (one > 0), zscore_within(image, brain), brain,
                           Frame.from_spacing((0.8, 0.8, 2.0)), 0.5)
    assert np.isfinite(f).all() and f[0, F["elongation"]] >= 1.0
    assert candidate_features(np.zeros_like(labels), prob, image, brain, Frame.from_spacing((1, 1, 1)), 0.5).shape \
        == (0, len(FEATURES))


def _old_zscore_within(image_kji, brain_kji):
    """zscore_within as it was before it was computed box by box (the whole image at once)."""
    values = image_kji[brain_kji].astype(np.float64)
    if values.size == 0:
        return np.zeros(image_kji.shape, np.float32)
    sd = float(values.std()) or 1.0
    return ((image_kji - float(values.mean())) / sd).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_z_scored_boxes_equal_the_whole_images(dtype):
    labels, prob, image, brain = scene()
    image = (image * 3.7 + 11).astype(dtype)
    whole = _old_zscore_within(image.astype(np.float32), brain)
    assert np.array_equal(zscore_within(image.astype(np.float32), brain), whole)
    assert np.array_equal(zscore_within(image, brain), _old_zscore_within(image, brain))
    lazy = ZScoredWithin(image, brain, np.float32)
    boxes = [(slice(0, 20), slice(5, 30), slice(10, 48)), (slice(30, 48), slice(0, 48), slice(0, 10)),
             (slice(None), slice(None), slice(None))] + [(slice(k, k + 40),) * 3 for k in range(3)]
    for box in boxes:  # the last ones add up to more than the image: sliced from the whole
        assert np.array_equal(lazy[box], whole[box])
    assert lazy._whole is not None
    assert np.array_equal(ZScoredWithin(image, np.zeros_like(brain), np.float32)[boxes[0]],
                          np.zeros(whole[boxes[0]].shape, np.float32))
    frame = Frame.from_spacing((1, 1, 1))
    assert np.array_equal(candidate_features(labels, prob, ZScoredWithin(image, brain, np.float32), brain, frame, 0.5),
                          candidate_features(labels, prob, whole, brain, frame, 0.5))


def test_slice_spacing_feature_is_the_grids_coarsest_spacing():
    labels, prob, image, brain = scene()
    z = zscore_within(image, brain)
    for spacing_xyz, expected in (((1, 1, 1), 1.0), ((1, 1, 5), 5.0), ((0.5, 0.5, 7), 7.0), ((3, 1, 1), 3.0)):
        f = candidate_features(labels, prob, z, brain, Frame.from_spacing(spacing_xyz), 0.5)
        assert f[:, F["slice_spacing_mm"]] == pytest.approx([expected, expected])


def test_contrast_shell_is_sized_in_mm_on_thick_slices():
    from scipy import ndimage

    from BrainMetSegLib.candidates import SHELL_MM, shell_footprint

    # isotropic: one footprint reaches exactly what n iterations of the 6-connected cross reach
    cross = ndimage.generate_binary_structure(3, 1)
    dot = np.zeros((9, 9, 9), bool)
    dot[4, 4, 4] = True
    iso = ndimage.binary_dilation(dot, shell_footprint(SHELL_MM, np.array([1.0, 1.0, 1.0])))
    assert (iso == ndimage.binary_dilation(dot, cross, iterations=2)).all()
    # 7 mm slices, 0.5 mm in-plane (Z, Y, X): 2 mm in-plane is 4 voxels, along z one slice, not four
    thick = shell_footprint(SHELL_MM, np.array([7.0, 0.5, 0.5]))
    assert thick.shape == (3, 9, 9)
    assert thick[1, 4, :].sum() == 9 and thick[:, 4, 4].sum() == 3 and not thick[0, 4, 0]
    # a bright slab two slices (14 mm) above a candidate is not in its shell: contrast unchanged
    labels, prob, image, brain = scene()
    sub = (slice(None, None, 7), slice(None), slice(None))  # every 7th plane of the 1 mm block
    z = zscore_within(image, brain)[sub].copy()
    frame = Frame.from_spacing((1, 1, 7))
    base = candidate_features(labels[sub], prob[sub], z, brain[sub], frame, 0.5)
    z[1] += 50.0  # plane k = 1 is 14 mm below the sphere's plane k = 3 (24 mm / 7 mm)
    moved = candidate_features(labels[sub], prob[sub], z, brain[sub], frame, 0.5)
    assert moved[0, F["contrast"]] == pytest.approx(base[0, F["contrast"]])


def training_data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    y = (x[:, 0] + 0.5 * x[:, 3] - x[:, 5] + rng.normal(0, 0.7, n) > 0).astype(int)
    return x, y


def test_json_scorer_gives_sklearns_scores():
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = training_data()
    test = training_data(100, seed=1)[0]
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression().fit(scaler.transform(x), y)
    gbt = GradientBoostingClassifier(n_estimators=30, max_depth=3, subsample=0.8, random_state=0).fit(x, y)
    platt = {"kind": "platt", "a": 1.0, "b": 0.0}
    for model, expected in ((export_logistic(scaler, lr), lr.decision_function(scaler.transform(test))),
                            (export_gbt(gbt), gbt.decision_function(test))):
        data = json.loads(json.dumps(scorer_json(model, platt, MODES, 0.5, {})))  # through text
        scorer = scorer_from_dict(data)
        assert np.allclose(scorer.raw(test), expected, atol=1e-9)
    assert np.allclose(scorer.probability(test), gbt.predict_proba(test)[:, 1], atol=1e-9)


def test_damaged_scorer_files_are_refused():
    x, y = training_data()
    from sklearn.ensemble import GradientBoostingClassifier

    good = scorer_json(export_gbt(GradientBoostingClassifier(n_estimators=3).fit(x, y)),
                       {"kind": "platt", "a": 1.0, "b": 0.0}, MODES, 0.5, {})
    scorer_from_dict(good)
    bad_tree = json.loads(json.dumps(good))
    bad_tree["model"]["trees"][0]["left"][0] = 0  # a node that is its own child: no tree
    bad_feature = json.loads(json.dumps(good))
    bad_feature["model"]["trees"][0]["feature"][0] = len(FEATURES)
    bad_mode = json.loads(json.dumps(good))
    bad_mode["modes"]["default"]["review_from"] = 0.9
    for bad in (bad_tree, bad_feature, bad_mode, {**good, "features": ["x"]}, {**good, "format": "pickle"}):
        with pytest.raises(ScorerError, match="s.json: invalid candidate scorer"):
            scorer_from_dict(bad, "s.json")


def test_scorer_of_other_features_is_refused_naming_them():
    x, y = training_data()
    from sklearn.ensemble import GradientBoostingClassifier

    good = scorer_json(export_gbt(GradientBoostingClassifier(n_estimators=3).fit(x, y)),
                       {"kind": "platt", "a": 1.0, "b": 0.0}, MODES, 0.5, {})
    old = {**good, "features": list(FEATURES[:-1])}  # a demo <= 2.2.1 scorer: no slice spacing
    with pytest.raises(ScorerError, match="lacks slice_spacing_mm"):
        scorer_from_dict(old, "old.json")
    swapped = {**good, "features": [FEATURES[1], FEATURES[0], *FEATURES[2:]]}
    with pytest.raises(ScorerError, match="another order"):
        scorer_from_dict(swapped, "s.json")
    with pytest.raises(ScorerError, match="unknown colour"):
        scorer_from_dict({**good, "features": [*FEATURES, "colour"]}, "s.json")


def test_calibration_and_operating_curve_on_known_records():
    records = [{"features": [[0.0] * len(FEATURES)] * 3, "gt_of_candidate": [[1], [], []],
                "lesions": [{"id": 1, "diameter_mm": 4.0, "candidates": [1]},
                            {"id": 2, "diameter_mm": 12.0, "candidates": []}]}]
    p = pool(records)
    curve = operating_curve(np.array([0.9, 0.6, 0.1]), p, np.array([0.05, 0.5, 0.95]), {"small": (0, 5)})
    assert [r["detected"] for r in curve] == [1, 1, 0]
    assert [r["fp_per_case"] for r in curve] == [2.0, 1.0, 0.0]
    assert curve[0]["small"] == [1, 1]
    rows, ece = reliability(np.array([0.1, 0.1, 0.9, 0.9]), np.array([0, 0, 1, 1]))
    assert ece == pytest.approx(0.1) and [r["count"] for r in rows] == [2, 2]
    raw = np.r_[np.full(50, -2.0), np.full(50, 2.0)]
    label = np.r_[np.zeros(45), np.ones(5), np.zeros(5), np.ones(45)]
    cal = fit_platt(raw, label)
    p_hi = 1 / (1 + np.exp(-(cal["a"] * 2 + cal["b"])))
    assert p_hi == pytest.approx(0.9, abs=0.01)


def test_lowest_cut_respects_its_floor():
    curve = [{"cut": c, "fp_per_case": fp} for c, fp in ((0.01, 0.4), (0.3, 0.3), (0.5, 0.2), (0.7, 0.1))]
    assert lowest_cut(curve, 0.5) == 0.01
    assert lowest_cut(curve, 0.5, floor=0.5) == 0.5  # never spends the budget below the floor
    assert lowest_cut(curve, 0.15, floor=0.5) == 0.7
    assert lowest_cut(curve, 0.05, floor=0.5) == 1.0  # nothing qualifies: keep nothing


def bright_scorer(cut=0.5, review_from=0.2) -> dict:
    """A logistic scorer of the candidate's mean z-score only: lesion probability rises with brightness."""
    n = len(FEATURES)
    coef = np.zeros(n)
    coef[F["mean_intensity"]] = 0.5
    model = {"kind": "logistic", "mean": [0.0] * n, "scale": [1.0] * n, "coef": coef.tolist(), "intercept": -2.0}
    modes = {"default": {"cut": cut, "review_from": review_from}, "sensitive": {"cut": 0.1, "review_from": 0.05}}
    return scorer_json(model, {"kind": "platt", "a": 1.0, "b": 0.0}, modes, 0.5, {"note": "test"})


def images(arrays, spacing=(1.0, 1.0, 1.0)):
    out = []
    for a in arrays:
        im = sitk.GetImageFromArray(np.asarray(a))
        im.SetSpacing(spacing)
        out.append(im)
    return out


def test_apply_scorer_keeps_lesions_lists_possible_ones_and_drops_the_rest():
    labels, prob, image, brain = scene()
    dim = ((np.indices(labels.shape) - np.array([24, 10, 24])[:, None, None, None]) ** 2).sum(0) <= 4
    prob = np.where(dim, 0.9, prob).astype(np.float32)
    image = np.where(dim, image + 20, image)  # faintly bright: below the cut, above review_from
    p_img, ce, br = images([prob, image, brain.astype(np.uint8)])
    lab, table, possible, n = apply_scorer(p_img, ce, br, scorer_from_dict(bright_scorer()), "default", 0.4)
    assert n == 3
    assert [r["lesion_id"] for r in table] == [1, 2] and all(r["lesion_probability"] > 0.5 for r in table)
    assert len(possible) == 1 and possible[0]["status"] == "possible" and possible[0]["reason"] == REASON_BELOW_CUT
    assert 0.2 <= possible[0]["lesion_probability"] < 0.5
    arr = sitk.GetArrayFromImage(lab)
    assert set(np.unique(arr)) == {0, 1, 2} and not arr[dim].any()  # possible ones are not in the map
    assert table[0]["voxels"] >= table[1]["voxels"]
    lab, table, possible, _ = apply_scorer(p_img, ce, br, scorer_from_dict(bright_scorer(0.99, 0.99)), "default", 0.4)
    assert not table and not possible and not sitk.GetArrayFromImage(lab).any()


def test_a_lesion_mostly_outside_the_undilated_brain_is_only_possible():
    labels, prob, image, brain = scene()  # the gate: a ball of radius 22
    core = ((np.indices(brain.shape) - 24) ** 2).sum(0) <= 16 ** 2  # the mask before dilation
    rim = ((np.indices(brain.shape) - np.array([24, 24, 43])[:, None, None, None]) ** 2).sum(0) <= 4
    prob = np.where(rim & brain, 0.95, np.where(labels == 2, 0.01, prob)).astype(np.float32)  # no tube
    image = np.where(rim & brain, image + 100, image)
    cand = np.where(prob > 0.5, 1 + (rim & brain), 0).astype(np.int32)  # 1: the centre, 2: the rim
    fraction = outside_fractions(cand, core)
    assert fraction[0] == 0 and fraction[1] == 1.0 > OUTSIDE_BRAIN_MAX_FRACTION
    assert outside_fractions(np.zeros((2, 2, 2), np.int32), core[:2, :2, :2]).size == 0
    p_img, ce, gate, undilated = images([prob, image, brain.astype(np.uint8), core.astype(np.uint8)])
    scorer = scorer_from_dict(bright_scorer())
    lab, table, possible, n = apply_scorer(p_img, ce, gate, scorer, "default", 0.4)
    assert n == 2 and len(table) == 2 and not possible  # without the undilated mask: both lesions
    lab, table, possible, n = apply_scorer(p_img, ce, gate, scorer, "default", 0.4, undilated)
    assert n == 2 and len(table) == 1 and table[0]["voxels"] == np.count_nonzero(cand == 1)
    assert len(possible) == 1 and possible[0]["lesion_probability"] > 0.5
    assert possible[0]["reason"].endswith("% of its volume outside the brain mask")
    arr = sitk.GetArrayFromImage(lab)
    assert arr[labels == 1].all() and not arr[rim].any()  # the one inside kept, the rim not in the map
    core_half = core | (((np.indices(brain.shape) - 24) ** 2).sum(0) <= 19 ** 2)  # the rim half inside
    undilated_half = images([core_half.astype(np.uint8)])[0]
    assert 0.3 < outside_fractions(cand, core_half)[1] < OUTSIDE_BRAIN_MAX_FRACTION
    _, table, possible, _ = apply_scorer(p_img, ce, gate, scorer, "default", 0.4, undilated_half)
    assert len(table) == 2 and not possible  # partly inside (a lesion deepbet carved): still a lesion


def scored_copy(package_folder, folder):
    """A copy of a model package in ``folder`` whose card names :func:`bright_scorer`."""
    shutil.copytree(package_folder, folder)
    (folder / "candidate_scorer.json").write_text(json.dumps(bright_scorer()))
    card = json.loads((folder / "model.json").read_text())
    card["candidate_scorer"] = {"file": "candidate_scorer.json",
                                "sha256": sha256_file(folder / "candidate_scorer.json")}
    (folder / "model.json").write_text(json.dumps(card))
    return folder


@pytest.fixture
def scored_model(tiny_model, tmp_path):
    return scored_copy(tiny_model.folder, tmp_path / "scored")


def test_pipeline_with_a_scorer_writes_the_probability_and_the_review_list(scored_model, tmp_path):
    from test_pipeline import BrightNet, with_sphere

    from BrainMetSegLib.outputs import write_result
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter
    from conftest import make_volume

    image = make_volume((40, 48, 56))
    for centre, value in (((28, 24, 20), 300.0), ((14, 24, 20), 160.0)):
        image = with_sphere(image, centre, radius_mm=4.0, value=value)
    path = tmp_path / "case.nii.gz"
    sitk.WriteImage(image, str(path))
    seg = Segmenter(SegmentConfig(model=str(scored_model), device="cpu", brain_mask="none"), network=BrightNet())
    result = seg.run(str(path))
    assert result.n_lesions >= 1 and all(r["lesion_probability"] >= 0.5 for r in result.table)
    stage = result.provenance["settings"]["candidate_stage"]
    assert stage["mode"] == "default" and stage["cut"] == 0.5 and stage["candidates"] >= result.n_lesions
    assert stage["outside_brain_max_fraction"] == OUTSIDE_BRAIN_MAX_FRACTION and stage["possible_outside_brain"] == 0
    paths = write_result(result, tmp_path / "out", ".nii.gz")
    header = (tmp_path / "out" / "lesions.csv").read_text().splitlines()[0]
    assert header.endswith("lesion_probability") and "possible_csv" in paths
    assert (tmp_path / "out" / "possible_lesions.csv").read_text().startswith("lesion_id,")
    assert (tmp_path / "out" / "possible_lesions.csv").read_text().splitlines()[0].endswith(",status,reason")
    recorded = json.loads((tmp_path / "out" / "run.json").read_text())["settings"]["candidate_stage"]
    assert recorded["mode"] == "default" and recorded["outside_brain_max_fraction"] == OUTSIDE_BRAIN_MAX_FRACTION
    sensitive = Segmenter(SegmentConfig(model=str(scored_model), device="cpu", brain_mask="none", mode="sensitive"),
                          network=BrightNet()).run(str(path))
    assert sensitive.n_lesions >= result.n_lesions
    # an explicit threshold is the card's rule: no scorer, no lesion_probability in the CSV
    plain = Segmenter(SegmentConfig(model=str(scored_model), device="cpu", brain_mask="none", threshold=0.5),
                      network=BrightNet()).run(str(path))
    assert plain.provenance["settings"]["candidate_stage"] is None
    write_result(plain, tmp_path / "plain", ".nii.gz")
    assert "lesion_probability" not in (tmp_path / "plain" / "lesions.csv").read_text()
    assert not (tmp_path / "plain" / "possible_lesions.csv").exists()


def test_mode_needs_a_scorer_and_a_tampered_scorer_is_refused(tiny_model, scored_model):
    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

    with pytest.raises(OptionError, match="has no candidate scorer"):
        Segmenter(SegmentConfig(model=str(tiny_model.folder), device="cpu", mode="sensitive"))
    with pytest.raises(OptionError, match="--mode"):
        SegmentConfig(mode="sensitive", threshold=0.5)
    with pytest.raises(OptionError, match="--mode must be one of"):
        SegmentConfig(mode="loud")
    (scored_model / "candidate_scorer.json").write_text(json.dumps(bright_scorer(0.6)))
    with pytest.raises(ModelError, match="sha256 does not match"):
        Segmenter(SegmentConfig(model=str(scored_model), device="cpu"))


def test_dicom_sr_carries_the_lesion_probability(tmp_path):
    import highdicom as hd

    from BrainMetSegLib.dicom import ModelIdentity, export_dicom
    from BrainMetSegLib.images import read_image
    from BrainMetSegLib.lesions import lesion_table
    from dicom_phantoms import LESIONS, lesion_labels, phantom_image, write_series

    write_series(phantom_image("axial"), tmp_path / "series")
    labels = lesion_labels(read_image(tmp_path / "series"), LESIONS)
    table = lesion_table(labels)
    for n, row in enumerate(table):
        row["lesion_probability"] = 0.9 - 0.3 * n
    paths = export_dicom(labels, table, tmp_path / "series", tmp_path / "out", ("seg", "sr"),
                         ModelIdentity("m", "1", "ab" * 32, {"threshold_used": "0.5"}))
    groups = hd.sr.srread(paths["dicom_sr"]).content.get_volumetric_roi_measurement_groups()
    for group, row in zip(groups, table, strict=True):
        values = {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
        assert values["Probability of cancer"] == (pytest.approx(row["lesion_probability"]), "1")
    paths = export_dicom(labels, lesion_table(labels), tmp_path / "series", tmp_path / "out2", ("seg", "sr"),
                         ModelIdentity("m", "1", "ab" * 32, {"threshold_used": "0.5"}))  # no scorer: NaN
    for group in hd.sr.srread(paths["dicom_sr"]).content.get_volumetric_roi_measurement_groups():
        assert "Probability of cancer" not in {m.name.meaning for m in group.get_measurements()}


def test_measurable_candidates_are_kept_from_the_large_cut():
    data = bright_scorer(cut=0.5, review_from=0.2)
    data["modes"]["default"]["large_cut"] = 0.1
    data["large_from_mm"] = 10.0
    scorer = scorer_from_dict(data)
    features = np.zeros((3, len(FEATURES)))
    features[:, F["log_diameter_mm"]] = np.log([12.0, 6.0, 12.0])
    lesion, possible = scorer.decide("default", np.array([0.15, 0.15, 0.05]), features)
    assert lesion.tolist() == [True, False, False]  # 12 mm at 0.15 kept; 6 mm at 0.15 only possible
    assert possible.tolist() == [False, False, False]  # below review_from 0.2 and not large enough
    assert scorer.decide("sensitive", np.array([0.15]), features[:1])[0].tolist() == [True]  # its cut 0.1
    for bad in ({"large_cut": 0.7}, {"large_cut": -0.1}):
        broken = json.loads(json.dumps(data))
        broken["modes"]["default"].update(bad)
        with pytest.raises(ScorerError, match="large_cut"):
            scorer_from_dict(broken, "x.json")
    broken = json.loads(json.dumps(data))
    broken["large_from_mm"] = -3
    with pytest.raises(ScorerError, match="large_from_mm"):
        scorer_from_dict(broken, "x.json")
