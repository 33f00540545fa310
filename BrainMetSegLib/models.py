"""Model packages: a folder with a model card (``model.json``) and safetensors weights.

A package is found by path or by name in the registry ``Resources/Models.json``
(:mod:`BrainMetSegLib.resources` says where that is for each kind of install).
Weights are loaded with safetensors (no pickle, no code from the file) after their
sha256 is checked against the card.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import records
from .checksums import sha256_file
from .errors import ModelError
from .filecheck import file_kind
from .options import PAPER_SPACING_MM, PAPER_THRESHOLD, BlendMode, Normalisation
from .resources import REGISTRY_FILE, user_cache_root
from .textfiles import read_json_object

DEFAULT_MODEL = "brainmetseg-demo"
CARD_NAME = "model.json"


@dataclass
class ModelCard:
    """The model card: everything needed to build, run and judge a model.

    spacing_mm: voxel spacing (x, y, z) in mm the network works at.
    patch_size: sliding-window / training patch in voxels, (x, y, z).
    threshold: detection threshold (components of probability > threshold are lesions).
    min_lesion_volume_mm3: detected components smaller than this are dropped.
    outline_threshold: lesions are drawn as the connected region of probability > this value
        that holds a detection (<= threshold); None draws them at the detection threshold.
    candidate_scorer: ``{"file": name, "sha256": hex}`` of the package's candidate scorer
        (:mod:`BrainMetSegLib.scorer`); empty: no candidate stage, lesions are the detections.
    thick_slice_weights: ``{"weights": file, "sha256": hex, "above_slice_spacing_mm": mm}``: the
        network's weights for scans of slice spacing above that (:mod:`BrainMetSegLib.thick_weights`).
    """

    name: str
    version: str
    architecture: str
    architecture_args: dict[str, Any] = field(default_factory=dict)
    input_sequences: list[str] = field(default_factory=lambda: ["t1ce"])
    spacing_mm: list[float] = field(default_factory=lambda: list(PAPER_SPACING_MM))
    patch_size: list[int] = field(default_factory=lambda: [128, 128, 128])
    overlap: float = 0.5
    blend_mode: str = BlendMode.CONSTANT.value
    normalisation: str = Normalisation.ZSCORE_BRAIN.value
    threshold: float = PAPER_THRESHOLD
    min_lesion_volume_mm3: float = 0.0
    outline_threshold: float | None = None
    weights: str = "model.safetensors"
    sha256: str = ""
    trained: bool = True
    training_data: str = ""
    intended_use: str = ""
    limitations: str = ""
    validation: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    # An ensemble: [{"weights": file, "sha256": hex}, ...], logits averaged (``weights`` and
    # ``sha256`` then name the first member); empty for a single network.
    ensemble: list[dict[str, str]] = field(default_factory=list)
    # How the network meets the pipeline (channel order, orientation, mirroring, outputs):
    # see :mod:`BrainMetSegLib.network_io`; empty for a network that outputs the metastasis logit.
    network_io: dict[str, Any] = field(default_factory=dict)
    # Where the package came from (e.g. imported from nnU-Net or a MONAI bundle).
    provenance: dict[str, Any] = field(default_factory=dict)
    # The terms the weights may be used under (an SPDX identifier such as "Apache-2.0", or the
    # licensor's words); empty when unknown (e.g. an imported package that did not say).
    license: str = ""
    # The acquisitions the model was trained and tested on: {"slice_thickness_mm": [min, max],
    # "in_plane_spacing_mm": [min, max], "obliquity_deg": max, "note": text}; scans outside
    # them get a warning (BrainMetSegLib.acquisition). Empty: not stated, no warning.
    acquisition: dict[str, Any] = field(default_factory=dict)
    candidate_scorer: dict[str, str] = field(default_factory=dict)
    # Second weights for thick-slice scans: {"weights": file, "sha256": hex,
    # "above_slice_spacing_mm": mm}; scans whose slice spacing is above it run them, others the
    # main weights. Same architecture, grid and operating point. Empty: one set of weights.
    # See BrainMetSegLib.thick_weights.
    thick_slice_weights: dict[str, Any] = field(default_factory=dict)
    # Post-training-quantised copies of each set of weights as OpenVINO IR: {"main": {"xml", "bin",
    # "sha256_xml", "sha256_bin", "from_weights_sha256"}, "thick-slice": {...}, "auto": [sets auto
    # may run in int8], "made": {...}}.
    # Empty: none. See BrainMetSegLib.int8_network.
    int8_network: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict, source: str = "model.json") -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in ("name", "version", "architecture") if n not in data]
        if missing:
            raise ModelError(f"{source}: model card lacks {', '.join(missing)}.")
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"{source}: model card has unknown fields {unknown}.")
        try:
            return cls(**data)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None

    def __post_init__(self):
        from .card_check import check_card

        check_card(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ModelPackage:
    """A model card and the folder holding its weights."""

    card: ModelCard
    folder: Path

    @property
    def weights_path(self) -> Path:
        """The weights file; :class:`ModelError` if the card's ``weights`` leaves the package folder."""
        folder = self.folder.resolve()
        path = (folder / self.card.weights).resolve()
        if Path(self.card.weights).is_absolute() or not path.is_relative_to(folder):
            raise ModelError(f"{self.folder / CARD_NAME}: model card field 'weights' ({self.card.weights!r}) "
                             "points outside the package folder; weights must be a file inside it.")
        return path

    def weight_files(self, variant: str = "main") -> list[tuple[Path, str]]:
        """(path, sha256) of every weight file of the network ``variant`` runs: ``main``, the
        ensemble's members or the one ``weights``; ``thick-slice``, the card's
        ``thick_slice_weights`` file. :class:`ModelError` for a file outside the package folder."""
        from .thick_weights import THICK, VARIANTS, thick_path

        if variant not in VARIANTS:
            raise ValueError(f"weights variant {variant!r} is not one of {', '.join(VARIANTS)}")
        if variant == THICK:
            if not self.card.thick_slice_weights:
                raise ModelError(f"{self.folder / CARD_NAME}: model {self.card.name} has no thick_slice_weights.")
            return [(thick_path(self), self.card.thick_slice_weights["sha256"])]
        if not self.card.ensemble:
            return [(self.weights_path, self.card.sha256)]
        folder, out = self.folder.resolve(), []
        for m in self.card.ensemble:
            name = m.get("weights") if isinstance(m, dict) else None
            path = (folder / name).resolve() if isinstance(name, str) and name else folder
            if path == folder or Path(name).is_absolute() or not path.is_relative_to(folder):
                raise ModelError(f"{self.folder / CARD_NAME}: ensemble entry {m!r} must name a "
                                 "weights file inside the package folder.")
            out.append((path, str(m.get("sha256", ""))))
        return out

    def all_weight_files(self) -> list[tuple[Path, str]]:
        """(path, sha256) of every network file in the package: the main weights, the thick-slice
        ones, then each int8 network's IR (.xml, .bin): what a download or a release must bring whole."""
        from .thick_weights import THICK

        files = self.weight_files() + (self.weight_files(THICK) if self.card.thick_slice_weights else [])
        from .int8_network import variants

        for variant in variants(self.card.int8_network):
            net = self.int8_network(variant)
            files += [(net.xml, net.sha256_xml), (net.bin, net.sha256_bin)]
        return files

    def int8_network(self, variant: str = "main"):
        """The package's :class:`~.int8_network.Int8Network` for ``variant`` (None: none)."""
        from .int8_network import int8_network

        return int8_network(self.folder, self.card.int8_network, variant)

    def network_identity(self, variant: str = "main") -> dict:
        """What determines the loaded network's outputs, for caches of exported copies
        (:mod:`~BrainMetSegLib.openvino_backend`): the sha256 of the weights ``variant`` runs
        (checked on load), the architecture and how the network meets the pipeline."""
        card = self.card
        return {"weights_sha256": [sha.lower() for _, sha in self.weight_files(variant)],
                "architecture": card.architecture, "architecture_args": card.architecture_args,
                "input_sequences": list(card.input_sequences), "network_io": card.network_io,
                "patch_size": list(card.patch_size), "overlap": card.overlap}

    def load_scorer(self):
        """The card's candidate scorer (:class:`~BrainMetSegLib.scorer.Scorer`) after its sha256
        is checked, or None when the card names none; :class:`ModelError` otherwise."""
        from .scorer import ScorerError, load_scorer

        entry = self.card.candidate_scorer
        if not entry:
            return None
        card_path = self.folder / CARD_NAME
        name, expected = entry.get("file"), str(entry.get("sha256", ""))
        folder = self.folder.resolve()
        path = (folder / name).resolve() if isinstance(name, str) and name else folder
        if path == folder or Path(name).is_absolute() or not path.is_relative_to(folder):
            raise ModelError(f"{card_path}: candidate_scorer {entry!r} must name a file inside the package folder.")
        if file_kind(path) != "file":
            raise ModelError(f"{path}: candidate scorer named by the model card is missing or not a regular file.")
        if not expected:
            raise ModelError(f"{card_path}: model card has no sha256 for {path.name}.")
        if sha256_file(path) != expected.lower():
            raise ModelError(f"{path}: sha256 does not match the model card ({expected[:12]}...); "
                             "the file is damaged or was altered.")
        try:
            return load_scorer(path)
        except ScorerError as exc:
            raise ModelError(str(exc)) from None

    def io(self):
        """The card's checked ``network_io`` (:class:`~BrainMetSegLib.network_io.NetworkIO`)."""
        from .network_io import parse_network_io

        return parse_network_io(self.card.network_io, list(self.card.input_sequences),
                                str(self.folder / CARD_NAME))

    def build_network(self):
        """The untrained network the card describes (``network_io`` outputs; default one
        channel: the metastasis logit)."""
        from .architectures import build_network

        return build_network(self.card.architecture, len(self.card.input_sequences),
                             self.io().outputs, self.card.architecture_args)

    def load_network(self, device: str = "cpu", variant: str = "main"):
        """Build the network(s) of ``variant`` (``main`` or ``thick-slice``), check each weight
        file's sha256 and load it (safetensors, no pickle); wrap them per ``network_io`` so the
        result outputs the metastasis logit."""
        import torch
        from safetensors.torch import load_file

        io = self.io()
        verify_weights(self, variant)
        members = []
        for path, _ in self.weight_files(variant):
            net = self.build_network()
            try:
                state = load_file(str(path), device="cpu")
            except Exception as exc:  # safetensors raises its own types on corrupt headers
                raise ModelError(f"{path}: not a valid safetensors file ({exc}).") from None
            # Weights may be stored as fp16/bf16 (the bundled default is fp16, half the bytes);
            # the network always runs from fp32 parameters (autocast, if any, comes later).
            state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
            state = with_aliases(net, state)
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ModelError(f"{path}: weights do not fit architecture {self.card.architecture} "
                                 f"({str(exc).splitlines()[0]}).") from None
            members.append(net.eval())
        if len(members) == 1 and io.is_plain:
            net = members[0]
        else:
            from .network_adapter import AdaptedNetwork  # torch-side: loaded only when wrapping

            net = AdaptedNetwork(members, io, list(self.card.input_sequences),
                                 tuple(self.card.patch_size[::-1]), self.card.overlap)
        return net.to(torch.device(device)).eval()


def with_aliases(net, state: dict) -> dict:
    """``state`` completed with the keys ``net`` exposes twice for one tensor (nnU-Net's
    networks register each block under two names); safetensors stores such a tensor once."""
    groups: dict[int, list[str]] = {}
    for key, tensor in net.state_dict().items():
        groups.setdefault(tensor.data_ptr(), []).append(key)
    out = dict(state)
    for keys in groups.values():
        present = [k for k in keys if k in state]
        if present and len(keys) > 1:
            for k in keys:
                out.setdefault(k, state[present[0]])
    return out


def verify_weights(package: ModelPackage, variant: str = "main") -> None:
    """Raise :class:`ModelError` unless every weight file of ``variant`` exists (a regular file)
    and matches its sha256 in the card."""
    card_path = package.folder / CARD_NAME
    for path, expected in package.weight_files(variant):
        kind = file_kind(path)
        if kind != "file":
            raise ModelError(f"{path}: weights file named by the model card is "
                             f"{'missing' if kind == 'missing' else 'a ' + kind + ', not a regular file'}.")
        if not expected:
            raise ModelError(f"{card_path}: model card has no sha256 for {path.name}.")
        actual = sha256_file(path)
        if actual != expected.lower():
            raise ModelError(f"{path}: sha256 {actual[:12]}... does not match the model card "
                             f"({expected[:12]}...); the file is damaged or was altered.")


def user_models_folder() -> Path:
    """The user's model folder (imported packages): ``$BRAINMETSEG_MODELS``, else
    ``$XDG_DATA_HOME/brainmetseg/models`` (default ``~/.local/share/brainmetseg/models``)."""
    if os.environ.get("BRAINMETSEG_MODELS"):
        return Path(os.environ["BRAINMETSEG_MODELS"])
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "brainmetseg" / "models"


def user_model_entries() -> list[dict]:
    """Registry entries ``{"name", "path", "source": "user"}`` of the packages in the user's
    model folder (each sub-folder with a ``model.json``), by folder name."""
    folder = user_models_folder()
    if not folder.is_dir():
        return []
    return [{"name": p.name, "path": str(p.resolve()), "source": "user"}
            for p in sorted(folder.iterdir()) if (p / CARD_NAME).is_file()]


def read_registry(registry: Path = REGISTRY_FILE, user_models: bool = True) -> list[dict]:
    """Entries of the model registry: ``{"name", "path"}`` (bundled) or ``{"name", "url", "sha256"}``,
    then (``user_models``) the packages in :func:`user_models_folder` whose names are not taken."""
    entries = []
    if registry.is_file():
        entries = records.read(registry, "the model registry",
                               {"models": records.array(records.obj({"name": records.string(required=True),
                                                                    "path": records.string(),
                                                                    "url": records.string(),
                                                                    "sha256": records.sha256()}))},
                               ModelError).get("models") or []
    if user_models:
        taken = {e.get("name") for e in entries}
        entries += [e for e in user_model_entries() if e["name"] not in taken]
    return entries


def cache_folder(name: str) -> Path:
    """Where a downloaded registry model lives: ``$BRAINMETSEG_CACHE/models/<name>``
    (default cache ``~/.cache/brainmetseg``)."""
    return user_cache_root() / "models" / name


def registry_entry(name: str, registry: Path = REGISTRY_FILE) -> dict:
    """The registry entry called ``name``; :class:`ModelError` listing the known names otherwise."""
    for entry in read_registry(registry):
        if entry.get("name") == name:
            return entry
    names = [e.get("name") for e in read_registry(registry)]
    raise ModelError(f"unknown model {name!r}: not a folder and not in {registry} "
                     f"(known: {', '.join(map(str, names)) or 'none'}).")


def _registry_folder(name: str, registry: Path) -> Path:
    entry = registry_entry(name, registry)
    if "path" in entry:
        return (registry.parent / entry["path"]).resolve()
    folder = cache_folder(name)
    if (folder / CARD_NAME).is_file():
        return folder
    raise ModelError(f"model {name!r} is not downloaded yet (expected in {folder}); "
                     f"run: brainmetseg models --download {name}")


def load_package(name_or_path: str | os.PathLike = DEFAULT_MODEL,
                 registry: Path = REGISTRY_FILE) -> ModelPackage:
    """Find a model package by folder path or registry name and read its card."""
    candidate = Path(name_or_path)
    if candidate.is_file():  # e.g. a .pt or TorchScript file: never unpickled here
        raise ModelError(f"{candidate}: is a file; a model is a package folder (model card {CARD_NAME} "
                         "and safetensors weights). Import a checkpoint, nnU-Net results or a MONAI "
                         "bundle first: brainmetseg models import --help.")
    folder = candidate if candidate.is_dir() else _registry_folder(str(name_or_path), registry)
    card_path = folder / CARD_NAME
    kind = file_kind(card_path)
    if kind == "missing":
        raise ModelError(f"{folder}: not a model package ({CARD_NAME} is missing).")
    if kind != "file":
        raise ModelError(f"{card_path}: model card is a {kind}, not a regular file.")
    data = read_json_object(card_path, "model card", ModelError)
    package = ModelPackage(ModelCard.from_dict(data, str(card_path)), folder)
    package.weights_path  # noqa: B018 - refuses weights outside the folder before any use
    if package.card.thick_slice_weights:
        from .thick_weights import check_scorer_split, thick_path

        thick_path(package)  # inside the folder, as the main weights
        check_scorer_split(package)
    from .int8_network import variants

    for variant in variants(package.card.int8_network):  # present now; hashed before use
        net = package.int8_network(variant)
        for path in (net.xml, net.bin):
            if not path.is_file():
                raise ModelError(f"{path}: the model card's {variant} int8 network file is missing.")
    return package


def save_package(net, card: ModelCard, folder: str | os.PathLike, overwrite: bool = False) -> ModelPackage:
    """Write ``net``'s weights (safetensors) and the card with their sha256 into ``folder``."""
    from safetensors.torch import save_file

    from .staging import default_file_mode, write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / card.weights
    if weights.exists() and not overwrite:
        raise ModelError(f"{weights}: already exists; pass overwrite to replace the package.")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = weights.with_name(weights.name + ".part")
    save_file(state, str(tmp), metadata={"name": card.name, "version": card.version})
    os.chmod(tmp, default_file_mode())  # safetensors writes 0600
    os.replace(tmp, weights)
    card = dataclasses.replace(card, sha256=sha256_file(weights))
    write_text(json.dumps(card.to_dict(), indent=2) + "\n", folder / CARD_NAME, overwrite=True)
    return ModelPackage(card, folder)
