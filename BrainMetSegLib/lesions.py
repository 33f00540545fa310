"""Lesion instances and the lesion table, measured in physical space.

Lesions are 26-connected components of the thresholded probability map,
numbered 1..N from the largest. Every measure is computed on the image's own
grid (anisotropic and oblique voxels included): volumes from the voxel volume,
diameters from surfaces (marching cubes / marching squares at the half-voxel
boundary) mapped to physical millimetres. Coordinates reported are RAS mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist
from skimage import measure

COLUMNS = (
    "lesion_id", "voxels", "volume_mm3", "longest_diameter_mm", "axial_longest_diameter_mm",
    "axial_perpendicular_diameter_mm", "axial_slices", "centroid_r", "centroid_a", "centroid_s",
    "centroid_i", "centroid_j", "centroid_k", "max_probability", "mean_probability",
    "rano_bm_measurable",
)

# RANO-BM (Lin et al. 2015): measurable = longest axial diameter >= 10 mm, perpendicular
# >= 5 mm, seen on >= 2 axial slices.
RANO_MIN_LONGEST_MM = 10.0
RANO_MIN_PERPENDICULAR_MM = 5.0
RANO_MIN_SLICES = 2


def voxel_volume_mm3(spacing_xyz) -> float:
    return float(np.prod(spacing_xyz))


def label_instances(binary: np.ndarray, spacing_xyz, min_volume_mm3: float = 0.0) -> np.ndarray:
    """26-connected components of a (Z, Y, X) mask, ids 1..N by decreasing size (int32).

    Components smaller than ``min_volume_mm3`` are removed. Ties in size keep
    scan order (lowest first voxel first), so numbering is deterministic.
    """
    labels = cc3d.connected_components(np.asarray(binary, bool), connectivity=26)
    n = int(labels.max())
    if n == 0:
        return labels.astype(np.int32)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = sizes * voxel_volume_mm3(spacing_xyz) >= min_volume_mm3
    order = np.argsort(-sizes, kind="stable")
    lut = np.zeros(n + 1, np.int32)
    new_id = 0
    for old in order:
        if keep[old]:
            new_id += 1
            lut[old + 1] = new_id
    return lut[labels]


def threshold_lesions(probability: sitk.Image, threshold: float, min_volume_mm3: float = 0.0) -> sitk.Image:
    """Instance label map (uint16, same geometry) of ``probability > threshold``: the one
    thresholding rule of a run, used again unchanged when a user moves the threshold."""
    prob = sitk.GetArrayViewFromImage(probability)
    labels = label_instances(prob > threshold, probability.GetSpacing(), min_volume_mm3)
    out = sitk.GetImageFromArray(labels.astype(np.uint16))
    out.CopyInformation(probability)
    return out


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


# Components with at most this many surface points are measured together in one array
# operation (specks of an untrained or noisy model come by the thousand).
_BATCH_POINTS = 64


def component_diameters_mm(labels_kji: np.ndarray, n: int, frame: Frame) -> np.ndarray:
    """Longest 3D diameter (mm) of components 1..n of a (Z, Y, X) label map: THE lesion size.

    The diameter is the largest distance between two points of the lesion's surface at the
    half-voxel boundary, i.e. the vertices of its marching-cubes surface at level 0.5. On a
    label map those vertices are exactly the midpoints between each lesion voxel and its
    6-neighbours not in the lesion, so they are collected for every component in one pass
    (no marching-cubes call per lesion). Ids without voxels get 0. A single voxel measures
    its largest edge; a sphere of radius r measures 2r to within one voxel.
    """
    out = np.zeros(n + 1)
    labels_kji = np.asarray(labels_kji)
    voxels = np.nonzero(labels_kji)  # work on lesion voxels only: lesions fill a small part of a scan
    if n == 0 or not len(voxels[0]):
        return out[1:]
    own = labels_kji[voxels]
    padded = np.pad(labels_kji, 1)
    kji = np.stack(voxels, axis=1)
    points, ids = [], []
    for axis in range(3):
        for step in (1, -1):
            at = [v + 1 for v in voxels]
            at[axis] = at[axis] + step
            face = padded[tuple(at)] != own
            mid = kji[face].astype(np.float64)
            mid[:, axis] += 0.5 * step
            points.append(mid)
            ids.append(own[face])
    lab = np.concatenate(ids)
    order = np.argsort(lab, kind="stable")
    pts, lab = frame.lps(np.concatenate(points)[order]), lab[order]
    bounds = np.searchsorted(lab, np.arange(1, n + 2))
    starts, counts = bounds[:-1], np.diff(bounds)
    # A lone voxel has exactly 6 face midpoints; their farthest pair spans its largest edge.
    out[1:][counts == 6] = float(np.linalg.norm(frame.matrix, axis=0).max())
    small = np.nonzero((counts > 6) & (counts <= _BATCH_POINTS))[0]
    small = small[np.argsort(counts[small], kind="stable")]  # similar sizes together: little padding
    for chunk in np.array_split(small, max(1, len(small) // 512)):
        if not len(chunk):
            continue
        # pad each component's points by repeating its first one (no new distances)
        take = starts[chunk, None] + np.minimum(np.arange(counts[chunk].max()), counts[chunk, None] - 1)
        p = pts[take]
        out[chunk + 1] = np.sqrt(((p[:, :, None] - p[:, None]) ** 2).sum(-1).max(axis=(1, 2)))
    for c in np.nonzero(counts > _BATCH_POINTS)[0]:
        out[c + 1] = _farthest_pair(pts[starts[c]:starts[c] + counts[c]])[0]
    return out[1:]


def axial_axis(image: sitk.Image) -> int:
    """Array axis (0=k, 1=j, 2=i) whose image axis points most along superior (LPS z)."""
    d = np.reshape(image.GetDirection(), (3, 3))
    return 2 - int(np.argmax(np.abs(d[2])))


def _axial_diameters(mask_kji: np.ndarray, frame: Frame, offset_kji, axis: int):
    """(longest, perpendicular, slice count) on the axial slices of a lesion, mm."""
    normal = frame.matrix[:, 2 - axis]
    normal = normal / np.linalg.norm(normal)
    best = (0.0, 0.0)
    slices = 0
    for s in range(mask_kji.shape[axis]):
        plane = np.take(mask_kji, s, axis=axis)
        if not plane.any():
            continue
        slices += 1
        contours = measure.find_contours(np.pad(plane.astype(np.uint8), 1), 0.5)
        pts2 = np.concatenate(contours) - 1
        kji = np.insert(pts2, axis, s, axis=1) + np.asarray(offset_kji)
        pts = frame.lps(kji)
        longest, direction = _farthest_pair(pts)
        if longest > best[0]:
            perp = np.cross(normal, direction)
            proj = pts @ perp
            best = (longest, float(proj.max() - proj.min()))
    return best[0], best[1], slices


def lesion_table(labels: sitk.Image, probability: sitk.Image | None = None) -> list[dict]:
    """One row per lesion id in ``labels`` (ids as stored), columns :data:`COLUMNS`.

    probability: same geometry as ``labels``; without it the probability columns are NaN.
    """
    lab = sitk.GetArrayViewFromImage(labels)
    prob = None if probability is None else sitk.GetArrayViewFromImage(probability)
    frame = Frame.of(labels)
    axis = axial_axis(labels)
    vvol = voxel_volume_mm3(labels.GetSpacing())
    boxes = ndimage.find_objects(lab.astype(np.int64, copy=False))
    diameters = component_diameters_mm(lab, len(boxes), frame)
    rows = []
    for idx, box in enumerate(boxes, start=1):
        if box is None:
            continue
        mask = lab[box] == idx
        offset = np.array([b.start for b in box])
        kji = np.argwhere(mask) + offset
        centroid_kji = kji.mean(axis=0)
        r, a, s = frame.lps(centroid_kji[None])[0] * np.array([-1.0, -1.0, 1.0])
        ax_long, ax_perp, n_slices = _axial_diameters(mask, frame, offset, axis)
        p = prob[box][mask] if prob is not None else np.array([np.nan])
        rows.append({
            "lesion_id": idx,
            "voxels": int(mask.sum()),
            "volume_mm3": float(mask.sum() * vvol),
            "longest_diameter_mm": float(diameters[idx - 1]),
            "axial_longest_diameter_mm": ax_long,
            "axial_perpendicular_diameter_mm": ax_perp,
            "axial_slices": n_slices,
            "centroid_r": float(r), "centroid_a": float(a), "centroid_s": float(s),
            "centroid_i": int(round(centroid_kji[2])), "centroid_j": int(round(centroid_kji[1])),
            "centroid_k": int(round(centroid_kji[0])),
            "max_probability": float(p.max()), "mean_probability": float(p.mean()),
            "rano_bm_measurable": bool(ax_long >= RANO_MIN_LONGEST_MM
                                       and ax_perp >= RANO_MIN_PERPENDICULAR_MM
                                       and n_slices >= RANO_MIN_SLICES),
        })
    return rows
