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

from collections.abc import Callable
from pathlib import Path

import torch

from ..staging import write_text
from .checkpoint import save_checkpoint, state_hash
from .config import TrainConfig
from .epochs import train_epochs
from .losses import SegmentationLoss
from .package import final_validation, recipe, write_package
from .run import build_network, open_run, prepare_data, start_state

__all__ = ["TrainConfig", "save_checkpoint", "train"]


def train(source: str | Path, outdir: str | Path, config: TrainConfig, *, name: str = "brainmetseg-custom",
          version: str = "0.1.0", resume: bool = False, force: bool = False, overwrite: bool = False,
          cache_dir: str | Path | None = None, card_extra: dict | None = None,
          log: Callable[[str], None] = print) -> Path | None:
    """Train a model package on a labelled dataset; returns the package folder (rank 0) or None.

    The steps, in order (nnU-Net's trainer steps): check options and outputs, prepare the data
    (geometry check, split, preprocessing cache, QC), build the network, restore or start the
    state, run the epochs (validation and checkpoints on rank 0), agree on the weights across
    ranks, choose the operating point on validation and write the package.
    """
    run = open_run(Path(outdir), config, resume, overwrite, log)
    data = prepare_data(run, source, config, force, cache_dir)
    net = build_network(run, config, len(data.dataset.sequences), resume)
    loss_fn = SegmentationLoss(config.lambda_dice, config.lambda_bce, config.batch_dice, config.lambda_blob)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    meta = start_state(run, config, net, optimizer, data.val_ids, resume)
    best_probs = train_epochs(run, config, net, optimizer, data, meta, loss_fn)
    if run.dist.world > 1:
        # Parameters agree through DDP's gradient averaging; BN running statistics are
        # per rank, so take rank 0's (the ones saved).
        for buf in net.buffers():
            torch.distributed.broadcast(buf, src=0)
    write_text(state_hash(net) + "\n", run.outdir / f"weights_rank{run.dist.rank}.sha256", overwrite=True)
    if not run.dist.main:
        run.dist.barrier()
        return None
    point, validation = final_validation(run, config, net, data, meta, best_probs)
    net.eval()
    folder = write_package(run, config, net, data, point, validation, recipe(config, run, meta, loss_fn),
                            name, version, card_extra)
    run.dist.barrier()
    return folder
