"""A segmentation result in an MRML scene: the result's arrays, imported as linked nodes,
shown, removed.

:func:`import_result` makes (or updates) the segmentation (one segment per lesion,
:mod:`.segments`), the probability volume and the lesion table (:mod:`.lesion_table`),
links them (:mod:`.links`) and records the operating point (:mod:`.thresholding`);
re-threshold, re-measure and jump work on the nodes from there, also after the scene
was saved and loaded again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..operating_point import OperatingPoint
from . import scene as scene_tools
from . import volumes
from .lesion_table import fill_table
from .links import ATTR_MODEL, ResultNodes, link_result
from .segments import present_ids, set_segments, volume_grid
from .thresholding import record_operating_point

PROBABILITY_COLOR_NODE_IDS = ("vtkMRMLColorTableNodeFileColdToHotRainbow.txt",
                              "vtkMRMLColorTableNodeRainbow")


@dataclass(frozen=True)
class LesionResult:
    """What the pipeline produced, on the input volume's grid.

    labels_kji: instance label map (K, J, I), lesion id per voxel (0 = background);
    probability_kji: float probability (K, J, I) or None; ijk_to_ras: 4x4 local
    IJK-to-RAS matrix of that grid (the input volume's); rows: the lesion table
    (``lesions.COLUMNS``), one row per lesion id present in ``labels_kji``;
    operating_point: the :class:`~BrainMetSegLib.operating_point.OperatingPoint` the labels
    were made with (None: unknown, e.g. a hand-made label map); model: the model that made them
    (``run.json``'s "model": name, version, sha256).
    """

    labels_kji: np.ndarray
    probability_kji: np.ndarray | None
    ijk_to_ras: np.ndarray
    rows: Sequence[Mapping]
    operating_point: OperatingPoint | None = None
    model: Mapping | None = None

    @classmethod
    def from_images(cls, labels: sitk.Image, probability: sitk.Image | None, rows,
                    operating_point: OperatingPoint | None = None, model=None) -> LesionResult:
        """From SimpleITK images (e.g. the CLI's output files or ``pipeline.segment``)."""
        labels_kji, ijk_to_ras = volumes.array_and_matrix(labels)
        prob = None if probability is None else sitk.GetArrayFromImage(probability).astype(np.float32)
        if prob is not None and prob.shape != labels_kji.shape:
            raise ValueError(f"probability map {prob.shape} and label map {labels_kji.shape} differ in size")
        return cls(labels_kji, prob, ijk_to_ras, list(rows), operating_point, model)


def _show(nodes: ResultNodes) -> None:
    """Display nodes for the outputs (probability shown 0..1 in a rainbow colour map)."""
    nodes.segmentation.CreateDefaultDisplayNodes()
    prob = nodes.probability
    if prob is None:
        return
    if prob.GetDisplayNode() is None:
        prob.CreateDefaultDisplayNodes()
    display = prob.GetDisplayNode()
    scene = prob.GetScene()
    for color_id in PROBABILITY_COLOR_NODE_IDS:
        if scene.GetNodeByID(color_id) is not None:
            display.SetAndObserveColorNodeID(color_id)
            break
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 1.0)


def import_result(scene, input_volume, result: LesionResult, segmentation=None, table=None,
                  probability=None, base_name: str | None = None) -> ResultNodes:
    """Put ``result`` into ``scene`` for ``input_volume``; returns the result's nodes.

    Output nodes that are given are updated; missing ones are created (names from
    ``base_name``, default the input's name). ``result`` must be on the input's grid.
    On any error the nodes created here are removed again with their display and
    storage nodes, so a failed import leaves the scene as it was (updated nodes keep
    whatever was written before the error).
    """
    dims, matrix = volume_grid(input_volume)
    if result.labels_kji.shape != tuple(dims[::-1]) or not np.allclose(matrix, result.ijk_to_ras, atol=1e-4):
        raise ValueError(f"the result's grid {result.labels_kji.shape} does not match the input volume "
                         f"{input_volume.GetName()!r} {tuple(dims[::-1])} (size or IJK-to-RAS differ)")
    ids_in_rows = [int(r["lesion_id"]) for r in result.rows]
    present = set(present_ids(result.labels_kji))
    if result.probability_kji is not None and result.probability_kji.shape != result.labels_kji.shape:
        raise ValueError(f"probability map {result.probability_kji.shape} and label map "
                         f"{result.labels_kji.shape} differ in size")
    if set(ids_in_rows) != present:
        raise ValueError(f"lesion table ids {sorted(ids_in_rows)} differ from the label map's {sorted(present)}")
    base = base_name or input_volume.GetName()
    created = []

    def create(class_name, name):
        node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
        created.append(node)
        return node

    try:
        segmentation = segmentation or create("vtkMRMLSegmentationNode", f"{base} metastases")
        table = table or create("vtkMRMLTableNode", f"{base} lesions")
        if result.probability_kji is not None:
            probability = probability or create("vtkMRMLScalarVolumeNode", f"{base} metastasis probability")
            volumes.set_volume(probability, result.probability_kji.astype(np.float32), result.ijk_to_ras)
        nodes = ResultNodes(segmentation, table, probability, input_volume)
        link_result(nodes)
        segment_ids = set_segments(segmentation, result.labels_kji, result.ijk_to_ras, ids_in_rows)
        fill_table(table, result.rows, segment_ids, segmentation, input_volume)
        _show(nodes)
        record_operating_point(segmentation, result.operating_point)
        if result.model is not None:
            segmentation.SetAttribute(ATTR_MODEL, json.dumps(dict(result.model)))
    except Exception:
        scene_tools.remove_nodes(scene, created)
        raise
    return nodes


def remove_result(nodes: ResultNodes) -> None:
    """Remove a result's segmentation, table and probability volume with their display
    and storage nodes (the input volume stays)."""
    parts = [n for n in (nodes.segmentation, nodes.table, nodes.probability) if n is not None]
    if parts:
        scene_tools.remove_nodes(parts[0].GetScene(), parts)
