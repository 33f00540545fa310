"""Reading PyTorch checkpoints (pickles) without letting them run code.

``torch.load(weights_only=True)`` unpickles only tensors, containers and primitive types; a
checkpoint naming any other global (a class, a function such as ``os.system``) is refused.
nnU-Net v2 checkpoints also hold numpy scalars (training log, best EMA Dice): the few numpy
types needed to rebuild those are allowed here, nothing else.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

from ..errors import ModelError


def numpy_scalar_globals() -> list:
    """The globals a pickled numpy scalar needs (reconstruct function, dtype and dtype classes)."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int8, np.int16,
                                          np.int32, np.int64, np.uint8, np.bool_)]
    return [scalar, np.dtype, *dtypes]


def load_checkpoint(path: str | os.PathLike, allowed: list | None = None) -> object:
    """Unpickle ``path`` with ``weights_only=True`` and only ``allowed`` extra globals (default:
    numpy scalars). :class:`ModelError` naming the file and what it wanted otherwise."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file is missing.")
    allowed = numpy_scalar_globals() if allowed is None else allowed
    if is_torchscript(path):
        raise ModelError(f"{path}: is a TorchScript archive (a program, not a checkpoint of weights). "
                         "BrainMetSeg does not load or run TorchScript; save the network's state dict "
                         "(torch.save(net.state_dict(), 'model.pt')) or safetensors and import that.")
    try:
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own hints are not passed on (see _detail)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "GLOBAL" in line or "Unsupported" in line),
                      first[0] if first else "")
        raise ModelError(f"{path}: refused to load this checkpoint: it holds objects outside "
                         f"BrainMetSeg's allow-list ({_detail(detail)}). A checkpoint is a pickle "
                         "and can run code; it was not loaded.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelError(f"{path}: not a readable PyTorch checkpoint "
                         f"({type(exc).__name__}: {_detail(str(exc).splitlines()[0] if str(exc) else '')}).") from None


def _detail(text: str) -> str:
    """torch's message, unless it advises loading unsafely (``weights_only=False``): that advice
    is never passed on, since following it lets the file run code."""
    named = re.search(r"GLOBAL ([\w.]+)", text)
    if named:  # torch goes on to suggest allow-listing it "if you trust" it: not passed on
        return f"it names {named.group(1)}"
    if "weights_only" in text or "trust" in text:
        return "the file holds more than tensors and plain containers"
    return text.strip()[:200]


def is_torchscript(path: str | os.PathLike) -> bool:
    """True for a TorchScript archive (``torch.jit.save``): a zip with compiled code and constants."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
