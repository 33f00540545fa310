"""Static checks of the Slicer module against Slicer's real API (no Slicer needed).

- BrainMetSeg/BrainMetSeg.py and scripted_tests/test_BrainMetSeg.py parse;
- they import nothing outside Slicer's Python environment and the library, and the
  module imports only the light part of the library at load time (no torch/MONAI);
- every ``slicer.util`` / ``sitkUtils`` / ``ScriptedLoadableModule`` /
  ``parameterNodeWrapper`` name they use exists in Slicer 5.10.0 and 5.12.3;
- MRML / Segmentations / Subject Hierarchy / Tables methods called on receivers of
  known type exist in those releases (inherited methods followed through ``parents``),
  every VTK-style method called anywhere exists in some listed class or in the short
  list of plain VTK / Qt / SimpleITK methods below, and every MRML class named in a
  string (``AddNewNodeByClass("vtkMRML...")``) exists.

The API name lists live in ``../shared/slicer_api/`` (or $BRAINMETSEG_SLICER_API);
the API checks skip themselves with a message when that folder is absent.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULE_FILE = REPO / "BrainMetSeg" / "BrainMetSeg.py"
SCRIPTED_TEST = REPO / "scripted_tests" / "test_BrainMetSeg.py"
FILES = (MODULE_FILE, SCRIPTED_TEST)
# The MRML scene layer runs on slicer-core 5.11 in the tests (test_mrml.py); the names it
# calls are checked against the Slicer releases users have.
MRML_FILES = tuple(sorted((REPO / "BrainMetSegLib" / "mrml").glob("*.py")))
API_DIR = Path(os.environ.get("BRAINMETSEG_SLICER_API", REPO.parent / "shared" / "slicer_api"))
VERSIONS = ("5.10.0", "5.12.3")

# Top-level packages available inside Slicer without pip (besides the standard library).
SLICER_ENVIRONMENT = {"slicer", "qt", "ctk", "vtk", "sitkUtils", "SimpleITK", "numpy", "PyTorchUtils",
                      "BrainMetSeg"}
# Library modules the Slicer module may import when it loads (before dependencies are installed).
LIGHT_LIBRARY = ("BrainMetSegLib.slicer_bridge", "BrainMetSegLib.models", "BrainMetSegLib.progress",
                 "BrainMetSegLib.operating_point", "BrainMetSegLib.options")
HEAVY = ("torch", "monai", "cc3d", "skimage", "scipy", "deepbet", "nibabel", "safetensors", "tqdm",
         "slicer", "qt", "vtk", "ctk")

# Receivers of known type, per file: name (or dotted name) -> MRML/VTK class.
TYPED = {
    MODULE_FILE: {
        "segmentation": "vtkMRMLSegmentationNode", "table": "vtkMRMLTableNode",
        "seg": "vtkSegmentation", "segment": "vtkSegment", "sourceVolume": "vtkMRMLScalarVolumeNode",
        "shNode": "vtkMRMLSubjectHierarchyNode",
        "storageNode": "vtkMRMLVolumeArchetypeStorageNode", "editorNode": "vtkMRMLSegmentEditorNode",
        "inputVolume": "vtkMRMLScalarVolumeNode", "referenceVolume": "vtkMRMLScalarVolumeNode",
        "probabilityNode": "vtkMRMLScalarVolumeNode", "labelNode": "vtkMRMLLabelMapVolumeNode",
        "displayNode": "vtkMRMLScalarVolumeDisplayNode", "volume": "vtkMRMLScalarVolumeNode",
    },
    SCRIPTED_TEST: {
        "segmentation": "vtkMRMLSegmentationNode", "table": "vtkMRMLTableNode",
        "probability": "vtkMRMLScalarVolumeNode", "seg": "vtkSegmentation", "first": "vtkSegment",
        "sh": "vtkMRMLSubjectHierarchyNode", "node": "vtkMRMLSliceNode", "sliceNode": "vtkMRMLSliceNode",
        "red": "vtkMRMLSliceNode", "self.volume": "vtkMRMLScalarVolumeNode", "scene": "vtkMRMLScene",
        "volumeNode": "vtkMRMLScalarVolumeNode", "editorNode": "vtkMRMLSegmentEditorNode",
    },
}
TYPED_MRML = {
    "segmentation": "vtkMRMLSegmentationNode", "seg": "vtkSegmentation", "table": "vtkMRMLTableNode",
    "scene": "vtkMRMLScene", "mrml_scene": "vtkMRMLScene", "logic": "vtkSlicerSegmentationsModuleLogic",
    "segment": "vtkSegment", "seg.GetSegment(segment_id)": "vtkSegment", "node": "vtkMRMLNode",
    "volume": "vtkMRMLScalarVolumeNode", "input_volume": "vtkMRMLScalarVolumeNode",
    "reference_volume": "vtkMRMLScalarVolumeNode", "volume_node": "vtkMRMLScalarVolumeNode",
    "prob": "vtkMRMLScalarVolumeNode", "display": "vtkMRMLScalarVolumeDisplayNode",
    "sh": "vtkMRMLSubjectHierarchyNode", "transform_node": "vtkMRMLTransformNode",
    "frame": "vtkMRMLScalarVolumeNode", "editor": "vtkMRMLSegmentEditorNode",
    "storage": "vtkMRMLVolumeArchetypeStorageNode", "default": "vtkMRMLSliceNode",
    "nodes.segmentation": "vtkMRMLSegmentationNode", "nodes.table": "vtkMRMLTableNode",
    "nodes.probability": "vtkMRMLScalarVolumeNode", "segmentation.GetSegmentation()": "vtkSegmentation",
    "merged": "vtkOrientedImageData", "slice_node": "vtkMRMLSliceNode", "image": "vtkOrientedImageData",
    "segmentation_display": "vtkMRMLSegmentationDisplayNode", "old": "vtkSegmentation",
    "fresh": "vtkSegmentation",
}
STATIC_RECEIVERS = {
    "slicer.mrmlScene": "vtkMRMLScene",
    "slicer.vtkMRMLSliceNode": "vtkMRMLSliceNode",
    "slicer.vtkMRMLSubjectHierarchyNode": "vtkMRMLSubjectHierarchyNode",
    "slicer.modules.segmentations.logic()": "vtkSlicerSegmentationsModuleLogic",
}
# VTK-style (CamelCase) methods of classes outside the lists: vtkObject, vtkStringArray /
# vtkDataArray, vtkMatrix4x4, vtkImageData, SimpleITK.Image, and the SimpleITK functions.
PLAIN_VTK_QT_SITK = {
    "UnRegister", "Register", "Modified", "SetName", "GetName", "InsertNextValue", "GetValue",
    "GetNumberOfValues", "GetElement", "GetDimensions", "GetSize", "GetSpacing", "ReadImage",
    "CopyInformation", "SetElement", "GetPointData", "GetScalars", "SetScalars", "SetDimensions",
    "GetDirection", "SetDirection", "SetSpacing", "SetOrigin", "GetOrigin", "GetMTime", "IsA",
    "GetClassName", "GetAddressAsString", "TransformPoint", "GetColumn", "GetColumnByName",
    # vtkImageData; vtkMRMLAbstractLogic (the lists stop at vtkSlicerModuleLogic)
    "GetExtent", "SetMRMLScene", "GetMRMLScene",
    "GetInverse",  # SimpleITK Transform (the scene layer turns a registration into a transform node)
}


def _dotted(node: ast.AST) -> str | None:
    """'a.b.c' for Name/Attribute chains, 'a.b()' for a call at the end of a chain."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Call) and not node.args and not node.keywords:
        base = _dotted(node.func)
        return f"{base}()" if base else None
    return None


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(tree: ast.Module):
    """(module, imported names, at module level?, inside a try?) for every absolute import."""
    def visit(node, top, guarded):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), top, guarded
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module, tuple(a.name for a in node.names), top, guarded
        is_scope = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, top and not is_scope,
                             guarded or (isinstance(node, ast.Try) and child in node.body))

    for node in tree.body:
        yield from visit(node, True, False)


def _module_aliases(tree: ast.Module) -> set[str]:
    """Names bound by imports (modules, classes, functions: ``qt``, ``bridge``, ``sitkUtils``...);
    calls on them construct objects or call functions, they are not MRML instance methods."""
    names = {"self.module"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names |= {a.asname or a.name for a in node.names}
    return names


def _api(version: str) -> dict:
    path = API_DIR / f"slicer-v{version}.json"
    if not path.is_file():
        pytest.skip(f"Slicer API name list {path} not found (set BRAINMETSEG_SLICER_API to the folder "
                    "holding slicer-v5.10.0.json and slicer-v5.12.3.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def _python_names(api: dict, file_suffix: str) -> set[str]:
    names = set()
    for key, entry in api["python"].items():
        if key.endswith(file_suffix):
            names |= set(entry.get("functions", [])) | set(entry.get("classes", {}))
    return names


def _has_method(api: dict, cls: str, method: str) -> bool:
    seen = set()
    while cls and cls not in seen:
        seen.add(cls)
        if method in api["cxx"].get(cls, ()):
            return True
        cls = api["parents"].get(cls)
    return False


# ---------------------------------------------------------------- parse and imports


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_parses_and_imports_only_slicer_environment(path):
    tree = _tree(path)
    stdlib = set(sys.stdlib_module_names)
    for module, names, _, guarded in _imports(tree):
        top = module.split(".")[0]
        assert top in stdlib or top in SLICER_ENVIRONMENT or top == "BrainMetSegLib", (
            f"{path.name} imports {module}, which is not in Slicer's Python environment")
        if top == "BrainMetSegLib" and not guarded:
            assert importlib.util.find_spec(module) is not None, f"{path.name}: no module {module}"
            for name in names:
                sub = f"{module}.{name}"
                is_package = importlib.util.find_spec(module).submodule_search_locations
                found = importlib.util.find_spec(sub) if is_package else None
                assert found is not None or hasattr(importlib.import_module(module), name), (
                    f"{path.name}: {module} has no {name}")


def test_module_loads_only_the_light_library():
    """At load time the module needs no pip package: torch, MONAI, cc3d... come later."""
    tree = _tree(MODULE_FILE)
    for module, names, at_top, _ in _imports(tree):
        if at_top and module.startswith("BrainMetSegLib"):
            full = {f"{module}.{n}" for n in names} if module == "BrainMetSegLib" else {module}
            assert full <= set(LIGHT_LIBRARY), f"module-level import of {full} is not light"
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in HEAVY)
    code = f"import sys; {block}; " + "; ".join(f"import {m}" for m in LIGHT_LIBRARY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- Slicer Python API names


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_slicer_python_names_exist(path, version):
    api = _api(version)
    util = _python_names(api, "slicer/util.py")
    sitk_utils = _python_names(api, "sitkUtils.py")
    slm = _python_names(api, "ScriptedLoadableModule.py")
    pnw = set()  # parameterNodeWrapper names are spread over its files
    for key, entry in api["python"].items():
        if "parameterNodeWrapper" in key:
            pnw |= set(entry.get("functions", [])) | set(entry.get("classes", {}))
    tree = _tree(path)
    tables = {"slicer.util": util, "sitkUtils": sitk_utils, "slicer.ScriptedLoadableModule": slm}
    for node in ast.walk(tree):  # import slicer.ScriptedLoadableModule as slm
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in tables:
                    tables[a.asname] = tables[a.name]
    used = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node.value)
            if dotted in tables:
                used.append((dotted, node.attr, tables[dotted]))
    for module, names, _, _ in _imports(tree):
        table = {"slicer.util": util, "slicer.ScriptedLoadableModule": slm,
                 "slicer.parameterNodeWrapper": pnw}.get(module)
        if table is not None:
            used += [(module, n, table) for n in names if n != "*"]
    assert any(m == "slicer.util" for m, _, _ in used)
    missing = sorted({f"{m}.{n}" for m, n, table in used if n not in table})
    assert not missing, f"{path.name}: not in Slicer {version}: {missing}"


# ---------------------------------------------------------------- MRML methods


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MRML_FILES, ids=lambda p: p.name)
def test_scene_layer_methods_exist(path, version):
    """Every VTK-style call of BrainMetSegLib/mrml exists in Slicer 5.10 and 5.12 (the class of
    the receiver when it is known, else some class), not only in the slicer-core 5.11 wheel."""
    api = _api(version)
    all_methods = set().union(*api["cxx"].values())
    tree = _tree(path)
    modules = _module_aliases(tree) | {"bridge", "results", "scene", "volumes"}
    problems = []
    for receiver, method, _ in _method_calls(tree):
        if not method[:1].isupper() or receiver in modules:
            continue
        cls = TYPED_MRML.get(receiver)
        known = _has_method(api, cls, method) if cls else method in all_methods
        if not known and method not in PLAIN_VTK_QT_SITK:
            problems.append(f"{receiver}.{method} ({cls or 'any class'})")
    assert not problems, f"{path.name}: not in Slicer {version}: {sorted(set(problems))}"



def _method_calls(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield _dotted(node.func.value), node.func.attr, node


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_mrml_methods_exist(path, version):
    api = _api(version)
    typed = {**TYPED[path], **STATIC_RECEIVERS}
    all_methods = set().union(*api["cxx"].values())
    tree = _tree(path)
    modules = _module_aliases(tree) | {"slicer.util"}
    problems, checked = [], 0
    for receiver, method, _ in _method_calls(tree):
        if not method[:1].isupper() or receiver in modules:
            continue  # Python-style names, or a class/function of an imported module
        cls = typed.get(receiver)
        if cls is not None:
            checked += 1
            if not _has_method(api, cls, method) and method not in PLAIN_VTK_QT_SITK:
                problems.append(f"{receiver}.{method} ({cls})")
        elif method not in all_methods and method not in PLAIN_VTK_QT_SITK:
            problems.append(f"{receiver}.{method} (in no listed class)")
    # the module delegates scene work to BrainMetSegLib.mrml: only a few MRML calls are left there
    assert checked >= (2 if path == MODULE_FILE else 10), "typed receivers matched too few calls: update TYPED"
    assert not problems, f"{path.name}: not in Slicer {version}: {sorted(set(problems))}"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_mrml_class_names_in_strings_exist(path, version):
    api = _api(version)
    known = set(api["cxx"]) | {"vtkMRMLScalarVolumeNode"}
    names = {node.value for node in ast.walk(_tree(path))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and node.value.startswith("vtkMRML") and node.value.endswith("Node")}
    assert names, "no MRML class names found"
    assert names <= known, f"unknown MRML classes: {sorted(names - known)}"


def test_ui_parameter_names_match_parameter_node():
    """Every SlicerParameterName in the .ui is a field of the parameter node, and back."""
    import xml.etree.ElementTree as ET

    ui = ET.parse(REPO / "BrainMetSeg" / "Resources" / "UI" / "BrainMetSeg.ui")
    bound = {p.find("string").text for p in ui.iter("property") if p.get("name") == "SlicerParameterName"}
    tree = _tree(MODULE_FILE)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BrainMetSegParameterNode")
    fields = {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}
    assert bound <= fields, f"unknown parameters in the .ui: {bound - fields}"
    assert fields - bound == {"model"}, "every parameter except the model (set by code) has a widget"
    widgets = {w.get("name") for w in ui.iter("widget")}
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"}
    assert used <= widgets, f"self.ui.<name> not in the .ui: {used - widgets}"


# ---------------------------------------------------------------- extension packaging


def _cmake_set(text: str, name: str) -> str:
    import re

    m = re.search(rf'set\({name}\s+(.*?)\)\s*(#.*)?$', text, re.M)
    assert m, f"CMakeLists.txt does not set {name}"
    return m.group(1).strip()


def test_extension_cmake_and_index_entry():
    top = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    for name in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
                 "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
                 "EXTENSION_DEPENDS"):
        assert _cmake_set(top, name)
    assert _cmake_set(top, "EXTENSION_CATEGORY") == '"Segmentation"'
    assert _cmake_set(top, "EXTENSION_DEPENDS") == '"PyTorch"'
    for name in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):  # URLs into this repo name real files
        for url in _cmake_set(top, name).strip('"').split():
            path = url.split("/main/", 1)[1] if "/main/" in url else None
            assert path is None or (REPO / path).is_file(), f"{name}: {url} names a missing file"
    for needed in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                   "add_subdirectory(BrainMetSeg)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                   "include(${Slicer_EXTENSION_CPACK})", "BrainMetSegLib/*.py", "Resources/Models/*",
                   "slicer_add_python_unittest", "scripted_tests/test_BrainMetSeg.py"):
        assert needed in top, needed
    module = (REPO / "BrainMetSeg" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicerMacroBuildScriptedModule" in module and "WITH_GENERIC_TESTS" in module
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module
    for rel in ("BrainMetSeg.py", "Resources/Icons/BrainMetSeg.png", "Resources/UI/BrainMetSeg.ui"):
        assert (REPO / "BrainMetSeg" / rel).is_file(), rel
    from PIL import Image

    with Image.open(REPO / "BrainMetSeg" / "Resources" / "Icons" / "BrainMetSeg.png") as icon:
        assert icon.size == (128, 128)
    # what the installed extension needs beside BrainMetSegLib/: the model registry and packages
    from BrainMetSegLib import models

    assert models.REGISTRY_FILE == REPO / "Resources" / "Models.json"
    for entry in models.read_registry():
        if "path" in entry:
            assert (models.REGISTRY_FILE.parent / entry["path"] / "model.json").is_file()

    entry = json.loads((REPO / "BrainMetSeg.json").read_text(encoding="utf-8"))
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "build_subdirectory", "enabled", "tier"}  # schema v1.0.1, additionalProperties false
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert "slicer-extension-catalog-entry-schema" in entry["$schema"]
    assert entry["category"] == "Segmentation"
    assert entry["build_dependencies"] == ["PyTorch"]
    assert 1 <= entry["tier"] <= 5
    assert _cmake_set(top, "EXTENSION_HOMEPAGE").strip('"') == entry["scm_url"]
