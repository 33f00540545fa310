"""Lesion-table columns for ``vtkMRMLTableNode``: value types, units, descriptions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .naming import segment_name


@dataclass(frozen=True)
class TableColumn:
    """One lesion-table column: name, value type ("int", "double", "bool", "string"),
    unit label and description (shown as tooltips in Slicer's table view)."""

    name: str
    kind: str
    unit: str = ""
    description: str = ""


SEGMENT_COLUMN = TableColumn("segment", "string", "", "Name of the lesion's segment")

# The library's columns (BrainMetSegLib.lesions.COLUMNS), with types and units.
LESION_COLUMNS: tuple[TableColumn, ...] = (
    TableColumn("lesion_id", "int", "", "Lesion number (label value; 1 = largest at inference)"),
    TableColumn("voxels", "int", "voxels", "Number of voxels"),
    TableColumn("volume_mm3", "double", "mm3", "Volume"),
    TableColumn("longest_diameter_mm", "double", "mm", "Longest 3D diameter"),
    TableColumn("axial_longest_diameter_mm", "double", "mm",
                "RANO-BM longest diameter on the axial slice where it is largest"),
    TableColumn("axial_perpendicular_diameter_mm", "double", "mm",
                "RANO-BM diameter perpendicular to the axial longest diameter"),
    TableColumn("axial_slices", "int", "slices", "Number of axial slices the lesion is seen on"),
    TableColumn("centroid_r", "double", "mm", "Centroid, Right (RAS)"),
    TableColumn("centroid_a", "double", "mm", "Centroid, Anterior (RAS)"),
    TableColumn("centroid_s", "double", "mm", "Centroid, Superior (RAS)"),
    TableColumn("centroid_i", "int", "voxel", "Centroid voxel index i of the input volume"),
    TableColumn("centroid_j", "int", "voxel", "Centroid voxel index j of the input volume"),
    TableColumn("centroid_k", "int", "voxel", "Centroid voxel index k of the input volume"),
    TableColumn("max_probability", "double", "", "Highest model probability in the lesion"),
    TableColumn("mean_probability", "double", "", "Mean model probability in the lesion"),
    TableColumn("rano_bm_measurable", "bool", "",
                "RANO-BM measurable: axial longest >= 10 mm, perpendicular >= 5 mm, >= 2 slices"),
    TableColumn("lesion_probability", "double", "",
                "Calibrated probability that the lesion is a metastasis (candidate scorer; "
                "empty for models without one)"),
)

TABLE_COLUMNS: tuple[TableColumn, ...] = (SEGMENT_COLUMN, *LESION_COLUMNS)


def table_cell(column: TableColumn, value):
    """Convert one value for a column of the given kind (bool -> 0/1 int, None -> NaN/'' )."""
    if column.kind == "string":
        return "" if value is None else str(value)
    if column.kind in ("int", "bool"):
        return int(bool(value)) if column.kind == "bool" else int(value)
    return float("nan") if value is None else float(value)


def table_columns(rows: Sequence[Mapping], segment_names: Sequence[str] | None = None
                  ) -> list[tuple[TableColumn, list]]:
    """Column-wise values of the lesion table, in :data:`TABLE_COLUMNS` order.

    rows: the library's lesion rows (``lesions.lesion_table``); segment_names: one per
    row (defaults to ``"Metastasis <lesion_id>"``).
    """
    if segment_names is None:
        segment_names = [segment_name(int(r["lesion_id"])) for r in rows]
    if len(segment_names) != len(rows):
        raise ValueError(f"{len(segment_names)} segment names for {len(rows)} table rows")
    out = [(SEGMENT_COLUMN, [table_cell(SEGMENT_COLUMN, n) for n in segment_names])]
    for col in LESION_COLUMNS:
        out.append((col, [table_cell(col, r.get(col.name)) for r in rows]))
    return out
