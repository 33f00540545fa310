"""Hostile records: what a file claims is checked, never believed (issue 27).

Five fault classes, each with tests that failed before the checks existed:

1. recorded outputs believed (``--skip-existing``, ``summarize``): outputs are checked by
   content hash, inside the case folder only;
2. recorded fields trusted by type (run.json, MONAI bundle, nnU-Net plans): a bad field is one
   line naming the file and the field, a user-error exit code (never 70);
3. a damaged DICOM slice: named before any work, nothing left in -o;
4. shared files under concurrency: the summary is merged under a lock;
5. misleading messages: whole-image and empty masks, empty label maps (a valid answer),
   ``--skip-existing`` with one input, TorchScript offered as weights.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.cli import main
from BrainMetSegLib.outputs import output_folder_lock
from conftest import make_volume

REPO = Path(__file__).resolve().parent.parent


def _run(argv, capfd) -> tuple[int, str]:
    """Exit code and what the command printed (stdout, then stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capfd.readouterr()
    return code, out + err


def _segment(args, model, capfd) -> tuple[int, str]:
    return _run(["segment", *args, "--model", model.folder, "--brain-mask", "none", "--device", "cpu",
                 "--progress", "none"], capfd)


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if "error" in ln.lower()]


def _rows(path: Path) -> dict[str, dict]:
    return {r["case_id"]: r for r in csv.DictReader(path.open())}


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Two small CE-T1 volumes and a manifest naming them (cases a and b)."""
    folder = tmp_path_factory.mktemp("scans")
    for n, cid in enumerate(("a", "b")):
        sitk.WriteImage(make_volume((24, 28, 32), seed=n), str(folder / f"{cid}.nii.gz"))
    manifest = folder / "cases.csv"
    manifest.write_text("case_id,t1ce\na,a.nii.gz\nb,b.nii.gz\n")
    return manifest


@pytest.fixture(scope="module")
def cohort_out(tiny_model, scans, tmp_path_factory):
    """A finished cohort run (cases a, b); tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("cohort") / "out"
    assert main(["segment", "--manifest", str(scans), "-o", str(out), "--model", str(tiny_model.folder),
                 "--brain-mask", "none", "--device", "cpu", "--progress", "none", "--quiet"]) == 0
    return out


@pytest.fixture
def out(cohort_out, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(cohort_out, copy)
    return copy


def _empty_labels(path: Path) -> None:
    """Replace a label map by an all-zero one on the same grid (as an outside edit would)."""
    image = sitk.ReadImage(str(path))
    zero = sitk.Image(image.GetSize(), image.GetPixelID())
    zero.CopyInformation(image)
    sitk.WriteImage(zero, str(path))


# ---- 1. recorded outputs believed ---------------------------------------------------------------

def test_run_json_records_the_sha256_of_every_output(out):
    import hashlib

    run = json.loads((out / "a" / "run.json").read_text())
    assert set(run["output_sha256"]) == set(run["outputs"]) - {"run"}
    for key, digest in run["output_sha256"].items():
        assert hashlib.sha256((out / "a" / run["outputs"][key]).read_bytes()).hexdigest() == digest


def test_skip_existing_notices_an_emptied_label_map(out, scans, tiny_model, capfd):
    _empty_labels(out / "a" / "lesion_labels.nii.gz")
    code, err = _segment(["--manifest", scans, "-o", out, "--skip-existing"], tiny_model, capfd)
    assert code == 1, err
    assert "lesion_labels.nii.gz changed since it was written (sha256" in err and "--overwrite" in err
    assert _rows(out / "summary.csv")["a"]["status"] == "failed"
    assert _rows(out / "summary.csv")["b"]["status"] == "skipped"
    # with --overwrite the case is redone, and its outputs are believed again
    code, err = _segment(["--manifest", scans, "-o", out, "--skip-existing", "--overwrite"], tiny_model, capfd)
    assert code == 0, err
    assert _run(["summarize", out, "--quiet"], capfd)[0] == 0


def test_skip_existing_refuses_a_link_leading_out_of_the_case_folder(out, scans, tiny_model, tmp_path, capfd):
    table = out / "a" / "lesions.csv"
    elsewhere = tmp_path / "elsewhere.csv"
    shutil.move(table, elsewhere)
    table.symlink_to(elsewhere)
    code, err = _segment(["--manifest", scans, "-o", out, "--skip-existing"], tiny_model, capfd)
    assert code == 1 and "lesions.csv is a link leading out of the case folder" in err, err


@pytest.mark.parametrize("edit", ["absolute", "dotdot", "deleted", "edited_table", "no_hashes"])
def test_summarize_believes_only_outputs_inside_the_folder_as_written(edit, out, tmp_path, capfd):
    folder = out / "a"
    run = json.loads((folder / "run.json").read_text())
    if edit in ("absolute", "dotdot"):  # point the record at copies elsewhere, delete the real ones
        keep = tmp_path / "kept"
        keep.mkdir()
        for key, name in list(run["outputs"].items()):
            if key != "run":
                shutil.copy(folder / name, keep / name)
                (folder / name).unlink()
                run["outputs"][key] = str(keep / name) if edit == "absolute" else f"../../kept/{name}"
    elif edit == "deleted":
        (folder / "probability.nii.gz").unlink()
    elif edit == "edited_table":
        (folder / "lesions.csv").write_text("lesion_id,volume_mm3\n1,5.0\n")
    else:
        del run["output_sha256"]
    (folder / "run.json").write_text(json.dumps(run))
    code, err = _run(["summarize", out], capfd)
    assert code == 1, err
    row = _rows(out / "cohort_summary.csv")["a"]
    assert row["status"] == "incomplete" and "run.json" in row["source"] + row["message"], row
    assert _rows(out / "cohort_summary.csv")["b"]["status"] == "ok"
    assert "Traceback" not in err


# ---- 2. recorded fields trusted by type ---------------------------------------------------------

BAD_FIELDS = {"timings_s": [1, 2], "lesions": "nine", "outputs": ["lesion_labels.nii.gz"], "case": 5,
              "warnings": "none", "settings": {"threshold_used": "high"}}


@pytest.mark.parametrize("field", sorted(BAD_FIELDS))
def test_summarize_names_a_bad_run_json_field(field, out, capfd):
    run = json.loads((out / "a" / "run.json").read_text())
    run[field] = BAD_FIELDS[field]
    (out / "a" / "run.json").write_text(json.dumps(run))
    code, err = _run(["summarize", out], capfd)
    assert code == 1, err  # not 70 (internal error)
    message = _rows(out / "cohort_summary.csv")["a"]["message"]
    assert f"{out / 'a' / 'run.json'}: field '{field}" in message, message
    assert f"a: incomplete: {out / 'a' / 'run.json'}: field '{field}" in err


@pytest.mark.parametrize("value", [[1, 2], "abc"])
def test_skip_existing_names_a_bad_timings_field(value, out, scans, tiny_model, capfd):
    run = json.loads((out / "a" / "run.json").read_text())
    run["timings_s"] = value
    (out / "a" / "run.json").write_text(json.dumps(run))
    code, err = _segment(["--manifest", scans, "-o", out, "--skip-existing"], tiny_model, capfd)
    assert code == 1, err
    assert f"{out / 'a' / 'run.json'}: field 'timings_s' must be an object" in err
    assert "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize("where,value,names", [
    ("overlap", "abc", "field 'inferer overlap' must be a number"),
    ("overlap", 1.5, "field 'inferer overlap' must be"),
    ("roi_size", ["32", 32, 24], "field 'inferer roi_size (voxels)[0]' must be an integer"),
    ("pixdim", [1.5, -1, 2.0], "field 'preprocessing Spacingd pixdim (mm)[1]' must be"),
    ("inferer", "SlidingWindow", "field 'inferer' must be an object"),
])
def test_monai_bundle_field_of_the_wrong_type_is_named(where, value, names, tmp_path, capfd):
    from test_import_monai_bundle import write_bundle

    bundle = write_bundle(tmp_path / "bundle")
    path = bundle / "configs" / "inference.json"
    config = json.loads(path.read_text())
    if where == "pixdim":
        config["preprocessing"]["transforms"][2]["pixdim"] = value
    elif where == "inferer":
        config["inferer"] = value
    else:
        config["inferer"][where] = value
    path.write_text(json.dumps(config))
    code, err = _run(["models", "import", "monai-bundle", bundle, "-o", tmp_path / "pkg"], capfd)
    assert code == 2, err
    assert len(_error_lines(err)) == 1 and f"{path}: {names}" in err, err
    assert not (tmp_path / "pkg").exists()


def test_monai_bundle_metadata_of_the_wrong_type_is_named(tmp_path, capfd):
    from test_import_monai_bundle import write_bundle

    bundle = write_bundle(tmp_path / "bundle")
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"name": ["x"], "version": "1"}))
    code, err = _run(["models", "import", "monai-bundle", bundle, "-o", tmp_path / "pkg"], capfd)
    assert code == 2 and "metadata.json: field 'name' must be a string" in err, err


@pytest.mark.parametrize("change,names", [
    (lambda p: p["configurations"]["3d_fullres"].update(spacing=["a", 2, 2]), "field 'spacing[0]' must be a number"),
    (lambda p: p["configurations"]["3d_fullres"].update(patch_size="big"), "field 'patch_size' must be a list"),
    (lambda p: p.update(transpose_forward=[0, "1", 2]), "field 'transpose_forward[1]' must be an integer"),
    (lambda p: p.update(configurations=[1]), "field 'configurations' must be an object"),
])
def test_nnunet_plans_field_of_the_wrong_type_is_named(change, names, tmp_path, capfd):
    pytest.importorskip("dynamic_network_architectures")
    from test_import_nnunet import make_results

    results = make_results(tmp_path / "r", {"0": "CE-T1"}, {"background": 0, "met": 1}, folds=(0,))
    plans = json.loads((results / "plans.json").read_text())
    change(plans)
    (results / "plans.json").write_text(json.dumps(plans))
    code, err = _run(["models", "import", "nnunet", results, "-o", tmp_path / "pkg"], capfd)
    assert code == 2, err
    assert len(_error_lines(err)) == 1 and "plans.json" in err and names in err, err


def test_nnunet_checkpoint_mirroring_axes_of_the_wrong_type_are_named(tmp_path, capfd):
    pytest.importorskip("dynamic_network_architectures")
    from test_import_nnunet import make_results

    results = make_results(tmp_path / "r", {"0": "CE-T1"}, {"background": 0, "met": 1}, folds=(0,),
                           extra={"inference_allowed_mirroring_axes": "xyz"})
    code, err = _run(["models", "import", "nnunet", results, "-o", tmp_path / "pkg"], capfd)
    assert code == 3 and "checkpoint_final.pth: field 'inference_allowed_mirroring_axes' must be" in err, err


# ---- 3. a damaged DICOM slice -------------------------------------------------------------------

def _series(folder: Path) -> Path:
    from test_hostile_inputs import _dicom

    return _dicom(folder, make_volume((20, 40, 40)))


@pytest.mark.parametrize("keep", [0.5, 0.95, 300])
def test_damaged_dicom_slice_is_named_before_any_work(keep, tiny_model, tmp_path, capfd, monkeypatch):
    from BrainMetSegLib.models import ModelPackage

    folder = _series(tmp_path / "series")
    damaged = folder / "010.dcm"
    data = damaged.read_bytes()
    damaged.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    monkeypatch.setattr(ModelPackage, "load_network", lambda *a: pytest.fail("the model was loaded"))
    out = tmp_path / "o"
    code, err = _segment([folder, "-o", out], tiny_model, capfd)
    assert code == 2, err
    lines = _error_lines(err)
    assert len(lines) == 1 and f"{damaged}: damaged DICOM file" in lines[0], err
    assert not out.exists()


def test_damaged_dicom_slice_fails_its_case_in_a_batch(tiny_model, tmp_path, capfd):
    folder = _series(tmp_path / "series")
    damaged = folder / "003.dcm"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,t1ce\nd,{folder}\n")
    out = tmp_path / "o"
    code, err = _segment(["--manifest", manifest, "-o", out], tiny_model, capfd)
    assert code == 1 and f"{damaged}: damaged DICOM file" in err, err
    assert not (out / "d").exists()


def test_non_dicom_files_beside_a_series_are_ignored(tiny_model, tmp_path, capfd):
    folder = _series(tmp_path / "series")
    (folder / "README.txt").write_text("scanned 2026-01-01\n")
    code, err = _segment([folder, "-o", tmp_path / "o"], tiny_model, capfd)
    assert code == 0, err


# ---- 4. shared files under concurrency ----------------------------------------------------------

def test_a_case_busy_in_another_run_does_not_replace_its_row(out, scans, tiny_model, capfd):
    """A second run of the same manifest meets case a while the first still holds it: its
    'busy' failure must not overwrite the first run's row, and summarize stays at exit 0."""
    with output_folder_lock(out / "a"):
        code, err = _segment(["--manifest", scans, "-o", out, "--skip-existing"], tiny_model, capfd)
    assert code == 1 and "another brainmetseg run" in err
    rows = _rows(out / "summary.csv")
    assert rows["a"]["status"] == "ok" and rows["b"]["status"] == "skipped", rows
    code, err = _run(["summarize", out], capfd)
    assert code == 0, err


def test_the_same_manifest_twice_at_once(scans, tiny_model, tmp_path):
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "BrainMetSegLib", "segment", "--manifest", str(scans), "-o", str(out),
           "--model", str(tiny_model.folder), "--brain-mask", "none", "--device", "cpu", "--progress",
           "none", "--skip-existing"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode in (0, 1) for p in procs), errs
    assert all("Traceback" not in e for e in errs), errs
    rows = _rows(out / "summary.csv")
    assert {k: r["status"] for k, r in rows.items()} in [
        {"a": s, "b": t} for s in ("ok", "skipped") for t in ("ok", "skipped")], rows
    assert subprocess.run([sys.executable, "-m", "BrainMetSegLib", "summarize", str(out), "--quiet"],
                          env=env, timeout=120).returncode == 0


def _append_rows(args) -> None:
    from BrainMetSegLib.outputs import update_shared_text

    path, tag, count = args

    def add(n):
        return lambda old: (old or "") + f"{tag}-{n}\n"

    for n in range(count):
        update_shared_text(path, add(n))


def test_shared_file_updates_merge_under_a_lock(tmp_path):
    """Two processes updating one file 40 times each: no update is lost (read-modify-write
    under the lock), and no temporary or lock file is left."""
    path = tmp_path / "shared" / "summary.csv"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_append_rows, [(path, "x", 40), (path, "y", 40)])
    lines = path.read_text().splitlines()
    assert sorted(lines) == sorted([f"x-{n}" for n in range(40)] + [f"y-{n}" for n in range(40)])
    assert [p.name for p in path.parent.iterdir()] == ["summary.csv"]


# ---- 5. messages that mislead -------------------------------------------------------------------

@pytest.mark.parametrize("value,says", [(1, "the brain mask covers the whole image"),
                                        (0, "the brain mask is empty")])
def test_constant_brain_mask_says_what_is_wrong(value, says, volume_file, tiny_model, tmp_path, capfd):
    mask = sitk.Image(sitk.ReadImage(str(volume_file)).GetSize(), sitk.sitkUInt8) + value
    mask.CopyInformation(sitk.ReadImage(str(volume_file)))
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    code, err = _run(["segment", volume_file, "-o", tmp_path / "o", "--model", tiny_model.folder,
                      "--brain-mask", tmp_path / "mask.nii.gz", "--device", "cpu", "--progress", "none"], capfd)
    assert code == 2 and f"{tmp_path / 'mask.nii.gz'}: {says}" in err, err
    assert "holds no image data" not in err and not (tmp_path / "o").exists()


def test_brain_mask_marking_every_voxel_is_refused(volume_file, tiny_model, tmp_path, capfd):
    image = sitk.ReadImage(str(volume_file))
    arr = np.ones(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    arr[:, :, :5] = 2  # not constant, yet no voxel is outside the brain
    mask = sitk.GetImageFromArray(arr)
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    code, err = _run(["segment", volume_file, "-o", tmp_path / "o", "--model", tiny_model.folder,
                      "--brain-mask", tmp_path / "mask.nii.gz", "--device", "cpu", "--progress", "none"], capfd)
    assert code == 2 and "covers the whole image" in err, err


def _sphere_labels(image: sitk.Image, radius_mm: float) -> sitk.Image:
    z, y, x = np.indices(sitk.GetArrayViewFromImage(image).shape)
    c = [(s - 1) / 2 for s in sitk.GetArrayViewFromImage(image).shape]
    arr = (((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= radius_mm ** 2).astype(np.uint16)
    labels = sitk.GetImageFromArray(arr)
    labels.CopyInformation(image)
    return labels


def test_compare_accepts_an_empty_follow_up_label_map(tmp_path, capfd):
    """All lesions gone at follow-up (a complete response): an all-zero label map is the answer."""
    scan = make_volume((48, 56, 56))
    paths = {}
    for name, image in (("base", scan), ("fu", make_volume((48, 56, 56), seed=1))):
        paths[name] = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(image, str(paths[name]))
    sitk.WriteImage(_sphere_labels(scan, 7.0), str(tmp_path / "base_labels.nii.gz"))
    sitk.WriteImage(_sphere_labels(scan, 7.0) * 0, str(tmp_path / "fu_labels.nii.gz"))
    code, err = _run(["compare", paths["base"], paths["fu"], "--labels", tmp_path / "base_labels.nii.gz",
                      tmp_path / "fu_labels.nii.gz", "-o", tmp_path / "cmp", "--progress", "none",
                      "--days", "0", "60"], capfd)
    assert code == 0, err
    rano = list(csv.DictReader((tmp_path / "cmp" / "rano_bm.csv").open()))
    assert rano[0]["target"] == "CR", rano


def test_compare_refuses_a_label_map_marking_every_voxel(tmp_path, capfd):
    scan = make_volume((32, 32, 32))
    sitk.WriteImage(scan, str(tmp_path / "s.nii.gz"))
    full = _sphere_labels(scan, 100.0)
    sitk.WriteImage(full, str(tmp_path / "full.nii.gz"))
    code, err = _run(["compare", tmp_path / "s.nii.gz", tmp_path / "s.nii.gz", "--labels",
                      tmp_path / "full.nii.gz", tmp_path / "full.nii.gz", "-o", tmp_path / "cmp",
                      "--progress", "none"], capfd)
    assert code == 2 and f"{tmp_path / 'full.nii.gz'}: the label map covers the whole image" in err, err


def test_evaluate_accepts_empty_ground_truth_and_prediction(tmp_path, capfd):
    empty = sitk.Image([24, 24, 24], sitk.sitkUInt8)
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
        sitk.WriteImage(empty, str(tmp_path / folder / "c1.nii.gz"))
    code, err = _run(["evaluate", "--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "-o", tmp_path / "ev"],
                     capfd)
    assert code == 0, err


def test_skip_existing_with_one_input_skips_a_finished_run(volume_file, tiny_model, tmp_path, capfd):
    out = tmp_path / "o"
    assert _segment([volume_file, "-o", out], tiny_model, capfd)[0] == 0
    stamp = (out / "run.json").stat().st_mtime_ns
    code, err = _segment([volume_file, "-o", out, "--skip-existing"], tiny_model, capfd)
    assert code == 0 and "complete and up to date" in err and "skipped" in err, err
    assert (out / "run.json").stat().st_mtime_ns == stamp
    _empty_labels(out / "lesion_labels.nii.gz")  # and it is checked like a batch case
    code, err = _segment([volume_file, "-o", out, "--skip-existing"], tiny_model, capfd)
    assert code == 4 and "changed since it was written" in err, err


@pytest.fixture
def torchscript_file(tmp_path) -> Path:
    import torch

    path = tmp_path / "net.ts"
    torch.jit.script(torch.nn.Conv3d(1, 1, 1)).save(str(path))
    return path


def test_torchscript_as_a_checkpoint_never_ends_with_unsafe_advice(torchscript_file):
    from BrainMetSegLib.errors import ModelError
    from BrainMetSegLib.importers.checkpoint import load_checkpoint

    with pytest.raises(ModelError) as info:
        load_checkpoint(torchscript_file)
    assert "TorchScript" in str(info.value) and "weights_only" not in str(info.value)


def test_torchscript_in_a_monai_bundle_is_refused_in_our_words(torchscript_file, tmp_path, capfd):
    from test_import_monai_bundle import write_bundle

    bundle = write_bundle(tmp_path / "bundle")
    shutil.copy(torchscript_file, bundle / "models" / "model.pt")
    code, err = _run(["models", "import", "monai-bundle", bundle, "-o", tmp_path / "pkg"], capfd)
    assert code == 3 and "model.pt: is a TorchScript archive" in err, err
    assert "weights_only" not in err and "trusted source" not in err


def test_torchscript_as_initial_weights_is_refused_in_our_words(torchscript_file):
    from BrainMetSegLib.errors import InputError
    from BrainMetSegLib.train.init import read_state_dict

    with pytest.raises(InputError) as info:
        read_state_dict(torchscript_file)
    assert "TorchScript" in str(info.value) and "weights_only" not in str(info.value)


def test_pickle_with_code_is_refused_without_allow_list_advice(tmp_path):
    import torch

    from BrainMetSegLib.errors import ModelError
    from BrainMetSegLib.importers.checkpoint import load_checkpoint

    torch.save({"w": torch.zeros(1), "f": os.system}, tmp_path / "bad.pt")
    with pytest.raises(ModelError) as info:
        load_checkpoint(tmp_path / "bad.pt")
    text = str(info.value)
    assert "it names" in text and "system" in text and "trust" not in text and "safe_globals" not in text


def test_a_file_given_as_model_is_refused_in_our_words(torchscript_file, volume_file, tmp_path, capfd):
    code, err = _run(["segment", volume_file, "-o", tmp_path / "o", "--model", torchscript_file,
                      "--device", "cpu", "--progress", "none"], capfd)
    assert code == 3 and f"{torchscript_file}: is a file; a model is a package folder" in err, err
