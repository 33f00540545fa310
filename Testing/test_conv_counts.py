"""A package network's convolution count is kept on disk and read back as the same number
(no forward); damaged files are counted again; networks without an identity never touch disk."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from BrainMetSegLib import conv_counts  # noqa: E402
from BrainMetSegLib.architectures import build_network  # noqa: E402


def _net():
    torch.manual_seed(0)
    return build_network("BasicUNet", 1, 1, {"features": [4, 4, 8, 8, 16, 4]}).eval()


def test_count_is_kept_on_disk_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINMETSEG_CACHE", str(tmp_path))
    identity = {"sha256": "abc", "architecture": "BasicUNet"}
    counted = conv_counts.outputs_per_voxel(_net(), 1, 16, identity)
    assert counted == conv_counts.count_outputs_per_voxel(_net(), 1, 16) and counted > 1
    path = conv_counts.count_path(conv_counts.count_key(identity, 1, 16))
    assert path.exists()

    def no_forward(*args):
        raise AssertionError("counted again")

    monkeypatch.setattr(conv_counts, "count_outputs_per_voxel", no_forward)
    assert conv_counts.outputs_per_voxel(_net(), 1, 16, identity) == counted  # a new process's network
    # another divisor or channel count is another key: not served from this file
    assert conv_counts.count_key(identity, 1, 32) != conv_counts.count_key(identity, 1, 16)
    assert conv_counts.count_key(identity, 2, 16) != conv_counts.count_key(identity, 1, 16)


@pytest.mark.parametrize("text", ["", "{not json", '{"key": "other", "outputs_per_voxel": 3.0}',
                                  '{"outputs_per_voxel": -1}', '{"outputs_per_voxel": "NaN"}'])
def test_damaged_count_files_are_counted_again(tmp_path, monkeypatch, text):
    monkeypatch.setenv("BRAINMETSEG_CACHE", str(tmp_path))
    identity = {"sha256": "damaged"}
    key = conv_counts.count_key(identity, 1, 16)
    path = conv_counts.count_path(key)
    path.parent.mkdir(parents=True)
    path.write_text(text if "key" in text or not text.startswith("{\"o") else text[:-1] + f', "key": "{key}"}}')
    assert conv_counts.outputs_per_voxel(_net(), 1, 16, identity) == conv_counts.count_outputs_per_voxel(_net(), 1, 16)


def test_no_identity_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINMETSEG_CACHE", str(tmp_path))
    assert conv_counts.outputs_per_voxel(_net(), 1, 16) > 1
    assert not (tmp_path / "conv_counts").exists()
