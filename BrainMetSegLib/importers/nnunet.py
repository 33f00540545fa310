"""Import a trained nnU-Net v2 model (its results folder) as a BrainMetSeg model package.

    brainmetseg models import nnunet RESULTS_FOLDER [--fold 0 1 ...] [--checkpoint final|best] -o PKG

``RESULTS_FOLDER`` is nnU-Net's ``<Trainer>__<Plans>__<configuration>`` folder with
``dataset.json``, ``plans.json`` and ``fold_<k>/checkpoint_<final|best>.pth``. The network is
built from the plans with ``dynamic_network_architectures`` (nnU-Net's own architecture code),
each fold's weights are read with ``torch.load(weights_only=True)`` plus numpy scalars only
(:mod:`.checkpoint`), and written as one safetensors file per fold. The card takes from the plans
the spacing, patch size, axis transpose and normalisation (nnU-Net's MR z-score, with or without
its non-zero mask), from the checkpoint the test-time mirroring axes, and from dataset.json the
channel order (mapped to CE-T1/T1/T2/FLAIR) and the label(s) meaning metastasis.

Not imported: CT normalisation (this is an MRI tool), cascades (3d_cascade_fullres needs the
low-resolution stage's output) and nnU-Net's post-processing (connected-component removal).
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, records
from ..checksums import sha256_file
from ..errors import InputError, ModelError
from ..models import ModelCard, ModelPackage
from ..options import PAPER_THRESHOLD, BlendMode, Normalisation
from .checkpoint import load_checkpoint
from .package import write_package

CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}

# dataset.json channel names (lower case, letters and digits only) -> BrainMetSeg sequences
_CHANNEL_NAMES = {
    "t1ce": "t1ce", "t1c": "t1ce", "cet1": "t1ce", "t1gd": "t1ce", "t1post": "t1ce",
    "t1contrast": "t1ce", "t1wce": "t1ce", "t1cegd": "t1ce", "postcontrast": "t1ce",
    "t1": "t1", "t1w": "t1", "t1pre": "t1", "t1native": "t1", "t1n": "t1",
    "t2": "t2", "t2w": "t2",
    "flair": "flair", "t2flair": "flair", "t2f": "flair",
}
# Label names (lower case, letters only) that mean metastasis, or enhancing tumour in
# BraTS-style multi-label datasets.
_METASTASIS = {"et", "enhancing", "enhancingtumor", "enhancingtumour", "enhancinglesion",
               "metastasis", "metastases", "met", "mets", "lesion"}


@dataclass(frozen=True)
class NnUNetImport:
    """What to import. folds: None = every ``fold_*`` holding the checkpoint; label: name of the
    dataset.json label meaning metastasis (None = the only foreground label, or enhancing tumour);
    channels: sequences in the network's channel order (None = from dataset.json);
    orientation: how the training images' voxel axes ran (NIfTI files: usually RAS)."""

    results_folder: str
    output: str
    folds: tuple[str, ...] | None = None
    checkpoint: str = "final"
    label: str | None = None
    channels: tuple[str, ...] | None = None
    orientation: str = "RAS"
    mirroring: bool = True
    name: str | None = None
    overwrite: bool = False


# The fields read from nnU-Net's files, typed (other fields are not used).
DATASET_SCHEMA = {"channel_names": records.obj(), "modality": records.obj(), "labels": records.obj(),
                  "name": records.string(), "description": records.string()}
PLANS_SCHEMA = {"configurations": records.mapping(records.obj(), required=True),
                "transpose_forward": records.array(records.num(low=0, high=2, integer=True), length=3),
                "dataset_name": records.string(), "image_reader_writer": records.string()}
CONFIG_SCHEMA = {
    "spacing": records.array(records.num(low=0.01, high=20.0), length=3),
    "patch_size": records.array(records.num(low=8, high=1024, integer=True), length=3),
    "architecture": records.obj({"network_class_name": records.string(required=True),
                                 "arch_kwargs": records.obj(),
                                 "_kw_requires_import": records.array(records.string())}),
    "normalization_schemes": records.array(records.string()),
    "use_mask_for_norm": records.array(records.boolean()),
    "inherits_from": records.string(), "previous_stage": records.string(),
}


def _read_json(path: Path, schema: dict) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: missing; not an nnU-Net v2 results folder.")
    return records.read(path, "nnU-Net file", schema)


def configuration_name(folder: Path) -> tuple[str, str, str]:
    """(trainer, plans, configuration) from nnU-Net's ``Trainer__Plans__configuration`` folder name."""
    parts = folder.resolve().name.split("__")
    if len(parts) != 3:
        raise InputError(f"{folder}: folder name is not nnU-Net's <trainer>__<plans>__<configuration>.")
    return parts[0], parts[1], parts[2]


def configuration(plans: dict, name: str, source: Path) -> dict:
    """The plans' configuration ``name`` with ``inherits_from`` resolved (as nnU-Net does)."""
    configs = plans.get("configurations", {})
    if name not in configs:
        raise InputError(f"{source}: plans have no configuration {name!r} (have: {', '.join(configs)}).")
    config = dict(configs[name])
    seen = {name}
    while "inherits_from" in config:
        parent = config.pop("inherits_from")
        if not isinstance(parent, str) or parent in seen or parent not in configs:
            raise InputError(f"{source}: configuration {name!r} inherits from unknown {parent!r}.")
        seen.add(parent)
        config = {**configs[parent], **config}
    config = records.check(config, CONFIG_SCHEMA, f"{source}, configuration {name!r}")
    if config.get("previous_stage"):
        raise InputError(f"{source}: configuration {name!r} is a cascade stage (needs "
                         f"{config['previous_stage']!r} first); import a single-stage configuration.")
    return config


def sequences_from_channels(channel_names: dict, source: Path) -> list[str]:
    """dataset.json ``channel_names`` ({"0": "T1", ...}) -> sequences in channel order."""
    if not all(re.fullmatch(r"\d+", str(k)) for k in channel_names):
        raise InputError(f"{source}: channel_names keys must be channel numbers (\"0\", \"1\", ...), "
                         f"not {list(channel_names)!r}.")
    out = []
    for key in sorted(channel_names, key=int):
        raw = str(channel_names[key])
        seq = _CHANNEL_NAMES.get(re.sub(r"[^a-z0-9]", "", raw.lower()))
        if seq is None:
            raise InputError(f"{source}: channel {key} is named {raw!r}, which BrainMetSeg cannot map to "
                             "CE-T1/T1/T2/FLAIR; pass --channels (e.g. --channels t1ce,flair).")
        out.append(seq)
    return out


def output_spec(dataset: dict, label: str | None, source: Path) -> tuple[str, int, list[int], str]:
    """(activation, number of outputs, metastasis channels, chosen label name) from dataset.json."""
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise InputError(f"{source}: dataset.json has no labels.")
    regions = "regions_class_order" in dataset
    names = [n for n in labels if n not in ("background", "ignore")]
    if label is None:
        if len(names) == 1:
            label = names[0]
        else:
            matches = [n for n in names if re.sub(r"[^a-z]", "", n.lower()) in _METASTASIS]
            if len(matches) != 1:
                raise InputError(f"{source}: several labels ({', '.join(names)}); say which one means "
                                 "metastasis with --label NAME (BraTS-style: the enhancing tumour).")
            label = matches[0]
    if label not in names:
        raise InputError(f"{source}: no label {label!r} (labels: {', '.join(names)}).")
    if regions:
        # region-based training: one sigmoid output per foreground region, in label order
        return "sigmoid", len(names), [names.index(label)], label
    value = labels[label]
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{source}: label {label!r} has value {value!r}; expected an integer.")
    n_out = len([n for n in labels if n != "ignore"])
    if not 0 < value < n_out:
        raise InputError(f"{source}: label {label!r} value {value} is outside 1..{n_out - 1}.")
    return "softmax", n_out, [value], label


def normalisation(config: dict, source: Path) -> str:
    """The card's normalisation for the plans' schemes (one scheme for every channel)."""
    schemes = set(config.get("normalization_schemes", []))
    masks = set(map(bool, config.get("use_mask_for_norm", [])))
    if schemes != {"ZScoreNormalization"} or len(masks) != 1:
        raise InputError(f"{source}: normalisation {sorted(schemes)} (use_mask_for_norm "
                         f"{config.get('use_mask_for_norm')}) is not supported; BrainMetSeg imports "
                         "MR models with nnU-Net's ZScoreNormalization on every channel.")
    return (Normalisation.NNUNET_ZSCORE_MASKED if masks.pop() else Normalisation.NNUNET_ZSCORE).value


def _folds(folder: Path, folds, checkpoint_file: str) -> list[str]:
    if folds:
        names = [f if str(f).startswith("fold_") else f"fold_{f}" for f in folds]
    else:
        names = sorted(p.name for p in folder.glob("fold_*") if (p / checkpoint_file).is_file())
        if not names:
            raise InputError(f"{folder}: no fold_*/{checkpoint_file}; train a fold first or pass --checkpoint.")
    for n in names:
        if not (folder / n / checkpoint_file).is_file():
            raise InputError(f"{folder / n / checkpoint_file}: missing.")
    return names


def _network_weights(checkpoint: object, path: Path) -> tuple[dict, dict]:
    import torch

    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("network_weights"), dict):
        raise ModelError(f"{path}: not an nnU-Net v2 checkpoint (no 'network_weights').")
    state = checkpoint["network_weights"]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: network_weights holds something other than tensors.")
    # torch.compile'd trainers save keys with this prefix; nnU-Net's predictor strips it too
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    return state, checkpoint


def _read_folds(folder: Path, folds, checkpoint_file: str):
    """Each fold's network weights (safetensors name, state), the mirroring axes they share,
    the checkpoints' sha256 and their trainer/epoch records."""
    states, mirror_axes, hashes, epochs = [], None, {}, {}
    for fold in _folds(folder, folds, checkpoint_file):
        path = folder / fold / checkpoint_file
        state, ckpt = _network_weights(load_checkpoint(path), path)
        axes = ckpt.get("inference_allowed_mirroring_axes") or []
        axes = tuple(records.value(list(axes) if isinstance(axes, tuple) else axes,
                                   records.array(records.num(low=0, high=2, integer=True)),
                                   "inference_allowed_mirroring_axes", path, ModelError))
        if mirror_axes is not None and axes != mirror_axes:
            raise ModelError(f"{path}: mirroring axes {axes} differ from the other folds' {mirror_axes}.")
        mirror_axes = axes
        states.append((f"{fold}.safetensors", state))
        hashes[fold] = sha256_file(path)
        epochs[fold] = {"trainer": ckpt.get("trainer_name"), "epochs": ckpt.get("current_epoch")}
    return states, mirror_axes, hashes, epochs


def import_nnunet(request: NnUNetImport) -> ModelPackage:
    """Read the results folder, build and check the network(s), write the package."""
    folder = Path(request.results_folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (expected nnU-Net's results folder of one configuration).")
    if request.checkpoint not in CHECKPOINTS:
        raise InputError(f"--checkpoint {request.checkpoint!r}: use final or best.")
    dataset = _read_json(folder / "dataset.json", DATASET_SCHEMA)
    plans = _read_json(folder / "plans.json", PLANS_SCHEMA)
    trainer, plans_name, config_name = configuration_name(folder)
    config = configuration(plans, config_name, folder / "plans.json")
    arch = config.get("architecture")
    if not isinstance(arch, dict) or "network_class_name" not in arch:
        raise InputError(f"{folder / 'plans.json'}: no 'architecture' in configuration {config_name!r} "
                         "(plans from nnU-Net < 2.4 are not supported; re-plan with a current nnU-Net).")
    if len(config.get("patch_size", [])) != 3:
        raise InputError(f"{folder / 'plans.json'}: configuration {config_name!r} is not 3D.")
    channels = (list(request.channels) if request.channels
                else sequences_from_channels(dataset.get("channel_names") or dataset.get("modality") or {},
                                             folder / "dataset.json"))
    n_channels = len(dataset.get("channel_names") or dataset.get("modality") or {})
    if len(channels) != n_channels or len(set(channels)) != len(channels) or "t1ce" not in channels:
        raise InputError(f"{folder / 'dataset.json'}: the model's {n_channels} channel(s) map to {channels}; "
                         "they must be distinct sequences including CE-T1 (t1ce).")
    activation, n_out, chosen, label = output_spec(dataset, request.label, folder / "dataset.json")
    norm = normalisation(config, folder / "plans.json")
    transpose = [int(a) for a in plans.get("transpose_forward", [0, 1, 2])]
    if sorted(transpose) != [0, 1, 2]:
        raise InputError(f"{folder / 'plans.json'}: transpose_forward {transpose} is not a permutation.")
    # plans hold spacing and patch in the transposed (network) axis order; the card wants (x, y, z)
    spacing_zyx, patch_zyx = [0.0] * 3, [0] * 3
    for k, axis in enumerate(transpose):
        spacing_zyx[axis] = float(config["spacing"][k])
        patch_zyx[axis] = int(config["patch_size"][k])

    checkpoint_file = CHECKPOINTS[request.checkpoint]
    states, mirror_axes, hashes, epochs = _read_folds(folder, request.folds, checkpoint_file)
    # NibabelIOWithReorient feeds RAS arrays; other readers the files' own order, unknown here
    reorients = plans.get("image_reader_writer") == "NibabelIOWithReorient"
    orientation = "RAS" if reorients else request.orientation
    network_io = {"input_channels": channels, "orientation": orientation,
                  "transpose": transpose, "mirror_axes": list(mirror_axes) if request.mirroring else [],
                  "outputs": n_out, "activation": activation, "channels": chosen, "tiling": "nnunet"}
    order = ["t1ce"] + [s for s in ("t1", "t2", "flair") if s in channels]
    card = ModelCard(
        name=request.name or f"{plans.get('dataset_name') or dataset.get('name')}-{config_name}",
        version=f"nnunet-{request.checkpoint}",
        architecture="nnUNet",
        architecture_args={"network_class": arch["network_class_name"],
                           "arch_kwargs": arch.get("arch_kwargs", {}),
                           "arch_kwargs_requires_import": list(arch.get("_kw_requires_import", []))},
        input_sequences=order,
        spacing_mm=spacing_zyx[::-1],
        patch_size=patch_zyx[::-1],
        overlap=0.5,  # nnU-Net's default tile_step_size 0.5
        blend_mode=BlendMode.GAUSSIAN.value,
        normalisation=norm,
        threshold=PAPER_THRESHOLD,
        training_data=str(dataset.get("description") or dataset.get("name") or ""),
        intended_use=f"imported nnU-Net v2 model; label {label!r} is read as metastasis",
        limitations="nnU-Net post-processing is not applied; resampling is linear (nnU-Net: cubic "
                    "spline) when the input spacing differs from the model's"
                    + ("." if reorients else f"; the training images are assumed {orientation}-stored "
                       "(nnU-Net does not record it): a wrong assumption mirrors the input."),
        network_io=network_io,
        provenance={"source": "nnU-Net v2", "results_folder": str(folder.resolve()),
                    "trainer": trainer, "plans": plans_name, "configuration": config_name,
                    "dataset": plans.get("dataset_name"), "label": label,
                    "checkpoint": checkpoint_file, "checkpoint_sha256": hashes, "folds": epochs,
                    "orientation": ("RAS: nnU-Net reoriented its inputs (NibabelIOWithReorient)"
                                    if reorients else f"{orientation}: assumed for the training "
                                    "files (nnU-Net does not record it); --orientation to change"),
                    "imported_by": f"BrainMetSegLib {__version__}",
                    "imported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")},
    )
    return write_package(card, states, request.output, request.overwrite)


def default_output(name: str) -> str:
    """The user model folder's sub-folder for a package called ``name``."""
    from ..models import user_models_folder

    return os.fspath(user_models_folder() / re.sub(r"[^A-Za-z0-9._-]+", "_", name))
