"""The built wheel carries the library, the bundled model, the registry and the sample, and a
non-editable install of it finds them (no source tree on the path)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _source_packages() -> set[str]:
    return {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "BrainMetSegLib").rglob("__init__.py")
            if "__pycache__" not in p.parts}


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    missing = _source_packages() - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    assert PYPROJECT["tool"]["setuptools"]["package-dir"]["BrainMetSegLib.Resources"] == "Resources"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the tree (pip builds in place; the checkout stays clean)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("BrainMetSegLib", "Resources"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(work / "dist"), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (whl,) = (work / "dist").glob("*.whl")
    return whl


def test_wheel_holds_the_library_model_registry_and_sample(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "BrainMetSegLib").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules - names == set()
    resources = {p.relative_to(ROOT / "Resources").as_posix() for p in (ROOT / "Resources").rglob("*")
                 if p.is_file()}
    assert {"Models.json", "Models/brainmetseg-demo/model.json", "Models/brainmetseg-demo/model.safetensors",
            "Sample/sample_ce_t1.nii.gz"} <= resources
    assert {f"BrainMetSegLib/Resources/{r}" for r in resources} - names == set()
    assert not any(n.startswith(("Resources/", "Testing/")) for n in names)


def test_installed_wheel_resolves_the_default_model_and_sample(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--target", str(target), str(wheel)], check=True, capture_output=True, timeout=600)
    probe = (
        "import json, BrainMetSegLib\n"
        "from BrainMetSegLib.models import load_package, verify_weights\n"
        "from BrainMetSegLib.resources import SAMPLE_CE_T1, REGISTRY_FILE\n"
        "p = load_package()\n"
        "verify_weights(p)\n"
        "print(json.dumps({'lib': BrainMetSegLib.__file__, 'model': str(p.folder), 'name': p.card.name,\n"
        "                  'registry': str(REGISTRY_FILE), 'sample': SAMPLE_CE_T1.is_file()}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    inside = str(target / "BrainMetSegLib")
    assert found["lib"].startswith(inside)  # the installed copy, not the checkout
    assert found["model"].startswith(inside) and found["registry"].startswith(inside)
    assert found["name"] == "brainmetseg-demo" and found["sample"]
