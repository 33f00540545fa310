"""The edit tools of a review: trame-slicer's segment editor effects (paint, erase,
islands), the brush in mm, and an empty segment for a lesion the model missed.

trame-slicer is imported inside the functions, so this module loads without it.
"""

from __future__ import annotations

from ..lesion_vocabulary import METASTASIS_TERMINOLOGY, segment_color, segment_id, segment_name
from .review import ReviewError

EFFECTS = ("none", "paint", "erase", "islands")


def effect_label(effect_name: str) -> str:
    """"paint" for trame-slicer's effect name (module path + class name)."""
    return effect_name.rsplit(".", 1)[-1].replace("SegmentationEffect", "").lower() or effect_name


def activate_effect(editor, name: str, brush_diameter_mm: float | None = None) -> None:
    """Activate "paint", "erase", "islands" (click an island to keep it) or "none" on the
    segment editor ``editor``; ReviewError for another name."""
    from trame_slicer.segmentation import (
        SegmentationEffectErase,
        SegmentationEffectIslands,
        SegmentationEffectPaint,
    )
    from trame_slicer.segmentation.segmentation_effect_islands import SegmentationIslandsMode

    if name == "none":
        editor.deactivate_effect()
        return
    types = {"paint": SegmentationEffectPaint, "erase": SegmentationEffectErase,
             "islands": SegmentationEffectIslands}
    if name not in types:
        raise ReviewError(f"unknown effect {name!r}; one of {', '.join(EFFECTS)}.")
    effect = editor.set_active_effect_type(types[name])
    if name == "islands":
        effect.set_island_mode(SegmentationIslandsMode.KEEP_SELECTED)
    elif brush_diameter_mm is not None:
        set_brush_diameter(editor, brush_diameter_mm)


def set_brush_diameter(editor, diameter_mm: float) -> None:
    """Brush diameter of the active paint / erase effect in mm (not relative to the screen)."""
    from trame_slicer.segmentation.paint_effect_parameters import BrushDiameterMode

    effect = editor.active_effect
    if effect is not None and hasattr(effect, "set_brush_diameter"):
        effect.set_brush_diameter(float(diameter_mm), BrushDiameterMode.Absolute)


def keep_largest_island(editor) -> None:
    """Keep only the largest 26-connected piece of the selected segment."""
    from trame_slicer.segmentation import SegmentationEffectIslands

    effect = editor.set_active_effect_type(SegmentationEffectIslands)
    effect.keep_largest_island()


def add_empty_lesion(segmentation_node, lesion_id: int) -> str:
    """An empty segment for lesion ``lesion_id`` (its name, colour and terminology); returns its id."""
    seg = segmentation_node.GetSegmentation()
    seg.AddEmptySegment(segment_id(lesion_id), segment_name(lesion_id), segment_color(lesion_id))
    seg.GetSegment(segment_id(lesion_id)).SetTerminology(METASTASIS_TERMINOLOGY)
    return segment_id(lesion_id)
