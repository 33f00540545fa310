"""Two candidate scorers stitched into one file by slice spacing (demo 2.4.0's scorer)."""

import json

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from BrainMetSegLib.candidates import FEATURES
from BrainMetSegLib.scorer import scorer_from_dict
from BrainMetSegLib.train.candidate_scorer import export_gbt, scorer_json
from BrainMetSegLib.train.stitch_scorers import SLICE, StitchError, side_scorers, stitch

MODES = {"default": {"cut": 0.5, "review_from": 0.2}, "sensitive": {"cut": 0.2, "review_from": 0.1}}


def scorers():
    """A THIN scorer of the 18 features before slice spacing and a THICK one of all 19, fitted on
    different random labels, with different Platt calibrations."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, len(FEATURES)))
    x[:, SLICE] = rng.choice([1.0, 3.0, 5.0, 7.0], 200)
    y_thin, y_thick = x[:, 0] + 0.5 * rng.normal(size=200) > 0, x[:, 1] - x[:, SLICE] / 4 > -1
    fit = {"n_estimators": 5, "max_depth": 3, "learning_rate": 0.1}
    thin = scorer_json(export_gbt(GradientBoostingClassifier(**fit).fit(x[:, :SLICE], y_thin)),
                       {"kind": "platt", "a": 0.8, "b": 0.3}, MODES, 0.5, {})
    thin["features"] = list(FEATURES[:SLICE])
    thick = scorer_json(export_gbt(GradientBoostingClassifier(**fit).fit(x, y_thick)),
                        {"kind": "platt", "a": 1.2, "b": -0.1}, MODES, 0.5, {})
    return json.loads(json.dumps(thin)), json.loads(json.dumps(thick)), x


def test_stitched_scorer_gives_each_side_its_own_scans():
    thin, thick, x = scorers()
    joint = scorer_from_dict(json.loads(json.dumps(stitch(thin, thick, 1.5))), "stitched.json")
    low, high = side_scorers(thin, thick)
    p = joint.probability(x)
    one_mm = x[:, SLICE] <= 1.5
    assert 0 < one_mm.sum() < len(x)
    assert np.allclose(p[one_mm], low.probability(x[one_mm]), atol=1e-12)
    assert np.allclose(p[~one_mm], high.probability(x[~one_mm]), atol=1e-12)
    # the sides really differ, so the routing is what made the match
    assert np.abs(low.probability(x) - high.probability(x)).max() > 0.1
    assert not np.allclose(joint.probability(np.c_[x[:, :SLICE], np.full(len(x), 1.0)]),
                           joint.probability(np.c_[x[:, :SLICE], np.full(len(x), 3.0)]))


def test_scorers_of_different_operating_rules_are_not_stitched():
    thin, thick, _ = scorers()
    with pytest.raises(StitchError, match="differ in modes"):
        stitch({**thin, "modes": {**MODES, "default": {"cut": 0.6, "review_from": 0.2}}}, thick, 1.5)
    with pytest.raises(StitchError, match="Platt"):
        stitch(thin, {**thick, "calibration": {"kind": "isotonic", "x": [0, 1], "y": [0, 1]}}, 1.5)
    with pytest.raises(StitchError, match="THIN must have"):
        stitch({**thin, "features": list(FEATURES[1:])}, thick, 1.5)
