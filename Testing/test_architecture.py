"""The library's layers hold: no import cycle, and no import from a lower layer to a higher one.

Read from the source with ``ast`` (nothing is imported or run). Every import of a library
module counts, wherever it is written: at module level, inside a function (a lazy import
defers the cost of loading, it does not remove the dependency; a cycle it hides still
breaks the moment the order of first calls changes) and under ``if TYPE_CHECKING:`` (an
annotation names what the module depends on). So the checked graph is the design's, not
only the one Python builds at start-up.

The layers are ARCHITECTURE.md's data flow (files -> preprocess -> inference -> postprocess
-> outputs), then what is built on it (pipeline, the applications, the Slicer bridge, the
scene layer, the front ends, the commands). A module may import its own layer or lower ones.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "BrainMetSegLib"
SLICER_MODULE = REPO / "BrainMetSeg" / "BrainMetSeg.py"

# Bottom to top. A name stands for that module and, unless a longer name is listed, for every
# module below it (``evaluate`` covers ``evaluate.report``). "" is the package's __init__.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("", "errors", "options", "sequences", "progress", "resources")),
    # what reads, checks and writes files (io.py's successors: images, staging, textfiles,
    # checksums, stderr_capture, folder_staging)
    ("files", ("images", "staging", "folder_staging", "textfiles", "checksums", "stderr_capture", "filecheck",
               "dicom_series", "records", "run_record", "geometry", "acquisition",
               # leaf helpers the layers above share (issue 28: reports' figures and CSS, and
               # the lesions' names, colours and table columns moved out of slicer_bridge)
               "plotting", "html_report", "lesion_vocabulary",
               # what runs a network's forward (torch or OpenVINO, its cached export): deepbet
               # (preprocess) and the model (inference) share it
               "backends", "openvino_backend")),
    ("preprocess", ("preprocess", "normalisation", "skullstrip", "skullstrip_grids", "stripped", "coregister",
                    "plausibility")),
    ("inference", ("inference", "precision", "memory", "architectures", "foreign_networks", "network_io",
                   "network_adapter")),
    ("postprocess", ("lesions", "image_edge", "operating_point", "candidates", "candidate_stage", "scorer")),
    ("model package", ("models", "card_check", "download")),
    ("outputs", ("outputs", "slicer_seg", "dicom")),
    ("pipeline", ("pipeline", "pipeline_types", "batch")),
    ("applications", ("evaluate", "longitudinal", "train", "importers", "synth")),
    ("Slicer bridge", ("slicer_bridge",)),
    ("scene", ("mrml",)),
    ("front ends", ("viewer", "BrainMetSeg")),  # BrainMetSeg: the Slicer module (BrainMetSeg/BrainMetSeg.py)
    ("commands", ("cli", "__main__", "commands")),
)
DEFAULT_LAYER = "files"  # a module nothing above names: a new leaf

# Imports that break the layers today, each with who removes it. Nothing may be added here:
# a new violation fails the test.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def module_name(path: Path, root: Path) -> str:
    """``BrainMetSegLib/evaluate/report.py`` -> ``evaluate.report`` (a package's __init__: its name)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool,
             modules: set[str]) -> list[str]:
    """Dotted names (relative to the package) an import statement refers to: ``from .pkg import
    name`` is the submodule ``pkg.name`` when it exists, else ``pkg``; other packages: none."""
    if isinstance(node, ast.Import):
        return [a.name[len(PACKAGE) + 1:] for a in node.names if a.name.split(".")[0] == PACKAGE]
    if node.level == 0:
        if (node.module or "").split(".")[0] != PACKAGE:
            return []
        base = (node.module or "")[len(PACKAGE) + 1:]
    else:
        here = importer.split(".") if importer else []
        here = here if is_package else here[:-1]  # the package the module is in
        here = here[: len(here) - (node.level - 1)]
        base = ".".join(here + ([node.module] if node.module else []))
    submodules = (".".join(p for p in (base, a.name) if p) for a in node.names)
    return [name if name in modules else base for name in submodules]


def imports_of(source: str, importer: str, is_package: bool, modules: set[str]) -> set[str]:
    """The library modules a module's source imports, anywhere in it (module level, functions,
    ``TYPE_CHECKING`` blocks)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for name in _targets(node, importer, is_package, modules):
                while name not in modules and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in modules and name != importer:
                    found.add(name)
    return found


def import_graph(root: Path, extra: Mapping[str, Path] = {}) -> dict[str, set[str]]:
    """module -> the library modules it imports, for every module under ``root`` (the package
    folder) and the ``extra`` files (name -> path, e.g. the Slicer module)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    graph = {name: imports_of(p.read_text(encoding="utf-8"), name, p.name == "__init__.py", modules)
             for name, p in files.items()}
    for name, path in extra.items():
        graph[name] = imports_of(path.read_text(encoding="utf-8"), name, False, modules)
    return graph


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def layer_lookup(layers=LAYERS, default: str = DEFAULT_LAYER) -> Callable[[str], tuple[int, str]]:
    """module -> (rank, layer name): the longest listed name that is the module or a package
    above it decides; a module under no listed name gets ``default``."""
    rank = {name: i for i, (name, _) in enumerate(layers)}
    owner = {module: name for name, modules in layers for module in modules}

    def layer_of(module: str) -> tuple[int, str]:
        parts = module.split(".") if module else [""]
        for n in range(len(parts), 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in owner:
                return rank[owner[prefix]], owner[prefix]
        return rank[default], default

    return layer_of


def upward_imports(graph: Mapping[str, Iterable[str]], layer_of) -> set[tuple[str, str]]:
    """(importer, imported) pairs where the imported module is in a higher layer."""
    return {(a, b) for a, targets in graph.items() for b in targets if layer_of(b)[0] > layer_of(a)[0]}


def _describe(edges, layer_of) -> str:
    return "\n".join(f"  {a} ({layer_of(a)[1]}) imports {b} ({layer_of(b)[1]})" for a, b in sorted(edges))


GRAPH = import_graph(REPO / PACKAGE, {"BrainMetSeg": SLICER_MODULE})


def test_the_graph_is_read():
    """The parser sees the imports that matter (so an empty graph cannot pass the checks)."""
    assert len(GRAPH) > 100
    assert "errors" in GRAPH["options"]
    assert "pipeline" in GRAPH["commands.segment"]  # from ..pipeline import ...
    assert "train.config" in GRAPH["train.run"]  # the steps import the recipe, not the loop
    assert "card_check" in GRAPH["models"]  # a lazy import (inside __post_init__)
    assert {"slicer_bridge", "options"} <= GRAPH["BrainMetSeg"]


def test_no_import_cycle():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles (modules that import each other, directly or not):\n" + "\n".join(
        "  " + " <-> ".join(c) for c in cycles)


def test_no_import_from_a_lower_layer_to_a_higher_one():
    layer_of = layer_lookup()
    new = upward_imports(GRAPH, layer_of) - KNOWN_VIOLATIONS
    assert not new, ("imports from a lower layer to a higher one (ARCHITECTURE.md; list a new module in "
                     "LAYERS of this test if its layer is not the default):\n" + _describe(new, layer_of))


def test_the_checks_catch_a_violation(tmp_path):
    """The checker itself: a synthetic package with a lazy cycle, an annotation-only import and
    a base module that imports the pipeline is refused on both counts."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "options.py").write_text("def f():\n    from .pipeline import run\n")
    (pkg / "pipeline.py").write_text("from .options import f\nfrom typing import TYPE_CHECKING\n"
                                     "if TYPE_CHECKING:\n    from .sub.leaf import T\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "leaf.py").write_text(f"import {PACKAGE}.errors\nfrom .. import options\n")
    (pkg / "errors.py").write_text("import os\n")
    graph = import_graph(pkg)
    assert graph["options"] == {"pipeline"} and graph["pipeline"] == {"options", "sub.leaf"}
    assert graph["sub.leaf"] == {"errors", "options"}
    assert find_cycles(graph) == [["options", "pipeline", "sub.leaf"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    layer_of = layer_lookup((("base", ("", "options", "errors")), ("pipeline", ("pipeline",)),
                             ("top", ("sub",))), default="base")
    assert layer_of("sub.leaf") == (2, "top") and layer_of("unlisted") == (0, "base")
    assert upward_imports(graph, layer_of) == {("options", "pipeline"), ("pipeline", "sub.leaf")}
    # the real table places a package's modules by the package and new leaves by default
    real = layer_lookup()
    assert real("evaluate.report")[1] == "applications" and real("some_new_leaf")[1] == DEFAULT_LAYER
    assert real("options")[0] < real("pipeline")[0] < real("mrml.results")[0] < real("commands.segment")[0]
