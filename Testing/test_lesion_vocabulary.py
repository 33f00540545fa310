"""The lesion vocabulary (segment names, ids, colours, terminology, table columns), tested headless."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib import lesion_vocabulary as vocab

# ---------------------------------------------------------------- segments


def test_segment_names_ids_roundtrip():
    assert vocab.segment_name(1) == "Metastasis 1"
    assert vocab.segment_id(12) == "Metastasis_12"
    for i in (1, 7, 120):
        assert vocab.lesion_id_from_segment_name(vocab.segment_name(i)) == i
        assert vocab.lesion_id_from_segment_name(vocab.segment_id(i)) == i
    for other in ("Segment_1", "Metastasis", "Metastasis 0", "Metastasis 2b", "Tumor 3"):
        assert vocab.lesion_id_from_segment_name(other) is None
    with pytest.raises(ValueError):
        vocab.segment_name(0)


def test_palette_is_distinct_and_stable():
    colors = [vocab.segment_color(i) for i in range(1, len(vocab.PALETTE) + 1)]
    assert len(set(colors)) == len(vocab.PALETTE) == 20
    for c in colors:
        assert all(0.0 <= v <= 1.0 for v in c)
        assert max(c) - min(c) > 0.1, f"{c} is (nearly) grey"
        assert max(c) > 0.4, f"{c} is too dark over MRI background"
    dist = min(np.linalg.norm(np.subtract(a, b)) for a, b in itertools.combinations(colors, 2))
    assert dist > 0.15
    assert vocab.segment_color(21) == vocab.segment_color(1)  # cycles, same id -> same colour
    specs = vocab.segment_specs(3)
    assert [s.segment_id for s in specs] == ["Metastasis_1", "Metastasis_2", "Metastasis_3"]
    assert specs[1].color == vocab.segment_color(2)


def test_terminology_entry_format():
    entry = vocab.METASTASIS_TERMINOLOGY
    assert entry.count("~") == 6
    parts = vocab.parse_terminology_entry(entry)
    assert parts["context"] == "Segmentation category and type - DICOM master list"
    assert parts["category"] == ("SCT", "49755003", "Morphologically Altered Structure")
    assert parts["type"] == ("SCT", "14799000", "Neoplasm, Secondary")
    assert parts["type_modifier"] == ("", "", "")
    assert parts["anatomic_context"] == "Anatomic codes - DICOM master list"
    assert parts["region"] == ("SCT", "12738006", "Brain")
    assert entry.split("~")[3] == "^^"
    with pytest.raises(ValueError):
        vocab.parse_terminology_entry("a~b")


# ---------------------------------------------------------------- table


def test_table_columns_match_library():
    from BrainMetSegLib.lesions import COLUMNS

    assert tuple(c.name for c in vocab.LESION_COLUMNS) == tuple(COLUMNS)
    assert vocab.TABLE_COLUMNS[0].name == "segment"
    assert {c.kind for c in vocab.TABLE_COLUMNS} <= {"int", "double", "bool", "string"}


def _probability_image():
    """Three blobs with known peak probabilities on an anisotropic, oblique-free grid."""
    z, y, x = np.mgrid[:32, :40, :40]
    prob = np.zeros((32, 40, 40), np.float32)
    for (cz, cy, cx), r, peak in (((10, 10, 10), 5, 0.95), ((20, 28, 28), 3.5, 0.8),
                                  ((22, 10, 30), 2.5, 0.6)):
        d = np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2)
        prob = np.maximum(prob, peak * np.clip(1.5 - d / r, 0, 1))
    img = sitk.GetImageFromArray(prob)
    img.SetSpacing((1.0, 1.0, 1.5))
    img.SetOrigin((-20.0, -20.0, -24.0))
    return img


def test_rethreshold_and_edited_table_recomputation():
    """The module's editing loop: re-threshold, edit the label map, recompute the table."""
    from BrainMetSegLib.lesions import lesion_table
    from BrainMetSegLib.operating_point import OperatingPoint, lesion_labels

    prob = _probability_image()
    labels = lesion_labels(prob, OperatingPoint(0.5, 0.0))
    rows = lesion_table(labels, prob)
    assert [r["lesion_id"] for r in rows] == [1, 2, 3]
    assert rows[0]["volume_mm3"] > rows[1]["volume_mm3"] > rows[2]["volume_mm3"]
    # a higher threshold drops the faint lesion, a size limit drops the small one
    assert len(lesion_table(lesion_labels(prob, OperatingPoint(0.62, 0.0)), prob)) == 2
    small = rows[2]["volume_mm3"]
    assert len(lesion_table(lesion_labels(prob, OperatingPoint(0.5, small + 1.0)), prob)) == 2

    # Segment Editor edits, exported in segment order (label value = row order + 1):
    lab = sitk.GetArrayFromImage(labels).astype(np.uint16)
    edited = np.zeros_like(lab)
    edited[lab == 1] = 1                     # lesion 1 kept
    part = (lab == 2) & (np.arange(40)[None, None, :] < 28)
    edited[part] = 2                         # lesion 2 split into two segments
    edited[(lab == 2) & ~part] = 3
    # lesion 3 erased; a new lesion drawn by hand
    edited[2:5, 30:34, 2:6] = 4
    out = sitk.GetImageFromArray(edited)
    out.CopyInformation(labels)
    new_rows = lesion_table(out, prob)
    assert [r["lesion_id"] for r in new_rows] == [1, 2, 3, 4]
    assert new_rows[0]["voxels"] == rows[0]["voxels"]
    assert new_rows[1]["voxels"] + new_rows[2]["voxels"] == rows[1]["voxels"]
    assert new_rows[3]["voxels"] == 3 * 4 * 4
    assert new_rows[3]["volume_mm3"] == pytest.approx(48 * 1.5)
    assert new_rows[3]["max_probability"] == pytest.approx(0.0)
    # centroid RAS of the hand-drawn box: LPS origin + index * spacing, x/y negated
    k, j, i = 3.0, 31.5, 3.5
    assert new_rows[3]["centroid_r"] == pytest.approx(-(-20.0 + i))
    assert new_rows[3]["centroid_a"] == pytest.approx(-(-20.0 + j))
    assert new_rows[3]["centroid_s"] == pytest.approx(-24.0 + 1.5 * k)

    names = ["Metastasis 1", "Metastasis 2", "Segment_5", "my lesion"]
    cols = dict((c.name, v) for c, v in vocab.table_columns(new_rows, names))
    assert cols["segment"] == names
    assert cols["lesion_id"] == [1, 2, 3, 4]
    assert all(v in (0, 1) for v in cols["rano_bm_measurable"])
    assert isinstance(cols["volume_mm3"][0], float)
    default = dict((c.name, v) for c, v in vocab.table_columns(rows))
    assert default["segment"] == ["Metastasis 1", "Metastasis 2", "Metastasis 3"]
    with pytest.raises(ValueError):
        vocab.table_columns(rows, ["only one"])
