"""A model package with a second set of weights for thick-slice scans (card field
``thick_slice_weights``): choice by the input scan's slice spacing, record, refusals, OpenVINO
cache keys, downloads, and the package writer (docs/training/add_thick_weights.py).

Tiny untrained BasicUNets: the main weights are conftest's (seed 0), the thick ones seed 1.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.cli import main
from BrainMetSegLib.errors import ModelError, OutputError
from BrainMetSegLib.models import ModelCard, ModelPackage, load_package
from BrainMetSegLib.pipeline import Segmenter
from BrainMetSegLib.pipeline_types import SegmentConfig
from BrainMetSegLib.thick_weights import MAIN, THICK, choose, is_thick
from BrainMetSegLib.train.thick_package import add_thick_weights
from conftest import load_script, make_volume, tiny_package

REPO = Path(__file__).resolve().parents[1]


def _weights(path: Path, seed: int, features=(4, 4, 8, 8, 16, 4)) -> Path:
    """A BasicUNet's weights (safetensors, fp32) for the tiny card's network."""
    import torch
    from safetensors.torch import save_file

    from BrainMetSegLib.architectures import build_network

    torch.manual_seed(seed)
    net = build_network("BasicUNet", 1, 1, {"features": list(features)})
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """(main-only package, the same with thick-slice weights above 1.5 mm)."""
    root = tmp_path_factory.mktemp("thick")
    main_only = tiny_package(root / "main")
    thick = add_thick_weights(main_only.folder, _weights(root / "thick.safetensors", 1), root / "both",
                              split_mm=1.5, version="0.1")
    return main_only, thick


def _scan(path: Path, slice_mm: float) -> Path:
    """The conftest block with ``slice_mm`` slices along z (1 mm in plane)."""
    sitk.WriteImage(make_volume(spacing_xyz=(1.0, 1.0, slice_mm)), str(path))
    return path


def _run(package, scan, **kw):
    config = SegmentConfig(model=str(package.folder), device="cpu", brain_mask=kw.pop("brain_mask", "none"),
                           precision="fp32", backend=kw.pop("backend", "torch"), **kw)
    return Segmenter(config, package).run(str(scan))


def _copy(package: ModelPackage, folder: Path, **card_changes) -> ModelPackage:
    """A copy of ``package`` in ``folder`` with the card changed."""
    shutil.copytree(package.folder, folder)
    data = {**package.card.to_dict(), **card_changes}
    (folder / "model.json").write_text(json.dumps(data))
    return load_package(folder)


def test_the_written_package(packages):
    main_only, thick = packages
    entry = thick.card.thick_slice_weights
    assert entry["weights"] == "model_thick.safetensors" and entry["above_slice_spacing_mm"] == 1.5
    assert entry["sha256"] == hashlib.sha256((thick.folder / entry["weights"]).read_bytes()).hexdigest()
    assert thick.card.sha256 == main_only.card.sha256 and thick.card.version == "0.1"
    assert (thick.folder / "model.safetensors").read_bytes() == (main_only.folder / "model.safetensors").read_bytes()
    assert [p.name for p, _ in thick.all_weight_files()] == ["model.safetensors", "model_thick.safetensors"]
    assert thick.network_identity(MAIN) == main_only.network_identity()
    assert thick.network_identity(THICK)["weights_sha256"] == [entry["sha256"]]


def test_thin_scan_runs_the_main_weights_unchanged(packages, tmp_path, monkeypatch):
    main_only, thick = packages
    scan = _scan(tmp_path / "thin.nii.gz", 1.0)
    loaded = []
    real = ModelPackage.load_network
    monkeypatch.setattr(ModelPackage, "load_network",
                        lambda self, device="cpu", variant=MAIN: loaded.append(variant) or real(self, device, variant))
    got, ref = _run(thick, scan), _run(main_only, scan)
    assert loaded == [MAIN, MAIN]  # a thin scan never builds the thick network
    assert np.array_equal(sitk.GetArrayFromImage(got.probability), sitk.GetArrayFromImage(ref.probability))
    ran = got.provenance["model"]["weights_run"]
    assert ran["variant"] == MAIN and ran["file"] == "model.safetensors" and ran["sha256"] == thick.card.sha256
    assert ran["why"] == "slice spacing 1 mm <= 1.5 mm"
    assert "weights_run" not in ref.provenance["model"]  # a card without the field: as before
    assert set(ref.provenance["model"]) == {"name", "version", "sha256", "trained", "folder"}


def test_thick_scan_runs_the_thick_weights(packages, tmp_path):
    main_only, thick = packages
    scan = _scan(tmp_path / "thick.nii.gz", 3.0)
    got, ref = _run(thick, scan), _run(main_only, scan)
    ran = got.provenance["model"]["weights_run"]
    assert ran == {"variant": THICK, "file": "model_thick.safetensors",
                   "sha256": thick.card.thick_slice_weights["sha256"], "why": "slice spacing 3 mm > 1.5 mm",
                   "slice_spacing_mm": 3.0}
    a, b = sitk.GetArrayFromImage(got.probability), sitk.GetArrayFromImage(ref.probability)
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-3  # another network made it


def test_segment_command_records_the_weights(packages, tmp_path, capsys, monkeypatch):
    _, thick = packages
    scans = [_scan(tmp_path / "thin.nii.gz", 1.0), _scan(tmp_path / "thick5.nii.gz", 5.0)]
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case_id,t1ce\n" + "".join(f"{p.name.split('.')[0]},{p}\n" for p in scans))
    code = main(["segment", "--manifest", str(manifest), "-o", str(tmp_path / "o"), "--model", str(thick.folder),
                 "--brain-mask", "none", "--device", "cpu", "--backend", "torch"])
    capsys.readouterr()
    assert code == 0
    runs = {c: json.loads((tmp_path / "o" / c / "run.json").read_text())["model"] for c in ("thin", "thick5")}
    assert runs["thin"]["weights_run"]["file"] == "model.safetensors"
    assert runs["thick5"]["weights_run"]["file"] == "model_thick.safetensors"
    assert runs["thick5"]["weights_run"]["why"] == "slice spacing 5 mm > 1.5 mm"
    assert runs["thick5"]["thick_slice_weights"] == thick.card.thick_slice_weights
    code = main(["models", str(thick.folder)])
    assert code == 0 and '"model_thick.safetensors"' in capsys.readouterr().out
    monkeypatch.setenv("BRAINMETSEG_MODELS", str(thick.folder.parent))  # the user's model folder
    assert main(["models"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith(thick.folder.name + " ")]
    assert listed and "weights=model.safetensors, model_thick.safetensors (slices > 1.5 mm)" in listed[0]
    # --skip-existing: a run made with other thick-slice weights is not this package's
    other = add_thick_weights(thick.folder, _weights(tmp_path / "seed2.safetensors", 2), tmp_path / "other",
                              split_mm=1.5)
    code = main(["segment", "--manifest", str(manifest), "-o", str(tmp_path / "o"), "--model", str(other.folder),
                 "--brain-mask", "none", "--device", "cpu", "--backend", "torch", "--skip-existing"])
    assert code != 0 and "made with other thick-slice weights" in capsys.readouterr().err


def test_split_is_compared_as_the_scorer_compares():
    assert not is_thick(1.5, 1.5) and not is_thick(1.50000001, 1.5) and is_thick(1.5001, 1.5)
    card = ModelCard(name="m", version="1", architecture="BasicUNet")
    assert choose(card, 7.0).variant == MAIN  # no thick weights: always the main ones
    card = ModelCard(name="m", version="1", architecture="BasicUNet",
                     thick_slice_weights={"weights": "t.safetensors", "sha256": "A" * 64,
                                          "above_slice_spacing_mm": 1.5})
    assert card.thick_slice_weights["sha256"] == "a" * 64
    assert choose(card, 1.5001).reason == "slice spacing 1.5001 mm > 1.5 mm"
    assert choose(card, 1.5).reason == "slice spacing 1.5 mm <= 1.5 mm" and choose(card, 1.5).variant == MAIN


def test_damaged_thick_weights_are_refused_when_used(packages, tmp_path):
    _, thick = packages
    bad = _copy(thick, tmp_path / "bad")
    path = bad.folder / "model_thick.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    _run(bad, _scan(tmp_path / "thin.nii.gz", 1.0))  # the thin network is intact
    with pytest.raises(ModelError, match=r"model_thick.safetensors: sha256 .* does not match the model card"):
        _run(bad, _scan(tmp_path / "thick.nii.gz", 3.0))


def test_missing_thick_weights_are_refused_at_load(packages, tmp_path):
    _, thick = packages
    bad = _copy(thick, tmp_path / "bad")
    (bad.folder / "model_thick.safetensors").unlink()
    with pytest.raises(ModelError, match=r"model_thick.safetensors: thick-slice weights .* are missing .*> 1.5 mm"):
        Segmenter(SegmentConfig(model=str(bad.folder), brain_mask="none"), bad)


def test_mismatched_architecture_is_refused(packages, tmp_path):
    main_only, thick = packages
    other = _weights(tmp_path / "wide.safetensors", 1, features=(8, 8, 8, 8, 16, 8))
    bad = _copy(thick, tmp_path / "bad")
    shutil.copy(other, bad.folder / "model_thick.safetensors")
    sha = hashlib.sha256(other.read_bytes()).hexdigest()
    bad = _copy(bad, tmp_path / "bad2", thick_slice_weights={**thick.card.thick_slice_weights, "sha256": sha})
    with pytest.raises(ModelError, match="do not have the main weights' layout .* BasicUNet"):
        Segmenter(SegmentConfig(model=str(bad.folder), brain_mask="none"), bad)
    with pytest.raises(ModelError, match="do not fit architecture BasicUNet"):
        bad.load_network("cpu", THICK)
    with pytest.raises(ModelError, match=r"wide.safetensors: the weights do not have .*model.safetensors's tensors"):
        add_thick_weights(main_only.folder, other, tmp_path / "new", split_mm=1.5)
    assert not (tmp_path / "new").exists()
    wider = tiny_package(tmp_path / "wider")
    wider = _copy(wider, tmp_path / "wider2", architecture_args={"features": [8, 8, 8, 8, 16, 8]})
    with pytest.raises(ModelError, match="network differs .* architecture_args"):
        add_thick_weights(main_only.folder, wider.folder, tmp_path / "new", split_mm=1.5)


@pytest.mark.parametrize("entry, message", [
    ({"weights": "t.safetensors", "sha256": "a" * 64}, "exactly the keys"),
    ({"weights": "t.safetensors", "sha256": "a" * 64, "above_slice_spacing_mm": 1.5, "spacing_mm": [1, 1, 5]},
     "card's own architecture, grid"),
    ({"weights": "t.pt", "sha256": "a" * 64, "above_slice_spacing_mm": 1.5}, "safetensors file .no pickle"),
    ({"weights": "model.safetensors", "sha256": "a" * 64, "above_slice_spacing_mm": 1.5}, "main weights file"),
    ({"weights": "t.safetensors", "sha256": "abc", "above_slice_spacing_mm": 1.5}, "64 hexadecimal"),
    ({"weights": "t.safetensors", "sha256": "a" * 64, "above_slice_spacing_mm": 0}, r"\(0, 20\]"),
])
def test_card_entry_is_checked(entry, message):
    with pytest.raises(ModelError, match=message):
        ModelCard(name="m", version="1", architecture="BasicUNet", thick_slice_weights=entry)


def test_thick_weights_outside_the_folder_are_refused(packages, tmp_path):
    _, thick = packages
    with pytest.raises(ModelError, match="points outside the package folder"):
        _copy(thick, tmp_path / "bad", thick_slice_weights={**thick.card.thick_slice_weights,
                                                             "weights": "../x.safetensors"})


def _with_scorer(package, folder: Path, split: float) -> Path:
    """``package`` copied with a candidate scorer file recording a stitched split (its trees do
    not matter to the check, which reads the record)."""
    shutil.copytree(package.folder, folder)
    scorer = folder / "candidate_scorer.json"
    scorer.write_text(json.dumps({"stitched": {"slice_spacing_split_mm": split}}))
    card = {**package.card.to_dict(),
            "candidate_scorer": {"file": scorer.name, "sha256": hashlib.sha256(scorer.read_bytes()).hexdigest()}}
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def test_split_mismatch_with_the_stitched_scorer_is_refused(packages, tmp_path):
    main_only, thick = packages
    folder = _with_scorer(thick, tmp_path / "bad", 2.0)
    with pytest.raises(ModelError, match=r"candidate_scorer.json: the stitched candidate scorer splits at slice "
                                         r"spacing 2 mm but .*above 1.5 mm"):
        load_package(folder)
    scored = _with_scorer(main_only, tmp_path / "scored", 2.0)  # no thick weights yet: nothing to compare
    with pytest.raises(ModelError, match="splits at slice spacing 2 mm"):
        add_thick_weights(scored, thick.folder / "model_thick.safetensors", tmp_path / "new", split_mm=1.5)
    new = add_thick_weights(scored, thick.folder / "model_thick.safetensors", tmp_path / "new")  # the scorer's
    assert new.card.thick_slice_weights["above_slice_spacing_mm"] == 2.0


def test_writer_is_atomic_and_keeps_fp16(packages, tmp_path):
    import torch
    from safetensors.torch import load_file

    main_only, thick = packages
    with pytest.raises(OutputError, match="is the source package"):
        add_thick_weights(main_only.folder, thick.folder / "model_thick.safetensors", thick.folder.parent / "main",
                          split_mm=1.5, overwrite=True)  # the source itself: never
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        add_thick_weights(main_only.folder, thick.folder / "model_thick.safetensors", thick.folder, split_mm=1.5)
    half = tmp_path / "half"
    shutil.copytree(main_only.folder, half)
    state = {k: v.half() for k, v in load_file(str(half / "model.safetensors")).items()}
    from safetensors.torch import save_file

    save_file(state, str(half / "model.safetensors"))
    card = {**main_only.card.to_dict(), "sha256": hashlib.sha256((half / "model.safetensors").read_bytes()).hexdigest()}
    (half / "model.json").write_text(json.dumps(card))
    script = load_script(REPO / "docs" / "training" / "add_thick_weights.py")
    out = tmp_path / "new"
    assert script.main([str(half), str(thick.folder / "model_thick.safetensors"), "-o", str(out),
                        "--split-mm", "1.5"]) == 0
    stored = load_file(str(out / "model_thick.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert script.main([str(half), str(thick.folder / "model_thick.safetensors"), "-o", str(out),
                        "--split-mm", "1.5"]) == 1  # exists
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half", "new"]  # nothing staged left


def test_openvino_cache_is_keyed_by_the_weights_that_ran(packages, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from BrainMetSegLib import openvino_backend
    from BrainMetSegLib.openvino_backend import cache_key, conversion_settings

    # Networks compiled by earlier tests of this process (same weights, same key) would be served
    # from memory and never written to this test's cache folder.
    monkeypatch.setattr(openvino_backend, "_COMPILED", {})

    _, thick = packages
    settings = conversion_settings(1, 16)
    assert cache_key(thick.network_identity(MAIN), settings, "v") != cache_key(thick.network_identity(THICK),
                                                                                settings, "v")
    cache = tmp_path / "cache"
    folders, probs = {}, {}
    for name, mm in (("thin", 1.0), ("thick", 3.0)):
        scan = _scan(tmp_path / f"{name}.nii.gz", mm)
        for backend in ("openvino", "torch"):
            result = _run(thick, scan, backend=backend, backend_cache=str(cache))
            probs[name, backend] = sitk.GetArrayFromImage(result.probability)
            if backend == "openvino":
                folders[name] = result.provenance["inference_run"]["backend"]["cache_folder"]
    assert folders["thin"] != folders["thick"] and len(list(cache.iterdir())) == 2
    for name in ("thin", "thick"):
        assert np.abs(probs[name, "openvino"] - probs[name, "torch"]).max() < 1e-3


def test_share_networks_keeps_choosing_per_scan(packages, tmp_path, monkeypatch):
    _, thick = packages
    first = Segmenter(SegmentConfig(model=str(thick.folder), brain_mask="none", backend="torch"), thick)
    first.run(str(_scan(tmp_path / "thick.nii.gz", 3.0)))
    second = Segmenter(SegmentConfig(model=str(thick.folder), brain_mask="none", backend="torch"), thick)
    second.share_networks(first)
    monkeypatch.setattr(ModelPackage, "load_network", lambda *a, **k: pytest.fail("built again"))
    result = second.run(str(_scan(tmp_path / "thick7.nii.gz", 7.0)))
    assert result.provenance["model"]["weights_run"]["variant"] == THICK


def _zip(folder: Path, path: Path, leave_out: str = "") -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(folder.iterdir()):
            if f.name != leave_out:
                zf.write(f, "pkg/" + f.name)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("leave_out", ["", "model_thick.safetensors"])
def test_download_brings_both_weights_whole(leave_out, packages, tmp_path, monkeypatch):
    from BrainMetSegLib.download import download_model

    _, thick = packages
    monkeypatch.setenv("BRAINMETSEG_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "remote.zip"
    registry = tmp_path / "Models.json"
    registry.write_text(json.dumps({"models": [{"name": "remote", "url": archive.as_uri(),
                                                "sha256": _zip(thick.folder, archive, leave_out)}]}))
    if leave_out:
        with pytest.raises(ModelError, match="model_thick.safetensors: weights file named by the model card is "
                                             "missing"):
            download_model("remote", registry)
        assert not (tmp_path / "cache" / "models" / "remote").exists()
    else:
        package = download_model("remote", registry)
        assert (package.folder / "model_thick.safetensors").is_file()


def test_records_read_back():
    from BrainMetSegLib.dicom.identity import ModelIdentity
    from BrainMetSegLib.evaluate.runner import _run_model

    ran = {"variant": THICK, "file": "model_thick.safetensors", "sha256": "b" * 64,
           "why": "slice spacing 5 mm > 1.5 mm"}
    model = {"name": "m", "version": "1", "sha256": "a" * 64, "weights_run": ran}
    assert ModelIdentity.from_provenance({"model": model, "settings": {}}).device_serial_number == "b" * 16
    assert _run_model({"model": model}) == "m 1 (thick-slice weights model_thick.safetensors)"
    from types import SimpleNamespace

    from BrainMetSegLib.operating_point import OperatingPoint
    from BrainMetSegLib.viewer.panel_text import run_info

    rows = run_info(SimpleNamespace(run={"model": model}, image_path="x.nii.gz", warnings=[],
                                    operating_point=OperatingPoint(0.5, 0.0, None)))
    assert {"section": "model", "key": "weights",
            "value": "model_thick.safetensors (slice spacing 5 mm > 1.5 mm)"} in rows


def test_release_lists_both_weights(packages, tmp_path):
    release = load_script(REPO / "tools" / "extension_release.py", "release_for_thick")
    _, thick = packages
    repo = tmp_path / "repo"
    shutil.copytree(thick.folder, repo / "Resources" / "Models" / "tiny")
    urls = {"model.safetensors": "https://example.org/tiny-test-0.1/model.safetensors"}
    registry = {"models": [{"name": "tiny", "path": "Models/tiny", "weights_urls": urls}], "sample": []}
    (repo / "Resources" / "Models.json").write_text(json.dumps(registry))
    with pytest.raises(ModelError, match="no weights_urls entry for model_thick.safetensors"):
        release.downloads(repo)
    urls["model_thick.safetensors"] = "https://example.org/tiny-test-0.1/model_thick.safetensors"
    (repo / "Resources" / "Models.json").write_text(json.dumps(registry))
    got = [(d.path, d.sha256) for d in release.downloads(repo)]
    assert got == [("Models/tiny/model.safetensors", thick.card.sha256),
                   ("Models/tiny/model_thick.safetensors", thick.card.thick_slice_weights["sha256"])]


def test_mirroring_and_ensembles_run_the_chosen_weights(packages, tmp_path):
    _, thick = packages
    scan = _scan(tmp_path / "thick.nii.gz", 3.0)
    plain, mirrored = _run(thick, scan), _run(thick, scan, mirror="lr")
    assert mirrored.provenance["model"]["weights_run"]["variant"] == THICK
    assert not np.array_equal(sitk.GetArrayFromImage(plain.probability), sitk.GetArrayFromImage(mirrored.probability))
    # a two-member ensemble's main weights; its thick-slice weights are one file, in the same network_io
    members = [{"weights": "model.safetensors", "sha256": thick.card.sha256},
               {"weights": "fold_1.safetensors", "sha256": thick.card.sha256}]
    ensemble = _copy(thick, tmp_path / "ensemble", ensemble=members)
    shutil.copy(ensemble.folder / "model.safetensors", ensemble.folder / "fold_1.safetensors")
    thin = _run(ensemble, _scan(tmp_path / "thin.nii.gz", 1.0)).provenance["model"]["weights_run"]
    assert thin["variant"] == MAIN and [f["file"] for f in thin["files"]] == ["model.safetensors", "fold_1.safetensors"]
    got = _run(ensemble, scan)
    assert got.provenance["model"]["weights_run"]["file"] == "model_thick.safetensors"
    assert np.allclose(sitk.GetArrayFromImage(got.probability), sitk.GetArrayFromImage(plain.probability), atol=1e-6)


def test_thick_scans_get_deepbets_256_cube(packages, tmp_path, monkeypatch):
    """Scans the thick-slice weights run are skull-stripped on deepbet's 256^3 cube (what those
    weights and their scorer were measured with), thin scans on the default cube; run.json says
    which. deepbet itself is replaced by a recorder (its network is not what is tested here)."""
    from BrainMetSegLib import skullstrip

    asked = []

    def recorder(array, *args, grid=skullstrip.DEEPBET_GRID, info=None, **kwargs):
        asked.append(grid)
        if info is not None:
            info["deepbet_grid"] = grid
        return np.asarray(array) > np.percentile(array, 40)

    monkeypatch.setattr(skullstrip, "deepbet_mask", recorder)
    _, thick = packages
    for name, slice_mm, grid in (("thin", 1.0, skullstrip.DEEPBET_GRID),
                                 ("thick", 3.0, skullstrip.DEEPBET_GRID_THICK)):
        result = _run(thick, _scan(tmp_path / f"{name}.nii.gz", slice_mm), brain_mask="deepbet")
        assert asked[-1] == grid and result.provenance["brain_mask_run"]["deepbet_grid"] == grid
    assert skullstrip.DEEPBET_GRID_THICK == 256 and skullstrip.DEEPBET_GRID == 224
