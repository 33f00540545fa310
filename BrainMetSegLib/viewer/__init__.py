"""``brainmetseg view``: review and correct a result folder in a web browser.

Slicer's own slice and 3D views (PyPI ``slicer-core`` through ``trame-slicer``) are
rendered on the server (offscreen, EGL / Mesa on a CPU-only machine) and streamed
to the browser. This package and ``BrainMetSegLib.mrml`` are the only parts of the
library that import ``slicer``, ``vtk`` or ``trame``; those imports happen inside the
modules that need them, so :mod:`.result` and :mod:`.review` (reading a result
folder, saving a reviewed version) work without the ``[web]`` extra.

- :mod:`.result`: a ``brainmetseg segment`` output folder (run.json, images, table);
- :mod:`.review`: Save -> a new reviewed version beside the originals, with its edits;
- :mod:`.session`: the review session on a Slicer scene (load, threshold, jump, edit,
  save), with :mod:`.lesion_rows` (the lesions as shown, read from the scene's nodes),
  :mod:`.editing` (the segment editor's tools) and :mod:`.display` (overlay, layers,
  views fitted);
- :mod:`.app`: the trame web application around a session (state and actions), with
  :mod:`.layout` (the four Slicer views), :mod:`.panel` (the page's widgets) and
  :mod:`.panel_text` (what the side panel shows, as text);
- :mod:`.render`: offscreen views and pixel read-back (tests, checks).
"""

WEB_EXTRA_HINT = 'pip install "BrainMetSegLib[web]"  (or: pip install "trame-slicer[standalone]==2.0.0")'


def missing_web_dependencies() -> list[str]:
    """Names of the ``[web]`` extra's modules that cannot be imported (empty when all are there)."""
    import importlib.util

    wanted = {"trame-slicer": "trame_slicer", "slicer-core": "slicer", "vtk": "vtkmodules"}
    missing = [name for name, module in wanted.items() if importlib.util.find_spec(module) is None]
    if "slicer-core" not in missing:
        # PyPI's unrelated ``slicer`` (0.0.x, a dependency of shap) installs a ``slicer``
        # module too; slicer-core is the one with MRML.
        import importlib

        try:
            importlib.import_module("slicer").vtkMRMLScene  # noqa: B018
        except (ImportError, AttributeError):
            missing.append("slicer-core")
    return missing
