"""`brainmetseg segment` end to end, and every bad input with its message and exit code."""

import contextlib
import json
import locale
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.cli import main
from conftest import make_volume


def run_cli(*args, capsys=None):
    code = main(["segment", *map(str, args)])
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


def test_end_to_end_outputs(tiny_model, volume_file, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_cli(volume_file, "-o", out, "--model", tiny_model.folder, "--brain-mask",
                              "none", "--device", "cpu", "--progress", "json", capsys=capsys)
    assert code == 0
    lines = [json.loads(line) for line in stdout.splitlines()]
    stages = {e["stage"] for e in lines if e["type"] == "progress"}
    assert {"read", "preprocess", "inference", "postprocess"} <= stages
    result = lines[-1]
    assert result["type"] == "result" and result["case"] == "ce_t1"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["lesion_labels.nii.gz", "lesions.csv", "lesions.json", "lesions.seg.nrrd", "probability.nii.gz",
                     "run.json"]
    image = sitk.ReadImage(str(volume_file))
    for name in ("lesion_labels.nii.gz", "probability.nii.gz"):
        written = sitk.ReadImage(str(out / name))
        assert written.GetSize() == image.GetSize()
        assert np.allclose(written.GetSpacing(), image.GetSpacing())
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["sha256"] == tiny_model.card.sha256
    assert set(run["timings_s"]) >= {"read", "preprocess", "inference", "postprocess"}
    assert run["inputs"]["t1ce"]["sha256"]
    table = json.loads((out / "lesions.json").read_text())["lesions"]
    assert len(table) == result["lesions"] == (out / "lesions.csv").read_text().count("\n") - 1
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "lesion_labels.nii.gz")))
    assert labels.max() == len(table)

    # an existing output is not replaced without --overwrite
    before = (out / "run.json").read_bytes()
    code, _, err = run_cli(volume_file, "-o", out, "--model", tiny_model.folder, "--brain-mask", "none",
                           capsys=capsys)
    assert code == 4 and "--overwrite" in err and (out / "run.json").read_bytes() == before


def test_output_format_follows_input(tiny_model, tmp_path, capsys):
    path = tmp_path / "scan.nrrd"
    sitk.WriteImage(make_volume(), str(path))
    code, _, _ = run_cli(path, "-o", tmp_path / "o", "--model", tiny_model.folder, "--brain-mask", "none",
                         "--quiet", capsys=capsys)
    assert code == 0
    assert (tmp_path / "o" / "lesion_labels.nrrd").is_file()
    code, _, _ = run_cli(path, "-o", tmp_path / "o2", "--model", tiny_model.folder, "--brain-mask", "none",
                         "--quiet", "--format", "mha", capsys=capsys)
    assert (tmp_path / "o2" / "probability.mha").is_file()


def test_dicom_series_folder(tiny_model, tmp_path, capsys):
    encoding_before = locale.getpreferredencoding(False).lower().replace("-", "")
    image = sitk.Cast(make_volume((12, 40, 40)), sitk.sitkInt16)
    folder = tmp_path / "dicom"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    with keep_locale():  # GDCM switches the process locale to "C"
        _write_slices(image, writer, folder)
    code, _, err = run_cli(folder, "-o", tmp_path / "o", "--model", tiny_model.folder, "--brain-mask",
                           "none", "--quiet", capsys=capsys)
    assert code == 0, err
    assert sitk.ReadImage(str(tmp_path / "o" / "lesion_labels.nii.gz")).GetSize() == image.GetSize()
    assert locale.getpreferredencoding(False).lower().replace("-", "") == encoding_before


@contextlib.contextmanager
def keep_locale():
    """GDCM's DICOM writer switches the process to the "C" locale, which turns Python's
    default text encoding into ASCII for every later test; put it back."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_slices(image, writer, folder):
    for k in range(image.GetDepth()):
        sl = image[:, :, k]
        sl.SetMetaData("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))))
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1")
        sl.SetMetaData("0020|000d", "1.2.826.0.1.3680043.2.1125.2")
        sl.SetMetaData("0008|0060", "MR")
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(sl)


def test_batch_continues_after_a_failed_case(tiny_model, volume_file, tmp_path, capsys):
    bad = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.Image([20, 20, 20], sitk.sitkFloat32), str(bad))
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,t1ce\ngood,{volume_file}\nbad,{bad}\n")
    code, out, err = run_cli("--manifest", manifest, "-o", tmp_path / "o", "--model", tiny_model.folder,
                             "--brain-mask", "none", "--progress", "json", capsys=capsys)
    assert code == 1
    assert "case bad failed" in err and "constant" in err
    errors = [e for e in map(json.loads, out.splitlines()) if e["type"] == "error"]
    assert [(e["case"], e["kind"], e["exit_code"]) for e in errors] == [("bad", "ConstantImageError", 2)]
    assert str(bad) in errors[0]["message"]
    assert (tmp_path / "o" / "good" / "lesions.csv").is_file()
    summary = (tmp_path / "o" / "summary.csv").read_text()
    assert "good,ok" in summary and "bad,failed" in summary


def _write(path, image):
    sitk.WriteImage(image, str(path))
    return path


def bad_inputs(tmp):
    """(name, path, expected message fragment, exit code, extra args)."""
    corrupt = tmp / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b not really a nifti")
    nan = sitk.GetArrayFromImage(make_volume())
    nan[3, 3, 3] = np.nan
    nan_image = sitk.GetImageFromArray(nan)
    vec = sitk.Compose([make_volume()] * 3)
    four_d = sitk.JoinSeries([make_volume(), make_volume(seed=1)])
    far = make_volume(origin=(5000.0, 0.0, 0.0))
    return [
        ("missing", tmp / "nope.nii.gz", "not found", 2, []),
        ("corrupt", corrupt, "cannot read", 2, []),
        ("2d", _write(tmp / "slice.nii.gz", sitk.Image([32, 32], sitk.sitkFloat32) + 1.0), "2D", 2, []),
        ("4d", _write(tmp / "series.nii.gz", four_d), "4D", 2, []),
        ("vector", _write(tmp / "rgb.mha", vec), "components", 2, []),
        ("constant", _write(tmp / "zero.nii.gz", sitk.Image([20, 20, 20], sitk.sitkFloat32)), "constant", 2, []),
        ("nan", _write(tmp / "nan.nrrd", nan_image), "NaN", 2, []),
        ("extra sequence", _write(tmp / "ok.nii.gz", make_volume()), "sequence", 2,
         ["--flair", _write(tmp / "flair.nii.gz", far)]),
        ("unknown model", tmp / "ok.nii.gz", "unknown model", 3, ["--model", "no-such-model"]),
    ]


@pytest.mark.parametrize("case", range(9))
def test_bad_input_gets_message_and_exit_code(case, tiny_model, tmp_path, capsys):
    name, path, fragment, code, extra = bad_inputs(tmp_path)[case]
    args = [path, "-o", tmp_path / "out", "--brain-mask", "none", "--quiet"]
    if "--model" not in extra:
        args += ["--model", tiny_model.folder]
    got, _, err = run_cli(*args, *extra, capsys=capsys)
    assert got == code, (name, err)
    assert fragment in err, (name, err)
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "run.json").exists()


def test_extra_sequence_that_does_not_overlap(tiny_model, tmp_path):
    """A multi-sequence model: FLAIR far away in physical space is refused."""
    import dataclasses
    import shutil

    from BrainMetSegLib.errors import InputError
    from BrainMetSegLib.models import ModelPackage
    from BrainMetSegLib.pipeline import CaseInputs, SegmentConfig, Segmenter

    folder = tmp_path / "two"
    shutil.copytree(tiny_model.folder, folder)
    card = dataclasses.replace(tiny_model.card, input_sequences=["t1ce", "flair"])
    seg = Segmenter(SegmentConfig(model=str(folder), device="cpu", brain_mask="none"),
                    ModelPackage(card, folder))
    ce = _write(tmp_path / "ce.nii.gz", make_volume())
    far = _write(tmp_path / "flair.nii.gz", make_volume(origin=(5000.0, 0.0, 0.0)))
    with pytest.raises(InputError, match="does not overlap"):
        seg.run(CaseInputs(str(ce), flair=str(far)))
    with pytest.raises(InputError, match="missing --flair"):
        seg.run(CaseInputs(str(ce)))


def test_unwritable_output_folder(tiny_model, volume_file, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(volume_file, "-o", blocker / "out", "--model", tiny_model.folder,
                           "--brain-mask", "none", "--quiet", capsys=capsys)
    assert code == 4 and "output folder" in err


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "BrainMetSegLib", "segment", str(tmp_path / "x.nii.gz"),
                           "-o", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "not found" in proc.stderr and "Traceback" not in proc.stderr
