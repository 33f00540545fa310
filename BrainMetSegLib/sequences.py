"""The image sequences a model may take and the batch manifest's columns, defined once.

Pure Python (no numpy, no SimpleITK): the Slicer module's bridge imports it before the
library's dependencies are installed.
"""

from __future__ import annotations

# CE-T1 first: it is the reference grid every other sequence is co-registered onto.
SEQUENCES = ("t1ce", "t1", "t2", "flair")
SEQUENCE_LABELS = {"t1ce": "CE-T1", "t1": "T1", "t2": "T2", "flair": "FLAIR"}

# ``brainmetseg segment --manifest``: one case per row; the Slicer module writes the same.
MANIFEST_COLUMNS = ("case_id", *SEQUENCES)
