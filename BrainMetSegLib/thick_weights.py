"""A model package's second weights for thick-slice scans (model card field ``thick_slice_weights``).

    "thick_slice_weights": {"weights": "model_thick.safetensors", "sha256": "<64 hex>",
                            "above_slice_spacing_mm": 1.5}

The same network (the card's architecture, arguments, ``network_io``, grid, window and
operating point), with other weights: those fine-tuned on thick slices. A scan whose slice
spacing (:func:`~.acquisition.slice_spacing_mm`: the coarsest voxel spacing of the INPUT
CE-T1, before any resampling) is above ``above_slice_spacing_mm`` runs them; every other scan
runs the card's ``weights`` (or ``ensemble``) exactly as a card without the field does. The
comparison is the candidate scorer's (:func:`is_thick`), so a scan is routed to the same side by
the network and by a stitched scorer.

One fact, one home: the card's ``above_slice_spacing_mm`` is where the network's split is set.
A stitched candidate scorer (:mod:`.train.stitch_scorers`) has its own split built into its trees
(``stitched.slice_spacing_split_mm`` in the scorer file records it); the trees cannot follow the
card, so a package whose two splits differ is refused when it is loaded (:func:`check_scorer_split`),
naming the scorer file. Re-stitch the scorer or re-add the weights with the scorer's split
(``docs/training/add_thick_weights.py`` takes the scorer's by default).

Loading: the thick weights are built, sha256-checked and loaded (safetensors, never pickle) only
when a thick scan comes; a thin scan pays a ``stat`` and a read of the two files' safetensors
headers (:func:`check_thick_file`: present, and the same tensor names and shapes as the
main weights, i.e. the card's architecture), so an incomplete or mismatched package is refused
when the model is loaded, not after a cohort's first hundred thin scans.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelError

MAIN, THICK = "main", "thick-slice"
VARIANTS = (MAIN, THICK)
KEYS = ("weights", "sha256", "above_slice_spacing_mm")
FIELD = "model card field 'thick_slice_weights'"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def check_entry(entry, main_files: list[str]) -> dict:
    """The card's ``thick_slice_weights``, checked: ``{}`` or exactly :data:`KEYS` (a
    ``.safetensors`` file other than the main weights, 64 hex digits, a split in (0, 20] mm).
    No architecture or grid of its own: the thick weights run on the card's."""
    if not isinstance(entry, dict):
        raise ModelError(f"{FIELD} must be an object, not {entry!r}.")
    if not entry:
        return {}
    if set(entry) != set(KEYS):
        extra = sorted(set(entry) - set(KEYS))
        raise ModelError(f"{FIELD} must have exactly the keys {', '.join(KEYS)}"
                         + (f", not {extra} (the thick weights run on the card's own architecture, "
                            "grid and window)" if extra else f"; it has {sorted(entry)}") + ".")
    name, sha, split = entry["weights"], entry["sha256"], entry["above_slice_spacing_mm"]
    if not isinstance(name, str) or not name.endswith(".safetensors") or name.strip() != name:
        raise ModelError(f"{FIELD}: weights {name!r} must name a .safetensors file (no pickle).")
    if name in main_files:
        raise ModelError(f"{FIELD}: weights {name!r} is the card's main weights file; the thick-slice "
                         "weights are a file of their own.")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise ModelError(f"{FIELD}: sha256 must be 64 hexadecimal digits, not {sha!r}.")
    if isinstance(split, bool) or not isinstance(split, int | float) or not 0 < float(split) <= 20:
        raise ModelError(f"{FIELD}: above_slice_spacing_mm must be a number of mm in (0, 20], not {split!r}.")
    return {"weights": name, "sha256": sha.lower(), "above_slice_spacing_mm": float(split)}


def is_thick(slice_mm: float, split_mm: float) -> bool:
    """True when a scan of slice spacing ``slice_mm`` (mm) is above ``split_mm``, compared as the
    candidate scorer's trees compare their ``slice_spacing_mm`` feature (float32 feature <=
    float64 threshold: thin), so network and scorer never disagree on a scan near the split."""
    return not bool(np.float32(slice_mm) <= split_mm)


@dataclass(frozen=True)
class WeightsChoice:
    """The weights one scan runs: ``variant`` (:data:`MAIN` or :data:`THICK`), why (``reason``:
    e.g. "slice spacing 5 mm > 1.5 mm") and the scan's ``slice_spacing_mm``."""

    variant: str
    reason: str
    slice_spacing_mm: float

    def record(self, package) -> dict:
        """run.json's ``model.weights_run``: the variant, its file(s) and sha256, and why."""
        folder = package.folder.resolve()
        files = [(p.relative_to(folder).as_posix(), sha.lower()) for p, sha in package.weight_files(self.variant)]
        out = {"variant": self.variant, "file": files[0][0], "sha256": files[0][1], "why": self.reason,
               "slice_spacing_mm": self.slice_spacing_mm}
        if len(files) > 1:  # an ensemble's main weights: every member
            out["files"] = [{"file": f, "sha256": s} for f, s in files]
        return out


def _mm(v: float) -> str:
    """mm to 4 decimals, trailing zeros dropped (5 -> "5", 1.5001 -> "1.5001": a scan just above
    the split does not read as equal to it)."""
    return f"{float(v):.4f}".rstrip("0").rstrip(".")


def choose(card, slice_mm: float) -> WeightsChoice:
    """Which weights a scan of slice spacing ``slice_mm`` (mm, of the input scan) runs with
    ``card``: the thick-slice ones above the card's split, else the main ones."""
    entry = card.thick_slice_weights
    if not entry:
        return WeightsChoice(MAIN, "the model has one set of weights", float(slice_mm))
    split = entry["above_slice_spacing_mm"]
    if is_thick(slice_mm, split):
        return WeightsChoice(THICK, f"slice spacing {_mm(slice_mm)} mm > {_mm(split)} mm", float(slice_mm))
    return WeightsChoice(MAIN, f"slice spacing {_mm(slice_mm)} mm <= {_mm(split)} mm", float(slice_mm))


def thick_path(package) -> Path:
    """The thick weights file; :class:`ModelError` if the card's entry leaves the package folder."""
    name = package.card.thick_slice_weights["weights"]
    folder = package.folder.resolve()
    path = (folder / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(folder) or path == folder:
        raise ModelError(f"{package.folder / 'model.json'}: {FIELD} weights {name!r} points outside the "
                         "package folder; it must be a file inside it.")
    return path


def tensor_layout(path: Path) -> dict[str, tuple]:
    """{tensor name: shape} from a safetensors file's header (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own types on a corrupt header
        raise ModelError(f"{path}: not a valid safetensors file ({exc}).") from None


def check_thick_file(package) -> None:
    """Refuse (:class:`ModelError` naming the file) a thick-slice weights file that is missing,
    not a regular file, or whose tensors (names and shapes; fp16 or fp32 alike) differ from the
    main weights', i.e. that does not fit the card's architecture. Reads headers only (cheap)."""
    from .filecheck import file_kind

    if not package.card.thick_slice_weights:
        return
    path = thick_path(package)
    kind = file_kind(path)
    if kind != "file":
        raise ModelError(f"{path}: thick-slice weights named by the model card are "
                         f"{'missing' if kind == 'missing' else 'a ' + kind + ', not a regular file'}"
                         f" (needed for scans of slice spacing > "
                         f"{_mm(package.card.thick_slice_weights['above_slice_spacing_mm'])} mm).")
    main = package.weight_files()[0][0]
    if file_kind(main) != "file":
        return  # the main weights' own check names it when they are loaded
    ours, theirs = tensor_layout(path), tensor_layout(main)
    if ours != theirs:
        diff = sorted(set(ours) ^ set(theirs)) or sorted(k for k in ours if ours[k] != theirs[k])
        raise ModelError(f"{path}: thick-slice weights do not have the main weights' layout ({main.name}; "
                         f"architecture {package.card.architecture}): they differ in {len(diff)} tensor(s), "
                         f"e.g. {diff[0]!r}. They must be the same network with other weights.")


def scorer_split_mm(path: Path) -> float | None:
    """The split a stitched candidate scorer file records (``stitched.slice_spacing_split_mm``,
    mm); None for a scorer that is not stitched."""
    try:
        data = json.loads(Path(path).read_text())
        split = (data.get("stitched") or {}).get("slice_spacing_split_mm")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelError(f"{path}: cannot read the candidate scorer ({exc}).") from None
    return None if split is None else float(split)


def check_scorer_split(package) -> None:
    """Refuse a package whose stitched candidate scorer splits slice spacing elsewhere than its
    thick-slice weights (see the module docstring: which value is the source of truth)."""
    entry, scorer = package.card.thick_slice_weights, package.card.candidate_scorer
    if not entry or not scorer:
        return
    path = package.folder / scorer["file"]
    if not path.is_file():
        return  # load_scorer names a missing scorer when it is needed
    split = scorer_split_mm(path)
    if split is not None and split != entry["above_slice_spacing_mm"]:
        raise ModelError(f"{path}: the stitched candidate scorer splits at slice spacing {_mm(split)} mm but "
                         f"{package.folder / 'model.json'} switches to the thick-slice weights above "
                         f"{_mm(entry['above_slice_spacing_mm'])} mm; the two must be one split (the card's "
                         "thick_slice_weights.above_slice_spacing_mm is the network's; the scorer's is in its "
                         "trees): re-stitch the scorer or re-add the weights with --split-mm "
                         f"{_mm(split)}.")


def package_variants(package) -> list[str]:
    """The networks a package holds: ``main``, and ``thick-slice`` when its card has them."""
    return [MAIN, THICK] if package.card.thick_slice_weights else [MAIN]
