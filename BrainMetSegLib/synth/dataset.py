"""Writing a synthetic dataset in the nnU-Net v2 raw layout (plus instance maps and lesion lists).

OUTDIR/imagesTr/<case>_0000.nii.gz   CE-T1-like image (int16)
OUTDIR/labelsTr/<case>.nii.gz        binary lesion mask (uint8: 0 background, 1 metastasis)
OUTDIR/instancesTr/<case>.nii.gz     instance label map (uint16; ids match the JSON)
OUTDIR/brainmasksTr/<case>.nii.gz    brain mask (uint8)
OUTDIR/lesionsTr/<case>.json         lesions: id, centre_ras_mm, diameter_mm, pattern, volume_mm3, location...
OUTDIR/dataset.json                  nnU-Net v2 dataset description + a "synthetic" block
OUTDIR/preview/<case>.png            contact sheet (with preview=True)
OUTDIR/dicom/<case>/IM0001.dcm ...   the image as a DICOM MR series (with dicom=True; follow-ups
                                     in dicom/<case>_fu<k>/; see :mod:`.dicom_writer`)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from ..progress import ProgressCallback, ProgressEvent, Stage
from ..staging import write_image, write_text
from . import config as C
from .case import SynthCase, make_case


def case_id(index: int) -> str:
    return f"synth_{index:03d}"


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index``: depends only on (seed, index), so case k is the same whatever N is."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False,
                      default=lambda o: o.tolist() if hasattr(o, "tolist") else float(o)) + "\n"


def case_paths(outdir: Path, cid: str) -> dict[str, Path]:
    return {
        "image": outdir / "imagesTr" / f"{cid}_0000.nii.gz",
        "label": outdir / "labelsTr" / f"{cid}.nii.gz",
        "instances": outdir / "instancesTr" / f"{cid}.nii.gz",
        "brain": outdir / "brainmasksTr" / f"{cid}.nii.gz",
        "lesions": outdir / "lesionsTr" / f"{cid}.json",
        "preview": outdir / "preview" / f"{cid}.png",
    }


def write_case(case: SynthCase, outdir: Path, cid: str, overwrite: bool = False,
               preview: bool = False, provenance: dict | None = None, dicom: bool = False) -> dict[str, Path]:
    """Write one case's files; returns their paths. ``provenance`` (seed, options) goes into
    the case's lesion JSON; ``dicom`` also writes the image as a DICOM series folder."""
    paths = case_paths(outdir, cid)
    write_image(case.image, paths["image"], overwrite=overwrite)
    write_image(case.binary, paths["label"], overwrite=overwrite)
    write_image(case.labels, paths["instances"], overwrite=overwrite)
    write_image(case.brain, paths["brain"], overwrite=overwrite)
    doc = {"case": cid, "synthetic": True, "lesions": case.lesions, "info": case.info, **(provenance or {})}
    write_text(_json(doc), paths["lesions"], overwrite=overwrite)
    if preview:
        from .preview import contact_sheet

        contact_sheet(case, paths["preview"], title=cid, overwrite=overwrite)
    else:
        paths.pop("preview")
    if dicom:
        from .dicom_writer import phantom_identity, series_folder, write_dicom_series

        paths["dicom"] = write_dicom_series(case.image, series_folder(outdir, cid),
                                            phantom_identity(cid, provenance), overwrite=overwrite)
    return paths


def _existing_outputs(outdir: Path, indices: range, followups: int, dicom: bool) -> list[Path]:
    """The files (and DICOM series folders) of cases ``indices`` that already exist."""
    existing = [p for k in indices for p in case_paths(outdir, case_id(k)).values() if p.exists()]
    if followups:
        from .followup import followup_paths

        existing += [p for k in indices for j in range(1, followups + 1)
                     for p in followup_paths(outdir, case_id(k), j).values() if p.exists()]
    if dicom:
        from .dicom_writer import series_folder

        names = [f"{case_id(k)}{f'_fu{j}' if j else ''}" for k in indices for j in range(followups + 1)]
        existing += [p for p in (series_folder(outdir, name) for name in names) if p.exists()]
    return existing


def write_dataset(outdir, n: int, seed: int = 0, config: C.SynthConfig | None = None,
                  progress: ProgressCallback | None = None, overwrite: bool = False,
                  preview: bool = False, start: int = 0, followups: int = 0,
                  followup_config=None, dicom: bool = False) -> dict:
    """Generate ``n`` cases (ids ``synth_<start>`` ...) into ``outdir``; returns the dataset.json dict.

    Refuses to replace existing case files unless ``overwrite``; with ``start`` > 0 an
    existing dataset is extended (its dataset.json is rewritten to count every image).
    Per-case seeds come from :func:`case_seed` so a case does not depend on ``n``.
    ``followups`` > 0 also writes that many follow-ups per case into ``followups/`` (see
    :mod:`BrainMetSegLib.synth.followup`); the baseline files are the same as without them.
    ``dicom`` also writes every image (follow-ups too) as a DICOM MR series folder in ``dicom/``
    (:mod:`BrainMetSegLib.synth.dicom_writer`); the other files are the same as without it.
    """
    config = config or C.SynthConfig()
    outdir = Path(outdir)
    if n < 1:
        raise OutputError(f"{outdir}: number of cases must be >= 1 (got {n}).")
    reacquired = [flag for flag, value in (("--oblique", config.oblique_deg), ("--slice-thickness",
                  config.slice_thickness_mm), ("--in-plane", config.in_plane_mm)) if value is not None]
    if followups and reacquired:
        # The follow-up series is rendered on the phantom's own axis-aligned grid; taking these
        # options silently would write a baseline and follow-ups unlike what was asked.
        raise InputError(f"{' and '.join(reacquired)} cannot be combined with --followups yet: follow-up series "
                         "are written on the phantom's axis-aligned grid. Write them without these options.")
    if not overwrite:
        existing = _existing_outputs(outdir, range(start, start + n), followups, dicom)
        if existing or (start == 0 and (outdir / "dataset.json").exists()):
            first = existing[0] if existing else outdir / "dataset.json"
            raise OutputError(f"{first}: already exists; pass --overwrite to replace it or use another folder.")
    times = []
    for k in range(start, start + n):
        cid = case_id(k)
        if progress:
            progress(ProgressEvent(Stage.SYNTH, (k - start) / n, f"{cid}"))
        t0 = time.perf_counter()
        cseed = case_seed(seed, k)
        provenance = {"generator_version": C.GENERATOR_VERSION, "dataset_seed": int(seed), "case_seed": cseed,
                      "options": config.to_dict()}
        if followups:
            from .followup import FollowupConfig, make_series, write_followups

            fcfg = followup_config or FollowupConfig()
            case, series = make_series(cseed, config, followups, fcfg)
            write_followups(case, series, outdir, cid, overwrite=overwrite,
                            provenance={**provenance, "followup_options": asdict(fcfg)}, dicom=dicom)
        else:
            case = make_case(cseed, config)
        write_case(case, outdir, cid, overwrite=overwrite, preview=preview, provenance=provenance, dicom=dicom)
        times.append(time.perf_counter() - t0)
    images = sorted((outdir / "imagesTr").glob("*_0000.nii.gz"))
    total = len(images)
    desc = {
        "channel_names": {"0": "CE-T1"},
        "labels": {"background": 0, "metastasis": 1},
        "numTraining": total,
        "file_ending": ".nii.gz",
        "name": "BrainMetSeg synthetic CE-T1 metastasis phantoms",
        "description": "Synthetic data (not patient scans): real anatomy (MNI152 2009 / Colin27) with "
                       "simulated metastases, enhancing confounders and acquisition effects.",
        "synthetic": {"generator": "BrainMetSegLib.synth", "version": C.GENERATOR_VERSION, "seed": int(seed),
                      "cases": [p.name[: -len("_0000.nii.gz")] for p in images], "options": config.to_dict()},
    }
    if followups:
        desc["synthetic"]["followups_per_case"] = followups
        desc["synthetic"]["followups_layout"] = "followups/<case>_fu<k>_0000.nii.gz, _instances.nii.gz, .json"
    if dicom:
        desc["synthetic"]["dicom_layout"] = "dicom/<case>/IM0001.dcm ... (and dicom/<case>_fu<k>/): MR series"
    write_text(_json(desc), outdir / "dataset.json", overwrite=True)
    if progress:
        progress(ProgressEvent(Stage.SYNTH, 1.0, f"{n} cases, {np.mean(times):.1f} s per case"))
    # The first case of a process also prepares the template(s): report it apart.
    desc["seconds_per_case"] = [round(t, 3) for t in times]
    return desc
