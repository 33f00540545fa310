"""Test-time grid shifts: the probability averaged over model grids shifted by half a voxel.

Where the model grid's voxels fall on a lesion (the grid's phase) changes its outline: on
synthetic rescans of unchanged lesions the follow-up/baseline diameter ratio spreads with an SD
of 0.041 with the head in place and 0.066 with it moved, a shift alone giving the whole
difference (docs/longitudinal.md). Running the network on grids moved by half a model voxel
and averaging the probabilities on the input grid makes the outline depend less on that phase,
at N times the network's time. The offsets are fixed patterns on the half-voxel lattice, so a
run is reproducible; every pass resamples the CE-T1 itself (not the first grid's array, which
would blur it twice) and puts the first pass's crop, brain mask and dilated gate on its grid.
"""

from __future__ import annotations

import itertools

from .options import GRID_SHIFTS

HALF = 0.5

# Offsets (x, y, z) in model voxels per number of grids: the unshifted grid first, then the
# half-voxel shifts spread as evenly as the count allows (2: the body diagonal, 4: a tetrahedron
# of the cube's corners, 8: every corner).
_PATTERNS: dict[int, tuple[tuple[float, float, float], ...]] = {
    1: ((0.0, 0.0, 0.0),),
    2: ((0.0, 0.0, 0.0), (HALF, HALF, HALF)),
    4: ((0.0, 0.0, 0.0), (HALF, HALF, 0.0), (HALF, 0.0, HALF), (0.0, HALF, HALF)),
    8: tuple(itertools.product((0.0, HALF), repeat=3)),
}
assert tuple(_PATTERNS) == GRID_SHIFTS


def grid_offsets_vox(n: int) -> tuple[tuple[float, float, float], ...]:
    """The ``n`` model-grid offsets (x, y, z, in model voxels) a run with ``--grid-shifts n`` averages."""
    if n not in _PATTERNS:
        raise ValueError(f"grid shifts must be one of {GRID_SHIFTS}, not {n!r}")
    return _PATTERNS[n]
