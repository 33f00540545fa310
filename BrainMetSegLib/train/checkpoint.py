"""Training checkpoints: safetensors (tensors) + JSON (counters, config, history); no pickle."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .. import records
from ..errors import InputError
from ..staging import write_text


def state_hash(net: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict (name, dtype, bytes), in name order."""
    digest = hashlib.sha256()
    for key, value in sorted(net.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(value.dtype).encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


NETWORK_PREFIX = "model."  # a checkpoint's network tensors; the optimiser's are "optim.<i>.<slot>"


def network_tensors(tensors: dict) -> dict:
    """The network's state dict held in a checkpoint's tensors (prefix removed)."""
    return {k[len(NETWORK_PREFIX):]: v for k, v in tensors.items() if k.startswith(NETWORK_PREFIX)}


def save_checkpoint(folder: Path, name: str, net, optimizer, meta: dict) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{NETWORK_PREFIX}{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
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
    net.load_state_dict(network_tensors(tensors), strict=True)
    if optimizer is not None and meta.get("param_groups"):
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, slot = key.split(".", 2)
                state.setdefault(int(idx), {})[slot] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta
