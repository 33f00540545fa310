"""The README's viewer screenshots are in step with the bundled default model.

docs/screenshots/make_screenshots.py writes screenshots.json beside the pictures: the model,
its card's settings, the run's operating point, the lesion count. When the bundled model's
weights or card (operating point included) change, this test fails until the script is re-run
(`python docs/screenshots/make_screenshots.py`). Cheap: no model run, no viewer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import load_script

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "docs" / "screenshots"
RERUN = "re-run: python docs/screenshots/make_screenshots.py"


@pytest.fixture(scope="module")
def script():
    return load_script(FOLDER / "make_screenshots.py", "make_screenshots")


@pytest.fixture(scope="module")
def record(script):
    path = FOLDER / script.SIDECAR
    assert path.is_file(), f"{path} missing; {RERUN}"
    return json.loads(path.read_text(encoding="utf-8"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pictures_show_the_bundled_default_model(script, record):
    card = script.bundled_card()
    shown = record["model"]
    assert (shown["name"], shown["version"], shown["sha256"]) == (card["name"], card["version"], card["sha256"]), \
        f"the screenshots show {shown['name']} {shown['version']}, the bundled model is {card['name']} " \
        f"{card['version']} ({card['sha256'][:12]}...); {RERUN}"
    changed = sorted(k for k in script.card_settings(card).keys() | record["card_settings"].keys()
                     if script.card_settings(card).get(k) != record["card_settings"].get(k))
    assert not changed, f"model card fields changed since the screenshots: {changed}; {RERUN}"
    # the run used the card's operating point (no command-line override)
    assert record["run_settings"]["threshold_used"] == card["threshold"]
    assert record["run_settings"]["min_volume_mm3_used"] == card["min_lesion_volume_mm3"]


def test_pictures_are_of_the_bundled_sample_and_are_the_ones_recorded(script, record):
    assert record["input"]["sha256"] == sha256(script.SAMPLE), f"the sample changed; {RERUN}"
    assert set(record["pictures"]) == set(script.PICTURES)
    for name, digest in record["pictures"].items():
        assert sha256(FOLDER / name) == digest, f"{name} is not the picture recorded in {script.SIDECAR}; {RERUN}"
    assert record["lesions"] >= 1 and record["lesion_1_volume_mm3"] > 0
    assert 1 <= record["lesion_shown"] <= record["lesions"]
