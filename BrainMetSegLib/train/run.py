"""The first training steps: options and output folder, process group, data, network, state."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError, OutputError
from ..options import Device
from ..preprocess import PreprocessConfig
from ..staging import write_text
from .cache import CaseCache
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .dataset import (
    GeometryTolerance,
    check_geometry,
    geometry_report_csv,
    load_dataset,
    split_cases,
)


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


def setup_distributed(device: Device) -> Distributed:
    """Join the process group ``torchrun`` describes (env vars), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == Device.CUDA else "gloo", init_method="env://")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


@dataclass
class Run:
    """Where a training run writes and who it is (rank, device, logger)."""

    outdir: Path
    device: Device
    dist: Distributed
    say: Callable[[str], None]

    @property
    def checkpoints(self) -> Path:
        return self.outdir / "checkpoints"

    @property
    def package(self) -> Path:
        return self.outdir / "model"


@dataclass
class TrainData:
    dataset: object
    train_cases: list
    val_cases: list
    train: list[dict]
    val: list[dict]
    excluded: list[str]

    @property
    def val_ids(self) -> list[str]:
        return [c.case_id for c in self.val_cases]


def open_run(outdir: Path, config: TrainConfig, resume: bool, overwrite: bool,
              log: Callable[[str], None]) -> Run:
    """Check the options and the output folder before any work; join the process group."""
    from ..architectures import patch_size_problem
    from ..inference import resolve_device

    for option, patch in (("--patch", config.patch_size), ("--infer-patch", config.infer_patch_size)):
        problem = None if patch is None else patch_size_problem(config.architecture, patch,
                                                                 config.architecture_args)
        if problem:
            raise InputError(f"{option}: {problem}.")
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    dist = setup_distributed(device)
    if device == Device.CUDA:
        torch.cuda.set_device(dist.local_rank)
    run = Run(Path(outdir), device, dist, log if dist.main else (lambda _msg: None))
    if not resume and (run.checkpoints / "last.json").exists() and not overwrite:
        raise OutputError(f"{run.outdir}: holds a training run already; pass --resume to continue it "
                          "or --overwrite to start again.")
    if run.package.exists() and any(run.package.iterdir()) and not (overwrite or resume):
        raise OutputError(f"{run.package}: exists; pass --overwrite to replace it.")
    run.outdir.mkdir(parents=True, exist_ok=True)
    return run


def _checked_dataset(run: Run, source, force: bool):
    """The dataset with image/label geometry mismatches excluded (unless ``force``)."""
    dataset = load_dataset(source)
    issues = check_geometry(dataset.cases, GeometryTolerance())
    bad = sorted({i.case_id for i in issues})
    report = run.outdir / "geometry_check.csv"
    if run.dist.main:
        write_text(geometry_report_csv(issues), report, overwrite=True)
    for issue in issues:
        run.say(f"geometry mismatch: {issue}")
    if bad and not force:
        run.say(f"{len(bad)} case(s) excluded for geometry mismatches (listed in {report}); --force keeps them.")
        dataset.cases = [c for c in dataset.cases if c.case_id not in bad]
        if not dataset.cases:
            raise InputError(f"{source}: every case has an image/label geometry mismatch (see {report}).")
    return dataset, ([] if force else bad)


def prepare_data(run: Run, source, config: TrainConfig, force: bool, cache_dir) -> TrainData:
    """Read, check geometry, split, preprocess into the cache (ranks share the work), QC."""
    dataset, excluded = _checked_dataset(run, source, force)
    train_cases, val_cases = split_cases(dataset, config.fold, config.n_folds, config.seed)
    if config.max_val_cases is not None:
        val_cases = val_cases[: config.max_val_cases]
    if not train_cases:
        raise InputError(f"{source}: no training cases left after the split.")
    pre = PreprocessConfig(spacing_mm=tuple(config.spacing_mm), brain_mask=config.brain_mask, device=run.device)
    cache = CaseCache(cache_dir or run.outdir / "cache", pre)
    everything = train_cases + val_cases
    t0 = time.perf_counter()
    for case in everything[run.dist.rank::run.dist.world]:
        cache.ensure(case)
    run.dist.barrier()
    data = TrainData(dataset, train_cases, val_cases, [cache.load(c) for c in train_cases],
                 [cache.load(c) for c in val_cases], excluded)
    run.say(f"{len(train_cases)} training / {len(val_cases)} validation cases preprocessed "
            f"({time.perf_counter() - t0:.0f} s, cache {cache.folder})")
    if run.dist.main:
        from .qc import case_qc, flag_outliers, write_qc

        items = flag_outliers([q for c, d in zip(everything, data.train + data.val, strict=True)
                               for q in case_qc(c.case_id, d["image"], d["brain"])])
        write_qc(items, run.outdir / "qc")
        for q in items:
            if q.outlier:
                run.say(f"QC: {q.case_id} channel {q.channel} intensity outlier: {'; '.join(q.reasons)}")
    return data


def build_network(run: Run, config: TrainConfig, in_channels: int, resume: bool) -> torch.nn.Module:
    """The network, its output prior and its starting weights (unless resuming)."""
    from ..architectures import build_network, init_output_prior

    torch.manual_seed(config.seed)
    net = build_network(config.architecture, in_channels, 1, config.architecture_args).to(run.device)
    if config.output_prior:
        init_output_prior(net, config.output_prior)
    if config.encoder_weights and not resume:
        from .init import init_encoder

        report = init_encoder(net, config.encoder_weights)
        run.say(f"encoder initialised from {config.encoder_weights}: {len(report.loaded)} tensors inflated, "
                f"{len(report.skipped)} skipped")
    if config.init_weights and not resume:
        from .init import init_from_weights

        report = init_from_weights(net, config.init_weights, config.init_select)
        run.say(f"initialised from {config.init_weights}: {len(report.loaded)} tensors taken, "
                f"{len(report.missing)} start afresh")
    return net


def start_state(run: Run, config: TrainConfig, net, optimizer, val_ids: list[str], resume: bool) -> dict:
    """Counters and history: fresh, or the last checkpoint's (with the learning rate given now)."""
    meta = {"epoch": 0, "step": 0, "best": -math.inf, "best_epoch": None, "history": [],
            "train_seconds": 0.0, "val_case_ids": val_ids}
    if not resume:
        return meta
    meta = load_checkpoint(run.checkpoints, "last", net, optimizer)
    run.say(f"resumed from {run.checkpoints / 'last.safetensors'} after epoch {meta['epoch']}")
    for group in optimizer.param_groups:
        if group["lr"] != config.lr:
            run.say(f"learning rate {group['lr']:g} -> {config.lr:g}")
            group["lr"] = config.lr
    if meta.get("val_case_ids") != val_ids:
        # Scores on another validation set do not compare: the best is chosen afresh.
        run.say("validation cases differ from the run's: the best checkpoint is chosen again from now on")
        meta.update(best=-math.inf, best_epoch=None, val_case_ids=val_ids)
    return meta
