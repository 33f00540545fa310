"""Everything the Slicer module needs that is not a Slicer call (pure Python, testable headless).

The module ``BrainMetSeg/BrainMetSeg.py`` is glue: it turns MRML nodes into files,
runs ``PythonSlicer -m BrainMetSegLib segment ... --progress json`` in a subprocess
and turns the outputs into MRML nodes. The decisions behind that glue live here so
that pytest can check them without Slicer:

- segment names, ids, colours and the DICOM terminology entry of a metastasis;
- which Python packages are missing in Slicer's environment and how to install
  them without ever replacing Slicer's own SimpleITK or torch;
- the per-run temporary folder (inputs written, outputs collected, cleaned up);
- the CLI command line and its environment;
- reading the subprocess output (progress lines, the final result line, errors);
- killing the subprocess with all its children (Cancel);
- the lesion table's column types and units for ``vtkMRMLTableNode``;
- GPU names / memory from ``nvidia-smi`` (shown without importing torch).

This module never imports ``slicer``, ``qt``, ``vtk``, torch or MONAI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .progress import ProgressEvent, parse_progress_line

# --------------------------------------------------------------------------------------
# Segments: names, ids, colours, terminology
# --------------------------------------------------------------------------------------

SEGMENT_NAME_PREFIX = "Metastasis"

# A fixed palette of 20 well-separated colours (RGB in [0, 1]); lesion N always gets
# PALETTE[(N - 1) % 20], so lesion 1 has the same colour in every run and after
# re-thresholding. Based on Kelly's colours of maximum contrast, with the dark
# ones (browns, olive) replaced by bright hues that stay visible over dark MRI
# background; no greys (Slicer's "no colour").
PALETTE: tuple[tuple[float, float, float], ...] = tuple(
    (r / 255.0, g / 255.0, b / 255.0)
    for r, g, b in (
        (255, 179, 0),    # vivid yellow
        (128, 62, 117),   # strong purple
        (255, 104, 0),    # vivid orange
        (166, 189, 215),  # very light blue
        (193, 0, 32),     # vivid red
        (0, 125, 52),     # vivid green
        (246, 118, 142),  # strong purplish pink
        (0, 83, 138),     # strong blue
        (206, 162, 98),   # greyish yellow
        (255, 122, 92),   # strong yellowish pink
        (120, 80, 200),   # strong violet
        (190, 255, 70),   # vivid lime
        (179, 40, 81),    # strong purplish red
        (255, 255, 140),  # light yellow
        (255, 60, 200),   # vivid magenta
        (147, 170, 0),    # vivid yellowish green
        (160, 110, 255),  # light violet
        (241, 58, 19),    # vivid reddish orange
        (0, 210, 130),    # vivid teal green
        (0, 161, 194),    # vivid cyan
    )
)

# Slicer's TerminologyEntry tag: 7 parts separated by "~" (context, category, type,
# type modifier, region context, region, region modifier), codes as
# "scheme^value^meaning". Codes from Slicer's DICOM master list
# (SegmentationCategoryTypeModifier-DICOM-Master.json, CID 7159 "Lesion segmentation
# types") and AnatomicRegionAndModifier-DICOM-Master.json.
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
CATEGORY_CODE = ("SCT", "49755003", "Morphologically Altered Structure")
TYPE_CODE = ("SCT", "14799000", "Neoplasm, Secondary")
REGION_CODE = ("SCT", "12738006", "Brain")
EMPTY_CODE = ("", "", "")


def _code(code: Sequence[str]) -> str:
    return "^".join(code)


def terminology_entry(category=CATEGORY_CODE, type_=TYPE_CODE, type_modifier=EMPTY_CODE,
                      region=REGION_CODE, region_modifier=EMPTY_CODE,
                      context: str = TERMINOLOGY_CONTEXT,
                      anatomic_context: str = ANATOMIC_CONTEXT) -> str:
    """A Slicer ``TerminologyEntry`` tag value (default: secondary neoplasm in the brain)."""
    return "~".join([context, _code(category), _code(type_), _code(type_modifier),
                     anatomic_context, _code(region), _code(region_modifier)])


METASTASIS_TERMINOLOGY = terminology_entry()


def parse_terminology_entry(entry: str) -> dict:
    """Split a ``TerminologyEntry`` tag into its 7 named parts (codes as 3-tuples)."""
    parts = entry.split("~")
    if len(parts) != 7:
        raise ValueError(f"terminology entry needs 7 '~'-separated parts, got {len(parts)}: {entry!r}")
    names = ("context", "category", "type", "type_modifier", "anatomic_context", "region",
             "region_modifier")
    out = {}
    for name, part in zip(names, parts, strict=True):
        if name.endswith("context"):
            out[name] = part
        else:
            code = tuple(part.split("^"))
            if len(code) != 3:
                raise ValueError(f"terminology code {part!r} is not scheme^value^meaning")
            out[name] = code
    return out


def segment_name(lesion_id: int) -> str:
    """Display name of lesion ``lesion_id`` (1-based): ``"Metastasis 3"``."""
    if int(lesion_id) < 1:
        raise ValueError(f"lesion ids start at 1, got {lesion_id}")
    return f"{SEGMENT_NAME_PREFIX} {int(lesion_id)}"


def segment_id(lesion_id: int) -> str:
    """Segment id of lesion ``lesion_id`` inside the segmentation node: ``"Metastasis_3"``."""
    return segment_name(lesion_id).replace(" ", "_")


def lesion_id_from_segment_name(name: str) -> int | None:
    """Inverse of :func:`segment_name` / :func:`segment_id`; None for other names."""
    m = re.fullmatch(rf"{SEGMENT_NAME_PREFIX}[ _](\d+)", name.strip())
    return int(m.group(1)) if m and int(m.group(1)) >= 1 else None


def segment_color(lesion_id: int) -> tuple[float, float, float]:
    """RGB colour in [0, 1] of lesion ``lesion_id``; the same id always gets the same colour."""
    if int(lesion_id) < 1:
        raise ValueError(f"lesion ids start at 1, got {lesion_id}")
    return PALETTE[(int(lesion_id) - 1) % len(PALETTE)]


@dataclass(frozen=True)
class SegmentSpec:
    """What a lesion's segment looks like: id, name, colour (RGB 0-1), terminology tag."""

    lesion_id: int
    segment_id: str
    name: str
    color: tuple[float, float, float]
    terminology: str = METASTASIS_TERMINOLOGY


def segment_specs(n_lesions: int) -> list[SegmentSpec]:
    """Segments for lesions 1..n in label order (label value i+1 -> i-th spec)."""
    return [SegmentSpec(i, segment_id(i), segment_name(i), segment_color(i))
            for i in range(1, int(n_lesions) + 1)]


# --------------------------------------------------------------------------------------
# Lesion table columns for vtkMRMLTableNode
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TableColumn:
    """One lesion-table column: name, value type ("int", "double", "bool", "string"),
    unit label and description (shown as tooltips in Slicer's table view)."""

    name: str
    kind: str
    unit: str = ""
    description: str = ""


SEGMENT_COLUMN = TableColumn("segment", "string", "", "Name of the lesion's segment")

# The library's columns (BrainMetSegLib.lesions.COLUMNS), with types and units.
LESION_COLUMNS: tuple[TableColumn, ...] = (
    TableColumn("lesion_id", "int", "", "Lesion number (label value; 1 = largest at inference)"),
    TableColumn("voxels", "int", "voxels", "Number of voxels"),
    TableColumn("volume_mm3", "double", "mm3", "Volume"),
    TableColumn("longest_diameter_mm", "double", "mm", "Longest 3D diameter"),
    TableColumn("axial_longest_diameter_mm", "double", "mm",
                "RANO-BM longest diameter on the axial slice where it is largest"),
    TableColumn("axial_perpendicular_diameter_mm", "double", "mm",
                "RANO-BM diameter perpendicular to the axial longest diameter"),
    TableColumn("axial_slices", "int", "slices", "Number of axial slices the lesion is seen on"),
    TableColumn("centroid_r", "double", "mm", "Centroid, Right (RAS)"),
    TableColumn("centroid_a", "double", "mm", "Centroid, Anterior (RAS)"),
    TableColumn("centroid_s", "double", "mm", "Centroid, Superior (RAS)"),
    TableColumn("centroid_i", "int", "voxel", "Centroid voxel index i of the input volume"),
    TableColumn("centroid_j", "int", "voxel", "Centroid voxel index j of the input volume"),
    TableColumn("centroid_k", "int", "voxel", "Centroid voxel index k of the input volume"),
    TableColumn("max_probability", "double", "", "Highest model probability in the lesion"),
    TableColumn("mean_probability", "double", "", "Mean model probability in the lesion"),
    TableColumn("rano_bm_measurable", "bool", "",
                "RANO-BM measurable: axial longest >= 10 mm, perpendicular >= 5 mm, >= 2 slices"),
)

TABLE_COLUMNS: tuple[TableColumn, ...] = (SEGMENT_COLUMN, *LESION_COLUMNS)


def table_cell(column: TableColumn, value):
    """Convert one value for a column of the given kind (bool -> 0/1 int, None -> NaN/'' )."""
    if column.kind == "string":
        return "" if value is None else str(value)
    if column.kind in ("int", "bool"):
        return int(bool(value)) if column.kind == "bool" else int(value)
    return float("nan") if value is None else float(value)


def table_columns(rows: Sequence[Mapping], segment_names: Sequence[str] | None = None
                  ) -> list[tuple[TableColumn, list]]:
    """Column-wise values of the lesion table, in :data:`TABLE_COLUMNS` order.

    rows: the library's lesion rows (``lesions.lesion_table``); segment_names: one per
    row (defaults to ``"Metastasis <lesion_id>"``).
    """
    if segment_names is None:
        segment_names = [segment_name(int(r["lesion_id"])) for r in rows]
    if len(segment_names) != len(rows):
        raise ValueError(f"{len(segment_names)} segment names for {len(rows)} table rows")
    out = [(SEGMENT_COLUMN, [table_cell(SEGMENT_COLUMN, n) for n in segment_names])]
    for col in LESION_COLUMNS:
        out.append((col, [table_cell(col, r.get(col.name)) for r in rows]))
    return out


# --------------------------------------------------------------------------------------
# Python dependencies inside Slicer
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Requirement:
    """A package the library needs in Slicer's Python.

    distribution: pip name; module: import name; specifier: PEP 440 version range;
    no_deps: install with ``--no-deps`` (its own requirements would pull a GUI toolkit
    or torch; the ones it really imports are listed separately).
    """

    distribution: str
    module: str
    specifier: str = ""
    no_deps: bool = False
    purpose: str = ""

    def __str__(self) -> str:
        return f"{self.distribution}{self.specifier}"


# torch comes from Slicer's PyTorch extension (right CUDA build for the machine) and
# SimpleITK ships with Slicer: neither is ever installed or upgraded with pip.
PROTECTED = ("torch", "SimpleITK")
TORCH_MINIMUM = "2.2"

REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("monai", "monai", ">=1.4", purpose="sliding-window inference and networks"),
    Requirement("safetensors", "safetensors", ">=0.4", purpose="model weights without pickle"),
    Requirement("connected-components-3d", "cc3d", ">=3.12", purpose="lesion instances"),
    Requirement("scikit-image", "skimage", ">=0.22", purpose="lesion diameters"),
    Requirement("scipy", "scipy", ">=1.11", purpose="lesion measurements"),
    Requirement("tqdm", "tqdm", ">=4.66", purpose="progress"),
    Requirement("nibabel", "nibabel", ">=5", purpose="brain extraction I/O"),
    Requirement("pandas", "pandas", ">=1.5", purpose="brain extraction (deepbet)"),
    Requirement("fill-voids", "fill_voids", ">=2", purpose="brain extraction (deepbet)"),
    # deepbet's metadata requires customtkinter (a GUI toolkit) and torch: install
    # it alone and its runtime imports above.
    Requirement("deepbet", "deepbet", ">=1.0.2", no_deps=True, purpose="brain extraction"),
)


def normalise_name(name: str) -> str:
    """PEP 503 normalised distribution name (``Fill_Voids`` -> ``fill-voids``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _satisfies(version: str, specifier: str) -> bool:
    if not specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging ships with Slicer and pip
        return _satisfies_simple(version, specifier)
    try:
        return Version(version) in SpecifierSet(specifier)
    except InvalidVersion:
        return False


def _version_tuple(version: str) -> tuple[int, ...]:
    nums = []
    for part in re.split(r"[.+-]", version):
        m = re.match(r"\d+", part)
        if not m:
            break
        nums.append(int(m.group()))
    return tuple(nums)


def _satisfies_simple(version: str, specifier: str) -> bool:
    """Fallback for ``>=X`` / ``<X`` / ``==X`` comma lists when ``packaging`` is absent."""
    v = _version_tuple(version)
    for spec in specifier.split(","):
        m = re.fullmatch(r"\s*(>=|<=|==|<|>)\s*([\w.]+)\s*", spec)
        if not m:
            continue
        op, ref = m.group(1), _version_tuple(m.group(2))
        ok = {">=": v >= ref, "<=": v <= ref, "==": v == ref, "<": v < ref, ">": v > ref}[op]
        if not ok:
            return False
    return True


def installed_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution (None when absent), without importing it."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def missing_requirements(installed: Mapping[str, str | None],
                         requirements: Sequence[Requirement] = REQUIREMENTS) -> list[Requirement]:
    """Requirements whose distribution is absent or outside its version range.

    installed: distribution name -> version or None (see :func:`installed_versions`).
    Protected packages (torch, SimpleITK) are never returned, whatever the list says.
    """
    norm = {normalise_name(k): v for k, v in installed.items()}
    protected = {normalise_name(p) for p in PROTECTED}
    out = []
    for req in requirements:
        key = normalise_name(req.distribution)
        if key in protected:
            continue
        version = norm.get(key)
        if version is None or not _satisfies(version, req.specifier):
            out.append(req)
    return out


def torch_problem(torch_version: str | None, minimum: str = TORCH_MINIMUM) -> str | None:
    """Why torch cannot be used (None when fine): absent, or older than ``minimum``."""
    if torch_version is None:
        return "PyTorch is not installed"
    if not _satisfies(torch_version, f">={minimum}"):
        return (f"PyTorch {torch_version} is older than {minimum}; update it in the "
                f"PyTorch Utils module (version requirement >={minimum})")
    return None


def constraints_text(installed: Mapping[str, str | None]) -> str:
    """pip constraints pinning the protected packages to their installed versions.

    Passed with ``-c`` to every pip call, so a package that wants another torch or
    SimpleITK makes pip pick an older compatible release (or fail) instead of
    replacing Slicer's. Protected packages that are absent are pinned to nothing
    installable ("<0"), so pip can never bring them in as a dependency either.
    """
    norm = {normalise_name(k): v for k, v in installed.items()}
    lines = []
    for name in PROTECTED:
        version = norm.get(normalise_name(name))
        lines.append(f"{name}=={version}" if version else f"{name}<0")
    return "\n".join(lines) + "\n"


def pip_install_commands(missing: Sequence[Requirement], constraints_file: str | os.PathLike
                         ) -> list[list[str]]:
    """``pip install`` argument lists (without ``pip install``) for ``missing``.

    Normal requirements go in one call; ``no_deps`` ones in a second call with
    ``--no-deps``. Every call carries ``-c constraints_file``.
    """
    normal = [str(r) for r in missing if not r.no_deps]
    nodeps = [str(r) for r in missing if r.no_deps]
    cmds = []
    if normal:
        cmds.append([*normal, "-c", str(constraints_file)])
    if nodeps:
        cmds.append(["--no-deps", *nodeps, "-c", str(constraints_file)])
    return cmds


# --------------------------------------------------------------------------------------
# One run: temporary folder, command line, environment
# --------------------------------------------------------------------------------------

INPUT_ROLES = ("t1ce", "t1", "t2", "flair")
INPUT_OPTIONS = {"t1": "--t1", "t2": "--t2", "flair": "--flair"}
DEVICES = ("auto", "cpu", "cuda")
BRAIN_MASK_OPTIONS = ("deepbet", "none")


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

    model: registry name or package folder; device: auto|cpu|cuda; threshold:
    probability in (0, 1) or None for the model card's; min_volume_mm3: smallest
    lesion kept (mm^3) or None for the card's; brain_mask: deepbet|none.
    """

    model: str = ""
    device: str = "auto"
    threshold: float | None = None
    min_volume_mm3: float | None = None
    brain_mask: str = "deepbet"
    output_format: str = "nrrd"

    def validate(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.brain_mask not in BRAIN_MASK_OPTIONS:
            raise ValueError(f"brain_mask must be one of {BRAIN_MASK_OPTIONS}, got {self.brain_mask!r}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.min_volume_mm3 is not None and self.min_volume_mm3 < 0:
            raise ValueError(f"minimum lesion volume must be >= 0 mm^3, got {self.min_volume_mm3}")


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
           "-o", str(output_dir), "--progress", "json", "--format", options.output_format,
           "--device", options.device, "--brain-mask", options.brain_mask]
    for role, flag in INPUT_OPTIONS.items():
        if inputs.get(role):
            cmd += [flag, str(inputs[role])]
    if options.model:
        cmd += ["--model", str(options.model)]
    if options.threshold is not None:
        cmd += ["--threshold", f"{options.threshold:g}"]
    if options.min_volume_mm3 is not None:
        cmd += ["--min-volume", f"{options.min_volume_mm3:g}"]
    return cmd


MANIFEST_COLUMNS = ("case_id", "t1ce", "t1", "t2", "flair")


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
           "-o", str(output_dir), "--progress", "json", "--format", options.output_format,
           "--device", options.device, "--brain-mask", options.brain_mask]
    if options.model:
        cmd += ["--model", str(options.model)]
    if options.threshold is not None:
        cmd += ["--threshold", f"{options.threshold:g}"]
    if options.min_volume_mm3 is not None:
        cmd += ["--min-volume", f"{options.min_volume_mm3:g}"]
    if overwrite:
        cmd.append("--overwrite")
    return cmd


def library_parent() -> Path:
    """The folder that holds the ``BrainMetSegLib`` package (put on the subprocess' path)."""
    return Path(__file__).resolve().parent.parent


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


# --------------------------------------------------------------------------------------
# Reading the subprocess output
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunResult:
    """The CLI's final ``{"type": "result", ...}`` line."""

    case: str
    outputs: dict[str, str]
    lesions: int


RESULT_KEYS = ("labels", "probability", "table_csv", "table_json", "run")


def parse_result_line(line: str) -> RunResult | None:
    """Parse the final result line printed with ``--progress json``; None for other lines."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("type") != "result":
        return None
    outputs = obj.get("outputs")
    if not isinstance(outputs, dict) or not all(isinstance(v, str) for v in outputs.values()):
        return None
    try:
        lesions = int(obj.get("lesions", 0))
    except (TypeError, ValueError):
        return None
    return RunResult(str(obj.get("case", "")), dict(outputs), lesions)


# Weights of the pipeline's stages in the overall progress bar (inference dominates);
# stages not listed count as "other".
STAGE_WEIGHTS = {"read": 0.03, "coregister": 0.07, "preprocess": 0.15, "load_model": 0.03,
                 "inference": 0.6, "postprocess": 0.07, "write": 0.05}
OTHER_STAGE_WEIGHT = 0.03

EXIT_CODE_MEANINGS = {2: "bad input", 3: "bad model", 4: "cannot write outputs",
                      5: "out of memory", 130: "cancelled"}


@dataclass
class OutputMonitor:
    """Accumulates the subprocess' stdout/stderr lines into progress, result and error.

    Overall progress is monotonic: finished stages add their weight, the current
    stage adds weight * fraction.
    """

    result: RunResult | None = None
    results: list[RunResult] = field(default_factory=list)
    last_event: ProgressEvent | None = None
    log: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _done: dict[str, float] = field(default_factory=dict)
    _overall: float = 0.0

    def feed_stdout(self, line: str) -> ProgressEvent | RunResult | None:
        line = line.rstrip("\r\n")
        event = parse_progress_line(line)
        if event is not None:
            self._advance(event)
            return event
        result = parse_result_line(line)
        if result is not None:
            self.result = result
            self.results.append(result)
            self._overall = 1.0
            return result
        if line.strip():
            self.log.append(line)
        return None

    def feed_stderr(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if line.strip():
            self.stderr.append(line)
            self.log.append(line)

    def _advance(self, event: ProgressEvent) -> None:
        self.last_event = event
        frac = min(max(event.fraction, 0.0), 1.0)
        self._done[event.stage] = max(self._done.get(event.stage, 0.0), frac)
        total = sum(STAGE_WEIGHTS.get(s, OTHER_STAGE_WEIGHT) * f for s, f in self._done.items())
        norm = sum(STAGE_WEIGHTS.values())
        self._overall = max(self._overall, min(total / norm, 0.99))

    @property
    def overall_fraction(self) -> float:
        """Overall completion in [0, 1] (1 only once the result line arrived)."""
        return self._overall

    @property
    def status_text(self) -> str:
        if self.result is not None:
            return f"Done: {self.result.lesions} lesion(s) found."
        if self.last_event is None:
            return "Starting..."
        e = self.last_event
        return f"{e.stage}: {e.message}" if e.message else e.stage

    def error_message(self, returncode: int | None) -> str:
        """The library's own message for a failed run (its ``error:`` line), else
        the last stderr line (e.g. a traceback's exception), else the exit code."""
        for line in reversed(self.stderr):
            m = re.search(r"error:\s*(.+)$", line)
            if m and line.lstrip().startswith("brainmetseg"):
                return m.group(1).strip()
        if self.stderr:
            return self.stderr[-1].strip()
        meaning = EXIT_CODE_MEANINGS.get(returncode or 0)
        if returncode is None:
            return "the segmentation process did not finish"
        if returncode == 0 and self.result is None:
            return "the segmentation process ended without reporting its results"
        return f"the segmentation process failed with exit code {returncode}" + (
            f" ({meaning})" if meaning else "")


# --------------------------------------------------------------------------------------
# Process control
# --------------------------------------------------------------------------------------

def popen_kwargs() -> dict:
    """Popen options that put the CLI in its own process group (POSIX) / new
    process group without a console window (Windows), so Cancel can end the
    launcher, the Python process and every worker it started."""
    if os.name == "nt":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def kill_process_tree(pid: int, timeout: float = 5.0) -> None:
    """End process ``pid`` and all its descendants (started with :func:`popen_kwargs`).

    POSIX: SIGTERM to the process group, SIGKILL after ``timeout`` s if still alive.
    Windows: ``taskkill /T /F``. A process that already ended is not an error.
    """
    if os.name == "nt":
        subprocess.run(["taskkill", "/PID", str(pid), "/T", "/F"], capture_output=True, check=False)
        return
    import time

    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    if pgid == os.getpgid(0):  # never signal our own group (process was not started apart)
        os.kill(pid, signal.SIGKILL)
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class CliRun:
    """One run of the library's CLI in a subprocess, read without blocking.

    Two reader threads queue the process' stdout/stderr lines; :meth:`poll` (called
    from a Qt timer in Slicer, or in a loop by :meth:`wait`) feeds them to an
    :class:`OutputMonitor` on the caller's thread, reports progress, and once the
    process has ended calls ``on_success(run)`` (its return value is kept in
    ``value``) or records the error. The run folder is cleaned up in every case.

    status: ``running``, ``done``, ``failed`` (``error_message`` says why) or
    ``cancelled`` (:meth:`cancel` ended the process tree).
    """

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None,
                 run_folder: RunFolder | None = None, on_success=None, on_progress=None,
                 on_complete=None, cwd: str | os.PathLike | None = None):
        import queue
        import threading
        import time

        self._time = time.monotonic
        self.command = [str(c) for c in command]
        self.run_folder = run_folder
        self.monitor = OutputMonitor()
        self.status = "running"
        self.error_message = ""
        self.value = None
        self.returncode: int | None = None
        self.elapsed = 0.0
        self._on_success = on_success
        self._on_progress = on_progress
        self._on_complete = on_complete
        self._queue: queue.Queue = queue.Queue()
        self._empty = queue.Empty
        self._cancelled = False
        self._start = self._time()
        self.process = subprocess.Popen(
            self.command, env=None if env is None else dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
            errors="replace", bufsize=1, **popen_kwargs())
        self._threads = [threading.Thread(target=self._read, args=(stream, name), daemon=True)
                         for stream, name in ((self.process.stdout, "stdout"),
                                              (self.process.stderr, "stderr"))]
        for t in self._threads:
            t.start()

    def _read(self, stream, name: str) -> None:
        for line in iter(stream.readline, ""):
            self._queue.put((name, line))
        stream.close()

    def cancel(self) -> None:
        """End the process and its children; the run finishes as ``cancelled``."""
        if self.status == "running" and not self._cancelled:
            self._cancelled = True
            kill_process_tree(self.process.pid)

    def poll(self) -> bool:
        """Handle the output that arrived; finish the run when the process has ended.
        Returns True while the run is still going."""
        if self.status != "running":
            return False
        changed = False
        while True:
            try:
                name, line = self._queue.get_nowait()
            except self._empty:
                break
            if name == "stdout":
                self.monitor.feed_stdout(line)
            else:
                self.monitor.feed_stderr(line)
            changed = True
        if changed and self._on_progress:
            self._on_progress(self.monitor.overall_fraction, self.monitor.status_text)
        if self.process.poll() is None or any(t.is_alive() for t in self._threads) \
                or not self._queue.empty():
            return True
        self._finish()
        return False

    def _finish(self) -> None:
        self.returncode = self.process.returncode
        self.elapsed = self._time() - self._start
        try:
            if self._cancelled:
                self.status = "cancelled"
            elif self.returncode == 0 and self.monitor.result is not None:
                self.value = self._on_success(self) if self._on_success else None
                self.status = "done"
            else:
                self.status = "failed"
                self.error_message = self.monitor.error_message(self.returncode)
        except Exception as exc:  # importing the results failed: report it, never stay "running"
            self.status = "failed"
            self.error_message = f"{type(exc).__name__}: {exc}"
        finally:
            if self.run_folder is not None:
                self.run_folder.cleanup()
        if self._on_complete:
            self._on_complete(self)

    def wait(self, idle=None, interval: float = 0.05) -> CliRun:
        """Block until the run has finished; ``idle()`` is called between polls (e.g.
        ``slicer.app.processEvents`` to keep Slicer's GUI responsive)."""
        import time

        while self.poll():
            if idle is not None:
                idle()
            time.sleep(interval)
        return self


# --------------------------------------------------------------------------------------
# GPUs (shown next to the device selector)
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuInfo:
    name: str
    memory_mib: int

    def __str__(self) -> str:
        return f"{self.name} ({self.memory_mib / 1024:.1f} GB)"


NVIDIA_SMI_ARGS = ("--query-gpu=name,memory.total", "--format=csv,noheader,nounits")


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """GPUs from ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.splitlines():
        if "," not in line:
            continue
        name, _, mem = line.rpartition(",")
        try:
            gpus.append(GpuInfo(name.strip(), int(float(mem.strip()))))
        except ValueError:
            continue
    return gpus


def detect_gpus(which=shutil.which, timeout: float = 5.0) -> list[GpuInfo]:
    """NVIDIA GPUs on this machine via ``nvidia-smi`` (no torch import); [] if none."""
    exe = which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, *NVIDIA_SMI_ARGS], capture_output=True, text=True,
                             timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(out.stdout) if out.returncode == 0 else []


# --------------------------------------------------------------------------------------
# Models offered in the GUI
# --------------------------------------------------------------------------------------

def model_choices(registry_entries: Sequence[Mapping], extra_folders: Sequence[str] = ()
                  ) -> list[tuple[str, str]]:
    """(label, value) pairs for the model selector: bundled/registered models by
    name, then user-added folders by path (duplicates dropped, order kept)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in registry_entries:
        name = str(entry.get("name", ""))
        if name and name not in seen:
            seen.add(name)
            label = name if "path" in entry else f"{name} (download)"
            out.append((label, name))
    for folder in extra_folders:
        value = str(Path(folder))
        if value and value not in seen:
            seen.add(value)
            out.append((f"{Path(folder).name} ({value})", value))
    return out


def read_model_card(folder: str | os.PathLike) -> dict:
    """The model card of a package folder (validated like ``models.load_package``
    but without importing torch), for the "Add model folder..." action."""
    from .models import CARD_NAME, ModelCard

    card_path = Path(folder) / CARD_NAME
    if not card_path.is_file():
        raise FileNotFoundError(f"{folder}: not a model package ({CARD_NAME} is missing).")
    data = json.loads(card_path.read_text(encoding="utf-8"))
    return ModelCard.from_dict(data, str(card_path)).to_dict()
