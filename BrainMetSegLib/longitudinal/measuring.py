"""Every time point of a comparison measured by the same rule.

Diameters come from each scan's own lesion table (:func:`BrainMetSegLib.lesions.lesion_table`),
on that scan's grid. Where **every** time point has the probability map its lesions were drawn
from and the level they were drawn at (its run record), every lesion is measured on the
probability's outline at that level (sub-voxel); where one has not (label maps given with
``--labels``, a result folder without its probability map or its outline recorded), every time
point is measured on its label map, so two scans are never measured by different rules.
A table read from a result folder (``lesions.json``, written by whichever version segmented it)
is measured again here for the same reason. A lesion edited after segmentation is not a region
of the probability map: it is measured on its label map either way (its row's ``diameters_on``).

With the image edge (``edge``, opt-in in ``compare``, ``--diameters image``: :class:`.series.CompareRequest`'s
``diameters``), where the probability rule applies, each lesion is measured where its
enhancement ends on the CE-T1 image (:mod:`BrainMetSegLib.image_edge`, ``diameters_on`` =
"image"); where that edge cannot be trusted (no clear contrast, an edge that leaks) the lesion
keeps its probability outline, and the reason is recorded. One rule on every time point.
"""

from __future__ import annotations

from collections import Counter

import SimpleITK as sitk

from ..candidate_stage import outline_level as candidate_outline
from ..image_edge import ON_IMAGE, ImageEdgeConfig, measure_rows
from ..lesions import COLUMNS, ON_PROBABILITY, lesion_table
from ..operating_point import OperatingPoint
from .tracking import TimePoint

# Columns a new measurement replaces; the others (the scorer's lesion probability) are the run's.
_MEASURED = tuple(c for c in COLUMNS if c != "lesion_probability")


def outline_level(run: dict | None) -> float | None:
    """The probability a run's lesions were drawn at (each lesion a region of ``p >`` it), from
    its record's settings (run.json): the candidate stage's outline when the run had one, else
    the operating point's outline (the detection threshold for runs made before outlines).
    None when the record holds neither."""
    settings = (run or {}).get("settings") or {}
    stage = settings.get("candidate_stage") or {}
    try:
        if "candidate_threshold" in stage:
            outline = settings.get("outline_threshold_used")
            return candidate_outline(float(stage["candidate_threshold"]), None if outline is None else float(outline))
        return OperatingPoint.from_settings(settings).outline
    except (TypeError, ValueError):
        return None


def measure_alike(timepoints: list[TimePoint], runs: list[dict | None],
                  probabilities: list[sitk.Image | None], edge: ImageEdgeConfig | None = None) -> dict:
    """Measure every time point's lesions again by one rule, in place (``table``, and the
    ``probability`` / ``outline`` / ``edge`` the tracking re-measures pieces with); returns the
    record for ``longitudinal.json``: the rule, each time point's level, its lesions per method
    and, with ``edge``, why a lesion kept its probability outline."""
    levels = [outline_level(run) for run in runs]
    on_probability = all(p is not None and level is not None for p, level in zip(probabilities, levels, strict=True))
    on_image = on_probability and edge is not None
    counts, refused = [], {}
    for tp, probability, level in zip(timepoints, probabilities, levels, strict=True):
        tp.probability, tp.outline = (probability, level) if on_probability else (None, None)
        tp.edge = edge if on_image else None
        old = {int(row["lesion_id"]): row for row in tp.table or []}
        table = []
        for row in lesion_table(tp.labels, probability, tp.outline):
            before = old.get(int(row["lesion_id"]))
            table.append(row if before is None else {**before, **{c: row[c] for c in _MEASURED}})
        if on_image:
            table, refused[tp.name] = measure_rows(tp.image, tp.labels, table, edge)
        tp.table = table
        counts.append(dict(Counter(row["diameters_on"] for row in table)))
    rule = "probability outline" if on_probability else "label map"
    return {"rule": f"image edge, else {rule}" if on_image else rule,
            "outline": levels if on_probability else None,
            "lesions_by_method": {tp.name: n for tp, n in zip(timepoints, counts, strict=True)},
            **({"image_edge_refused": refused} if on_image else {}),
            "note": f"lesions measured on '{ON_IMAGE}' lie on the CE-T1 image's edge (half-maximum between the "
                    f"lesion's enhancement and its local background, sub-voxel); on '{ON_PROBABILITY}' on the "
                    "probability map's outline at the level the run drew them at (sub-voxel); the others on the label "
                    "map (edited lesions, or a time point without its probability map: then every time point)"}
