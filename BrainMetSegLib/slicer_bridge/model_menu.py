"""The models offered in the GUI's model selector."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..operating_point import OperatingPoint


def model_choices(registry_entries: Sequence[Mapping], extra_folders: Sequence[str] = ()
                  ) -> list[tuple[str, str]]:
    """(label, value) pairs for the model selector: bundled/registered models by
    name, then user-added folders by path (duplicates dropped, order kept)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in registry_entries:
        name = str(entry.get("name", ""))
        if name and name not in seen:
            seen.add(name)
            label = name if "path" in entry else f"{name} (download)"
            out.append((label, name))
    for folder in extra_folders:
        value = str(Path(folder))
        if value and value not in seen:
            seen.add(value)
            out.append((f"{Path(folder).name} ({value})", value))
    return out


def read_model_card(folder: str | os.PathLike) -> dict:
    """The model card of a package folder (validated like ``models.load_package``
    but without importing torch), for the "Add model folder..." action."""
    from ..models import CARD_NAME, ModelCard

    card_path = Path(folder) / CARD_NAME
    if not card_path.is_file():
        raise FileNotFoundError(f"{folder}: not a model package ({CARD_NAME} is missing).")
    from ..errors import ModelError
    from ..textfiles import read_json_object

    data = read_json_object(card_path, "model card", ModelError)
    return ModelCard.from_dict(data, str(card_path)).to_dict()


def model_card(model: str | os.PathLike) -> dict:
    """The model card (dict) of a registry name or package folder, found exactly as the
    pipeline finds it (``models.load_package``, no torch import). Raises
    ``errors.ModelError`` naming the model and the problem; never returns None."""
    from ..models import load_package

    return load_package(model).card.to_dict()


def card_operating_point(card: Mapping) -> OperatingPoint:
    """The operating point a model card recommends (detection threshold, minimum lesion volume
    mm^3, outline threshold: None when the card has none); the GUI starts from it, so GUI users
    get the operating point the card's figures were measured at."""
    outline = card.get("outline_threshold")
    return OperatingPoint(float(card["threshold"]), float(card["min_lesion_volume_mm3"]),
                          None if outline is None else float(outline))


def run_operating_point(run_json: str | os.PathLike) -> OperatingPoint:
    """The operating point a CLI run used, from its ``run.json``: InputError for a record whose
    fields have the wrong type, ValueError (naming the file) for one without an operating point."""
    from .. import records
    from ..run_record import RUN_SCHEMA

    settings = records.read(run_json, "the run record", RUN_SCHEMA).get("settings") or {}
    return OperatingPoint.from_settings(settings, str(run_json))
