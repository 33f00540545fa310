"""Make the README's viewer screenshots: `brainmetseg view` in headless Chromium.

    python docs/screenshots/make_screenshots.py [--result OUTDIR] [--out docs/screenshots]

Without --result it first segments the bundled sample (Resources/Sample/sample_ce_t1.nii.gz)
with the bundled demo model into a temporary folder (~30 s on 2 CPU cores). Then it serves
the viewer on 127.0.0.1, opens it in Debian's Chromium through playwright (never a
downloaded browser), waits until every view has drawn, and writes:

- viewer_overview.png: the result as it opens (lesion table, axial / 3D / coronal / sagittal);
- viewer_jump.png: after a click on a lesion's row (all views centred on it), overlay shown;
- viewer_edit.png: that lesion grown with the paint brush (a mouse drag in the axial view)
  and the table re-measured.

Every picture is what the viewer streamed to the browser: Slicer's own displayable managers
rendering offscreen on the server (EGL, CPU). PNGs are palette-quantised to stay small.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from BrainMetSegLib.commands.view import free_port  # noqa: E402
from BrainMetSegLib.viewer.launch import start_viewer, stop_viewer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 820}
VIEWS_DRAWN = """() => { const imgs = Array.from(document.querySelectorAll('img.image-display-area'));
  return imgs.length === 4 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


def segment_sample(folder: Path) -> Path:
    sample = REPO / "Resources" / "Sample" / "sample_ce_t1.nii.gz"
    subprocess.run([sys.executable, "-m", "BrainMetSegLib", "segment", str(sample), "-o", str(folder),
                    "--progress", "none"], cwd=REPO, check=True)
    return folder


async def settle(page, seconds: float = 2.5) -> None:
    """Let the server stream the final frames (it renders at most ~10 fps per view when idle)."""
    await page.wait_for_function(VIEWS_DRAWN, timeout=60_000)
    await asyncio.sleep(seconds)


async def shoot(url: str, out: Path, lesion: dict) -> list[Path]:
    from playwright.async_api import async_playwright

    written = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM)
        page = await browser.new_page(viewport=VIEWPORT)
        await page.goto(url)
        await page.wait_for_selector('[data-testid="lesion-row"]', timeout=60_000)
        await settle(page, 4.0)
        written.append(await save(page, out / "viewer_overview.png"))

        row = page.locator(f'[data-testid="lesion-row"][data-lesion-id="{lesion["lesion_id"]}"] td').nth(2)
        await row.click()
        target = float(lesion["centroid_s"])
        await page.wait_for_function(
            f"() => Math.abs(parseFloat(document.querySelector('[data-testid=\"axial-s\"]').innerText)"
            f" - {target}) < 0.02", timeout=30_000)
        track = page.locator('[data-testid="overlay"] .v-slider-track')
        box = await track.bounding_box()
        await page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
        await settle(page)
        written.append(await save(page, out / "viewer_jump.png"))

        await page.get_by_role("tab", name="Edit").click()
        await page.locator('[data-testid="effect-paint"]').click()
        await asyncio.sleep(1.0)
        axial = page.locator("img.image-display-area").first
        box = await axial.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2  # the jump centred the lesion
        # Each event is a round trip to the server: pace the stroke so none is dropped.
        await page.mouse.move(cx, cy)
        await asyncio.sleep(0.3)
        await page.mouse.down()
        await asyncio.sleep(0.3)
        for step in range(1, 13):
            await page.mouse.move(cx + 2.5 * step, cy + 1.5 * step)
            await asyncio.sleep(0.1)
        await page.mouse.up()
        await asyncio.sleep(1.5)
        await page.get_by_role("button", name="Re-measure").click()
        await page.get_by_role("tab", name="Lesions").click()
        await settle(page)
        written.append(await save(page, out / "viewer_edit.png"))
        await browser.close()
    return written


async def save(page, path: Path) -> Path:
    await page.screenshot(path=str(path))
    small_png(path)
    return path


def small_png(path: Path) -> None:
    """Rewrite a screenshot as an 8-bit palette PNG: 128 greys (every other level, for the
    MRI) + 128 colours fitted to the coloured pixels (lesions, overlay, UI), no dithering."""
    import numpy as np
    from PIL import Image

    image = Image.open(path).convert("RGB")
    rgb = np.asarray(image)
    coloured = rgb[(rgb.max(-1).astype(int) - rgb.min(-1)) > 12]
    colours = []
    if len(coloured):
        fitted = Image.fromarray(coloured.reshape(1, -1, 3)).quantize(128, method=Image.Quantize.MEDIANCUT)
        colours = fitted.getpalette()[: 3 * 128]
    greys = [g for level in range(0, 256, 2) for g in (level, level, level)]
    palette = Image.new("P", (1, 1))
    palette.putpalette((greys + colours + [0] * 768)[:768])
    image.quantize(palette=palette, dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--result", type=Path, help="a `brainmetseg segment` folder (default: segment the sample)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--lesion", type=int, default=2, help="lesion id to jump to and edit")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = args.result or segment_sample(Path(tmp) / "sample")
        lesions = json.loads((result / "lesions.json").read_text())["lesions"]
        lesion = next(r for r in lesions if int(r["lesion_id"]) == args.lesion)
        t0 = time.perf_counter()
        proc, url = start_viewer(result, free_port("127.0.0.1", 8800))
        print(f"viewer up in {time.perf_counter() - t0:.1f} s at {url}", file=sys.stderr)
        try:
            written = asyncio.run(shoot(url, args.out, lesion))
        finally:
            stop_viewer(proc)
    for path in written:
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
