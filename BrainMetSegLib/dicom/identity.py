"""Who made a DICOM export: the model and library, as written into every object."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import __version__

# Series numbers of the new series (SEG, SR, RTSTRUCT): high, so they sort after the scanner's.
SERIES_NUMBERS = {"seg": 9901, "sr": 9902, "rtstruct": 9903}
MANUFACTURER = "BrainMetSeg"
LO_MAX = 64  # characters of a DICOM LO (Long String) value


def lo(text: str) -> str:
    """``text`` cut to a DICOM LO value's 64 characters."""
    return text[:LO_MAX]


@dataclass(frozen=True)
class ModelIdentity:
    """The model that made the segmentation, and the settings that shaped it.

    name, version: from the model card; sha256: of the weights file.
    parameters: settings worth recording (e.g. threshold, minimum volume in mm^3).
    """

    name: str
    version: str
    sha256: str = ""
    parameters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_provenance(cls, provenance: dict) -> ModelIdentity:
        """From a pipeline :class:`~BrainMetSegLib.pipeline.Result`'s provenance."""
        model, settings = provenance["model"], provenance.get("settings", {})
        params = {k: str(settings[k]) for k in ("threshold_used", "min_volume_mm3_used") if k in settings}
        return cls(model["name"], model["version"], model.get("sha256", ""), params)

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
