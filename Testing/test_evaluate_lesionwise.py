"""Lesion-wise matching on hand-built masks whose answers are known by construction,
cross-checked against panoptica and a transcription of the published BraTS-METS 2023 code."""

from __future__ import annotations

import math

import cc3d
import numpy as np
import pytest
from scipy import ndimage

from BrainMetSegLib.evaluate import lesionwise as lw
from BrainMetSegLib.evaluate.case import evaluate_case

ISO = (1.0, 1.0, 1.0)


def empty(shape=(32, 32, 32)):
    return np.zeros(shape, bool)


def cube(a, z, y, x, n):
    a[z:z + n, y:y + n, x:x + n] = True
    return a


def run(gt, pred, rule="overlap", spacing=ISO):
    match = lw.match_lesions(gt, pred, spacing, rule)
    return match, lw.summarise(match)


# ----------------------------------------------------------------------------- known answers

def test_perfect_prediction_all_rules():
    gt = cube(cube(empty(), 4, 4, 4, 4), 20, 20, 20, 5)
    for rule in lw.RULES:
        match, s = run(gt, gt.copy(), rule)
        assert s["gt_lesions"] == 2 and s["detected_lesions"] == 2 and s["fp_lesions"] == 0
        assert s["lesion_sensitivity"] == 1 and s["lesion_ppv"] == 1 and s["lesion_f1"] == 1
        assert s["lesionwise_dice"] == 1 and s["lesionwise_hd95_mm"] == 0
        assert all(g.dice == 1 and g.hd95_mm == 0 for g in match.gt)


def test_two_touching_gt_lesions_are_one_component():
    # Two 4^3 cubes sharing a face, and two touching only at a corner: 26-connectivity joins both pairs.
    gt = cube(cube(empty(), 2, 2, 2, 4), 2, 2, 6, 4)
    gt = cube(cube(gt, 16, 16, 16, 3), 19, 19, 19, 3)
    pred = cube(empty(), 2, 2, 2, 4)  # covers only the first cube of the first pair
    match, s = run(gt, pred)
    assert s["gt_lesions"] == 2
    first = next(g for g in match.gt if g.voxels == 128)
    assert first.detected and first.dice == pytest.approx(2 * 64 / (128 + 64))
    assert s["detected_lesions"] == 1 and s["missed_lesions"] == 1


def test_lesions_one_voxel_apart_are_two_but_merged_by_brats_dilation():
    gt = cube(cube(empty(), 8, 8, 8, 4), 8, 8, 13, 4)  # gap of one voxel (x = 12)
    pred = cube(empty(), 8, 8, 8, 4)
    _, s = run(gt, pred, "overlap")
    assert s["gt_lesions"] == 2 and s["detected_lesions"] == 1
    match, s = run(gt, pred, "brats")
    assert s["gt_lesions"] == 1 and s["detected_lesions"] == 1
    assert match.gt[0].voxels == 128
    assert match.gt[0].dice == pytest.approx(2 * 64 / (128 + 64))
    # two voxels apart: the dilated masks touch (26-connected), still one lesion
    gt2 = cube(cube(empty(), 8, 8, 8, 4), 8, 8, 14, 4)
    _, s = run(gt2, pred, "brats")
    assert s["gt_lesions"] == 1
    # three voxels apart: two lesions
    gt3 = cube(cube(empty(), 8, 8, 8, 4), 8, 8, 15, 4)
    _, s = run(gt3, pred, "brats")
    assert s["gt_lesions"] == 2


def test_split_prediction():
    gt = cube(empty(), 8, 8, 8, 6)  # 216 voxels
    pred = empty()
    pred[8:14, 8:14, 8:10] = True  # 72
    pred[8:14, 8:14, 12:14] = True  # 72, gap at x = 10..11
    for rule in lw.RULES:
        match, s = run(gt, pred, rule)
        assert s["gt_lesions"] == 1 and s["detected_lesions"] == 1
        assert s["pred_lesions"] == 2 and s["tp_pred_lesions"] == 2 and s["fp_lesions"] == 0
        assert s["lesion_ppv"] == 1
        assert match.gt[0].matched_pred_ids == [1, 2]
        assert match.gt[0].dice == pytest.approx(2 * 144 / (216 + 144))


def test_merged_prediction():
    gt = cube(cube(empty(), 8, 8, 4, 4), 8, 8, 12, 4)  # 64 + 64, 4 voxels apart along x
    pred = empty()
    pred[8:12, 8:12, 4:16] = True  # one block over both (192 voxels)
    for rule in ("overlap", "dice0.1"):
        match, s = run(gt, pred, rule)
        assert s["gt_lesions"] == 2 and s["detected_lesions"] == 2
        assert s["pred_lesions"] == 1 and s["tp_pred_lesions"] == 1 and s["fp_lesions"] == 0
        for g in match.gt:
            assert g.dice == pytest.approx(2 * 64 / (64 + 192))
            assert g.matched_pred_ids == [1]
    # a huge merged prediction: Dice per GT lesion < 0.1 -> missed under Wald's rule, and an FP
    big = empty()
    big[2:30, 2:30, 2:30] = True
    _, s = run(gt, big, "dice0.1")
    assert s["detected_lesions"] == 0 and s["fp_lesions"] == 1
    _, s = run(gt, big, "overlap")
    assert s["detected_lesions"] == 2 and s["fp_lesions"] == 0


def test_lesion_at_volume_edge():
    gt = cube(empty(), 0, 0, 0, 3)
    gt[29:32, 29:32, 29:32] = True
    pred = gt.copy()
    pred[0, 0, 0] = False
    match, s = run(gt, pred)
    assert s["gt_lesions"] == 2 and s["detected_lesions"] == 2 and s["fp_lesions"] == 0
    corner = match.gt[0]
    assert corner.dice == pytest.approx(2 * 26 / 53)
    assert corner.longest_diameter_mm == pytest.approx(match.gt[1].longest_diameter_mm)
    assert match.gt[1].hd95_mm == 0


def test_anisotropic_voxels_volume_diameter_hd95():
    spacing = (0.5, 0.5, 3.0)  # x, y, z mm
    gt = empty()
    gt[10, 10, 4:24] = True  # 20 voxels along x: 10 mm
    match, s = run(gt, gt, spacing=spacing)
    g = match.gt[0]
    assert g.volume_mm3 == pytest.approx(20 * 0.75)
    assert g.longest_diameter_mm == pytest.approx(10.0, abs=0.6)
    assert g.size_bin == ">=10 mm"
    gt2 = empty()
    gt2[10:13, 10, 10] = True  # 3 slices along z: 9 mm
    match, _ = run(gt2, gt2, spacing=spacing)
    assert match.gt[0].longest_diameter_mm == pytest.approx(9.0, abs=1.6)
    assert match.gt[0].size_bin == "3-10 mm"
    # one-voxel shift along z costs 3 mm of HD95, along x 0.5 mm
    block = empty()
    block[10:14, 10:18, 10:18] = True
    assert lw.hd95_mm(block, np.roll(block, 1, axis=0), spacing) == pytest.approx(3.0)
    assert lw.hd95_mm(block, np.roll(block, 1, axis=2), spacing) == pytest.approx(0.5)


def test_fp_size_limit_and_size_bins():
    gt = cube(empty(), 2, 2, 2, 2)  # diameter ~2 mm -> "<3 mm"
    pred = gt.copy()
    pred[20:22, 20:22, 20:22] = True  # small FP
    pred[10, 10, 5:20] = True  # 15 mm long FP
    match, s = run(gt, pred)
    assert s["fp_lesions"] == 2 and s["fp_lesions_ge10mm"] == 1
    assert match.gt[0].size_bin == "<3 mm"
    assert s["sensitivity_<3 mm"] == 1 and math.isnan(s["sensitivity_>=10 mm"])


@pytest.mark.parametrize("rule", lw.RULES)
def test_empty_cases(rule):
    gt = cube(empty(), 4, 4, 4, 4)
    # no GT, no prediction
    _, s = run(empty(), empty(), rule)
    assert s["fp_lesions"] == 0 and math.isnan(s["lesion_sensitivity"]) and math.isnan(s["lesion_ppv"])
    assert math.isnan(s["lesion_f1"]) and s["lesionwise_dice"] == 1 and s["lesionwise_hd95_mm"] == 0
    # GT without prediction
    match, s = run(gt, empty(), rule)
    assert s["lesion_sensitivity"] == 0 and math.isnan(s["lesion_ppv"]) and s["lesion_f1"] == 0
    assert s["lesionwise_dice"] == 0 and s["lesionwise_hd95_mm"] == lw.BRATS_HD95_MISS_MM
    assert math.isnan(match.gt[0].hd95_mm)
    # prediction without GT
    _, s = run(empty(), gt, rule)
    assert s["fp_lesions"] == 1 and s["lesion_ppv"] == 0 and math.isnan(s["lesion_sensitivity"])
    assert s["lesion_f1"] == 0 and s["lesionwise_dice"] == 0


def test_case_level_empty_conventions():
    e = np.zeros((16, 16, 16), np.uint8)
    r = evaluate_case(e, e, spacing_xyz=ISO).metrics
    assert r["dice"] == 1 and r["fp_lesions"] == 0 and math.isnan(r["lesion_sensitivity"])
    assert math.isnan(r["precision"]) and math.isnan(r["recall"]) and math.isnan(r["mcc"])


def test_brats_small_lesion_dropped_and_dilated_touch():
    gt = cube(empty(), 10, 10, 10, 4)
    gt[25, 25, 25:27] = True  # 2 voxels = 2 mm^3: dropped by BraTS-MET (volume <= 2)
    pred = empty()
    pred[10:14, 10:14, 14] = True  # next to the GT cube (ends at x = 13): touches only its dilation
    pred[25, 25, 25] = True  # on the dropped lesion: not an FP
    match, s = run(gt, pred, "brats")
    assert s["gt_lesions"] == 1 and s["gt_lesions_excluded"] == 1
    assert s["detected_lesions"] == 1 and s["fp_lesions"] == 0
    _, s_overlap = run(gt, pred, "overlap")
    # Any-overlap needs a shared voxel: the cube is missed and its neighbour is an FP.
    assert s_overlap["gt_lesions"] == 2 and s_overlap["fp_lesions"] == 1


# ----------------------------------------------------------------------------- random blob masks

def blobs(seed: int, shape=(40, 40, 40), n=6):
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    gt, pred = np.zeros(shape, bool), np.zeros(shape, bool)
    for _ in range(n):
        c = rng.integers(5, np.array(shape) - 5)
        r = rng.uniform(1.0, 4.0)
        gt |= (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r
        if rng.random() < 0.75:
            c2 = c + rng.integers(-2, 3, 3)
            r2 = r * rng.uniform(0.5, 1.3)
            pred |= (z - c2[0]) ** 2 + (y - c2[1]) ** 2 + (x - c2[2]) ** 2 <= r2 * r2
    for _ in range(2):
        c = rng.integers(3, np.array(shape) - 3)
        pred |= (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= rng.uniform(0.8, 2.5) ** 2
    return gt, pred


def brats_reference(gt: np.ndarray, pred: np.ndarray, spacing=ISO, dil=1, thresh=2.0):
    """Transcription of the published BraTS 2023 get_lesion_wise_score / results logic
    (rachitsaluja/BraTS-2023-Metrics, brats_metrics.py), Dice part only (its HD95 uses
    DeepMind's surface-distance package, not installed here)."""
    struct = ndimage.generate_binary_structure(3, 2)
    gt = gt.astype(np.int64)
    pred = pred.astype(np.int64)
    gt_cc = cc3d.connected_components(gt, connectivity=26)
    pred_cc = cc3d.connected_components(pred, connectivity=26)
    dil_cc = cc3d.connected_components(ndimage.binary_dilation(gt, struct, iterations=dil), connectivity=26)
    combined = np.zeros_like(dil_cc)
    for comp in range(1, dil_cc.max() + 1):
        tmp = (dil_cc == comp).astype(dil_cc.dtype) * gt_cc
        tmp[tmp > 0] = comp
        combined += tmp
    vox = float(np.prod(spacing))
    tp, pairs = [], []
    for comp in range(1, combined.max() + 1):
        g = combined == comp
        if not g.any():
            continue
        gd = ndimage.binary_dilation(g, struct, iterations=dil)
        inter = [int(c) for c in np.unique(pred_cc * gd) if c != 0]
        tp.extend(inter)
        p = np.isin(pred_cc, inter)
        dice = 2 * (p & g).sum() / (p.sum() + g.sum())
        pairs.append((len(inter), g.sum() * vox, dice))
    fp = np.unique(pred_cc[np.isin(pred_cc, tp + [0], invert=True)])
    kept = [q for q in pairs if q[1] > thresh]
    n_tp = sum(1 for q in kept if q[0] > 0)
    n_fn = sum(1 for q in kept if q[0] == 0)
    denom = len(kept) + len(fp)
    lw_dice = sum(q[2] for q in kept) / denom if denom else 1.0
    return {"tp": n_tp, "fn": n_fn, "fp": len(fp), "lesionwise_dice": lw_dice}


@pytest.mark.parametrize("seed", range(6))
def test_brats_rule_matches_published_algorithm(seed):
    gt, pred = blobs(seed)
    ref = brats_reference(gt, pred)
    _, s = run(gt, pred, "brats")
    assert s["detected_lesions"] == ref["tp"]
    assert s["missed_lesions"] == ref["fn"]
    assert s["fp_lesions"] == ref["fp"]
    assert s["lesionwise_dice"] == pytest.approx(ref["lesionwise_dice"])
    counts = lw.detection_counts(gt, pred, "brats", ISO)
    assert counts == (ref["tp"] + ref["fn"], ref["tp"], ref["fp"])


def _panoptica(gt, pred, metric_name: str, threshold: float):
    from panoptica import (
        ConnectedComponentsInstanceApproximator,
        InputType,
        Metric,
        NaiveThresholdMatching,
        Panoptica_Evaluator,
    )
    from panoptica.utils.citation_reminder import disable_citation_reminder

    disable_citation_reminder()
    metric = getattr(Metric, metric_name)
    ev = Panoptica_Evaluator(expected_input=InputType.SEMANTIC,
                             instance_approximator=ConnectedComponentsInstanceApproximator(),
                             instance_matcher=NaiveThresholdMatching(matching_metric=metric,
                                                                     matching_threshold=threshold),
                             instance_metrics=[Metric.DSC, Metric.HD95], global_metrics=[Metric.DSC])
    return next(iter(ev.evaluate(pred.astype(np.uint8), gt.astype(np.uint8), verbose=False).values()))


def _one_to_one(match: lw.LesionMatch) -> bool:
    return all(len(g.matched_pred_ids) <= 1 for g in match.gt) and all(
        len(p.matched_gt_ids) <= 1 for p in match.pred)


# Blob sets whose matches are one-to-one under both rules (split/merge is a deliberate
# difference from panoptica, tested below); panoptica is a test dependency (pyproject "test").
@pytest.mark.parametrize("seed", [10, 11, 13, 14])
def test_overlap_and_dice_rules_agree_with_panoptica(seed):
    gt, pred = blobs(seed)
    for rule, metric, thr in (("overlap", "IOU", 1e-9), ("dice0.1", "DSC", 0.1)):
        match, s = run(gt, pred, rule)
        assert _one_to_one(match), "not a like-for-like case for panoptica"
        res = _panoptica(gt, pred, metric, thr)
        assert res.n_ref_instances == s["gt_lesions"]
        assert res.n_pred_instances == s["pred_lesions"]
        assert res.tp == s["detected_lesions"] == s["tp_pred_lesions"]
        assert res.fp == s["fp_lesions"]
        assert res.fn == s["missed_lesions"]
        dices = [g.dice for g in match.gt if g.detected]
        if dices:
            assert res.sq_dsc == pytest.approx(np.mean(dices))
            # HD95 differs by definition: panoptica (MedPy style) takes the 95th percentile of
            # both directions pooled; we take the larger directed one (BraTS / MONAI).
            hd = [g.hd95_mm for g in match.gt if g.detected]
            assert res.sq_hd95 == pytest.approx(np.mean(hd), rel=0.35, abs=0.6)


def test_documented_difference_from_panoptica_on_merged_prediction():
    # panoptica matches one-to-one: a merged prediction detects only one of two GT lesions,
    # any-overlap detects both (the clinical convention in SPEC.md).
    gt = cube(cube(empty(), 8, 8, 4, 4), 8, 8, 12, 4)
    pred = empty()
    pred[8:12, 8:12, 4:16] = True
    res = _panoptica(gt, pred, "IOU", 1e-9)
    _, s = run(gt, pred, "overlap")
    assert res.tp == 1 and res.fn == 1
    assert s["detected_lesions"] == 2 and s["missed_lesions"] == 0


@pytest.mark.parametrize("spacing,direction", [((1.0, 1.0, 1.0), None), ((0.6, 0.9, 2.5), None),
                                               ((0.8, 0.8, 1.2), (0, 1, 0, -1, 0, 0, 0, 0, 1))])
def test_diameters_equal_marching_cubes_surface(spacing, direction):
    """The one lesion measure (lesions.component_diameters_mm, batched) against its definition
    computed independently: the farthest pair of skimage marching-cubes vertices, per lesion."""
    from scipy.spatial.distance import pdist
    from skimage import measure

    from BrainMetSegLib.lesions import Frame, component_diameters_mm

    gt, pred = blobs(3)
    lab = cc3d.connected_components(gt | pred, connectivity=26)
    lab[5, 5, 5], lab[5, 5, 6] = 0, 0
    lab[2, 2, 2] = lab.max() + 1  # a single voxel
    lab[30, 30, 30] = lab.max() + 1
    lab[30, 30, 31] = lab.max() + 1  # touching another id: the shared face is both lesions' surface
    n = int(lab.max())
    frame = Frame.from_spacing(spacing, direction)
    fast = component_diameters_mm(lab, n, frame)
    slow = []
    for i in range(1, n + 1):
        verts = measure.marching_cubes(np.pad((lab == i).astype(np.uint8), 1), 0.5)[0] - 1
        slow.append(pdist(frame.lps(verts)).max())
    assert fast == pytest.approx(np.array(slow), abs=1e-9)
    assert fast[lab[2, 2, 2] - 1] == pytest.approx(max(spacing))  # one voxel: its largest edge


def test_diameters_of_many_specks_are_fast():
    """Thousands of tiny components (an untrained model's output) in well under a second."""
    import time

    from BrainMetSegLib.lesions import Frame, component_diameters_mm

    rng = np.random.default_rng(0)
    lab = cc3d.connected_components(rng.random((96, 96, 96)) > 0.985, connectivity=26)
    n = int(lab.max())
    assert n > 5000
    t0 = time.perf_counter()
    d = component_diameters_mm(lab, n, Frame.from_spacing((1.0, 1.0, 1.0)))
    assert time.perf_counter() - t0 < 5.0  # ~0.3 s on a quiet core; generous for a busy machine
    assert d.min() >= 1.0 and d[:50].max() > 1.0


def test_training_validation_counts_as_the_evaluator_does():
    """train.metrics (validation, operating point) is evaluate's overlap matching and size."""
    from BrainMetSegLib.operating_point import OperatingPoint
    from BrainMetSegLib.train.metrics import case_metrics, summarise

    gt, pred = blobs(4)
    result = case_metrics(pred.astype(np.float32) * 0.9, gt.astype(np.uint8), (0.8, 0.8, 1.5), OperatingPoint(0.5))
    match, s = run(gt, pred, "overlap", (0.8, 0.8, 1.5))
    assert [les["detected"] for les in result["lesions"]] == [g.detected for g in match.gt]
    assert [les["longest_diameter_mm"] for les in result["lesions"]] == [g.longest_diameter_mm for g in match.gt]
    assert result["fp"] == s["fp_lesions"] and result["n_pred"] == s["pred_lesions"]
    pooled = summarise([result])
    assert pooled["sensitivity"] == pytest.approx(s["lesion_sensitivity"])
    for name in lw.SIZE_BIN_NAMES:
        assert pooled[f"lesions_{name}"] == s[f"gt_lesions_{name}"]


def test_size_accuracy_reports_the_drawn_volume_and_diameter_of_detected_lesions():
    """A lesion drawn at half its volume shows a volume ratio of 0.5, per size bin and over all."""
    from BrainMetSegLib.evaluate.size_accuracy import size_accuracy

    gt = np.zeros((40, 40, 40), bool)
    pred = np.zeros_like(gt)
    gt[5:25, 5:25, 5:25] = True          # 20 mm cube (>= 10 mm bin)
    pred[5:15, 5:25, 5:25] = True        # drawn at half its volume
    gt[30:34, 30:34, 30:34] = True       # 4 mm cube (3-10 mm bin), drawn exactly
    pred[30:34, 30:34, 30:34] = True
    match = lw.match_lesions(gt, pred, (1.0, 1.0, 1.0))
    rows = {r["size_bin"]: r for r in size_accuracy(match.gt)}
    big = next(b for b in rows if b.startswith(">="))
    assert rows[big]["detected_lesions"] == 1 and rows[big]["volume_ratio_median"] == pytest.approx(0.5)
    assert rows[big]["diameter_error_mm_median"] < -1.0  # the half-cube's diagonal is shorter
    small = next(b for b in rows if b.startswith("3"))
    assert rows[small]["volume_ratio_median"] == pytest.approx(1.0)
    assert rows[small]["abs_diameter_error_mm_median"] == pytest.approx(0.0)
    assert rows["all"]["detected_lesions"] == 2
    assert rows["all"]["volume_ratio_median"] == pytest.approx(0.75)
    missed = lw.match_lesions(gt, np.zeros_like(gt), (1.0, 1.0, 1.0))
    assert size_accuracy(missed.gt)[-1]["detected_lesions"] == 0


def test_rethresholding_with_an_outline_draws_lesions_as_segment_does():
    from BrainMetSegLib.evaluate.case import EvaluationConfig

    grid = np.indices((30, 30, 30), dtype=float)
    prob = np.exp(-sum((g - 15) ** 2 for g in grid) / (2 * 4.0 ** 2)).astype(np.float32)
    gt = prob > 0.3
    tight = evaluate_case(gt, None, prob, None, EvaluationConfig(threshold=0.9), spacing_xyz=(1, 1, 1))
    drawn = evaluate_case(gt, None, prob, None, EvaluationConfig(threshold=0.9, outline_threshold=0.3),
                          spacing_xyz=(1, 1, 1))
    assert tight.gt_lesions[0].pred_volume_mm3 < 0.3 * gt.sum()
    assert drawn.gt_lesions[0].pred_volume_mm3 == pytest.approx(gt.sum())
    assert drawn.metrics["prediction_source"] == "probability > 0.9, outlined at > 0.3"
    with pytest.raises(ValueError):
        EvaluationConfig(threshold=0.5, outline_threshold=0.7)
