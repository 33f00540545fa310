"""Lesion instances and the lesion table, measured in physical space.

Lesions are 26-connected components of the thresholded probability map,
numbered 1..N from the largest. Every measure is computed on the image's own
grid (anisotropic and oblique voxels included): volumes from the voxel volume,
diameters from outlines mapped to physical millimetres: the probability map's
outline at the threshold the lesions were drawn at (sub-voxel, where the labels
are that map's) or else the label map's half-voxel boundary (marching cubes /
marching squares vertices). Coordinates reported are RAS mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import cc3d
import numpy as np
import SimpleITK as sitk
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist


class LesionTableRow(TypedDict):
    """One row of the lesion table (:func:`lesion_table`): the one definition of its columns,
    in order (:data:`COLUMNS`). Rows stay plain dicts (CSV/JSON/DICOM SR/MRML tables read them
    by these keys). Coordinates: RAS mm, voxel indices (i, j, k) of the image grid."""

    lesion_id: int  # label value, 1..N by decreasing size at inference
    voxels: int
    volume_mm3: float
    longest_diameter_mm: float  # 3D, across the half-voxel surface
    axial_longest_diameter_mm: float  # RANO-BM, on the axial slice where it is largest
    axial_perpendicular_diameter_mm: float
    axial_slices: int  # axial slices the lesion is seen on
    centroid_r: float
    centroid_a: float
    centroid_s: float
    centroid_i: int
    centroid_j: int
    centroid_k: int
    max_probability: float  # NaN without a probability map
    mean_probability: float
    rano_bm_measurable: bool
    # where the diameters were measured: ON_PROBABILITY (the probability map's outline at the
    # outline threshold, sub-voxel) or ON_LABELS (the label map's half-voxel boundary); `compare`
    # may measure on the image's edge instead (BrainMetSegLib.image_edge.ON_IMAGE)
    diameters_on: str
    # the candidate scorer's calibrated probability that the lesion is a metastasis
    # (BrainMetSegLib.candidate_stage); NaN / empty for models without a scorer.
    lesion_probability: float


#: The lesion table's columns in order (CSV header, JSON keys, Slicer table).
COLUMNS: tuple[str, ...] = tuple(LesionTableRow.__annotations__)

#: Values of ``diameters_on``: the probability's outline (sub-voxel) / the label map's voxels.
ON_PROBABILITY = "probability"
ON_LABELS = "labels"

# RANO-BM (Lin et al. 2015): measurable = longest axial diameter >= 10 mm, perpendicular
# >= 5 mm, seen on >= 2 axial slices.
RANO_MIN_LONGEST_MM = 10.0
RANO_MIN_PERPENDICULAR_MM = 5.0
RANO_MIN_SLICES = 2


def rano_measurable(axial_longest_mm: float, axial_perpendicular_mm: float, axial_slices: int) -> bool:
    """RANO-BM's measurable lesion, from its axial diameters (mm) and the axial slices it spans."""
    return bool(axial_longest_mm >= RANO_MIN_LONGEST_MM and axial_perpendicular_mm >= RANO_MIN_PERPENDICULAR_MM
                and axial_slices >= RANO_MIN_SLICES)


def voxel_volume_mm3(spacing_xyz) -> float:
    return float(np.prod(spacing_xyz))


def label_instances(binary: np.ndarray, spacing_xyz, min_volume_mm3: float = 0.0) -> np.ndarray:
    """26-connected components of a (Z, Y, X) mask, ids 1..N by decreasing size (int32).

    Components smaller than ``min_volume_mm3`` are removed. Ties in size keep
    scan order (lowest first voxel first), so numbering is deterministic.
    """
    labels = cc3d.connected_components(np.asarray(binary, bool), connectivity=26)
    return renumber_by_size(labels, voxel_volume_mm3(spacing_xyz), min_volume_mm3)


def nonzero_box(array: np.ndarray) -> tuple[slice, ...] | None:
    """Index bounding box of ``array``'s non-zero voxels (None: none), found from its projections
    onto each axis: cheaper than ``np.nonzero`` over a scan whose lesions (or brain) are a part of it."""
    along = [np.flatnonzero(np.any(array, axis=tuple(a for a in range(array.ndim) if a != k)))
             for k in range(array.ndim)]
    if not array.size or not along[0].size:
        return None
    return tuple(slice(int(a[0]), int(a[-1]) + 1) for a in along)


def relabel_at(labels: np.ndarray, lut: np.ndarray, where: np.ndarray) -> np.ndarray:
    """int32 map holding ``lut[labels]`` at the flat indices ``where`` (the non-zero voxels of
    ``labels``; ``lut[0]`` is 0) and 0 elsewhere: the lookup over a scan's few labelled voxels only."""
    out = np.zeros(np.shape(labels), np.int32)
    out.ravel()[where] = lut[np.ravel(labels)[where]]
    return out


def renumber_by_size(labels: np.ndarray, voxel_mm3: float = 1.0, min_volume_mm3: float = 0.0) -> np.ndarray:
    """Ids of a label map renumbered 1..N by decreasing voxel count (int32); empty ids and
    labels under ``min_volume_mm3`` (voxels x ``voxel_mm3``) removed. Ties keep the old ids' order."""
    flat = np.ravel(labels)
    where = np.flatnonzero(flat)  # lesions are a small part of a scan: work on their voxels only
    ids = flat[where]
    n = int(ids.max(initial=0))
    if n == 0:
        return np.zeros(np.shape(labels), np.int32)
    sizes = np.bincount(ids, minlength=n + 1)[1:]
    keep = (sizes > 0) & (sizes * voxel_mm3 >= min_volume_mm3)
    order = [old for old in np.argsort(-sizes, kind="stable") if keep[old]]
    lut = np.zeros(n + 1, np.int32)
    lut[np.asarray(order, np.int64) + 1] = np.arange(1, len(order) + 1, dtype=np.int32)
    return relabel_at(labels, lut, where)


@dataclass(frozen=True)
class Frame:
    """Maps (k, j, i) index coordinates of an image to LPS mm."""

    origin: np.ndarray
    matrix: np.ndarray  # 3x3: LPS = origin + matrix @ (i, j, k)

    @classmethod
    def of(cls, image: sitk.Image) -> Frame:
        d = np.reshape(image.GetDirection(), (3, 3))
        return cls(np.asarray(image.GetOrigin()), d * np.asarray(image.GetSpacing()))

    @classmethod
    def from_spacing(cls, spacing_xyz, direction=None) -> Frame:
        """Frame at origin 0 from a voxel size (x, y, z) mm and row-major direction cosines."""
        d = np.eye(3) if direction is None else np.reshape(direction, (3, 3))
        return cls(np.zeros(3), d * np.asarray(spacing_xyz, float))

    def lps(self, kji: np.ndarray) -> np.ndarray:
        return self.origin + kji[:, ::-1] @ self.matrix.T


def _farthest_pair(points: np.ndarray) -> tuple[float, np.ndarray]:
    """Largest pairwise distance of (N, 3) points and the unit vector along it."""
    if len(points) < 2:
        return 0.0, np.array([1.0, 0.0, 0.0])
    if len(points) > 50:  # the farthest pair lies on the convex hull
        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:  # flat point sets (single-slice lesions)
            pass
    n = len(points)
    if n <= 4000:  # scipy's pdist; recover the pair from the condensed index
        d = pdist(points)
        k = int(np.argmax(d))
        i = int(n - 2 - np.floor(np.sqrt(-8 * k + 4 * n * (n - 1) - 7) / 2 - 0.5))
        j = int(k + i + 1 - n * (n - 1) // 2 + (n - i) * ((n - i) - 1) // 2)
        best = float(d[k])
    else:  # huge flat sets (no hull): blocks bound the memory
        best, i, j = 0.0, 0, 0
        for start in range(0, n, 1024):
            d2 = ((points[start:start + 1024, None] - points[None]) ** 2).sum(-1)
            k = int(np.argmax(d2))
            if d2.flat[k] > best * best:
                best, i, j = float(np.sqrt(d2.flat[k])), start + k // n, k % n
    vec = points[j] - points[i]
    return best, vec / (np.linalg.norm(vec) or 1.0)


def component_diameters_mm(labels_kji: np.ndarray, n: int, frame: Frame) -> np.ndarray:
    """Longest 3D diameter (mm) of components 1..n of a (Z, Y, X) label map: THE lesion size.

    The diameter is the largest distance between two points of the lesion's surface at the
    half-voxel boundary, i.e. the vertices of its marching-cubes surface at level 0.5. On a
    label map those vertices are exactly the midpoints between each lesion voxel and its
    6-neighbours not in the lesion, so they are collected for every component in one pass
    (no marching-cubes call per lesion). Ids without voxels get 0. A single voxel measures
    its largest edge; a sphere of radius r measures 2r to within one voxel.
    """
    labels_kji = np.asarray(labels_kji)
    if n == 0:
        return np.zeros(0)
    pts, ids = _face_points(labels_kji)[:2]
    return _diameters_3d(pts, ids, n, frame)


def _diameters_3d(pts: np.ndarray, ids: np.ndarray, n: int, frame: Frame) -> np.ndarray:
    """Longest distance (mm) between the outline points (k, j, i) of each id 1..n (0: none)."""
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(1, n + 2))
    return _grouped_farthest_pair(frame.lps(pts[order]), bounds[:-1], bounds[1:])[0]


def axial_axis(image: sitk.Image) -> int:
    """Array axis (0=k, 1=j, 2=i) whose image axis points most along superior (LPS z)."""
    d = np.reshape(image.GetDirection(), (3, 3))
    return 2 - int(np.argmax(np.abs(d[2])))


def _face_points(lab: np.ndarray, probability: np.ndarray | None = None, level: float | None = None):
    """Outline points of every lesion of a (Z, Y, X) label map, in one pass over its voxels.

    Returns ``(points, ids, face_axis, on_probability)``: (k, j, i) voxel coordinates of each
    point, the lesion id it belongs to, the array axis (0=k, 1=j, 2=i) of the voxel face it lies
    on, and per id 0..max whether that lesion's points lie on the probability's outline.

    A point lies on the face between a lesion voxel and a face-neighbour that carries another
    value. On a label map it is the face's midpoint: the half-voxel boundary, i.e. the vertices
    of marching cubes / squares at level 0.5 of the lesion's mask. With ``probability`` (same
    shape) and the ``level`` the labels were drawn at (``p > level``), a lesion that is exactly
    such a region (every voxel above ``level``, every face-neighbour outside all lesions at or
    below it) has its points where the probability crosses ``level`` on each face, linearly
    interpolated between the two voxel centres: the vertices marching cubes / squares put on the
    probability itself, a sub-voxel outline. A face towards another lesion keeps its midpoint.
    Lesions that are not such a region (edited, drawn at another level) keep the label-map
    points. Only lesion voxels are visited: lesions fill a small part of a scan.
    """
    voxels = np.nonzero(lab)
    own = lab[voxels]
    padded = np.pad(lab, 1)
    kji = np.stack(voxels, axis=1).astype(np.float64)
    on_probability = np.zeros(int(own.max(initial=0)) + 1, bool)
    if probability is not None:
        p_pad = np.pad(np.asarray(probability), 1)  # outside the image: p = 0
        # compared in the map's own type, as the labels were drawn (float32 vs. 0.4 is 0.4f)
        level = p_pad.dtype.type(level) if p_pad.dtype.kind == "f" else level
        p_own = p_pad[tuple(v + 1 for v in voxels)]
        on_probability[np.unique(own)] = True
        on_probability[own[p_own <= level]] = False
    faces = []
    for axis in range(3):
        for step in (1, -1):
            at = [v + 1 for v in voxels]
            at[axis] = at[axis] + step
            other = padded[tuple(at)]
            face = other != own
            frac = np.full(int(face.sum()), 0.5)
            if probability is not None:
                p_in, p_out, background = p_own[face], p_pad[tuple(at)][face], other[face] == 0
                on_probability[own[face][background & (p_out > level)]] = False
                cross = background & (p_out <= level) & (p_in > level)
                p_in, p_out = p_in[cross].astype(np.float64), p_out[cross].astype(np.float64)
                frac[cross] = (p_in - float(level)) / (p_in - p_out)
            faces.append((axis, step, face, frac))
    points, ids, face_axis = [np.zeros((0, 3))], [np.zeros(0, own.dtype)], [np.zeros(0, np.int8)]
    for axis, step, face, frac in faces:
        face_ids = own[face]
        mid = kji[face]
        mid[:, axis] += step * np.where(on_probability[face_ids], frac, 0.5)
        points.append(mid)
        ids.append(face_ids)
        face_axis.append(np.full(len(mid), axis, np.int8))
    return np.concatenate(points), np.concatenate(ids), np.concatenate(face_axis), on_probability


# Groups up to this many points are measured all at once (all pairs, batched by size);
# larger ones one by one through their convex hull (_farthest_pair).
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


def _axial_diameters(pts: np.ndarray, ids: np.ndarray, n: int, frame: Frame, axis: int, shape):
    """(longest, perpendicular, slice count) per label 0..n on its axial slices, mm, from the
    outline points (k, j, i) on in-plane faces (their axial coordinate is the slice's) of a
    label array of ``shape`` whose axial array axis is ``axis``."""
    slices = np.rint(pts[:, axis]).astype(np.int64)
    key = ids.astype(np.int64) * (shape[axis] + 1) + slices
    order = np.argsort(key, kind="stable")
    pts, key = frame.lps(pts[order]), key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    group_label = key[starts] // (shape[axis] + 1)
    group_slice = key[starts] % (shape[axis] + 1)
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


def lesion_table(labels: sitk.Image, probability: sitk.Image | None = None,
                 outline: float | None = None) -> list[LesionTableRow]:
    """One row per lesion id present in ``labels`` (ids as stored), columns :data:`COLUMNS`.

    Every lesion is measured at once: the outline points of all lesions (3D surface and axial
    contours) are collected in one pass over the array (:func:`_face_points`), which keeps
    re-thresholding interactive when a low threshold gives thousands of specks. Of several
    equally long axial diameters the first is taken for the perpendicular one.

    probability: same geometry as ``labels``; without it the probability columns are NaN.
    outline: the probability the labels were drawn at (lesions = regions of ``p > outline``:
        the run's outline threshold). With it and ``probability``, each lesion that is exactly
        such a region is measured on the probability's outline, a sub-voxel contour (column
        ``diameters_on`` = "probability"); the others (edited by hand, drawn at another level)
        and every lesion without ``outline`` on the label map's half-voxel boundary ("labels").
        Volumes always count voxels.
    """
    view = sitk.GetArrayViewFromImage(labels)
    if view.size and view.min() < 0:
        raise ValueError("lesion label maps hold ids >= 0")
    # work inside the lesions' bounding box, one voxel wider for the outline's neighbours
    # (distances do not depend on the offset)
    tight = nonzero_box(view)
    if tight is None:
        return []
    box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in tight)
    lab_box = np.asarray(view[box]).astype(np.int64)
    n = int(lab_box.max())
    frame = Frame.of(labels)
    axis = axial_axis(labels)
    inside = np.nonzero(lab_box)
    fg = tuple(c + b.start for c, b in zip(inside, box, strict=True))  # the whole array's indices
    counts = np.bincount(lab_box.ravel(), minlength=n + 1)
    fg_ids = lab_box[inside]
    centroid_kji = np.stack([np.bincount(fg_ids, weights=c, minlength=n + 1) for c in fg],
                            axis=1) / np.maximum(counts, 1)[:, None]
    ras = frame.lps(centroid_kji) * np.array([-1.0, -1.0, 1.0])
    p_box = None
    if probability is not None and outline is not None:
        p_box = sitk.GetArrayViewFromImage(probability)[box]
    pts, ids, face_axis, on_probability = _face_points(lab_box, p_box, outline)
    longest_3d = np.r_[0.0, _diameters_3d(pts, ids, n, frame)]
    in_plane = face_axis != axis
    ax_long, ax_perp, n_slices = _axial_diameters(pts[in_plane], ids[in_plane], n, frame, axis, lab_box.shape)
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
    rows: list[LesionTableRow] = []
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
            "rano_bm_measurable": rano_measurable(ax_long[idx], ax_perp[idx], n_slices[idx]),
            "diameters_on": ON_PROBABILITY if on_probability[idx] else ON_LABELS,
            "lesion_probability": float("nan"),
        })
    return rows
