"""PNG contact sheet of a case: axial slices through the lesions, ground truth outlined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..plotting import pyplot, save_png
from ..staging import check_writable


def _slices_through_lesions(labels: np.ndarray, lesions: list[dict], n: int) -> list[int]:
    """Axial slice indices (z) through the largest lesions (one per lesion, at least
    5 slices apart), topped up with evenly spread slices through the brain."""
    zs: list[int] = []
    for lesion in lesions:
        pts = np.argwhere(labels == lesion["id"])
        if len(pts):
            z = int(np.round(np.median(pts[:, 0])))
            if all(abs(z - q) > 4 for q in zs):
                zs.append(z)
        if len(zs) >= n:
            break
    nz = labels.shape[0]
    for z in np.linspace(nz * 0.25, nz * 0.8, 2 * n):
        if len(zs) >= n:
            break
        if all(abs(int(z) - q) > 4 for q in zs):
            zs.append(int(z))
    return sorted(zs[:n])


def contact_sheet(case, path, title: str = "", n_slices: int = 4, overwrite: bool = False,
                  dpi: int = 80) -> Path:
    """Write a PNG of ``n_slices`` axial slices, each shown plain and with the ground truth
    outlined in red (patient right on the image left, anterior up)."""
    from skimage import segmentation

    path = Path(path)
    check_writable(path, overwrite)
    img = sitk.GetArrayFromImage(case.image).astype(np.float32)
    lab = sitk.GetArrayFromImage(case.labels)
    zs = _slices_through_lesions(lab, case.lesions, n_slices)
    vmax = float(np.percentile(img[img > 0], 99.8)) if (img > 0).any() else 1.0
    sp = case.image.GetSpacing()
    aspect = sp[1] / sp[0]
    cols = 4
    rows = int(np.ceil(2 * len(zs) / cols))
    fig, axes = pyplot().subplots(rows, cols, figsize=(cols * 3.0, rows * 3.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    tiles = axes.ravel()
    for k, z in enumerate(zs):
        # RAS-aligned grid: rows grow anterior and columns grow right; flip rows for anterior up,
        # flip columns for the radiological convention (patient right on the left).
        sl = img[z][::-1, ::-1]
        edges = segmentation.find_boundaries(lab[z][::-1, ::-1] > 0, mode="outer")
        ids = np.unique(lab[z][lab[z] > 0])
        for j, ax in enumerate(tiles[2 * k:2 * k + 2]):
            ax.imshow(sl, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest", aspect=aspect)
            if j == 1:
                overlay = np.zeros((*sl.shape, 4), np.float32)
                overlay[edges] = (1.0, 0.15, 0.1, 1.0)
                ax.imshow(overlay, interpolation="nearest", aspect=aspect)
                kinds = ", ".join(sorted({les["pattern"] for les in case.lesions if les["id"] in ids}))
                ax.set_title(f"ground truth: {len(ids)} ({kinds})" if len(ids) else "no lesion", fontsize=8)
            else:
                ax.set_title(f"axial slice {z}", fontsize=8)
    info = case.info
    sizes = [les["diameter_mm"] for les in case.lesions]
    size_text = f", diameters {min(sizes):.0f}-{max(sizes):.0f} mm" if sizes else ""
    fig.suptitle(f"{title} SYNTHETIC - {info.get('anatomy', '')}, {len(case.lesions)} lesions "
                 f"(stratum {info.get('stratum')}){size_text}", fontsize=9)
    fig.tight_layout()
    # no matplotlib version in the file: the same phantom gives the same bytes on any install
    return save_png(fig, path, dpi=dpi, overwrite=overwrite, metadata={"Software": None})
