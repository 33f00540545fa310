"""PNG contact sheet of a case: axial slices through the lesions, ground truth outlined."""

from __future__ import annotations

import io as _io
import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..io import check_writable


def _slices_through_lesions(labels: np.ndarray, lesions: list[dict], n: int) -> list[int]:
    """Axial slice indices (z) through the largest lesions, then evenly spread ones."""
    zs = []
    for lesion in lesions:
        pts = np.argwhere(labels == lesion["id"])
        if len(pts):
            z = int(np.round(np.median(pts[:, 0])))
            if all(abs(z - q) > 2 for q in zs):
                zs.append(z)
        if len(zs) >= n:
            break
    if len(zs) < n:
        nz = labels.shape[0]
        for z in np.linspace(nz * 0.3, nz * 0.75, n - len(zs) + 2)[1:-1]:
            zs.append(int(z))
    return sorted(zs[:n])


def contact_sheet(case, path, title: str = "", n_slices: int = 8, overwrite: bool = False,
                  dpi: int = 72) -> Path:
    """Write a PNG with ``n_slices`` axial slices (radiological display: patient left on the right).

    Lesion outlines: red; enhancing confounders (vessels, dura, choroid): thin cyan.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from skimage import segmentation

    path = Path(path)
    check_writable(path, overwrite)
    img = sitk.GetArrayFromImage(case.image).astype(np.float32)
    lab = sitk.GetArrayFromImage(case.labels)
    conf = np.zeros(lab.shape, bool)
    for m in case.confounders.values():
        conf |= sitk.GetArrayFromImage(m) > 0
    zs = _slices_through_lesions(lab, case.lesions, n_slices)
    vmax = float(np.percentile(img[img > 0], 99.7)) if (img > 0).any() else 1.0
    cols = 4
    rows = int(np.ceil(len(zs) / cols))
    sp = case.image.GetSpacing()
    aspect = sp[1] / sp[0]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 2.9), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, z in zip(axes.ravel(), zs, strict=False):
        # Array rows run anterior->posterior? Our grid is RAS-aligned: row j grows to anterior,
        # column i to the right; flip rows so anterior is up, keep columns (patient right on the left).
        sl = img[z][::-1]
        ax.imshow(sl, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest", aspect=aspect)
        edges = segmentation.find_boundaries(lab[z][::-1] > 0, mode="outer")
        cedges = segmentation.find_boundaries(conf[z][::-1], mode="inner")
        overlay = np.zeros((*sl.shape, 4), np.float32)
        overlay[cedges] = (0.0, 0.8, 1.0, 0.35)
        overlay[edges] = (1.0, 0.1, 0.1, 1.0)
        ax.imshow(overlay, interpolation="nearest", aspect=aspect)
        n_here = len(np.unique(lab[z][lab[z] > 0]))
        ax.set_title(f"z={z}  lesions: {n_here}", fontsize=7)
    info = case.info
    fig.suptitle(f"{title}  {info.get('anatomy', '')}, {len(case.lesions)} lesions (stratum {info.get('stratum')}), "
                 "synthetic", fontsize=8)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, path)
    return path
