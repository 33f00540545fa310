"""One run of the CLI: its temporary folder, command line, batch manifest and environment."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..options import (
    Device,
    MaskMethod,
    OutputFormat,
    ProgressMode,
    as_options,
    number,
    probability_threshold,
    values,
)
from ..sequences import MANIFEST_COLUMNS, SEQUENCES

INPUT_ROLES = SEQUENCES
INPUT_OPTIONS = {"t1": "--t1", "t2": "--t2", "flair": "--flair"}
DEVICES = values(Device)
BRAIN_MASK_OPTIONS = values(MaskMethod)  # the GUI offers the methods, not a mask file


class RunFolder:
    """A fresh temporary folder for one run: ``inputs/`` written by the module,
    ``outputs/`` written by the CLI. Removed by :meth:`cleanup` (or on leaving a
    ``with`` block) unless ``keep`` is set (for debugging)."""

    def __init__(self, base_dir: str | os.PathLike | None = None, keep: bool = False):
        if base_dir is not None:
            Path(base_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="BrainMetSeg-", dir=base_dir))
        self.inputs = self.path / "inputs"
        self.outputs = self.path / "outputs"
        self.inputs.mkdir()
        self.keep = keep

    def input_path(self, role: str, extension: str = ".nrrd") -> Path:
        """Where the module writes input ``role`` (one of :data:`INPUT_ROLES`)."""
        if role not in INPUT_ROLES:
            raise ValueError(f"unknown input role {role!r} (expected one of {INPUT_ROLES})")
        return self.inputs / f"{role}{extension}"

    def collect_outputs(self, outputs: Mapping[str, str]) -> dict[str, Path]:
        """Check the CLI's reported output files exist inside this run's folder.

        Raises FileNotFoundError naming the missing file; ValueError for a path
        outside the folder (the module reads and then deletes these files).
        """
        root = self.path.resolve()
        found = {}
        for key, value in outputs.items():
            p = Path(value)
            p = (p if p.is_absolute() else self.outputs / p).resolve()
            if root not in p.parents:
                raise ValueError(f"output {key!r} ({p}) is outside the run folder {root}")
            if not p.is_file():
                raise FileNotFoundError(f"output {key!r} reported by the CLI does not exist: {p}")
            found[key] = p
        return found

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


@dataclass
class RunOptions:
    """Settings of one segmentation run, as the Slicer module's GUI holds them.

    model: registry name or package folder; device: auto|cpu|cuda; threshold: detection
    threshold (probability) or None for the model card's; min_volume_mm3: smallest lesion
    kept (mm^3) or None for the card's; outline_threshold: the probability lesions are
    outlined at (<= the detection threshold) or None for the card's; brain_mask: deepbet|none.
    The values are checked where the CLI checks them (``options``) when a command is built
    (:meth:`validate`; the GUI changes them in between), and choices given as strings become
    the enum members of :mod:`~BrainMetSegLib.options` there.
    """

    model: str = ""
    device: Device = Device.AUTO
    threshold: float | None = None
    min_volume_mm3: float | None = None
    outline_threshold: float | None = None
    brain_mask: MaskMethod = MaskMethod.DEEPBET
    output_format: OutputFormat = OutputFormat.NRRD

    def validate(self) -> None:
        as_options(self, ValueError, device=(Device, "device"), brain_mask=(MaskMethod, "brain_mask"),
                   output_format=(OutputFormat, "output_format"))
        for value, name in ((self.threshold, "threshold"), (self.outline_threshold, "outline threshold")):
            if value is not None:
                probability_threshold(value, name, error=ValueError)
        if self.min_volume_mm3 is not None:
            number(self.min_volume_mm3, "minimum lesion volume (mm^3)", low=0.0, error=ValueError)
        if None not in (self.threshold, self.outline_threshold) and self.outline_threshold > self.threshold:
            raise ValueError(f"outline threshold {self.outline_threshold:g} is above the detection "
                             f"threshold {self.threshold:g}")


def _model_arguments(options: RunOptions) -> list[str]:
    """``--model`` / ``--threshold`` / ``--min-volume`` / ``--outline-threshold`` for the
    options that are set (unset ones leave the model card's values)."""
    args = []
    if options.model:
        args += ["--model", str(options.model)]
    if options.threshold is not None:
        args += ["--threshold", f"{options.threshold:g}"]
    if options.min_volume_mm3 is not None:
        args += ["--min-volume", f"{options.min_volume_mm3:g}"]
    if options.outline_threshold is not None:
        args += ["--outline-threshold", f"{options.outline_threshold:g}"]
    return args


def _run_arguments(output_dir: str | os.PathLike, options: RunOptions) -> list[str]:
    """``-o``, ``--progress json`` (the module reads its events) and the run's format, device and
    brain mask, as plain strings."""
    return ["-o", str(output_dir), "--progress", ProgressMode.JSON.value,
            "--format", options.output_format.value, "--device", options.device.value,
            "--brain-mask", options.brain_mask.value]


def segment_command(python: str | os.PathLike, inputs: Mapping[str, str | os.PathLike],
                    output_dir: str | os.PathLike, options: RunOptions) -> list[str]:
    """The ``PythonSlicer -m BrainMetSegLib segment ...`` argument list.

    inputs: role -> file; ``t1ce`` is required, ``t1``/``t2``/``flair`` optional.
    """
    options.validate()
    unknown = sorted(set(inputs) - set(INPUT_ROLES))
    if unknown:
        raise ValueError(f"unknown input roles {unknown} (expected {INPUT_ROLES})")
    if not inputs.get("t1ce"):
        raise ValueError("the CE-T1 input is required")
    cmd = [str(python), "-m", "BrainMetSegLib", "segment", str(inputs["t1ce"]),
           *_run_arguments(output_dir, options)]
    for role, flag in INPUT_OPTIONS.items():
        if inputs.get(role):
            cmd += [flag, str(inputs[role])]
    cmd += _model_arguments(options)
    return cmd


def write_manifest(items: Sequence[str | os.PathLike | Mapping], path: str | os.PathLike) -> Path:
    """Write a batch manifest CSV (columns :data:`MANIFEST_COLUMNS`, absolute paths).

    items: CE-T1 paths, or mappings with ``t1ce`` and optional ``t1``, ``t2``,
    ``flair``, ``case_id``. Raises ValueError for an item without a CE-T1.
    """
    import csv

    path = Path(path)
    rows = []
    for n, item in enumerate(items, start=1):
        row = dict(item) if isinstance(item, Mapping) else {"t1ce": item}
        unknown = sorted(set(row) - set(MANIFEST_COLUMNS))
        if unknown:
            raise ValueError(f"item {n}: unknown keys {unknown} (expected {MANIFEST_COLUMNS})")
        if not row.get("t1ce"):
            raise ValueError(f"item {n}: no CE-T1 (t1ce) path")
        rows.append({k: ("" if not row.get(k) else
                         str(row[k]) if k == "case_id" else str(Path(row[k]).resolve()))
                     for k in MANIFEST_COLUMNS})
    if not rows:
        raise ValueError("no input files given")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def batch_command(python: str | os.PathLike, manifest: str | os.PathLike,
                  output_dir: str | os.PathLike, options: RunOptions, overwrite: bool = False
                  ) -> list[str]:
    """The CLI command for a cohort: ``segment --manifest CSV -o OUTDIR`` (one sub-folder per case)."""
    options.validate()
    cmd = [str(python), "-m", "BrainMetSegLib", "segment", "--manifest", str(manifest),
           *_run_arguments(output_dir, options)]
    cmd += _model_arguments(options)
    if overwrite:
        cmd.append("--overwrite")
    return cmd


def library_parent() -> Path:
    """The folder that holds the ``BrainMetSegLib`` package (put on the subprocess' path)."""
    return Path(__file__).resolve().parents[2]  # BrainMetSegLib/slicer_bridge/commands.py


def subprocess_environment(base: Mapping[str, str] | None = None,
                           library_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Environment additions for the CLI subprocess.

    Prepends the library's parent folder to PYTHONPATH (the installed extension's
    lib folder is not on PythonSlicer's default path), and makes Python's output
    unbuffered UTF-8 so progress lines arrive as they are written.
    """
    base = dict(os.environ if base is None else base)
    lib = str(library_dir or library_parent())
    paths = [lib] + [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p and p != lib]
    return {"PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1",
            "PYTHONIOENCODING": "utf-8"}


def python_slicer_executable(which=shutil.which) -> str:
    """Path of ``PythonSlicer`` (Slicer's Python launcher), else the current interpreter."""
    return which("PythonSlicer") or sys.executable
