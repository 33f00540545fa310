"""Hostile inputs: every kind is refused (or warned about) cleanly.

For each refused kind the CLI (run in-process) must give the expected exit code (= error
class: 2 input/option, 3 model, 4 output), exactly one error line naming the offending file
(or option), no traceback, no temporary or partial file, no output folder it created, and
every input byte-identical afterwards. Signals and locks use a subprocess where needed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.cli import main
from BrainMetSegLib.outputs import LOCK_NAME, output_folder_lock
from BrainMetSegLib.slicer_bridge.monitor import parse_result_line
from conftest import make_volume

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Hostile:
    """One hostile run: ``args`` after the input (``-o`` etc. are added), expected exit code,
    text the single error line must contain (the file or option it names, and the problem)."""

    inputs: list
    code: int
    names: str
    fragment: str
    extra: list = field(default_factory=list)
    model: object = None  # a model folder instead of the tiny model
    argparse: bool = False


CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


def _nii(path: Path, image=None, patch=None, gz=False) -> Path:
    """Write ``image`` as raw NIfTI, patch header bytes ``{offset: (fmt, value)}``, gzip if asked."""
    raw = path.with_name(path.name.removesuffix(".gz"))
    sitk.WriteImage(make_volume() if image is None else image, str(raw), False)
    data = bytearray(raw.read_bytes())
    for offset, (fmt, value) in (patch or {}).items():
        struct.pack_into("<" + fmt, data, offset, value)
    raw.write_bytes(bytes(data))
    if gz:
        path.write_bytes(gzip.compress(bytes(data)))
        raw.unlink()
        return path
    return raw


def _cut(path: Path, keep: float | int) -> Path:
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else len(data) - keep
    path.write_bytes(data[:n])
    return path


def _image(path: Path, image=None, compress=False) -> Path:
    sitk.WriteImage(make_volume() if image is None else image, str(path), compress)
    return path


def _array_image(arr, dtype=np.float32):
    return sitk.GetImageFromArray(np.asarray(arr, dtype))


# ---- 1. truncated or corrupt data -------------------------------------------------------------

@case("nii.gz cut in half")
def _(d):
    p = _cut(_nii(d / "half.nii.gz", gz=True), 0.5)
    return Hostile([p], 2, str(p), "truncated")


@case("nii.gz without its gzip trailer")
def _(d):
    p = _cut(_nii(d / "trailer.nii.gz", gz=True), 6)
    return Hostile([p], 2, str(p), "truncated")


@case("nii.gz with a corrupt byte")
def _(d):
    p = _nii(d / "flip.nii.gz", gz=True)
    data = bytearray(p.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    p.write_bytes(bytes(data))
    return Hostile([p], 2, str(p), "corrupt")


@case("raw nii missing its last third")
def _(d):
    p = _cut(_nii(d / "short.nii"), 2 / 3)
    return Hostile([p], 2, str(p), "truncated")


@case("nii header only")
def _(d):
    p = _nii(d / "hdr.nii")
    p.write_bytes(p.read_bytes()[:352])
    return Hostile([p], 2, str(p), "truncated")


@case("mha raw data cut")
def _(d):
    p = _cut(_image(d / "cut.mha"), 0.7)
    return Hostile([p], 2, str(p), "truncated")


@case("mha compressed data cut")
def _(d):
    p = _cut(_image(d / "cutz.mha", compress=True), 0.6)
    return Hostile([p], 2, str(p), "truncated")


@case("mhd with a short raw file")
def _(d):
    p = _image(d / "pair.mhd")
    _cut(d / "pair.raw", 0.5)
    return Hostile([p], 2, "pair.raw", "truncated")


@case("mhd whose raw file is missing")
def _(d):
    p = _image(d / "lonely.mhd")
    (d / "lonely.raw").unlink()
    return Hostile([p], 2, str(d / "lonely.raw"), "not found")


@case("nrrd gzip cut")
def _(d):
    p = _cut(_image(d / "cut.nrrd", compress=True), 0.6)
    return Hostile([p], 2, str(p), "truncated")


@case("nrrd raw cut")
def _(d):
    p = _cut(_image(d / "cutraw.nrrd"), 0.8)
    return Hostile([p], 2, str(p), "truncated")


@case("nhdr with a short data file")
def _(d):
    p = _image(d / "det.nhdr")
    _cut(d / "det.raw", 0.5)
    return Hostile([p], 2, "det.raw", "truncated")


@case("nifti pair with a short .img")
def _(d):
    arr = sitk.GetArrayFromImage(make_volume()).transpose(2, 1, 0)
    nib.save(nib.Nifti1Pair(arr, np.eye(4)), str(d / "pair.hdr"))
    _cut(d / "pair.img", 0.5)
    return Hostile([d / "pair.hdr"], 2, "pair.img", "truncated")


# ---- 2. orientation that cannot be trusted ----------------------------------------------------

@case("nifti pixdim[1] = -1")
def _(d):
    p = _nii(d / "neg.nii.gz", patch={80: ("f", -1.0)}, gz=True)
    return Hostile([p], 2, str(p), "pixdim[1]")


@case("nifti pixdim[3] = 0")
def _(d):
    p = _nii(d / "zero.nii", patch={88: ("f", 0.0)})
    return Hostile([p], 2, str(p), "pixdim[3]")


@case("nifti qform_code = sform_code = 0")
def _(d):
    p = _nii(d / "nocode.nii.gz", patch={252: ("h", 0), 254: ("h", 0)}, gz=True)
    return Hostile([p], 2, str(p), "qform_code = sform_code = 0")


def _sheared_sform(path: Path, shear: float, four_d: bool = False) -> Path:
    """A NIfTI whose sform shifts x by ``shear`` mm per slice (a gantry tilt or a resampling
    tool's output) beside an axis-aligned qform: ITK reads the qform, other tools the sform.
    ``four_d``: stored as a 4D file holding one volume."""
    arr = sitk.GetArrayFromImage(make_volume()).transpose(2, 1, 0)
    arr = arr[..., None] if four_d else arr
    sform = np.eye(4)
    sform[0, 2] = shear
    image = nib.Nifti1Image(arr, sform)
    image.set_sform(sform, 1)
    image.set_qform(np.eye(4), 1)
    nib.save(image, str(path))
    return path


@case("nifti sheared sform beside a qform")
def _(d):
    p = _sheared_sform(d / "sheared.nii.gz", 0.5)
    return Hostile([p], 2, str(p), "sform")


@case("nifti 4D (one volume) sheared sform beside a qform")
def _(d):
    p = _sheared_sform(d / "sheared4d.nii.gz", 0.5, four_d=True)
    return Hostile([p], 2, str(p), "sform")


def _raw_nrrd(path: Path, geometry: str) -> Path:
    """``make_volume()`` as a raw float NRRD whose geometry lines are ``geometry`` (as written)."""
    arr = sitk.GetArrayFromImage(make_volume())
    header = (f"NRRD0004\ntype: float\ndimension: 3\nsizes: {arr.shape[2]} {arr.shape[1]} {arr.shape[0]}\n"
              f"{geometry}endian: little\nencoding: raw\n\n")
    path.write_bytes(header.encode() + arr.astype("<f4").tobytes())
    return path


@case("nrrd sheared space directions")
def _(d):
    p = _raw_nrrd(d / "sheared.nrrd", "space: left-posterior-superior\n"
                  "space directions: (1,0,0) (0,1,0) (0.5,0,1)\nspace origin: (0,0,0)\n")
    return Hostile([p], 2, str(p), "not perpendicular")


@case("metaimage sheared transform matrix")
def _(d):
    p = _image(d / "sheared.mha")
    p.write_bytes(p.read_bytes().replace(b"TransformMatrix = 1 0 0 0 1 0 0 0 1",
                                         b"TransformMatrix = 1 0 0 0 1 0 0.447 0 0.894"))
    return Hostile([p], 2, str(p), "not perpendicular")


@case("metaimage negative spacing")
def _(d):
    p = _image(d / "neg.mha")
    p.write_bytes(p.read_bytes().replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = -1 1 1"))
    return Hostile([p], 2, str(p), "ElementSpacing[0]")


@case("nrrd without space directions")
def _(d):
    p = _raw_nrrd(d / "nospace.nrrd", "spacings: 1 1 1\n")
    return Hostile([p], 2, str(p), "space directions")


@case("analyze 7.5 without orientation")
def _(d):
    arr = sitk.GetArrayFromImage(make_volume()).transpose(2, 1, 0)
    nib.save(nib.AnalyzeImage(arr, np.eye(4)), str(d / "old.hdr"))
    return Hostile([d / "old.hdr"], 2, str(d / "old.hdr"), "Analyze 7.5")


# ---- 3. values the pipeline cannot represent --------------------------------------------------

@case("nifti with a NaN voxel")
def _(d):
    arr = sitk.GetArrayFromImage(make_volume())
    arr[5, 5, 5] = np.nan
    p = _nii(d / "nan.nii.gz", _array_image(arr), gz=True)
    return Hostile([p], 2, str(p), "NaN/Inf")


@case("raw nifti with an Inf voxel")
def _(d):
    arr = sitk.GetArrayFromImage(make_volume())
    arr[9, 9, 9] = np.inf
    p = _nii(d / "inf.nii", _array_image(arr))
    return Hostile([p], 2, str(p), "NaN/Inf")


@case("complex nifti")
def _(d):
    arr = sitk.GetArrayFromImage(make_volume()).transpose(2, 1, 0)
    p = d / "complex.nii.gz"
    nib.save(nib.Nifti1Image((arr + 1j * arr).astype(np.complex64), np.eye(4)), str(p))
    return Hostile([p], 2, str(p), "complex")


@case("float64 beyond float32")
def _(d):
    arr = sitk.GetArrayFromImage(make_volume()).astype(np.float64) * 1e300
    p = _image(d / "huge.nrrd", _array_image(arr, np.float64))
    return Hostile([p], 2, str(p), "float32")


@case("header spacing making a metre-wide field of view")
def _(d):
    image = make_volume()
    image.SetSpacing((30.0, 30.0, 30.0))  # e.g. a header in cm, or 1 mm voxels written as 30 mm
    p = _image(d / "huge_field.nii.gz", image)
    return Hostile([p], 2, str(p), "more than the 150 M this tool resamples")


@case("a label map given as the CE-T1")
def _(d):
    arr = sitk.GetArrayFromImage(make_volume())
    labels = np.zeros(arr.shape, np.uint8)
    labels[10:20, 10:20, 10:20], labels[25:30, 30:35, 30:40] = 1, 2  # e.g. lesion_labels.nii.gz
    p = _image(d / "lesion_labels.nii.gz", _array_image(labels, np.uint8))
    return Hostile([p], 2, str(p), "3 distinct values (0, 1, 2): a mask or label map")


@case("a probability map as the brain mask")
def _(d):
    p = _image(d / "ok.nii.gz")
    arr = sitk.GetArrayFromImage(make_volume())
    soft = np.clip(arr / 100.0, 0.0, 1.0)  # a skull stripper's soft output: every voxel above 0 would count
    m = _image(d / "brain_probability.nii.gz", _array_image(soft))
    return Hostile([p], 2, str(m), "non-integer values", extra=["--brain-mask", m])


# ---- 4. options and model cards ---------------------------------------------------------------

def _opt(d, extra, names, fragment="must be", argparse=False):
    return Hostile([_image(d / "ok.nii.gz")], 2, names, fragment, extra=extra, argparse=argparse)


case("--min-volume nan")(lambda d: _opt(d, ["--min-volume", "nan"], "--min-volume", "finite"))
case("--overlap 1")(lambda d: _opt(d, ["--overlap", "1"], "--overlap"))
case("--overlap -1")(lambda d: _opt(d, ["--overlap", "-1"], "--overlap"))
case("--overlap nan")(lambda d: _opt(d, ["--overlap", "nan"], "--overlap", "finite"))
case("--threshold 1.5")(lambda d: _opt(d, ["--threshold", "1.5"], "--threshold"))
case("--threshold abc")(lambda d: _opt(d, ["--threshold", "abc"], "--threshold", "not a number", True))
case("--precision fp64")(lambda d: _opt(d, ["--precision", "fp64"], "--precision", "invalid choice", True))


def _card(d, tiny, **changes):
    folder = d / "model"
    shutil.copytree(tiny.folder, folder)
    card = json.loads((folder / "model.json").read_text())
    card.update(changes)
    (folder / "model.json").write_text(json.dumps(card))
    field_name = next(iter(changes))
    return Hostile([_image(d / "ok.nii.gz")], 3, str(folder / "model.json"), field_name, model=folder)


CARD_FAULTS = {
    "normalisation magic": {"normalisation": "magic"},
    "spacing_mm abc": {"spacing_mm": "abc"},
    "spacing_mm zeros": {"spacing_mm": [0, 0, 0]},
    "spacing_mm negative": {"spacing_mm": [-1.0, 2.0, 2.0]},
    "patch_size zeros": {"patch_size": [0, 0, 0]},
    "threshold as text": {"threshold": "0.8"},
    "threshold nan": {"threshold": float("nan")},
    "blend_mode median": {"blend_mode": "median"},
    "overlap 1": {"overlap": 1.0},
    "min_lesion_volume negative": {"min_lesion_volume_mm3": -5},
    "input_sequences unknown": {"input_sequences": ["t1ce", "dwi"]},
    "weights outside the folder": {"weights": "../elsewhere.safetensors"},
    "weights absolute": {"weights": "/etc/passwd"},
}
for _name, _changes in CARD_FAULTS.items():
    case(f"card {_name}")(lambda d, tiny, c=_changes: _card(d, tiny, **c))


def _model_copy(d, tiny):
    folder = d / "model"
    shutil.copytree(tiny.folder, folder)
    return folder


@case("model card is a named pipe")
def _(d, tiny):
    folder = _model_copy(d, tiny)
    (folder / "model.json").unlink()
    os.mkfifo(folder / "model.json")
    return Hostile([_image(d / "ok.nii.gz")], 3, str(folder / "model.json"), "named pipe", model=folder)


@case("weights symlinked out of the package")
def _(d, tiny):
    folder = _model_copy(d, tiny)
    outside = d / "outside.safetensors"
    (folder / "model.safetensors").rename(outside)
    (folder / "model.safetensors").symlink_to(outside)
    return Hostile([_image(d / "ok.nii.gz")], 3, "weights", "outside the package folder", model=folder)


@case("weights file is a named pipe")
def _(d, tiny):
    folder = _model_copy(d, tiny)
    (folder / "model.safetensors").unlink()
    os.mkfifo(folder / "model.safetensors")
    return Hostile([_image(d / "ok.nii.gz")], 3, str(folder / "model.safetensors"), "named pipe", model=folder)


@case("mhd whose data file is a named pipe")
def _(d):
    p = _image(d / "piped.mhd")
    (d / "piped.raw").unlink()
    os.mkfifo(d / "piped.raw")
    return Hostile([p], 2, str(d / "piped.raw"), "named pipe")


@case("-o is an existing file")
def _(d):
    blocker = d / "taken.txt"
    blocker.write_text("mine")
    return Hostile([_image(d / "ok.nii.gz")], 4, str(blocker), "not a folder", extra=["-o", blocker])


# ---- 5./6. outputs: never over an input, never outside -o -------------------------------------

@case("input named like an output, --overwrite")
def _(d):
    out = d / "out"
    out.mkdir()
    p = _image(out / "probability.nii.gz")
    return Hostile([p], 4, str(p), "input", extra=["-o", out, "--overwrite"])


@case("output folder inside a DICOM input folder")
def _(d):
    folder = _dicom(d / "series", make_volume((12, 40, 40)))
    return Hostile([folder], 4, str(folder), "inside the input folder", extra=["-o", folder / "out"])


def _manifest(d, case_id):
    image = _image(d / "ok.nii.gz")
    m = d / "cases.csv"
    m.write_text(f"case_id,t1ce\n{case_id},{image}\n")
    return Hostile(["--manifest", m], 2, str(m), "case_id")


case("manifest case_id ../x")(lambda d: _manifest(d, "../escaped"))
case("manifest case_id absolute")(lambda d: _manifest(d, str(d / "abs")))
case("manifest case_id with a separator")(lambda d: _manifest(d, "a/b"))


@case("batch input whose name makes the case id '..'")
def _(d):
    (d / "sub").mkdir()
    escaping = d / "sub" / ".."
    return Hostile([_image(d / "ok.nii.gz"), escaping], 2, str(escaping), "case_id '..'")


@case("manifest written where summary.csv goes")
def _(d):
    out = d / "out"
    out.mkdir()
    m = out / "summary.csv"
    m.write_text(f"case_id,t1ce\nc1,{_image(d / 'ok.nii.gz')}\n")
    return Hostile(["--manifest", m], 4, str(m), "input", extra=["-o", out, "--overwrite"])


# ---- 9. special files and unreadable manifests ------------------------------------------------

@case("named pipe as input")
def _(d):
    p = d / "pipe.nii.gz"
    os.mkfifo(p)
    return Hostile([p], 2, str(p), "named pipe")


@case("character device as input")
def _(d):
    return Hostile([Path("/dev/zero")], 2, "/dev/zero", "device")


@case("named pipe inside a DICOM folder")
def _(d):
    folder = _dicom(d / "series", make_volume((12, 40, 40)))
    os.mkfifo(folder / "zz_pipe")
    return Hostile([folder], 2, str(folder), "named pipe")


@case("named pipe as brain mask")
def _(d):
    pipe = d / "mask.nii.gz"
    os.mkfifo(pipe)
    h = Hostile([_image(d / "ok.nii.gz")], 2, str(pipe), "named pipe", extra=["--brain-mask", pipe])
    return h


@case("manifest in latin-1")
def _(d):
    image = _image(d / "ok.nii.gz")
    m = d / "cases.csv"
    m.write_bytes(f"case_id,t1ce\nPatient_é,{image}\n".encode("latin-1"))
    return Hostile(["--manifest", m], 2, str(m), "not UTF-8")


@case("binary manifest")
def _(d):
    m = d / "cases.csv"
    m.write_bytes(bytes(range(256)) * 4)
    return Hostile(["--manifest", m], 2, str(m), "binary")


@case("manifest is a folder")
def _(d):
    m = d / "cases.csv"
    m.mkdir()
    return Hostile(["--manifest", m], 2, str(m), "folder")


@case("manifest is a named pipe")
def _(d):
    m = d / "cases.csv"
    os.mkfifo(m)
    return Hostile(["--manifest", m], 2, str(m), "named pipe")


# ---- 11. errors of later stages name the file -------------------------------------------------

@case("constant inside the brain mask")
def _(d):
    arr = sitk.GetArrayFromImage(make_volume())
    arr[10:30, 10:38, 10:46] = 50.0
    p = _image(d / "flat_brain.nii.gz", _array_image(arr))
    mask = np.zeros(arr.shape, np.uint8)
    mask[12:28, 12:36, 12:44] = 1
    m = _image(d / "mask.nii.gz", _array_image(mask, np.uint8))
    return Hostile([p], 2, str(p), "constant inside the brain mask", extra=["--brain-mask", m])


def _dicom(folder: Path, image) -> Path:
    from test_cli_segment import _write_slices, keep_locale

    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    with keep_locale():
        _write_slices(sitk.Cast(image, sitk.sitkInt16), writer, folder)
    return folder


# ---- the runner -------------------------------------------------------------------------------

def _hashes(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if ".part" in p.name or p.name == LOCK_NAME]


def run_segment(argv, capfd):
    try:
        code = main(["segment", *map(str, argv)])
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capfd.readouterr()
    return code, out, err


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a FIFO opened by mistake blocks forever)."""
    def fire(*_):
        raise TimeoutError(f"run did not finish within {seconds} s")
    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_refused_cleanly(name, tiny_model, tmp_path, capfd):
    inputs = tmp_path / "in"
    inputs.mkdir()
    fn = CASES[name]
    spec = fn(inputs, tiny_model) if fn.__code__.co_argcount >= 2 else fn(inputs)
    out = tmp_path / "out" / "deeper"
    out_args = [] if "-o" in spec.extra else ["-o", out]
    before = _hashes(inputs)
    argv = [*spec.inputs, *out_args, "--model", spec.model or tiny_model.folder, "--device", "cpu",
            "--progress", "none"]
    if "--brain-mask" not in spec.extra:
        argv += ["--brain-mask", "none"]
    with deadline(60):
        code, _, err = run_segment([*argv, *spec.extra], capfd)
    assert code == spec.code, (name, code, err)
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and ": warning:" not in ln]
    if spec.argparse:
        lines = lines[-1:]
    assert len(lines) == 1, (name, err)
    assert spec.names in lines[0] and spec.fragment in lines[0], (name, lines[0])
    assert _hashes(inputs) == before, "an input was modified"
    assert not _leftovers(tmp_path), _leftovers(tmp_path)
    assert not out.exists() and not (tmp_path / "out").exists(), "a failed run left an output folder"


def test_enough_hostile_kinds():
    assert len(CASES) >= 40


# ---- cases that must run, with a warning or the right answer ----------------------------------

def _args(path, out, model, *extra):
    return [path, "-o", out, "--model", model, "--brain-mask", "none", "--device", "cpu",
            "--progress", "none", *extra]


def test_trust_header_runs_and_says_so(tiny_model, tmp_path, capfd):
    p = _nii(tmp_path / "neg.nii.gz", patch={80: ("f", -1.0)}, gz=True)
    code, _, err = run_segment(_args(p, tmp_path / "o", tiny_model.folder, "--trust-header"), capfd)
    assert code == 0, err
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert any("pixdim[1]" in w and "--trust-header" in w for w in run["warnings"])
    assert run["settings"]["trust_header"] is True
    assert "pixdim[1]" in err


def test_sheared_sform_runs_with_trust_header_and_says_so(tiny_model, tmp_path, capfd):
    p = _sheared_sform(tmp_path / "sheared.nii.gz", 0.5)
    code, _, err = run_segment(_args(p, tmp_path / "o", tiny_model.folder, "--trust-header"), capfd)
    assert code == 0, err
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert any("sform" in w and "mm from where ITK places them" in w and "--trust-header" in w
               for w in run["warnings"]), run["warnings"]


@pytest.mark.parametrize("rotate_deg, shear, refused", [(20.0, 0.0, False), (0.0, 0.01, False), (0.0, 0.3, True)])
def test_sform_disagreement_only_where_itk_left_the_sform(tmp_path, rotate_deg, shear, refused):
    """An oblique (rotated) sform ITK reads as is, and a shear under half a voxel over the image,
    are fine; a larger shear ITK cannot represent is reported with its size."""
    from BrainMetSegLib.filecheck import check_image_file, sform_disagreement

    arr = sitk.GetArrayFromImage(make_volume()).transpose(2, 1, 0)
    a = np.deg2rad(rotate_deg)
    sform = np.eye(4)
    sform[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    sform[0, 2] = shear
    image = nib.Nifti1Image(arr, sform)
    image.set_sform(sform, 1)
    image.set_qform(sform, 1)  # nibabel stores the nearest rotation as the qform
    path = tmp_path / "t.nii.gz"
    nib.save(image, str(path))
    said = sform_disagreement(sitk.ReadImage(str(path)), check_image_file(path).sform_ras)
    assert (said is not None) == refused, said
    if refused:
        assert "up to" in said and "mm" in said


def test_huge_intensities_give_the_same_probabilities(tiny_model, tmp_path, capfd):
    """z-score is scale-free: intensities x 1e30 (float32 overflow before) give the same map."""
    base = make_volume()
    small = _image(tmp_path / "small.nii.gz", base)
    huge = _image(tmp_path / "huge.nii.gz", sitk.Cast(base, sitk.sitkFloat32) * 1e30)
    for p, o in ((small, "a"), (huge, "b")):
        code, _, err = run_segment(_args(p, tmp_path / o, tiny_model.folder), capfd)
        assert code == 0, err
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a" / "probability.nii.gz")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b" / "probability.nii.gz")))
    assert a.max() > 0.01
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("kind", ["slab", "tiny", "noise", "drawing"])
def test_garbage_runs_with_a_warning(kind, tiny_model, tmp_path, capfd):
    rng = np.random.default_rng(1)
    image = {"slab": lambda: make_volume((3, 64, 64)),
             "tiny": lambda: make_volume((5, 5, 5)),
             "noise": lambda: _array_image(rng.normal(100, 20, (64, 64, 64))),
             # a noise-free drawing (or a 0/255 mask): runs, said to be no MR scan; a 0/1 mask is refused
             "drawing": lambda: _array_image(np.where(sitk.GetArrayFromImage(make_volume()) > 0, 100.0, 0.0))}[kind]()
    if kind != "noise":
        image.SetSpacing((1.0, 1.0, 1.0))
    p = _image(tmp_path / f"{kind}.nii.gz", image)
    code, stdout, err = run_segment(_args(p, tmp_path / "o", tiny_model.folder, "--progress", "json"), capfd)
    assert code == 0, err
    expected = {"noise": "noise", "drawing": "2 distinct intensities (0, 100)"}.get(kind, "field of view")
    assert any(expected in ln and str(p) in ln for ln in err.splitlines() if ": warning:" in ln), err
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert any(expected in w for w in run["warnings"])
    result = parse_result_line(stdout.splitlines()[-1])  # what the Slicer module reads
    assert any(expected in w for w in result.warnings)


@pytest.mark.parametrize("shift_voxels", [0, 12])
def test_a_brain_mask_off_the_head_is_warned_about(shift_voxels, tiny_model, tmp_path, capfd):
    """A mask from another scan or misaligned (here moved 12 voxels sideways: ~20 % of it over air)
    runs with a warning naming the share outside the head; the scan's own mask runs without one."""
    image = make_volume()
    arr = sitk.GetArrayFromImage(image)
    head = arr > 0
    brain = np.zeros_like(head)
    brain[8:32, 10:38, 12:44] = head[8:32, 10:38, 12:44]  # inside the head
    mask = sitk.GetImageFromArray(np.roll(brain, shift_voxels, axis=2).astype(np.uint8))
    mask.CopyInformation(image)
    p, m = _image(tmp_path / "scan.nii.gz", image), _image(tmp_path / "mask.nii.gz", mask)
    code, _, err = run_segment(_args(p, tmp_path / "o", tiny_model.folder, "--brain-mask", m), capfd)
    assert code == 0, err
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    outside = run["brain_mask_run"]["outside_head_fraction"]
    warned = [w for w in run["warnings"] if "lies outside the head" in w]
    if shift_voxels:
        assert outside > 0.1 and len(warned) == 1 and str(m) in warned[0], (outside, run["warnings"])
    else:
        assert outside < 0.02 and not warned, (outside, run["warnings"])


def test_clean_input_has_no_input_warnings(tiny_model, tmp_path, capfd):
    """A head-sized, structured image gets no field-of-view or noise warning (brain volume aside)."""
    p = _image(tmp_path / "head.nii.gz", make_volume((16, 16, 16), spacing_xyz=(4.0, 4.0, 4.0)))
    code, _, err = run_segment(_args(p, tmp_path / "o", tiny_model.folder), capfd)
    assert code == 0, err
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert not [w for w in run["warnings"] if "noise" in w or "field of view" in w], run["warnings"]


def test_dicom_series_with_a_missing_slice_warns(tiny_model, tmp_path, capfd):
    folder = _dicom(tmp_path / "series", make_volume((20, 40, 40)))
    (folder / "010.dcm").unlink()
    code, _, err = run_segment(_args(folder, tmp_path / "o", tiny_model.folder), capfd)
    assert code == 0, err
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert any("slice spacing is uneven" in w for w in run["warnings"]), run["warnings"]


def test_dicom_series_missing_several_slices_is_refused(tiny_model, tmp_path, capfd):
    """Three slices missing: ITK stacks the 17 left evenly over the extent, some of them more than
    a slice from where they were acquired (one missing slice stays under a slice: warned, above)."""
    folder = _dicom(tmp_path / "series", make_volume((20, 40, 40)))
    for name in ("008.dcm", "009.dcm", "010.dcm"):
        (folder / name).unlink()
    code, _, err = run_segment(_args(folder, tmp_path / "o", tiny_model.folder), capfd)
    assert code == 2 and f"{folder}: slices are missing from the series" in err and "more than a slice" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("keyword, value", [("ImageOrientationPatient", [0, 1, 0, 0, 0, -1]),
                                            ("PixelSpacing", [2, 2])])
def test_dicom_series_with_a_slice_of_another_geometry_is_refused(keyword, value, tiny_model, tmp_path, capfd):
    """GDCM stacks every slice of a series UID with the first slice's geometry: a slice of
    another orientation or pixel spacing would be read as if it were like the others."""
    import pydicom

    folder = _dicom(tmp_path / "series", make_volume((20, 40, 40)))
    odd = sorted(folder.glob("*.dcm"))[7]
    ds = pydicom.dcmread(odd)
    setattr(ds, keyword, value)
    ds.save_as(odd)
    code, _, err = run_segment(_args(folder, tmp_path / "o", tiny_model.folder), capfd)
    assert code == 2
    assert f"{odd}: {keyword} differs from" in err, err


def test_dicom_series_holding_two_volumes_is_refused(tiny_model, tmp_path, capfd):
    """Slices at one position (a second echo or time point in the same series): ITK would
    interleave them into one volume at a sixth of the real spacing; refused, naming two files."""
    import pydicom

    folder = _dicom(tmp_path / "series", make_volume((20, 40, 40)))
    for i, path in enumerate(sorted(folder.glob("*.dcm"))[:5]):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.9"
        ds.InstanceNumber = 100 + i
        ds.save_as(folder / f"echo2_{i}.dcm")
    code, _, err = run_segment(_args(folder, tmp_path / "o", tiny_model.folder), capfd)
    assert code == 2
    assert str(folder) in err and "same position" in err and "echo2_" in err, err
    assert not (tmp_path / "o").exists()


def test_dicom_series_with_sheared_slices_is_refused(tiny_model, tmp_path, capfd):
    """Slices whose positions lean away from their normal (gantry tilt): ITK would stack them
    straight and place the anatomy up to ~10 mm off; refused, naming the folder and the shift."""
    import pydicom

    folder = _dicom(tmp_path / "series", make_volume((20, 40, 40)))
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x + 0.5 * z:.4f}", f"{y:.4f}", f"{z:.4f}"]
        ds.save_as(path)
    code, _, err = run_segment(_args(folder, tmp_path / "o", tiny_model.folder), capfd)
    assert code == 2
    assert str(folder) in err and "shifted within their plane" in err and "9.5 mm" in err, err
    assert not (tmp_path / "o").exists()


def test_overwrite_in_another_format_leaves_no_stale_maps(tiny_model, volume_file, tmp_path, capfd):
    out = tmp_path / "o"
    assert run_segment(_args(volume_file, out, tiny_model.folder), capfd)[0] == 0
    code, _, err = run_segment(_args(volume_file, out, tiny_model.folder, "--format", "nrrd"), capfd)
    assert code == 4 and "--overwrite" in err  # not without --overwrite
    assert (out / "probability.nii.gz").exists()
    code, _, err = run_segment(_args(volume_file, out, tiny_model.folder, "--format", "nrrd", "--overwrite"),
                               capfd)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["lesion_labels.nrrd", "lesions.csv", "lesions.json",
                                                     "lesions.seg.nrrd", "probability.nrrd", "run.json"]


def test_second_run_into_a_locked_folder_fails(tiny_model, volume_file, tmp_path, capfd):
    out = tmp_path / "o"
    with output_folder_lock(out):
        code, _, err = run_segment(_args(volume_file, out, tiny_model.folder), capfd)
        assert code == 4 and "another brainmetseg run" in err and str(out) in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    assert not out.exists() or not any(out.iterdir())


def test_batch_locks_each_case_folder(tiny_model, volume_file, tmp_path, capfd):
    """A batch locks case folders, not the whole -o (shards of a cohort may share it): a case
    whose folder another run holds fails, the others are written."""
    other = _image(tmp_path / "other.nii.gz", make_volume(seed=3))
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,t1ce\nbusy,{volume_file}\nfree,{other}\n")
    out = tmp_path / "o"
    with output_folder_lock(out / "busy"):
        code, _, err = run_segment(["--manifest", manifest, "-o", out, "--model", tiny_model.folder,
                                    "--brain-mask", "none", "--device", "cpu", "--progress", "none"], capfd)
    assert code == 1, err
    assert "case busy failed" in err and "another brainmetseg run" in err
    assert (out / "free" / "run.json").is_file() and not any((out / "busy").iterdir())
    assert "busy,failed" in (out / "summary.csv").read_text()


def test_lock_is_seen_by_another_process(tiny_model, volume_file, tmp_path):
    """The lock holds across processes (flock), so two concurrent runs cannot mix outputs."""
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "BrainMetSegLib", "segment", str(volume_file), "-o", str(out), "--model",
           str(tiny_model.folder), "--brain-mask", "none", "--device", "cpu", "--progress", "none"]
    with output_folder_lock(out):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 4, proc.stderr
    assert "another brainmetseg run" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(out.iterdir())  # nothing written, lock file gone


def test_interrupt_while_writing_leaves_nothing(tiny_model, volume_file, tmp_path, capfd, monkeypatch):
    """Ctrl-C between the image outputs and the table: no lone label map, no temporary file."""
    import BrainMetSegLib.outputs as outputs

    real = outputs.stage_text

    def interrupted(text, path):
        if Path(path).name == "lesions.json":
            raise KeyboardInterrupt
        return real(text, path)

    monkeypatch.setattr(outputs, "stage_text", interrupted)
    out = tmp_path / "o"
    code, _, err = run_segment(_args(volume_file, out, tiny_model.folder), capfd)
    assert code == 130, err
    assert not out.exists(), list(out.iterdir())
    assert not _leftovers(tmp_path)


def _signal_during_inference(args: list[str], tiny_model, sig) -> tuple[int, str, str]:
    """Run ``segment ARGS`` in a subprocess, send ``sig`` when the first inference starts;
    (exit code, rest of stdout, stderr). Skips when the run ended before the signal."""
    cmd = [sys.executable, "-m", "BrainMetSegLib", "segment", *args, "--model", str(tiny_model.folder),
           "--brain-mask", "none", "--device", "cpu", "--progress", "json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    for line in proc.stdout:
        if '"inference"' in line:
            break
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    return proc.returncode, rest, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_run_cleans_up(sig, tiny_model, tmp_path):
    image = _image(tmp_path / "big.nii.gz", make_volume((100, 120, 120)))
    out = tmp_path / "o"
    code, _, err = _signal_during_inference([str(image), "-o", str(out)], tiny_model, sig)
    assert code == 130, err
    assert "Traceback" not in err
    assert "cancelled" in err or "terminated" in err, err
    assert not out.exists()
    assert not _leftovers(tmp_path)


def test_sigterm_ends_a_whole_batch(tiny_model, tmp_path):
    """SIGTERM during the first case of a manifest stops the batch (exit 130): the later cases
    are not run, as a batch system or Slicer's Cancel expects."""
    images = [_image(tmp_path / f"c{k}.nii.gz", make_volume((100, 120, 120))) for k in range(3)]
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,t1ce\n" + "".join(f"c{k},{p}\n" for k, p in enumerate(images)))
    out = tmp_path / "o"
    code, rest, err = _signal_during_inference(["--manifest", str(manifest), "-o", str(out)], tiny_model,
                                               signal.SIGTERM)
    assert code == 130, err
    assert "Traceback" not in err
    assert not (out / "c1").exists() and not (out / "c2").exists(), err
    assert '"case": "c1"' not in rest


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_keeps_the_previous_outputs(tiny_model, tmp_path, small_tmpfs, capfd):
    """ITK's NIfTI writer returns normally on a full disk; the short file must not replace
    the good one."""
    image = _image(tmp_path / "scan.nii.gz", make_volume((60, 64, 64)))
    out = small_tmpfs / "o"
    code, _, err = run_segment(_args(image, out, tiny_model.folder), capfd)
    assert code == 0, err
    before = _hashes(out)
    free = shutil.disk_usage(small_tmpfs).free
    (small_tmpfs / "filler").write_bytes(b"\0" * max(free - 40_000, 0))
    code, _, err = run_segment(_args(image, out, tiny_model.folder, "--overwrite", "--threshold", "0.3"),
                               capfd)
    assert code == 4, err
    lines = [ln for ln in err.splitlines() if ln.strip() and ": warning:" not in ln]
    assert len(lines) == 1 and str(out) in lines[0], err
    assert "Traceback" not in err
    assert _hashes(out) == before
    assert not _leftovers(small_tmpfs)
