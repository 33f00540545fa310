"""Adding thick-slice weights to a model package (card field ``thick_slice_weights``,
:mod:`BrainMetSegLib.thick_weights`): a new package folder, the source left as it is.

    from BrainMetSegLib.train.thick_package import add_thick_weights
    add_thick_weights("Resources/Models/brainmetseg-demo", "runs/thick/package", "out/demo-2.5.0",
                      version="2.5.0")

The thick weights come as a ``.safetensors`` file or as a package folder (e.g. the one
``brainmetseg train`` wrote while fine-tuning), whose card must then have the same architecture,
arguments, inputs, ``network_io``, grid and normalisation (its window and operating point are
not used: the package's apply). Every tensor is stored in the dtype of the
main weights' tensor of the same name (the bundled demo's are fp16: half the bytes; the network
runs fp32 either way), as ``model_thick.safetensors`` (``--name``). The split defaults to the one
the package's stitched candidate scorer records, so the two cannot differ. The new folder is
staged and renamed into place only after it loads as a package and both networks load from it;
an existing folder is replaced only with ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from ..errors import ModelError, OutputError
from ..folder_staging import staged_folder
from ..models import CARD_NAME, ModelPackage, load_package
from ..staging import default_file_mode
from ..thick_weights import MAIN, THICK, check_thick_file, scorer_split_mm, tensor_layout

THICK_NAME = "model_thick.safetensors"
# What must be equal between the package and a package the thick weights come from (the
# window, threshold and scorer are the package's: the thick weights run under them).
SAME_NETWORK = ("architecture", "architecture_args", "input_sequences", "network_io", "spacing_mm",
                "normalisation")


def _thick_state(source: Path, package: ModelPackage) -> dict:
    """The thick weights' tensors (safetensors only), from a file or a package folder."""
    from safetensors.torch import load_file

    if source.is_dir():
        other = load_package(source)
        differ = [k for k in SAME_NETWORK if getattr(other.card, k) != getattr(package.card, k)]
        if differ:
            raise ModelError(f"{source}: its network differs from {package.folder}'s in {', '.join(differ)} "
                             "(thick-slice weights must be the same network, architecture and grid).")
        if other.card.ensemble:
            raise ModelError(f"{source}: is an ensemble; thick-slice weights are one file.")
        source = other.weights_path
    if source.suffix != ".safetensors" or not source.is_file():
        raise ModelError(f"{source}: thick-slice weights must be a .safetensors file (no pickle) or a "
                         "model package folder.")
    try:
        return load_file(str(source), device="cpu")
    except Exception as exc:  # safetensors raises its own types on a corrupt header
        raise ModelError(f"{source}: not a valid safetensors file ({exc}).") from None


def _as_main_dtypes(state: dict, package: ModelPackage, source: Path) -> dict:
    """``state`` with each tensor in the dtype of the main weights' tensor of that name;
    :class:`ModelError` naming ``source`` unless the names and shapes are the main weights'."""
    import torch
    from safetensors import safe_open

    main = package.weight_files()[0][0]
    with safe_open(str(main), framework="pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    layout = tensor_layout(main)
    differ = sorted(set(state) ^ set(layout)) or sorted(k for k in state if tuple(state[k].shape) != layout[k])
    if differ:
        raise ModelError(f"{source}: the weights do not have {main}'s tensors (architecture "
                         f"{package.card.architecture}): {len(differ)} differ, e.g. {differ[0]!r}; "
                         "thick-slice weights must be the same network with other weights.")
    names = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
    out = {}
    for k, v in state.items():
        want = names.get(dtypes.get(k, ""))
        out[k] = (v.to(getattr(torch, want)) if want and v.is_floating_point() else v).contiguous()
    return out


def _split(package: ModelPackage, split_mm: float | None) -> float:
    """The split: the one given, else the stitched scorer's; :class:`ModelError` without either."""
    scorer = package.card.candidate_scorer
    recorded = scorer_split_mm(package.folder / scorer["file"]) if scorer else None
    if split_mm is None:
        if recorded is None:
            raise ModelError(f"{package.folder}: its candidate scorer records no slice-spacing split; "
                             "give --split-mm.")
        return recorded
    return float(split_mm)


def add_thick_weights(package_dir: str | os.PathLike, thick: str | os.PathLike, out: str | os.PathLike,
                      split_mm: float | None = None, version: str | None = None, name: str = THICK_NAME,
                      overwrite: bool = False) -> ModelPackage:
    """Write a copy of the package ``package_dir`` into ``out`` with ``thick`` (a safetensors
    file or a package folder) as its thick-slice weights for scans of slice spacing above
    ``split_mm`` (mm; default: the stitched scorer's). ``version``: the new card's version
    (default: unchanged). Returns the new package, checked (both networks load)."""
    from safetensors.torch import save_file

    from ..checksums import sha256_file

    package, out = load_package(package_dir), Path(out)
    if out.resolve() == package.folder.resolve():
        raise OutputError(f"{out}: is the source package; write the new package to another folder.")
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: already exists; pass --overwrite to replace it.")
    state = _as_main_dtypes(_thick_state(Path(thick), package), package, Path(thick))
    old = package.card.thick_slice_weights.get("weights") if package.card.thick_slice_weights else None
    with staged_folder(out, "model package") as tmp:
        for f in sorted(package.folder.iterdir()):
            if f.is_file() and f.name not in (old, name, CARD_NAME):
                shutil.copy2(f, tmp / f.name)
        save_file(state, str(tmp / name), metadata={"name": package.card.name, "weights": "thick-slice"})
        os.chmod(tmp / name, default_file_mode())  # safetensors writes 0600
        entry = {"weights": name, "sha256": sha256_file(tmp / name),
                 "above_slice_spacing_mm": _split(package, split_mm)}
        card = dataclasses.replace(package.card, thick_slice_weights=entry,
                                   version=version or package.card.version)
        (tmp / CARD_NAME).write_text(json.dumps(card.to_dict(), indent=2) + "\n")
        new = load_package(tmp)  # the card's checks, the scorer's split
        check_thick_file(new)
        for variant in (MAIN, THICK):
            new.load_network("cpu", variant)
    return load_package(out)
