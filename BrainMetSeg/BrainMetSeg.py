"""BrainMetSeg: 3D Slicer module for brain-metastasis segmentation on contrast-enhanced T1 MRI.

Glue over the headless library ``BrainMetSegLib`` (installed next to this file):
MRML nodes are written to a temporary folder, the library's CLI runs in a
``PythonSlicer`` subprocess (``--progress json``, non-blocking, cancellable), and
its outputs become a segmentation (one segment per lesion), a lesion table and a
probability volume. Re-thresholding and table recomputation after manual edits run
in-process with the library's functions. No algorithm lives in this file.
"""

import enum
import json
import logging
import os
import sys
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:  # installed extension: BrainMetSegLib is next to this file
    from BrainMetSegLib import slicer_bridge as bridge
except ModuleNotFoundError:  # source tree: BrainMetSeg/ is next to BrainMetSegLib/
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from BrainMetSegLib import slicer_bridge as bridge

# Node attributes that link a run's outputs (so console users and a reloaded scene
# can re-threshold / update the table without the GUI).
ATTR_PREFIX = "BrainMetSeg."
ATTR_INPUT = ATTR_PREFIX + "InputVolumeNodeID"
ATTR_PROBABILITY = ATTR_PREFIX + "ProbabilityNodeID"
ATTR_SEGMENTATION = ATTR_PREFIX + "SegmentationNodeID"
ATTR_TABLE = ATTR_PREFIX + "TableNodeID"
ATTR_SEGMENT_IDS = ATTR_PREFIX + "SegmentIDs"  # table attribute: JSON list, one per row
SETTINGS_MODEL_FOLDERS = "BrainMetSeg/ModelFolders"
ADD_MODEL_FOLDER = "__add_model_folder__"


#
# BrainMetSeg
#


class BrainMetSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Brain Metastasis Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations", "SubjectHierarchy"]
        self.parent.contributors = ["BrainMetSeg contributors"]
        self.parent.helpText = _("""
Finds, outlines and measures brain metastases on a contrast-enhanced T1-weighted MRI (CE-T1).
<ol>
<li>Select the CE-T1 volume (and T1/T2/FLAIR if the model uses them).</li>
<li>Press <b>Apply</b>. On first use the module offers to install PyTorch (through the PyTorch
extension) and the Python packages it needs. The model runs in a separate process: Apply turns
into <b>Cancel</b> while it runs.</li>
<li>Every lesion becomes its own segment ("Metastasis 1" is the largest). Click a row of the
lesion table to jump to that lesion.</li>
<li>Move the <b>Threshold</b> slider to re-threshold the probability map without running the
model again (this replaces the segments).</li>
<li>Correct segments in the Segment Editor (add, erase, split), then press <b>Update table</b>.</li>
</ol>
From the Python console: <code>BrainMetSeg.BrainMetSegLogic().process(volumeNode)</code> and
<code>processFiles([...], outputFolder)</code> for cohorts.
Research software, not a medical device: review every result.
See the <a href="https://github.com/brainmetseg/BrainMetSeg">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Implements the CE-T1 metastasis segmentation method of Shi et al. (Front. Oncol. 2025, 15:1657604)
with MONAI networks and deepbet brain extraction. Module structure and dependency handling follow
3D Slicer's scripted-module template and the TotalSegmentator, MONAIAuto3DSeg and nnU-Net
extensions by Andras Lasso (PerkLab) and Kitware.
""")


#
# Parameter node
#


class Device(enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    GPU = "cuda"

    def label(self):
        return {"auto": _("Auto"), "cpu": _("CPU"), "cuda": _("GPU (CUDA)")}[self.value]


@parameterNodeWrapper
class BrainMetSegParameterNode:
    """Module settings, saved with the scene.

    inputVolume: CE-T1; t1Volume / t2Volume / flairVolume: optional extra sequences.
    model: registry name or model package folder. threshold: probability (0-1).
    minLesionVolume: smallest lesion kept, mm^3. Outputs are created when empty.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    t1Volume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: Device = Device.AUTO
    brainExtraction: bool = True
    threshold: Annotated[float, WithinRange(0.01, 0.99)] = 0.5
    minLesionVolume: Annotated[float, WithinRange(0.0, 10000.0)] = 0.0
    outputSegmentation: vtkMRMLSegmentationNode
    outputTable: vtkMRMLTableNode
    outputProbability: vtkMRMLScalarVolumeNode


#
# BrainMetSegWidget
#


class BrainMetSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._updatingModelSelector = False
        self._settingModelDefaults = False
        self._run = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BrainMetSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = BrainMetSegLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.progressBar.hide()
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.modelSelector.connect("activated(int)", self.onModelActivated)
        self.ui.updateTableButton.connect("clicked(bool)", self.onUpdateTable)
        self.ui.editSegmentsButton.connect("clicked(bool)", self.onEditSegments)
        self.ui.tableView.connect("selectionChanged()", self.onTableSelectionChanged)

        # Re-threshold after the user stops moving the slider (each run measures every lesion).
        self._rethresholdTimer = qt.QTimer()
        self._rethresholdTimer.setSingleShot(True)
        self._rethresholdTimer.setInterval(400)
        self._rethresholdTimer.connect("timeout()", self.onRethreshold)
        self.ui.thresholdSliderWidget.connect("valueChanged(double)", self.onThresholdEdited)
        self.ui.minLesionVolumeSpinBox.connect("valueChanged(double)", self.onThresholdEdited)

        self.ui.gpuInfoLabel.text = self.logic.gpuDescription()
        self.initializeParameterNode()
        self.populateModelSelector()

    def cleanup(self) -> None:
        if self._run is not None:
            self._run.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        if self._run is not None:
            self._run.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode
        if not self._parameterNode.model:
            self._parameterNode.model = self.logic.defaultModel()

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    # ---------------------------------------------------------------- GUI state

    def _updateGui(self, caller=None, event=None) -> None:
        p = self._parameterNode
        running = self._run is not None
        if p is None:
            return
        if running:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the segmentation; the scene is left as it was.")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.text = _("Apply")
            self.ui.applyButton.enabled = bool(p.inputVolume)
            self.ui.applyButton.toolTip = (_("Segment metastases") if p.inputVolume
                                           else _("Select a CE-T1 input volume"))
        for w in (self.ui.inputsCollapsibleButton, self.ui.modelCollapsibleButton,
                  self.ui.outputsCollapsibleButton):
            w.enabled = not running
        hasResults = bool(p.outputSegmentation and p.outputTable and not running)
        self.ui.updateTableButton.enabled = hasResults
        self.ui.editSegmentsButton.enabled = hasResults
        if self.ui.tableView.mrmlTableNode() is not p.outputTable:
            self.ui.tableView.setMRMLTableNode(p.outputTable)
        self._syncModelSelector()

    def populateModelSelector(self) -> None:
        self._updatingModelSelector = True
        try:
            combo = self.ui.modelSelector
            combo.clear()
            for label, value in self.logic.modelChoices():
                combo.addItem(label, value)
            combo.insertSeparator(combo.count)
            combo.addItem(_("Add model folder..."), ADD_MODEL_FOLDER)
        finally:
            self._updatingModelSelector = False
        self._syncModelSelector()

    def _syncModelSelector(self) -> None:
        if self._parameterNode is None or self._updatingModelSelector:
            return
        combo = self.ui.modelSelector
        index = combo.findData(self._parameterNode.model)
        if index < 0 and self._parameterNode.model:  # a folder saved in the scene
            self._updatingModelSelector = True
            combo.insertItem(0, self._parameterNode.model, self._parameterNode.model)
            self._updatingModelSelector = False
            index = 0
        if index >= 0 and combo.currentIndex != index:
            self._updatingModelSelector = True
            combo.currentIndex = index
            self._updatingModelSelector = False
        self.ui.modelInfoLabel.text = self.logic.modelDescription(self._parameterNode.model)

    def onModelActivated(self, index) -> None:
        if self._updatingModelSelector or self._parameterNode is None:
            return
        value = self.ui.modelSelector.itemData(index)
        if value == ADD_MODEL_FOLDER:
            folder = qt.QFileDialog.getExistingDirectory(
                slicer.util.mainWindow(), _("Select a model package folder (with model.json)"))
            if folder:
                with slicer.util.tryWithErrorDisplay(_("This folder is not a BrainMetSeg model package.")):
                    self.logic.addModelFolder(folder)
                    self._parameterNode.model = os.path.normpath(folder)
            self.populateModelSelector()
            value = self._parameterNode.model
        self._parameterNode.model = value
        # Start from the model card's operating point.
        card = self.logic.modelCard(value)
        if card:
            self._settingModelDefaults = True
            try:
                self._parameterNode.threshold = min(max(float(card["threshold"]), 0.01), 0.99)
                self._parameterNode.minLesionVolume = float(card["min_lesion_volume_mm3"])
            finally:
                self._settingModelDefaults = False

    # ---------------------------------------------------------------- Apply / Cancel

    def onApplyButton(self) -> None:
        if self._run is not None:
            self._run.cancel()
            self.ui.statusLabel.text = _("Cancelling...")
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Failed to start the segmentation."), waitCursor=True):
            if not self.logic.ensureDependencies(askConfirmation=True):
                return
            self.ui.statusLabel.text = _("Starting...")
            self.ui.progressBar.value = 0
            self.ui.progressBar.show()
            self._run = self.logic.startSegmentation(
                p.inputVolume, t1Volume=p.t1Volume, t2Volume=p.t2Volume, flairVolume=p.flairVolume,
                outputSegmentation=p.outputSegmentation, outputTable=p.outputTable,
                outputProbability=p.outputProbability, model=p.model, device=p.device.value,
                brainExtraction=p.brainExtraction, threshold=p.threshold,
                minLesionVolume=p.minLesionVolume, progressCallback=self.onProgress,
                completedCallback=self.onCompleted)
            pollWithTimer(self._run)
        self._updateGui()

    def onProgress(self, fraction, text) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = text

    def onCompleted(self, run) -> None:
        self._run = None
        self.ui.progressBar.hide()
        if run.status == "done":
            seg, table, prob = run.value
            p = self._parameterNode
            if p is not None:
                p.outputSegmentation, p.outputTable, p.outputProbability = seg, table, prob
            n = table.GetNumberOfRows()
            self.ui.statusLabel.text = _("{n} lesion(s) found in {s:.0f} s.").format(n=n, s=run.elapsed)
            self.ui.tableView.setMRMLTableNode(table)
            warnings = run.monitor.result.warnings if run.monitor.result else ()
            if warnings:  # doubtful input (tiny field of view, noise, little brain, missing slice)
                self.ui.statusLabel.text += " " + _("{k} warning(s).").format(k=len(warnings))
                slicer.util.warningDisplay(_("The result may be unreliable:") + "\n\n" + "\n".join(warnings))
        elif run.status == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; the scene is unchanged.")
        else:
            self.ui.statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(_("Segmentation failed: {message}").format(message=run.error_message),
                                     detailedText="\n".join(run.monitor.log[-200:]))
        self._updateGui()

    # ---------------------------------------------------------------- results

    def onThresholdEdited(self, value) -> None:
        if self._settingModelDefaults or self._run is not None:
            return
        p = self._parameterNode
        if p and self.logic.canRethreshold(p.outputSegmentation):
            self._rethresholdTimer.start()

    def onRethreshold(self) -> None:
        p = self._parameterNode
        if p is None or not self.logic.canRethreshold(p.outputSegmentation):
            return
        with slicer.util.tryWithErrorDisplay(_("Re-thresholding failed."), waitCursor=True):
            n = self.logic.rethreshold(p.outputSegmentation, p.outputTable, p.threshold, p.minLesionVolume)
            self.ui.statusLabel.text = _("Threshold {t:.2f}: {n} lesion(s).").format(t=p.threshold, n=n)

    def onUpdateTable(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Updating the lesion table failed."), waitCursor=True):
            n = self.logic.updateTable(p.outputSegmentation, p.outputTable, referenceVolume=p.inputVolume)
            self.ui.statusLabel.text = _("Table updated from the segments: {n} lesion(s).").format(n=n)

    def onTableSelectionChanged(self) -> None:
        p = self._parameterNode
        if p is None or not p.outputTable:
            return
        rows = sorted({index.row() for index in self.ui.tableView.selectionModel().selectedIndexes()})
        if rows:
            self.logic.jumpToLesion(p.outputTable, rows[0], p.outputSegmentation)

    def onEditSegments(self) -> None:
        p = self._parameterNode
        self.logic.editInSegmentEditor(p.outputSegmentation, p.inputVolume)


#
# Running the CLI
#


def pollWithTimer(run, intervalMs=200):
    """Poll a :class:`BrainMetSegLib.slicer_bridge.CliRun` from the Qt event loop (GUI use)."""
    timer = qt.QTimer()
    timer.setInterval(intervalMs)

    def tick():
        if not run.poll():
            timer.stop()

    timer.connect("timeout()", tick)
    run.timer = timer  # keep it alive as long as the run
    timer.start()
    return timer


#
# BrainMetSegLogic
#


class BrainMetSegLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable from the Python console without the GUI.

    ``process(inputVolumeNode)`` segments a volume in the scene and returns
    (segmentation, table, probability) nodes; ``processFiles(paths, outputFolder)``
    segments files without loading them; ``rethreshold`` and ``updateTable`` work on
    existing results; ``jumpToLesion`` centres the slice views on a table row.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.keepTemporaryFiles = False
        self.lastRun = None  # the last CliRun started by process(): run.monitor.result has the CLI's result
        self._dependenciesChecked = False

    def getParameterNode(self):
        return BrainMetSegParameterNode(super().getParameterNode())

    # ---------------------------------------------------------------- models and devices

    @staticmethod
    def defaultModel():
        from BrainMetSegLib.models import DEFAULT_MODEL

        return DEFAULT_MODEL

    @staticmethod
    def _settings():
        return qt.QSettings()

    def userModelFolders(self):
        value = self._settings().value(SETTINGS_MODEL_FOLDERS)
        if not value:
            return []
        return [value] if isinstance(value, str) else [str(v) for v in value]

    def addModelFolder(self, folder):
        """Check ``folder`` is a model package (model.json) and remember it for the selector."""
        bridge.read_model_card(folder)
        folders = self.userModelFolders()
        folder = os.path.normpath(folder)
        if folder not in folders:
            folders.append(folder)
            self._settings().setValue(SETTINGS_MODEL_FOLDERS, folders)

    def modelChoices(self):
        from BrainMetSegLib import models

        return bridge.model_choices(models.read_registry(), self.userModelFolders())

    def modelCard(self, model):
        """The model card (dict) of a registry name or folder; None if it cannot be read."""
        from BrainMetSegLib import models

        try:
            if model and os.path.isdir(model):
                return bridge.read_model_card(model)
            for entry in models.read_registry():
                if entry.get("name") == model and "path" in entry:
                    return bridge.read_model_card(models.REGISTRY_FILE.parent / entry["path"])
        except Exception as exc:
            logging.warning(f"BrainMetSeg: cannot read the model card of {model}: {exc}")
        return None

    def modelDescription(self, model):
        card = self.modelCard(model)
        if not card:
            return ""
        text = f"{card['name']} {card['version']}; inputs: {', '.join(card['input_sequences'])}"
        if not card.get("trained", True):
            text += " - " + _("untrained demo model: its output is not meaningful")
        if card.get("intended_use"):
            text += f"\n{card['intended_use']}"
        return text

    @staticmethod
    def gpuDescription():
        gpus = bridge.detect_gpus()
        if not gpus:
            return _("No NVIDIA GPU found: the CPU is used (several minutes per scan).")
        return _("GPU: {gpus}").format(gpus="; ".join(str(g) for g in gpus))

    # ---------------------------------------------------------------- dependencies

    def ensureDependencies(self, askConfirmation=True):
        """Install what the library needs, once, after asking. Returns False if declined.

        torch comes from the PyTorch extension (the right CUDA build); the other
        packages from pip with a constraints file that pins Slicer's torch and
        SimpleITK, so neither is ever replaced.
        """
        if self._dependenciesChecked:
            return True
        names = [*bridge.PROTECTED, *(r.distribution for r in bridge.REQUIREMENTS)]
        versions = bridge.installed_versions(names)
        torchProblem = bridge.torch_problem(versions.get("torch"))
        missing = bridge.missing_requirements(versions)
        if torchProblem is None and not missing:
            self._dependenciesChecked = True
            return True
        if torchProblem and versions.get("torch") is not None:
            raise RuntimeError(torchProblem)
        toInstall = (["torch (PyTorch extension)"] if torchProblem else []) + [str(r) for r in missing]
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                _("BrainMetSeg needs additional Python packages. Installing them needs a network "
                  "connection and may take several minutes. Install now?"),
                _("Install Python packages"), detailedText="\n".join(toInstall)):
            return False
        if torchProblem:
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                raise RuntimeError(_("BrainMetSeg needs the PyTorch extension. Install 'PyTorch' from "
                                     "the Extensions Manager, restart Slicer and try again.")) from None
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=f">={bridge.TORCH_MINIMUM}")
            if torch is None:
                raise RuntimeError(_("PyTorch could not be installed; use the PyTorch Utils module."))
            versions = bridge.installed_versions(names)
        if missing:
            folder = slicer.util.tempDirectory("BrainMetSeg-pip")
            constraints = os.path.join(folder, "constraints.txt")
            with open(constraints, "w", encoding="utf-8") as fh:
                fh.write(bridge.constraints_text(versions))
            with slicer.util.WaitCursor():
                for args in bridge.pip_install_commands(missing, constraints):
                    slicer.util.pip_install(args)
        still = bridge.missing_requirements(bridge.installed_versions(names))
        if still:
            raise RuntimeError(_("These packages could not be installed: {names}").format(
                names=", ".join(str(r) for r in still)))
        self._dependenciesChecked = True
        return True

    # ---------------------------------------------------------------- running

    @staticmethod
    def _writeVolume(volumeNode, path):
        """Write a volume to ``path`` without touching its own storage node (scene unchanged)."""
        storageNode = slicer.mrmlScene.CreateNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        try:
            storageNode.SetFileName(str(path))
            storageNode.UseCompressionOff()
            if not storageNode.WriteData(volumeNode):
                raise OSError(f"Could not write {volumeNode.GetName()} to {path}")
        finally:
            storageNode.UnRegister(None)

    def startSegmentation(self, inputVolume, t1Volume=None, t2Volume=None, flairVolume=None,
                          outputSegmentation=None, outputTable=None, outputProbability=None,
                          model=None, device="auto", brainExtraction=True, threshold=None,
                          minLesionVolume=None, progressCallback=None, completedCallback=None):
        """Start the CLI on ``inputVolume``; returns a ``slicer_bridge.CliRun`` (non-blocking).

        Poll it with :func:`pollWithTimer` (GUI) or ``run.wait(slicer.app.processEvents)``
        (console). On success the output nodes (created when None) are in ``run.value``;
        on failure or cancel the scene is left as it was.
        """
        if not inputVolume:
            raise ValueError(_("Select a CE-T1 input volume."))
        if not inputVolume.GetImageData():
            raise ValueError(_("The input volume {name} has no image data.").format(name=inputVolume.GetName()))
        options = bridge.RunOptions(model=model or self.defaultModel(), device=device,
                                    threshold=threshold, min_volume_mm3=minLesionVolume,
                                    brain_mask="deepbet" if brainExtraction else "none")
        options.validate()
        runFolder = bridge.RunFolder(slicer.app.temporaryPath, keep=self.keepTemporaryFiles)
        try:
            inputs = {}
            for role, node in (("t1ce", inputVolume), ("t1", t1Volume), ("t2", t2Volume),
                               ("flair", flairVolume)):
                if node:
                    path = runFolder.input_path(role)
                    self._writeVolume(node, path)
                    inputs[role] = str(path)
            command = bridge.segment_command(bridge.python_slicer_executable(), inputs,
                                             runFolder.outputs, options)
            environment = slicer.util.startupEnvironment()
            environment.update(bridge.subprocess_environment(environment))
        except Exception:
            runFolder.cleanup()
            raise

        requested = (outputSegmentation, outputTable, outputProbability)

        def onSuccess(run):
            return self._importResults(run, inputVolume, requested)

        logging.info("BrainMetSeg: running " + " ".join(command))
        return bridge.CliRun(command, environment, runFolder, on_success=onSuccess,
                             on_progress=progressCallback, on_complete=completedCallback)

    def process(self, inputVolume, outputSegmentation=None, outputTable=None, outputProbability=None,
                t1Volume=None, t2Volume=None, flairVolume=None, model=None, device="auto",
                brainExtraction=True, threshold=None, minLesionVolume=None, askConfirmation=True):
        """Segment ``inputVolume`` and wait; returns (segmentationNode, tableNode, probabilityNode).

        model: registry name (default: the bundled model) or a model package folder.
        device: "auto", "cpu" or "cuda". threshold / minLesionVolume (mm^3): None for the
        model card's. askConfirmation: ask before installing missing Python packages (pass
        False in scripts that must not show a dialog). Raises RuntimeError with the library's
        message on failure.
        """
        if not self.ensureDependencies(askConfirmation=askConfirmation):
            raise RuntimeError(_("Python packages needed by BrainMetSeg are not installed."))
        run = self.startSegmentation(inputVolume, t1Volume, t2Volume, flairVolume, outputSegmentation,
                                     outputTable, outputProbability, model, device, brainExtraction,
                                     threshold, minLesionVolume,
                                     progressCallback=lambda f, text: logging.debug(f"{100 * f:.0f}% {text}"))
        self.lastRun = run
        run.wait(slicer.app.processEvents)
        if run.status != "done":
            raise RuntimeError(_("BrainMetSeg segmentation failed: {message}").format(
                message=run.error_message or run.status))
        logging.info(f"BrainMetSeg: {run.monitor.result.lesions} lesion(s) in {run.elapsed:.1f} s")
        for warning in run.monitor.result.warnings:
            logging.warning(f"BrainMetSeg: {warning}")
        return run.value

    def processFiles(self, paths, outputFolder, model=None, device="auto", brainExtraction=True,
                     threshold=None, minLesionVolume=None, outputFormat="nii.gz", overwrite=False,
                     askConfirmation=True):
        """Segment image files without loading them into the scene (cohorts).

        paths: CE-T1 files (or DICOM folders), or dicts with keys t1ce and optional t1, t2,
        flair, case_id. Outputs go to ``outputFolder/<case_id>/`` (label map, probability,
        lesions.csv/json, run.json) plus ``outputFolder/summary.csv``. Returns the list of
        per-case results (``case``, ``outputs``, ``lesions``); a failed case is logged and
        the others continue; RuntimeError if the run could not start or no case succeeded.
        """
        if not self.ensureDependencies(askConfirmation=askConfirmation):
            raise RuntimeError(_("Python packages needed by BrainMetSeg are not installed."))
        options = bridge.RunOptions(model=model or self.defaultModel(), device=device,
                                    threshold=threshold, min_volume_mm3=minLesionVolume,
                                    brain_mask="deepbet" if brainExtraction else "none",
                                    output_format=outputFormat)
        runFolder = bridge.RunFolder(slicer.app.temporaryPath, keep=self.keepTemporaryFiles)
        try:
            manifest = bridge.write_manifest(paths, runFolder.path / "manifest.csv")
        except Exception:
            runFolder.cleanup()
            raise
        cmd = bridge.batch_command(bridge.python_slicer_executable(), manifest, outputFolder, options,
                                   overwrite=overwrite)
        environment = slicer.util.startupEnvironment()
        environment.update(bridge.subprocess_environment(environment))
        run = bridge.CliRun(cmd, environment, runFolder)
        self.lastRun = run
        run.wait(slicer.app.processEvents)
        results = run.monitor.results
        for line in run.monitor.stderr:
            if "failed" in line or "error" in line:
                logging.warning(line)
        if not results:
            raise RuntimeError(_("BrainMetSeg batch failed: {message}").format(
                message=run.monitor.error_message(run.returncode)))
        return results

    # ---------------------------------------------------------------- results into MRML

    def _importResults(self, run, inputVolume, requested):
        outputs = run.run_folder.collect_outputs(run.monitor.result.outputs)
        import SimpleITK as sitk

        labels = sitk.ReadImage(str(outputs["labels"]))
        probability = sitk.ReadImage(str(outputs["probability"]))
        with open(outputs["table_json"], encoding="utf-8") as fh:
            rows = json.load(fh)["lesions"]

        segmentation, table, probabilityNode = requested
        baseName = inputVolume.GetName()
        created = []

        def create(className, name):
            node = slicer.mrmlScene.AddNewNodeByClass(className, slicer.mrmlScene.GenerateUniqueName(name))
            created.append(node)
            return node

        try:
            segmentation = segmentation or create("vtkMRMLSegmentationNode", f"{baseName} metastases")
            table = table or create("vtkMRMLTableNode", f"{baseName} lesions")
            probabilityNode = probabilityNode or create("vtkMRMLScalarVolumeNode",
                                                        f"{baseName} metastasis probability")
            import sitkUtils

            sitkUtils.PushVolumeToSlicer(probability, targetNode=probabilityNode)
            self._linkResults(inputVolume, segmentation, table, probabilityNode)
            self._setSegmentsFromLabels(segmentation, labels, len(rows), inputVolume)
            self._fillTable(table, rows, [bridge.segment_id(int(r["lesion_id"])) for r in rows],
                            segmentation)
            self._showResults(inputVolume, segmentation, probabilityNode)
        except Exception:
            for node in created:  # leave the scene as it was
                slicer.mrmlScene.RemoveNode(node)
            raise
        return segmentation, table, probabilityNode

    def _linkResults(self, inputVolume, segmentation, table, probability):
        """Attributes, parent transform and subject-hierarchy placement of the outputs."""
        segmentation.SetAttribute(ATTR_INPUT, inputVolume.GetID())
        segmentation.SetAttribute(ATTR_PROBABILITY, probability.GetID())
        segmentation.SetAttribute(ATTR_TABLE, table.GetID())
        table.SetAttribute(ATTR_SEGMENTATION, segmentation.GetID())
        transformID = inputVolume.GetTransformNodeID()
        for node in (segmentation, probability):
            node.SetAndObserveTransformNodeID(transformID)
        # Reference geometry = the input (needed for editing and DICOM SEG export).
        segmentation.SetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole(),
                                        inputVolume.GetID())
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(inputVolume)
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        studyItem = shNode.GetItemParent(shNode.GetItemByDataNode(inputVolume))
        if studyItem:
            for node in (segmentation, table, probability):
                shNode.SetItemParent(shNode.GetItemByDataNode(node), studyItem)

    def _setSegmentsFromLabels(self, segmentation, labels, nLesions, referenceVolume):
        """Replace all segments by lesions 1..n of the instance label image (SimpleITK)."""
        import sitkUtils

        labelNode = sitkUtils.PushVolumeToSlicer(labels, className="vtkMRMLLabelMapVolumeNode",
                                                 name="BrainMetSeg temporary labels")
        wasModified = segmentation.StartModify()
        try:
            labelNode.SetAndObserveTransformNodeID(referenceVolume.GetTransformNodeID())
            seg = segmentation.GetSegmentation()
            seg.RemoveAllSegments()
            segmentIds = vtk.vtkStringArray()
            for spec in bridge.segment_specs(nLesions):
                seg.AddEmptySegment(spec.segment_id, spec.name, spec.color)
                segment = seg.GetSegment(spec.segment_id)
                segment.SetTag(segment.GetTerminologyEntryTagName(), spec.terminology)
                segmentIds.InsertNextValue(spec.segment_id)
            if nLesions:
                # label value i + 1 -> i-th segment id (lesion ids are the label values)
                ok = slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(
                    labelNode, segmentation, segmentIds)
                if not ok:
                    raise RuntimeError(_("Could not import the lesion label map into the segmentation."))
        finally:
            segmentation.EndModify(wasModified)
            slicer.mrmlScene.RemoveNode(labelNode)

    def _fillTable(self, table, rows, segmentIds, segmentation):
        """Write the library's lesion rows into ``table`` (one row per lesion)."""
        names = []
        seg = segmentation.GetSegmentation()
        for segmentId in segmentIds:
            segment = seg.GetSegment(segmentId)
            names.append(segment.GetName() if segment else segmentId)
        wasModified = table.StartModify()
        try:
            table.RemoveAllColumns()
            for column, values in bridge.table_columns(rows, names):
                if column.kind == "string":
                    array = vtk.vtkStringArray()
                elif column.kind in ("int", "bool"):
                    array = vtk.vtkIntArray()
                else:
                    array = vtk.vtkDoubleArray()
                array.SetName(column.name)
                for value in values:
                    array.InsertNextValue(value)
                table.AddColumn(array)
                if column.unit:
                    table.SetColumnUnitLabel(column.name, column.unit)
                table.SetColumnDescription(column.name, column.description)
            table.SetUseColumnNameAsColumnHeader(True)
            table.SetAttribute(ATTR_SEGMENT_IDS, json.dumps(list(segmentIds)))
            table.SetAttribute(ATTR_SEGMENTATION, segmentation.GetID())
            table.SetLocked(True)  # measurements are computed, not typed in
        finally:
            table.EndModify(wasModified)

    def _showResults(self, inputVolume, segmentation, probability):
        segmentation.CreateDefaultDisplayNodes()
        segmentation.CreateClosedSurfaceRepresentation()  # lesions in the 3D view too
        probability.CreateDefaultDisplayNodes()
        displayNode = probability.GetDisplayNode()
        if displayNode:
            displayNode.SetAndObserveColorNodeID("vtkMRMLColorTableNodeFileColdToHotRainbow.txt")
            displayNode.SetAutoWindowLevel(False)
            displayNode.SetWindowLevelMinMax(0.0, 1.0)
        slicer.util.setSliceViewerLayers(background=inputVolume, fit=False)

    # ---------------------------------------------------------------- editing loop

    @staticmethod
    def _node(nodeId):
        return slicer.mrmlScene.GetNodeByID(nodeId) if nodeId else None

    def canRethreshold(self, segmentation):
        return bool(segmentation and self._node(segmentation.GetAttribute(ATTR_PROBABILITY)))

    def rethreshold(self, segmentation, table=None, threshold=0.5, minLesionVolume=0.0):
        """Re-threshold the run's probability map in-process (no inference) and replace
        the segments and table rows. Returns the number of lesions."""
        import sitkUtils

        from BrainMetSegLib import lesions

        probabilityNode = self._node(segmentation.GetAttribute(ATTR_PROBABILITY))
        inputVolume = self._node(segmentation.GetAttribute(ATTR_INPUT))
        table = table or self._node(segmentation.GetAttribute(ATTR_TABLE))
        if not probabilityNode or not inputVolume:
            raise ValueError(_("This segmentation has no BrainMetSeg probability map to re-threshold."))
        probability = sitkUtils.PullVolumeFromSlicer(probabilityNode)
        labels = lesions.rethreshold(probability, float(threshold), float(minLesionVolume))
        rows = lesions.lesion_table(labels, probability)
        self._setSegmentsFromLabels(segmentation, labels, len(rows), inputVolume)
        if table:
            self._fillTable(table, rows, [bridge.segment_id(int(r["lesion_id"])) for r in rows], segmentation)
        return len(rows)

    def updateTable(self, segmentation, table=None, referenceVolume=None):
        """Recompute the lesion table from the segments as they are now (after manual
        edits: added, erased, split lesions). Each segment is one lesion; row order
        follows segment order. Returns the number of non-empty segments."""
        import sitkUtils

        from BrainMetSegLib import lesions

        referenceVolume = referenceVolume or self._node(segmentation.GetAttribute(ATTR_INPUT))
        table = table or self._node(segmentation.GetAttribute(ATTR_TABLE))
        if not referenceVolume:
            raise ValueError(_("Select the input volume the segmentation was made on."))
        if not table:
            table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentation.GetName()} lesions")
            segmentation.SetAttribute(ATTR_TABLE, table.GetID())
        segmentIds = vtk.vtkStringArray()
        segmentation.GetSegmentation().GetSegmentIDs(segmentIds)
        ids = [segmentIds.GetValue(i) for i in range(segmentIds.GetNumberOfValues())]
        labelNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "BrainMetSeg temporary labels")
        try:
            # Label value i+1 = i-th segment (no colour table given), on the input's grid.
            if ids and not slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
                    segmentation, segmentIds, labelNode, referenceVolume):
                raise RuntimeError(_("Could not export the segments to a label map."))
            if ids:
                labels = sitkUtils.PullVolumeFromSlicer(labelNode)
            else:
                labels = None
        finally:
            slicer.mrmlScene.RemoveNode(labelNode)
        rows = []
        if labels is not None:
            probabilityNode = self._node(segmentation.GetAttribute(ATTR_PROBABILITY))
            probability = sitkUtils.PullVolumeFromSlicer(probabilityNode) if probabilityNode else None
            if probability is not None and probability.GetSize() != labels.GetSize():
                probability = None  # different grid (reference changed): no probability columns
            rows = lesions.lesion_table(labels, probability)
        self._fillTable(table, rows, [ids[int(r["lesion_id"]) - 1] for r in rows], segmentation)
        return len(rows)

    @staticmethod
    def _tableValue(table, row, columnName):
        column = table.GetColumnIndex(columnName)
        if column < 0:
            raise ValueError(_("The table has no column {name}.").format(name=columnName))
        return table.GetCellText(row, column)

    def lesionCenterRas(self, table, row):
        """(R, A, S) centroid in mm of the lesion on ``row`` of a BrainMetSeg table."""
        return tuple(float(self._tableValue(table, row, f"centroid_{c}")) for c in "ras")

    def jumpToLesion(self, table, row, segmentation=None):
        """Centre all slice views on the lesion of table ``row`` and select its segment.
        Returns the (R, A, S) position jumped to."""
        if row < 0 or row >= table.GetNumberOfRows():
            raise IndexError(f"row {row} is not in the table ({table.GetNumberOfRows()} rows)")
        r, a, s = self.lesionCenterRas(table, row)
        slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, r, a, s,
                                              slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        segmentation = segmentation or self._node(table.GetAttribute(ATTR_SEGMENTATION))
        ids = json.loads(table.GetAttribute(ATTR_SEGMENT_IDS) or "[]")
        if segmentation and row < len(ids):
            self.selectSegment(segmentation, ids[row])
        return r, a, s

    def segmentEditorNode(self, segmentation, sourceVolume=None):
        """The Segment Editor module's parameter node (its "SegmentEditor" singleton, created
        like the Segment Editor does when missing), showing ``segmentation`` with
        ``sourceVolume`` (default: the run's input volume)."""
        editorNode = slicer.mrmlScene.GetSingletonNode("SegmentEditor", "vtkMRMLSegmentEditorNode")
        if editorNode is None:
            editorNode = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            editorNode.UnRegister(None)
            editorNode.SetSingletonTag("SegmentEditor")
            editorNode = slicer.mrmlScene.AddNode(editorNode)
        if editorNode.GetSegmentationNode() is not segmentation:
            editorNode.SetAndObserveSegmentationNode(segmentation)
        sourceVolume = sourceVolume or self._node(segmentation.GetAttribute(ATTR_INPUT))
        if sourceVolume:
            editorNode.SetAndObserveSourceVolumeNode(sourceVolume)
        return editorNode

    def selectSegment(self, segmentation, segmentId):
        """Make ``segmentId`` the Segment Editor's selected segment (on ``segmentation``)."""
        if segmentation.GetSegmentation().GetSegment(segmentId) is None:
            return
        editorNode = self.segmentEditorNode(segmentation)
        editorNode.SetSelectedSegmentID(segmentId)

    def editInSegmentEditor(self, segmentation, inputVolume=None):
        """Open the Segment Editor on the lesions, with the input as source volume."""
        self.segmentEditorNode(segmentation, inputVolume)
        slicer.util.selectModule("SegmentEditor")  # its enter() picks up the singleton node


#
# BrainMetSegTest
#


class BrainMetSegTest(ScriptedLoadableModuleTest):
    """Built-in test (Reload and Test). The full end-to-end test with the demo model is
    scripted_tests/test_BrainMetSeg.py; this one checks the editing loop in-process."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_rethreshold_and_update_table()

    def test_rethreshold_and_update_table(self):
        import numpy as np

        logic = BrainMetSegLogic()
        # In-process post-processing needs the pip packages (not torch); never install from a test.
        missing = bridge.missing_requirements(
            bridge.installed_versions(r.distribution for r in bridge.REQUIREMENTS))
        if missing:
            self.skipTest(f"Python packages not installed: {', '.join(map(str, missing))}")
        self.delayDisplay("Building a synthetic volume and probability map")
        shape = (40, 48, 48)
        z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
        prob = np.zeros(shape, np.float32)
        for (cz, cy, cx), radius in (((12, 14, 14), 6), ((28, 32, 30), 4)):
            d = np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2)
            prob = np.maximum(prob, np.clip(1.2 - d / radius, 0, 1))
        volume = slicer.util.addVolumeFromArray((prob * 100).astype(np.int16), name="ce_t1")
        probabilityNode = slicer.util.addVolumeFromArray(prob, name="probability")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode")
        logic._linkResults(volume, segmentation, table, probabilityNode)

        n = logic.rethreshold(segmentation, table, 0.5, 0.0)
        self.assertEqual(n, 2)
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 2)
        self.assertEqual(table.GetNumberOfRows(), 2)
        self.assertEqual(segmentation.GetSegmentation().GetSegment("Metastasis_1").GetName(), "Metastasis 1")

        # erase lesion 2, then update the table from the segments
        segmentation.GetSegmentation().RemoveSegment("Metastasis_2")
        self.assertEqual(logic.updateTable(segmentation, table, volume), 1)
        self.assertEqual(table.GetNumberOfRows(), 1)
        r, a, s = logic.jumpToLesion(table, 0, segmentation)
        self.assertAlmostEqual(float(table.GetCellText(0, table.GetColumnIndex("centroid_s"))), s)
        self.delayDisplay("Test passed")
