"""Two gradient-boosted candidate scorers as one, each applying to a range of slice spacing.

THIN scores scans whose ``slice_spacing_mm`` is <= ``split_mm``, THICK the others. THIN may be a
scorer of the 18 features before ``slice_spacing_mm`` existed (demo <= 2.2.1): since that
feature is the last one, its tree indices mean the same columns.

The result is an ordinary scorer (the layout of :mod:`BrainMetSegLib.scorer`; nothing new at
run time): every tree of each side gets a root node that splits on ``slice_spacing_mm`` and sends
the other side's scans to a leaf of 0; one more tree holds each side's ``init``; each side's
Platt calibration (a, b) is folded into its leaves, so the stitched raw output already is
``a * raw + b`` of the side that applies and its own calibration is the identity. Both sides
must share the learning rate, candidate threshold, modes, ``large_from_mm`` and ``large_rule``,
or they would not be one operating rule.
"""

from __future__ import annotations

from ..candidates import FEATURES
from ..scorer import scorer_from_dict

SLICE = FEATURES.index("slice_spacing_mm")
SHARED = ("candidate_threshold", "modes", "large_from_mm", "large_rule")
_ZERO = {"feature": [-2], "threshold": [-2.0], "left": [-1], "right": [-1], "value": [0.0]}


class StitchError(ValueError):
    """Two scorers that cannot be one operating rule (the message says why)."""


def _routed(tree: dict, scale: float, thin_side: bool, split_mm: float) -> dict:
    """``tree`` (sklearn's arrays) under a root on slice spacing, its leaf values x ``scale``;
    the other side is one leaf of 0. Nodes stay in depth-first order (children after parents)."""
    n = len(tree["left"])
    shift = 1 if thin_side else 2  # nodes before the tree: the root (and the zero leaf)
    body = {"feature": list(tree["feature"]), "threshold": list(tree["threshold"]),
            "left": [c + shift if c >= 0 else -1 for c in tree["left"]],
            "right": [c + shift if c >= 0 else -1 for c in tree["right"]],
            "value": [v * scale for v in tree["value"]]}
    first, second = (body, _ZERO) if thin_side else (_ZERO, body)
    left, right = (1, n + 1) if thin_side else (1, 2)
    root = {"feature": [SLICE], "threshold": [split_mm], "left": [left], "right": [right], "value": [0.0]}
    return {k: root[k] + first[k] + second[k] for k in root}


def _platt_gbt(data: dict, name: str) -> tuple[float, float, dict]:
    model, cal = data["model"], data["calibration"]
    if model.get("kind") != "gbt" or cal.get("kind") != "platt":
        raise StitchError(f"{name}: only gradient-boosted scorers with Platt calibration can be stitched")
    return float(cal["a"]), float(cal["b"]), model


def _check_sides(thin: dict, thick: dict) -> None:
    for key in SHARED:
        if thin.get(key) != thick.get(key):
            raise StitchError(f"the two scorers differ in {key}: {thin.get(key)!r} vs {thick.get(key)!r}")
    if list(thick["features"]) != list(FEATURES):
        raise StitchError("THICK must have this library's features")
    if list(thin["features"]) not in (list(FEATURES), list(FEATURES[:SLICE])) or SLICE != len(FEATURES) - 1:
        raise StitchError("THIN must have this library's features, or them less the last, slice_spacing_mm")
    if float(thin["model"]["learning_rate"]) != float(thick["model"]["learning_rate"]):
        raise StitchError("the two scorers' learning rates differ")


def stitch(thin: dict, thick: dict, split_mm: float) -> dict:
    """One scorer dict: ``thin``'s probabilities where slice spacing <= ``split_mm`` (mm), else
    ``thick``'s (equal up to floating-point summation order)."""
    (a1, b1, m1), (a2, b2, m2) = _platt_gbt(thin, "THIN"), _platt_gbt(thick, "THICK")
    _check_sides(thin, thick)
    rate = float(m1["learning_rate"])
    offsets = {"feature": [SLICE, -2, -2], "threshold": [split_mm, -2.0, -2.0], "left": [1, -1, -1],
               "right": [2, -1, -1], "value": [0.0, (a1 * m1["init"] + b1) / rate, (a2 * m2["init"] + b2) / rate]}
    trees = [offsets] + [_routed(t, a1, True, split_mm) for t in m1["trees"]] \
        + [_routed(t, a2, False, split_mm) for t in m2["trees"]]
    out = {k: thick[k] for k in ("format", "version", *SHARED) if k in thick}
    out.update(features=list(FEATURES), model={"kind": "gbt", "init": 0.0, "learning_rate": rate, "trees": trees},
               calibration={"kind": "platt", "a": 1.0, "b": 0.0},
               stitched={"slice_spacing_split_mm": split_mm,
                         "thin": {"applies": f"slice spacing <= {split_mm} mm", "training": thin.get("training")},
                         "thick": {"applies": f"slice spacing > {split_mm} mm", "training": thick.get("training")}})
    return out


def side_scorers(thin: dict, thick: dict):
    """The two sides as scorers of this library (an 18-feature THIN read with all 19 names)."""
    return (scorer_from_dict({**thin, "features": list(FEATURES)}, "THIN"), scorer_from_dict(thick, "THICK"))
