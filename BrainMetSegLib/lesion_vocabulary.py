"""How a lesion is named, coloured, coded and tabulated wherever it is shown.

One vocabulary for every place a result becomes segments or a table: the MRML scene
layer (:mod:`BrainMetSegLib.mrml`), the web viewer, Slicer ``.seg.nrrd`` files
(:mod:`BrainMetSegLib.slicer_seg`) and DICOM SEG / RTSTRUCT (:mod:`BrainMetSegLib.dicom`).
Pure Python: no ``slicer``, ``vtk`` or ``qt``.

Lesion N (1-based label value) is segment ``Metastasis_N`` named ``"Metastasis N"``
with a fixed colour, so it looks the same in every run and after re-thresholding.
The lesion table's columns carry value types, units and descriptions for
``vtkMRMLTableNode`` (shown as tooltips in Slicer's table view).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SEGMENT_NAME_PREFIX = "Metastasis"

# A fixed palette of 20 well-separated colours (RGB in [0, 1]); lesion N always gets
# PALETTE[(N - 1) % 20], so lesion 1 has the same colour in every run and after
# re-thresholding. Based on Kelly's colours of maximum contrast, with the dark
# ones (browns, olive) replaced by bright hues that stay visible over dark MRI
# background; no greys (Slicer's "no colour").
PALETTE: tuple[tuple[float, float, float], ...] = tuple(
    (r / 255.0, g / 255.0, b / 255.0)
    for r, g, b in (
        (255, 179, 0),    # vivid yellow
        (128, 62, 117),   # strong purple
        (255, 104, 0),    # vivid orange
        (166, 189, 215),  # very light blue
        (193, 0, 32),     # vivid red
        (0, 125, 52),     # vivid green
        (246, 118, 142),  # strong purplish pink
        (0, 83, 138),     # strong blue
        (206, 162, 98),   # greyish yellow
        (255, 122, 92),   # strong yellowish pink
        (120, 80, 200),   # strong violet
        (190, 255, 70),   # vivid lime
        (179, 40, 81),    # strong purplish red
        (255, 255, 140),  # light yellow
        (255, 60, 200),   # vivid magenta
        (147, 170, 0),    # vivid yellowish green
        (160, 110, 255),  # light violet
        (241, 58, 19),    # vivid reddish orange
        (0, 210, 130),    # vivid teal green
        (0, 161, 194),    # vivid cyan
    )
)

# Slicer's TerminologyEntry tag: 7 parts separated by "~" (context, category, type,
# type modifier, region context, region, region modifier), codes as
# "scheme^value^meaning". Codes from Slicer's DICOM master list
# (SegmentationCategoryTypeModifier-DICOM-Master.json, CID 7159 "Lesion segmentation
# types") and AnatomicRegionAndModifier-DICOM-Master.json.
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
CATEGORY_CODE = ("SCT", "49755003", "Morphologically Altered Structure")
TYPE_CODE = ("SCT", "14799000", "Neoplasm, Secondary")
REGION_CODE = ("SCT", "12738006", "Brain")
EMPTY_CODE = ("", "", "")


def _code(code: Sequence[str]) -> str:
    return "^".join(code)


def terminology_entry(category=CATEGORY_CODE, type_=TYPE_CODE, type_modifier=EMPTY_CODE,
                      region=REGION_CODE, region_modifier=EMPTY_CODE,
                      context: str = TERMINOLOGY_CONTEXT,
                      anatomic_context: str = ANATOMIC_CONTEXT) -> str:
    """A Slicer ``TerminologyEntry`` tag value (default: secondary neoplasm in the brain)."""
    return "~".join([context, _code(category), _code(type_), _code(type_modifier),
                     anatomic_context, _code(region), _code(region_modifier)])


METASTASIS_TERMINOLOGY = terminology_entry()


def parse_terminology_entry(entry: str) -> dict:
    """Split a ``TerminologyEntry`` tag into its 7 named parts (codes as 3-tuples)."""
    parts = entry.split("~")
    if len(parts) != 7:
        raise ValueError(f"terminology entry needs 7 '~'-separated parts, got {len(parts)}: {entry!r}")
    names = ("context", "category", "type", "type_modifier", "anatomic_context", "region",
             "region_modifier")
    out = {}
    for name, part in zip(names, parts, strict=True):
        if name.endswith("context"):
            out[name] = part
        else:
            code = tuple(part.split("^"))
            if len(code) != 3:
                raise ValueError(f"terminology code {part!r} is not scheme^value^meaning")
            out[name] = code
    return out


def segment_name(lesion_id: int) -> str:
    """Display name of lesion ``lesion_id`` (1-based): ``"Metastasis 3"``."""
    if int(lesion_id) < 1:
        raise ValueError(f"lesion ids start at 1, got {lesion_id}")
    return f"{SEGMENT_NAME_PREFIX} {int(lesion_id)}"


def segment_id(lesion_id: int) -> str:
    """Segment id of lesion ``lesion_id`` inside the segmentation node: ``"Metastasis_3"``."""
    return segment_name(lesion_id).replace(" ", "_")


def lesion_id_from_segment_name(name: str) -> int | None:
    """Inverse of :func:`segment_name` / :func:`segment_id`; None for other names."""
    m = re.fullmatch(rf"{SEGMENT_NAME_PREFIX}[ _](\d+)", name.strip())
    return int(m.group(1)) if m and int(m.group(1)) >= 1 else None


def segment_color(lesion_id: int) -> tuple[float, float, float]:
    """RGB colour in [0, 1] of lesion ``lesion_id``; the same id always gets the same colour."""
    if int(lesion_id) < 1:
        raise ValueError(f"lesion ids start at 1, got {lesion_id}")
    return PALETTE[(int(lesion_id) - 1) % len(PALETTE)]


@dataclass(frozen=True)
class SegmentSpec:
    """What a lesion's segment looks like: id, name, colour (RGB 0-1), terminology tag."""

    lesion_id: int
    segment_id: str
    name: str
    color: tuple[float, float, float]
    terminology: str = METASTASIS_TERMINOLOGY


def segment_specs(n_lesions: int) -> list[SegmentSpec]:
    """Segments for lesions 1..n in label order (label value i+1 -> i-th spec)."""
    return [SegmentSpec(i, segment_id(i), segment_name(i), segment_color(i))
            for i in range(1, int(n_lesions) + 1)]


# ---------------------------------------------------------------- lesion-table columns


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
    TableColumn("diameters_on", "string", "",
                "Where the diameters were measured: 'probability' = the probability map's outline at "
                "the outline threshold (sub-voxel); 'labels' = the label map's voxel boundary "
                "(edited lesions, label maps without their probability map); 'image' = the CE-T1 "
                "image's edge at the half-maximum of the lesion's enhancement (compare --diameters image)"),
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
