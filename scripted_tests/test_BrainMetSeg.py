"""End-to-end test of the BrainMetSeg module inside 3D Slicer (5.10+).

It builds a synthetic CE-T1 volume with the library, runs ``BrainMetSegLogic().process`` with the
bundled demo model on the CPU (the real CLI subprocess), and checks the segments,
the lesion table, a table-row jump, re-thresholding, "Update table" after an edit,
and that Cancel leaves the scene unchanged.

Run it (exit code 0 = all passed):

    Slicer --no-main-window --python-script scripted_tests/test_BrainMetSeg.py

From a source checkout (extension not installed) add the module path:

    Slicer --no-main-window --additional-module-paths BrainMetSeg \\
           --python-script scripted_tests/test_BrainMetSeg.py

It is also registered with ``slicer_add_python_unittest`` (ctest -R py_test_BrainMetSeg)
when the extension is built with BUILD_TESTING. It never installs anything (extension
build machines must not pip-install): without the Python dependencies (installed by the
module's first Apply, torch through the PyTorch extension) the tests are skipped, saying why.
"""

import os
import sys
import time
import unittest

import numpy as np
import slicer
import slicer.ScriptedLoadableModule as slm  # module import: the base class is not collected as a test

try:
    _HERE = os.path.dirname(os.path.abspath(__file__))
except NameError:  # pasted into the Python console
    _HERE = os.getcwd()
_REPO = os.path.dirname(_HERE)


def importModule():
    """The BrainMetSeg module's Python file: loaded by Slicer, or from the source tree."""
    try:
        import BrainMetSeg
    except ModuleNotFoundError:
        sys.path.insert(0, os.path.join(_REPO, "BrainMetSeg"))
        sys.path.insert(0, _REPO)
        import BrainMetSeg
    return BrainMetSeg


def missingDependencies():
    """Why the end-to-end tests cannot run here (None when they can); nothing is installed."""
    from BrainMetSegLib import slicer_bridge as bridge

    names = [*bridge.PROTECTED, *(r.distribution for r in bridge.REQUIREMENTS)]
    versions = bridge.installed_versions(names)
    problems = [bridge.torch_problem(versions.get("torch"))] + [str(r) for r in bridge.missing_requirements(versions)]
    problems = [p for p in problems if p]
    return ("missing Python dependencies (press Apply once in the module to install them): "
            + ", ".join(problems)) if problems else None


def syntheticVolume(name="synthetic CE-T1"):
    """A synthetic, skull-stripped CE-T1 volume node with a few metastases.

    Built with the library's phantom generator (``BrainMetSegLib.synth``: real anatomy,
    3 lesions, 3 mm voxels) when its optional dependencies (nilearn) are installed in
    Slicer's Python, else from numpy spheres in an ellipsoidal "brain". Voxels go into
    the scene as numpy + IJK-to-RAS matrix (``BrainMetSegLib.mrml.volumes``).
    """
    from BrainMetSegLib.mrml import volumes

    try:
        from BrainMetSegLib.synth import SynthConfig, make_case

        case = make_case(0, SynthConfig(spacing_mm=3.0, n_lesions=3, field_of_view="brain", skull=False))
        volumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        volumes.set_volume(volumeNode, *volumes.array_and_matrix(case.image))
        volumeNode.CreateDefaultDisplayNodes()
        return volumeNode
    except (ImportError, OSError) as exc:  # nilearn / templates missing in Slicer's Python: spheres
        print(f"BrainMetSeg test: library phantom unavailable ({exc}); using numpy spheres")
    shape = (56, 64, 64)
    rng = np.random.default_rng(0)
    k, j, i = np.mgrid[: shape[0], : shape[1], : shape[2]]
    centre = np.array(shape) / 2
    head = ((k - centre[0]) / (shape[0] * 0.45)) ** 2 + ((j - centre[1]) / (shape[1] * 0.45)) ** 2 \
        + ((i - centre[2]) / (shape[2] * 0.45)) ** 2 < 1
    image = np.where(head, 400.0, 0.0) + rng.normal(0, 10, shape)
    for (ck, cj, ci), radius in (((22, 24, 24), 6), ((34, 42, 40), 4), ((28, 40, 20), 3)):
        image[np.sqrt((k - ck) ** 2 + (j - cj) ** 2 + (i - ci) ** 2) < radius] += 500
    volumeNode = slicer.util.addVolumeFromArray(image.astype(np.float32), name=name)
    volumeNode.SetSpacing(1.0, 1.0, 1.2)
    volumeNode.SetOrigin(-30.0, -35.0, -28.0)
    return volumeNode


def sceneNodeIds():
    scene = slicer.mrmlScene
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


class BrainMetSegEndToEndTest(slm.ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()
        self.module = importModule()
        reason = missingDependencies()
        if reason:
            self.skipTest(reason)
        self.logic = self.module.BrainMetSegLogic()
        self.volume = syntheticVolume()
        # a study in the subject hierarchy, to check the outputs land under it
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Test patient")
        self.study = sh.CreateStudyItem(patient, "Test study")
        sh.SetItemParent(sh.GetItemByDataNode(self.volume), self.study)

    def runTest(self):
        self.setUp()
        self.test_process_table_and_jump()
        self.setUp()
        self.test_cancel_leaves_scene_unchanged()

    def test_process_table_and_jump(self):
        self.delayDisplay("Segmenting the synthetic volume with the demo model on CPU")
        segmentation, table, probability = self.logic.process(
            self.volume, device="cpu", brainExtraction=False, askConfirmation=False)
        result = self.logic.lastRun.monitor.result
        nSegments = segmentation.GetSegmentation().GetNumberOfSegments()
        self.assertEqual(nSegments, result.lesions)
        self.assertEqual(table.GetNumberOfRows(), result.lesions)
        self.assertEqual(probability.GetImageData().GetDimensions(), self.volume.GetImageData().GetDimensions())

        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        for node in (segmentation, table, probability):
            self.assertEqual(sh.GetItemParent(sh.GetItemByDataNode(node)), self.study)
        self.assertEqual(segmentation.GetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole()),
                         self.volume.GetID())

        if nSegments == 0:
            # The demo model is untrained: when it finds nothing at its threshold, re-threshold
            # just below the highest probability so that the row-click check has a lesion.
            peak = float(slicer.util.arrayFromVolume(probability).max())
            self.assertGreater(peak, 0.0)
            nSegments = self.logic.rethreshold(segmentation, threshold=max(0.01, peak * 0.9))
            self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), nSegments)
            self.assertEqual(table.GetNumberOfRows(), nSegments)
        self.assertGreater(nSegments, 0)

        # An outline below the detection threshold draws the same lesions, larger (issue 23).
        from BrainMetSegLib import mrml

        def totalVolume():
            column = table.GetTable().GetColumnByName("volume_mm3")
            return sum(column.GetValue(row) for row in range(table.GetNumberOfRows()))

        made, before = mrml.operating_point(segmentation), totalVolume()
        outline = made.threshold / 2
        self.assertEqual(self.logic.rethreshold(segmentation, made.threshold, made.min_volume_mm3, outline), nSegments)
        self.assertGreaterEqual(totalVolume(), before)  # never smaller; larger wherever p falls off gradually
        self.assertEqual(mrml.operating_point(segmentation).outline, outline)
        self.assertEqual(self.logic.rethreshold(segmentation, made.threshold, made.min_volume_mm3,
                                                made.outline_threshold), nSegments)

        seg = segmentation.GetSegmentation()
        first = seg.GetSegment(seg.GetNthSegmentID(0))
        self.assertEqual(first.GetName(), "Metastasis 1")
        self.assertIn("14799000", first.GetTerminology())
        self.assertEqual(table.GetColumnIndex("segment"), 0)
        self.assertEqual(table.GetCellText(0, table.GetColumnIndex("segment")), "Metastasis 1")

        self.delayDisplay("Clicking the first table row")
        sliceNodes = mrml.slice_nodes(slicer.mrmlScene)  # --no-main-window: no layout, made here
        expected = [table.GetTable().GetColumnByName(f"centroid_{c}").GetValue(0) for c in "ras"]
        jumped = self.logic.jumpToLesion(table, 0)  # what the row selection calls
        for a, b in zip(jumped, expected, strict=True):
            self.assertAlmostEqual(a, b, places=3)
        editorNode = slicer.mrmlScene.GetSingletonNode("SegmentEditor", "vtkMRMLSegmentEditorNode")
        self.assertEqual(editorNode.GetSegmentationNode().GetID(), segmentation.GetID())
        self.assertEqual(editorNode.GetSelectedSegmentID(), seg.GetNthSegmentID(0))
        for sliceNode in sliceNodes:
            sliceToRas = sliceNode.GetSliceToRAS()
            for axis in range(3):
                self.assertAlmostEqual(sliceToRas.GetElement(axis, 3), expected[axis], places=2,
                                       msg=f"{sliceNode.GetName()} slice is not centred on the lesion")
        if slicer.util.mainWindow():  # with a GUI, the same through the table view
            widget = slicer.modules.brainmetseg.widgetRepresentation().self()
            parameters = widget.logic.getParameterNode()
            parameters.outputSegmentation, parameters.outputTable = segmentation, table
            widget.ui.tableView.setMRMLTableNode(table)
            widget.ui.tableView.selectRow(0)
            slicer.app.processEvents()
            red = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
            self.assertAlmostEqual(red.GetSliceToRAS().GetElement(2, 3), expected[2], places=2)

        self.delayDisplay("Editing: erase all but the first segment, then update the table")
        for segmentId in [seg.GetNthSegmentID(i) for i in range(1, seg.GetNumberOfSegments())]:
            seg.RemoveSegment(segmentId)
        self.assertEqual(self.logic.updateTable(segmentation, self.volume), 1)
        self.assertEqual(table.GetNumberOfRows(), 1)
        self.delayDisplay("Test passed")

    def test_cancel_leaves_scene_unchanged(self):
        before = sceneNodeIds()
        run = self.logic.startSegmentation(self.volume, device="cpu", brainExtraction=False)
        deadline = time.monotonic() + 120
        while run.poll() and run.monitor.last_event is None and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertIsNotNone(run.monitor.last_event, "no progress from the CLI within 120 s")
        run.cancel()
        run.wait(slicer.app.processEvents, timeout=30)
        self.assertEqual(run.status, "cancelled")
        self.assertIsNotNone(run.process.poll())
        self.assertEqual(sceneNodeIds(), before)
        self.assertFalse(run.run_folder.path.exists())


def runTests():
    suite = unittest.TestLoader().loadTestsFromTestCase(BrainMetSegEndToEndTest)
    return unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful()


if __name__ == "__main__":  # Slicer --python-script
    ok = runTests()
    slicer.util.exit(0 if ok else 1)
