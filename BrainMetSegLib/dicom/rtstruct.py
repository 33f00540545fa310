"""RT Structure Set (RTSTRUCT) of the lesion label map, with pydicom and scikit-image.

One ROI per lesion ("Metastasis N", the module's colour), generated AUTOMATIC by the model,
approval status UNAPPROVED (a planner reviews and approves). Contours are CLOSED_PLANAR
polygons on the reference series' own slices, in patient coordinates (LPS mm), each
referencing the slice it lies on.

Contouring: ``skimage.measure.find_contours`` at level 0.5 of the padded per-slice mask
(marching squares). The polygon runs half-way between inside and outside pixel centres, so
a pixel-centre-in-polygon fill gives the mask back exactly; a pixel-centre tracer (OpenCV's
``findContours``, used by rt-utils) runs through the boundary pixels' centres instead and
loses half a pixel all round under such a fill (a large share of a 5 mm lesion). Holes
(e.g. a ring lesion's unsegmented centre) come out as inner contours on the same slice,
read with the even-odd (XOR) rule that treatment-planning systems apply to nested contours.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from scipy import ndimage
from skimage import measure

from ..lesion_vocabulary import segment_color, segment_name
from .identity import MANUFACTURER, SERIES_NUMBERS, ModelIdentity, lo
from .reference import ReferenceSeries

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
# The Study Component Management SOP Class, which RT Referenced Study Sequence items name.
STUDY_COMPONENT_MANAGEMENT = "1.2.840.10008.3.1.2.3.2"

# Identity copied from the source slice as found (Type 2 values stay empty when empty).
PATIENT_STUDY_ATTRIBUTES = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
    "PatientSex", "PatientAge", "OtherPatientIDsSequence", "StudyInstanceUID", "StudyDate",
    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
    # Patient Study module, as highdicom copies it into the SEG and the SR
    "PatientSize", "PatientWeight",
)
# RT ROI Interpreted Type (3006,00A4), defined terms of C.8.8.8: GTV ("Gross Tumor Volume"),
# the visible tumour, which for a metastasis is the enhancing lesion on CE-T1 - what the model
# outlines. PTV/CTV add margins the planner chooses; planning systems that need a type to
# offer a structure for dose statistics find GTV; Approval Status stays UNAPPROVED.
INTERPRETED_TYPE = "GTV"
TYPE2_DEFAULTS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                  "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def slice_contours(mask_rc: np.ndarray) -> list[np.ndarray]:
    """Closed polygons (N, 2) in (row, column) pixel coordinates around a 2D mask's pixels,
    without the repeated closing vertex; inner polygons bound holes."""
    padded = np.pad(mask_rc.astype(np.uint8), 1)
    return [c[:-1] - 1 for c in measure.find_contours(padded, 0.5) if len(c) > 3]


def _to_patient(points_rc: np.ndarray, reference: ReferenceSeries, frame: int) -> np.ndarray:
    """(row, column) pixel coordinates on slice ``frame`` -> patient LPS mm, (N, 3)."""
    ipp = np.asarray(reference.datasets[frame].ImagePositionPatient, float)
    sx, sy = reference.spacing_mm[:2]
    return (ipp + np.outer(points_rc[:, 1] * sx, reference.row_lps)
            + np.outer(points_rc[:, 0] * sy, reference.column_lps))


def _image_ref(ds: pydicom.Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item


def _roi_contours(reference: ReferenceSeries, labels_frames: np.ndarray, lesion_id: int,
                  box) -> Sequence:
    contours = Sequence()
    for f in range(box[0].start, box[0].stop):
        mask = labels_frames[f, box[1], box[2]] == lesion_id
        if not mask.any():
            continue
        offset = np.array([box[1].start, box[2].start], float)
        for poly in slice_contours(mask):
            points = _to_patient(poly + offset, reference, f)
            item = Dataset()
            item.ContourImageSequence = Sequence([_image_ref(reference.datasets[f])])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(points)
            item.ContourNumber = len(contours) + 1
            # 0.001 mm keeps every DS value within its 16 characters
            item.ContourData = [round(float(v), 3) for v in points.ravel()]
            contours.append(item)
    return contours


def _structure_set_header(ds: Dataset, source: pydicom.Dataset, model: ModelIdentity) -> None:
    """Patient/study attributes copied from the source series; series, equipment and
    structure-set modules of a new, unapproved structure set."""
    now = _dt.datetime.now()
    for keyword in PATIENT_STUDY_ATTRIBUTES:
        if keyword in source:
            setattr(ds, keyword, source[keyword].value)
    for keyword in TYPE2_DEFAULTS:
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = SERIES_NUMBERS["rtstruct"]
    ds.SeriesDescription = lo(f"Metastases ({model.label})")
    ds.OperatorsName = ""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = lo(model.name)
    ds.SoftwareVersions = model.software_versions
    ds.DeviceSerialNumber = model.device_serial_number
    ds.InstanceNumber = 1
    ds.StructureSetDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.StructureSetLabel = "METASTASES"
    ds.StructureSetName = "Brain metastases"
    ds.StructureSetDescription = f"Automatic segmentation, {model.label}; review before use"
    ds.ApprovalStatus = "UNAPPROVED"


def _frame_references(ds: Dataset, reference: ReferenceSeries) -> None:
    """Frame of Reference module and the referenced frame/study/series/images of the source."""
    source = reference.datasets[0]
    ds.FrameOfReferenceUID = source.FrameOfReferenceUID  # the source's frame
    ds.PositionReferenceIndicator = source.get("PositionReferenceIndicator", "")
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = source.SeriesInstanceUID
    series_ref.ContourImageSequence = Sequence([_image_ref(d) for d in reference.datasets])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = STUDY_COMPONENT_MANAGEMENT
    study_ref.ReferencedSOPInstanceUID = source.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = source.FrameOfReferenceUID
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_ref])


def _roi(reference: ReferenceSeries, labels_frames: np.ndarray, lesion_id: int, box,
         model: ModelIdentity) -> tuple[Dataset, Dataset, Dataset]:
    """One lesion's Structure Set ROI, ROI Contour and RT ROI Observation items."""
    roi = Dataset()
    roi.ROINumber = lesion_id
    roi.ReferencedFrameOfReferenceUID = reference.datasets[0].FrameOfReferenceUID
    roi.ROIName = segment_name(lesion_id)
    roi.ROIDescription = "Brain metastasis (automatic)"
    roi.ROIGenerationAlgorithm = "AUTOMATIC"
    roi.ROIGenerationDescription = model.label
    contour = Dataset()
    contour.ReferencedROINumber = lesion_id
    contour.ROIDisplayColor = [round(255 * c) for c in segment_color(lesion_id)]
    contour.ContourSequence = _roi_contours(reference, labels_frames, lesion_id, box)
    obs = Dataset()
    obs.ObservationNumber = lesion_id
    obs.ReferencedROINumber = lesion_id
    obs.ROIObservationLabel = segment_name(lesion_id)
    obs.RTROIInterpretedType = INTERPRETED_TYPE
    obs.ROIInterpreter = ""
    return roi, contour, obs


def build_rtstruct(reference: ReferenceSeries, labels_frames: np.ndarray,
                   model: ModelIdentity) -> pydicom.Dataset:
    """An RT Structure Set with one ROI per lesion id 1..N of ``labels_frames``
    ((slice, row, column) on ``reference``)."""
    n = int(labels_frames.max())
    if n < 1:
        raise ValueError("no lesion to export: an RTSTRUCT needs at least one ROI")
    ds = Dataset()
    _structure_set_header(ds, reference.datasets[0], model)
    _frame_references(ds, reference)
    rois, roi_contours, observations = Sequence(), Sequence(), Sequence()
    boxes = ndimage.find_objects(labels_frames.astype(np.int32, copy=False))
    for lesion_id in range(1, n + 1):
        box = boxes[lesion_id - 1]
        if box is None:
            raise ValueError(f"label map ids must be 1..{n} without gaps; {lesion_id} is missing")
        roi, contour, obs = _roi(reference, labels_frames, lesion_id, box, model)
        rois.append(roi)
        roi_contours.append(contour)
        observations.append(obs)
    ds.StructureSetROISequence = rois
    ds.ROIContourSequence = roi_contours
    ds.RTROIObservationsSequence = observations

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out = pydicom.FileDataset(None, ds, file_meta=meta, preamble=b"\0" * 128)
    return out
