"""The segments as a function of the probability map: which operating point made them,
whether they were edited since, re-threshold (no model run) and re-measure after edits.

The operating point and the segments' state are node attributes (:mod:`.links`), so a
saved and reloaded scene still knows them; a state recorded by another process never
matches this one's, so segments loaded from a saved scene count as edited.
"""

from __future__ import annotations

import enum
import json
import uuid

import numpy as np
import SimpleITK as sitk
import slicer

from .. import lesions
from ..operating_point import OperatingPoint, lesion_labels
from . import volumes
from .lesion_table import fill_table
from .links import (
    ATTR_MIN_VOLUME,
    ATTR_OUTLINE,
    ATTR_SEGMENTS_STATE,
    ATTR_THRESHOLD,
    ROLE_INPUT,
    ROLE_PROBABILITY,
    new_table,
    result_nodes,
)
from .segments import segments_label_map, set_segments

# Segment states recorded by another process (a scene saved and loaded again) never match
# this one's: there, whether the segments were edited is unknown and treated as edited.
_SESSION = uuid.uuid4().hex


def _segments_state(segmentation) -> str:
    """Segment ids and the newest modification time of their labelmaps (this process)."""
    seg = segmentation.GetSegmentation()
    ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    mtimes = [seg.GetSegment(i).GetRepresentation(name) for i in ids]
    newest = max((m.GetMTime() for m in mtimes if m is not None), default=0)
    return json.dumps([_SESSION, ids, newest])


def record_operating_point(segmentation, point: OperatingPoint | None) -> None:
    """Record ``point`` (None: the segments are no thresholding) and the segments' state now."""
    values = (None, None, None) if point is None else (point.threshold, point.min_volume_mm3, point.outline)
    for attr, value in zip((ATTR_THRESHOLD, ATTR_MIN_VOLUME, ATTR_OUTLINE), values, strict=True):
        segmentation.SetAttribute(attr, "" if value is None else repr(float(value)))
    segmentation.SetAttribute(ATTR_SEGMENTS_STATE, _segments_state(segmentation))


def operating_point(segmentation) -> OperatingPoint | None:
    """The operating point the segments were last thresholded with; None when unknown (made
    by hand, or after "Update table" from edited segments). A scene saved before outlines
    existed has no outline attribute: its segments were drawn at the detection threshold."""
    threshold, min_volume, outline = (segmentation.GetAttribute(a) for a in
                                      (ATTR_THRESHOLD, ATTR_MIN_VOLUME, ATTR_OUTLINE))
    if not threshold:
        return None
    return OperatingPoint(float(threshold), float(min_volume or 0.0), float(outline) if outline else None)


def segments_edited(segmentation) -> bool:
    """True when the segments may differ from the last thresholding: painted, erased,
    added or removed since, or loaded from a saved scene (where it cannot be known)."""
    return segmentation.GetAttribute(ATTR_SEGMENTS_STATE) != _segments_state(segmentation)


def can_rethreshold(segmentation) -> bool:
    """True when the segmentation is a result with its probability map still in the scene."""
    return bool(segmentation is not None and segmentation.GetNodeReference(ROLE_PROBABILITY) is not None
                and segmentation.GetNodeReference(ROLE_INPUT) is not None)


class RethresholdAction(enum.Enum):
    """What a front end does when the operating point it shows changes."""

    NOTHING = "nothing"  # the segments already are that operating point, or no probability map
    RETHRESHOLD = "rethreshold"  # replace the segments (they were not edited)
    CONFIRM = "confirm"  # replacing would lose edits: ask the user first


def rethreshold_action(segmentation, point: OperatingPoint) -> RethresholdAction:
    """Decide whether ``point`` should replace the segments.

    A scene load or parameter-node restore that sets the controls to the values the
    segments were made with does nothing, edited or not; other values re-threshold
    unedited segments and need confirmation for edited ones.
    """
    if not can_rethreshold(segmentation):
        return RethresholdAction.NOTHING
    if point.same_labels(operating_point(segmentation)):
        return RethresholdAction.NOTHING
    return RethresholdAction.CONFIRM if segments_edited(segmentation) else RethresholdAction.RETHRESHOLD


class TooManyLesions(ValueError):
    """A re-threshold would make more lesions than the caller can show (segments unchanged)."""


def rethreshold(segmentation, point: OperatingPoint, max_lesions: int | None = None) -> int:
    """Apply ``point`` to the result's probability map (no model run) by
    :func:`~BrainMetSegLib.operating_point.lesion_labels`: replace the segments and the
    table rows, record the point. Returns the number of lesions. With ``max_lesions``, a
    point giving more lesions raises :class:`TooManyLesions` and changes nothing."""
    nodes = result_nodes(segmentation)
    if nodes.probability is None or nodes.input_volume is None:
        raise ValueError(f"{segmentation.GetName()}: no BrainMetSeg probability map to re-threshold")
    if not isinstance(point, OperatingPoint):
        raise TypeError(f"rethreshold takes an OperatingPoint, not {point!r}")
    prob, ijk_to_ras = volumes.volume_array(nodes.probability)
    prob_image = volumes.image_from_array(prob.astype(np.float32, copy=False), ijk_to_ras)
    labels = lesion_labels(prob_image, point)
    count = int(sitk.GetArrayViewFromImage(labels).max())  # ids are 1..N
    if max_lesions is not None and count > max_lesions:
        raise TooManyLesions(f"{point.describe()} gives {count} lesions (more than {max_lesions})")
    rows = lesions.lesion_table(labels, prob_image, point.outline)
    segment_ids = set_segments(segmentation, sitk.GetArrayViewFromImage(labels), ijk_to_ras,
                               [int(r["lesion_id"]) for r in rows])
    table = nodes.table or new_table(segmentation)
    fill_table(table, rows, segment_ids, segmentation, nodes.input_volume)
    record_operating_point(segmentation, point)
    return len(rows)


def update_table(segmentation, reference_volume=None) -> int:
    """Re-measure the lesions from the segments as they are now (after edits: painted,
    erased, added or split segments). One row per non-empty segment, in segment order;
    each segment is one lesion whatever its connectivity. Measured on the grid of
    ``reference_volume`` (default: the result's input volume). Returns the row count.
    """
    nodes = result_nodes(segmentation)
    reference_volume = reference_volume or nodes.input_volume
    if reference_volume is None:
        raise ValueError(f"{segmentation.GetName()}: give the volume the segmentation was made on")
    labels, ijk_to_ras, segment_ids = segments_label_map(segmentation, reference_volume)
    prob_image = None
    if nodes.probability is not None:
        prob, prob_matrix = volumes.volume_array(nodes.probability)
        if prob.shape == labels.shape and np.allclose(prob_matrix, ijk_to_ras, atol=1e-4) \
                and nodes.probability.GetTransformNodeID() == reference_volume.GetTransformNodeID():
            prob_image = volumes.image_from_array(prob.astype(np.float32, copy=False), ijk_to_ras)
    # measured on the label map (diameters_on "labels"): the point the segments were drawn at is
    # forgotten below, so a second update could not measure them as the first did
    rows = lesions.lesion_table(volumes.image_from_array(labels, ijk_to_ras), prob_image)
    row_ids = [segment_ids[int(r["lesion_id"]) - 1] for r in rows]
    table = nodes.table or new_table(segmentation)
    fill_table(table, rows, row_ids, segmentation, reference_volume)
    # the segments are no longer the thresholded probability map
    record_operating_point(segmentation, None)
    return len(rows)
