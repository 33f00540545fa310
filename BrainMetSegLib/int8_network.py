"""A model package's int8 networks (model card field ``int8_network``), run by OpenVINO.

    "int8_network": {
        "main":        {"xml": "model_int8.xml", "bin": "model_int8.bin",
                        "sha256_xml": "<64 hex>", "sha256_bin": "<64 hex>",
                        "from_weights_sha256": "<the card's sha256 of model.safetensors>"},
        "thick-slice": {... the same, from thick_slice_weights' sha256},
        "auto": ["main"],
        "made": {"openvino": "...", "nncf": "...", "calibration": "...", ...}}

Each entry is the network of one set of the card's weights (``main``: ``weights``; ``thick-slice``:
``thick_slice_weights``) after post-training quantisation (NNCF, 8-bit weights and activations of
its convolutions, calibrated on the phantoms ``made`` names; :mod:`.train.quantise`), saved as
OpenVINO IR. An IR is a graph of OpenVINO's standard operations plus raw tensors: reading it runs
no code (no pickle, no extension library is loaded). Both files are checked against the card's
sha256 before the first forward in a process; ``from_weights_sha256`` must name the weights
the entry claims to be made from. A card may have int8 networks for some of its sets of weights
only (the bundled demo: ``main``); ``--precision int8`` runs a scan whose weights have none in
fp32, with a warning in the result and ``inference_run.int8_not_run`` saying so.

Which runs is decided in :func:`.precision.choose_precision`: ``--precision int8`` runs every
set of weights' int8 network; ``auto``, where OpenVINO runs the forward on a CPU without native
bf16 (AVX2) or with native bf16 and AVX-512 VNNI, only those of the sets ``auto`` lists (measured
to agree with fp32 and bf16; absent or empty: int8 only when asked), the others as ``auto``
resolves without one (fp32, or bf16 on a CPU with native bf16).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from .checksums import sha256_file
from .errors import ModelError, OptionError

MAIN, THICK = "main", "thick-slice"  # one home: thick_weights.VARIANTS (checked there)
RECORDS = ("auto", "made")  # the field's keys that are not networks
ENTRY_KEYS = ("xml", "bin", "sha256_xml", "sha256_bin", "from_weights_sha256")
FIELD = "model card field 'int8_network'"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def variants(field: dict) -> list[str]:
    """The sets of weights the card's ``int8_network`` field has networks for."""
    return sorted(set(field) - set(RECORDS))


def check_field(field, weights_sha256: dict[str, str | None]) -> dict:
    """The card's ``int8_network``, checked: ``{}`` or entries for some of the sets of weights in
    ``weights_sha256`` (variant -> the card's sha256 of that single weights file; None: an
    ensemble, which has no int8 network), an optional ``auto`` list of those sets and an
    optional ``made`` record."""
    if not isinstance(field, dict):
        raise ModelError(f"{FIELD} must be an object, not {field!r}.")
    if not field:
        return {}
    have = variants(field)
    if not have or not set(have) <= set(weights_sha256):
        raise ModelError(f"{FIELD} must have entries named after the card's sets of weights "
                         f"({', '.join(sorted(weights_sha256))}); it has {', '.join(have) or 'none'}.")
    for variant in have:
        if weights_sha256[variant] is None:
            raise ModelError(f"{FIELD}: the {variant} network is an ensemble; an int8 network is made from one "
                             "weights file.")
        _check_entry(variant, field[variant], weights_sha256[variant])
    auto = field.get("auto", [])
    if not isinstance(auto, list) or len(set(auto)) != len(auto) or not set(auto) <= set(have):
        raise ModelError(f"{FIELD}: 'auto' must be a list of its networks ({', '.join(have)}), not {auto!r}.")
    if not isinstance(field.get("made", {}), dict):
        raise ModelError(f"{FIELD}: 'made' must be an object.")
    return field


def _check_entry(variant: str, entry, weights_sha256: str) -> None:
    where = f"{FIELD} '{variant}'"
    if not isinstance(entry, dict) or set(entry) != set(ENTRY_KEYS):
        raise ModelError(f"{where} must have exactly the keys {', '.join(ENTRY_KEYS)}.")
    for key, suffix in (("xml", ".xml"), ("bin", ".bin")):
        name = entry[key]
        if (not isinstance(name, str) or not name.endswith(suffix) or name.startswith(".")
                or "/" in name or "\\" in name):
            raise ModelError(f"{where}: {key} must be a file name ending in {suffix} in the package folder, "
                             f"not {name!r}.")
    for key in ("sha256_xml", "sha256_bin", "from_weights_sha256"):
        if not isinstance(entry[key], str) or not _SHA256.fullmatch(entry[key]):
            raise ModelError(f"{where}: {key} must be 64 hex digits.")
    if entry["from_weights_sha256"].lower() != weights_sha256.lower():
        raise ModelError(f"{where} was made from weights of sha256 {entry['from_weights_sha256'][:12]}..., "
                         f"not from the card's {variant} weights ({weights_sha256[:12]}...); re-make it "
                         "(docs/training/add_int8_network.py).")


@dataclass(frozen=True)
class Int8Network:
    """One int8 network of a package: its IR files and their expected sha256."""

    variant: str
    xml: Path
    bin: Path
    sha256_xml: str
    sha256_bin: str

    def check_files(self) -> None:
        """Both files present and as the card says (:class:`ModelError` naming the file)."""
        for path, sha in ((self.xml, self.sha256_xml), (self.bin, self.sha256_bin)):
            if not path.is_file():
                raise ModelError(f"{path}: the {self.variant} int8 network's file is missing.")
            if sha256_file(path).lower() != sha.lower():
                raise ModelError(f"{path}: sha256 does not match the model card (damaged or altered); "
                                 "re-install the model.")

    def forward(self):
        """A callable (torch tensor (N, C, Z, Y, X) float32 -> logits) and run.json's record, on
        torch's thread count as the fp32 export runs; the compiled network is kept per process
        (:data:`.openvino_backend.KEEP_COMPILED`)."""
        import openvino as ov
        import torch

        from . import openvino_backend as ovb

        threads = torch.get_num_threads()
        key = ("int8", self.sha256_bin.lower(), self.sha256_xml.lower(), threads)
        base = {"openvino": ov.__version__, "threads": threads, "compile_config": ovb.compile_config(),
                "int8_network": {"variant": self.variant, "xml": str(self.xml), "sha256_bin": self.sha256_bin}}
        if key in ovb._COMPILED:
            return ovb._Forward(ovb._COMPILED[key][0]), {**base, "cache": "process", "compile_s": 0.0}
        self.check_files()
        t0 = time.perf_counter()
        try:
            model = ovb._core().read_model(str(self.xml), str(self.bin))
            compiled = ovb.compile_model(model, threads)
        except RuntimeError as exc:
            raise ModelError(f"{self.xml}: OpenVINO cannot read or compile the int8 network "
                             f"({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}).") from None
        record = {"cache": "package", "compile_s": round(time.perf_counter() - t0, 2)}
        ovb.remember_compiled(key, compiled, record)
        return ovb._Forward(compiled), {**base, **record}


def int8_ready(card, precision: str, backend: str, device: str, network_given: bool) -> bool:
    """The card's int8 networks can run: it has them, the package's own weights run (no network
    given), on the CPU, through OpenVINO (``backend`` as asked). ``--precision int8`` where they
    cannot is an :class:`OptionError` saying why, before any work."""
    from .backends import choose_backend
    from .options import Autocast, Backend, Device, Precision

    why = ("the model package ships no int8 network" if not card.int8_network else
           "a network was given, not the package's" if network_given else
           f"it runs on the CPU, not {device}" if device != Device.CPU else "")
    if not why:
        chosen = choose_backend(backend, device, Autocast.FP32)
        why = "" if chosen.used == Backend.OPENVINO else f"it runs through OpenVINO ({chosen.reason})"
    if why and precision == Precision.INT8:
        raise OptionError(f"--precision int8 with model {card.name}: {why}; use --precision auto or fp32.")
    return not why


def int8_record(field: dict) -> dict:
    """run.json's record of a card's int8 networks: each one's .bin sha256 and the ``auto`` list."""
    return {**{v: field[v]["sha256_bin"] for v in variants(field)}, "auto": list(field.get("auto", []))}


def auto_runs(field: dict, variant: str) -> bool:
    """``--precision auto`` may run the int8 network of ``variant`` (the card's ``auto`` list)."""
    return variant in field.get("auto", [])


def int8_network(folder: Path, field: dict, variant: str) -> Int8Network | None:
    """The package's int8 network for ``variant`` (None: the card has none for it)."""
    entry = field.get(variant) if variant not in RECORDS else None
    if not entry:
        return None
    return Int8Network(variant, folder / entry["xml"], folder / entry["bin"], entry["sha256_xml"],
                       entry["sha256_bin"])
