"""Browser smoke test: `brainmetseg view` served, opened in Debian's Chromium (playwright).

The real command runs in a subprocess on a small synthetic result; the page must load,
all four views (axial, coronal, sagittal, 3D) must draw a picture, and a click on a
lesion row must move the axial slice to that lesion's S coordinate (lesions.json), a
click on the threshold slider must re-threshold to the library's lesion count, and the
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
  for (let i = 0; i < d.length; i += 16) { dev += Math.abs(d[i] - mean) + Math.abs(d[i + 1] - mean) + Math.abs(d[i + 2] - mean); }
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
            track = await page.locator('[data-testid="threshold"] .v-slider-track').bounding_box()
            await page.mouse.click(track["x"] + 0.45 * track["width"], track["y"] + track["height"] / 2)
            message = await _poll(page, "() => document.querySelector('[data-testid=\"message\"]').innerText",
                                  lambda t: t.startswith("Threshold"), 30)
            rows_after = await page.locator('[data-testid="lesion-row"]').count()
            await page.get_by_role("tab", name="DICOM").click()
            async with page.expect_download(timeout=30_000) as info:
                await page.locator('[data-testid="dicom-download"]').first.click()
            download = await info.value
            await download.save_as(download_to)
            return {"download_name": download.suggested_filename,
                    "views": views, "before": before, "after": after, "rows": rows, "message": message,
                    "rows_after_threshold": rows_after}
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
    assert terminal and all(line.startswith("brainmetseg view: ") for line in terminal if line.strip()), "\n".join(terminal)
    assert any(str(result / "view.log") in line for line in terminal), terminal
    log = (result / "view.log").read_text()
    assert "vtkMRMLScene" in log or "vtkObject" in log, f"no VTK/Slicer output in the log:\n{log[:2000]}"
    assert seen["rows"] == len(lesions) == 3
    assert len(seen["views"]) == 4, seen["views"]
    assert all(v and v["dev"] > DRAWN for v in seen["views"]), seen["views"]
    assert abs(float(seen["before"]) - float(lesion["centroid_s"])) > 1.0
    assert abs(float(seen["after"]) - float(lesion["centroid_s"])) < 0.02, seen
    threshold = float(seen["message"].split()[1].rstrip(","))
    assert 0.3 < threshold < 0.6, seen["message"]
    probability = sitk.ReadImage(str(result / "probability.nii.gz"))
    expected = int(sitk.GetArrayFromImage(lesion_labels(probability, OperatingPoint(threshold, 0.0))).max())
    assert seen["rows_after_threshold"] == expected == 4, seen
    assert seen["download_name"] == "lesions_seg.dcm"
    assert (tmp_path / "downloaded.dcm").read_bytes() == payload
