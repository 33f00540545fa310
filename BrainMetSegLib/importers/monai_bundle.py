"""Import a MONAI bundle (``configs/inference.json`` + ``models/model.pt``) as a model package.

    brainmetseg models import monai-bundle BUNDLE_FOLDER -o PKG

Read from ``configs/inference.json`` (or ``.yaml``), without evaluating it:
- ``network_def``: a ``monai.networks.nets`` class with literal arguments (``@name`` references to
  literal top-level values are resolved; ``$`` expressions are Python code and are refused);
- ``preprocessing``: ``Orientationd`` (voxel orientation), ``Spacingd`` (spacing),
  ``NormalizeIntensityd`` (z-score, ``nonzero``); other intensity transforms need ``--normalisation``;
- ``inferer``: ``roi_size``, ``overlap``, ``mode``;
- ``postprocessing``: ``Activations(d)`` sigmoid or softmax.
MONAI arrays are (C, X, Y, Z); the card's ``network_io.transpose`` [2, 1, 0] turns the
pipeline's (Z, Y, X) into that order.

``models/model.pt`` is read with ``torch.load(weights_only=True)`` (a state dict, or a dict holding
one under ``"model"``/``"state_dict"``). A TorchScript ``model.ts`` is refused: it carries its
own program, which cannot be checked against the card's architecture or stored as safetensors;
export the state dict (``model.pt``) instead.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, records
from ..checksums import sha256_file
from ..errors import InputError, ModelError
from ..models import ModelCard, ModelPackage
from ..options import PAPER_THRESHOLD, BlendMode, Normalisation
from .checkpoint import load_checkpoint
from .package import write_package

_SEQUENCES = ("t1ce", "t1", "t2", "flair")


@dataclass(frozen=True)
class BundleImport:
    """What to import; ``None`` fields are read from the bundle's configs."""

    bundle_folder: str
    output: str
    name: str | None = None
    channels: tuple[str, ...] | None = None
    output_channel: int | None = None
    activation: str | None = None
    spacing_mm: tuple[float, ...] | None = None
    patch_size: tuple[float, ...] | None = None
    normalisation: str | None = None
    orientation: str = "RAS"
    overwrite: bool = False


def _read_config(folder: Path) -> tuple[dict, Path]:
    for name in ("inference.json", "inference.yaml", "inference.yml"):
        path = folder / "configs" / name
        if path.is_file():
            try:
                if path.suffix == ".json":
                    data = json.loads(path.read_text(encoding="utf-8"))
                else:
                    import yaml

                    data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except Exception as exc:  # json/yaml parse errors
                raise InputError(f"{path}: cannot be parsed ({exc}).") from None
            if not isinstance(data, dict):
                raise InputError(f"{path}: expected a mapping at the top level.")
            return data, path
    raise InputError(f"{folder}: no configs/inference.json; not a MONAI bundle.")


def _literal(value, config: dict, path: Path, where: str):
    """``value`` with ``@name`` references to top-level literals resolved; ``$`` code refused."""
    if isinstance(value, str) and value.startswith("$"):
        raise InputError(f"{path}: {where} is a Python expression ({value[:40]!r}); BrainMetSeg "
                         "does not run code from bundles. Replace it with a literal value.")
    if isinstance(value, str) and value.startswith("@"):
        key = value[1:]
        if key not in config:
            raise InputError(f"{path}: {where} refers to {value!r}, which the config does not define.")
        return _literal(config[key], config, path, where)
    if isinstance(value, list):
        return [_literal(v, config, path, where) for v in value]
    if isinstance(value, dict):
        return {k: _literal(v, config, path, f"{where}.{k}") for k, v in value.items()}
    return value


def _target(node) -> str:
    return str(node.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(node, dict) else ""


def _transforms(node) -> list[dict]:
    if isinstance(node, dict) and "transforms" in node:
        return [t for t in node["transforms"] if isinstance(t, dict)]
    return [t for t in node if isinstance(t, dict)] if isinstance(node, list) else []


def _state_dict(folder: Path) -> tuple[dict, Path]:
    import torch

    path = folder / "models" / "model.pt"
    if not path.is_file():
        if any((folder / "models").glob("*.ts")):
            raise ModelError(f"{folder / 'models'}: only a TorchScript model (.ts) is present. TorchScript "
                             "carries its own program, which BrainMetSeg does not run or convert; "
                             "export the state dict as models/model.pt (torch.save(net.state_dict())).")
        raise InputError(f"{path}: missing; a MONAI bundle keeps its weights there.")
    data = load_checkpoint(path)
    if isinstance(data, dict):
        for key in ("model", "state_dict", "network"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelError(f"{path}: not a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in data.items()}, path


def import_bundle(request: BundleImport) -> ModelPackage:
    """Read the bundle, build and check the network, write the package."""
    folder = Path(request.bundle_folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (expected a MONAI bundle).")
    config, path = _read_config(folder)
    meta = {}
    if (folder / "configs" / "metadata.json").is_file():
        meta = records.read(folder / "configs" / "metadata.json", "the bundle's metadata",
                            {k: records.string() for k in ("name", "version", "data_source", "description")})
    net_def = config.get("network_def")
    if not isinstance(net_def, dict) or "_target_" not in net_def:
        raise InputError(f"{path}: no network_def with a _target_.")
    args = _literal({k: v for k, v in net_def.items() if k != "_target_"}, config, path, "network_def")
    in_ch, out_ch = args.pop("in_channels", None), args.pop("out_channels", None)
    if not isinstance(in_ch, int) or not isinstance(out_ch, int):
        raise InputError(f"{path}: network_def must give in_channels and out_channels as numbers.")

    pre = {_target(t).removesuffix("d"): t for t in _transforms(config.get("preprocessing"))}
    post = {_target(t).removesuffix("d"): t for t in _transforms(config.get("postprocessing"))}
    orientation = pre.get("Orientation", {}).get("axcodes", request.orientation)
    spacing = request.spacing_mm or pre.get("Spacing", {}).get("pixdim")
    inferer = records.value(_literal(config.get("inferer", {}), config, path, "inferer"), records.obj(),
                            "inferer", path)
    patch = request.patch_size or inferer.get("roi_size")
    if not spacing or not patch:
        raise InputError(f"{path}: spacing (Spacingd pixdim) or window (inferer roi_size) not found; "
                         "pass --spacing and --patch.")
    spacing = _literal(spacing, config, path, "pixdim")
    spacing = records.value(spacing, records.array(records.num(low=0.01, high=20.0), length=3),
                            "preprocessing Spacingd pixdim (mm)", path)
    patch = records.value(patch, records.array(records.num(low=8, high=1024, integer=True), length=3),
                          "inferer roi_size (voxels)", path)
    overlap = records.value(inferer.get("overlap", 0.25), records.num(low=0.0, high=1.0, high_open=True),
                            "inferer overlap", path)
    mode = records.value(inferer.get("mode", BlendMode.CONSTANT.value), records.string(), "inferer mode", path)
    orientation = records.value(orientation, records.string(), "Orientationd axcodes", path)
    norm = request.normalisation
    if norm is None:
        if "NormalizeIntensity" not in pre:
            raise InputError(f"{path}: no NormalizeIntensityd in preprocessing; pass --normalisation "
                             "(BrainMetSeg cannot reproduce other intensity transforms).")
        norm = (Normalisation.ZSCORE_NONZERO if pre["NormalizeIntensity"].get("nonzero")
                else Normalisation.ZSCORE_BRAIN).value
    activation = request.activation
    if activation is None:
        act = post.get("Activations", {})
        activation = "softmax" if act.get("softmax") else "sigmoid" if act.get("sigmoid") else None
        if activation is None:
            raise InputError(f"{path}: no sigmoid/softmax Activationsd in postprocessing; pass --activation.")
    channel = request.output_channel
    if channel is None:
        channel = 0 if activation == "sigmoid" and out_ch == 1 else 1 if out_ch == 2 else None
        if channel is None:
            raise InputError(f"{path}: {out_ch} output channels; say which means metastasis with "
                             "--output-channel (BraTS bundles: 0 tumour core, 1 whole tumour, 2 enhancing).")
    channels = list(request.channels or (["t1ce"] if in_ch == 1 else []))
    if len(channels) != in_ch or len(set(channels)) != in_ch or "t1ce" not in channels \
            or any(c not in _SEQUENCES for c in channels):
        raise InputError(f"{path}: the network takes {in_ch} channel(s); pass --channels naming them in "
                         "order from t1ce,t1,t2,flair (CE-T1 included).")
    state, weights_path = _state_dict(folder)
    name = request.name or str(meta.get("name") or folder.resolve().name)
    card = ModelCard(
        name=name, version=str(meta.get("version", "bundle")), architecture="MONAI",
        architecture_args={"target": str(net_def["_target_"]), "args": args},
        input_sequences=["t1ce"] + [s for s in _SEQUENCES[1:] if s in channels],
        spacing_mm=[float(v) for v in spacing], patch_size=[int(v) for v in patch],
        overlap=overlap, blend_mode=(BlendMode.GAUSSIAN if mode == BlendMode.GAUSSIAN else BlendMode.CONSTANT).value,
        normalisation=norm, threshold=PAPER_THRESHOLD,
        training_data=str(meta.get("data_source", "")), intended_use=str(meta.get("description", "")),
        network_io={"input_channels": channels, "orientation": str(orientation), "transpose": [2, 1, 0],
                    "outputs": out_ch, "activation": activation, "channels": [int(channel)]},
        provenance={"source": "MONAI bundle", "bundle_folder": str(folder.resolve()),
                    "weights_sha256": sha256_file(weights_path), "config": path.name,
                    "imported_by": f"BrainMetSegLib {__version__}",
                    "imported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")},
    )
    return write_package(card, [("model.safetensors", state)], request.output, request.overwrite)
