"""Everything the Slicer module needs that is not a Slicer call (pure Python, testable headless).

The module ``BrainMetSeg/BrainMetSeg.py`` is glue: it turns MRML nodes into files,
runs ``PythonSlicer -m BrainMetSegLib segment ... --progress json`` in a subprocess
and turns the outputs into MRML nodes. The decisions behind that glue live in this
package, one module per job, so that pytest can check them without Slicer:

- :mod:`.requirements`: which Python packages are missing in Slicer's environment and
  how to install them without ever replacing Slicer's own SimpleITK or torch;
- :mod:`.commands`: the per-run temporary folder (inputs written, outputs collected,
  cleaned up), the CLI command lines, the batch manifest and the subprocess' environment;
- :mod:`.monitor`: reading the subprocess output (progress lines, the final result
  line, errors);
- :mod:`.runner`: running the CLI without blocking and killing it with all its
  children (Cancel);
- :mod:`.gpu`: GPU names / memory from ``nvidia-smi`` (shown without importing torch);
- :mod:`.model_menu`: the models offered in the GUI, their cards and operating points.

Segment names, colours, the terminology entry and the lesion table's columns are not
here: the scene layer, the viewer and the DICOM writers share them, so they live below
all of them in :mod:`BrainMetSegLib.lesion_vocabulary`.

Every public name is re-exported here (``from BrainMetSegLib.slicer_bridge import X``).
This package never imports ``slicer``, ``qt``, ``vtk``, torch or MONAI.
"""

from .commands import (
    BRAIN_MASK_OPTIONS,
    DEVICES,
    INPUT_OPTIONS,
    INPUT_ROLES,
    MANIFEST_COLUMNS,
    RunFolder,
    RunOptions,
    batch_command,
    library_parent,
    python_slicer_executable,
    segment_command,
    subprocess_environment,
    write_manifest,
)
from .gpu import (
    NVIDIA_SMI_ARGS,
    GpuInfo,
    detect_gpus,
    parse_nvidia_smi,
)
from .model_menu import (
    card_operating_point,
    model_card,
    model_choices,
    read_model_card,
    run_operating_point,
)
from .monitor import (
    EXIT_CODE_MEANINGS,
    OTHER_STAGE_WEIGHT,
    STAGE_WEIGHTS,
    OutputMonitor,
    RunResult,
    parse_result_line,
)
from .requirements import (
    PROTECTED,
    REQUIREMENTS,
    TORCH_MINIMUM,
    Requirement,
    constraints_text,
    ensure_dependencies,
    installed_versions,
    missing_requirements,
    normalise_name,
    pip_install_commands,
    torch_problem,
)
from .runner import (
    CliRun,
    kill_process_tree,
    popen_kwargs,
    start_batch,
)

__all__ = [
    "Requirement",
    "PROTECTED",
    "TORCH_MINIMUM",
    "REQUIREMENTS",
    "normalise_name",
    "installed_versions",
    "missing_requirements",
    "torch_problem",
    "constraints_text",
    "ensure_dependencies",
    "pip_install_commands",
    "INPUT_ROLES",
    "INPUT_OPTIONS",
    "DEVICES",
    "BRAIN_MASK_OPTIONS",
    "RunFolder",
    "RunOptions",
    "segment_command",
    "MANIFEST_COLUMNS",
    "write_manifest",
    "batch_command",
    "library_parent",
    "subprocess_environment",
    "python_slicer_executable",
    "RunResult",
    "parse_result_line",
    "STAGE_WEIGHTS",
    "OTHER_STAGE_WEIGHT",
    "EXIT_CODE_MEANINGS",
    "OutputMonitor",
    "popen_kwargs",
    "kill_process_tree",
    "CliRun",
    "start_batch",
    "GpuInfo",
    "NVIDIA_SMI_ARGS",
    "parse_nvidia_smi",
    "detect_gpus",
    "model_choices",
    "read_model_card",
    "model_card",
    "card_operating_point",
    "run_operating_point",
]
