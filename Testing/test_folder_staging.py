"""Writing a folder atomically: a failed write replaces nothing and leaves nothing behind."""

from __future__ import annotations

import os

import pytest

from BrainMetSegLib import folder_staging
from BrainMetSegLib.folder_staging import staged_folder


def test_a_new_folder_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "series"
    target.mkdir()
    (target / "old.dcm").write_text("old")
    with staged_folder(target, "series") as tmp:
        (tmp / "new.dcm").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]  # no .part, no .old


def test_an_error_inside_replaces_nothing(tmp_path):
    target = tmp_path / "series"
    target.mkdir()
    (target / "old.dcm").write_text("old")
    with pytest.raises(RuntimeError), staged_folder(target, "series") as tmp:
        (tmp / "half.dcm").write_text("half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["old.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def test_a_failed_final_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "series"
    target.mkdir()
    (target / "old.dcm").write_text("old")
    real = os.replace

    def replace(src, dst):
        if str(src).endswith(".part"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(folder_staging.os, "replace", replace)
    with pytest.raises(OSError), staged_folder(target, "series") as tmp:
        (tmp / "new.dcm").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["old.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]
