"""`lesions.seg.nrrd` (written without Slicer) read back by Slicer's own reader.

slicer-core's ``vtkMRMLSegmentationStorageNode`` (what Slicer runs when a user drags the file
in) must give one segment per lesion with the name, colour, label value and terminology of
the scene layer, holding exactly the lesion's voxels at the same physical place.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicer  # slicer-core, from the `test` extra: required, never skipped
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from BrainMetSegLib.cli import main
from BrainMetSegLib.lesion_vocabulary import (
    METASTASIS_TERMINOLOGY,
    segment_color,
    segment_id,
    segment_name,
)
from BrainMetSegLib.mrml import array_and_matrix, segmentations_logic
from BrainMetSegLib.slicer_seg import SEG_NRRD_NAME, segmentation_image
from BrainMetSegLib.staging import stage_image
from conftest import make_volume


def read_with_slicer(path):
    """The segmentation node Slicer's storage node makes of ``path`` (fails on a read error)."""
    scene = slicer.vtkMRMLScene()
    segmentations_logic(scene)  # Slicer's converters, as in the application
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1, f"Slicer could not read {path}"
    return node


def segment_mask_on(node, segment, labels: sitk.Image) -> np.ndarray:
    """Segment ``segment``'s voxels (K, J, I) on the grid of ``labels``, from Slicer's binary
    labelmap representation, after checking that it lies on that very lattice."""
    oriented = slicer.vtkOrientedImageData()
    assert node.GetBinaryLabelmapRepresentation(segment, oriented)
    matrix = vtk.vtkMatrix4x4()
    oriented.GetImageToWorldMatrix(matrix)
    image_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    _, ijk_to_ras = array_and_matrix(labels)
    assert np.allclose(image_to_ras, ijk_to_ras, atol=1e-6), "segment off the label map's lattice"
    shape = sitk.GetArrayViewFromImage(labels).shape
    mask = np.zeros(shape, bool)
    i0, i1, j0, j1, k0, k1 = oriented.GetExtent()
    if i1 < i0:
        return mask
    values = vtk_to_numpy(oriented.GetPointData().GetScalars()).reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
    assert set(np.unique(values)) <= {0, 1}  # Slicer extracts the segment from the shared layer
    mask[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = values == 1
    return mask


def check_segments(node, labels: sitk.Image) -> None:
    truth = sitk.GetArrayFromImage(labels)
    ids = [int(v) for v in np.unique(truth) if v]
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(ids)
    assert [segmentation.GetNthSegmentID(k) for k in range(len(ids))] == [segment_id(i) for i in ids]
    for lesion in ids:
        segment = segmentation.GetSegment(segment_id(lesion))
        assert segment.GetName() == segment_name(lesion)
        assert np.allclose(segment.GetColor(), segment_color(lesion), atol=1e-5)
        assert segment.GetTerminology() == METASTASIS_TERMINOLOGY
        assert np.array_equal(segment_mask_on(node, segment_id(lesion), labels), truth == lesion), lesion


def oblique_labels(n_lesions: int, size=(30, 26, 18), seed: int = 3) -> sitk.Image:
    """Lesions 1..n as small non-touching boxes on an oblique, anisotropic grid."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(size[::-1], np.uint16)
    cells = [(k, j, i) for k in range(0, size[2] - 1, 3) for j in range(0, size[1] - 1, 3)
             for i in range(0, size[0] - 1, 3)]
    for lesion, index in enumerate(rng.choice(len(cells), n_lesions, replace=False), start=1):
        k, j, i = cells[index]
        labels[k:k + 2, j:j + rng.integers(1, 3), i:i + 2] = lesion
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((0.9, 1.1, 2.5))
    image.SetOrigin((-12.0, 30.5, 7.25))
    rotation = sitk.VersorTransform((0.3, 0.1, 0.9), 0.4).GetMatrix()
    image.SetDirection(rotation)
    image.SetMetaData("descrip", "inherited key that must not reach the header")
    return image


@pytest.mark.parametrize("n_lesions", [1, 9, 300])
def test_slicer_reads_segments_names_colours_voxels(tmp_path, n_lesions):
    """One to 300 lesions (over 255: a 16-bit file), oblique grid: all read back exactly."""
    labels = oblique_labels(n_lesions)
    path = tmp_path / SEG_NRRD_NAME
    stage_image(segmentation_image(labels), path).rename(path)
    header = path.read_bytes()[:4000].decode("latin-1")
    assert "descrip" not in header and "Segment0_Name:=Metastasis 1" in header
    check_segments(read_with_slicer(path), labels)


def test_a_reviewed_map_with_gaps_keeps_its_ids(tmp_path):
    """A corrected map (lesion 2 deleted, as a review may leave it): segments for 1 and 3 only."""
    labels = oblique_labels(3)
    array = sitk.GetArrayFromImage(labels)
    array[array == 2] = 0
    gapped = sitk.GetImageFromArray(array)
    gapped.CopyInformation(labels)
    path = tmp_path / SEG_NRRD_NAME
    stage_image(segmentation_image(gapped), path).rename(path)
    node = read_with_slicer(path)
    check_segments(node, gapped)
    assert [node.GetSegmentation().GetNthSegment(k).GetLabelValue() for k in range(2)] == [1, 3]


def test_no_lesion_is_an_empty_segmentation(tmp_path):
    labels = oblique_labels(0)
    path = tmp_path / SEG_NRRD_NAME
    stage_image(segmentation_image(labels), path).rename(path)
    assert read_with_slicer(path).GetSegmentation().GetNumberOfSegments() == 0


def test_segment_writes_a_segmentation_slicer_opens(tiny_model, tmp_path, capsys):
    """`brainmetseg segment` writes lesions.seg.nrrd (listed in run.json), equal to its label map."""
    volume = tmp_path / "ce_t1.nii.gz"
    sitk.WriteImage(make_volume(), str(volume))
    out = tmp_path / "out"
    code = main(["segment", str(volume), "-o", str(out), "--model", str(tiny_model.folder), "--brain-mask",
                 "none", "--device", "cpu", "--threshold", "0.2", "--min-volume", "0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert run["outputs"]["segmentation"] == SEG_NRRD_NAME
    labels = sitk.ReadImage(str(out / "lesion_labels.nii.gz"))
    assert sitk.GetArrayViewFromImage(labels).max() >= 1, "the tiny model should find something at 0.2"
    check_segments(read_with_slicer(out / SEG_NRRD_NAME), labels)


def test_long_nrrd_headers_are_read_whole(tmp_path):
    """The file check reads a header past its first 64 kB read (a .seg.nrrd of many lesions),
    and a CRLF cut by that read is not taken for the blank line that ends the header."""
    from BrainMetSegLib.filecheck import check_image_file

    head = b"NRRD0004\r\ntype: uchar\r\ndimension: 2\r\nsizes: 10 10\r\nencoding: raw\r\n"
    filler = (1 << 16) - len(head) - len(b"note:=\r")  # the "\r" ends the first read, "\n" starts the next
    header = head + b"note:=" + b"x" * filler + b"\r\n" + b"more:=" + b"y" * 70000 + b"\r\n\r\n"
    assert header[(1 << 16) - 1:(1 << 16) + 1] == b"\r\n"
    path = tmp_path / "long.nrrd"
    path.write_bytes(header + bytes(range(100)))
    check_image_file(path, values=False)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).ravel().tolist() == list(range(100))
    path.write_bytes(header[:-2] + bytes(range(100)))  # no blank line: the header never ends
    with pytest.raises(Exception, match="no blank line"):
        check_image_file(path, values=False)
