"""Lesion diameters on the CE-T1 image's own edge (BrainMetSegLib.image_edge, issue 26)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from BrainMetSegLib.image_edge import ON_IMAGE, lesion_edges
from BrainMetSegLib.lesions import ON_PROBABILITY, lesion_table
from BrainMetSegLib.longitudinal.measuring import measure_alike
from BrainMetSegLib.longitudinal.tracking import TimePoint
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels

SHAPE = (36, 40, 40)  # (z, y, x), 1 mm voxels
CENTRE = (18.0, 19.6, 20.3)  # on an axial slice (z), off the in-plane voxel centres
RADIUS = 5.2  # mm: the true lesion, 10.4 mm across
RUN = {"settings": {"threshold_used": 0.9, "min_volume_mm3_used": 0.0, "outline_threshold_used": 0.4}}


def _distance(centre=CENTRE) -> np.ndarray:
    zz, yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)


def _image(array: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(array.astype(np.float32))
    img.SetOrigin((-3.0, 7.0, 11.0))
    return img


def _scan(enhancement=300.0, background=100.0, noise=2.0, blur_mm=0.4, core=None, seed=0) -> sitk.Image:
    """A CE-T1-like scan of one lesion: partial-volume occupancy (a one-voxel ramp centred on the
    true outline, as the synth paints), blurred (the scanner's point spread), noisy. ``core``: a
    dark necrotic core of that radius (mm)."""
    d = _distance()
    value = np.full(SHAPE, enhancement)
    if core is not None:
        value = np.where(d < core, background * 0.6, value)
    occupancy = np.clip(RADIUS + 0.5 - d, 0, 1)
    img = background + occupancy * (value - background)
    img = ndimage.gaussian_filter(img, blur_mm)
    return _image(img + np.random.default_rng(seed).normal(0, noise, SHAPE))


def _model(radius: float, centre=CENTRE) -> tuple[sitk.Image, sitk.Image]:
    """A model's probability map whose 0.4-outline is a sphere of ``radius`` (mm) and its labels."""
    prob = _image(np.clip(0.4 + (radius - _distance(centre)) * 0.3, 0, 1))
    return prob, lesion_labels(prob, OperatingPoint(0.9, 0.0, 0.4))


def test_a_blurred_sphere_is_measured_on_its_edge_where_the_model_drew_it_small():
    prob, labels = _model(RADIUS - 0.9)  # the model's outline 1.8 mm short
    (outline,) = lesion_table(labels, prob, 0.4)
    assert outline["diameters_on"] == ON_PROBABILITY
    assert abs(outline["axial_longest_diameter_mm"] - 2 * RADIUS) > 1.5
    edge = lesion_edges(_scan(), labels)[1]
    assert edge.reason == "" and edge.row is not None
    assert abs(edge.row["axial_longest_diameter_mm"] - 2 * RADIUS) < 0.1
    assert abs(edge.row["axial_perpendicular_diameter_mm"] - 2 * RADIUS) < 0.1
    # drawn too large, the same edge
    prob, labels = _model(RADIUS + 0.8)
    assert abs(lesion_edges(_scan(), labels)[1].row["axial_longest_diameter_mm"] - 2 * RADIUS) < 0.1


def test_a_necrotic_core_is_inside_the_lesion():
    _, labels = _model(RADIUS - 0.5)
    edge = lesion_edges(_scan(core=3.0), labels)[1]
    assert edge.row is not None and abs(edge.row["axial_longest_diameter_mm"] - 2 * RADIUS) < 0.1


def test_refused_without_contrast_and_where_the_edge_leaks():
    _, labels = _model(RADIUS - 0.5)
    flat = lesion_edges(_scan(enhancement=102.0), labels)[1]  # 1 noise SD of enhancement
    assert flat.row is None and "no clear enhancement" in flat.reason
    # a bright vessel as bright as the lesion runs from it out of the neighbourhood
    scan = sitk.GetArrayFromImage(_scan())
    scan[18, 19:21, 20:] = 300.0
    leak = lesion_edges(_image(scan), labels)[1]
    assert leak.row is None and "leaks" in leak.reason


def test_compare_measures_on_the_image_edge_and_keeps_the_outline_where_it_is_refused():
    from BrainMetSegLib.image_edge import ImageEdgeConfig

    prob, labels = _model(RADIUS - 0.9)
    tps = [TimePoint("t0", _scan(seed=1), labels), TimePoint("t1", _scan(enhancement=102.0, seed=2), labels)]
    record = measure_alike(tps, [RUN, RUN], [prob, prob], ImageEdgeConfig())
    assert record["rule"] == "image edge, else probability outline"
    assert record["lesions_by_method"] == {"t0": {ON_IMAGE: 1}, "t1": {ON_PROBABILITY: 1}}
    assert "no clear enhancement" in record["image_edge_refused"]["t1"]["1"]
    assert abs(tps[0].table[0]["axial_longest_diameter_mm"] - 2 * RADIUS) < 0.1
    (outline,) = lesion_table(labels, prob, 0.4)
    assert tps[1].table[0]["axial_longest_diameter_mm"] == outline["axial_longest_diameter_mm"]
    assert tps[0].table[0]["rano_bm_measurable"] and not tps[1].table[0]["rano_bm_measurable"]
    # without the image edge: the probability outline, as before
    tps = [TimePoint("t0", _scan(seed=1), labels), TimePoint("t1", _scan(seed=2), labels)]
    assert measure_alike(tps, [RUN, RUN], [prob, prob])["rule"] == "probability outline"


def test_a_lesion_under_5_mm_on_the_outline_keeps_the_outline():
    from BrainMetSegLib.image_edge import measure_rows

    prob, labels = _model(2.3)  # 4.6 mm across on the outline
    rows = lesion_table(labels, prob, 0.4)
    assert len(rows) == 1 and 4.0 < rows[0]["axial_longest_diameter_mm"] < 5.0
    measured, refused = measure_rows(_scan(), labels, rows)
    assert measured == rows and refused == {"1": "under 5 mm on the probability outline"}
