"""The training loop: the paper's recipe, validation, checkpoints, resume, DDP.

One function, :func:`train`, runs in a single process or in every process started by
``torchrun`` (``WORLD_SIZE`` > 1: ``torch.distributed`` with gloo on CPU, nccl on
CUDA; each rank draws its own batches, gradients are averaged by DDP). Rank 0
validates, writes checkpoints, the log, the curves and the model package.

Output folder::

    OUT/model/                 the model package (model.json + model.safetensors)
    OUT/train_log.csv          one row per epoch: loss, time, validation metrics
    OUT/curves.png             loss and validation curves
    OUT/qc/                    intensity histograms after normalisation, qc.csv
    OUT/geometry_check.csv     image/label pairs whose geometry differs
    OUT/checkpoints/           last.safetensors + last.json (resume), best.safetensors
    OUT/cache/                 preprocessed cases (unless --cache elsewhere)
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import records
from ..errors import InputError, OutputError
from ..inference import autocast
from ..io import write_text
from ..preprocess import PreprocessConfig
from .augment import AugmentConfig
from .cache import CaseCache
from .dataset import (
    GeometryTolerance,
    check_geometry,
    geometry_report_csv,
    load_dataset,
    split_cases,
)
from .losses import SegmentationLoss
from .metrics import case_metrics, summarise
from .sampling import PatchBatches, item_seed

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MIN_VOLUMES_MM3 = (0.0, 5.0, 10.0, 20.0)


@dataclass
class TrainConfig:
    """The training recipe; defaults are the paper's (SPEC.md).

    spacing_mm: model grid (x, y, z) mm. patch_size: training patch (x, y, z) voxels.
    iters_per_epoch: optimizer steps per epoch (per rank; the effective batch is
        batch_size x world size). val_every: validate every N epochs (and after the last).
    infer_patch_size: sliding-window size written into the card and used for validation.
    precision: ``auto`` (fp16 autocast + grad scaling on CUDA, fp32 on CPU), ``fp32``, ``bf16``.
    threshold / min_lesion_volume_mm3: a number, or ``None`` to choose them on the
        validation split (best lesion-wise F1).
    output_prior: initial output probability (bias = logit(prior), see
        :func:`~BrainMetSegLib.architectures.init_output_prior`); None or 0 = PyTorch's default.
    init_weights / init_select: start from 3D weights (model package, checkpoint or
        safetensors), optionally only the tensors whose names match the regex ``init_select``.
    max_minutes: stop after this much training time (checked every iteration), then
        validate and package as usual; ``None`` = no limit.
    pos_sampling: how lesion centres are drawn, ``"voxel"`` (the paper) or ``"lesion"``
        (each lesion equally likely; see :mod:`.sampling`).
    hard_negative_fraction: share of the non-lesion patches centred on bright non-lesion
        brain voxels (vessels, sinuses, dura); 0 = the paper (any brain voxel).
    lambda_blob: weight of the per-lesion blob loss added to Dice + BCE (:mod:`.losses`);
        0 = the paper.
    lr: learning rate; a resumed run takes the one given now (a step decay is a resume
        with a smaller ``lr``).
    """

    architecture: str = "FlexibleUNet"
    architecture_args: dict = field(default_factory=lambda: {"backbone": "resnet34", "dropout": 0.5})
    spacing_mm: tuple[float, float, float] = (0.833, 0.833, 0.833)
    patch_size: tuple[int, int, int] = (128, 128, 128)
    batch_size: int = 4
    pos_fraction: float = 0.5
    pos_sampling: str = "voxel"
    hard_negative_fraction: float = 0.0
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-7
    lambda_dice: float = 1.0
    lambda_bce: float = 1.0
    lambda_blob: float = 0.0
    batch_dice: bool = True
    epochs: int = 100
    iters_per_epoch: int = 250
    val_every: int = 5
    infer_patch_size: tuple[int, int, int] | None = None
    overlap: float = 0.5
    fold: str = "0"
    n_folds: int = 5
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    brain_mask: str = "deepbet"
    encoder_weights: str | None = None
    init_weights: str | None = None
    output_prior: float | None = 0.01
    init_select: str | None = None
    threshold: float | None = None
    min_lesion_volume_mm3: float | None = None
    max_minutes: float | None = None
    max_val_cases: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def setup_distributed(device: str) -> Distributed:
    """Join the process group ``torchrun`` describes (env vars), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo", init_method="env://")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def state_hash(net: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict (name, dtype, bytes), in name order."""
    digest = hashlib.sha256()
    for key, value in sorted(net.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(value.dtype).encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Checkpoints: safetensors (tensors) + JSON (counters, config, history); no pickle.


def save_checkpoint(folder: Path, name: str, net, optimizer, meta: dict) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    groups = []
    if optimizer is not None:
        state = optimizer.state_dict()
        for idx, slots in state["state"].items():
            for slot, value in slots.items():
                tensors[f"optim.{idx}.{slot}"] = torch.as_tensor(value).detach().cpu().contiguous()
        groups = state["param_groups"]
    tmp = folder / f".{name}.safetensors.part"
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / f"{name}.safetensors")
    write_text(json.dumps({**meta, "param_groups": groups}, indent=1, default=float) + "\n",
               folder / f"{name}.json", overwrite=True)


def load_checkpoint(folder: Path, name: str, net, optimizer) -> dict:
    from safetensors.torch import load_file

    path = folder / f"{name}.safetensors"
    meta_path = folder / f"{name}.json"
    if not path.is_file() or not meta_path.is_file():
        raise InputError(f"{folder}: no checkpoint {name}.safetensors/{name}.json to resume from.")
    tensors = load_file(str(path))
    meta = records.read(meta_path, "the checkpoint record", {"param_groups": records.array(records.obj())})
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    if optimizer is not None and meta.get("param_groups"):
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, slot = key.split(".", 2)
                state.setdefault(int(idx), {})[slot] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta


# --------------------------------------------------------------------------------------------


def choose_operating_point(probs: list[np.ndarray], labels: list[np.ndarray], spacing_xyz,
                           threshold: float | None, min_volume: float | None) -> tuple[float, float]:
    """Threshold and minimum lesion volume with the best lesion-wise F1 on validation cases
    (ties: threshold nearest 0.5, then the smaller volume). Given values are kept."""
    thresholds = THRESHOLDS if threshold is None else (threshold,)
    volumes = MIN_VOLUMES_MM3 if min_volume is None else (min_volume,)
    best = None
    for t in thresholds:
        for v in volumes:
            s = summarise([case_metrics(p, lab, spacing_xyz, t, v) for p, lab in zip(probs, labels, strict=True)])
            key = (round(s["lesion_f1"], 6), -abs(t - 0.5), -v)
            if best is None or key > best[0]:
                best = (key, t, v)
    return best[1], best[2]


def validate(net, cases: list[dict], config: TrainConfig, device: str, threshold: float,
             min_volume: float) -> tuple[dict, list[np.ndarray]]:
    """Sliding-window prediction (the inference code) on each validation case; metrics + probs."""
    from ..inference import InferenceConfig, predict

    infer = InferenceConfig(patch_size=tuple(config.infer_patch_size or config.patch_size),
                            overlap=config.overlap, device=device,
                            precision="fp32" if config.precision == "fp32" else config.precision)
    probs, results = [], []
    for case in cases:
        prob = predict(net, case["image"], infer)
        prob[~case["brain"]] = 0.0  # gated by the dilated brain mask, as the pipeline does
        probs.append(prob)
        results.append(case_metrics(prob, case["label"], case["spacing_xyz"], threshold, min_volume))
    net.train()
    # A ceiling well under 1 means the head cannot say "lesion" with confidence (e.g. lesions
    # encoded as all-zero features: the logit is then capped at the head's bias).
    return {**summarise(results), "max_probability": max((float(p.max()) for p in probs), default=0.0)}, probs


def _write_log(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(buf.getvalue(), path, overwrite=True)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Training loss and validation metrics per epoch (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = [int(r["epoch"]) for r in rows]
    axes[0].plot(epochs, [float(r["train_loss"]) for r in rows], "-o", ms=3)
    axes[0].set_title("training loss (see the card recipe's loss)")
    val = [r for r in rows if r.get("val_dice_mean") not in (None, "")]
    if val:
        ve = [int(r["epoch"]) for r in val]
        axes[1].plot(ve, [float(r["val_dice_mean"]) for r in val], "-o", ms=3, label="voxel Dice (mean)")
        axes[1].plot(ve, [float(r["val_sensitivity"]) for r in val], "-s", ms=3, label="lesion sensitivity")
        axes[1].plot(ve, [float(r["val_lesion_f1"]) for r in val], "-^", ms=3, label="lesion F1")
        axes[1].set_ylim(0, 1)
        axes[1].legend(fontsize=8)
        axes[2].plot(ve, [float(r["val_fp_per_case"]) for r in val], "-o", ms=3, color="tab:red")
    axes[1].set_title("validation (threshold 0.5)")
    axes[2].set_title("validation false positives per case")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.part.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def _training_data_text(dataset, train_ids, val_ids, excluded) -> str:
    desc = dataset.description or {}
    synth = desc.get("synthetic")
    text = (f"{len(train_ids)} training and {len(val_ids)} validation cases from {dataset.source.name}"
            + (f" ({desc['name']})" if desc.get("name") else ""))
    if synth:
        text += (f"; synthetic phantoms written by {synth.get('generator', 'brainmetseg synth')} "
                 f"version {synth.get('version')} with seed {synth.get('seed')}")
    if excluded:
        text += f"; {len(excluded)} case(s) excluded by the geometry check"
    return text + "."


def train(source: str | Path, outdir: str | Path, config: TrainConfig, *, name: str = "brainmetseg-custom",
          version: str = "0.1.0", resume: bool = False, force: bool = False, overwrite: bool = False,
          cache_dir: str | Path | None = None, card_extra: dict | None = None,
          log: Callable[[str], None] = print) -> Path | None:
    """Train a model package on a labelled dataset; returns the package folder (rank 0) or None."""
    from ..architectures import build_network, init_output_prior, patch_size_problem
    from ..inference import resolve_device
    from ..models import ModelCard, save_package

    for option, patch in (("--patch", config.patch_size), ("--infer-patch", config.infer_patch_size)):
        problem = None if patch is None else patch_size_problem(config.architecture, patch,
                                                                 config.architecture_args)
        if problem:
            raise InputError(f"{option}: {problem}.")
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    dist = setup_distributed(device)
    if device == "cuda":
        torch.cuda.set_device(dist.local_rank)
    outdir = Path(outdir)
    ckpt_dir = outdir / "checkpoints"
    package_dir = outdir / "model"
    if not resume and (ckpt_dir / "last.json").exists() and not overwrite:
        raise OutputError(f"{outdir}: holds a training run already; pass --resume to continue it "
                          "or --overwrite to start again.")
    if package_dir.exists() and any(package_dir.iterdir()) and not (overwrite or resume):
        raise OutputError(f"{package_dir}: exists; pass --overwrite to replace it.")
    say = log if dist.main else (lambda _msg: None)
    outdir.mkdir(parents=True, exist_ok=True)

    # Data: read, check geometry, split, preprocess into the cache, QC.
    dataset = load_dataset(source)
    issues = check_geometry(dataset.cases, GeometryTolerance())
    bad = sorted({i.case_id for i in issues})
    if dist.main:
        write_text(geometry_report_csv(issues), outdir / "geometry_check.csv", overwrite=True)
    for issue in issues:
        say(f"geometry mismatch: {issue}")
    if bad and not force:
        say(f"{len(bad)} case(s) excluded for geometry mismatches (listed in "
            f"{outdir / 'geometry_check.csv'}); --force keeps them.")
        dataset.cases = [c for c in dataset.cases if c.case_id not in bad]
        if not dataset.cases:
            raise InputError(f"{source}: every case has an image/label geometry mismatch "
                             f"(see {outdir / 'geometry_check.csv'}).")
    train_cases, val_cases = split_cases(dataset, config.fold, config.n_folds, config.seed)
    if config.max_val_cases is not None:
        val_cases = val_cases[: config.max_val_cases]
    if not train_cases:
        raise InputError(f"{source}: no training cases left after the split.")
    pre = PreprocessConfig(spacing_mm=tuple(config.spacing_mm), brain_mask=config.brain_mask,
                           device=device)
    cache = CaseCache(cache_dir or outdir / "cache", pre)
    everything = train_cases + val_cases
    t0 = time.perf_counter()
    for case in everything[dist.rank::dist.world]:
        cache.ensure(case)
    dist.barrier()
    train_data = [cache.load(c) for c in train_cases]
    val_data = [cache.load(c) for c in val_cases]
    say(f"{len(train_cases)} training / {len(val_cases)} validation cases preprocessed "
        f"({time.perf_counter() - t0:.0f} s, cache {cache.folder})")
    if dist.main:
        from .qc import case_qc, flag_outliers, write_qc

        items = flag_outliers([q for c, d in zip(everything, train_data + val_data, strict=True)
                               for q in case_qc(c.case_id, d["image"], d["brain"])])
        write_qc(items, outdir / "qc")
        for q in items:
            if q.outlier:
                say(f"QC: {q.case_id} channel {q.channel} intensity outlier: {'; '.join(q.reasons)}")

    # Network, encoder initialisation, optimiser, loss.
    torch.manual_seed(config.seed)
    in_channels = len(dataset.sequences)
    net = build_network(config.architecture, in_channels, 1, config.architecture_args).to(device)
    if config.output_prior:
        init_output_prior(net, config.output_prior)
    if config.encoder_weights and not resume:
        from .init import init_encoder

        report = init_encoder(net, config.encoder_weights)
        say(f"encoder initialised from {config.encoder_weights}: {len(report.loaded)} tensors inflated, "
            f"{len(report.skipped)} skipped")
    if config.init_weights and not resume:
        from .init import init_from_weights

        report = init_from_weights(net, config.init_weights, config.init_select)
        say(f"initialised from {config.init_weights}: {len(report.loaded)} tensors taken, "
            f"{len(report.missing)} start afresh")
    loss_fn = SegmentationLoss(config.lambda_dice, config.lambda_bce, config.batch_dice, config.lambda_blob)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    scaler = torch.amp.GradScaler("cuda", enabled=device == "cuda" and config.precision == "auto")
    val_ids = [c.case_id for c in val_cases]
    meta = {"epoch": 0, "step": 0, "best": -math.inf, "best_epoch": None, "history": [],
            "train_seconds": 0.0, "val_case_ids": val_ids}
    if resume:
        meta = load_checkpoint(ckpt_dir, "last", net, optimizer)
        say(f"resumed from {ckpt_dir / 'last.safetensors'} after epoch {meta['epoch']}")
        for group in optimizer.param_groups:
            if group["lr"] != config.lr:
                say(f"learning rate {group['lr']:g} -> {config.lr:g}")
                group["lr"] = config.lr
        if meta.get("val_case_ids") != val_ids:
            # Scores on another validation set do not compare: the best is chosen afresh.
            say("validation cases differ from the run's: the best checkpoint is chosen again from now on")
            meta.update(best=-math.inf, best_epoch=None, val_case_ids=val_ids)
    model = net
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[dist.local_rank] if device == "cuda" else None)

    patch_zyx = tuple(config.patch_size[::-1])
    batches = PatchBatches(train_data, patch_zyx, config.batch_size, config.iters_per_epoch * dist.world,
                           config.pos_fraction, config.augment, seed=config.seed,
                           pos_sampling=config.pos_sampling,
                           hard_negative_fraction=config.hard_negative_fraction)
    sampler = torch.utils.data.distributed.DistributedSampler(
        batches, num_replicas=dist.world, rank=dist.rank, shuffle=False)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=sampler,
                                         num_workers=config.workers,
                                         persistent_workers=False, pin_memory=device == "cuda")
    threshold = 0.5 if config.threshold is None else config.threshold
    min_volume = 0.0 if config.min_lesion_volume_mm3 is None else config.min_lesion_volume_mm3
    history: list[dict] = meta["history"]
    best_probs: list[np.ndarray] | None = None
    start = time.perf_counter() - float(meta.get("train_seconds", 0.0))
    out_of_time = False
    net.train()
    for epoch in range(int(meta["epoch"]) + 1, config.epochs + 1):
        batches.set_epoch(epoch)
        torch.manual_seed(item_seed(config.seed, epoch, 1_000_000 + dist.rank))  # dropout
        t_epoch, losses = time.perf_counter(), []
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            with autocast(device, config.precision):
                logits = model(images)
            loss = loss_fn(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
            meta["step"] = int(meta["step"]) + 1
            if config.max_minutes:
                # Every rank must stop at the same iteration, or DDP's all-reduce would hang.
                over = torch.tensor([int(time.perf_counter() - start > 60 * config.max_minutes)])
                if dist.world > 1:
                    torch.distributed.all_reduce(over, op=torch.distributed.ReduceOp.MAX)
                if over.item():
                    out_of_time = True
                    break
        # Iterations differ between ranks only when the time limit hits; agree on the mean loss.
        loss_t = torch.tensor([float(np.mean(losses)) if losses else float("nan")])
        if dist.world > 1:
            torch.distributed.all_reduce(loss_t)
            loss_t /= dist.world
        row = {"epoch": epoch, "step": meta["step"], "train_loss": float(loss_t),
               "iterations": len(losses), "seconds": time.perf_counter() - t_epoch,
               "seconds_per_iteration": (time.perf_counter() - t_epoch) / max(len(losses), 1)}
        last_epoch = epoch == config.epochs or out_of_time
        if val_data and dist.main and (epoch % config.val_every == 0 or last_epoch):
            t_val = time.perf_counter()
            summary, probs = validate(net, val_data, config, device, threshold, min_volume)
            row.update({f"val_{k}": v for k, v in summary.items() if k != "cases"})
            row["val_seconds"] = time.perf_counter() - t_val
            # ">=": among equal scores the later (longer trained) weights win.
            if summary["lesion_f1"] + summary["dice_mean"] >= meta["best"]:
                meta["best"] = summary["lesion_f1"] + summary["dice_mean"]
                meta["best_epoch"] = epoch
                best_probs = probs
                save_checkpoint(ckpt_dir, "best", net, None, {"epoch": epoch, "summary": summary})
        history.append(row)
        meta.update(epoch=epoch, history=history, train_seconds=time.perf_counter() - start,
                    config=config.to_dict())
        if dist.main:
            save_checkpoint(ckpt_dir, "last", net, optimizer, meta)
            _write_log(outdir / "train_log.csv", history)
            plot_curves(history, outdir / "curves.png")
            say("epoch {epoch}: loss {train_loss:.4f}, {seconds_per_iteration:.2f} s/it".format(**row)
                + ("" if "val_dice_mean" not in row else
                   ", val Dice {val_dice_mean:.3f}, sensitivity {val_sensitivity:.3f}, "
                   "FP/case {val_fp_per_case:.2f}, max p {val_max_probability:.2f}".format(**row)))
        dist.barrier()
        if out_of_time:
            say(f"time limit of {config.max_minutes} min reached after epoch {epoch}.")
            break

    if dist.world > 1:
        # Parameters agree through DDP's gradient averaging; BN running statistics are
        # per rank, so take rank 0's (the ones saved).
        for buf in net.buffers():
            torch.distributed.broadcast(buf, src=0)
    write_text(state_hash(net) + "\n", outdir / f"weights_rank{dist.rank}.sha256", overwrite=True)
    if not dist.main:
        dist.barrier()
        return None

    # Package: best checkpoint when validated, operating point chosen on validation.
    validation: dict = {}
    if val_data:
        if meta.get("best_epoch") is not None and (ckpt_dir / "best.safetensors").is_file():
            load_checkpoint(ckpt_dir, "best", net, None)
        if best_probs is None:  # resumed run: best predictions were not kept in memory
            _, best_probs = validate(net, val_data, config, device, threshold, min_volume)
        spacing = val_data[0]["spacing_xyz"]
        threshold, min_volume = choose_operating_point(
            best_probs, [d["label"] for d in val_data], spacing, config.threshold,
            config.min_lesion_volume_mm3)
        results = [case_metrics(p, d["label"], d["spacing_xyz"], threshold, min_volume)
                   for p, d in zip(best_probs, val_data, strict=True)]
        validation = {"split": f"fold {config.fold} of {config.n_folds}" if not any(c.split for c in dataset.cases)
                      else "manifest split 'val'",
                      "case_ids": val_ids, "epoch": meta.get("best_epoch"),
                      "threshold": threshold, "min_lesion_volume_mm3": min_volume,
                      "matching": "any overlap, 26-connected components, on the model grid",
                      **summarise(results)}
        say(f"validation (epoch {meta.get('best_epoch')}, threshold {threshold}, min volume {min_volume} mm3): "
            f"sensitivity {validation['sensitivity']:.3f}, FP/case {validation['fp_per_case']:.2f}, "
            f"Dice {validation['dice_mean']:.3f}")
    net.eval()
    recipe = {**config.to_dict(), "world_size": dist.world, "epochs_run": meta["epoch"],
              "steps": meta["step"], "train_minutes": round(meta["train_seconds"] / 60, 1),
              "loss": loss_fn.describe(), "optimizer": "Adam",
              "sampling": f"{config.pos_fraction:.0%} of each batch centred on lesion voxels "
                          + ("(each lesion equally likely)" if config.pos_sampling == "lesion"
                             else "(each lesion voxel equally likely)")
                          + (f"; {config.hard_negative_fraction:.0%} of the others centred on bright "
                             "non-lesion voxels (hard negatives)" if config.hard_negative_fraction else "")}
    extra = dict(card_extra or {})
    card = ModelCard(
        name=name, version=version, architecture=config.architecture,
        architecture_args=dict(config.architecture_args), input_sequences=list(dataset.sequences),
        spacing_mm=list(config.spacing_mm), patch_size=list(config.infer_patch_size or config.patch_size),
        overlap=config.overlap, normalisation="zscore-brain", threshold=float(threshold),
        min_lesion_volume_mm3=float(min_volume), trained=True,
        training_data=extra.pop("training_data", _training_data_text(
            dataset, [c.case_id for c in train_cases], [c.case_id for c in val_cases], bad if not force else [])),
        intended_use=extra.pop("intended_use", "Research use: segmentation of enhancing brain metastases "
                                               "on contrast-enhanced T1 MRI."),
        limitations=extra.pop("limitations", "Validated only on the validation split named in 'validation'."),
        validation=validation, recipe=recipe,
    )
    if extra:
        card = dataclasses.replace(card, **extra)
    package = save_package(net.cpu(), card, package_dir, overwrite=True)
    say(f"model package written to {package.folder}")
    dist.barrier()
    return package.folder
