"""The lesions as the viewer shows them, read from the scene's segmentation and table nodes.

A lesion is a segment named ``Metastasis N`` (lesion id N, :mod:`BrainMetSegLib.lesion_vocabulary`);
its measures are the row of the scene's lesion table node (:mod:`BrainMetSegLib.mrml`)
whose segment id it is. A lesion drawn since the last measurement has a segment and no row.
Label maps are (K, J, I) = (Z, Y, X) arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .. import mrml
from ..lesion_vocabulary import lesion_id_from_segment_name, segment_id
from ..lesions import COLUMNS
from .review import ReviewError


@dataclass
class LesionRow:
    """A row of the viewer's lesion table: the library's measures plus how it is shown."""

    lesion_id: int
    name: str
    color_hex: str
    visible: bool
    measures: dict


def lesion_segments(segmentation_node) -> list[tuple[str, int]]:
    """(segment id, lesion id) of every lesion segment, in segment order."""
    out = []
    segmentation = segmentation_node.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        seg_id = segmentation.GetNthSegmentID(i)
        lesion_id = lesion_id_from_segment_name(seg_id)
        if lesion_id is not None:
            out.append((seg_id, lesion_id))
    return out


def measured_rows(table_node) -> list[tuple[str, dict]]:
    """(segment id, measures) of each row of the scene's lesion table node."""
    table = table_node.GetTable()
    ids = json.loads(table_node.GetAttribute(mrml.ATTR_SEGMENT_IDS) or "[]")
    columns = {name: table.GetColumnByName(name) for name in COLUMNS}
    out = []
    for row, seg_id in enumerate(ids):
        out.append((seg_id, {name: col.GetValue(row) for name, col in columns.items() if col is not None}))
    return out


def shown_rows(segmentation_node, table_node) -> list[LesionRow]:
    """The lesion table as shown: one row per segment (measures from the table node,
    empty for a lesion drawn since the last measurement), colour and visibility."""
    display = segmentation_node.GetDisplayNode()
    segmentation = segmentation_node.GetSegmentation()
    measured = dict(measured_rows(table_node))
    rows = []
    for seg_id, lesion_id in lesion_segments(segmentation_node):
        segment = segmentation.GetSegment(seg_id)
        measures = dict(measured.get(seg_id, {}))
        if measures:
            measures["lesion_id"] = lesion_id
        rows.append(LesionRow(lesion_id, segment.GetName(), hex_color(segment.GetColor()),
                              bool(display.GetSegmentVisibility(seg_id)), measures))
    return rows


def table_row_index(table_node, lesion_id: int) -> int:
    """The table node's row of lesion ``lesion_id``; ReviewError when it has none yet."""
    for row, (seg_id, _) in enumerate(measured_rows(table_node)):
        if seg_id == segment_id(lesion_id):
            return row
    raise ReviewError(f"lesion {lesion_id} is not measured yet; re-measure the table first.")


def segments_as_labels(segmentation_node, volume_node) -> sitk.Image:
    """The segments as an instance label map (lesion id per voxel) on ``volume_node``'s grid."""
    merged, ijk_to_ras, seg_ids = mrml.segments_label_map(segmentation_node, volume_node)
    lut = np.zeros(len(seg_ids) + 1, np.uint16)
    for index, seg_id in enumerate(seg_ids, start=1):
        lut[index] = lesion_id_from_segment_name(seg_id) or 0
    return mrml.image_from_array(lut[merged], ijk_to_ras)


def hex_color(rgb) -> str:
    """``#rrggbb`` of an RGB colour in [0, 1]."""
    return "#" + "".join(f"{int(round(255 * float(c))):02x}" for c in rgb[:3])


def rgb_color(color_hex: str) -> tuple[float, float, float]:
    """RGB in [0, 1] of ``#rrggbb``; ReviewError for anything else."""
    h = color_hex.lstrip("#")
    if len(h) != 6:
        raise ReviewError(f"colour {color_hex!r} is not #rrggbb.")
    return tuple(int(h[i:i + 2], 16) / 255.0 for i in (0, 2, 4))
