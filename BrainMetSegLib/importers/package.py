"""Writing an imported model package: safetensors per network, card with their sha256.

The package is built in a temporary folder next to the output, loaded back exactly as a run
would load it (card checks, sha256, strict state-dict fit), and only then renamed into place,
so a failed import leaves nothing behind and never replaces a package without ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ..errors import OutputError
from ..folder_staging import staged_folder
from ..models import CARD_NAME, ModelCard, ModelPackage, load_package


def write_package(card: ModelCard, states: list[tuple[str, dict]], output: str | os.PathLike,
                  overwrite: bool = False) -> ModelPackage:
    """Write ``states`` (file name, state dict) as safetensors and ``card`` into ``output``."""
    import torch
    from safetensors.torch import save_file

    from ..checksums import sha256_file
    from ..staging import default_file_mode

    output = Path(output)
    if output.exists() and not overwrite:
        raise OutputError(f"{output}: already exists; pass --overwrite to replace it.")
    if output.exists() and not (output / CARD_NAME).is_file():
        raise OutputError(f"{output}: exists and is not a model package; not replaced.")
    with staged_folder(output, "package folder") as tmp:
        members = []
        for name, state in states:
            tensors = {k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype)
                       .cpu().contiguous() for k, v in _unaliased(state).items()}
            save_file(tensors, str(tmp / name), metadata={"name": card.name, "version": card.version})
            os.chmod(tmp / name, default_file_mode())
            members.append({"weights": name, "sha256": sha256_file(tmp / name)})
        card = dataclasses.replace(card, weights=members[0]["weights"], sha256=members[0]["sha256"],
                                   ensemble=members if len(members) > 1 else [])
        (tmp / CARD_NAME).write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp / CARD_NAME, default_file_mode())
        package = load_package(tmp)
        package.load_network("cpu")  # the checks a run makes, before anything is replaced
    return ModelPackage(card, output)


def _unaliased(state: dict) -> dict:
    """``state`` with each tensor once: a tensor stored under several names (nnU-Net registers
    its blocks twice) keeps its first name; the loader restores the others from the network."""
    seen, out = set(), {}
    for key, tensor in state.items():
        ptr = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if ptr not in seen:
            seen.add(ptr)
            out[key] = tensor
    return out

