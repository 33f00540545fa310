"""BrainMetSeg: 3D Slicer module for brain-metastasis segmentation on contrast-enhanced T1 MRI.

Qt glue over the headless library ``BrainMetSegLib`` (installed next to this file): the
library's CLI runs in a ``PythonSlicer`` subprocess and its MRML scene layer
(``BrainMetSegLib.mrml``) builds, re-thresholds and re-measures the results in the scene.
This file holds widgets, dialogs and dependency installation only.
"""

import enum
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
from BrainMetSegLib import options as libOptions
from BrainMetSegLib.models import DEFAULT_MODEL, ModelCard
from BrainMetSegLib.operating_point import SLIDER_RANGE, OperatingPoint, follow

SETTINGS_MODEL_FOLDERS = "BrainMetSeg/ModelFolders"
ADD_MODEL_FOLDER = "__add_model_folder__"


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
<li>Move <b>Detection</b> (which lesions) or <b>Outline</b> (how far each reaches) to re-threshold, no model run.</li>
<li>Correct segments in the Segment Editor (add, erase, split), then press <b>Update table</b>.</li>
<li><b>Export to DICOM</b> writes the segments as they are as DICOM SEG, measurement SR and RTSTRUCT.</li>
</ol>
Console: <code>BrainMetSeg.BrainMetSegLogic().process(volumeNode)</code>; cohorts: <code>processFiles</code>.
Research software, not a medical device: review every result.
See the <a href="https://github.com/brainmetseg/BrainMetSeg">documentation</a>.
""")
        self.parent.acknowledgementText = _("""Implements the method of Shi et al. (Front. Oncol. 2025,
15:1657604) with MONAI and deepbet. Structure and dependency handling follow Slicer's scripted-module
template and the TotalSegmentator, MONAIAuto3DSeg and nnU-Net extensions (PerkLab, Kitware).""")


class Device(enum.Enum):
    """The device menu: the values of ``BrainMetSegLib.options.Device``, with labels."""
    AUTO = libOptions.Device.AUTO.value
    CPU = libOptions.Device.CPU.value
    GPU = libOptions.Device.CUDA.value

    def label(self):
        return {Device.AUTO: _("Auto"), Device.CPU: _("CPU"), Device.GPU: _("GPU (CUDA)")}[self]


@parameterNodeWrapper
class BrainMetSegParameterNode:
    """Module settings, saved with the scene. inputVolume: CE-T1; t1Volume / t2Volume / flairVolume:
    optional extra sequences. model: registry name or package folder. threshold (detection), minLesionVolume (mm^3),
    outlineThreshold (<= threshold): the operating point (BrainMetSegLib.operating_point). Outputs made when empty."""

    inputVolume: vtkMRMLScalarVolumeNode
    t1Volume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: Device = Device.AUTO
    brainExtraction: bool = True
    threshold: Annotated[float, WithinRange(*SLIDER_RANGE)] = ModelCard.threshold
    outlineThreshold: Annotated[float, WithinRange(*SLIDER_RANGE)] = ModelCard.threshold
    minLesionVolume: Annotated[float, WithinRange(0.0, 10000.0)] = 0.0
    outputSegmentation: vtkMRMLSegmentationNode
    outputTable: vtkMRMLTableNode
    outputProbability: vtkMRMLScalarVolumeNode


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
        self.ui.exportDicomButton.connect("clicked(bool)", self.onExportDicom)
        self.ui.tableView.connect("selectionChanged()", self.onTableSelectionChanged)

        # Re-threshold after the user stops moving the slider (each run measures every lesion).
        self._rethresholdTimer = qt.QTimer()
        self._rethresholdTimer.setSingleShot(True)
        self._rethresholdTimer.setInterval(400)
        self._rethresholdTimer.connect("timeout()", self.onRethreshold)
        for widget, moved in ((self.ui.thresholdSliderWidget, "detection"), (self.ui.minLesionVolumeSpinBox, None),
                              (self.ui.outlineThresholdSliderWidget, "outline")):
            widget.connect("valueChanged(double)", lambda value, moved=moved: self.onThresholdEdited(moved))

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
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not self._parameterNode.model:  # a new scene: the default model at its card's operating point
            with slicer.util.tryWithErrorDisplay(_("The default model cannot be read.")):
                self.logic.setModel(self._parameterNode, DEFAULT_MODEL)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    def _updateGui(self, caller=None, event=None) -> None:
        p = self._parameterNode
        running = self._run is not None
        if p is None:
            return
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.enabled = running or bool(p.inputVolume)
        self.ui.applyButton.toolTip = (_("Stop the segmentation; the scene is left as it was.") if running else
                                       _("Segment metastases") if p.inputVolume else _("Select a CE-T1 input volume"))
        for w in (self.ui.inputsCollapsibleButton, self.ui.modelCollapsibleButton,
                  self.ui.outputsCollapsibleButton):
            w.enabled = not running
        hasResults = bool(p.outputSegmentation and p.outputTable and not running)
        for button in (self.ui.updateTableButton, self.ui.editSegmentsButton, self.ui.exportDicomButton):
            button.enabled = hasResults
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
        with slicer.util.tryWithErrorDisplay(_("This model cannot be used.")):
            self._settingModelDefaults = True
            try:
                self.logic.setModel(self._parameterNode, value)  # starts from the card's operating point
            finally:
                self._settingModelDefaults = False

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
                p.inputVolume, p.t1Volume, p.t2Volume, p.flairVolume, p.outputSegmentation, p.outputTable,
                p.outputProbability, p.model, p.device.value, p.brainExtraction, p.threshold, p.minLesionVolume,
                p.outlineThreshold, progressCallback=self.onProgress, completedCallback=self.onCompleted)
            pollWithTimer(self._run)
        self._updateGui()

    def onProgress(self, fraction, text) -> None:
        self.ui.progressBar.value, self.ui.statusLabel.text = int(round(100 * fraction)), text

    def onCompleted(self, run) -> None:
        self._run = None
        self.ui.progressBar.hide()
        if run.status == "done":
            out, p = run.value, self._parameterNode
            if p is not None:
                p.outputSegmentation, p.outputTable, p.outputProbability = out.segmentation, out.table, out.probability
            warnings = run.monitor.result.warnings if run.monitor.result else ()  # doubtful input
            self.ui.statusLabel.text = _("{n} lesion(s) found in {s:.0f} s, {k} warning(s).").format(
                n=out.table.GetNumberOfRows(), s=run.elapsed, k=len(warnings))
            self.ui.tableView.setMRMLTableNode(out.table)
            if warnings:
                slicer.util.warningDisplay(_("The result may be unreliable:") + "\n\n" + "\n".join(warnings))
        elif run.status == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; the scene is unchanged.")
        else:
            self.ui.statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(_("Segmentation failed: {message}").format(message=run.error_message),
                                     detailedText="\n".join(run.monitor.log[-200:]))
        self._updateGui()

    def onThresholdEdited(self, moved) -> None:
        """Slider "detection"/"outline" or the minimum volume changed (user, scene load, parameter restore): once
        the parameter node has the value (this slot may run before the node's own), the other threshold follows
        so outline <= detection; onRethreshold asks the scene layer whether the segments would change."""
        if not (self._settingModelDefaults or self._run is not None or self._parameterNode is None):
            qt.QTimer.singleShot(0, lambda p=self._parameterNode: self._follow(p, moved))
            self._rethresholdTimer.start()

    def _follow(self, p, moved) -> None:
        followed = follow(p.threshold, p.outlineThreshold, moved) if moved else None
        if p is self._parameterNode and followed not in (None, (p.threshold, p.outlineThreshold)):
            p.threshold, p.outlineThreshold = followed

    def onRethreshold(self) -> None:
        p = self._parameterNode
        if p is None:
            return
        action = self.logic.rethresholdAction(p.outputSegmentation,
                                              OperatingPoint(p.threshold, p.minLesionVolume, p.outlineThreshold))
        if action == "nothing":
            return
        if action == "confirm" and not slicer.util.confirmOkCancelDisplay(
                _("The segments were edited (or loaded from a saved scene). Re-thresholding replaces "
                  "all of them. Continue?"), _("Replace the segments?")):
            made = _mrml().operating_point(p.outputSegmentation)
            if made is not None:  # show the values the segments were made with again
                p.threshold, p.minLesionVolume, p.outlineThreshold = made.threshold, made.min_volume_mm3, made.outline
            return
        with slicer.util.tryWithErrorDisplay(_("Re-thresholding failed."), waitCursor=True):
            n = self.logic.rethreshold(p.outputSegmentation, p.threshold, p.minLesionVolume, p.outlineThreshold)
            self.ui.statusLabel.text = _("Detection {t:.2f}, outline {o:.2f}: {n} lesion(s).").format(
                t=p.threshold, o=p.outlineThreshold, n=n)

    def onUpdateTable(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Updating the lesion table failed."), waitCursor=True):
            n = self.logic.updateTable(p.outputSegmentation, referenceVolume=p.inputVolume)
            self.ui.statusLabel.text = _("Table updated from the segments: {n} lesion(s).").format(n=n)

    def onTableSelectionChanged(self) -> None:
        p = self._parameterNode
        if p is None or not p.outputTable:
            return
        rows = sorted({index.row() for index in self.ui.tableView.selectionModel().selectedIndexes()})
        if rows:
            self.logic.jumpToLesion(p.outputTable, rows[0])

    def onEditSegments(self) -> None:
        self.logic.editInSegmentEditor(self._parameterNode.outputSegmentation, self._parameterNode.inputVolume)

    def onExportDicom(self) -> None:
        p, window = self._parameterNode, slicer.util.mainWindow()
        folder = qt.QFileDialog.getExistingDirectory(window, _("Folder for the DICOM files"))
        reference = None if not folder or p.inputVolume.GetAttribute("DICOM.instanceUIDs") else \
            qt.QFileDialog.getExistingDirectory(window, _("The CE-T1's DICOM series folder"))
        with slicer.util.tryWithErrorDisplay(_("DICOM export failed."), waitCursor=True):
            if folder:
                paths = self.logic.exportDicom(p.outputSegmentation, folder, reference or None)
                self.ui.statusLabel.text = _("Written: {files}").format(
                    files=", ".join(map(str, paths.values())) or _("nothing (no segment has a voxel)"))


def pollWithTimer(run, intervalMs=200):
    """Poll a :class:`BrainMetSegLib.slicer_bridge.CliRun` from the Qt event loop (GUI use)."""
    timer = qt.QTimer()
    timer.setInterval(intervalMs)
    timer.connect("timeout()", lambda: run.poll() or timer.stop())
    run.timer = timer  # keep it alive as long as the run
    timer.start()
    return timer


class BrainMetSegLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable from the Python console: ``process(volumeNode)``,
    ``processFiles(paths, outputFolder)``, ``rethreshold``, ``updateTable``, ``jumpToLesion``."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.keepTemporaryFiles = False
        self.lastRun = None  # the last CliRun started by process(): run.monitor.result has the CLI's result
        self._dependenciesChecked = False

    def getParameterNode(self):
        return BrainMetSegParameterNode(super().getParameterNode())

    @staticmethod
    def userModelFolders():
        value = qt.QSettings().value(SETTINGS_MODEL_FOLDERS)
        return [] if not value else [value] if isinstance(value, str) else [str(v) for v in value]

    def addModelFolder(self, folder):
        """Check ``folder`` is a model package (model.json) and remember it for the selector."""
        bridge.read_model_card(folder)
        folders = self.userModelFolders()
        folder = os.path.normpath(folder)
        if folder not in folders:
            folders.append(folder)
            qt.QSettings().setValue(SETTINGS_MODEL_FOLDERS, folders)

    def modelChoices(self):
        from BrainMetSegLib import models

        return bridge.model_choices(models.read_registry(), self.userModelFolders())

    @staticmethod
    def setModel(parameterNode, model):
        """Select ``model`` and its card's operating point (outline = detection if none); ModelError if unreadable."""
        point = bridge.card_operating_point(bridge.model_card(model))
        parameterNode.model, parameterNode.minLesionVolume = model, point.min_volume_mm3
        lo, hi = SLIDER_RANGE
        parameterNode.threshold, parameterNode.outlineThreshold = (min(max(v, lo), hi) for v in (point.threshold,
                                                                                                 point.outline))

    @staticmethod
    def modelDescription(model):
        from BrainMetSegLib.errors import ModelError

        try:
            card = bridge.model_card(model)
        except ModelError as exc:  # shown in the model box, where the user picks another model
            return _("Cannot use this model: {message}").format(message=exc)
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

    def ensureDependencies(self, askConfirmation=True):
        """Install what the library needs, once, after asking. Returns False if declined. torch comes from
        the PyTorch extension (right CUDA build); the rest from pip, pinning Slicer's torch and SimpleITK."""
        def confirm(items):
            return not askConfirmation or slicer.util.confirmOkCancelDisplay(
                _("BrainMetSeg needs additional Python packages. Installing them needs a network "
                  "connection and may take several minutes. Install now?"),
                _("Install Python packages"), detailedText="\n".join(items))

        def installTorch(minimum):
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                raise RuntimeError(_("BrainMetSeg needs the PyTorch extension. Install 'PyTorch' from "
                                     "the Extensions Manager, restart Slicer and try again.")) from None
            return PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=f">={minimum}") is not None

        if not self._dependenciesChecked:
            self._dependenciesChecked = bridge.ensure_dependencies(
                confirm, installTorch, slicer.util.pip_install, lambda: slicer.util.tempDirectory("BrainMetSeg-pip"))
        return self._dependenciesChecked

    def _requireDependencies(self, askConfirmation):
        if not self.ensureDependencies(askConfirmation=askConfirmation):
            raise RuntimeError(_("Python packages needed by BrainMetSeg are not installed."))

    # ---------------------------------------------------------------- running

    def _options(self, model, device, brainExtraction, threshold, minLesionVolume, outlineThreshold, **kwargs):
        mask = libOptions.MaskMethod.DEEPBET if brainExtraction else libOptions.MaskMethod.NONE
        return bridge.RunOptions(model=model or DEFAULT_MODEL, device=device, threshold=threshold,
                                 min_volume_mm3=minLesionVolume, outline_threshold=outlineThreshold,
                                 brain_mask=mask, **kwargs)

    def startSegmentation(self, inputVolume, t1Volume=None, t2Volume=None, flairVolume=None,
                          outputSegmentation=None, outputTable=None, outputProbability=None,
                          model=None, device=libOptions.Device.AUTO.value, brainExtraction=True, threshold=None,
                          minLesionVolume=None, outlineThreshold=None, progressCallback=None, completedCallback=None):
        """Start the CLI on ``inputVolume``; returns a ``slicer_bridge.CliRun`` (non-blocking).

        Poll it with :func:`pollWithTimer` (GUI) or ``run.wait(slicer.app.processEvents)``
        (console). On success ``run.value`` holds the result's nodes (``BrainMetSegLib.mrml.ResultNodes``,
        created when None); on failure or cancel the scene is left as it was.
        """
        mrml = _mrml()

        def show(nodes):
            nodes.segmentation.CreateClosedSurfaceRepresentation()  # lesions in the 3D view too
            slicer.util.setSliceViewerLayers(background=inputVolume, fit=False)

        run = mrml.start_segmentation(
            slicer.mrmlScene, inputVolume,
            self._options(model, device, brainExtraction, threshold, minLesionVolume, outlineThreshold),
            {"t1": t1Volume, "t2": t2Volume, "flair": flairVolume},
            mrml.ResultNodes(outputSegmentation, outputTable, outputProbability), slicer.app.temporaryPath,
            environment=slicer.util.startupEnvironment(), keep_files=self.keepTemporaryFiles,
            on_progress=progressCallback, on_complete=completedCallback, after_import=show)
        logging.info("BrainMetSeg: running " + " ".join(run.command))
        return run

    def process(self, inputVolume, outputSegmentation=None, outputTable=None, outputProbability=None,
                t1Volume=None, t2Volume=None, flairVolume=None, model=None, device=libOptions.Device.AUTO.value,
                brainExtraction=True, threshold=None, minLesionVolume=None, outlineThreshold=None,
                askConfirmation=True):
        """Segment ``inputVolume`` and wait; returns (segmentationNode, tableNode, probabilityNode).

        model: registry name (default: the bundled model) or package folder; device: "auto", "cpu",
        "cuda"; threshold (detection) / minLesionVolume (mm^3) / outlineThreshold: None for the model
        card's; askConfirmation: ask before installing Python packages. RuntimeError on failure.
        """
        self._requireDependencies(askConfirmation)
        run = self.startSegmentation(inputVolume, t1Volume, t2Volume, flairVolume, outputSegmentation,
                                     outputTable, outputProbability, model, device, brainExtraction,
                                     threshold, minLesionVolume, outlineThreshold,
                                     progressCallback=lambda f, text: logging.debug(f"{100 * f:.0f}% {text}"))
        self.lastRun = run
        run.wait(slicer.app.processEvents)
        if run.status != "done":
            raise RuntimeError(_("BrainMetSeg segmentation failed: {message}").format(
                message=run.error_message or run.status))
        logging.info(f"BrainMetSeg: {run.monitor.result.lesions} lesion(s) in {run.elapsed:.1f} s")
        for warning in run.monitor.result.warnings:
            logging.warning(f"BrainMetSeg: {warning}")
        return run.value.segmentation, run.value.table, run.value.probability

    def processFiles(self, paths, outputFolder, model=None, device=libOptions.Device.AUTO.value,
                     brainExtraction=True, threshold=None, minLesionVolume=None, outlineThreshold=None,
                     outputFormat=libOptions.OutputFormat.NIFTI.value, overwrite=False, askConfirmation=True):
        """Segment image files without loading them into the scene (cohorts).

        paths: CE-T1 files (or DICOM folders), or dicts with t1ce and optional t1, t2, flair, case_id.
        Outputs go to ``outputFolder/<case_id>/`` plus ``summary.csv``; returns the per-case results
        (a failed case is logged, the others go on); RuntimeError if no case succeeded.
        """
        self._requireDependencies(askConfirmation)
        options = self._options(model, device, brainExtraction, threshold, minLesionVolume, outlineThreshold,
                                output_format=outputFormat)
        run = bridge.start_batch(paths, outputFolder, options, slicer.app.temporaryPath,
                                 environment=slicer.util.startupEnvironment(), overwrite=overwrite,
                                 keep_files=self.keepTemporaryFiles)
        self.lastRun = run
        run.wait(slicer.app.processEvents)
        for error in run.monitor.errors:
            logging.warning(f"{error.case}: {error.message}" if error.case else error.message)
        if not run.monitor.results:
            raise RuntimeError(_("BrainMetSeg batch failed: {message}").format(
                message=run.monitor.error_message(run.returncode)))
        return run.monitor.results

    # ---------------------------------------------------------------- editing loop (scene layer)

    @staticmethod
    def rethresholdAction(segmentation, point):
        """"nothing", "rethreshold" or "confirm" (edited segments): what an OperatingPoint change does."""
        return _mrml().rethreshold_action(segmentation, point).value if segmentation else "nothing"

    @staticmethod
    def rethreshold(segmentation, threshold, minLesionVolume=0.0, outlineThreshold=None):
        """Re-threshold the probability map (no inference) at detection ``threshold``, ``minLesionVolume`` mm^3, outline
        ``outlineThreshold`` (None: ``threshold``); replaces the segments and rows. Returns the lesion count."""
        return _mrml().rethreshold(segmentation, OperatingPoint(threshold, minLesionVolume, outlineThreshold))

    @staticmethod
    def updateTable(segmentation, referenceVolume=None):
        """Re-measure the lesions from the (edited) segments. Returns the number of rows."""
        return _mrml().update_table(segmentation, referenceVolume)

    @staticmethod
    def jumpToLesion(table, row):
        """Centre the slice views on the lesion of ``row`` (world RAS, returned); select its segment."""
        return _mrml().jump_to_lesion(table, row)

    @staticmethod
    def editInSegmentEditor(segmentation, inputVolume=None):
        """Open the Segment Editor on the lesions, with the input as source volume."""
        mrml = _mrml()
        mrml.segment_editor_node(slicer.mrmlScene, segmentation,
                                 inputVolume or mrml.result_nodes(segmentation).input_volume)
        slicer.util.selectModule("SegmentEditor")  # its enter() picks up the singleton node

    @staticmethod
    def exportDicom(segmentation, outputFolder, reference=None, kinds=("seg", "sr", "rtstruct"), overwrite=False):
        """DICOM SEG, SR and RTSTRUCT of the segments as they are now; reference: the CE-T1's DICOM folder or
        files (default: its files in Slicer's DICOM database). The library writes them (docs/dicom.md)."""
        from BrainMetSegLib.mrml.dicom_export import export_segmentation_dicom
        return export_segmentation_dicom(segmentation, reference, outputFolder, kinds, overwrite=overwrite,
                                         file_for_instance=getattr(slicer.dicomDatabase, "fileForInstance", None)).paths

    @staticmethod
    def loadComparison(folder):
        """``brainmetseg compare``'s folder: a segmentation per time point, shared track names/colours."""
        from BrainMetSegLib.mrml import longitudinal
        return longitudinal.load_comparison_folder(slicer.mrmlScene, folder)


def _mrml():
    """The library's scene layer, imported when first used (it needs the pip packages)."""
    from BrainMetSegLib import mrml

    return mrml


class BrainMetSegTest(ScriptedLoadableModuleTest):
    """Built-in test (Reload and Test): the editing loop on Slicer's scene (the same check runs
    headless on slicer-core in Testing/test_mrml.py); the end-to-end run is scripted_tests/."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_editing_loop()

    def test_editing_loop(self):
        missing = bridge.missing_requirements(
            bridge.installed_versions(r.distribution for r in bridge.REQUIREMENTS))
        if missing:  # never install from a test
            self.skipTest(f"Python packages not installed: {', '.join(map(str, missing))}")
        _mrml().selftest.check_editing_loop(slicer.mrmlScene)
        self.delayDisplay("Test passed")
