"""The candidate scorer of a model package: a small model stored as JSON, evaluated with numpy.

No pickle: the file holds numbers only (a logistic regression's coefficients, or a gradient-
boosted ensemble's trees as arrays), a calibration map, and the operating modes. Its sha256 is
in the model card like the weights'. Layout (``format`` ``brainmetseg-candidate-scorer``,
``version`` 1)::

    {"candidate_threshold": 0.5,              # candidates: components of p > this, no minimum
     "features": [...],                       # names: exactly BrainMetSegLib.candidates.FEATURES, in order
     "model": {"kind": "logistic", "mean": [...], "scale": [...], "coef": [...], "intercept": b}
           | {"kind": "gbt", "init": b, "learning_rate": r,
              "trees": [{"feature": [...], "threshold": [...], "left": [...], "right": [...],
                         "value": [...]}, ...]},       # sklearn's tree arrays; leaves: left == -1
     "calibration": {"kind": "platt", "a": a, "b": b}     # p = 1 / (1 + exp(-(a * raw + b)))
                  | {"kind": "isotonic", "x": [...], "y": [...]},   # p = interp(raw, x, y)
     "modes": {"default": {"cut": c, "review_from": r, "large_cut": l}, "sensitive": {...}},
     "large_from_mm": 10.0,                   # optional, with each mode's optional large_cut
     "large_rule": "axial_measurable"}        # optional: which candidates are "large" (below)

``raw`` is the model's log-odds (logistic: ``coef . (x - mean) / scale + intercept``; trees:
``init + learning_rate * sum of leaf values``, sklearn's ``decision_function``). A candidate
whose calibrated lesion probability is >= the mode's ``cut`` is a lesion; one in
[``review_from``, ``cut``) is listed as "possible" for review. A *large* candidate is a lesion
from the mode's ``large_cut`` (<= ``cut``) on: the scorer has seen few lesions that large (the
demo's scored large ring-enhancing lesions 0.14-0.38), 21 of the 22 false candidates that large
it was fitted and tuned on scored below 0.07, and a missed measurable lesion changes a response
where a false one that size is dismissed at a glance. Which candidates are large is the file's
``large_rule`` (a file without the key keeps the rule it was made with, ``core_diameter``):

- ``core_diameter``: the core's longest 3D diameter (``log_diameter_mm``) is >= ``large_from_mm``;
- ``axial_measurable``: that, and the core is RANO-BM measurable on the axial plane (measured as
  the lesion table measures a label map: :func:`BrainMetSegLib.candidate_stage.candidate_measurable`;
  like the features, independent of the outline threshold). Elongated or flat false candidates
  (vessels, dura) reach 10 mm in 3D without being measurable; they get the mode's ``cut``. What
  the rule exists for, a measurable lesion, keeps ``large_cut``. No bundled scorer uses it: tried
  on demo 2.4.0's scorer it was first measured on the outline at the outline threshold, which
  lost 2 of the 3 low-scoring lesions >= 10 mm the large cut was added for; this core measure
  lost 1 of them and, on thick-slice phantoms, a measurable 11.6 mm lesion whose core is narrower
  in-plane than the lesion. Not shipped (docs/training/candidate_stage.md, "The large rule on
  axial measurability").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .candidates import FEATURES
from .options import PROBABILITY_OPEN_RANGE, ScorerMode, values

FORMAT = "brainmetseg-candidate-scorer"
MODES = values(ScorerMode)
#: Values of a scorer file's ``large_rule`` (module docstring); the first is a file's without it.
LARGE_RULES = ("core_diameter", "axial_measurable")


class ScorerError(ValueError):
    """A scorer file that cannot be trusted (message names the file and the problem)."""


@dataclass(frozen=True)
class Mode:
    """cut: lesion probability at or above which a candidate is a lesion; review_from: lower
    bound of the "possible" band listed for review (<= cut)."""

    cut: float
    review_from: float
    large_cut: float | None = None  # cut for candidates >= Scorer.large_from_mm (None: ``cut``)


@dataclass(frozen=True)
class Scorer:
    candidate_threshold: float
    model: dict
    calibration: dict
    modes: dict[str, Mode]
    source: str = ""
    large_from_mm: float | None = None
    large_rule: str = LARGE_RULES[0]

    @property
    def needs_measurable(self) -> bool:
        """Whether :meth:`decide` needs each candidate's axial RANO-BM measurability."""
        return (self.large_rule == "axial_measurable" and self.large_from_mm is not None
                and any(m.large_cut is not None for m in self.modes.values()))

    def large(self, features: np.ndarray, measurable: np.ndarray | None = None) -> np.ndarray:
        """Bool per candidate: large by the file's ``large_rule`` (module docstring); all False
        without ``large_from_mm``. measurable: (N,) bool, the candidates' axial RANO-BM
        measurability, required by ``axial_measurable``."""
        features = np.asarray(features, np.float64).reshape(-1, len(FEATURES))
        if self.large_from_mm is None:
            return np.zeros(len(features), bool)
        large = np.exp(features[:, FEATURES.index("log_diameter_mm")]) >= self.large_from_mm
        if self.large_rule == "axial_measurable":
            if measurable is None or len(measurable) != len(features):
                raise ValueError(f"{self.source}: its large rule needs each candidate's axial measurability")
            large &= np.asarray(measurable, bool)
        return large

    def decide(self, mode: str, probability: np.ndarray, features: np.ndarray,
               measurable: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(lesion, possible) bool per candidate in ``mode``, from the calibrated probability,
        the features (rows in :data:`FEATURES` order) and, for the ``axial_measurable`` large
        rule, each candidate's axial RANO-BM measurability (``measurable``, (N,) bool)."""
        m = self.modes[mode]
        cut = np.full(len(probability), m.cut)
        if self.large_from_mm is not None and m.large_cut is not None and len(probability):
            cut[self.large(features, measurable)] = m.large_cut
        lesion = probability >= cut
        return lesion, ~lesion & (probability >= m.review_from)

    def raw(self, features: np.ndarray) -> np.ndarray:
        """Uncalibrated log-odds of each row of ``features`` (N, len(FEATURES))."""
        x = np.asarray(features, np.float64).reshape(-1, len(FEATURES))
        m = self.model
        if m["kind"] == "logistic":
            return ((x - m["mean"]) / m["scale"]) @ m["coef"] + m["intercept"]
        x32 = x.astype(np.float32)  # sklearn's trees compare float32 features with float64 cuts
        total = np.zeros(len(x))
        rows = np.arange(len(x))
        for tree in m["trees"]:
            node = np.zeros(len(x), np.int64)
            for _ in range(tree["depth"]):
                leaf = tree["left"][node] < 0
                go_left = x32[rows, np.maximum(tree["feature"][node], 0)] <= tree["threshold"][node]
                node = np.where(leaf, node, np.where(go_left, tree["left"][node], tree["right"][node]))
            total += tree["value"][node]
        return m["init"] + m["learning_rate"] * total

    def probability(self, features: np.ndarray) -> np.ndarray:
        """Calibrated lesion probability of each candidate (row of ``features``)."""
        return calibrate(self.calibration, self.raw(features))


def calibrate(calibration: dict, raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw, np.float64)
    if calibration["kind"] == "platt":
        return 1.0 / (1.0 + np.exp(-(calibration["a"] * raw + calibration["b"])))
    return np.interp(raw, calibration["x"], calibration["y"])


def _floats(value, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(value, np.float64)
    if arr.ndim != 1 or (n is not None and len(arr) != n) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be {n or 'a list of'} finite numbers")
    return arr


def _tree(t: dict, n_features: int) -> dict:
    left, right = (np.asarray(t[k], np.int64) for k in ("left", "right"))
    feature = np.asarray(t["feature"], np.int64)
    nodes = len(left)
    if not (len(right) == len(feature) == len(t["threshold"]) == len(t["value"]) == nodes > 0):
        raise ValueError("tree arrays differ in length")
    inner = left >= 0
    if ((right >= 0) != inner).any() or (left[inner] >= nodes).any() or (right[inner] >= nodes).any() \
            or (left[inner] <= np.flatnonzero(inner)).any() or (right[inner] <= np.flatnonzero(inner)).any() \
            or (feature[inner] >= n_features).any() or (feature[inner] < 0).any():
        raise ValueError("tree arrays do not form a tree over the features")
    depth = np.zeros(nodes, np.int64)  # children come after parents (sklearn's depth-first order)
    for i in np.flatnonzero(inner):
        depth[left[i]] = depth[right[i]] = depth[i] + 1
    return {"left": left, "right": right, "feature": feature,
            "threshold": _floats(t["threshold"], "threshold"), "value": _floats(t["value"], "value"),
            "depth": int(depth.max())}


def _model(m: dict) -> dict:
    n = len(FEATURES)
    if m.get("kind") == "logistic":
        scale = _floats(m["scale"], "scale", n)
        if (scale <= 0).any():
            raise ValueError("scale must be > 0")
        return {"kind": "logistic", "mean": _floats(m["mean"], "mean", n), "scale": scale,
                "coef": _floats(m["coef"], "coef", n), "intercept": float(m["intercept"])}
    if m.get("kind") == "gbt":
        return {"kind": "gbt", "init": float(m["init"]), "learning_rate": float(m["learning_rate"]),
                "trees": [_tree(t, n) for t in m["trees"]]}
    raise ValueError(f"unknown model kind {m.get('kind')!r} (logistic or gbt)")


def _calibration(c: dict) -> dict:
    if c.get("kind") == "platt":
        return {"kind": "platt", "a": float(c["a"]), "b": float(c["b"])}
    if c.get("kind") == "isotonic":
        x, y = _floats(c["x"], "x"), _floats(c["y"], "y", len(c["x"]))
        if len(x) < 2 or (np.diff(x) < 0).any() or (np.diff(y) < 0).any() or y.min() < 0 or y.max() > 1:
            raise ValueError("isotonic calibration needs >= 2 increasing points with y in [0, 1]")
        return {"kind": "isotonic", "x": x, "y": y}
    raise ValueError(f"unknown calibration kind {c.get('kind')!r} (platt or isotonic)")


def _mode(name: str, m: dict) -> Mode:
    large = m.get("large_cut")
    mode = Mode(float(m["cut"]), float(m["review_from"]), None if large is None else float(large))
    if not 0 <= mode.review_from <= mode.cut <= 1:
        raise ValueError(f"mode {name}: need 0 <= review_from <= cut <= 1")
    if mode.large_cut is not None and not 0 <= mode.large_cut <= mode.cut:
        raise ValueError(f"mode {name}: need 0 <= large_cut <= cut")
    return mode


def _check_features(names: list) -> None:
    """A scorer's trees index features by position: its names must be this library's, in order.
    A scorer fitted on other features (e.g. one of demo <= 2.2.1, 18 features, without
    ``slice_spacing_mm``) would read the wrong columns and score silently wrong."""
    if names == list(FEATURES):
        return
    missing = [f for f in FEATURES if f not in names]
    unknown = [f for f in names if f not in FEATURES]
    parts = ([f"lacks {', '.join(missing)}"] if missing else []) \
        + ([f"has unknown {', '.join(map(str, unknown))}"] if unknown else [])
    detail = "; ".join(parts) or "has the same names in another order"
    raise ValueError(f"its {len(names)} features are not this library's {len(FEATURES)} "
                     f"(BrainMetSegLib.candidates.FEATURES): it {detail}; it was made for another version "
                     "of BrainMetSeg")


def scorer_from_dict(data: dict, source: str = "scorer") -> Scorer:
    """A :class:`Scorer` from the JSON layout above; :class:`ScorerError` naming ``source``."""
    try:
        if data.get("format") != FORMAT or data.get("version") != 1:
            raise ValueError(f"not a {FORMAT} version 1 file")
        _check_features(list(data["features"]))
        threshold = float(data["candidate_threshold"])
        low, high = PROBABILITY_OPEN_RANGE
        if not low < threshold < high:
            raise ValueError("candidate_threshold must be in (0, 1)")
        modes = {name: _mode(name, data["modes"][name]) for name in MODES}
        large = data.get("large_from_mm")
        if large is not None and not (np.isfinite(float(large)) and float(large) > 0):
            raise ValueError("large_from_mm must be a positive number of mm")
        rule = data.get("large_rule", LARGE_RULES[0])
        if rule not in LARGE_RULES:
            raise ValueError(f"unknown large_rule {rule!r} ({' or '.join(LARGE_RULES)})")
        return Scorer(threshold, _model(data["model"]), _calibration(data["calibration"]), modes, source,
                      None if large is None else float(large), rule)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ScorerError(f"{source}: invalid candidate scorer ({detail}).") from None


def load_scorer(path: str | Path) -> Scorer:
    """Read a scorer JSON file (the caller checks its sha256 against the card)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ScorerError(f"{path}: cannot read the candidate scorer ({exc}).") from None
    if not isinstance(data, dict):
        raise ScorerError(f"{path}: invalid candidate scorer (not a JSON object).")
    return scorer_from_dict(data, str(path))
