"""Downloading a registry model: ``brainmetseg models --download NAME``.

A downloadable registry entry is ``{"name", "url", "sha256"}``: the URL of a zip archive
of the model package (``model.json`` and its weights, at the archive's root or in one
top folder) and the archive's sha256. The archive is streamed to a temporary file in the
cache, checked against that sha256, unpacked into a temporary folder (no member may
leave it), checked as a package (card; every weights file, the thick-slice ones and int8 networks too: sha256
from the card, loaded into the architecture), and only then renamed to
:func:`~BrainMetSegLib.models.cache_folder`. Nothing downloads on its own:
segmenting with a model that is not downloaded is an error naming this command.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from .errors import ModelError
from .models import (
    CARD_NAME,
    REGISTRY_FILE,
    ModelPackage,
    cache_folder,
    load_package,
    registry_entry,
)
from .thick_weights import package_variants


def _fetch(url: str, target: Path) -> str:
    """Stream ``url`` into ``target``; the sha256 of what arrived."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as fh:
            while block := response.read(1 << 20):
                digest.update(block)
                fh.write(block)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ModelError(f"{url}: download failed ({getattr(exc, 'reason', exc)}).") from None
    return digest.hexdigest()


def _unpack(archive: Path, folder: Path, url: str) -> Path:
    """Unpack ``archive`` into ``folder``; the folder holding ``model.json``."""
    try:
        with zipfile.ZipFile(archive) as zf:
            root = folder.resolve()
            for member in zf.namelist():
                if root not in (root / member).resolve().parents and (root / member).resolve() != root:
                    raise ModelError(f"{url}: archive member {member!r} would land outside the model folder.")
            zf.extractall(folder)
    except zipfile.BadZipFile:
        raise ModelError(f"{url}: not a zip archive.") from None
    if (folder / CARD_NAME).is_file():
        return folder
    subdirs = [p for p in folder.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / CARD_NAME).is_file():
        return subdirs[0]
    raise ModelError(f"{url}: archive holds no {CARD_NAME} (at its root or in one top folder).")


def download_model(name: str, registry: Path = REGISTRY_FILE, overwrite: bool = False) -> ModelPackage:
    """Download registry model ``name`` into the cache and return its checked package."""
    entry = registry_entry(name, registry)
    if "path" in entry:
        raise ModelError(f"model {name!r} is bundled ({entry['path']}); nothing to download.")
    url, expected = entry.get("url"), str(entry.get("sha256", "")).lower()
    if not url or len(expected) != 64:
        raise ModelError(f"{registry}: entry {name!r} needs a url and the archive's sha256.")
    final = cache_folder(name)
    if (final / CARD_NAME).is_file() and not overwrite:
        return load_package(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
    try:
        archive = work / "package.zip"
        actual = _fetch(url, archive)
        if actual != expected:
            raise ModelError(f"{url}: sha256 {actual[:12]}... does not match the registry "
                             f"({expected[:12]}...); the download is damaged or was altered.")
        package = load_package(_unpack(archive, work / "unpacked", url))
        for variant in package_variants(package):  # every weights file, before anything is replaced
            package.load_network("cpu", variant)  # safetensors, sha256 from the card, fit the architecture
            if package.card.int8_network:
                package.int8_network(variant).check_files()
        if final.exists():
            shutil.rmtree(final)
        os.replace(package.folder, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return load_package(final)
