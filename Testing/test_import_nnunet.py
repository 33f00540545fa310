"""Importing nnU-Net v2 results folders (no nnunetv2 needed: checkpoints are built here with
dynamic_network_architectures and saved the way nnU-Net's trainer saves them)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

pytest.importorskip("dynamic_network_architectures")

from BrainMetSegLib.errors import ModelError  # noqa: E402
from BrainMetSegLib.importers.nnunet import NnUNetImport, import_nnunet  # noqa: E402
from BrainMetSegLib.models import load_package, read_registry  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ARCH = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {
        "n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}


def _net(in_channels: int, classes: int, seed: int):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    kw = dict(ARCH["arch_kwargs"])
    kw.update(conv_op=torch.nn.Conv3d, norm_op=torch.nn.InstanceNorm3d, nonlin=torch.nn.LeakyReLU)
    torch.manual_seed(seed)
    net = PlainConvUNet(input_channels=in_channels, num_classes=classes, deep_supervision=True, **kw)
    with torch.no_grad():  # non-trivial norm affine parameters so aliases/ordering errors show
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def make_results(root: Path, channel_names: dict, labels: dict, folds=(0, 1),
                 use_mask=True, spacing_zyx=(3.0, 2.0, 2.5), patch_zyx=(16, 24, 32),
                 extra: dict | None = None) -> Path:
    """An nnU-Net v2 results folder like nnU-Net's trainer writes it."""
    folder = root / "Dataset777_Test" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    folder.mkdir(parents=True)
    n_in, n_out = len(channel_names), len([k for k in labels if k != "ignore"])
    dataset = {"channel_names": channel_names, "labels": labels, "numTraining": 4, "file_ending": ".nii.gz"}
    plans = {"dataset_name": "Dataset777_Test", "plans_name": "nnUNetPlans",
             "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
             "configurations": {"3d_fullres": {
                 "patch_size": list(patch_zyx), "spacing": list(spacing_zyx),
                 "normalization_schemes": ["ZScoreNormalization"] * n_in,
                 "use_mask_for_norm": [use_mask] * n_in, "architecture": ARCH}}}
    (folder / "dataset.json").write_text(json.dumps(dataset))
    (folder / "plans.json").write_text(json.dumps(plans))
    for f in folds:
        net = _net(n_in, n_out, seed=f)
        ckpt = {"network_weights": net.state_dict(), "optimizer_state": {"state": {}, "param_groups": []},
                "grad_scaler_state": None,
                "logging": {"mean_fg_dice": [np.float32(0.5)], "lrs": [0.01]},
                "_best_ema": np.float32(0.5), "current_epoch": 3,
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": f,
                              "dataset_json": dataset, "device": torch.device("cpu")},
                "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)}
        ckpt.update(extra or {})
        (folder / f"fold_{f}").mkdir()
        torch.save(ckpt, folder / f"fold_{f}" / "checkpoint_final.pth")
    return folder


@pytest.fixture()
def binary_results(tmp_path):
    return make_results(tmp_path / "results", {"0": "CE-T1"}, {"background": 0, "metastasis": 1})


def test_import_card_and_ensemble(binary_results, tmp_path):
    pkg = import_nnunet(NnUNetImport(str(binary_results), str(tmp_path / "pkg")))
    card = pkg.card
    assert card.architecture == "nnUNet" and card.input_sequences == ["t1ce"]
    assert card.spacing_mm == [2.5, 2.0, 3.0] and card.patch_size == [32, 24, 16]  # (x, y, z)
    assert card.normalisation == "nnunet-zscore-masked" and card.blend_mode == "gaussian"
    assert [m["weights"] for m in card.ensemble] == ["fold_0.safetensors", "fold_1.safetensors"]
    for m in card.ensemble:
        from BrainMetSegLib.checksums import sha256_file

        assert sha256_file(pkg.folder / m["weights"]) == m["sha256"]
    assert card.network_io["mirror_axes"] == [0, 1, 2] and card.network_io["channels"] == [1]
    assert card.provenance["source"] == "nnU-Net v2"
    assert set(card.provenance["checkpoint_sha256"]) == {"fold_0", "fold_1"}
    assert not list(pkg.folder.glob("*.pth")), "no pickle in the package"

    # the package's network = mean over folds and 8 mirrorings of nnU-Net's logits, read in RAS
    net = load_package(pkg.folder).load_network("cpu")
    x = torch.randn(1, 1, 16, 24, 32)
    with torch.no_grad():
        got = net(x)
        ras = torch.flip(x, [3, 4])  # LPS (Z, Y, X) -> the voxel order of RAS-stored files
        total = 0
        for seed in (0, 1):
            ref = _net(1, 2, seed)
            ref.decoder.deep_supervision = False
            for axes in ([], [2], [3], [4], [2, 3], [2, 4], [3, 4], [2, 3, 4]):
                out = ref(torch.flip(ras, axes) if axes else ras)
                total = total + (torch.flip(out, axes) if axes else out)
        z = torch.flip(total / 16, [3, 4])
        expected = (z[:, 1] - z[:, 0])[:, None]
    assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())


def test_brats_style_channels_and_enhancing_label(tmp_path):
    results = make_results(tmp_path / "r", {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
                           {"background": 0, "edema": 1, "non-enhancing": 2, "enhancing tumor": 3},
                           folds=(0,), use_mask=False)
    pkg = import_nnunet(NnUNetImport(str(results), str(tmp_path / "pkg"), mirroring=False,
                                     orientation="LPS"))
    assert pkg.card.input_sequences == ["t1ce", "t1", "t2", "flair"]
    assert pkg.card.network_io["input_channels"] == ["t1", "t1ce", "t2", "flair"]
    assert pkg.card.network_io["channels"] == [3] and pkg.card.normalisation == "nnunet-zscore"
    net = load_package(pkg.folder).load_network("cpu")
    x = torch.randn(1, 4, 16, 24, 32)  # pipeline order: t1ce, t1, t2, flair
    with torch.no_grad():
        ref = _net(4, 4, 0)
        ref.decoder.deep_supervision = False
        p = torch.softmax(ref(x[:, [1, 0, 2, 3]]), 1)[:, 3:4]
        got = torch.sigmoid(net(x))
    assert torch.allclose(got, p, atol=1e-5)


def test_label_must_be_chosen_when_ambiguous(tmp_path):
    results = make_results(tmp_path / "r", {"0": "T1ce"}, {"background": 0, "a": 1, "b": 2}, folds=(0,))
    with pytest.raises(Exception, match="--label"):
        import_nnunet(NnUNetImport(str(results), str(tmp_path / "pkg")))
    pkg = import_nnunet(NnUNetImport(str(results), str(tmp_path / "pkg"), label="b"))
    assert pkg.card.network_io["channels"] == [2]


class NotAllowed:
    """A class no checkpoint allow-list names."""

    def __init__(self):
        self.value = 1


class RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_checkpoint_outside_allow_list(tmp_path):
    results = make_results(tmp_path / "r", {"0": "T1ce"}, {"background": 0, "met": 1}, folds=(0,),
                           extra={"trainer": NotAllowed()})
    with pytest.raises(ModelError, match="allow-list"):
        import_nnunet(NnUNetImport(str(results), str(tmp_path / "pkg")))
    assert not (tmp_path / "pkg").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pkg")], "temporary folder left"


def test_refuses_checkpoint_that_would_run_code(tmp_path):
    marker = tmp_path / "ran"
    results = make_results(tmp_path / "r", {"0": "T1ce"}, {"background": 0, "met": 1}, folds=(0,),
                           extra={"logging": RunsCode(str(marker))})
    with pytest.raises(ModelError, match="can run code"):
        import_nnunet(NnUNetImport(str(results), str(tmp_path / "pkg")))
    assert not marker.exists()


def test_refuses_damaged_checkpoint(binary_results, tmp_path):
    path = binary_results / "fold_1" / "checkpoint_final.pth"
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ModelError, match="fold_1.*not a readable PyTorch checkpoint"):
        import_nnunet(NnUNetImport(str(binary_results), str(tmp_path / "pkg")))


def test_tampered_fold_weights_refused_after_import(binary_results, tmp_path):
    pkg = import_nnunet(NnUNetImport(str(binary_results), str(tmp_path / "pkg")))
    weights = pkg.folder / "fold_1.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="fold_1.safetensors: sha256"):
        load_package(pkg.folder).load_network("cpu")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "BrainMetSegLib", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                          timeout=300)


def test_cli_import_list_and_segment(binary_results, tmp_path):
    from conftest import make_volume

    env = {"BRAINMETSEG_MODELS": str(tmp_path / "user_models")}
    r = _cli("models", "import", "nnunet", binary_results, "--fold", "0", "--no-mirroring", "--name", "mine",
             env=env)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "user_models" / "mine"
    assert (folder / "fold_0.safetensors").is_file() and "imported mine" in r.stdout
    assert "RAS: assumed" in r.stderr  # nnU-Net does not record the files' orientation: say so
    again = _cli("models", "import", "nnunet", binary_results, "--name", "mine", env=env)
    assert again.returncode == 4 and "already exists" in again.stderr and "Traceback" not in again.stderr
    missing = _cli("models", "import", "nnunet", tmp_path / "nowhere", "-o", tmp_path / "x", env=env)
    assert missing.returncode == 2 and "nowhere" in missing.stderr and "Traceback" not in missing.stderr

    listing = _cli("models", env=env)
    assert listing.returncode == 0, listing.stderr
    line = next(ln for ln in listing.stdout.splitlines() if ln.startswith("mine"))
    assert "imported from nnU-Net v2 (user folder)" in line
    assert "source=bundled" in listing.stdout

    os.environ["BRAINMETSEG_MODELS"] = env["BRAINMETSEG_MODELS"]
    try:
        assert any(e["name"] == "mine" for e in read_registry())
        from BrainMetSegLib.slicer_bridge.model_menu import model_choices

        assert ("mine", "mine") in model_choices(read_registry())
    finally:
        del os.environ["BRAINMETSEG_MODELS"]

    image = make_volume((24, 30, 28), (2.5, 2.0, 3.0))
    sitk.WriteImage(image, str(tmp_path / "case.nii.gz"))
    seg = _cli("segment", tmp_path / "case.nii.gz", "-o", tmp_path / "out", "--model", "mine",
               "--brain-mask", "none", "--device", "cpu", "--progress", "none", env=env)
    assert seg.returncode == 0, seg.stderr
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["model"]["name"] == "mine"


def test_real_nnunet_checkpoint_needs_only_numpy_scalars(tmp_path):
    """The committed checkpoint written by nnU-Net's own trainer: refused with no extra globals,
    read with the numpy-scalar allow-list, imported (best checkpoint) without nnunetv2."""
    from BrainMetSegLib.importers.checkpoint import load_checkpoint

    results = (REPO / "Testing" / "data" / "nnunet_tiny" / "Dataset902_EasyPhantom"
               / "nnUNetTrainer__nnUNetPlansTiny__3d_fullres")
    with pytest.raises(ModelError, match="allow-list"):
        load_checkpoint(results / "fold_0" / "checkpoint_best.pth", allowed=[])
    pkg = import_nnunet(NnUNetImport(str(results), str(tmp_path / "pkg"), folds=("0",), checkpoint="best"))
    assert pkg.card.provenance["checkpoint"] == "checkpoint_best.pth"
    assert pkg.card.provenance["trainer"] == "nnUNetTrainer" and pkg.card.network_io["tiling"] == "nnunet"
    assert pkg.card.architecture_args["arch_kwargs"]["features_per_stage"] == [4, 8, 16, 32]


def test_imported_nnunet_model_segments_and_evaluates(tmp_path):
    """The nnU-Net model trained here, imported without nnunetv2, through `segment` and
    `evaluate` on its held-out phantom (seed 12345; see test_nnunet_agreement.py)."""
    data = REPO / "Testing" / "data" / "nnunet_tiny"
    results = data / "Dataset902_EasyPhantom" / "nnUNetTrainer__nnUNetPlansTiny__3d_fullres"
    r = _cli("models", "import", "nnunet", results, "--fold", "0", "--no-mirroring", "-o", tmp_path / "pkg")
    assert r.returncode == 0, r.stderr
    seg = _cli("segment", data / "phantom_seed12345_0000.nii.gz", "-o", tmp_path / "pred" / "phantom",
               "--model", tmp_path / "pkg", "--brain-mask", "none", "--device", "cpu", "--progress", "none")
    assert seg.returncode == 0, seg.stderr
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "phantom.nii.gz").write_bytes((data / "phantom_seed12345_label.nii.gz").read_bytes())
    ev = _cli("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "-o", tmp_path / "eval",
              "--no-report", "--progress", "none")
    assert ev.returncode == 0, ev.stderr
    with open(next((tmp_path / "eval").glob("*case*.csv")), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["case_id"] == "phantom" and float(rows[0]["dice"]) > 0.7, rows[0]
