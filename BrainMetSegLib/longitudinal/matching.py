"""Matching the lesions of a follow-up to known lesions (tracks), both in baseline space.

Two steps, in this order:

1. contact: a known lesion and a follow-up lesion (resampled onto the baseline grid) are linked
   when any voxel of the follow-up lesion lies within ``contact_mm`` of the known lesion's
   extent (they overlap or abut). A segmentation that breaks a lesion into fragments leaves
   them touching or overlapping its extent, so a fragment is never "new": a new lesion must lie
   clear of every known lesion's extent. The links form a bipartite graph; each connected piece
   is one correspondence: one-to-one ("matched"), one known lesion to several follow-up lesions
   ("split"), several known lesions to one follow-up lesion ("merged"), or several to several
   ("merged+split").
2. distance: known lesions and follow-up lesions left without a partner are paired by centroid
   distance (Hungarian assignment), when the centroids are at most ``max_distance_mm`` apart
   (RAS/LPS mm in baseline space). This catches a lesion that shrank to a few voxels, or to
   nothing on the baseline grid after nearest-neighbour resampling, and small residual
   registration error.

What is left is a new lesion (follow-up side) or an absent one (known side).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class MatchConfig:
    """contact_mm: a follow-up lesion with a voxel within this distance (mm) of a known lesion's
    extent is linked to it (0: only overlapping voxels); max_distance_mm: largest centroid
    distance (mm) for the distance step."""

    contact_mm: float = 1.5
    max_distance_mm: float = 8.0


@dataclass
class Reference:
    """A known lesion in baseline space: its extent as flat voxel indices into the baseline
    array (z, y, x order, may be empty; every voxel it has covered on any scan) and its centroid
    (LPS mm)."""

    voxels: np.ndarray
    centroid_lps: np.ndarray


@dataclass
class Link:
    """One correspondence: known track ids and follow-up lesion ids, how it was found
    ("overlap": in contact, or "distance"), its kind ("matched", "split", "merged",
    "merged+split"), per (track, lesion) pair the lesion's voxels within contact of the track's
    extent, and the centroid distance (mm) for distance links."""

    tracks: list[int]
    lesions: list[int]
    method: str
    kind: str
    shared_voxels: dict[tuple[int, int], int] = field(default_factory=dict)
    distance_mm: float | None = None


@dataclass
class MatchResult:
    links: list[Link]
    new: list[int]
    absent: list[int]


def _kind(n_tracks: int, n_lesions: int) -> str:
    if n_tracks == 1 and n_lesions == 1:
        return "matched"
    if n_tracks == 1:
        return "split"
    if n_lesions == 1:
        return "merged"
    return "merged+split"


def near_extent(voxels: np.ndarray, shape, spacing_xyz, contact_mm: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """The voxels within ``contact_mm`` (voxel centres, mm) of an extent given as flat indices
    ``voxels`` into a (Z, Y, X) grid of ``shape`` and ``spacing_xyz``: a box (slices) around the
    extent grown by the distance, and the bool mask of the near voxels within it."""
    spacing_zyx = np.asarray(spacing_xyz, float)[::-1]
    pad = np.ceil(contact_mm / spacing_zyx).astype(int) + 1
    idx = np.array(np.unravel_index(voxels, shape))
    lo = np.maximum(idx.min(1) - pad, 0)
    hi = np.minimum(idx.max(1) + pad + 1, shape)
    extent = np.zeros(hi - lo, bool)
    extent[tuple(idx - lo[:, None])] = True
    near = ndimage.distance_transform_edt(~extent, sampling=spacing_zyx) <= contact_mm + 1e-6
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), near


def contact_counts(references: dict[int, Reference], followup_on_baseline: np.ndarray,
                   spacing_xyz, contact_mm: float) -> dict[tuple[int, int], int]:
    """(track id, follow-up lesion id) -> number of the lesion's voxels within ``contact_mm`` of
    the track's extent (voxel centres, mm; both on the baseline grid of ``spacing_xyz``)."""
    labels = np.asarray(followup_on_baseline)
    out: dict[tuple[int, int], int] = {}
    for tid, ref in references.items():
        if ref.voxels.size == 0:
            continue
        box, near = near_extent(ref.voxels, labels.shape, spacing_xyz, contact_mm)
        counts = np.bincount(labels[box][near].ravel())
        for lid in np.flatnonzero(counts[1:]) + 1:
            out[(tid, int(lid))] = int(counts[lid])
    return out


def match_lesions(references: dict[int, Reference], followup_on_baseline: np.ndarray,
                  followup_centroids_lps: dict[int, np.ndarray],
                  config: MatchConfig = MatchConfig(), spacing_xyz=(1.0, 1.0, 1.0)) -> MatchResult:
    """Match follow-up lesions to known lesions.

    references: track id -> :class:`Reference` (baseline space).
    followup_on_baseline: follow-up instance labels resampled onto the baseline grid (z, y, x).
    followup_centroids_lps: follow-up lesion id -> centroid carried into baseline space (LPS mm);
        its keys are the follow-up's lesions (a lesion may have no voxel left on the baseline grid).
    spacing_xyz: the baseline grid's voxel size (x, y, z mm), for ``contact_mm``.
    """
    fu_ids = sorted(followup_centroids_lps)
    shared = {pair: n for pair, n in contact_counts(references, followup_on_baseline, spacing_xyz,
                                                    config.contact_mm).items() if pair[1] in followup_centroids_lps}
    links = _components(shared)
    linked_t = {t for link in links for t in link.tracks}
    linked_l = {lid for link in links for lid in link.lesions}
    free_t = [t for t in sorted(references) if t not in linked_t]
    free_l = [lid for lid in fu_ids if lid not in linked_l]
    if free_t and free_l:
        a = np.array([references[t].centroid_lps for t in free_t], float)
        b = np.array([followup_centroids_lps[lid] for lid in free_l], float)
        dist = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
        big = 1e6
        rows, cols = linear_sum_assignment(np.where(dist <= config.max_distance_mm, dist, big))
        for r, c in zip(rows, cols, strict=True):
            if dist[r, c] <= config.max_distance_mm:
                links.append(Link([free_t[r]], [free_l[c]], "distance", "matched", {}, float(dist[r, c])))
                linked_t.add(free_t[r])
                linked_l.add(free_l[c])
    new = [lid for lid in fu_ids if lid not in linked_l]
    absent = [t for t in sorted(references) if t not in linked_t]
    links.sort(key=lambda link: min(link.tracks))
    return MatchResult(links, new, absent)


def _components(shared: dict[tuple[int, int], int]) -> list[Link]:
    """Connected pieces of the bipartite overlap graph."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for t, lid in shared:
        parent[find(("t", t))] = find(("l", lid))
    groups: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for pair in shared:
        groups.setdefault(find(("t", pair[0])), []).append(pair)
    links = []
    for pairs in groups.values():
        tracks = sorted({t for t, _ in pairs})
        lesions = sorted({lid for _, lid in pairs})
        links.append(Link(tracks, lesions, "overlap", _kind(len(tracks), len(lesions)),
                          {p: shared[p] for p in sorted(pairs)}))
    return links


def assign_link(link: Link) -> dict[int, list[int]]:
    """Which follow-up lesions count under which track: each lesion goes to the track it shares
    most voxels with; a track left without a lesion has merged into another."""
    if len(link.tracks) == 1:
        return {link.tracks[0]: list(link.lesions)}
    out: dict[int, list[int]] = {t: [] for t in link.tracks}
    for lid in link.lesions:
        best = max(link.tracks, key=lambda t: (link.shared_voxels.get((t, lid), 0), -t))
        out[best].append(lid)
    return out


def link_statuses(link: Link, assigned: dict[int, list[int]]) -> dict[int, tuple[str, int | None, list[int]]]:
    """Per track of a link: status, the track it merged into (for "merged-into") and the tracks
    merged into it. A track left without a lesion merged into the track owning the lesion it
    touches most; a track that absorbed others is "merged" ("merged+split" in several pieces)."""
    owner = {lid: t for t, lids in assigned.items() for lid in lids}
    into: dict[int, int] = {}
    for t, lids in assigned.items():
        if not lids:
            touched = [(n, lid) for (tt, lid), n in link.shared_voxels.items() if tt == t]
            into[t] = owner[max(touched)[1]] if touched else next(o for o, ls in assigned.items() if ls)
    out = {}
    for t, lids in assigned.items():
        if not lids:
            out[t] = ("merged-into", into[t], [])
            continue
        absorbed = sorted(o for o, target in into.items() if target == t)
        status = ("merged" if absorbed else "present") if len(lids) == 1 else ("merged+split" if absorbed else "split")
        out[t] = (status, None, absorbed)
    return out
