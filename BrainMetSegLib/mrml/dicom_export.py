"""Export a result's segments, as they are in the scene now, to DICOM SEG / SR / RTSTRUCT.

The segments (edited or not) are read as one label map on the input volume's grid
(:func:`.results.segments_label_map`: parent transforms and other segment geometries handled),
renumbered 1..N in segment order (empty and deleted segments leave no gap), re-measured with
the library's one lesion measure, and written by the library's
:func:`BrainMetSegLib.dicom.export_dicom` against the CE-T1's DICOM series. The DICOM objects
name segment N "Metastasis N" (N = its DICOM segment / ROI number); :class:`SceneDicomExport`
says which scene segment became which number.

Why the library and not Slicer's own DICOM exporters: QuantitativeReporting (SEG via dcmqi) and
SlicerRT (RTSTRUCT) are separate extensions, write no TID 1500 measurement report of these
lesion measures, and run only inside the Slicer application; the library path runs everywhere
(tested here on slicer-core) and writes all three objects with the same identity and codes as
``brainmetseg segment --dicom``. Users who have those extensions can still export the
segmentation with Slicer's DICOM export dialog: it sits under the input's study in the
subject hierarchy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import lesions
from .links import ATTR_MODEL, result_nodes
from .segments import segments_label_map
from .thresholding import operating_point, segments_edited
from .volumes import image_from_array

try:
    from ..dicom import DICOM_KINDS, ModelIdentity, export_dicom, operating_parameters, weights_sha256
except ModuleNotFoundError as exc:  # Slicer's Python has pydicom but not highdicom
    raise ModuleNotFoundError(f"DICOM export needs the Python package {exc.name!r}: install it with "
                              f"pip (in Slicer: slicer.util.pip_install('{exc.name}')).") from None

# Attribute Slicer's DICOM plugins set on a volume loaded from the DICOM database.
ATTR_INSTANCE_UIDS = "DICOM.instanceUIDs"


@dataclass(frozen=True)
class SceneDicomExport:
    """paths: {"dicom_seg": path, ...} (empty when no segment holds a voxel);
    segment_numbers: scene segment id -> DICOM segment / ROI number (1..N)."""

    paths: dict[str, Path]
    segment_numbers: dict[str, int]


def reference_files(volume, file_for_instance: Callable[[str], str]) -> list[str]:
    """The DICOM files a volume node was loaded from (Slicer's DICOM database:
    ``file_for_instance = slicer.dicomDatabase.fileForInstance``). ValueError when the volume
    did not come from DICOM or a file is no longer in the database."""
    uids = (volume.GetAttribute(ATTR_INSTANCE_UIDS) or "").split()
    if not uids:
        raise ValueError(f"volume {volume.GetName()!r} was not loaded from DICOM: choose its DICOM series folder")
    files = [file_for_instance(uid) for uid in uids]
    missing = [uid for uid, f in zip(uids, files, strict=True) if not f]
    if missing:
        raise ValueError(f"volume {volume.GetName()!r}: {len(missing)} of its DICOM files are not in the "
                         "DICOM database any more: choose its DICOM series folder")
    return files


def model_identity(segmentation) -> ModelIdentity:
    """Who made the segments: the model recorded at import, the operating point, and whether
    the segments were edited since (then the threshold no longer describes them)."""
    recorded = json.loads(segmentation.GetAttribute(ATTR_MODEL) or "{}")
    params = operating_parameters(operating_point(segmentation))
    if segments_edited(segmentation):
        params = {"edited_in_slicer": "yes"}
    return ModelIdentity(str(recorded.get("name", "unknown")), str(recorded.get("version", "unknown")),
                         weights_sha256(recorded), params)


def _check_no_overlap(segmentation, reference_volume) -> None:
    """Segments in one layer share a labelmap and cannot overlap; segments in different layers
    can (e.g. painted with "allow overlap"). The export is a label map (one lesion per voxel):
    an overlap would silently give the voxel to one lesion, so it is an error instead."""
    seg = segmentation.GetSegmentation()
    if seg.GetNumberOfLayers() < 2:
        return
    covered = None
    for layer in range(seg.GetNumberOfLayers()):
        mask = segments_label_map(segmentation, reference_volume, list(seg.GetSegmentIDsForLayer(layer)))[0] > 0
        if covered is not None and np.any(covered & mask):
            raise ValueError(f"segmentation {segmentation.GetName()!r}: segments overlap "
                             f"({int(np.count_nonzero(covered & mask))} voxels); a DICOM export gives each "
                             "voxel to one lesion: remove the overlap in the Segment Editor first")
        covered = mask if covered is None else covered | mask


def export_segmentation_dicom(segmentation, reference: str | os.PathLike | Sequence[str | os.PathLike] | None,
                              outdir: str | os.PathLike, kinds=DICOM_KINDS, reference_volume=None,
                              model: ModelIdentity | None = None, overwrite: bool = False,
                              file_for_instance: Callable[[str], str] | None = None) -> SceneDicomExport:
    """Write the segments of ``segmentation`` as DICOM objects into ``outdir``.

    reference: the CE-T1's DICOM series (folder or list of files) whose voxel lattice is
    ``reference_volume``'s (default: the result's input volume); None: the files the volume
    was loaded from, found with ``file_for_instance`` (:func:`reference_files`); kinds: from
    :data:`BrainMetSegLib.dicom.DICOM_KINDS`; model: default :func:`model_identity`.
    Raises :class:`BrainMetSegLib.errors.InputError` naming the file when the series is
    missing, incomplete or not on the volume's grid; existing files are kept unless overwrite.
    """
    reference_volume = reference_volume or result_nodes(segmentation).input_volume
    if reference_volume is None:
        raise ValueError(f"{segmentation.GetName()}: give the volume the segmentation was made on")
    if reference is None:
        if file_for_instance is None:
            raise ValueError("give the CE-T1's DICOM series (folder or files)")
        reference = reference_files(reference_volume, file_for_instance)
    _check_no_overlap(segmentation, reference_volume)
    labels, ijk_to_ras, segment_ids = segments_label_map(segmentation, reference_volume)
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=len(segment_ids) + 1)
    kept = [v for v in range(1, len(segment_ids) + 1) if counts[v] > 0]  # segment index + 1, in order
    lut = np.zeros(len(segment_ids) + 1, np.uint16)
    lut[kept] = np.arange(1, len(kept) + 1)
    image = image_from_array(lut[labels], ijk_to_ras)
    table = lesions.lesion_table(image)
    model = model or model_identity(segmentation)
    paths = export_dicom(image, table, [str(f) for f in reference] if not isinstance(reference, (str, os.PathLike))
                         else reference, outdir, kinds, model, overwrite,
                         labels_name=f"segmentation {segmentation.GetName()!r}")
    return SceneDicomExport(paths, {segment_ids[v - 1]: n for n, v in enumerate(kept, start=1)})
