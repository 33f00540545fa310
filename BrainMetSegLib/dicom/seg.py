"""DICOM Segmentation (SEG) of the lesion label map: one segment per lesion, with highdicom.

Segment N is lesion N (``lesion_id`` of the lesion table and value N of the label map),
labelled "Metastasis N", coded like the Slicer module's segments (Slicer's DICOM master
list: category SCT 49755003 "Morphologically Altered Structure", type SCT 14799000
"Neoplasm, Secondary" = SNOMED CT "Neoplasm, metastatic", region SCT 12738006 "Brain"),
colour from the module's palette. Frames are the reference series' own slices.
"""

from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian

from ..lesion_vocabulary import (
    CATEGORY_CODE,
    REGION_CODE,
    TYPE_CODE,
    segment_color,
    segment_name,
)
from .identity import MANUFACTURER, SERIES_NUMBERS, ModelIdentity, lo
from .reference import ReferenceSeries

CATEGORY = Code(CATEGORY_CODE[1], CATEGORY_CODE[0], CATEGORY_CODE[2])
TYPE = Code(TYPE_CODE[1], TYPE_CODE[0], TYPE_CODE[2])
REGION = Code(REGION_CODE[1], REGION_CODE[0], REGION_CODE[2])
# Content Creator's Name (0070,0084), Type 2 in the Content Identification macro: a person's
# name (PN), so empty: no person made the content; the model is named by each segment's
# Algorithm Identification. A reviewer who approves the result may fill it.
CONTENT_CREATOR = ""
# A source's SpacingBetweenSlices further than this (mm) from its slice step is not used.
STEP_TOL_MM = 1e-3


def segment_descriptions(lesion_ids: list[int], model: ModelIdentity) -> list[hd.seg.SegmentDescription]:
    algorithm = model.algorithm_identification()
    return [
        hd.seg.SegmentDescription(
            segment_number=i, segment_label=segment_name(i), segmented_property_category=CATEGORY,
            segmented_property_type=TYPE, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, tracking_uid=hd.UID(), tracking_id=segment_name(i),
            anatomic_regions=[REGION],
            display_color=hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in segment_color(i))))
        for i in lesion_ids
    ]


def build_seg(reference: ReferenceSeries, labels_frames: np.ndarray,
              model: ModelIdentity) -> hd.seg.Segmentation:
    """A binary SEG of ``labels_frames`` ((slice, row, column) on ``reference``, values 0..N,
    every id 1..N present). Frames without any lesion are left out; each kept frame points
    at its source slice (Derivation Image / Source Image Sequence)."""
    n = int(labels_frames.max())
    if n < 1:
        raise ValueError("no lesion to export: a SEG needs at least one segment")
    present = np.unique(labels_frames)
    if len(present) != n + 1:
        raise ValueError(f"label map ids must be 1..{n} without gaps, found {present[1:].tolist()}")
    return hd.seg.Segmentation(
        source_images=_with_measures(reference),
        pixel_array=labels_frames.astype(np.uint16),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(list(range(1, n + 1)), model),
        series_instance_uid=hd.UID(), series_number=SERIES_NUMBERS["seg"],
        sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=lo(model.name),
        software_versions=model.software_versions, device_serial_number=model.device_serial_number,
        series_description=lo(f"Metastases ({model.label})"),
        content_label="METASTASES", content_description="Brain metastases, automatic",
        content_creator_name=CONTENT_CREATOR,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        pixel_measures=pixel_measures(reference),
    )


def _with_measures(reference: ReferenceSeries) -> list:
    """The source datasets, as in-memory copies carrying the SEG's pixel measures where they
    differ: highdicom replaces the ``pixel_measures`` it is given by the first source's
    (SliceThickness, SpacingBetweenSlices) whenever the pixel spacing agrees. A source with an
    empty SliceThickness, or a SpacingBetweenSlices other than the step between its slice
    positions (converters write 1 for single slices), would otherwise give the SEG a wrong
    slice spacing, and readers that stack frames by it (dcmqi) a stretched volume. The
    files are not touched."""
    measures = pixel_measures(reference)[0]
    first = reference.datasets[0]
    stated = first.get("SpacingBetweenSlices")
    wrong_step = stated is not None and abs(float(stated) - reference.spacing_mm[2]) > STEP_TOL_MM
    if first.get("SliceThickness") and not wrong_step:
        return list(reference.datasets)
    out = []
    for ds in reference.datasets:
        ds = copy.copy(ds)
        ds.SliceThickness = measures.SliceThickness
        if "SpacingBetweenSlices" in ds:
            ds.SpacingBetweenSlices = measures.SpacingBetweenSlices
        out.append(ds)
    return out


def pixel_measures(reference: ReferenceSeries) -> hd.PixelMeasuresSequence:
    """Pixel spacing, slice step and thickness (mm) of the frames. A source without a
    SliceThickness value (it is Type 2, may be empty) gets the slice step: the extent of a
    segmentation voxel along the normal."""
    first = reference.datasets[0]
    step = reference.spacing_mm[2]
    thickness = float(first.SliceThickness) if first.get("SliceThickness") else step
    return hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in first.PixelSpacing],
                                    slice_thickness=thickness, spacing_between_slices=step)
