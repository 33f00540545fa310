"""Start-up time and memory of `brainmetseg view` (not a pass/fail test).

    python benchmarks/bench_viewer.py RESULT_DIR

Measures, for the real command in a child process: seconds until it prints its URL
(imports + Slicer app + 4 views + scene built), seconds until headless Chromium shows all
four views drawn, seconds for a lesion-row click to move the axial slice, and the
server's resident memory (VmRSS now, VmHWM peak) after that.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from BrainMetSegLib.commands.view import free_port
from BrainMetSegLib.viewer.launch import start_viewer, stop_viewer

DRAWN = """() => { const imgs = Array.from(document.querySelectorAll('img.image-display-area'));
  return imgs.length === 4 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


def rss_mb(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024)
    return fields


async def browse(url: str, lesion: dict) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium")
        page = await browser.new_page(viewport={"width": 1400, "height": 820})
        t0 = time.perf_counter()
        await page.goto(url)
        await page.wait_for_function(DRAWN, timeout=120_000)
        drawn = time.perf_counter() - t0
        t1 = time.perf_counter()
        await page.locator(f'[data-testid="lesion-row"][data-lesion-id="{lesion["lesion_id"]}"] td').nth(2).click()
        await page.wait_for_function(
            "() => Math.abs(parseFloat(document.querySelector('[data-testid=\"axial-s\"]').innerText)"
            f" - {float(lesion['centroid_s'])}) < 0.02", timeout=60_000)
        jump = time.perf_counter() - t1
        await browser.close()
    return {"page_to_all_views_drawn_s": round(drawn, 2), "row_click_to_axial_moved_s": round(jump, 2)}


def main() -> int:
    result = Path(sys.argv[1])
    lesions = json.loads((result / "lesions.json").read_text())["lesions"]
    t0 = time.perf_counter()
    proc, url = start_viewer(result, free_port("127.0.0.1", 8850))
    figures = {"command_to_url_s": round(time.perf_counter() - t0, 2)}
    try:
        figures.update(asyncio.run(browse(url, lesions[min(1, len(lesions) - 1)])))
        figures.update({f"server_{k}_mb": v for k, v in rss_mb(proc.pid).items()})
    finally:
        stop_viewer(proc)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
