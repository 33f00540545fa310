"""Browser smoke test: `brainmetseg view` served, opened in Debian's Chromium (playwright).

The real command runs in a subprocess on a small synthetic result; the page must load,
all four views (axial, coronal, sagittal, 3D) must draw a picture, and a click on a
lesion row must move the axial slice to that lesion's S coordinate (lesions.json), a
click on the detection slider must re-threshold to the library's lesion count (the outline
follows it down), a click on the outline slider must draw the same lesions at the library's
outlined volumes, an outline moved above detection must take detection up with it, and the
DICOM tab must download a result's ``lesions_seg.dcm`` byte for byte.
Chromium comes from Debian (`.ci/apt-packages.txt`), never from a download.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import SimpleITK as sitk
from viewer_data import make_result_folder

from BrainMetSegLib.lesions import lesion_table
from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels

CHROMIUM = "/usr/bin/chromium"
# Mean absolute deviation of a view's pixels above which it shows a picture, not a blank frame.
DRAWN = 5.0

VIEW_STATS = """() => Array.from(document.querySelectorAll('img.image-display-area')).map(img => {
  if (!img.complete || !img.naturalWidth) return null;
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0, n = 0;
  for (let i = 0; i < d.length; i += 16) { sum += d[i] + d[i + 1] + d[i + 2]; n += 3; }
  const mean = sum / n; let dev = 0;
  for (let i = 0; i < d.length; i += 16) {
    dev += Math.abs(d[i] - mean) + Math.abs(d[i + 1] - mean) + Math.abs(d[i + 2] - mean);
  }
  return {w: img.naturalWidth, h: img.naturalHeight, dev: dev / n, src: img.src};
})"""


async def _poll(page, script, done, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = await page.evaluate(script)
        if done(value):
            return value
        await asyncio.sleep(0.5)
    return value


MESSAGE = "() => document.querySelector('[data-testid=\"message\"]').innerText"
VOLUMES = "() => Array.from(document.querySelectorAll('[data-testid=\"lesion-row\"]')).map(r => r.cells[3].innerText)"


async def _click_slider(page, testid: str, fraction: float, previous: str) -> tuple[str, list[str]]:
    """Click a slider's track at ``fraction`` of its length; the new status message and the
    table's volume column once the re-threshold has answered."""
    track = await page.locator(f'[data-testid="{testid}"] .v-slider-track').bounding_box()
    await page.mouse.click(track["x"] + fraction * track["width"], track["y"] + track["height"] / 2)
    message = await _poll(page, MESSAGE, lambda t: t.startswith("Threshold") and t != previous, 30)
    return message, await page.evaluate(VOLUMES)


async def _drive(url: str, lesion: dict, download_to: Path) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(url)
            await page.wait_for_selector('[data-testid="lesion-row"]', timeout=60_000)
            views = await _poll(page, VIEW_STATS,
                                lambda v: len(v) == 4 and all(s and s["dev"] > DRAWN for s in v), 60)
            before = await page.inner_text('[data-testid="axial-s"]')
            row = page.locator(f'[data-testid="lesion-row"][data-lesion-id="{lesion["lesion_id"]}"] td').nth(2)
            await row.click()
            target = float(lesion["centroid_s"])
            after = await _poll(page, "() => document.querySelector('[data-testid=\"axial-s\"]').innerText",
                                lambda t: abs(float(t) - target) < 0.02, 30)
            rows = await page.locator('[data-testid="lesion-row"]').count()
            # Live threshold: a click on the slider's track re-thresholds (no model run).
            message, volumes = await _click_slider(page, "threshold", 0.45, "")
            # The outline below it: the same lesions, drawn larger.
            outline_message, outline_volumes = await _click_slider(page, "outline", 0.2, message)
            # An outline above the detection threshold takes detection up with it.
            up_message, up_volumes = await _click_slider(page, "outline", 0.9, outline_message)
            await page.get_by_role("tab", name="DICOM").click()
            async with page.expect_download(timeout=30_000) as info:
                await page.locator('[data-testid="dicom-download"]').first.click()
            download = await info.value
            await download.save_as(download_to)
            return {"download_name": download.suggested_filename,
                    "views": views, "before": before, "after": after, "rows": rows,
                    "steps": [(message, volumes), (outline_message, outline_volumes), (up_message, up_volumes)]}
        finally:
            await browser.close()


def test_page_loads_views_draw_and_a_row_click_jumps_the_axial_slice(tmp_path):
    from BrainMetSegLib.commands.view import free_port
    from BrainMetSegLib.viewer.launch import start_viewer, stop_viewer

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run bash .ci/install-extras"
    result = make_result_folder(tmp_path)
    lesions = json.loads((result / "lesions.json").read_text())["lesions"]
    lesion = lesions[1]  # not the first row: a jump must move the slice
    # The viewer offers the objects `segment --dicom` writes, by name; the bytes need not be DICOM here.
    payload = bytes(range(256)) * 40
    (result / "lesions_seg.dcm").write_bytes(payload)
    port = free_port("127.0.0.1", 8790)
    proc, url = start_viewer(result, port)
    try:
        assert url == f"http://127.0.0.1:{port}/"
        seen = asyncio.run(_drive(url, lesion, tmp_path / "downloaded.dcm"))
    finally:
        stop_viewer(proc)
    # the terminal shows the command's own lines; VTK's and Slicer's warnings are in view.log
    terminal = "".join(proc.stderr_tail).splitlines()
    assert terminal and all(line.startswith("brainmetseg view: ")
                            for line in terminal if line.strip()), "\n".join(terminal)
    assert any(str(result / "view.log") in line for line in terminal), terminal
    log = (result / "view.log").read_text()
    assert "vtkMRMLScene" in log or "vtkObject" in log, f"no VTK/Slicer output in the log:\n{log[:2000]}"
    assert seen["rows"] == len(lesions) == 3
    assert len(seen["views"]) == 4, seen["views"]
    assert all(v and v["dev"] > DRAWN for v in seen["views"]), seen["views"]
    assert abs(float(seen["before"]) - float(lesion["centroid_s"])) > 1.0
    assert abs(float(seen["after"]) - float(lesion["centroid_s"])) < 0.02, seen
    probability = sitk.ReadImage(str(result / "probability.nii.gz"))
    points = []
    for message, shown in seen["steps"]:
        # "Threshold T, outline O, minimum 0 mm³: N lesion(s) ..."
        words = message.replace(",", "").split()
        point = OperatingPoint(float(words[1]), 0.0, float(words[3]))
        rows = lesion_table(lesion_labels(probability, point), probability)
        assert f"{len(rows)} lesion(s)" in message and len(shown) == len(rows), (message, shown)
        assert shown == [f"{r['volume_mm3']:.1f}" for r in rows], (message, shown)
        points.append(point)
    detect, outline, up = points
    assert 0.3 < detect.threshold < 0.6 and detect.outline == detect.threshold, seen["steps"][0]
    assert len(seen["steps"][0][1]) == 4  # the faint lesion appears below 0.6
    assert outline.threshold == detect.threshold and 0.1 < outline.outline < 0.3, seen["steps"][1]
    assert len(seen["steps"][1][1]) == 4  # same lesions ...
    assert all(float(b) > float(a) for a, b in zip(seen["steps"][0][1], seen["steps"][1][1], strict=True))
    assert up.threshold == up.outline > 0.8, seen["steps"][2]  # detection followed the outline up
    assert len(seen["steps"][2][1]) == 3
    assert seen["download_name"] == "lesions_seg.dcm"
    assert (tmp_path / "downloaded.dcm").read_bytes() == payload
