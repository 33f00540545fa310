"""The viewer on a ``brainmetseg compare`` folder (issue 17): the longitudinal table and RANO-BM
per time point, a time-point switch over the tracks_<k> label maps and their scans, matched
lesions drawn in one colour. Offscreen (no browser), on the small synthetic follow-up of
Testing/test_longitudinal.py (seed 2, "mixed": one lesion disappears, one is new).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.cli import main as cli_main
from BrainMetSegLib.errors import InputError
from BrainMetSegLib.longitudinal import track_colour
from BrainMetSegLib.synth import SynthConfig
from BrainMetSegLib.synth.followup import FollowupConfig, make_series
from BrainMetSegLib.viewer import render
from BrainMetSegLib.viewer.longitudinal import CompareFolder, CompareSession, is_compare_folder

SMALL = SynthConfig(anatomy="mni152", spacing_mm=3.0, field_of_view="brain", n_lesions=5, diameter_range_mm=(8.0, 20.0))
SEED = 2


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer_compare")
    baseline, (fu,) = make_series(SEED, SMALL, 1, FollowupConfig(scenario="mixed"))
    paths = []
    for name, image in (("b.nii.gz", baseline.image), ("f.nii.gz", fu.case.image),
                        ("bl.nii.gz", baseline.labels), ("fl.nii.gz", fu.case.labels)):
        sitk.WriteImage(image, str(root / name))
        paths.append(str(root / name))
    out = root / "cmp"
    assert cli_main(["compare", *paths[:2], "--labels", *paths[2:], "-o", str(out), "--names", "base", "month 3",
                     "--progress", "none", "--quiet"]) == 0
    session = CompareSession(render.offscreen_app((240, 240)), CompareFolder.open(out))
    session.load()
    return session


def test_table_and_responses_follow_longitudinal_json(compared):
    folder = compared.compare
    assert is_compare_folder(folder.folder) and folder.names == ["base", "month 3"]
    doc = json.loads((folder.folder / "longitudinal.json").read_text())
    for k in (0, 1):
        rows = folder.table(k)
        assert [r["track_id"] for r in rows] == [t["track_id"] for t in doc["tracks"]]  # ids stable across time
        for row, track in zip(rows, doc["tracks"], strict=True):
            assert row["status"] == track["at"][k]["status"]
            assert row["color"] == _hex(track["colour_rgb"])
    follow = folder.table(1)
    assert sum(r["new"] for r in follow) == 1 and sum(r["resolved"] for r in follow) == 1
    assert not any(r["new"] or r["resolved"] for r in folder.table(0))
    responses = folder.responses()
    assert responses[0]["response"] == "baseline"
    # The follow-up's only new lesion is small (< 10 mm): equivocal, so "to be confirmed", spelled out.
    assert doc["rano_bm"]["timepoints"][0]["response"] == "PD to be confirmed"
    assert responses[1]["response"] == "PD to be confirmed: progression to be confirmed (radiographic)"
    assert responses[1]["caution"] and not responses[0]["caution"]


def test_time_point_switch_shows_each_scan_with_track_segments_in_track_colours(compared):
    folder = compared.compare
    seen = {}
    for k in (1, 0):
        tracks = compared.show(k)
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(folder.track_maps[k])))
        assert tracks == sorted(int(i) for i in np.unique(truth) if i)
        colours = compared.segment_colours()
        assert colours == {t: _hex(track_colour(t)) for t in tracks}
        image, _ = folder.read(k)
        assert compared.volume_node.GetImageData().GetDimensions() == image.GetSize()
        seen[k] = colours
    matched = set(seen[0]) & set(seen[1])
    assert matched and all(seen[0][t] == seen[1][t] for t in matched)


def test_matched_lesion_is_drawn_in_its_track_colour_on_both_scans(compared):
    red = compared.app.view_manager.get_view("Red")
    compared.segmentation_node.GetDisplayNode().SetOpacity2DFill(1.0)
    rows = {k: {r["track_id"]: r for r in compared.compare.table(k)} for k in (0, 1)}
    matched = [t for t in rows[0] if rows[0][t]["status"] == rows[1][t]["status"] == "present"]
    assert matched
    # the largest matched lesion: its centroid is inside it on an axial slice
    track = max(matched, key=lambda t: float(rows[1][t]["volume"]))
    expected = np.array(track_colour(track))
    for k in (0, 1):
        compared.show(k)
        ras = compared.jump_to_track(track)
        x, y = render.ras_to_display_xy(red, ras)
        pixel = render.capture(red)[int(round(y)), int(round(x))]
        assert np.abs(pixel.astype(int) - expected).max() <= 3, (k, pixel, expected)
    resolved = next(t for t in rows[1] if rows[1][t]["resolved"])
    with pytest.raises(InputError, match="not seen"):
        compared.jump_to_track(resolved)


def test_browser_shows_the_table_and_switches_time_point(compared):
    """The real command on the compare folder, in Debian's Chromium (playwright)."""
    import asyncio

    from test_viewer_browser import CHROMIUM

    from BrainMetSegLib.commands.view import free_port
    from BrainMetSegLib.viewer.launch import start_viewer, stop_viewer

    async def drive(url):
        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                await page.goto(url)
                await page.wait_for_selector('[data-testid="track-row"]', timeout=60_000)
                rano = await page.inner_text('[data-testid="rano"]')
                await page.locator('[data-testid="timepoints"] button').nth(1).click()
                await page.wait_for_function(
                    "() => document.querySelector('[data-testid=\"message\"]').innerText.includes('month 3')",
                    timeout=30_000)
                return rano, await page.inner_text('[data-testid="track-table"]')
            finally:
                await browser.close()

    proc, url = start_viewer(compared.compare.folder, free_port("127.0.0.1", 8830))
    try:
        rano, table = asyncio.run(drive(url))
    finally:
        stop_viewer(proc)
    assert "(radiographic)" in rano and "baseline" in rano
    assert "new" in table and "resolved" in table


@pytest.mark.parametrize("case", ["missing tracks", "bad json", "scan gone"])
def test_bad_compare_folders_fail_with_one_line(case, compared, tmp_path, capsys):
    import shutil

    folder = tmp_path / "cmp"
    shutil.copytree(compared.compare.folder, folder)
    named = folder / "tracks_1.nii.gz"
    if case == "missing tracks":
        named.unlink()
    elif case == "bad json":
        named = folder / "longitudinal.json"
        named.write_text("{\"timepoints\": 3}")
    else:
        doc = json.loads((folder / "longitudinal.json").read_text())
        doc["timepoints"][1]["source"] = named = str(tmp_path / "gone.nii.gz")
        (folder / "longitudinal.json").write_text(json.dumps(doc))
    assert cli_main(["view", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0] and str(named) in err[0], err
