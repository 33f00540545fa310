"""The MRML scene layer: BrainMetSeg results as Slicer nodes, for any MRML scene.

The only part of the library that imports ``slicer`` and ``vtk`` (never ``qt``/``ctk``):
it runs inside the Slicer application (the module ``BrainMetSeg/BrainMetSeg.py`` is Qt
glue over it), on a bare scene from PyPI's ``slicer-core`` (the tests, the web viewer),
or in ``PythonSlicer``. Functions take a scene / nodes / numpy arrays and return nodes;
the links between a result's nodes live in the scene (node references), not in Python
objects, so a saved and reloaded scene can still be re-thresholded and re-measured.

Volumes enter as numpy (K, J, I) arrays with a 4x4 IJK-to-RAS matrix (the volume's own
frame, before parent transforms), never through ``sitkUtils``.

Typical use::

    from BrainMetSegLib import mrml
    from BrainMetSegLib.operating_point import OperatingPoint
    result = mrml.LesionResult.from_images(labels_image, probability_image, rows,
                                           OperatingPoint(0.8, 10.0, 0.4))
    nodes = mrml.import_result(scene, input_volume_node, result)   # ResultNodes
    mrml.rethreshold(nodes.segmentation, OperatingPoint(0.6, 10.0, 0.3))  # no model run
    mrml.update_table(nodes.segmentation)                          # after Segment Editor edits
    mrml.jump_to_lesion(nodes.table, row=0)                        # world RAS jumped to
    mrml.remove_result(nodes)                                      # nothing left behind

API:

- :class:`LesionResult` (arrays + matrix + lesion rows + operating point),
  :class:`ResultNodes` (segmentation, table, probability, input_volume);
- :func:`import_result` creates/updates the nodes and links them (rolls back on error);
  :func:`result_nodes` finds a result's nodes from its segmentation or table;
- :func:`rethreshold` (applies an ``OperatingPoint``), :func:`rethreshold_action` (:class:`RethresholdAction`: what a
  slider change should do), :func:`segments_edited`, :func:`can_rethreshold`,
  :func:`operating_point`; :func:`update_table` (re-measure edited segments);
- :func:`lesion_world_ras`, :func:`jump_to_lesion` (parent transforms applied);
- :func:`start_segmentation` runs the library's CLI on volume nodes in a subprocess and
  imports its outputs (:func:`read_run_outputs`) when it ends;
- :mod:`.dicom_export` (imported on use: needs highdicom): :func:`.dicom_export.export_segmentation_dicom`
  writes the segments as they are (after edits) as DICOM SEG / SR / RTSTRUCT;
- :mod:`.longitudinal`: :func:`.longitudinal.import_comparison` / :func:`.longitudinal.load_comparison_folder`
  put a follow-up comparison in the scene (a segmentation per time point, shared track ids/colours);
- :func:`remove_result`; :mod:`.selftest` (the module's "Reload and Test" check); building blocks :func:`set_segments`,
  :func:`segments_label_map`, :func:`fill_table`, :func:`link_result`;
- scene helpers: :func:`segmentations_logic` (registers Slicer's segmentation converters
  on a slicer-core scene), :func:`node_counts`, :func:`remove_nodes`, :func:`slice_nodes`,
  :func:`segment_editor_node`; volume helpers in :mod:`.volumes`.

Modules, each one job (every name above is importable from the package): :mod:`.results`
(a result imported as nodes, removed), :mod:`.links` (node-reference roles, attributes,
:class:`ResultNodes`), :mod:`.segments` (label map <-> one segment per lesion),
:mod:`.lesion_table` (the table node, lesion positions, jump), :mod:`.thresholding`
(recorded operating point, edited or not, re-threshold, re-measure), :mod:`.run`,
:mod:`.scene`, :mod:`.volumes`. Names, colours and table columns come from
:mod:`BrainMetSegLib.lesion_vocabulary`.
"""

from . import selftest
from .lesion_table import fill_table, jump_to_lesion, lesion_world_ras
from .links import (
    ATTR_CENTROID_FRAME,
    ATTR_MIN_VOLUME,
    ATTR_MODEL,
    ATTR_OUTLINE,
    ATTR_SEGMENT_IDS,
    ATTR_SEGMENTS_STATE,
    ATTR_THRESHOLD,
    ROLE_INPUT,
    ROLE_MEASURED_ON,
    ROLE_PROBABILITY,
    ROLE_SEGMENTATION,
    ROLE_TABLE,
    ResultNodes,
    link_result,
    result_nodes,
)
from .results import LesionResult, import_result, remove_result
from .run import read_run_outputs, start_segmentation
from .scene import node_counts, remove_nodes, segment_editor_node, segmentations_logic, slice_nodes
from .segments import segments_label_map, set_segments
from .thresholding import (
    RethresholdAction,
    TooManyLesions,
    can_rethreshold,
    operating_point,
    rethreshold,
    rethreshold_action,
    segments_edited,
    update_table,
)
from .volumes import (
    array_and_matrix,
    ijk_to_ras_of_image,
    image_from_array,
    set_volume,
    volume_array,
    write_volume,
)

__all__ = [
    "ATTR_CENTROID_FRAME", "ATTR_MIN_VOLUME", "ATTR_MODEL", "ATTR_OUTLINE", "ATTR_SEGMENT_IDS", "ATTR_SEGMENTS_STATE",
    "ATTR_THRESHOLD",
    "ROLE_INPUT", "ROLE_MEASURED_ON", "ROLE_PROBABILITY", "ROLE_SEGMENTATION", "ROLE_TABLE",
    "LesionResult", "ResultNodes", "can_rethreshold", "fill_table", "import_result",
    "jump_to_lesion", "lesion_world_ras", "link_result", "operating_point", "remove_result",
    "result_nodes", "rethreshold", "rethreshold_action", "RethresholdAction", "TooManyLesions", "segments_edited",
    "segments_label_map", "set_segments",
    "update_table", "node_counts", "remove_nodes", "segment_editor_node", "segmentations_logic",
    "slice_nodes", "array_and_matrix", "ijk_to_ras_of_image", "image_from_array", "set_volume",
    "volume_array", "write_volume", "read_run_outputs", "start_segmentation", "selftest",
]
