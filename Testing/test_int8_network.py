"""A model package's int8 networks (card field ``int8_network``): made by NNCF from the package's
own weights, chosen by ``--precision int8`` or by ``auto`` on a CPU without native bf16, run by
OpenVINO, recorded in run.json; the card's checks and the refusals.

Tiny untrained BasicUNets (conftest's tiny package; thick weights of another seed), calibrated on
random inputs: the int8 network's job here is to run, not to be accurate (the bundled demo's
agreement with fp32 is measured on phantoms: docs/speed.md).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.errors import ModelError, OptionError
from BrainMetSegLib.int8_network import MAIN, THICK
from BrainMetSegLib.models import load_package
from BrainMetSegLib.operating_point import OperatingPoint
from BrainMetSegLib.options import Autocast, Device
from BrainMetSegLib.pipeline import Segmenter
from BrainMetSegLib.pipeline_types import SegmentConfig
from BrainMetSegLib.precision import CpuFeatures, choose_precision
from BrainMetSegLib.train.quantise import add_int8_networks
from BrainMetSegLib.train.thick_package import add_thick_weights
from conftest import make_volume, tiny_package

pytest.importorskip("nncf")

AVX2 = CpuFeatures(model="test AVX2", flags=("avx2", "fma"), mkldnn_bf16=False, onednn_max_isa="", threads=2)
BF16 = CpuFeatures(model="test AMX", flags=("avx512f", "avx512_bf16", "amx_bf16"), mkldnn_bf16=True,
                   onednn_max_isa="", threads=2)


def _inputs(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(1, 1, 32, 32, 32)).astype(np.float32) for _ in range(2)]


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """(tiny package with thick-slice weights, the same with int8 networks)."""
    import torch
    from safetensors.torch import save_file

    from BrainMetSegLib.architectures import build_network

    root = tmp_path_factory.mktemp("int8")
    main_only = tiny_package(root / "main")
    torch.manual_seed(1)
    net = build_network("BasicUNet", 1, 1, main_only.card.architecture_args)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "thick.safetensors"))
    thick = add_thick_weights(main_only.folder, root / "thick.safetensors", root / "thick", split_mm=1.5)
    int8 = add_int8_networks(thick.folder, root / "int8", version="0.2",
                             inputs={MAIN: _inputs(0), THICK: _inputs(1)}, auto=(MAIN,))
    return thick, int8


def _scan(path: Path, slice_mm: float = 1.0) -> Path:
    sitk.WriteImage(make_volume(spacing_xyz=(1.0, 1.0, slice_mm)), str(path))
    return path


def _run(package, scan, precision="int8", **kw):
    config = SegmentConfig(model=str(package.folder), device="cpu", brain_mask="none", precision=precision,
                           backend=kw.pop("backend", "auto"), **kw)
    return Segmenter(config, package).run(str(scan))


def _copy(package, folder: Path, **card_changes):
    shutil.copytree(package.folder, folder)
    (folder / "model.json").write_text(json.dumps({**package.card.to_dict(), **card_changes}))
    return folder


def test_the_written_package(packages):
    thick, int8 = packages
    field = int8.card.int8_network
    assert set(field) == {MAIN, THICK, "auto", "made"} and int8.card.version == "0.2" and field["auto"] == [MAIN]
    assert field[MAIN]["from_weights_sha256"] == thick.card.sha256
    assert field[THICK]["from_weights_sha256"] == thick.card.thick_slice_weights["sha256"]
    assert "inputs given" in field["made"]["calibration"] and field["made"]["nncf"]
    xml = (int8.folder / field[MAIN]["xml"]).read_text()
    assert "FakeQuantize" in xml or "i8" in xml or "u8" in xml  # quantised, not the fp32 graph again
    assert not (thick.folder / field[MAIN]["xml"]).exists()  # the source package untouched


def test_auto_picks_int8_where_measured_faster():
    assert choose_precision("auto", Device.CPU, AVX2, int8_available=True).int8
    assert not choose_precision("auto", Device.CPU, AVX2, int8_available=False).int8
    bf16 = choose_precision("auto", Device.CPU, BF16, int8_available=True)  # native bf16, no VNNI
    assert not bf16.int8 and bf16.autocast == Autocast.BF16
    vnni = replace(BF16, flags=(*BF16.flags, "avx512_vnni"))  # native bf16 and 8-bit dot products
    both = choose_precision("auto", Device.CPU, vnni, int8_available=True)
    assert both.int8 and both.autocast == Autocast.FP32 and "avx512_vnni" in both.reason
    assert choose_precision("auto", Device.CPU, vnni, int8_available=False).autocast == Autocast.BF16
    assert not choose_precision("fp32", Device.CPU, AVX2, int8_available=True).int8
    arm = CpuFeatures(model="test ARM", flags=(), mkldnn_bf16=False, onednn_max_isa="", threads=2)
    plain = choose_precision("auto", Device.CPU, arm, int8_available=True)
    assert not plain.int8 and "int8 not measured" in plain.reason
    assert choose_precision("int8", Device.CPU, arm, int8_available=True).int8  # asked for: runs
    with pytest.raises(OptionError, match="no int8 network"):
        choose_precision("int8", Device.CPU, AVX2, int8_available=False)
    with pytest.raises(OptionError, match="CUDA"):
        choose_precision("int8", Device.CUDA, AVX2, int8_available=True)


@pytest.mark.parametrize("slice_mm,variant", [(1.0, MAIN), (3.0, THICK)])
def test_int8_runs_and_is_recorded(packages, tmp_path, slice_mm, variant):
    thick, int8 = packages
    scan = _scan(tmp_path / "scan.nii.gz", slice_mm)
    result = _run(int8, scan)
    plan = result.provenance["inference_run"]
    assert plan["precision"]["int8"] and "int8 as asked" in plan["precision"]["reason"]
    assert plan["backend"]["used"] == "openvino" and "int8 network" in plan["backend"]["reason"]
    assert plan["backend"]["int8_network"]["variant"] == variant
    fp32 = _run(int8, scan, precision="fp32")
    assert not fp32.provenance["inference_run"]["precision"]["int8"]
    from types import SimpleNamespace

    from BrainMetSegLib.viewer.panel_text import run_info  # the viewer's side panel says which ran

    rows = run_info(SimpleNamespace(run=result.provenance, image_path=scan, warnings=[],
                                    operating_point=OperatingPoint(0.5, 0.0, None)))
    assert {"section": "settings", "key": "precision used", "value": plan["precision"]["reason"]} in rows
    # same network, other arithmetic: close, not equal (random weights and inputs: a loose bound)
    difference = np.abs(sitk.GetArrayFromImage(result.probability) - sitk.GetArrayFromImage(fp32.probability))
    assert 0 < difference.max() < 0.5


def test_auto_runs_int8_only_for_the_sets_the_card_lists(packages, tmp_path, monkeypatch):
    from BrainMetSegLib import precision

    _, int8 = packages
    monkeypatch.setattr(precision, "cpu_features", lambda: AVX2)  # whatever CPU runs the suite
    thin = _run(int8, _scan(tmp_path / "thin.nii.gz"), precision="auto").provenance
    assert thin["inference_run"]["precision"]["int8"] and "int8_not_run" not in thin["inference_run"]
    assert thin["model"]["int8_network"]["auto"] == [MAIN]
    thick = _run(int8, _scan(tmp_path / "thick.nii.gz", 3.0), precision="auto").provenance["inference_run"]
    assert not thick["precision"]["int8"] and thick["precision"]["autocast"] == "fp32"
    assert "not the thick-slice weights'" in thick["int8_not_run"]
    with pytest.raises(ModelError, match="--auto thick"):
        add_int8_networks(int8.folder, tmp_path / "x", inputs={MAIN: _inputs(0), THICK: _inputs(1)}, auto=("thick",))


def test_int8_asked_where_the_weights_have_none_runs_fp32_and_says_so(packages, tmp_path):
    _, int8 = packages
    field = {k: v for k, v in int8.card.int8_network.items() if k != THICK}
    main_only = load_package(_copy(int8, tmp_path / "main_only", int8_network=field))
    assert main_only.all_weight_files()[-1][0].name == field[MAIN]["bin"]
    result = _run(main_only, _scan(tmp_path / "thick.nii.gz", 3.0))
    plan = result.provenance["inference_run"]
    assert not plan["precision"]["int8"] and "no int8 network for its thick-slice weights" in plan["int8_not_run"]
    assert any("--precision int8" in w and "fp32" in w for w in result.warnings)
    assert _run(main_only, _scan(tmp_path / "thin.nii.gz")).provenance["inference_run"]["precision"]["int8"]


def test_refusals_before_any_work(packages, tmp_path):
    thick, int8 = packages
    scan = _scan(tmp_path / "scan.nii.gz")
    with pytest.raises(OptionError, match="ships no int8 network"):
        _run(thick, scan)
    with pytest.raises(OptionError, match="through OpenVINO"):
        _run(int8, scan, backend="torch")
    # auto with --backend torch: fp32 torch, no int8
    plan = _run(int8, scan, precision="auto", backend="torch").provenance["inference_run"]
    assert not plan["precision"]["int8"] and plan["backend"]["used"] == "torch"


def test_a_damaged_int8_file_is_refused(packages, tmp_path):
    _, int8 = packages
    folder = tmp_path / "damaged"
    shutil.copytree(int8.folder, folder)
    bin_ = folder / int8.card.int8_network[MAIN]["bin"]
    data = bytearray(bin_.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bin_.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 does not match"):
        _run(load_package(folder), _scan(tmp_path / "scan.nii.gz"))


def test_card_checks(packages, tmp_path):
    thick, int8 = packages
    field = int8.card.int8_network
    with pytest.raises(ModelError, match="entries named after the card's sets of weights"):
        load_package(_copy(int8, tmp_path / "a", int8_network={**field, "other": field[MAIN]}))
    other = {**field, THICK: {**field[THICK], "from_weights_sha256": field[MAIN]["from_weights_sha256"]}}
    with pytest.raises(ModelError, match="made from weights"):
        load_package(_copy(int8, tmp_path / "b", int8_network=other))
    with pytest.raises(ModelError, match="'auto' must be a list of its networks"):
        load_package(_copy(int8, tmp_path / "e", int8_network={**field, "auto": ["main", "other"]}))
    escape = {**field, MAIN: {**field[MAIN], "xml": "../model_int8.xml"}}
    with pytest.raises(ModelError, match="file name ending in .xml"):
        load_package(_copy(int8, tmp_path / "c", int8_network=escape))
    folder = _copy(int8, tmp_path / "d")
    (folder / field[THICK]["bin"]).unlink()
    with pytest.raises(ModelError, match="int8 network file is missing"):
        load_package(folder)
