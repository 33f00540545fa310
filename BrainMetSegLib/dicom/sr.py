"""DICOM Structured Report, TID 1500 Measurement Report, of the lesion table (highdicom).

One TID 1411 volumetric measurement group per lesion, referencing the lesion's SEG segment
(tracking identifier and UID shared with the segment), with:

- volume (SCT 118565006 "Volume", mm3, method DCM 126030 "Sum of segmented voxel method");
- longest 3D diameter (IBSI L0JK "Maximum 3D Diameter of a Mesh", mm): the table's
  ``longest_diameter_mm``, measured between marching-cubes surface vertices;
- RANO-BM axial diameters (SCT 103339001 "Long axis" and SCT 131189007 "Perpendicular
  Axis", mm) on the axial slice where the long axis is largest;
- for a model with a candidate scorer, the calibrated lesion probability (DCM 111047
  "Probability of cancer", UCUM "1" no units, 0..1): ``lesion_probability``.


A case without any lesion gets a "no findings" report (:func:`build_no_findings_sr`): the
model looked and found none, which a PACS user should see rather than no object at all.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from scipy import ndimage

from ..lesions import LesionTableRow
from .identity import MANUFACTURER, SERIES_NUMBERS, ModelIdentity, lo
from .reference import ReferenceSeries
from .seg import REGION, TYPE

VOLUME = Code("118565006", "SCT", "Volume")
VOXEL_SUM_METHOD = Code("126030", "DCM", "Sum of segmented voxel method for volume")
MAX_3D_DIAMETER = Code("L0JK", "IBSI", "Maximum 3D Diameter of a Mesh")
LONG_AXIS = Code("103339001", "SCT", "Long axis")
PERPENDICULAR_AXIS = Code("131189007", "SCT", "Perpendicular Axis")
PROCEDURE = codes.LN.MRIUnspecifiedBodyRegion
ABSENT = Code("2667000", "SCT", "Absent")
NO_FINDINGS_ID = "No metastasis found"
PROBABILITY = codes.DCM.ProbabilityOfCancer


def _referenced_segment(seg: hd.seg.Segmentation, number: int, sources) -> hd.sr.ReferencedSegment:
    """The segment and the source slices it lies on. (Built here rather than by highdicom's
    ``ReferencedSegment.from_segmentation``, which fails on a one-segment SEG, where the
    segment identification moves to the shared functional groups.)"""
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
        source_images=[hd.sr.SourceImageForSegmentation(ds.SOPClassUID, ds.SOPInstanceUID)
                       for ds in sources])


def _group(seg: hd.seg.Segmentation, row: LesionTableRow, algorithm: hd.sr.AlgorithmIdentification, sources):
    number = int(row["lesion_id"])
    description = seg.get_segment_description(number)
    mm, mm3 = codes.UCUM.Millimeter, codes.UCUM.CubicMillimeter
    measurements = [
        hd.sr.Measurement(VOLUME, float(row["volume_mm3"]), mm3, method=VOXEL_SUM_METHOD,
                          algorithm_id=algorithm),
        hd.sr.Measurement(MAX_3D_DIAMETER, float(row["longest_diameter_mm"]), mm, algorithm_id=algorithm),
        hd.sr.Measurement(LONG_AXIS, float(row["axial_longest_diameter_mm"]), mm, algorithm_id=algorithm),
        hd.sr.Measurement(PERPENDICULAR_AXIS, float(row["axial_perpendicular_diameter_mm"]), mm,
                          algorithm_id=algorithm),
    ]
    probability = row.get("lesion_probability")
    if probability is not None and np.isfinite(probability):
        measurements.append(hd.sr.Measurement(PROBABILITY, float(probability), codes.UCUM.NoUnits,
                                              algorithm_id=algorithm))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=description.tracking_uid,
                                                     identifier=description.tracking_id),
        referenced_segment=_referenced_segment(seg, number, sources),
        finding_type=TYPE, finding_sites=[hd.sr.FindingSite(REGION)], algorithm_id=algorithm,
        measurements=measurements)


def _algorithm(model: ModelIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=lo(model.name), version=lo(model.version),
        parameters=[f"{k}={v}" for k, v in model.parameters.items()] or None)


def _report(evidence: list, groups: list, model: ModelIdentity) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 document around ``groups``, observed by the model as a device."""
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=MANUFACTURER, manufacturer_name=MANUFACTURER,
            model_name=model.label))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE, imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report,
        series_instance_uid=hd.UID(), series_number=SERIES_NUMBERS["sr"], sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer=MANUFACTURER,
        series_description=lo(f"Metastasis measurements ({model.label})"),
        is_complete=True, is_final=False, is_verified=False)


def build_sr(reference: ReferenceSeries, seg: hd.seg.Segmentation, labels_frames: np.ndarray,
             table: list[LesionTableRow], model: ModelIdentity) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 report with one group per row of ``table`` (lesion ids = segment numbers of
    ``seg``, values of ``labels_frames``, (slice, row, column) on ``reference``)."""
    boxes = ndimage.find_objects(labels_frames.astype(np.int32, copy=False))
    algorithm = _algorithm(model)
    groups = [_group(seg, row, algorithm, _sources(reference, labels_frames, boxes, row))
              for row in table]
    return _report([*reference.datasets, seg], groups, model)


def build_no_findings_sr(reference: ReferenceSeries, model: ModelIdentity) -> hd.sr.Comprehensive3DSR:
    """The report of a case where the model found no metastasis: TID 1500 with one TID 1501
    group (tracking id "No metastasis found", finding type and site as for a lesion) holding
    the qualitative evaluation SCT 14799000 "Neoplasm, Secondary" = SCT 2667000 "Absent".
    No SEG exists to refer to (a SEG needs a segment); the evidence is the source series."""
    algorithm = _algorithm(model)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=NO_FINDINGS_ID),
        finding_type=TYPE, finding_sites=[hd.sr.FindingSite(REGION)], algorithm_id=algorithm,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(TYPE, ABSENT)])
    return _report(list(reference.datasets), [group], model)


def _sources(reference: ReferenceSeries, labels_frames: np.ndarray, boxes, row: LesionTableRow) -> list:
    """The source slices that hold lesion ``row["lesion_id"]``."""
    lesion_id = int(row["lesion_id"])
    box = boxes[lesion_id - 1]
    on = (labels_frames[box] == lesion_id).any(axis=(1, 2))
    return [reference.datasets[box[0].start + i] for i in np.flatnonzero(on)]
