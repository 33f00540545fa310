"""The epoch loop: steps, the time limit, validation of each epoch, checkpoints and the log."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..inference import autocast
from ..options import Device, Precision
from .averaging import kept_name
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .losses import SegmentationLoss
from .run import Run, TrainData
from .sampling import PatchBatches, item_seed
from .validation import plot_curves, validate, write_log


def make_loader(run: Run, config: TrainConfig, train_data: list[dict]):
    """Patch batches (each rank its own share) and their DataLoader."""
    batches = PatchBatches(train_data, tuple(config.patch_size[::-1]), config.batch_size,
                           config.iters_per_epoch * run.dist.world, config.pos_fraction, config.augment,
                           seed=config.seed, pos_sampling=config.pos_sampling,
                           hard_negative_fraction=config.hard_negative_fraction,
                           spacing_zyx=tuple(config.spacing_mm[::-1]))
    sampler = torch.utils.data.distributed.DistributedSampler(
        batches, num_replicas=run.dist.world, rank=run.dist.rank, shuffle=False)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=sampler, num_workers=config.workers,
                                         persistent_workers=False, pin_memory=run.device == Device.CUDA)
    return batches, loader


@dataclass
class Stepper:
    """One optimisation step at a time, and the run's time limit."""

    model: torch.nn.Module
    loss_fn: SegmentationLoss
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    run: Run
    config: TrainConfig
    start: float

    def step(self, images, labels) -> float:
        images, labels = images.to(self.run.device), labels.to(self.run.device)
        with autocast(self.run.device, self.config.precision):
            logits = self.model(images)
        loss = self.loss_fn(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def out_of_time(self) -> bool:
        if not self.config.max_minutes:
            return False
        # Every rank must stop at the same iteration, or DDP's all-reduce would hang.
        over = torch.tensor([int(time.perf_counter() - self.start > 60 * self.config.max_minutes)])
        if self.run.dist.world > 1:
            torch.distributed.all_reduce(over, op=torch.distributed.ReduceOp.MAX)
        return bool(over.item())


def train_epoch(stepper: Stepper, loader, meta: dict, epoch: int) -> tuple[dict, bool]:
    """The epoch's steps; its log row and whether the time limit stopped it."""
    run, t_epoch, losses, out_of_time = stepper.run, time.perf_counter(), [], False
    torch.manual_seed(item_seed(stepper.config.seed, epoch, 1_000_000 + run.dist.rank))  # dropout
    for images, labels in loader:
        losses.append(stepper.step(images, labels))
        meta["step"] = int(meta["step"]) + 1
        if stepper.out_of_time():
            out_of_time = True
            break
    # Iterations differ between ranks only when the time limit hits; agree on the mean loss.
    loss_t = torch.tensor([float(np.mean(losses)) if losses else float("nan")])
    if run.dist.world > 1:
        torch.distributed.all_reduce(loss_t)
        loss_t /= run.dist.world
    seconds = time.perf_counter() - t_epoch
    return {"epoch": epoch, "step": meta["step"], "train_loss": float(loss_t), "iterations": len(losses),
            "seconds": seconds, "seconds_per_iteration": seconds / max(len(losses), 1)}, out_of_time


def _validate_epoch(run: Run, config: TrainConfig, net, data: TrainData, meta: dict, row: dict):
    """Validate; keep the checkpoint and predictions when the score is the best so far (else None)."""
    t_val = time.perf_counter()
    summary, probs = validate(net, data.val, config, run.device, config.validation_point)
    row.update({f"val_{k}": v for k, v in summary.items() if k != "cases"})
    row["val_seconds"] = time.perf_counter() - t_val
    # ">=": among equal scores the later (longer trained) weights win.
    if summary["lesion_f1"] + summary["dice_mean"] < meta["best"]:
        return None
    meta["best"] = summary["lesion_f1"] + summary["dice_mean"]
    meta["best_epoch"] = row["epoch"]
    save_checkpoint(run.checkpoints, "best", net, None, {"epoch": row["epoch"], "summary": summary})
    return probs


def _log_epoch(run: Run, config: TrainConfig, net, optimizer, meta: dict, row: dict) -> None:
    save_checkpoint(run.checkpoints, "last", net, optimizer, meta)
    if config.keep_every and row["epoch"] % config.keep_every == 0:
        save_checkpoint(run.checkpoints, kept_name(row["epoch"]), net, None, {"epoch": row["epoch"]})
    write_log(run.outdir / "train_log.csv", meta["history"])
    plot_curves(meta["history"], run.outdir / "curves.png")
    run.say("epoch {epoch}: loss {train_loss:.4f}, {seconds_per_iteration:.2f} s/it".format(**row)
            + ("" if "val_dice_mean" not in row else
               ", val Dice {val_dice_mean:.3f}, sensitivity {val_sensitivity:.3f}, "
               "FP/case {val_fp_per_case:.2f}, max p {val_max_probability:.2f}".format(**row)))


def train_epochs(run: Run, config: TrainConfig, net, optimizer, data: TrainData, meta: dict, loss_fn):
    """The epoch loop (validation, checkpoints, log on rank 0); the best epoch's validation
    predictions, or None when they are not in memory (no validation, or resumed past it)."""
    model = net
    if run.dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[run.dist.local_rank] if run.device == Device.CUDA else None)
    batches, loader = make_loader(run, config, data.train)
    fp16_scaling = run.device == Device.CUDA and config.precision == Precision.AUTO  # fp16 autocast
    scaler = torch.amp.GradScaler("cuda", enabled=fp16_scaling)
    stepper = Stepper(model, loss_fn, optimizer, scaler, run, config,
                       time.perf_counter() - float(meta.get("train_seconds", 0.0)))
    best_probs = None
    net.train()
    for epoch in range(int(meta["epoch"]) + 1, config.epochs + 1):
        batches.set_epoch(epoch)
        row, out_of_time = train_epoch(stepper, loader, meta, epoch)
        if data.val and run.dist.main and (epoch % config.val_every == 0 or epoch == config.epochs or out_of_time):
            best_probs = _validate_epoch(run, config, net, data, meta, row) or best_probs
        meta["history"].append(row)
        meta.update(epoch=epoch, train_seconds=time.perf_counter() - stepper.start, config=config.to_dict())
        if run.dist.main:
            _log_epoch(run, config, net, optimizer, meta, row)
        run.dist.barrier()
        if out_of_time:
            run.say(f"time limit of {config.max_minutes} min reached after epoch {epoch}.")
            break
    return best_probs
