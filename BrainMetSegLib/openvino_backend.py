"""OpenVINO forwards (fp32, or bf16 on CPUs with native bf16), with the exported network cached on
disk (export once per machine).

Converting a network (OpenVINO's PyTorch frontend, traced on a ``d x d x 2d`` input, ``d`` the
size divisor; batch and spatial dimensions dynamic; MONAI's type-A ResNet shortcut made
traceable, :func:`~.backends.traceable_copy`) takes seconds to minutes, longer than the
forwards it speeds up, so its result (OpenVINO IR: ``model.xml`` + ``model.bin``, fp32 weights)
is kept in ``<cache>/<key>/`` where ``<cache>`` is the ``cache_dir`` asked for (``--backend-cache``)
or ``$BRAINMETSEG_CACHE/openvino`` (default ``~/.cache/brainmetseg/openvino``) and ``<key>`` a
sha256 of the network's identity (the sha256 of the weights that run, architecture and I/O: a
package's thick-slice weights get an export of their own), the
OpenVINO version and the conversion settings. The folder is written atomically
(:func:`~.folder_staging.staged_folder`) with ``export.json`` beside the IR: the key, the sha256
of both files and the agreement check. On load the files are hashed again; a folder that does
not match is rebuilt, never trusted, with a warning saying why. An unwritable cache folder:
the export is used from memory (warned once per folder and process).

Every export is checked against torch before it is used or cached: one forward on a random
``2d x d x d`` input (not the trace's shape), max |sigmoid difference| <=
:data:`AGREEMENT_TOLERANCE`, else :class:`~.errors.ModelError` (the check compiles the export
in f32, whatever the run then uses). Compiled for the CPU with the run's inference precision
(``f32``, or ``bf16`` where the forward's precision resolved to bf16: the same checked IR, OpenVINO
computing in bf16), the latency hint and torch's thread count.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np

from .backends import traceable_copy
from .checksums import sha256_file
from .errors import ModelError, OutputError
from .folder_staging import staged_folder
from .resources import user_cache_root

# Bump when the conversion changes (what is traced, how): older cache folders are then not found.
EXPORT_FORMAT = 1
# Largest |sigmoid(OpenVINO logit) - sigmoid(torch logit)| an export may show (measured ~1e-5).
AGREEMENT_TOLERANCE = 1e-3
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
# OpenVINO's inference precision for the forward's autocast (bf16 only where native: backends.py)
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16"}
MODEL_XML, MODEL_BIN, META = "model.xml", "model.bin", "export.json"
_WARNED: set[str] = set()
_COMPILED: dict[tuple, tuple] = {}  # (key, threads[, precision]) -> (compiled model, record), oldest first
# Compiled networks kept per process: the model's (two for a package with thick-slice weights,
# whose cohorts mix thin and thick scans; int8 networks are the same two) and deepbet's two
# (a cohort runs one model).
KEEP_COMPILED = 4


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where exported networks are kept: ``cache_dir`` when given, else ``$BRAINMETSEG_CACHE/openvino``."""
    return Path(cache_dir) if cache_dir else user_cache_root() / "openvino"


def conversion_settings(in_channels: int, divisor: int) -> dict:
    """Everything about the conversion that changes the exported network (part of the cache key)."""
    return {"format": EXPORT_FORMAT, "frontend": "pytorch", "in_channels": int(in_channels),
            "example_input_zyx": [divisor, divisor, 2 * divisor], "dynamic": ["batch", "z", "y", "x"],
            "traceable_shortcut": True, "weights": "f32"}


def cache_key(identity: dict, settings: dict, openvino_version: str) -> str:
    """The cache folder's name: sha256 (first 32 hex digits) of what the export depends on."""
    text = json.dumps({"identity": identity, "settings": settings, "openvino": openvino_version},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def network_fingerprint(net) -> dict:
    """An identity for a network without a model card: its structure and every tensor's bytes."""
    digest = hashlib.sha256(repr(net).encode())
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {"state_sha256": digest.hexdigest()}


@functools.cache
def _core():
    import openvino as ov

    return ov.Core()


def export(net, in_channels: int, divisor: int):
    """The network as an ``openvino.Model`` with dynamic batch and spatial dimensions."""
    import openvino as ov
    import torch

    example = torch.zeros(1, in_channels, divisor, divisor, 2 * divisor)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace, which OpenVINO's frontend uses
        return ov.convert_model(traceable_copy(net).float().cpu(), example_input=example,
                                input=[ov.PartialShape([-1, in_channels, -1, -1, -1])])


def compile_config(precision: str = "f32") -> dict:
    """OpenVINO's CPU compile options but the thread count: ``precision`` (``f32`` or ``bf16``)
    as the inference precision, the latency hint."""
    if precision not in INFERENCE_PRECISION.values():
        raise ValueError(f"OpenVINO inference precision {precision!r}; use f32 or bf16")
    return {**COMPILE_CONFIG, "INFERENCE_PRECISION_HINT": precision}


def compile_model(model, threads: int, precision: str = "f32"):
    """``model`` compiled for the CPU: ``precision`` (``f32`` or ``bf16``) inference precision,
    latency hint, ``threads`` threads."""
    return _core().compile_model(model, "CPU", {**compile_config(precision),
                                                "INFERENCE_NUM_THREADS": str(int(threads))})


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a.astype(np.float64)))


def check_agreement(net, compiled, in_channels: int, divisor: int, outputs: str = "logit") -> dict:
    """One forward of torch and of ``compiled`` on the same random ``2d x d x d`` input (not the
    trace's shape, so a size frozen by the trace shows); :class:`ModelError` past the tolerance.
    ``outputs``: ``logit`` (compared after a sigmoid) or ``probability`` (compared as they are)."""
    import torch

    shape = (1, in_channels, 2 * divisor, divisor, divisor)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    try:
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).float().numpy()
    except RuntimeError as exc:
        raise ModelError(f"cannot check the OpenVINO export: torch fails on a {shape[2:]} input "
                         f"({str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}); "
                         "use --backend torch.") from None
    out = np.asarray(compiled({0: x})[0])
    if out.shape != ref.shape:
        raise ModelError(f"the network's OpenVINO export gives shape {out.shape}, torch {ref.shape}; "
                         "use --backend torch.")
    logit = float(np.abs(out - ref).max())
    squash = _sigmoid if outputs == "logit" else np.asarray
    prob = float(np.abs(squash(out) - squash(ref)).max())
    check = {"input_zyx": list(shape[2:]), "max_abs_logit_difference": logit,
             "max_abs_probability_difference": prob, "tolerance": AGREEMENT_TOLERANCE}
    if not prob <= AGREEMENT_TOLERANCE:  # NaN fails too
        raise ModelError(f"the network's OpenVINO export disagrees with torch (max probability difference "
                         f"{prob:.3g} > {AGREEMENT_TOLERANCE:g}); use --backend torch.")
    return check


def read_cached(folder: Path, key: str):
    """(model, metadata, "") from a cache folder whose files match its ``export.json``, else
    (None, None, why not)."""
    meta_path = folder / META
    if not meta_path.exists():
        return None, None, "not cached"
    try:
        meta = json.loads(meta_path.read_text())
        files = meta["files"]
        if meta.get("key") != key:
            return None, None, f"{META} holds key {meta.get('key')!r}, not {key}"
        for name in (MODEL_XML, MODEL_BIN):
            if sha256_file(folder / name) != files.get(name):
                return None, None, f"{name} does not match the sha256 in {META} (damaged or altered)"
        return _core().read_model(str(folder / MODEL_XML)), meta, ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
        return None, None, f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"


def write_cached(model, folder: Path, meta: dict) -> str:
    """Save ``model`` (fp32 weights) and ``meta`` + the files' sha256 into ``folder`` atomically;
    "" when done, else why not (the run goes on from memory)."""
    import openvino as ov

    try:
        with staged_folder(folder, "OpenVINO cache") as tmp:
            ov.save_model(model, str(tmp / MODEL_XML), compress_to_fp16=False)
            files = {name: sha256_file(tmp / name) for name in (MODEL_XML, MODEL_BIN)}
            (tmp / META).write_text(json.dumps({**meta, "files": files}, indent=2) + "\n")
    except (OutputError, OSError, RuntimeError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ""


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _export_and_cache(net, in_channels, divisor, key, folder: Path, meta: dict, threads: int,
                      outputs: str, precision: str = "f32"):
    """Convert, compile, check against torch (in f32) and cache; (compiled model in
    ``precision``, record fields)."""
    from .lazy_network import materialised

    net = materialised(net)  # an export needs the torch network itself (deep-copied, traced)
    t0 = time.perf_counter()
    try:
        model = export(net, in_channels, divisor)
    except Exception as exc:  # OpenVINO's frontend raises its own types for unsupported operations
        raise ModelError(f"the network does not convert to OpenVINO ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}); "
                         "use --backend torch.") from None
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = compile_model(model, threads)
    compile_s = time.perf_counter() - t0
    check = check_agreement(net, compiled, in_channels, divisor, outputs)
    if precision != "f32":  # the IR is checked in f32; the run computes in its own precision
        t0 = time.perf_counter()
        compiled = compile_model(model, threads, precision)
        compile_s += time.perf_counter() - t0
    failed = write_cached(model, folder, {**meta, "key": key, "export_s": round(export_s, 2), "check": check})
    if failed:
        _warn_once(f"{folder}: cannot write the OpenVINO cache ({failed}); the network is converted "
                   "again in every process (set BRAINMETSEG_CACHE or --backend-cache to a writable folder).")
    return compiled, {"cache": "not written" if failed else "miss", "export_s": round(export_s, 2),
                      "compile_s": round(compile_s, 2), "check": check}


def openvino_forward(net, in_channels: int, divisor: int, identity: dict | None = None,
                     cache_dir: str | Path | None = None, announce=None, outputs: str = "logit",
                     precision: str = "f32"):
    """A callable (torch tensor (N, C, Z, Y, X) float32 -> logits as a torch tensor) running
    ``net`` through OpenVINO, and run.json's record of how it was obtained (``cache``: hit, miss,
    rebuilt, not written, or process: already compiled in this process; seconds of export and
    compile; the agreement check). ``identity`` keys the cache (None: the network's own bytes).
    ``announce(message)`` is told before a conversion (it takes a while). ``outputs``: what the
    network gives, ``logit`` or ``probability`` (how the agreement check compares them).
    ``precision``: OpenVINO's inference precision, ``f32`` or ``bf16`` (CPUs with native bf16)."""
    import openvino as ov
    import torch

    if divisor < 8:  # an imported network whose input sizes are unknown: no shape to trace or check on
        raise ModelError(f"the network's input size divisor is unknown ({divisor}); OpenVINO needs it, "
                         "use --backend torch.")
    threads = torch.get_num_threads()
    settings = conversion_settings(in_channels, divisor)
    key = cache_key(identity if identity is not None else network_fingerprint(net), settings, ov.__version__)
    folder = cache_root(cache_dir) / key
    base = {"openvino": ov.__version__, "threads": threads, "cache_folder": str(folder),
            "compile_config": compile_config(precision)}
    if (key, threads, precision) in _COMPILED:
        compiled, record = _COMPILED[(key, threads, precision)]
        return _Forward(compiled), {**base, **record, "cache": "process", "export_s": 0.0, "compile_s": 0.0}
    model, meta, why = read_cached(folder, key)
    if model is not None:
        t0 = time.perf_counter()
        compiled = compile_model(model, threads, precision)
        record = {"cache": "hit", "export_s": 0.0, "compile_s": round(time.perf_counter() - t0, 2),
                  "check": meta.get("check")}
    else:
        if why != "not cached":
            warnings.warn(f"{folder}: OpenVINO cache not used ({why}); converting the network again.",
                          RuntimeWarning, stacklevel=2)
        meta = {"identity": identity, "settings": settings, "openvino": ov.__version__}
        if announce:
            announce(f"converting the network to OpenVINO (once; kept in {cache_root(cache_dir)})")
        compiled, record = _export_and_cache(net, in_channels, divisor, key, folder, meta, threads, outputs,
                                             precision)
        if why != "not cached" and record["cache"] == "miss":
            record["cache"], record["rebuilt_because"] = "rebuilt", why
    remember_compiled((key, threads, precision), compiled, record)
    return _Forward(compiled), {**base, **record}


def remember_compiled(key: tuple, compiled, record: dict) -> None:
    """Keep ``compiled`` for later forwards of this process under ``key`` (what identifies it:
    the network, the threads, the precision; the oldest of :data:`KEEP_COMPILED` goes)."""
    while len(_COMPILED) >= KEEP_COMPILED:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = (compiled, record)


class _Forward:
    """One infer request of a compiled model, called like the torch network."""

    def __init__(self, compiled):
        self.request = compiled.create_infer_request()

    def __call__(self, batch):
        import torch

        x = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        # share_inputs: OpenVINO reads ``x`` in place (the call is synchronous) instead of copying
        # it; without share_outputs it returns a fresh array of its own, the request's output
        # tensor is not shared, so no second copy is needed (Testing/test_openvino_backend.py).
        return torch.from_numpy(self.request.infer({0: x}, share_inputs=True)[0])
