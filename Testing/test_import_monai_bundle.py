"""Importing a MONAI bundle written here (SegResNet state dict + configs/inference.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.networks.nets import SegResNet

from BrainMetSegLib.errors import InputError, ModelError
from BrainMetSegLib.importers.monai_bundle import BundleImport, import_bundle
from BrainMetSegLib.models import load_package

NET_ARGS = {"spatial_dims": 3, "init_filters": 8, "blocks_down": [1, 1], "blocks_up": [1]}


def write_bundle(folder: Path, out_channels: int = 2, activation: str = "softmax",
                 network_def: dict | None = None, torchscript_only: bool = False) -> Path:
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    config = {
        "imports": ["$import torch"],
        "device": "$torch.device('cpu')",
        "filters": 8,
        "network_def": network_def or {"_target_": "SegResNet", "spatial_dims": 3, "init_filters": "@filters",
                                       "blocks_down": [1, 1], "blocks_up": [1], "in_channels": 1,
                                       "out_channels": out_channels},
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0]},
            {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True}]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 24], "overlap": 0.25,
                    "mode": "gaussian"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", activation: True}]},
    }
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    (folder / "configs" / "metadata.json").write_text(json.dumps({"name": "tiny bundle", "version": "0.1.0"}))
    torch.manual_seed(0)
    net = SegResNet(in_channels=1, out_channels=out_channels, **NET_ARGS)
    if torchscript_only:
        # never read: the importer refuses on the file name, before opening it
        (folder / "models" / "model.ts").write_bytes(b"PK\x03\x04 TorchScript archive")
    else:
        torch.save(net.state_dict(), folder / "models" / "model.pt")
    return folder


def test_import_bundle_card_and_network(tmp_path):
    bundle = write_bundle(tmp_path / "bundle")
    pkg = import_bundle(BundleImport(str(bundle), str(tmp_path / "pkg")))
    card = pkg.card
    assert card.name == "tiny bundle" and card.architecture == "MONAI"
    assert card.architecture_args["args"]["init_filters"] == 8  # "@filters" resolved
    assert card.spacing_mm == [1.5, 1.5, 2.0] and card.patch_size == [32, 32, 24]
    assert card.overlap == 0.25 and card.blend_mode == "gaussian" and card.normalisation == "zscore-nonzero"
    assert card.provenance["source"] == "MONAI bundle"
    assert card.network_io == {"input_channels": ["t1ce"], "orientation": "RAS", "transpose": [2, 1, 0],
                               "outputs": 2, "activation": "softmax", "channels": [1]}
    net = load_package(pkg.folder).load_network("cpu")
    x = torch.randn(1, 1, 24, 32, 40)  # pipeline: (Z, Y, X), LPS
    torch.manual_seed(0)
    ref = SegResNet(in_channels=1, out_channels=2, **NET_ARGS).eval()
    with torch.no_grad():
        monai_in = torch.flip(x, [3, 4]).permute(0, 1, 4, 3, 2)  # MONAI: (X, Y, Z), RAS
        p = torch.softmax(ref(monai_in), 1)[:, 1:2].permute(0, 1, 4, 3, 2)
        p = torch.flip(p, [3, 4])
        got = torch.sigmoid(net(x))
    assert torch.allclose(got, p, atol=1e-5)


def test_refuses_torchscript_and_code(tmp_path):
    ts = write_bundle(tmp_path / "ts", torchscript_only=True)
    with pytest.raises(ModelError, match="TorchScript"):
        import_bundle(BundleImport(str(ts), str(tmp_path / "pkg")))
    code = write_bundle(tmp_path / "code", network_def={"_target_": "SegResNet", "in_channels": 1,
                                                        "out_channels": 2, "init_filters": "$__import__('os')"})
    with pytest.raises(InputError, match="Python expression"):
        import_bundle(BundleImport(str(code), str(tmp_path / "pkg")))
    multi = write_bundle(tmp_path / "multi", out_channels=3, activation="sigmoid")
    with pytest.raises(InputError, match="--output-channel"):
        import_bundle(BundleImport(str(multi), str(tmp_path / "pkg")))
    pkg = import_bundle(BundleImport(str(multi), str(tmp_path / "pkg"), output_channel=2))
    assert pkg.card.network_io["channels"] == [2] and pkg.card.network_io["activation"] == "sigmoid"
    assert not (tmp_path / "pkg" / "model.pt").exists()


def test_imported_bundle_segments(tmp_path):
    """The imported bundle runs through the pipeline; its z-score (non-zero voxels) is applied."""
    import numpy as np
    import SimpleITK as sitk

    from BrainMetSegLib.pipeline import SegmentConfig, Segmenter
    from BrainMetSegLib.preprocess import PreprocessConfig, preprocess
    from conftest import make_volume

    pkg = import_bundle(BundleImport(str(write_bundle(tmp_path / "bundle")), str(tmp_path / "pkg")))
    image = make_volume((24, 30, 28), (1.5, 1.5, 2.0))
    pre = preprocess([image], PreprocessConfig(spacing_mm=(1.5, 1.5, 2.0), brain_mask="none",
                                               normalisation=pkg.card.normalisation))
    inside = pre.array[0][pre.array[0] != 0]
    assert abs(float(inside.mean())) < 1e-3 and abs(float(inside.std()) - 1) < 1e-3
    sitk.WriteImage(image, str(tmp_path / "case.nii.gz"))
    result = Segmenter(SegmentConfig(device="cpu", precision="fp32", brain_mask="none"),
                       package=load_package(pkg.folder)).run(str(tmp_path / "case.nii.gz"))
    prob = sitk.GetArrayFromImage(result.probability)
    assert prob.shape == (24, 30, 28) and np.isfinite(prob).all() and 0 <= prob.min() <= prob.max() <= 1
