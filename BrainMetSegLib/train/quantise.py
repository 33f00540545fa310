"""Int8 networks for a model package (card field ``int8_network``, :mod:`BrainMetSegLib.int8_network`):
post-training quantisation with NNCF, calibrated on synthetic phantoms, into a new package folder.

    from BrainMetSegLib.train.quantise import add_int8_networks
    add_int8_networks("Resources/Models/brainmetseg-demo", "out/demo-2.6.0", seed=1000, n=4, version="2.6.0")

Each set of weights (``main``; ``thick-slice`` where the card has thick-slice weights) is exported
to OpenVINO (fp32, as the fp32 backend does), then quantised by ``nncf.quantize`` (8-bit symmetric
weights and activations of the convolutions, NNCF's default ``performance`` preset, fast bias
correction) with the network's own inputs as calibration: phantoms ``brainmetseg synth -n N --seed
SEED`` preprocessed exactly as ``segment`` does (the card's grid, deepbet's brain mask, z-score,
crop, zero padding to the size divisor) -- at 1 mm for ``main``, re-acquired as slab-averaged
3, 5 and 7 mm slices in turn for ``thick-slice`` (the scans those weights run on). The IR is written
beside the weights as ``model_int8.xml/.bin`` (``model_thick_int8.*``), the card gets their sha256,
the sha256 of the weights each was made from and ``made`` (versions, calibration, seconds); the
folder is staged and renamed into place after it loads and each int8 network compiles.
NNCF is needed only here (``pip install nncf``), not to run the package.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import ModelError, OutputError
from ..folder_staging import staged_folder
from ..int8_network import MAIN, THICK
from ..models import CARD_NAME, ModelPackage, load_package

FILES = {MAIN: ("model_int8.xml", "model_int8.bin"), THICK: ("model_thick_int8.xml", "model_thick_int8.bin")}
THICK_CALIBRATION_MM = (3.0, 5.0, 7.0)  # slice thicknesses the thick-slice calibration cycles through


def network_input(package: ModelPackage, image, brain_mask: str = "deepbet") -> np.ndarray:
    """What ``segment`` gives the network for ``image`` (a SimpleITK CE-T1): (1, C, Z, Y, X)
    float32, preprocessed and zero-padded (centred) to multiples of the size divisor, at least
    the card's patch."""
    from ..architectures import size_divisor
    from ..inference import padded_shape
    from ..preprocess import PreprocessConfig, preprocess

    card = package.card
    pre = preprocess([image], PreprocessConfig(spacing_mm=tuple(card.spacing_mm), brain_mask=brain_mask,
                                               normalisation=card.normalisation))
    divisor = size_divisor(card.architecture, card.architecture_args) or 1
    shape = pre.array.shape[1:]
    target = [max(p, int(m)) for p, m in zip(padded_shape(shape, divisor), card.patch_size[::-1], strict=True)]
    pad = [(0, 0)] + [((t - s) // 2, t - s - (t - s) // 2) for s, t in zip(shape, target, strict=True)]
    return np.pad(pre.array, pad)[None].astype(np.float32)


def calibration_images(seed: int, n: int, variant: str) -> list:
    """``n`` phantoms of ``brainmetseg synth --seed seed`` (cases 0..n-1): as written for ``main``;
    re-acquired as slab-averaged slices of :data:`THICK_CALIBRATION_MM` in turn for ``thick-slice``."""
    from ..synth.case import make_case
    from ..synth.config import SynthConfig
    from ..synth.dataset import case_seed

    configs = [SynthConfig() if variant == MAIN else
               SynthConfig(slice_thickness_mm=THICK_CALIBRATION_MM[k % len(THICK_CALIBRATION_MM)])
               for k in range(n)]
    return [make_case(case_seed(seed, k), configs[k]).image for k in range(n)]


def quantise_network(package: ModelPackage, variant: str, inputs: list[np.ndarray]):
    """The ``variant`` network as an int8 ``openvino.Model`` calibrated on ``inputs``."""
    import nncf

    from ..architectures import size_divisor
    from ..openvino_backend import export

    net = package.load_network("cpu", variant)
    divisor = size_divisor(package.card.architecture, package.card.architecture_args) or 1
    model = export(net, len(package.card.input_sequences), divisor)
    return nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs))


def _made(seed: int, n: int, seconds: float, variants: list[str], given: dict | None = None) -> dict:
    from importlib.metadata import version

    if given is not None:
        calibration = "inputs given: " + ", ".join(f"{v} {len(x)} of shapes {sorted({a.shape for a in x})}"
                                                   for v, x in given.items())
    else:
        calibration = f"brainmetseg synth -n {n} --seed {seed} (cases 0-{n - 1}), preprocessed as segment does"
        if THICK in variants:
            calibration += ("; thick-slice: the same re-acquired as "
                            f"{'/'.join(f'{t:g}' for t in THICK_CALIBRATION_MM)} mm slab-averaged slices in turn")
    return {"tool": "BrainMetSegLib.train.quantise (nncf.quantize, default preset, fast bias correction)",
            "nncf": version("nncf"), "openvino": version("openvino"), "calibration": calibration,
            "seconds": round(seconds, 1)}


def add_int8_networks(package_dir: str | os.PathLike, out: str | os.PathLike, seed: int = 1000, n: int = 4,
                      version: str | None = None, overwrite: bool = False,
                      inputs: dict[str, list[np.ndarray]] | None = None, auto: tuple[str, ...] = (),
                      only: tuple[str, ...] | None = None) -> ModelPackage:
    """Write a copy of the package ``package_dir`` into ``out`` with an int8 network for each set
    of its weights, calibrated on ``n`` phantoms of ``seed``, or on ``inputs`` (variant -> the
    network's own inputs, e.g. :func:`network_input` of one's own scans; ``made`` then says so).
    ``auto``: the sets ``--precision auto`` may run in int8 (list only those measured to agree
    with fp32; the others run int8 only when asked). ``only``: quantise these sets of weights
    (default: all; scans of the others always run fp32). Returns the new package, checked."""
    from ..checksums import sha256_file

    package, out = load_package(package_dir), Path(out)
    if out.resolve() == package.folder.resolve():
        raise OutputError(f"{out}: is the source package; write the new package to another folder.")
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: already exists; pass --overwrite to replace it.")
    if package.card.ensemble:
        raise ModelError(f"{package.folder}: an ensemble; an int8 network is made from one weights file.")
    networks = [MAIN] + ([THICK] if package.card.thick_slice_weights else [])
    variants = [v for v in networks if only is None or v in only]
    given = inputs is not None
    if only is not None and (not variants or not set(only) <= set(networks)):
        raise ModelError(f"--variants {','.join(only)}: the package's networks are {', '.join(networks)}.")
    if not set(auto) <= set(variants):
        raise ModelError(f"--auto {','.join(auto)}: the int8 networks made are {', '.join(variants)}.")
    old = {name for entry in package.card.int8_network.values() if isinstance(entry, dict)
           for key, name in entry.items() if key in ("xml", "bin")}
    t0 = time.perf_counter()
    if inputs is not None and set(inputs) != set(variants):
        raise ModelError(f"calibration inputs for {', '.join(sorted(inputs))}; the package's networks are "
                         f"{', '.join(variants)}.")
    inputs = inputs or {v: [network_input(package, im) for im in calibration_images(seed, n, v)] for v in variants}
    models = {v: quantise_network(package, v, inputs[v]) for v in variants}
    field = {}
    with staged_folder(out, "model package") as tmp:
        for f in sorted(package.folder.iterdir()):
            if f.is_file() and f.name not in old | {CARD_NAME}:
                shutil.copy2(f, tmp / f.name)
        for variant, model in models.items():
            field[variant] = _write_ir(model, tmp, variant, package.weight_files(variant)[0][1], sha256_file)
        field["auto"] = list(auto)
        field["made"] = _made(seed, n, time.perf_counter() - t0, variants, given=inputs if given else None)
        card = dataclasses.replace(package.card, int8_network=field, version=version or package.card.version)
        (tmp / CARD_NAME).write_text(json.dumps(card.to_dict(), indent=2) + "\n")
        new = load_package(tmp)
        for variant in variants:
            new.int8_network(variant).forward()  # sha256 checked, read and compiled
    return load_package(out)


def _write_ir(model, folder: Path, variant: str, weights_sha256: str, sha256_file) -> dict:
    import openvino as ov

    from ..staging import default_file_mode

    xml, bin_ = FILES[variant]
    ov.save_model(model, str(folder / xml), compress_to_fp16=False)
    for name in (xml, bin_):
        os.chmod(folder / name, default_file_mode())
    return {"xml": xml, "bin": bin_, "sha256_xml": sha256_file(folder / xml),
            "sha256_bin": sha256_file(folder / bin_), "from_weights_sha256": weights_sha256.lower()}
