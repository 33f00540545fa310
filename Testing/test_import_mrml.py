"""An imported nnU-Net model through the Slicer scene layer (slicer-core scene, the module's run
path: CLI subprocess -> segments, table and probability volume)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

pytest.importorskip("dynamic_network_architectures")
slicer = pytest.importorskip("slicer")

from BrainMetSegLib import mrml  # noqa: E402
from BrainMetSegLib import slicer_bridge as bridge  # noqa: E402
from BrainMetSegLib.importers.nnunet import NnUNetImport, import_nnunet  # noqa: E402
from BrainMetSegLib.mrml import volumes  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "nnunet_tiny"
RESULTS = DATA / "Dataset902_EasyPhantom" / "nnUNetTrainer__nnUNetPlansTiny__3d_fullres"


def test_imported_nnunet_model_into_scene(tmp_path):
    pkg = import_nnunet(NnUNetImport(str(RESULTS), str(tmp_path / "pkg"), folds=("0",), mirroring=False))
    scene = slicer.vtkMRMLScene()
    mrml.segmentations_logic(scene)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CE-T1")
    image = sitk.Cast(sitk.ReadImage(str(DATA / "phantom_seed12345_0000.nii.gz")), sitk.sitkFloat32)
    volumes.set_volume(volume, *volumes.array_and_matrix(image))
    options = bridge.RunOptions(model=str(pkg.folder), device="cpu", brain_mask="none")
    run = mrml.start_segmentation(scene, volume, options, temp_dir=tmp_path / "run", python=sys.executable)
    run.wait()
    assert run.status == "done", run.error_message + "\n".join(run.monitor.log[-20:])
    nodes = run.value
    # the phantom has 6 metastases; fold 0 alone without mirroring finds them plus one extra
    # component (the two-fold ensemble with mirroring: 6 of 6, no false positive)
    n = nodes.segmentation.GetSegmentation().GetNumberOfSegments()
    assert n == nodes.table.GetNumberOfRows() and 6 <= n <= 7
