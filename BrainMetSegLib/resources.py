"""Where the bundled resources are: the model registry, the bundled model packages, the sample.

The repository keeps them in the top-level ``Resources/`` folder (the Slicer extension's
layout, installed beside ``BrainMetSegLib/`` by CMake). A wheel or a non-editable
``pip install .`` carries the same folder inside the package as ``BrainMetSegLib/Resources``
(pyproject.toml maps the package ``BrainMetSegLib.Resources`` onto ``Resources/``), so both
places are looked at, the package's own first.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find() -> Path:
    for folder in (_PACKAGE / "Resources", _PACKAGE.parent / "Resources"):  # installed; checkout/Slicer
        if (folder / "Models.json").is_file():
            return folder
    return _PACKAGE.parent / "Resources"  # nothing bundled: the registry then reads as empty


RESOURCES_DIR = _find()
REGISTRY_FILE = RESOURCES_DIR / "Models.json"
SAMPLE_CE_T1 = RESOURCES_DIR / "Sample" / "sample_ce_t1.nii.gz"


def user_cache_root() -> Path:
    """The user's cache folder (downloaded models, exported networks): ``$BRAINMETSEG_CACHE``,
    default ``~/.cache/brainmetseg``. Read at each call, so a changed environment is followed."""
    return Path(os.environ.get("BRAINMETSEG_CACHE") or Path.home() / ".cache" / "brainmetseg")


if __name__ == "__main__":  # python -m BrainMetSegLib.resources: where they are
    print(f"resources: {RESOURCES_DIR}\nregistry:  {REGISTRY_FILE}\nsample:    {SAMPLE_CE_T1}")
