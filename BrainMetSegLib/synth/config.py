"""Settings of the synthetic CE-T1 phantom generator and the constants it draws from.

Every random choice of a case is drawn from the ranges below; tests check the
rendered images against the same constants, so they are the contract.
Intensities are relative to the case's normal white matter (WM = 1.0) before the
random global scaling and the acquisition effects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import InputError
from ..options import SLICE_PLANE_NAMES

GENERATOR_VERSION = "1.0"

#: Lesion-count strata of the Grøvik cohort and their frequencies.
STRATA = {"1-3": (1, 3), "4-10": (4, 10), ">10": (11, 25)}
STRATUM_PROBABILITIES = {"1-3": 0.41, "4-10": 0.30, ">10": 0.29}

PATTERNS = ("nodular", "ring", "irregular")
#: Where lesions go and how often (grey-white junction predominates).
LOCATIONS = {"gw_junction": 0.55, "cortical": 0.17, "cerebellar": 0.16, "deep": 0.12}
#: How often each enhancement pattern is drawn (before size rules: rings need >= 6 mm,
#: irregular >= 8 mm, smaller lesions fall back to nodular).
PATTERN_PROBABILITIES = {"nodular": 0.5, "ring": 0.3, "irregular": 0.2}
RING_MIN_DIAMETER_MM = 6.0
IRREGULAR_MIN_DIAMETER_MM = 8.0

#: Enhancing tissue of a lesion (nodule, ring rim, enhancing parts of irregular
#: lesions), relative to normal white matter.
ENHANCEMENT_RANGE = (1.35, 1.9)
#: Non-enhancing (necrotic) centre of ring lesions, relative to white matter.
NECROSIS_RANGE = (0.25, 0.55)
#: Mean over the whole labelled lesion, per pattern, relative to white matter, as
#: rendered before noise/bias (partial volume at the edge included). Checked by tests.
LESION_MEAN_CONTRAST = {"nodular": (1.15, 1.95), "ring": (0.7, 1.6), "irregular": (0.75, 1.8)}
#: Non-enhancing parts of irregular/heterogeneous lesions, relative to white matter.
IRREGULAR_LOW_RANGE = (0.4, 0.85)
#: Peritumoral oedema (T1-hypointense) in white matter, relative to white matter.
OEDEMA_RANGE = (0.55, 0.8)
OEDEMA_MIN_DIAMETER_MM = 9.0

#: Normal tissue means relative to white matter (CE-T1-like: WM > GM > CSF).
GM_RANGE = (0.62, 0.8)
CSF_RANGE = (0.12, 0.35)
#: Enhancing confounders relative to white matter.
VESSEL_RANGE = (1.3, 2.2)
DURA_RANGE = (1.05, 1.5)
CHOROID_RANGE = (1.2, 1.8)

#: Median lesion diameter per case (mm) and log-normal spread: median volume
#: 0.04-0.26 cm^3 in real cohorts is a sphere of 4.2-7.9 mm.
MEDIAN_DIAMETER_RANGE_MM = (4.0, 7.5)
DIAMETER_LOG_SIGMA = 0.55


@dataclass(frozen=True)
class SynthConfig:
    """Options of :func:`make_case` / :func:`write_dataset`.

    anatomy: ``"mni152"`` (nilearn MNI152 2009, skull-stripped), ``"colin27"`` (Debian
        mricron-data, with skull) or ``"auto"`` (either, drawn per case; MNI152 only when
        Colin27 is not installed).
    spacing_mm: output voxel spacing (x, y, z) in mm, or one number for isotropic.
    spacing_range_mm: ``None`` or (min, max): each case draws its own in-plane (x = y) and
        slice (z) spacing in this range instead of ``spacing_mm`` (scanner variety).
    n_lesions: fixed lesion count; ``None`` draws it from ``stratum`` or the strata.
    stratum: ``"1-3"``, ``"4-10"`` or ``">10"``; ``None`` draws one (41/30/29 %).
    diameter_range_mm: (min, max) lesion diameter in mm.
    patterns: enhancement patterns allowed.
    confounders: draw enhancing vessels, sinuses, choroid plexus and dura.
    skull: keep/synthesise skull and scalp; ``False`` gives a skull-stripped look.
    anisotropic_acquisition: ``None`` (draw: 25 % of cases get a thick-slice acquisition),
        ``False`` (never) or acquisition spacing (x, y, z) mm, e.g. (1, 1, 3), simulated
        and resampled back to ``spacing_mm``.
    acquisition: apply bias field, noise, blur and intensity scaling.
    field_of_view: ``"head"`` (whole head/template) or ``"brain"`` (brain box + margin).
    margin_mm: margin around the brain for ``field_of_view="brain"``.
    deformation: scale of the random affine + elastic deformation (0 = none, 1 = default).
    oblique_deg: ``None`` or (a, b): write the case on a grid tilted a degrees about x, then b
        about y (an oblique acquisition of the same head; :mod:`.reacquire`).
    slice_thickness_mm: ``None`` or the thickness (= spacing) of 2D slices the case is written
        with (slab-averaged, e.g. 5 for a clinic's spin echo); in-plane spacing ``in_plane_mm``
        (``None``: ``spacing_mm``'s x).
    slice_plane: the plane of those slices: ``axial``, ``coronal`` or ``sagittal``.
    """

    anatomy: str = "auto"
    spacing_mm: float | tuple[float, float, float] = 1.0
    spacing_range_mm: tuple[float, float] | None = None
    n_lesions: int | None = None
    stratum: str | None = None
    diameter_range_mm: tuple[float, float] = (2.0, 30.0)
    patterns: tuple[str, ...] = PATTERNS
    confounders: bool = True
    skull: bool = True
    anisotropic_acquisition: tuple[float, float, float] | bool | None = None
    acquisition: bool = True
    field_of_view: str = "head"
    margin_mm: float = 12.0
    deformation: float = 1.0
    oblique_deg: tuple[float, float] | None = None
    slice_thickness_mm: float | None = None
    in_plane_mm: float | None = None
    slice_plane: str = "axial"

    def __post_init__(self) -> None:
        if self.anatomy not in ("auto", "mni152", "colin27"):
            raise InputError(f"anatomy {self.anatomy!r}: use auto, mni152 or colin27.")
        sp = self.spacing
        if not all(0 < s <= 8 for s in sp):  # NaN fails too
            raise InputError(f"spacing_mm {self.spacing_mm}: each spacing must be in (0, 8] mm.")
        rng_ = self.spacing_range_mm
        if rng_ is not None and not (len(rng_) == 2 and 0.3 <= rng_[0] <= rng_[1] <= 8):
            raise InputError(f"spacing_range_mm {rng_}: need 0.3 <= min <= max <= 8 mm.")
        if self.stratum is not None and self.stratum not in STRATA:
            raise InputError(f"stratum {self.stratum!r}: use one of {', '.join(STRATA)}.")
        if self.n_lesions is not None and not 0 <= self.n_lesions <= 60:
            raise InputError(f"n_lesions {self.n_lesions}: must be 0..60.")
        lo, hi = self.diameter_range_mm
        if not 1.0 <= lo <= hi <= 40.0:
            raise InputError(f"diameter_range_mm {self.diameter_range_mm}: need 1 <= min <= max <= 40 mm.")
        bad = [p for p in self.patterns if p not in PATTERNS]
        if bad or not self.patterns:
            raise InputError(f"patterns {self.patterns}: choose from {', '.join(PATTERNS)}.")
        if self.field_of_view not in ("head", "brain"):
            raise InputError(f"field_of_view {self.field_of_view!r}: use head or brain.")
        if not 0 <= self.deformation <= 3:
            raise InputError(f"deformation {self.deformation}: must be in [0, 3].")
        if self.oblique_deg is not None and (len(self.oblique_deg) != 2
                                             or any(not -45 <= float(a) <= 45 for a in self.oblique_deg)):
            raise InputError(f"oblique_deg {self.oblique_deg}: give two angles in [-45, 45] degrees.")
        for name, lo in (("slice_thickness_mm", 0.5), ("in_plane_mm", 0.2)):
            v = getattr(self, name)
            if v is not None and not lo <= v <= 10:
                raise InputError(f"{name} {v}: must be in [{lo:g}, 10] mm.")
        if self.slice_plane not in SLICE_PLANE_NAMES:
            raise InputError(f"slice_plane {self.slice_plane!r}: use {', '.join(SLICE_PLANE_NAMES)}.")
        if self.slice_plane != "axial" and self.slice_thickness_mm is None:
            raise InputError(f"slice_plane {self.slice_plane!r} needs a slice thickness.")
        aniso = self.anisotropic_acquisition
        if aniso not in (None, False, True) and (len(aniso) != 3 or not all(0 < a <= 10 for a in aniso)):
            raise InputError(f"anisotropic_acquisition {aniso}: give three spacings in (0, 10] mm.")

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Output spacing (x, y, z) in mm."""
        s = self.spacing_mm
        return (float(s),) * 3 if isinstance(s, int | float) else tuple(float(v) for v in s)

    def reacquisition(self):
        """The :class:`~.reacquire.Reacquisition` the options ask for, or ``None``."""
        if self.oblique_deg is None and self.slice_thickness_mm is None and self.in_plane_mm is None:
            return None
        from .reacquire import Reacquisition

        return Reacquisition(tilt_deg=tuple(self.oblique_deg or (0.0, 0.0)),
                             slice_thickness_mm=self.slice_thickness_mm, in_plane_mm=self.in_plane_mm,
                             slice_plane=self.slice_plane)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spacing_mm"] = list(self.spacing)
        d["spacing_range_mm"] = None if self.spacing_range_mm is None else list(self.spacing_range_mm)
        d["oblique_deg"] = None if self.oblique_deg is None else list(self.oblique_deg)
        return d
