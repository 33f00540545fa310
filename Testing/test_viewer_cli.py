"""`brainmetseg view` before any rendering: folder checks, the [web] hint, review bookkeeping."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from viewer_data import make_result_folder

from BrainMetSegLib import viewer
from BrainMetSegLib.cli import main
from BrainMetSegLib.errors import InputError
from BrainMetSegLib.viewer.result import ResultFolder
from BrainMetSegLib.viewer.review import lesion_changes, save_review


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return make_result_folder(tmp_path_factory.mktemp("viewer_cli"))


def test_without_the_web_extra_the_command_says_how_to_install_it(result, monkeypatch, capsys):
    monkeypatch.setattr(viewer, "missing_web_dependencies", lambda: ["trame-slicer"])
    assert main(["view", str(result)]) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[web]" in err[0] and "pip install" in err[0] and "Traceback" not in err[0]


def test_missing_modules_are_named(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "trame_slicer" else real(name, *a))
    assert viewer.missing_web_dependencies() == ["trame-slicer"]


@pytest.mark.parametrize("case", ["no folder", "no run.json", "bad json", "missing labels", "missing image"])
def test_bad_result_folders_fail_with_one_line(case, result, tmp_path, capsys):
    folder = tmp_path / "r"
    if case != "no folder":
        folder.mkdir()
        for f in result.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
    if case == "no run.json":
        (folder / "run.json").unlink()
    elif case == "bad json":
        (folder / "run.json").write_text("{not json")
    elif case == "missing labels":
        (folder / "lesion_labels.nii.gz").unlink()
    elif case == "missing image":
        run = json.loads((folder / "run.json").read_text())
        run["inputs"]["t1ce"]["path"] = str(tmp_path / "gone.nii.gz")
        (folder / "run.json").write_text(json.dumps(run))
    assert main(["view", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert str(folder if case != "missing image" else tmp_path / "gone.nii.gz") in err[0]


def test_a_batch_folder_points_to_its_cases(result, capsys):
    assert main(["view", str(result.parent)]) == 2
    err = capsys.readouterr().err
    assert "batch output folder" in err and "result" in err


def test_an_image_on_another_grid_is_refused(result, tmp_path):
    other = sitk.GetImageFromArray(np.arange(1000, dtype=np.float32).reshape(10, 10, 10))
    sitk.WriteImage(other, str(tmp_path / "other.nii.gz"))
    with pytest.raises(InputError, match="not on the CE-T1's grid"):
        ResultFolder.open(result, tmp_path / "other.nii.gz").read_images()


def test_lesion_changes_name_what_happened_to_each_lesion():
    before = np.zeros((4, 4, 4), np.uint16)
    before[0, 0, :2] = 1
    before[1, 1, :3] = 2
    before[2, 2, 0] = 3
    after = before.copy()
    after[1, 1, 3] = 2          # lesion 2 grows by one voxel
    after[2, 2, 0] = 0          # lesion 3 erased
    after[3, 3, :2] = 4         # lesion 4 drawn
    changes = {c.lesion_id: c for c in lesion_changes(before, after)}
    assert changes[1].status == "unchanged"
    assert (changes[2].status, changes[2].voxels_added, changes[2].voxels_after) == ("edited", 1, 4)
    assert (changes[3].status, changes[3].voxels_removed) == ("removed", 1)
    assert (changes[4].status, changes[4].voxels_before, changes[4].voxels_added) == ("added", 0, 2)


def test_save_review_numbers_versions_and_never_replaces_one(result):
    folder = ResultFolder.open(result)
    _, labels, probability = folder.read_images()
    first = save_review(result, labels, probability, labels, ext=".nii.gz", source={"case": "x"})
    second = save_review(result, labels, probability, labels, ext=".nii.gz", source={"case": "x"})
    assert (first.name, second.name) == ("review_001", "review_002")
    assert sorted(p.name for p in first.iterdir()) == ["lesion_labels.nii.gz", "lesions.csv", "lesions.json",
                                                       "lesions.seg.nrrd", "review.json"]
    assert not list(result.glob(".review_*"))  # no temporary folder left
    record = json.loads((first / "review.json").read_text())
    assert record["lesions_changed"] == 0 and record["lesions"] == 3


def test_view_log_takes_native_stderr_and_the_terminal_keeps_errors(tmp_path, capfd):
    """Inside log_to_file, what C++ writes on descriptor 2 (VTK, Slicer) and Python's stderr go
    to the log; the terminal gets the command's own lines and one line per logged error; on
    exit descriptor 2 is the terminal again. A folder where view.log cannot be written (here a
    folder of that name) gets a temporary log instead."""
    import logging
    import os
    import sys

    from BrainMetSegLib.viewer.logfile import LOG_NAME, log_to_file

    for folder, in_folder in ((tmp_path / "ok", True), (tmp_path / "blocked", False)):
        folder.mkdir()
        if not in_folder:
            (folder / LOG_NAME).mkdir()
        with log_to_file(folder) as log:
            os.write(2, b"Warning: In vtkObject.cxx, line 742 (native)\n")
            print("python stderr chatter", file=sys.stderr)
            print("brainmetseg view: open http://x/", file=log.terminal)
            logging.getLogger("trame").error("callback failed\nTraceback line")
        os.write(2, b"after\n")
        assert (log.path.parent == folder) is in_folder and log.path.is_file()
        text = log.path.read_text()
        assert "vtkObject.cxx" in text and "python stderr chatter" in text and "Traceback line" in text
        assert text.startswith("=== brainmetseg view ")
        err = capfd.readouterr().err.splitlines()
        assert err == ["brainmetseg view: open http://x/",
                       f"brainmetseg view: error: callback failed (details in {log.path})", "after"], err
        if not in_folder:
            log.path.unlink()


@pytest.mark.parametrize("host", ["999.1.1.1", "nosuchhost.invalid"])
def test_a_host_that_is_not_this_machine_is_named(host, result, monkeypatch, capsys):
    """It had been reported as 'no free port in 8080-8129'."""
    monkeypatch.setattr(viewer, "missing_web_dependencies", lambda: [])
    for port in ([], ["--port", "8099"]):
        assert main(["view", str(result), "--host", host, *port]) == 2
        err = capsys.readouterr().err
        assert f"--host {host}: cannot listen on this address" in err and "free port" not in err, err
