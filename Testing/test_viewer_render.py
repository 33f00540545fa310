"""The web viewer's scene, rendered offscreen by Slicer's own views (no browser).

One SlicerApp per module (Slicer's displayable-manager factories are process-wide), on
the synthetic result of ``viewer_data`` (three lesions at threshold 0.8, four at 0.5).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import SimpleITK as sitk
from viewer_data import make_result_folder

from BrainMetSegLib.lesions import lesion_table
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels
from BrainMetSegLib.viewer import render
from BrainMetSegLib.viewer.result import ResultFolder
from BrainMetSegLib.viewer.session import ReviewError, ReviewSession


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    folder = make_result_folder(tmp_path_factory.mktemp("viewer"))
    app = render.offscreen_app((300, 300))
    s = ReviewSession(app, ResultFolder.open(folder))
    s.load()
    return s


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_each_lesion_is_drawn_in_its_colour_at_its_centroid(session):
    red = session.app.view_manager.get_view("Red")
    session.set_segment_opacity(1.0)
    rows = session.rows()
    assert [r.lesion_id for r in rows] == [1, 2, 3]
    colours = set()
    for row in rows:
        ras = session.jump_to_lesion(row.lesion_id)
        assert red.get_slice_value() == pytest.approx(ras[2], abs=0.01)
        x, y = render.ras_to_display_xy(red, ras)
        pixel = render.capture(red)[int(round(y)), int(round(x))]
        expected = np.array([int(row.color_hex[i:i + 2], 16) for i in (1, 3, 5)])
        assert np.abs(pixel.astype(int) - expected).max() <= 2, (row.lesion_id, pixel, row.color_hex)
        colours.add(row.color_hex)
        # A lesion hidden in the table is not drawn: the pixel shows the CE-T1 instead.
        session.set_lesion_visible(row.lesion_id, False)
        hidden = render.capture(red)[int(round(y)), int(round(x))]
        session.set_lesion_visible(row.lesion_id, True)
        assert np.abs(hidden.astype(int) - expected).max() > 30
    assert len(colours) == 3
    session.set_segment_opacity(0.5)


def test_all_four_views_draw(session):
    for tag in render.VIEW_TAGS:
        picture = render.capture(session.app.view_manager.get_view(tag))
        assert picture.std() > 5, f"{tag} view is blank"


def test_save_writes_a_new_version_and_leaves_the_originals_alone(session):
    folder = session.result.folder
    before = _digests(folder)
    # Paint with Slicer's paint effect: a mouse click in the axial view at lesion 2.
    red = session.app.view_manager.get_view("Red")
    ras = session.jump_to_lesion(2)
    session.set_effect("paint", brush_diameter_mm=12.0)
    x, y = render.ras_to_display_xy(red, ras)
    interactor = red.interactor()
    interactor.SetEventPosition(int(round(x)), int(round(y)))
    interactor.InvokeEvent("MouseMoveEvent")
    interactor.InvokeEvent("LeftButtonPressEvent")
    interactor.InvokeEvent("LeftButtonReleaseEvent")
    session.set_effect("none")
    assert session.edited
    with pytest.raises(ReviewError, match="unsaved edits"):
        session.apply_threshold(OperatingPoint(0.5, 0.0))

    version = session.save()
    assert version.parent == folder and version.name == "review_001"
    assert _digests(folder) == before  # originals byte-identical, nothing added beside them
    record = json.loads((version / "review.json").read_text())
    # the operating point the review started from, outline included (run.json's had none: detection)
    assert {k: record["source"][k] for k in ("threshold", "outline_threshold", "outline_threshold_original",
                                             "rethresholded")} == {"threshold": 0.8, "outline_threshold": 0.8,
                                                                   "outline_threshold_original": 0.8,
                                                                   "rethresholded": False}
    changes = {c["lesion_id"]: c for c in record["changes"]}
    assert changes[2]["status"] == "edited" and changes[2]["voxels_added"] > 0
    assert changes[1]["status"] == changes[3]["status"] == "unchanged"
    assert record["operations"] and record["operations"][0]["effect"] == "paint"
    assert record["originals_sha256"]["lesion_labels.nii.gz"] == before["lesion_labels.nii.gz"]
    saved = sitk.GetArrayFromImage(sitk.ReadImage(str(version / "lesion_labels.nii.gz")))
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "lesion_labels.nii.gz")))
    grown = (saved == 2) & (original != 2)
    assert grown.sum() == changes[2]["voxels_added"]
    assert ((saved != original) == grown).all()  # painting changed nothing else
    table = json.loads((version / "lesions.json").read_text())["lesions"]
    assert {r["lesion_id"]: r["voxels"] for r in table}[2] == int((saved == 2).sum())
    # A second save is another version; the first stays as it was.
    first = _digests(version)
    assert session.save().name == "review_002"
    assert _digests(version) == first


def test_threshold_change_matches_the_library_rethreshold(session):
    probability = session.probability
    for point in (OperatingPoint(0.5), OperatingPoint(0.5, 300.0), OperatingPoint(0.8, 0.0, 0.3),
                  OperatingPoint(0.8)):
        n = session.apply_threshold(point)
        assert session.operating_point == point
        expected = lesion_labels(probability, point)
        assert n == int(sitk.GetArrayViewFromImage(expected).max())
        assert len(session.segments()) == n == len(session.table_rows()) == len(session.rows())
        # The segments hold exactly the library's label map, the table its measures.
        assert (sitk.GetArrayFromImage(session.current_labels())
                == sitk.GetArrayFromImage(expected)).all()
        shown = {r.lesion_id: r.measures for r in session.rows()}
        for row in lesion_table(expected, probability, point.outline):  # on the outline drawn
            assert shown[row["lesion_id"]]["diameters_on"] == row["diameters_on"] == "probability"
            for key in ("voxels", "volume_mm3", "axial_perpendicular_diameter_mm", "centroid_s"):
                assert shown[row["lesion_id"]][key] == pytest.approx(row[key], abs=1e-6), key
    assert len(session.segments()) == 3
    session.apply_threshold(OperatingPoint(0.5, 0.0))
    assert len(session.segments()) == 4


def test_outline_draws_the_same_lesions_larger_and_too_many_lesions_change_nothing(session, monkeypatch):
    from BrainMetSegLib.viewer import session as session_module

    detected = session.apply_threshold(OperatingPoint(0.8))
    volumes = [r.measures["volume_mm3"] for r in session.rows()]
    assert session.apply_threshold(OperatingPoint(0.8, 0.0, 0.3)) == detected == 3
    outlined = [r.measures["volume_mm3"] for r in session.rows()]
    assert all(o > 1.5 * v for o, v in zip(outlined, volumes, strict=True)), (volumes, outlined)
    before = sitk.GetArrayFromImage(session.current_labels())
    monkeypatch.setattr(session_module, "MAX_LESIONS", 3)
    with pytest.raises(ReviewError, match=r"4 lesions \(more than 3\)"):
        session.apply_threshold(OperatingPoint(0.5))
    assert session.operating_point == OperatingPoint(0.8, 0.0, 0.3)  # refused: segments as they were
    assert (sitk.GetArrayFromImage(session.current_labels()) == before).all()
    assert len(session.table_rows()) == 3
    monkeypatch.undo()
    session.apply_threshold(OperatingPoint(0.8))


def _click(view, ras):
    x, y = render.ras_to_display_xy(view, ras)
    interactor = view.interactor()
    interactor.SetEventPosition(int(round(x)), int(round(y)))
    interactor.InvokeEvent("MouseMoveEvent")
    interactor.InvokeEvent("LeftButtonPressEvent")
    interactor.InvokeEvent("LeftButtonReleaseEvent")


def test_a_drawn_lesion_is_measured_saved_as_added_and_discard_restores(session):
    session.apply_threshold(OperatingPoint(0.8, 0.0))
    red = session.app.view_manager.get_view("Red")
    start = sitk.GetArrayFromImage(session.current_labels())
    # An empty spot inside the head, away from the lesions: voxel (28, 40, 14).
    ras = tuple(float(v) for v in session.image.TransformIndexToPhysicalPoint((28, 40, 14)) * np.array([-1, -1, 1]))
    from slicer import vtkMRMLSliceNode

    vtkMRMLSliceNode.JumpAllSlices(session.scene, *ras, vtkMRMLSliceNode.CenteredJumpSlice)
    new_id = session.add_lesion()
    assert new_id == 4
    session.set_effect("paint", brush_diameter_mm=6.0)
    _click(red, ras)
    session.set_effect("none")
    rows = {r.lesion_id: r for r in session.rows()}
    assert rows[4].measures == {}  # drawn, not measured yet
    assert session.remeasure() == 4
    rows = {r.lesion_id: r for r in session.rows()}
    assert rows[4].measures["voxels"] > 0
    assert session.lesion_ras(4)[2] == pytest.approx(ras[2], abs=1.6)  # within one slice (1.5 mm)
    version = session.save()
    record = json.loads((version / "review.json").read_text())
    assert {c["lesion_id"]: c["status"] for c in record["changes"]}[4] == "added"
    assert [op["effect"] for op in record["operations"]][:2] == ["add", "paint"]
    # Erase part of lesion 1 and discard: back to the saved state of the segments.
    session.jump_to_lesion(1)
    session.set_effect("erase", brush_diameter_mm=4.0)
    _click(red, session.lesion_ras(1))
    session.set_effect("none")
    assert session.edited
    edited = sitk.GetArrayFromImage(session.current_labels())
    assert (edited == 1).sum() < (start == 1).sum()
    session.discard_edits()
    assert not session.edited
    restored = sitk.GetArrayFromImage(session.current_labels())
    assert (restored == 1).sum() == (start == 1).sum() and (restored == 4).sum() > 0


def test_keep_largest_island_removes_a_stray_stroke(session):
    red = session.app.view_manager.get_view("Red")
    before = sitk.GetArrayFromImage(session.current_labels())
    ras = session.jump_to_lesion(1)
    stray = (ras[0] + 10.0, ras[1], ras[2])  # 10 mm to the side: not touching lesion 1
    session.set_effect("paint", brush_diameter_mm=2.5)
    _click(red, stray)
    session.set_effect("none")
    painted = sitk.GetArrayFromImage(session.current_labels())
    assert 0 < (painted == 1).sum() - (before == 1).sum() < (before == 1).sum()
    session.keep_largest_island()
    kept = sitk.GetArrayFromImage(session.current_labels())
    assert ((kept == 1) == (before == 1)).all()
    assert session.operations[-1]["effect"] == "keep largest island"
    session.discard_edits()


def test_islands_click_keeps_the_clicked_piece_and_undo_redo(session):
    red = session.app.view_manager.get_view("Red")
    before = sitk.GetArrayFromImage(session.current_labels())
    ras = session.jump_to_lesion(1)
    stray = (ras[0] + 10.0, ras[1], ras[2])
    session.set_effect("paint", brush_diameter_mm=2.5)
    _click(red, stray)
    painted = sitk.GetArrayFromImage(session.current_labels())
    assert (painted == 1).sum() > (before == 1).sum()
    session.set_effect("islands")  # click a piece to keep it
    _click(red, ras)
    session.set_effect("none")
    kept = sitk.GetArrayFromImage(session.current_labels())
    assert ((kept == 1) == (before == 1)).all()
    assert session.undo()  # the island click undone: the stray piece is back
    assert ((sitk.GetArrayFromImage(session.current_labels()) == 1) == (painted == 1)).all()
    assert session.redo()
    assert ((sitk.GetArrayFromImage(session.current_labels()) == 1) == (before == 1)).all()
    session.discard_edits()
    assert not session.undo()  # replaced segments: nothing to undo into
