"""One colour per track, the same on every time point and in every front end (report, viewer, Slicer)."""

from __future__ import annotations

# Colours that stay apart on a grey MR background (Slicer-like label palette).
_PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
            (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180))


def track_colour(track_id: int) -> list[int]:
    """RGB (0-255) of a track: the same on every time point and in every front end."""
    return list(_PALETTE[(track_id - 1) % len(_PALETTE)])
