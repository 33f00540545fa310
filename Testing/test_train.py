"""Training pipeline: datasets, geometry check, cache, QC, loop, resume, DDP, package round trip.

Tiny phantoms (40^3 voxels at 1.5 mm: a noisy ellipsoid "brain" with bright spheres)
and a tiny BasicUNet keep the whole file well under two minutes on one CPU core.
"""

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

from BrainMetSegLib.errors import InputError, ModelError, OutputError
from BrainMetSegLib.train.dataset import check_geometry, kfold_split, load_dataset

TINY_NET = ["--architecture", "BasicUNet", "--arch-args", '{"features": [4, 4, 8, 16, 32, 4], "dropout": 0.5}']
FAST = ["--spacing", "1.5", "--patch", "32", "--batch-size", "2", "--brain-mask", "none", "--threads", "1",
        "--seed", "3"]


def _phantom(rng: np.random.Generator, shape=(40, 40, 40)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    zz, yy, xx = np.indices(shape)
    c = np.array(shape) / 2
    brain = ((zz - c[0]) / 17) ** 2 + ((yy - c[1]) / 18) ** 2 + ((xx - c[2]) / 16) ** 2 <= 1
    image = np.where(brain, 100.0, 0.0) + rng.normal(0, 8, shape) * brain
    label = np.zeros(shape, np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        r = rng.uniform(2.5, 5)
        p = c + rng.uniform(-8, 8, 3)
        ball = (zz - p[0]) ** 2 + (yy - p[1]) ** 2 + (xx - p[2]) ** 2 <= r * r
        label[ball & brain] = 1
    image[label > 0] += 90
    return image.astype(np.float32), label, brain.astype(np.uint8)


def _write(array, path: Path, spacing=1.5, origin=(0.0, 0.0, 0.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((spacing,) * 3)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def make_dataset(root: Path, n: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, label, brain = _phantom(rng)
        _write(image, root / "imagesTr" / f"case{i}_0000.nii.gz")
        _write(label, root / "labelsTr" / f"case{i}.nii.gz")
        _write(brain, root / "brainmasksTr" / f"case{i}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CE-T1"}, "labels": {"background": 0, "metastasis": 1},
        "numTraining": n, "file_ending": ".nii.gz", "name": "tiny test phantoms"}))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny"))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``brainmetseg`` in this process (no interpreter start-up, torch already imported)."""
    from BrainMetSegLib.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_nnunet_and_manifest_reading(data, tmp_path):
    ds = load_dataset(data)
    assert ds.sequences == ["t1ce"] and len(ds.cases) == 6
    assert ds.cases[0].brain_mask is not None
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "t1ce", "label", "split"])
        for c in ds.cases:
            w.writerow([c.case_id, c.images[0], c.label, "val" if c.case_id == "case0" else "train"])
    m = load_dataset(manifest)
    assert [c.case_id for c in m.cases] == [c.case_id for c in ds.cases]
    assert m.cases[0].split == "val"
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,t1ce,label\nx,missing.nii.gz,missing.nii.gz\n")
    with pytest.raises(InputError, match="not found"):
        load_dataset(bad)


def test_kfold_is_a_partition():
    ids = [f"c{i}" for i in range(11)]
    vals = [kfold_split(ids, 5, k, seed=1)[1] for k in range(5)]
    assert sorted(sum(vals, [])) == sorted(ids)
    assert kfold_split(ids, 5, 2, seed=1) == kfold_split(list(reversed(ids)), 5, 2, seed=1)


def test_geometry_check_catches_shifted_label(data, tmp_path):
    import shutil

    copy = shutil.copytree(data, tmp_path / "copy")
    label = sitk.ReadImage(str(copy / "labelsTr" / "case2.nii.gz"))
    label.SetOrigin((3.0, 0.0, 0.0))
    sitk.WriteImage(label, str(copy / "labelsTr" / "case2.nii.gz"))
    issues = check_geometry(load_dataset(copy).cases)
    assert [i.case_id for i in issues] == ["case2"]
    assert "origin shifted by 3 mm" in str(issues[0])


def test_inflation_of_torchvision_resnet34():
    from BrainMetSegLib.architectures import build_network
    from BrainMetSegLib.train.init import inflate_conv, inflate_into

    # A fake torchvision ResNet-34 state dict: right names and shapes, random values.
    g = torch.Generator().manual_seed(0)
    state = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=g), "fc.weight": torch.randn(1000, 512)}
    for name, n in (("bn1", 64),):
        state.update({f"{name}.weight": torch.rand(n), f"{name}.bias": torch.rand(n),
                      f"{name}.running_mean": torch.rand(n), f"{name}.running_var": torch.rand(n)})
    widths, cin = (64, 128, 256, 512), 64
    for li, (blocks, w) in enumerate(zip((3, 4, 6, 3), widths, strict=True), start=1):
        for b in range(blocks):
            p = f"layer{li}.{b}."
            state[p + "conv1.weight"] = torch.randn(w, cin if b == 0 else w, 3, 3, generator=g)
            state[p + "conv2.weight"] = torch.randn(w, w, 3, 3, generator=g)
            for bn in ("bn1", "bn2"):
                state.update({f"{p}{bn}.weight": torch.rand(w), f"{p}{bn}.bias": torch.rand(w)})
            if b == 0 and li > 1:
                state[p + "downsample.0.weight"] = torch.randn(w, cin, 1, 1)
        cin = w
    net = build_network("FlexibleUNet", 2, 1, {"backbone": "resnet34", "dropout": 0.5})
    report = inflate_into(net, state)
    sd = net.state_dict()
    assert sd["encoder.conv1.weight"].shape == (64, 2, 7, 7, 7)
    # A volume of identical slices gives the 2D response: depth-sum of the 3D kernel = 2D kernel.
    torch.testing.assert_close(sd["encoder.layer2.0.conv1.weight"].sum(2), state["layer2.0.conv1.weight"])
    torch.testing.assert_close(sd["encoder.conv1.weight"].sum(dim=(1, 2)), state["conv1.weight"].sum(1))
    torch.testing.assert_close(sd["encoder.layer4.2.bn2.bias"], state["layer4.2.bn2.bias"])
    assert "fc.weight" in report.skipped and "layer2.0.downsample.0.weight" in report.skipped
    assert inflate_conv(torch.ones(1, 1, 3, 3)).shape == (1, 1, 3, 3, 3)
    slim = build_network("FlexibleUNet", 1, 1, {"backbone": "resnet34_w16"})
    with pytest.raises(ModelError, match="do not fit"):
        inflate_into(slim, state)


def test_train_reduces_loss_resumes_and_round_trips(data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", str(data), "-o", str(out), *TINY_NET, *FAST, "--iters-per-epoch", "6",
            "--val-every", "2", "--lr", "3e-3", "--no-augment", "--infer-patch", "48"]
    code, _, err = run_cli(capsys, *args, "--epochs", "2")
    assert code == 0, err
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert "val_sensitivity" in rows[1] and "val_fp_per_case" in rows[1]
    assert (out / "curves.png").stat().st_size > 0 and (out / "qc" / "histograms.png").is_file()
    assert (out / "qc" / "case0_ch0.png").is_file()
    # A second run into the same folder needs --resume; resume continues at epoch 3.
    code, _, err = run_cli(capsys, *args, "--epochs", "2")
    assert code == OutputError.exit_code and "--resume" in err
    code, out_text, err = run_cli(capsys, *args, "--epochs", "3", "--resume", "--lr", "1e-3")
    assert code == 0, err
    assert "resumed from" in out_text and "val Dice" in out_text
    assert "learning rate 0.003 -> 0.001" in out_text and "chosen again" not in out_text
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert int(rows[2]["step"]) == 18
    # Another validation split: its scores do not compare with the old best.
    code, out_text, err = run_cli(capsys, *args, "--epochs", "4", "--resume", "--lr", "1e-3", "--fold", "1")
    assert code == 0, err
    assert "chosen again" in out_text
    # The package loads as is and segments a case through the inference pipeline.
    from BrainMetSegLib.models import load_package
    from BrainMetSegLib.staging import default_file_mode

    package = load_package(out / "model")
    assert (package.weights_path.stat().st_mode & 0o777) == default_file_mode()  # not private 0600
    card = package.card
    assert card.trained and card.recipe["lr"] == 1e-3 and card.validation["epoch"] == 4
    assert 0 < card.threshold < 1 and card.spacing_mm == [1.5, 1.5, 1.5]
    package.load_network()
    code, _, err = run_cli(capsys, "segment", str(data / "imagesTr" / "case0_0000.nii.gz"), "-o",
                           str(tmp_path / "seg"), "--model", str(out / "model"), "--brain-mask", "none",
                           "--device", "cpu", "--progress", "none")
    assert code == 0, err
    labels = sitk.ReadImage(str(tmp_path / "seg" / "lesion_labels.nii.gz"))
    assert labels.GetSize() == (40, 40, 40)


def test_ddp_two_gloo_processes_agree(data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29500 + os.getpid() % 1000), "-m", "BrainMetSegLib", "train", str(data), "-o", str(out),
           *TINY_NET, *FAST, "--iters-per-epoch", "2", "--epochs", "1", "--fold", "all", "--threshold", "0.5",
           "--min-volume", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    hashes = [(out / f"weights_rank{k}.sha256").read_text().strip() for k in (0, 1)]
    assert hashes[0] == hashes[1]
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert rows[0]["iterations"] == "2"
    from BrainMetSegLib.models import load_package

    load_package(out / "model").load_network()


def _two_lesion_case() -> dict:
    """A 64^3 case with a large (r 8) and a tiny (r 1.5) lesion far apart; image 1 / 2 inside them."""
    zz, yy, xx = np.indices((64, 64, 64))
    big = (zz - 16) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2 <= 64
    small = (zz - 48) ** 2 + (yy - 48) ** 2 + (xx - 48) ** 2 <= 2.25
    label = (big | small).astype(np.uint8)
    image = (big + 2.0 * small).astype(np.float32)[None]
    return {"image": image, "label": label, "brain": np.ones_like(label), "fg": np.flatnonzero(label),
            "bg": np.flatnonzero(label == 0)}


@pytest.mark.parametrize("mode, low, high", [("voxel", 0.0, 0.1), ("lesion", 0.35, 0.65)])
def test_lesion_balanced_sampling(mode, low, high):
    from BrainMetSegLib.train.augment import AugmentConfig
    from BrainMetSegLib.train.sampling import PatchBatches, lesion_centres

    case = _two_lesion_case()
    assert sorted(len(c) for c in lesion_centres(case)) == [int((case["image"][0] == 2).sum()),
                                                             int((case["image"][0] == 1).sum())]
    batches = PatchBatches([case], (16, 16, 16), batch_size=1, batches_per_epoch=200, pos_fraction=1.0,
                           augment=AugmentConfig(0, 0, gamma_prob=0), seed=0, pos_sampling=mode)
    small = [float(batches[i][0].max()) == 2.0 for i in range(len(batches))]
    assert low <= np.mean(small) <= high


@pytest.mark.parametrize("fraction, low, high", [(0.0, 0.0, 0.15), (0.5, 0.4, 0.75)])
def test_hard_negative_patches_centre_on_bright_non_lesion_voxels(fraction, low, high):
    """Negative patches: with --hard-negatives F, about F of them contain the bright vessel."""
    from BrainMetSegLib.train.augment import AugmentConfig
    from BrainMetSegLib.train.sampling import PatchBatches

    case = _two_lesion_case()
    zz, yy, xx = np.indices(case["label"].shape)
    vessel = ((yy - 40) ** 2 + (xx - 12) ** 2 <= 2) & (zz > 30)  # bright tube far from both lesions
    case["image"][0][vessel] = 5.0
    case["bg"] = np.flatnonzero(case["label"] == 0)
    batches = PatchBatches([case], (12, 12, 12), batch_size=1, batches_per_epoch=200, pos_fraction=0.0,
                           augment=AugmentConfig(0, 0, gamma_prob=0), seed=0,
                           hard_negative_fraction=fraction)
    with_vessel = [float(batches[i][0].max()) == 5.0 for i in range(len(batches))]
    assert low <= np.mean(with_vessel) <= high


def test_blob_loss_weighs_a_missed_small_lesion_like_a_large_one():
    """Missing the 8-voxel lesion beside a found 216-voxel one: global Dice barely moves,
    the blob loss (per-lesion mean) rises by about half of one lesion's loss."""
    import torch

    from BrainMetSegLib.train.losses import SegmentationLoss, blob_loss

    labels = torch.zeros(1, 1, 20, 20, 20)
    labels[0, 0, 2:4, 2:4, 2:4] = 1
    labels[0, 0, 10:16, 10:16, 10:16] = 1
    both = torch.where(labels > 0, 12.0, -12.0)
    missed_small = both.clone()
    missed_small[0, 0, 2:4, 2:4, 2:4] = -12.0
    global_loss = SegmentationLoss()
    assert float(global_loss(missed_small, labels) - global_loss(both, labels)) < 0.1
    assert float(blob_loss(both, labels)) < 0.01
    assert 0.45 < float(blob_loss(missed_small, labels)) < 1.1
    with_blob = SegmentationLoss(lambda_blob=1.0)
    assert float(with_blob(missed_small, labels)) > float(global_loss(missed_small, labels)) + 0.4
    logits = missed_small.clone().requires_grad_()
    blob_loss(logits, labels).backward()
    assert float(logits.grad[0, 0, 2:4, 2:4, 2:4].sum()) < 0  # pushes the small lesion up
    empty = torch.zeros_like(labels)
    assert float(blob_loss(both, empty)) == 0.0


def test_init_from_package_and_checkpoint(tiny_model, tmp_path):
    """3D initialisation takes tensors by name and shape, optionally filtered by a regex."""
    from BrainMetSegLib.architectures import build_network
    from BrainMetSegLib.train.init import init_from_weights
    from BrainMetSegLib.train.loop import save_checkpoint

    source = tiny_model.load_network()
    torch.manual_seed(1)
    net = build_network("BasicUNet", 1, 1, {"features": [4, 4, 8, 8, 16, 4]})
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    report = init_from_weights(net, tiny_model.folder, select=r"^conv_0\.")
    state = net.state_dict()
    assert report.loaded and all(k.startswith("conv_0.") for k in report.loaded)
    for key, value in state.items():
        expected = source.state_dict()[key] if key in report.loaded else fresh[key]
        assert torch.equal(value, expected), key
    # A training checkpoint (model.* and optim.* tensors) into a wider network: shapes decide.
    save_checkpoint(tmp_path / "ckpt", "last", source, None, {"epoch": 1})
    wider = build_network("BasicUNet", 1, 1, {"features": [4, 4, 8, 8, 32, 4]})
    report = init_from_weights(wider, tmp_path / "ckpt" / "last.safetensors")
    assert "conv_0.conv_0.conv.weight" in report.loaded and report.missing and report.skipped
    with pytest.raises(ModelError, match="no tensor fits"):
        init_from_weights(wider, tiny_model.folder, select="^nothing")
    (tmp_path / "x.pt").write_bytes(b"")
    with pytest.raises(InputError, match="model package folder or a .safetensors"):
        init_from_weights(wider, tmp_path / "x.pt")


@pytest.mark.parametrize("name, args", [
    ("BasicUNet", {"features": [4, 4, 8, 8, 16, 4]}),
    ("FlexibleUNet", {"backbone": "resnet10_w16", "decoder_channels": [32, 16, 16, 8, 8]}),
])
def test_output_prior_starts_at_the_prior(name, args):
    from BrainMetSegLib.architectures import build_network, init_output_prior

    torch.manual_seed(0)
    net = build_network(name, 1, 1, args).eval()
    init_output_prior(net, 0.01)
    with torch.no_grad():
        p = torch.sigmoid(net(torch.randn(1, 1, 32, 32, 32)))
    assert 0.005 < float(p.min()) and float(p.max()) < 0.02
    with pytest.raises(ValueError):
        init_output_prior(net, 1.0)


def test_kept_checkpoints_are_averaged_into_the_package(data, tmp_path, capsys):
    from safetensors.torch import load_file

    from BrainMetSegLib.models import load_package
    from BrainMetSegLib.train.averaging import average_states, kept_checkpoints

    out = tmp_path / "avg"
    args = ["train", str(data), "-o", str(out), *TINY_NET, *FAST, "--iters-per-epoch", "3", "--val-every", "3",
            "--lr", "3e-3", "--no-augment", "--infer-patch", "48", "--epochs", "3"]
    code, _, err = run_cli(capsys, *args, "--average-last", "2")
    assert code != 0 and "--keep-every" in err  # nothing to average without kept checkpoints
    code, _, err = run_cli(capsys, *args, "--keep-every", "2", "--average-last", "2")
    assert code != 0 and "fewer than 2 checkpoints" in err  # 3 epochs keep only epoch 2
    code, out_text, err = run_cli(capsys, *args, "--keep-every", "1", "--average-last", "2")
    assert code == 0, err
    kept = kept_checkpoints(out / "checkpoints")
    assert [e for e, _ in kept] == [1, 2, 3]
    assert "mean of the checkpoints of epochs [2, 3]" in out_text
    e2, e3 = (load_file(str(p)) for _, p in kept[1:])
    packaged = load_package(out / "model")
    assert packaged.card.validation["weights"] == "mean of epochs [2, 3]"
    weights = load_file(str(packaged.weights_path))
    name = next(k for k, v in e3.items() if v.is_floating_point() and not torch.equal(v, e2[k]))
    expected = (e2[name].double() + e3[name].double()) / 2
    assert torch.allclose(weights[name[6:]].double(), expected, atol=1e-6)
    assert not torch.equal(weights[name[6:]], e3[name][...])  # not the last epoch's weights
    with pytest.raises(InputError, match="not one run"):
        other = tmp_path / "other.safetensors"
        from safetensors.torch import save_file
        save_file({"model.x": torch.zeros(2)}, str(other))
        average_states([kept[0][1], other])


@pytest.mark.parametrize(("option", "says"), [
    ({"lr": float("nan")}, "--lr must be a finite number"),
    ({"architecture_args": {"dropout": float("nan")}}, "--dropout must be a finite number"),
    ({"betas": (float("nan"), 0.9)}, "--betas"),
    ({"eps": -1.0}, "--eps must be > 0"),
    ({"epochs": 0}, "--epochs must be >= 1"),
    ({"batch_size": 0}, "--batch-size must be >= 1"),
    ({"val_every": 0}, "--val-every must be >= 1"),
    ({"workers": -1}, "--workers must be >= 0"),
    ({"threads": 0}, "--threads must be >= 1"),
    ({"threshold": float("nan")}, "--threshold must be a finite number"),
    ({"min_lesion_volume_mm3": float("nan")}, "--min-volume"),
    ({"max_minutes": float("nan")}, "--max-minutes"),
    ({"spacing_mm": (1.0, float("nan"), 1.0)}, "--spacing"),
    ({"overlap": 1.0}, "--overlap"),
])
def test_train_numbers_out_of_range_are_refused_before_any_work(option, says):
    """A NaN learning rate, dropout, beta, threshold or minimum volume, a negative eps, 0 batch size,
    validation period or worker count had ended in internal errors; --epochs 0, --threads 0 and a
    flip probability of 2 had trained and written a package."""
    from BrainMetSegLib.errors import OptionError
    from BrainMetSegLib.train.augment import AugmentConfig
    from BrainMetSegLib.train.config import TrainConfig

    with pytest.raises(OptionError, match=says):
        TrainConfig(**option)
    with pytest.raises(OptionError, match="--flip-prob"):
        TrainConfig(augment=AugmentConfig(flip_prob=2.0))
    TrainConfig(threads=2, max_minutes=5.0, threshold=0.5, min_lesion_volume_mm3=0.0)  # in range: accepted
