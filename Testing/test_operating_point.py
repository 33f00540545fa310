"""Detect with one threshold, outline with another (BrainMetSegLib.operating_point)."""

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.lesions import label_instances
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels, lesion_labels_array


def _blob(shape, centre, sigma_vox, peak=1.0):
    grid = np.indices(shape, dtype=float)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
    return peak * np.exp(-d2 / (2 * sigma_vox ** 2))


def test_without_outline_the_old_single_threshold_rule_holds():
    rng = np.random.default_rng(0)
    prob = rng.random((20, 22, 24)).astype(np.float32)
    for point in (OperatingPoint(0.9), OperatingPoint(0.8, 3.0), OperatingPoint(0.8, 0.0, 0.8)):
        expected = label_instances(prob > point.threshold, (1.0, 1.0, 1.0), point.min_volume_mm3)
        np.testing.assert_array_equal(lesion_labels_array(prob, (1, 1, 1), point), expected)


def test_detection_grows_to_its_outline_region_and_nothing_else():
    prob = _blob((40, 40, 60), (20, 20, 15), 4.0)  # detected lesion
    prob += _blob((40, 40, 60), (20, 20, 45), 3.0, peak=0.6)  # outline-only blob: never a lesion
    labels = lesion_labels_array(prob, (1, 1, 1), OperatingPoint(0.9, 0.0, 0.3))
    assert labels.max() == 1
    left = prob[:, :, :30] > 0.3
    np.testing.assert_array_equal(labels[:, :, :30] == 1, left)
    assert not labels[:, :, 30:].any()
    # the outline draws the lesion far larger than the detection core
    assert (labels == 1).sum() > 5 * (prob > 0.9).sum()


def test_minimum_volume_is_judged_on_the_detection_not_the_outline():
    prob = _blob((30, 30, 30), (15, 15, 15), 4.0, peak=0.92)  # core above 0.9 is a few voxels
    core = int((prob > 0.9).sum())
    assert 0 < core < 20
    assert lesion_labels_array(prob, (1, 1, 1), OperatingPoint(0.9, 20.0, 0.3)).max() == 0
    assert lesion_labels_array(prob, (1, 1, 1), OperatingPoint(0.9, float(core), 0.3)).max() == 1


def test_touching_outlines_stay_separate_lesions():
    shape = (30, 30, 50)
    prob = np.maximum(_blob(shape, (15, 15, 17), 4.0), _blob(shape, (15, 15, 31), 5.0))
    assert label_instances(prob > 0.3, (1, 1, 1)).max() == 1  # one joined outline region
    labels = lesion_labels_array(prob, (1, 1, 1), OperatingPoint(0.9, 0.0, 0.3))
    assert labels.max() == 2
    np.testing.assert_array_equal(labels > 0, prob > 0.3)
    assert labels[15, 15, 17] != labels[15, 15, 31]
    # the larger blob is lesion 1; the split lies between the centres, near the valley
    assert labels[15, 15, 31] == 1
    boundary = [z for z in range(17, 31) if labels[15, 15, z] != labels[15, 15, z + 1]]
    valley = 17 + int(np.argmin(prob[15, 15, 17:32]))
    assert len(boundary) == 1 and abs(boundary[0] - valley) <= 1


def test_image_geometry_kept_and_spacing_used_for_volume():
    prob = _blob((20, 20, 20), (10, 10, 10), 3.0)
    image = sitk.GetImageFromArray(prob.astype(np.float32))
    image.SetSpacing((0.5, 0.5, 2.0))
    image.SetOrigin((3.0, -4.0, 5.0))
    labels = lesion_labels(image, OperatingPoint(0.9, 0.0, 0.5))
    assert labels.GetSpacing() == image.GetSpacing() and labels.GetOrigin() == image.GetOrigin()
    core = int((prob > 0.9).sum())
    # minimum volume in mm^3: voxel 0.5 mm^3, so the core of `core` voxels holds core/2 mm^3
    assert sitk.GetArrayViewFromImage(lesion_labels(image, OperatingPoint(0.9, core / 2 + 0.1, 0.5))).max() == 0


@pytest.mark.parametrize("args", [(0.0,), (1.0,), (0.9, -1.0), (0.5, 0.0, 0.6), (0.5, 0.0, 0.0),
                                  (float("nan"),)])
def test_invalid_operating_points_are_refused(args):
    with pytest.raises(ValueError):
        OperatingPoint(*args)


def test_settings_round_trip_and_old_runs():
    point = OperatingPoint(0.95, 10.0, 0.4)
    assert OperatingPoint.from_settings(point.as_settings()) == point
    old = OperatingPoint.from_settings({"threshold_used": 0.8, "min_volume_mm3_used": 5.0})
    assert old.outline == 0.8 and old.outline_threshold is None
    with pytest.raises(ValueError, match="run.json"):
        OperatingPoint.from_settings({"threshold_used": "abc"})


def test_outline_options_are_checked_and_resolved_against_the_card():
    from types import SimpleNamespace

    from BrainMetSegLib.errors import ModelError, OptionError
    from BrainMetSegLib.models import ModelCard
    from BrainMetSegLib.pipeline import SegmentConfig, resolve_operating_point

    for bad in (0.0, 1.0, float("nan"), "0.4", True):
        with pytest.raises(OptionError, match="--outline-threshold"):
            SegmentConfig(outline_threshold=bad)
    card = SimpleNamespace(threshold=0.95, min_lesion_volume_mm3=10.0, outline_threshold=0.4)
    assert resolve_operating_point(card, SegmentConfig()) == OperatingPoint(0.95, 10.0, 0.4)
    # a user's lower detection threshold caps the card's outline; their own outline must not exceed it
    assert resolve_operating_point(card, SegmentConfig(threshold=0.3)).outline == 0.3
    assert resolve_operating_point(card, SegmentConfig(outline_threshold=0.6)).outline == 0.6
    with pytest.raises(OptionError, match="above the detection threshold"):
        resolve_operating_point(card, SegmentConfig(threshold=0.5, outline_threshold=0.6))
    old = SimpleNamespace(threshold=0.8, min_lesion_volume_mm3=0.0, outline_threshold=None)
    assert resolve_operating_point(old, SegmentConfig()).outline == 0.8  # a card without the field: as before
    with pytest.raises(ModelError, match="outline_threshold"):
        ModelCard(name="m", version="1", architecture="BasicUNet", threshold=0.5, outline_threshold=0.7)
    with pytest.raises(ModelError, match="outline_threshold"):
        ModelCard(name="m", version="1", architecture="BasicUNet", threshold=0.5, outline_threshold="0.3")


def test_same_labels_treats_an_unset_outline_as_the_detection_threshold():
    assert OperatingPoint(0.8, 5.0).same_labels(OperatingPoint(0.8, 5.0, 0.8))
    assert not OperatingPoint(0.8, 5.0).same_labels(OperatingPoint(0.8, 5.0, 0.5))
    assert not OperatingPoint(0.8, 5.0).same_labels(OperatingPoint(0.8, 0.0))
    assert not OperatingPoint(0.8).same_labels(None)


def test_a_moved_threshold_takes_the_other_along_and_gui_range_is_valid():
    from BrainMetSegLib.operating_point import SLIDER_RANGE, follow

    assert follow(0.3, 0.5, "detection") == (0.3, 0.3)
    assert follow(0.7, 0.5, "detection") == (0.7, 0.5)
    assert follow(0.7, 0.9, "outline") == (0.9, 0.9)
    with pytest.raises(ValueError, match="moved"):
        follow(0.7, 0.5, "both")
    low, high = SLIDER_RANGE
    OperatingPoint(low, 0.0, low), OperatingPoint(high, 0.0, high)  # every slider position is a valid point
