"""Synthetic CE-T1 brain MRI phantoms with metastases and exact ground truth.

Real anatomy (nilearn's MNI152 2009 template, Colin27 from Debian's mricron-data
when installed) is turned into random "patients" (affine + elastic deformation,
random tissue contrasts), given enhancing confounders (sinuses, cortical veins,
choroid plexus, dura), metastases with the three enhancement patterns and oedema,
and acquisition effects (thick slices, blur, bias field, Rician noise, scaling).

    from BrainMetSegLib.synth import SynthConfig, make_case, write_dataset
    case = make_case(seed=1, config=SynthConfig(spacing_mm=2.0, stratum="1-3"))
    write_dataset("out", n=10, seed=0)

Modules: ``config`` (options and constants), ``templates`` (anatomy loading),
``deform`` (random warp), ``anatomy`` (tissue contrasts), ``confounders``,
``lesions``, ``acquisition``, ``case`` (one case), ``dataset`` (files), ``preview``,
``followup`` (follow-up scans of a case with the true correspondence and RANO-BM response).
"""

from .case import SynthCase, make_case
from .config import GENERATOR_VERSION, SynthConfig
from .dataset import case_seed, write_dataset

__all__ = ["GENERATOR_VERSION", "SynthCase", "SynthConfig", "case_seed", "make_case", "write_dataset"]
