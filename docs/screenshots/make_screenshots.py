"""Make the README's viewer screenshots: `brainmetseg view` in headless Chromium.

    python docs/screenshots/make_screenshots.py [--result OUTDIR] [--out docs/screenshots]

Run it (from any folder; needs the `test` extra and `bash .ci/install-extras` for Chromium)
after the bundled default model or its card changes: Testing/test_screenshots.py fails until
the pictures are regenerated. Without --result it first segments the bundled sample
(Resources/Sample/sample_ce_t1.nii.gz) with the bundled default model into a temporary folder
(~30 s on 2 CPU cores). Then it serves the viewer on 127.0.0.1, opens it in Debian's
Chromium through playwright (never a downloaded browser), waits until every view has drawn,
and writes, all at once when every picture is made (a failure replaces nothing):

- viewer_overview.png: the result as it opens (lesion table, axial / 3D / coronal / sagittal);
- viewer_jump.png: after a click on a lesion's row (all views centred on it), overlay shown;
- viewer_edit.png: that lesion grown with the paint brush (a mouse drag in the axial view)
  and the table re-measured;
- screenshots.json: what the pictures show: model (name, version, weights sha256), its card's
  settings (the operating point among them), the run's threshold and minimum volume and
  inference plan, the lesion count and lesion 1's volume, the sample's sha256, the pictures'
  sha256.

Every picture is what the viewer streamed to the browser: Slicer's own displayable managers
rendering offscreen on the server (EGL, CPU). PNGs are palette-quantised to stay small.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from BrainMetSegLib import __version__  # noqa: E402
from BrainMetSegLib.commands.view import free_port  # noqa: E402
from BrainMetSegLib.models import CARD_NAME, DEFAULT_MODEL, load_package  # noqa: E402
from BrainMetSegLib.viewer.launch import start_viewer, stop_viewer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SAMPLE = REPO / "Resources" / "Sample" / "sample_ce_t1.nii.gz"
SIDECAR = "screenshots.json"
PICTURES = ("viewer_overview.png", "viewer_jump.png", "viewer_edit.png")
# Card fields that describe the model but do not change what it outputs on the sample; every
# other field (weights, sha256, threshold, min_lesion_volume_mm3, a new operating value, the
# grid, the windows...) is recorded, and a change to any of them makes the pictures stale.
DESCRIPTIVE_CARD_FIELDS = ("training_data", "intended_use", "limitations", "validation", "recipe",
                           "provenance", "license")
VIEWPORT = {"width": 1400, "height": 820}
VIEWS_DRAWN = """() => { const imgs = Array.from(document.querySelectorAll('img.image-display-area'));
  return imgs.length === 4 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


def card_settings(card: dict) -> dict:
    """The card's fields that shape the output (all but :data:`DESCRIPTIVE_CARD_FIELDS`)."""
    return {k: v for k, v in card.items() if k not in DESCRIPTIVE_CARD_FIELDS}


def bundled_card() -> dict:
    """The bundled default model's card, as the file says (fields the library does not know yet
    included)."""
    return json.loads((load_package(DEFAULT_MODEL).folder / CARD_NAME).read_text(encoding="utf-8"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_tools() -> None:
    """Fail early, in one line each, on what the script needs and the machine lacks."""
    missing = [f"{CHROMIUM} (bash .ci/install-extras)"] if not Path(CHROMIUM).exists() else []
    missing += [f"python package {name} (pip install -e '.[test]')" for name in ("playwright", "trame_slicer", "PIL")
                if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit("make_screenshots: missing " + "; ".join(missing))


def segment_sample(folder: Path) -> Path:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    subprocess.run([sys.executable, "-m", "BrainMetSegLib", "segment", str(SAMPLE), "-o", str(folder),
                    "--progress", "none"], cwd=REPO, env=env, check=True)
    return folder


def sidecar(result: Path, card: dict, lesion: dict, pictures: list[Path]) -> dict:
    """What the pictures show (see the module docstring); refuses a result of another model."""
    run = json.loads((result / "run.json").read_text(encoding="utf-8"))
    model, settings = run["model"], run["settings"]
    if model["sha256"] != card["sha256"]:
        raise SystemExit(f"make_screenshots: {result} was made by {model['name']} {model['version']} "
                         f"(weights {model['sha256'][:12]}...), not the bundled default model "
                         f"{card['name']} {card['version']}; the README shows the default model.")
    lesions = json.loads((result / "lesions.json").read_text(encoding="utf-8"))["lesions"]
    return {
        "made_with": f"BrainMetSegLib {__version__}, docs/screenshots/make_screenshots.py",
        "made_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"name": model["name"], "version": model["version"], "sha256": model["sha256"]},
        "card_settings": card_settings(card),
        "run_settings": {"threshold_used": settings["threshold_used"],
                         "min_volume_mm3_used": settings["min_volume_mm3_used"]},
        "input": {"name": Path(run["inputs"]["t1ce"]["path"]).name, "sha256": run["inputs"]["t1ce"]["sha256"]},
        # `--inference-mode auto` picks whole-volume or windows from the memory free at the time;
        # two runs here gave lesion 1 433 and 440 mm^3: record the plan the pictures come from
        "inference_run": {k: run.get("inference_run", {}).get(k) for k in ("mode", "windows", "roi_xyz")},
        "lesions": len(lesions),
        "lesion_1_volume_mm3": round(float(lesions[0]["volume_mm3"]), 1) if lesions else None,
        "lesion_shown": int(lesion["lesion_id"]),
        "pictures": {p.name: sha256(p) for p in pictures},
    }


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

        await grow_lesion(page, lesion)
        await settle(page)
        written.append(await save(page, out / "viewer_edit.png"))
        await browser.close()
    return written


ROW_CHANGED = """([selector, before]) => { const row = document.querySelector(selector);
  return row !== null && row.innerText !== before; }"""


async def grow_lesion(page, lesion: dict, tries: int = 3) -> None:
    """Paint a stroke from the lesion's centre (the jump centred it in the axial view), re-measure,
    and check its table row changed; on a busy machine the server may apply a stroke late or
    lose its end, so the stroke is repeated (up to ``tries``) and a picture of an edit that did
    not happen is refused."""
    row = f'[data-testid="lesion-row"][data-lesion-id="{lesion["lesion_id"]}"]'
    before = await page.locator(row).inner_text()
    for attempt in range(1, tries + 1):
        await page.get_by_role("tab", name="Edit").click()
        if attempt == 1:
            await page.locator('[data-testid="effect-paint"]').click()
            await asyncio.sleep(1.0)
        axial = page.locator("img.image-display-area").first
        box = await axial.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        # Each event is a round trip to the server: pace the stroke so none is dropped.
        await page.mouse.move(cx, cy)
        await asyncio.sleep(0.3 * attempt)
        await page.mouse.down()
        await asyncio.sleep(0.3 * attempt)
        for step in range(1, 13):
            await page.mouse.move(cx + 2.5 * step, cy + 1.5 * step)
            await asyncio.sleep(0.1 * attempt)
        await asyncio.sleep(0.3 * attempt)
        await page.mouse.up()
        try:
            await page.get_by_text("unsaved edits").wait_for(timeout=60_000)
        except Exception:  # playwright's TimeoutError: the stroke never reached the segment
            continue
        await asyncio.sleep(1.5)
        await page.get_by_role("button", name="Re-measure").click()
        await page.get_by_role("tab", name="Lesions").click()
        try:
            await page.wait_for_function(ROW_CHANGED, arg=[row, before], timeout=30_000)
            return
        except Exception:
            print(f"make_screenshots: stroke {attempt} left lesion {lesion['lesion_id']}'s row unchanged; "
                  "painting again", file=sys.stderr)
    raise SystemExit(f"make_screenshots: {tries} brush strokes did not change lesion {lesion['lesion_id']}; "
                     "no picture replaced.")


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


def serve_and_shoot(result: Path, out: Path, lesion: dict, tries: int = 3) -> list[Path]:
    """Serve ``result``, take the pictures into ``out``; a port taken meanwhile (another
    program picked it between the check and the start) is retried on the next one."""
    port = 8800
    for attempt in range(tries):
        port = free_port("127.0.0.1", port)
        t0 = time.perf_counter()
        try:
            proc, url = start_viewer(result, port)
        except RuntimeError as exc:
            if "already in use" not in str(exc) or attempt == tries - 1:
                raise
            port += 1
            continue
        print(f"viewer up in {time.perf_counter() - t0:.1f} s at {url}", file=sys.stderr)
        try:
            return asyncio.run(shoot(url, out, lesion))
        finally:
            stop_viewer(proc)
    raise AssertionError("unreachable")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--result", type=Path, help="a `brainmetseg segment` folder of the bundled sample "
                        "made with the bundled default model (default: segment the sample now)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--lesion", type=int, default=2, help="lesion id to jump to and edit (default 2, "
                        "or 1 when there is only one)")
    args = parser.parse_args(argv)
    check_tools()
    card = bundled_card()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = args.result or segment_sample(Path(tmp) / "sample")
        lesions = json.loads((result / "lesions.json").read_text())["lesions"]
        if not lesions:
            raise SystemExit(f"make_screenshots: no lesion in {result}: nothing to show.")
        wanted = args.lesion if any(int(r["lesion_id"]) == args.lesion for r in lesions) else 1
        lesion = next(r for r in lesions if int(r["lesion_id"]) == wanted)
        staging = Path(tempfile.mkdtemp(prefix=".screenshots.", dir=args.out))
        try:
            pictures = serve_and_shoot(result, staging, lesion)
            record = sidecar(result, card, lesion, pictures)
            (staging / SIDECAR).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            for name in (*PICTURES, SIDECAR):  # all made: now replace the old ones
                os.replace(staging / name, args.out / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for name in (*PICTURES, SIDECAR):
        print(f"{args.out / name} ({(args.out / name).stat().st_size // 1024} KB)")
    print(f"{record['model']['name']} {record['model']['version']}: {record['lesions']} lesion(s), "
          f"lesion 1 {record['lesion_1_volume_mm3']} mm^3; showing lesion {record['lesion_shown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
