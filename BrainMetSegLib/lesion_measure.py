"""The lesion table of every lesion of a label map at once (vectorised).

Same columns and definitions as :func:`BrainMetSegLib.lesions.lesion_table` (volumes
from voxel counts, centroids in RAS mm, longest 3D diameter on the marching-cubes
surface, RANO-BM axial diameters on the marching-squares contour of the axial slice
where the lesion is longest), but the surface and contour points of all lesions are
collected in one pass over the array instead of one marching-cubes call per lesion
and one marching-squares call per lesion slice. On a binary mask the level-0.5
vertices are exactly the midpoints between a lesion voxel and its face-neighbours
outside the lesion, so the point sets are the same; only ties between equally long
axial diameters may pick another (equally long) direction and hence another
perpendicular diameter. It keeps re-thresholding and "Update table" interactive when
a low threshold gives thousands of specks (the per-lesion table takes seconds there).

Arrays are (K, J, I) = (Z, Y, X).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .lesions import (
    RANO_MIN_LONGEST_MM,
    RANO_MIN_PERPENDICULAR_MM,
    RANO_MIN_SLICES,
    Frame,
    _farthest_pair,
    axial_axis,
    component_diameters_mm,
    voxel_volume_mm3,
)


def _face_points(lab: np.ndarray, axes) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints (k, j, i) between each labelled voxel and its neighbours along ``axes``
    that carry another value, with the voxel's label."""
    padded = np.pad(lab, 1)
    points, ids = [], []
    for axis in axes:
        for step in (1, -1):
            neighbour = np.roll(padded, -step, axis=axis)
            face = (padded > 0) & (neighbour != padded)
            kji = np.argwhere(face).astype(np.float64) - 1.0
            kji[:, axis] += 0.5 * step
            points.append(kji)
            ids.append(padded[face])
    return np.concatenate(points), np.concatenate(ids)


# Groups up to this many points are measured all at once (all pairs, batched by size);
# larger ones one by one through their convex hull (lesions._farthest_pair).
_BATCH_MAX_POINTS = 50
_BATCH_PAIRS = 2_000_000  # pair distances per batch (bounds memory to ~50 MB)


def _grouped_farthest_pair(points: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """Largest pairwise distance of each group ``points[starts[g]:ends[g]]`` (mm) and the
    unit vector along it (the first such pair in (i, j) order for ties)."""
    sizes = ends - starts
    length = np.zeros(len(starts))
    direction = np.tile([1.0, 0.0, 0.0], (len(starts), 1))
    for size in np.unique(sizes[(sizes > 1) & (sizes <= _BATCH_MAX_POINTS)]):
        groups = np.flatnonzero(sizes == size)
        step = max(1, _BATCH_PAIRS // (size * size))
        for b in range(0, len(groups), step):
            sel = groups[b:b + step]
            pts = points[starts[sel][:, None] + np.arange(size)]  # (m, size, 3)
            d2 = ((pts[:, :, None] - pts[:, None]) ** 2).sum(-1).reshape(len(sel), -1)
            best = d2.argmax(axis=1)
            first, second = np.divmod(best, size)
            rows = np.arange(len(sel))
            vec = pts[rows, second] - pts[rows, first]
            norm = np.linalg.norm(vec, axis=1)
            length[sel] = norm
            direction[sel] = vec / np.where(norm > 0, norm, 1.0)[:, None]
    for g in np.flatnonzero(sizes > _BATCH_MAX_POINTS):
        length[g], direction[g] = _farthest_pair(points[starts[g]:ends[g]])
    return length, direction


def _axial_diameters(lab: np.ndarray, n: int, frame: Frame, axis: int):
    """(longest, perpendicular, slice count) per label 0..n on its axial slices, mm."""
    in_plane = [a for a in range(3) if a != axis]
    pts, ids = _face_points(lab, in_plane)
    slices = np.rint(pts[:, axis]).astype(np.int64)
    key = ids.astype(np.int64) * (lab.shape[axis] + 1) + slices
    order = np.argsort(key, kind="stable")
    pts, key = frame.lps(pts[order]), key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    group_label = key[starts] // (lab.shape[axis] + 1)
    group_slice = key[starts] % (lab.shape[axis] + 1)
    length, direction = _grouped_farthest_pair(pts, starts, ends)
    # perpendicular extent of every group's contour, across its longest diameter
    normal = frame.matrix[:, 2 - axis] / np.linalg.norm(frame.matrix[:, 2 - axis])
    across = np.cross(normal, direction)
    group_of_point = np.repeat(np.arange(len(starts)), ends - starts)
    proj = np.einsum("ij,ij->i", pts, across[group_of_point])
    extent = np.maximum.reduceat(proj, starts) - np.minimum.reduceat(proj, starts)
    # per label, the slice with the longest diameter (the lowest such slice on ties)
    best = np.lexsort((group_slice, -length, group_label))
    first = best[np.r_[True, group_label[best][1:] != group_label[best][:-1]]]
    longest, perpendicular = np.zeros(n + 1), np.zeros(n + 1)
    longest[group_label[first]] = length[first]
    perpendicular[group_label[first]] = extent[first]
    # a lesion slice always has contour points: one group per (label, slice)
    n_slices = np.bincount(group_label, minlength=n + 1)
    return longest, perpendicular, n_slices


def measure_lesions(labels: sitk.Image, probability: sitk.Image | None = None) -> list[dict]:
    """One row per lesion id present in ``labels``, columns ``lesions.COLUMNS``.

    probability: same geometry as ``labels``; without it the probability columns are NaN.
    """
    lab = sitk.GetArrayFromImage(labels).astype(np.int64, copy=False)
    if lab.size and lab.min() < 0:
        raise ValueError("lesion label maps hold ids >= 0")
    n = int(lab.max()) if lab.size else 0
    if n == 0:
        return []
    frame = Frame.of(labels)
    axis = axial_axis(labels)
    # work inside the lesions' bounding box (distances do not depend on the offset)
    fg = np.nonzero(lab)
    box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in fg)
    lab_box = lab[box]
    counts = np.bincount(lab_box.ravel(), minlength=n + 1)
    fg_ids = lab[fg]
    centroid_kji = np.stack([np.bincount(fg_ids, weights=c, minlength=n + 1) for c in fg],
                            axis=1) / np.maximum(counts, 1)[:, None]
    ras = frame.lps(centroid_kji) * np.array([-1.0, -1.0, 1.0])
    longest_3d = np.r_[0.0, component_diameters_mm(lab_box, n, frame)]
    ax_long, ax_perp, n_slices = _axial_diameters(lab_box, n, frame, axis)
    present = np.flatnonzero(counts[1:]) + 1
    if probability is not None:
        p_fg = sitk.GetArrayViewFromImage(probability)[fg].astype(np.float64)
        p_max = np.full(n + 1, -np.inf)
        np.maximum.at(p_max, fg_ids, p_fg)
        p_max = p_max[present]
        p_mean = np.bincount(fg_ids, weights=p_fg, minlength=n + 1)[present] / counts[present]
    else:
        p_max = p_mean = np.full(len(present), np.nan)
    vvol = voxel_volume_mm3(labels.GetSpacing())
    rows = []
    for row, idx in enumerate(present):
        k, j, i = centroid_kji[idx]
        rows.append({
            "lesion_id": int(idx),
            "voxels": int(counts[idx]),
            "volume_mm3": float(counts[idx] * vvol),
            "longest_diameter_mm": float(longest_3d[idx]),
            "axial_longest_diameter_mm": float(ax_long[idx]),
            "axial_perpendicular_diameter_mm": float(ax_perp[idx]),
            "axial_slices": int(n_slices[idx]),
            "centroid_r": float(ras[idx, 0]), "centroid_a": float(ras[idx, 1]),
            "centroid_s": float(ras[idx, 2]),
            "centroid_i": int(round(i)), "centroid_j": int(round(j)), "centroid_k": int(round(k)),
            "max_probability": float(p_max[row]), "mean_probability": float(p_mean[row]),
            "rano_bm_measurable": bool(ax_long[idx] >= RANO_MIN_LONGEST_MM
                                       and ax_perp[idx] >= RANO_MIN_PERPENDICULAR_MM
                                       and n_slices[idx] >= RANO_MIN_SLICES),
        })
    return rows
