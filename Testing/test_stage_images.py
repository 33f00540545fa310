"""Several images staged with their verification in a second thread: the same files as one
by one, and on any failure no temporary file left and the earliest item's failure raised."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib import staging
from BrainMetSegLib.errors import OutputError
from BrainMetSegLib.filecheck import FileProblem


def _images():
    rng = np.random.default_rng(0)
    labels = sitk.GetImageFromArray(rng.integers(0, 3, (20, 24, 28)).astype(np.uint16))
    prob = sitk.GetImageFromArray(rng.random((20, 24, 28)).astype(np.float32))
    prob.SetSpacing((0.9, 1.1, 3.0))
    return [(labels, "lesion_labels.nii.gz"), (prob, "probability.nii.gz"), (labels, "labels.nrrd")]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def test_same_files_as_one_by_one(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    items = _images()
    alone = [staging.stage_image(image, tmp_path / "one" / name) for image, name in items]
    together = staging.stage_images([(image, tmp_path / "many" / name) for image, name in items])
    assert [p.parent for p in together] == [tmp_path / "many"] * 3
    for a, b, (_, name) in zip(alone, together, items, strict=True):
        assert b.name.startswith(f".{name}.") and a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("bad", [0, 1, 2])
def test_a_failed_verification_removes_every_file(tmp_path, monkeypatch, bad):
    real = staging.verify_image_file
    items = [(image, tmp_path / name) for image, name in _images()]

    def verify(path, image):
        if path.name.startswith(f".{items[bad][1].name}."):
            raise FileProblem("compressed stream ends early")
        return real(path, image)

    monkeypatch.setattr(staging, "verify_image_file", verify)
    with pytest.raises(OutputError, match=f"{items[bad][1].name}: cannot write the image "
                                          r"\(compressed stream ends early\); nothing was replaced"):
        staging.stage_images(items)
    assert list(tmp_path.iterdir()) == []


def test_the_earliest_failure_is_raised(tmp_path, monkeypatch):
    """The first image's verification fails while the third one's write fails: the first's
    error is raised, as staging one by one would have stopped there."""
    items = [(image, tmp_path / name) for image, name in _images()]
    real_write, real_verify = staging.sitk.WriteImage, staging.verify_image_file

    def write(image, name, **kwargs):
        if ".labels.nrrd." in name:
            raise RuntimeError("disk on fire")
        return real_write(image, name, **kwargs)

    def verify(path, image):
        if ".lesion_labels." in path.name:
            raise FileProblem("written file cannot be read back")
        return real_verify(path, image)

    monkeypatch.setattr(staging.sitk, "WriteImage", write)
    monkeypatch.setattr(staging, "verify_image_file", verify)
    with pytest.raises(OutputError, match="lesion_labels.nii.gz: cannot write the image"):
        staging.stage_images(items)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_passes_through_and_cleans_up(tmp_path, monkeypatch):
    items = [(image, tmp_path / name) for image, name in _images()]
    real_write = staging.sitk.WriteImage

    def write(image, name, **kwargs):
        if ".probability." in name:
            raise KeyboardInterrupt
        return real_write(image, name, **kwargs)

    monkeypatch.setattr(staging.sitk, "WriteImage", write)
    with pytest.raises(KeyboardInterrupt):
        staging.stage_images(items)
    assert list(tmp_path.iterdir()) == [] and _leftovers(tmp_path) == []
