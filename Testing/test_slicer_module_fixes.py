"""The Slicer module's bugs found on real MRML (issue 10), where they live in Qt code: the
decisions now sit in pure Python (slicer_bridge) or the scene layer and are tested here or
in test_mrml.py; the module's calls into them are checked on its syntax tree.

1. default operating point = the model card's   -> test_gui_starts_at_the_cards_operating_point
2. jump under parent transforms                  -> test_mrml.test_jump_maps_centroid_through_parent_transforms
3. display / colour nodes leaked                 -> test_mrml.test_no_node_left_behind
4. scripted test: GetTag(1 arg), slice nodes     -> test_scripted_test_uses_existing_slicer_api
5. slider re-thresholds on programmatic changes,
   per-lesion marching cubes on the GUI thread   -> test_slider_change_goes_through_rethreshold_action,
                                                    test_mrml.test_slider_changes_never_replace_edited_segments_silently,
                                                    test_lesion_measure
6. modelCard re-implements the registry lookup
   and swallows every exception                  -> test_model_card_uses_the_registry_and_raises
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from BrainMetSegLib import models
from BrainMetSegLib import slicer_bridge as bridge
from BrainMetSegLib.errors import ModelError
from BrainMetSegLib.operating_point import OperatingPoint, follow

REPO = Path(__file__).resolve().parent.parent
MODULE = ast.parse((REPO / "BrainMetSeg" / "BrainMetSeg.py").read_text(encoding="utf-8"))
SCRIPTED = ast.parse((REPO / "scripted_tests" / "test_BrainMetSeg.py").read_text(encoding="utf-8"))


def function(tree: ast.AST, name: str) -> ast.FunctionDef:
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def calls(node: ast.AST) -> list[str]:
    return [n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
            for n in ast.walk(node) if isinstance(n, ast.Call)]


def test_gui_starts_at_the_cards_operating_point():
    card = bridge.model_card(models.DEFAULT_MODEL)
    point = bridge.card_operating_point(card)
    assert (point.threshold, point.min_volume_mm3) == (card["threshold"], card["min_lesion_volume_mm3"])
    assert point.outline_threshold == card.get("outline_threshold")  # None: outlined at the detection
    assert point != OperatingPoint(0.5)  # the demo model's own, not the defaults
    outlined = bridge.card_operating_point({**card, "threshold": 0.9, "outline_threshold": 0.4})
    assert outlined == OperatingPoint(0.9, card["min_lesion_volume_mm3"], 0.4)
    # a new scene (no model yet) gets the default model through setModel, which applies the card
    assert "setModel" in calls(function(MODULE, "initializeParameterNode"))
    assert "card_operating_point" in calls(function(MODULE, "setModel"))


def test_run_operating_point_is_read_from_run_json(tmp_path):
    run_json = tmp_path / "run.json"
    run_json.write_text('{"case": "c", "outputs": {}, "settings": {"threshold_used": 0.8, "min_volume_mm3_used": 10}}')
    assert bridge.run_operating_point(run_json) == OperatingPoint(0.8, 10.0)  # a run before outlines
    run_json.write_text('{"case": "c", "outputs": {}, "settings": {"threshold_used": 0.8, "min_volume_mm3_used": 10, '
                        '"outline_threshold_used": 0.4}}')
    assert bridge.run_operating_point(run_json) == OperatingPoint(0.8, 10.0, 0.4)
    run_json.write_text('{"case": "c", "outputs": {}, "settings": {}}')
    with pytest.raises(ValueError, match=re.escape(str(run_json))):
        bridge.run_operating_point(run_json)


def test_model_card_uses_the_registry_and_raises(tmp_path):
    assert bridge.model_card(models.DEFAULT_MODEL) == models.load_package(models.DEFAULT_MODEL).card.to_dict()
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        bridge.model_card("nope")
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        bridge.model_card(tmp_path)
    # the module has no registry lookup of its own and catches only ModelError, to show it
    assert "read_registry" not in calls(function(MODULE, "modelDescription"))
    handlers = [h for h in ast.walk(MODULE) if isinstance(h, ast.ExceptHandler)]
    caught = {ast.unparse(h.type) for h in handlers if h.type is not None}
    assert "Exception" not in caught and all(h.type is not None for h in handlers), caught


def test_slider_change_goes_through_rethreshold_action():
    # a slider change only (re)starts the timer; what happens when it fires is the scene layer's call
    assert "start" in calls(function(MODULE, "onThresholdEdited"))
    assert "rethreshold" not in calls(function(MODULE, "onThresholdEdited"))
    assert "rethresholdAction" in calls(function(MODULE, "onRethreshold"))
    assert "rethreshold_action" in calls(function(MODULE, "rethresholdAction"))


def test_gui_carries_the_full_operating_point():
    """Two thresholds in the GUI (detection, outline), live: both sliders re-threshold, the
    other one follows (operating_point.follow) so outline <= detection, every value reaches
    the scene layer and the CLI as one OperatingPoint, and the card sets all three."""
    parameters = next(n for n in ast.walk(MODULE) if isinstance(n, ast.ClassDef)
                      and n.name == "BrainMetSegParameterNode")
    fields = {n.target.id: ast.unparse(n.annotation) for n in parameters.body if isinstance(n, ast.AnnAssign)}
    for name in ("threshold", "outlineThreshold"):
        assert fields[name] == "Annotated[float, WithinRange(*SLIDER_RANGE)]", name  # one home for the range
    setup = ast.unparse(function(MODULE, "setup"))
    for widget, moved in (("thresholdSliderWidget", "'detection'"), ("outlineThresholdSliderWidget", "'outline'"),
                          ("minLesionVolumeSpinBox", "None")):
        assert f"(self.ui.{widget}, {moved})" in setup, widget
    assert "widget.connect('valueChanged(double)', lambda value, moved=moved: self.onThresholdEdited(moved))" in setup
    assert "_follow" in ast.unparse(function(MODULE, "onThresholdEdited"))
    assert "follow" in calls(function(MODULE, "_follow"))
    on_rethreshold = ast.unparse(function(MODULE, "onRethreshold"))
    assert "OperatingPoint(p.threshold, p.minLesionVolume, p.outlineThreshold)" in on_rethreshold
    assert "(made.threshold, made.min_volume_mm3, made.outline)" in on_rethreshold  # cancel: back to the segments
    assert "OperatingPoint" in calls(function(MODULE, "rethreshold"))
    set_model = ast.unparse(function(MODULE, "setModel"))
    assert "outlineThreshold" in set_model and "card_operating_point" in set_model
    assert "outline_threshold" in ast.unparse(function(MODULE, "_options"))
    # the rule the sliders follow
    assert follow(0.9, 0.4, "detection") == (0.9, 0.4)
    assert follow(0.3, 0.4, "detection") == (0.3, 0.3)  # outline taken down
    assert follow(0.9, 0.95, "outline") == (0.95, 0.95)  # detection taken up
    assert follow(0.9, 0.2, "outline") == (0.9, 0.2)


def test_scripted_test_uses_existing_slicer_api():
    for node in ast.walk(SCRIPTED):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "GetTag":
                assert len(node.args) == 2, "vtkSegment.GetTag(name, value) takes two arguments"
            assert node.func.attr != "vtkMRMLSliceNode", "slice nodes come from the scene (presets)"
    assert "slice_nodes" in calls(SCRIPTED)


def test_ensure_dependencies_asks_once_pins_and_reports(tmp_path):
    names = [*bridge.PROTECTED, *(r.distribution for r in bridge.REQUIREMENTS)]
    complete = {n: "99" for n in names}
    complete["torch"] = "2.5.0"

    def fake(installed):
        return lambda wanted: {n: installed.get(n) for n in wanted}

    asked, pip = [], []
    assert bridge.ensure_dependencies(asked.append, None, pip.append, None, fake(complete))
    assert asked == [] and pip == []  # nothing missing: no question, no install
    state = {**complete, "monai": None}

    def pip_install(args):
        pip.append(args)
        state["monai"] = "1.5"

    def temp_dir():
        return str(tmp_path)

    assert bridge.ensure_dependencies(lambda items: asked.append(items) or True, None, pip_install,
                                      temp_dir, fake(state))
    assert asked == [["monai>=1.4"]] and pip[0][0] == "monai>=1.4" and "-c" in pip[0]
    constraints = (tmp_path / "constraints.txt").read_text()
    assert "torch==2.5.0" in constraints and "SimpleITK==99" in constraints  # Slicer's own pinned
    state["monai"] = None
    assert not bridge.ensure_dependencies(lambda items: False, None, pip_install, temp_dir, fake(state))
    with pytest.raises(RuntimeError, match="older than"):
        bridge.ensure_dependencies(lambda items: True, None, pip_install, temp_dir,
                                   fake({**complete, "torch": "1.13.0"}))
    with pytest.raises(RuntimeError, match="could not be installed"):
        bridge.ensure_dependencies(lambda items: True, None, lambda args: None, temp_dir, fake(state))


def cmake_glob(variable: str) -> list[Path]:
    """Files selected by ``file(GLOB_RECURSE <variable> ...)`` in the top CMakeLists.txt."""
    import re

    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    block = re.search(rf"file\(GLOB_RECURSE {variable}(.*?)\)", text, re.S).group(1)
    patterns = [p.replace("${CMAKE_CURRENT_SOURCE_DIR}/", "") for p in block.split()
                if p.startswith("${CMAKE_CURRENT_SOURCE_DIR}/")]
    files = [f for f in REPO.rglob("*") if f.is_file() and ".git" not in f.parts]
    # GLOB_RECURSE: "*" in the last component matches files in every subfolder too
    return sorted({f for f in files for p in patterns
                   if f.relative_to(REPO).as_posix() == p
                   or (p.endswith("/*") and f.relative_to(REPO).as_posix().startswith(p[:-1]))})


def test_extension_package_carries_the_models_not_the_sample():
    shipped = {f.relative_to(REPO).as_posix() for f in cmake_glob("BrainMetSegLib_RESOURCES")}
    assert "Resources/Models.json" in shipped
    for entry in models.read_registry():
        if "path" in entry:  # bundled: the default model must work offline after install
            folder = models.REGISTRY_FILE.parent / entry["path"]
            assert {f"Resources/{entry['path']}/{f.name}" for f in folder.iterdir()} <= shipped
    assert not any(f.startswith("Resources/Sample/") for f in shipped)
    size_mb = sum((REPO / f).stat().st_size for f in shipped) / 2**20
    print(f"Extension resources: {len(shipped)} files, {size_mb:.1f} MB")
    assert size_mb < 30


def test_tests_inside_slicer_never_install_packages():
    """ctest on extension build machines must not pip-install: the scripted test and the
    module's built-in test skip when dependencies are missing instead."""
    test_class = next(n for n in MODULE.body if isinstance(n, ast.ClassDef) and n.name == "BrainMetSegTest")
    for tree in (SCRIPTED, test_class):
        names = calls(tree)
        assert "ensureDependencies" not in names and "pip_install" not in names
        assert "skipTest" in names
    # the scripted test decides in setUp, before any process() call could reach the installer
    assert "missingDependencies" in calls(function(SCRIPTED, "setUp"))


def test_module_is_glue():
    """The module keeps Qt, dialogs and dependency installation; the scene work is in
    BrainMetSegLib.mrml (the module has no sitkUtils and no MRML node creation of its own)."""
    source = (REPO / "BrainMetSeg" / "BrainMetSeg.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) < 615  # 600 before the operating point had a third value (outline)
    assert "sitkUtils" not in source and "AddNewNodeByClass" not in source
    assert "ImportLabelmapToSegmentationNode" not in source and "ExportSegmentsToLabelmapNode" not in source
