"""Who made a DICOM export: the model and library, as written into every object."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import __version__
from ..operating_point import OperatingPoint

# Series numbers of the new series (SEG, SR, RTSTRUCT): high, so they sort after the scanner's.
SERIES_NUMBERS = {"seg": 9901, "sr": 9902, "rtstruct": 9903}
MANUFACTURER = "BrainMetSeg"
LO_MAX = 64  # characters of a DICOM LO (Long String) value


def lo(text: str) -> str:
    """``text`` cut to a DICOM LO value's 64 characters."""
    return text[:LO_MAX]


def operating_parameters(recorded: OperatingPoint | dict | None) -> dict[str, str]:
    """The operating point as the objects' algorithm parameters (run.json's names:
    threshold_used, min_volume_mm3_used, outline_threshold_used), from a point or from
    run.json's settings; {} when none is recorded (a run before outlines existed gives
    its detection threshold as the outline: its lesions were drawn there)."""
    if isinstance(recorded, dict):
        recorded = OperatingPoint.from_settings(recorded) if "threshold_used" in recorded else None
    return {} if recorded is None else {k: str(v) for k, v in recorded.as_settings().items()}


def weights_sha256(model: dict) -> str:
    """The sha256 of the weights that made a result, from run.json's ``model``: those of
    ``weights_run`` (a package with thick-slice weights runs one of two sets), else the card's."""
    ran = model.get("weights_run")
    return str((ran.get("sha256") if isinstance(ran, dict) else None) or model.get("sha256", ""))


@dataclass(frozen=True)
class ModelIdentity:
    """The model that made the segmentation, and the settings that shaped it.

    name, version: from the model card; sha256: of the weights file that ran (:func:`weights_sha256`).
    parameters: settings worth recording (the operating point: detection threshold, minimum
        volume in mm^3, outline threshold; see :func:`operating_parameters`).
    """

    name: str
    version: str
    sha256: str = ""
    parameters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_provenance(cls, provenance: dict) -> ModelIdentity:
        """From a pipeline :class:`~BrainMetSegLib.pipeline_types.Result`'s provenance."""
        model = provenance["model"]
        params = operating_parameters(provenance.get("settings") or {})
        return cls(model["name"], model["version"], weights_sha256(model), params)

    @property
    def label(self) -> str:
        """"name version", as a DICOM LO value."""
        return lo(f"{self.name} {self.version}")

    @property
    def software_versions(self) -> str:
        return f"BrainMetSegLib {__version__}"

    @property
    def device_serial_number(self) -> str:
        """The weights' sha256 prefix: identifies the exact "device" (model weights) used."""
        return self.sha256[:16] or "unknown"

    def algorithm_identification(self):
        """The ``highdicom.AlgorithmIdentificationSequence`` of segments made by this model."""
        import highdicom as hd
        from pydicom.sr.codedict import codes

        return hd.AlgorithmIdentificationSequence(
            name=lo(self.name), family=codes.cid7162.ArtificialIntelligence, version=lo(self.version),
            source=MANUFACTURER, parameters=self.parameters or None)
