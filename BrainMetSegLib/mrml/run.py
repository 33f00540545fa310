"""Segmenting volume nodes with the library's CLI in a subprocess, results into the scene.

The model never runs in the scene's process (Slicer's GUI stays responsive, Cancel kills
the process tree): the input nodes are written to a temporary run folder, ``python -m
BrainMetSegLib segment ... --progress json`` runs there (``slicer_bridge.CliRun``), and
its output files become a result in the scene (:func:`.results.import_result`). Nothing
here needs Qt or the Slicer application: the caller passes the temporary folder, the
Python executable and the environment (Slicer: ``slicer.app.temporaryPath``,
``PythonSlicer``, ``slicer.util.startupEnvironment()``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import SimpleITK as sitk

from .. import slicer_bridge as bridge
from ..lesions import COLUMNS
from .links import ResultNodes
from .results import LesionResult, import_result
from .volumes import write_volume


def read_run_outputs(run_folder: bridge.RunFolder, result: bridge.RunResult) -> LesionResult:
    """The CLI's output files of one case (label map, probability, lesions.json, run.json)."""
    outputs = run_folder.collect_outputs(result.outputs)
    rows = json.loads(outputs["table_json"].read_text(encoding="utf-8"))["lesions"]
    point = bridge.run_operating_point(outputs["run"])
    model = json.loads(Path(outputs["run"]).read_text(encoding="utf-8")).get("model")
    return LesionResult.from_images(sitk.ReadImage(str(outputs["labels"])),
                                    sitk.ReadImage(str(outputs["probability"])),
                                    [{c: row.get(c) for c in COLUMNS} for row in rows],
                                    point, model)


def start_segmentation(scene, input_volume, options: bridge.RunOptions,
                       extra_volumes: Mapping[str, object] | None = None,
                       outputs: ResultNodes | None = None, temp_dir=None, python=None,
                       environment: Mapping[str, str] | None = None, keep_files: bool = False,
                       on_progress=None, on_complete=None, after_import=None) -> bridge.CliRun:
    """Start segmenting ``input_volume`` (CE-T1 node); returns the running ``CliRun``.

    extra_volumes: role ("t1", "t2", "flair") -> volume node, for models that take them;
    outputs: existing nodes to update (any may be None: created). Poll the run (GUI
    timer) or ``run.wait()``; on success ``run.value`` is the :class:`ResultNodes` (passed
    to ``after_import(nodes)`` first, e.g. to set up views); on failure or cancel the
    scene is unchanged and the run folder is removed.
    """
    if input_volume is None or input_volume.GetImageData() is None:
        raise ValueError("select a CE-T1 input volume with image data")
    options.validate()
    run_folder = bridge.RunFolder(temp_dir, keep=keep_files)
    try:
        inputs = {}
        for role, node in {"t1ce": input_volume, **dict(extra_volumes or {})}.items():
            if node is not None:
                inputs[role] = str(run_folder.input_path(role))
                write_volume(node, inputs[role])
        command = bridge.segment_command(python or bridge.python_slicer_executable(), inputs,
                                         run_folder.outputs, options)
        env = dict(os.environ if environment is None else environment)
        env.update(bridge.subprocess_environment(env))
    except Exception:
        run_folder.cleanup()
        raise
    requested = outputs or ResultNodes(None, None, None)

    def on_success(run):
        result = read_run_outputs(run.run_folder, run.monitor.result)
        nodes = import_result(scene, input_volume, result, requested.segmentation, requested.table,
                              requested.probability)
        if after_import is not None:
            after_import(nodes)
        return nodes

    return bridge.CliRun(command, env, run_folder, on_success=on_success, on_progress=on_progress,
                         on_complete=on_complete)
