"""The model card's checks: every field of a :class:`~BrainMetSegLib.models.ModelCard`.

A field that fails raises :class:`~BrainMetSegLib.errors.ModelError` naming it, so a card with
``"normalisation": "magic"`` or a patch the architecture cannot take stops before any work.
The value rules are :mod:`.options`' (numbers, enums, thresholds); the architecture registry
and the acquisition keys are imported when a card is checked (this module stays light for
the Slicer module, which reads cards before torch is installed).
"""

from __future__ import annotations

import re

from .errors import ModelError
from .options import (
    BlendMode,
    Normalisation,
    as_option,
    number,
    overlap,
    probability_threshold,
    text,
    triple,
)
from .sequences import SEQUENCES

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def check_card(card) -> None:
    """Check every field of a :class:`~BrainMetSegLib.models.ModelCard`; :class:`ModelError`
    naming the field. Numbers and enums are normalised in place (e.g. ints to floats)."""
    from .architectures import ARCHITECTURES, patch_size_problem

    def field(name):
        return f"model card field {name!r}"

    for name in ("name", "version", "architecture"):
        text(getattr(card, name), field(name), required=True)
    for name in ("training_data", "intended_use", "limitations", "license"):
        text(getattr(card, name), field(name))
    if card.architecture not in ARCHITECTURES:
        raise ModelError(f"{field('architecture')}: unknown architecture {card.architecture!r} "
                         f"(known: {', '.join(ARCHITECTURES)}).")
    for name in ("architecture_args", "validation", "recipe"):
        if not isinstance(getattr(card, name), dict):
            raise ModelError(f"{field(name)} must be an object, not {getattr(card, name)!r}.")
    seqs = card.input_sequences
    if (not isinstance(seqs, list | tuple) or not seqs or len(set(map(str, seqs))) != len(seqs)
            or any(s not in SEQUENCES for s in seqs) or seqs[0] != "t1ce"):
        raise ModelError(f"{field('input_sequences')} must list distinct sequences from "
                         f"{', '.join(SEQUENCES)}, starting with t1ce; not {seqs!r}.")
    card.spacing_mm = list(triple(card.spacing_mm, field("spacing_mm"), low=0.0, low_open=True,
                                  high=20.0, error=ModelError))
    card.patch_size = list(triple(card.patch_size, field("patch_size"), integer=True, low=8,
                                  high=1024, error=ModelError))
    problem = patch_size_problem(card.architecture, card.patch_size, card.architecture_args)
    if problem:
        raise ModelError(f"{field('patch_size')}: {problem}.")
    card.overlap = overlap(card.overlap, field("overlap"), error=ModelError)
    card.blend_mode = as_option(BlendMode, card.blend_mode, field("blend_mode"), ModelError).value
    card.normalisation = as_option(Normalisation, card.normalisation, field("normalisation"), ModelError).value
    card.threshold = probability_threshold(card.threshold, field("threshold"), error=ModelError)
    if card.outline_threshold is not None:
        card.outline_threshold = number(card.outline_threshold, field("outline_threshold"), 0.0,
                                        card.threshold, low_open=True, error=ModelError)
    card.min_lesion_volume_mm3 = number(card.min_lesion_volume_mm3, field("min_lesion_volume_mm3"),
                                        low=0.0, error=ModelError)
    text(card.weights, field("weights"), required=True)
    if card.sha256 and not (isinstance(card.sha256, str) and _SHA256.fullmatch(card.sha256)):
        raise ModelError(f"{field('sha256')} must be 64 hexadecimal digits, not {card.sha256!r}.")
    if not isinstance(card.trained, bool):
        raise ModelError(f"{field('trained')} must be true or false, not {card.trained!r}.")
    card.acquisition = check_acquisition(card.acquisition, field("acquisition"))
    scorer = card.candidate_scorer
    if not isinstance(scorer, dict) or (scorer and not (
            set(scorer) == {"file", "sha256"} and isinstance(scorer["file"], str) and scorer["file"]
            and isinstance(scorer["sha256"], str) and _SHA256.fullmatch(scorer["sha256"]))):
        raise ModelError(f"{field('candidate_scorer')} must be {{}} or {{\"file\": name, \"sha256\": "
                         f"64 hexadecimal digits}}, not {scorer!r}.")
    from .thick_weights import check_entry

    ensemble = card.ensemble if isinstance(card.ensemble, list) else []
    members = [m.get("weights") for m in ensemble if isinstance(m, dict)]
    card.thick_slice_weights = check_entry(card.thick_slice_weights, [card.weights, *members])
    from .int8_network import MAIN, THICK, check_field

    shas = {MAIN: None if ensemble else card.sha256}
    if card.thick_slice_weights:
        shas[THICK] = card.thick_slice_weights["sha256"]
    card.int8_network = check_field(card.int8_network, shas)


def check_acquisition(acquisition, name: str) -> dict:
    """The card's ``acquisition`` (see :mod:`BrainMetSegLib.acquisition`): known keys only,
    spacing ranges [min, max] in (0, 20] mm, obliquity in [0, 90] degrees; numbers as floats."""
    from .acquisition import MAX_KEYS, MEASURED_KEYS, RANGE_KEYS, TEXT_KEYS

    if not isinstance(acquisition, dict):
        raise ModelError(f"{name} must be an object, not {acquisition!r}.")
    known = RANGE_KEYS + MAX_KEYS + TEXT_KEYS + MEASURED_KEYS
    unknown = sorted(set(acquisition) - set(known))
    if unknown:
        raise ModelError(f"{name} has unknown keys {unknown} (known: {', '.join(known)}).")
    out = dict(acquisition)
    for key in RANGE_KEYS:
        if key in out:
            v = out[key]
            if not isinstance(v, list | tuple) or len(v) != 2:
                raise ModelError(f"{name}[{key!r}] must be [min, max] in mm, not {v!r}.")
            lo, hi = (number(x, f"{name}[{key!r}]", 0.0, 20.0, low_open=True, error=ModelError) for x in v)
            if lo > hi:
                raise ModelError(f"{name}[{key!r}]: min {lo:g} is above max {hi:g}.")
            out[key] = [lo, hi]
    for key in MAX_KEYS:
        if key in out:
            out[key] = number(out[key], f"{name}[{key!r}]", 0.0, 90.0, error=ModelError)
    for key in TEXT_KEYS:
        if key in out:
            text(out[key], f"{name}[{key!r}]")
    for key in MEASURED_KEYS:
        if key in out:
            out[key] = _measured_pairs(out[key], f"{name}[{key!r}]")
    return out


def _measured_pairs(rows, name: str) -> list[list[float]]:
    """[[slice mm in (0, 20], sensitivity in [0, 1], false positives per case >= 0], ...], slices
    distinct, sorted."""
    if not isinstance(rows, list | tuple) or not rows:
        raise ModelError(f"{name} must be a list of [slice mm, sensitivity, false positives per case], not {rows!r}.")
    out = []
    for row in rows:
        if not isinstance(row, list | tuple) or len(row) != 3:
            raise ModelError(f"{name}: each entry must be [slice mm, sensitivity, false positives per case], "
                             f"not {row!r}.")
        out.append([number(row[0], f"{name} slice (mm)", 0.0, 20.0, low_open=True, error=ModelError),
                    number(row[1], f"{name} sensitivity", 0.0, 1.0, error=ModelError),
                    number(row[2], f"{name} false positives per case", 0.0, 1000.0, error=ModelError)])
    out.sort()
    if len({row[0] for row in out}) != len(out):
        raise ModelError(f"{name}: a slice thickness is given twice.")
    return out
