"""Find the files of each case: prediction, probability, ground truth, brain mask, image, run.json.

Layouts understood (case ids are the names without the image suffix):

- PRED_DIR/<case>/lesion_labels.<ext> (+ probability.<ext>, run.json), as written by
  ``brainmetseg segment`` in batch mode; or flat PRED_DIR/<case>.<ext> (+
  <case>_probability.<ext>, <case>_run.json);
- GT_DIR/<case>.<ext> (nnU-Net labelsTr; binary or instance labels);
- BRAIN_DIR/<case>.<ext>; IMAGES_DIR/<case>_0000.<ext> (nnU-Net imagesTr) or <case>.<ext>;
- or a manifest CSV with columns ``case_id,pred,gt`` and optional ``probability,
  brain_mask,image,run_json`` (relative paths are relative to the manifest's folder).

<ext> is any of .nii.gz, .nii, .nrrd, .mha, .mhd.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..images import IMAGE_SUFFIXES, split_image_suffix
from ..textfiles import read_csv_rows


@dataclass(frozen=True)
class PairingProblem:
    """Why a case does not pair up fully (``str()`` gives the message naming the files).

    blocking: the case cannot be evaluated (its prediction or ground truth is missing);
    otherwise it is evaluated with less (no brain mask: voxel metrics over the whole volume).
    """

    case_id: str
    message: str
    blocking: bool = True

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class CaseFiles:
    case_id: str
    gt: Path
    pred: Path | None = None
    probability: Path | None = None
    brain_mask: Path | None = None
    image: Path | None = None
    run_json: Path | None = None


def _images_in(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        parts = split_image_suffix(f.name)
        if parts is not None:
            out.setdefault(parts[0], f)
    return out


def _first_image(folder: Path, stem: str) -> Path | None:
    for suf in IMAGE_SUFFIXES:
        p = folder / f"{stem}{suf}"
        if p.is_file():
            return p
    return None


def _predictions(pred_dir: Path) -> dict[str, dict[str, Path | None]]:
    """case id -> {"pred", "probability", "run_json"} from either prediction layout."""
    found: dict[str, dict[str, Path | None]] = {}
    for sub in sorted(p for p in pred_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        labels = _first_image(sub, "lesion_labels")
        if labels is None:
            continue
        run = sub / "run.json"
        found[sub.name] = {"pred": labels, "probability": _first_image(sub, "probability"),
                           "run_json": run if run.is_file() else None}
    flat = _images_in(pred_dir)
    for stem, path in flat.items():
        if stem.endswith("_probability"):
            continue
        run = pred_dir / f"{stem}_run.json"
        found.setdefault(stem, {"pred": path, "probability": flat.get(f"{stem}_probability"),
                                "run_json": run if run.is_file() else None})
    return found


def _need_dir(path, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"{p}: {what} folder not found.")
    return p


def find_cases(pred_dir=None, gt_dir=None, manifest=None, brain_dir=None, images_dir=None
               ) -> tuple[list[CaseFiles], list[PairingProblem]]:
    """Pair predictions with ground truth by case id.

    Returns (cases with both a prediction and a GT, :class:`PairingProblem` s): each names the
    case and the missing file. Raises :class:`InputError` when nothing pairs up.
    """
    if manifest is not None:
        return _from_manifest(Path(manifest), brain_dir, images_dir)
    if pred_dir is None or gt_dir is None:
        raise InputError("give --pred and --gt folders, or --manifest CSV.")
    pred_dir = _need_dir(pred_dir, "prediction")
    gt_dir = _need_dir(gt_dir, "ground-truth")
    preds = _predictions(pred_dir)
    gts = _images_in(gt_dir)
    problems = []
    for cid in sorted(set(preds) - set(gts)):
        problems.append(PairingProblem(cid, f"case {cid}: prediction {preds[cid]['pred']} has no ground "
                                            f"truth {gt_dir}/{cid}.nii.gz (or .nrrd/.mha)"))
    for cid in sorted(set(gts) - set(preds)):
        problems.append(PairingProblem(cid, f"case {cid}: ground truth {gts[cid]} has no prediction "
                                            f"({pred_dir}/{cid}/lesion_labels.nii.gz or {pred_dir}/{cid}.nii.gz)"))
    brain = _images_in(_need_dir(brain_dir, "brain-mask")) if brain_dir else {}
    images = _images_in(_need_dir(images_dir, "image")) if images_dir else {}
    cases = []
    for cid in sorted(set(preds) & set(gts)):
        if brain_dir and cid not in brain:
            problems.append(PairingProblem(cid, f"case {cid}: no brain mask {brain_dir}/{cid}.nii.gz; "
                                                "voxel metrics use the whole volume for this case",
                                           blocking=False))
        image = images.get(f"{cid}_0000", images.get(cid))
        cases.append(CaseFiles(cid, gts[cid], preds[cid]["pred"], preds[cid]["probability"],
                               brain.get(cid), image, preds[cid]["run_json"]))
    if not cases:
        raise InputError(f"no case has both a prediction in {pred_dir} and a ground truth in "
                         f"{gt_dir} (case ids are file names without suffix)."
                         + ("\n  " + "\n  ".join(map(str, problems[:10])) if problems else ""))
    return cases, problems


def _from_manifest(manifest: Path, brain_dir, images_dir) -> tuple[list[CaseFiles], list[PairingProblem]]:
    rows = read_csv_rows(manifest, "manifest")
    missing = {"case_id", "pred", "gt"} - set(rows[0])
    if missing:
        raise InputError(f"{manifest}: manifest lacks column(s) {', '.join(sorted(missing))}; "
                         "needed: case_id,pred,gt (optional: probability,brain_mask,image,run_json).")
    base = manifest.parent
    brain = _images_in(_need_dir(brain_dir, "brain-mask")) if brain_dir else {}
    images = _images_in(_need_dir(images_dir, "image")) if images_dir else {}

    def path(row, key):
        value = (row.get(key) or "").strip()
        if not value:
            return None
        p = Path(value)
        return p if p.is_absolute() else base / p

    cases, problems, seen = [], [], set()
    for n, row in enumerate(rows, start=2):
        cid = (row.get("case_id") or "").strip()
        if not cid:
            raise InputError(f"{manifest}: line {n} has no case_id.")
        if cid in seen:
            raise InputError(f"{manifest}: case_id {cid} appears twice.")
        seen.add(cid)
        files = {k: path(row, k) for k in ("pred", "gt", "probability", "brain_mask", "image", "run_json")}
        absent = [f"{k} {files[k]}" for k in files if files[k] is not None and not files[k].exists()]
        if files["gt"] is None or files["pred"] is None:
            problems.append(PairingProblem(
                cid, f"case {cid} (line {n}): no {'gt' if files['gt'] is None else 'pred'} path"))
            continue
        if absent:
            problems.append(PairingProblem(cid, f"case {cid} (line {n}): file(s) not found: {'; '.join(absent)}"))
            if files["gt"] in [None] or not files["gt"].exists() or not files["pred"].exists():
                continue
            files = {k: (v if v is None or v.exists() else None) for k, v in files.items()}
        cases.append(CaseFiles(cid, files["gt"], files["pred"], files["probability"],
                               files["brain_mask"] or brain.get(cid),
                               files["image"] or images.get(f"{cid}_0000", images.get(cid)),
                               files["run_json"]))
    if not cases:
        raise InputError(f"{manifest}: no usable case.\n  " + "\n  ".join(map(str, problems[:10])))
    return cases, problems
