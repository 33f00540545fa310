"""Figures drawn off-screen and turned into PNG: one home for the matplotlib set-up the
reports share (evaluation, follow-up, training QC, phantom previews).

matplotlib runs on its Agg backend (no display, the same pixels on every machine); a figure
becomes PNG bytes, a ``data:`` URI for a self-contained HTML page, or a file written through
the library's staging (:mod:`.staging`: verified temporary file, then rename). Each function
closes the figure it is given.
"""

from __future__ import annotations

import base64
import os
from io import BytesIO
from pathlib import Path

from .staging import check_writable, commit, stage_bytes

REPORT_DPI = 90  # figures inside the HTML reports (evaluation, follow-up)


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (imported on first use: matplotlib is slow to load)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, dpi: float, tight: bool = False, metadata: dict | None = None) -> bytes:
    """``fig`` as PNG at ``dpi`` dots per inch, cropped to what is drawn when ``tight``;
    ``metadata`` as matplotlib's PNG text chunks (``{"Software": None}`` drops the version)."""
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None, metadata=metadata)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URI (an image inside the HTML file)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def report_png(fig) -> bytes:
    """``fig`` as a report figure: PNG at :data:`REPORT_DPI`, cropped to what is drawn."""
    return png_bytes(fig, REPORT_DPI, tight=True)


def figure_data_uri(fig) -> str:
    """``fig`` as a report figure embedded in the HTML (:func:`report_png` as a data URI)."""
    return png_data_uri(report_png(fig))


def save_png(fig, path: str | os.PathLike, dpi: float, overwrite: bool = False,
             metadata: dict | None = None) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically (nothing replaced without ``overwrite``)."""
    path = Path(path)
    data = png_bytes(fig, dpi, metadata=metadata)
    check_writable(path, overwrite)
    commit([(stage_bytes(data, path), path)])
    return path
