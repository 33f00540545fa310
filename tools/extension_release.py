"""Assemble the Slicer extension release tree (what is pushed to SlicerBrainMetSeg).

    python tools/extension_release.py extension -o DIR   # the source tree the index builds
    python tools/extension_release.py assets -o DIR      # the files to upload as release assets

The tree holds the module (BrainMetSeg/), the library (BrainMetSegLib/), the scripted tests,
the CMake files, the model registry and cards, LICENSE, the license table, the description
file, a README, and the icon and screenshots that CMakeLists.txt's EXTENSION_ICONURL /
EXTENSION_SCREENSHOTURLS name. It holds no model weights and no sample image: those are
listed with their URL and sha256 in CMake/BrainMetSegDownloads.cmake, generated here from
the registry (Resources/Models.json: ``weights_urls`` of each bundled model, the ``sample``
files with URL and sha256) and the model cards (each weight file's sha256), and CMake
downloads and checks them at build time (CMake/BrainMetSegDownload.cmake). So the tree
stays small however many model versions this repository accumulates.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's library, not an installed one

from BrainMetSegLib.errors import BrainMetSegError, ModelError  # noqa: E402
from BrainMetSegLib.models import load_package  # noqa: E402

# Copied whole (files; folders recursively, without caches and dotfiles).
TREE_PARTS = ("CMakeLists.txt", "CMake/BrainMetSegDownload.cmake", "LICENSE", "BrainMetSeg.json",
              "BrainMetSeg", "BrainMetSegLib", "scripted_tests", "docs/licenses.md",
              "Resources/Models.json", "Resources/Models", "Resources/Sample")
DOWNLOADS_CMAKE = "CMake/BrainMetSegDownloads.cmake"
DEVELOPMENT_REPOSITORY = "https://github.com/brainmetseg/BrainMetSeg"


@dataclass(frozen=True)
class Download:
    """A file the release tree gets by URL: ``path`` relative to Resources/ (POSIX)."""

    kind: str  # "model" (installed with the extension) or "sample"
    path: str
    url: str
    sha256: str


def cmake_urls(cmakelists: str, variable: str) -> list[str]:
    """The URLs that ``set(<variable> "url url ...")`` gives in a CMakeLists text."""
    m = re.search(rf'set\s*\(\s*{variable}\s+"([^"]*)"\s*\)', cmakelists, re.I)
    return m.group(1).split() if m else []


def raw_url_path(url: str, scm_url: str) -> str | None:
    """The tree path a raw.githubusercontent.com URL of the ``scm_url`` repository names
    (``https://raw.githubusercontent.com/<owner>/<repo>/<ref>/<path>``); None otherwise."""
    owner_repo = urlsplit(scm_url).path.strip("/").removesuffix(".git")
    parts = urlsplit(url)
    prefix = f"/{owner_repo}/"
    if parts.netloc != "raw.githubusercontent.com" or not parts.path.startswith(prefix):
        return None
    rest = parts.path[len(prefix):].split("/", 1)  # <ref>/<path>
    return rest[1] if len(rest) == 2 and rest[1] else None


def image_paths(repo: Path) -> list[str]:
    """Repository paths of the icon and screenshots CMakeLists.txt names; error for a URL that
    is not a raw URL of the description's scm_url or names a missing file."""
    cmake = (repo / "CMakeLists.txt").read_text(encoding="utf-8")
    scm_url = json.loads((repo / "BrainMetSeg.json").read_text(encoding="utf-8"))["scm_url"]
    out = []
    for variable in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        for url in cmake_urls(cmake, variable):
            path = raw_url_path(url, scm_url)
            if path is None or not (repo / path).is_file():
                raise BrainMetSegError(f"CMakeLists.txt: {variable} {url} is not a file of {scm_url} "
                                       "in this checkout.")
            out.append(path)
    return out


def downloads(repo: Path) -> list[Download]:
    """Every file the release tree gets by URL, from the registry and the model cards."""
    registry_file = repo / "Resources" / "Models.json"
    registry = json.loads(registry_file.read_text(encoding="utf-8"))
    out = []
    for entry in registry.get("models", []):
        if "path" not in entry:
            continue  # URL-only entries (older versions) stay URL-only: nothing to ship
        package = load_package(repo / "Resources" / entry["path"])
        urls = entry.get("weights_urls", {})
        for weights, sha256 in package.all_weight_files():  # thick-slice weights and int8 networks too
            name = weights.relative_to(package.folder.resolve()).as_posix()
            url = urls.get(name)
            if not url:
                raise ModelError(f"{registry_file}: model {entry['name']!r} has no weights_urls "
                                 f"entry for {name}; the release tree cannot get it.")
            tag = f"{package.card.name}-{package.card.version}"
            if tag not in url:
                raise ModelError(f"{registry_file}: weights URL {url} of {entry['name']!r} does not "
                                 f"name {tag}: is it the URL of another version?")
            out.append(Download("model", f"{entry['path']}/{name}", url, sha256.lower()))
    for item in registry.get("sample", []):
        out.append(Download("sample", item["file"], item["url"], item["sha256"].lower()))
    return out


def downloads_cmake(items: list[Download]) -> str:
    """The generated CMake list ``BrainMetSeg_DOWNLOADS`` (kind;path;url;sha256 quadruples)."""
    lines = ["# Generated by tools/extension_release.py from Resources/Models.json and the model",
             "# cards; read by CMake/BrainMetSegDownload.cmake. Do not edit: edit the registry.",
             "set(BrainMetSeg_DOWNLOADS"]
    lines += [f'  {d.kind} "{d.path}" "{d.url}" "{d.sha256}"' for d in items]
    return "\n".join(lines + ["  )", ""])


def _source_commit(repo: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def readme(repo: Path, items: list[Download]) -> str:
    """The release tree's README: what it is, where it comes from, what it downloads."""
    rows = "\n".join(f"| {d.kind} | `Resources/{d.path}` | {d.url} | `{d.sha256}` |" for d in items)
    return f"""# SlicerBrainMetSeg

3D Slicer extension BrainMetSeg: find, outline and measure brain metastases on contrast-enhanced
T1 MRI. Not a clinical tool. Licensed under the Apache License 2.0 (LICENSE); third-party terms
and the terms of the bundled model and sample: docs/licenses.md.

This tree is a release artifact, assembled by `tools/extension_release.py` from the development
repository ({DEVELOPMENT_REPOSITORY}, commit `{_source_commit(repo)}`). Make changes there, not here.

Model weights and the sample image are not in this tree. CMake downloads them when the extension
is configured and stops unless each file matches its sha256 (CMake/BrainMetSegDownload.cmake;
`-DBrainMetSeg_DOWNLOAD_MIRROR=<base URL>` fetches `<base URL>/<path>` instead; the sample only
with `-DBrainMetSeg_DOWNLOAD_SAMPLE=ON`):

| kind | path | URL | sha256 |
|---|---|---|---|
{rows}
"""


def _copy(repo: Path, part: str, dst: Path, skip: set[Path]) -> None:
    """Copy ``repo/part`` (a file, or a folder recursively) to ``dst/part``, leaving out
    ``skip``, caches and dotfiles."""
    src = repo / part
    for f in [src] if src.is_file() else sorted(src.rglob("*")):
        rel = f.relative_to(repo)
        if (not f.is_file() or f.resolve() in skip or "__pycache__" in rel.parts
                or f.suffix == ".pyc" or any(p.startswith(".") for p in rel.parts)):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst / rel)


def assemble(out: str | os.PathLike, repo: Path = REPO, overwrite: bool = False) -> Path:
    """Write the release tree to ``out`` (staged in a sibling temp folder, then renamed);
    refuses an existing ``out`` unless ``overwrite``, which replaces everything in it but a
    ``.git`` folder (so ``out`` can be a clone of the extension repository)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise BrainMetSegError(f"{out}: already exists; pass --overwrite to replace it.")
    items = downloads(repo)
    skip = {(repo / "Resources" / d.path).resolve() for d in items}
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for part in (*TREE_PARTS, *image_paths(repo)):
            if not (repo / part).exists():
                raise BrainMetSegError(f"{repo / part}: missing; the release tree needs it.")
            _copy(repo, part, stage, skip)
        (stage / DOWNLOADS_CMAKE).write_text(downloads_cmake(items), encoding="utf-8")
        (stage / "README.md").write_text(readme(repo, items), encoding="utf-8")
        if out.exists():
            if (out / ".git").exists():  # a clone of the extension repository keeps its history
                os.replace(out / ".git", stage / ".git")
            shutil.rmtree(out)
        os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


def stage_assets(out: str | os.PathLike, repo: Path = REPO) -> list[Path]:
    """Copy each downloadable file to ``out/<basename of its URL>`` (what to upload under
    the URL's release tag), after checking its sha256 against the registry/card."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for d in downloads(repo):
        src = repo / "Resources" / d.path
        actual = hashlib.sha256(src.read_bytes()).hexdigest()
        if actual != d.sha256:
            raise BrainMetSegError(f"{src}: sha256 {actual[:12]}... is not the registered "
                                   f"{d.sha256[:12]}...; fix the registry or the file first.")
        target = out / Path(urlsplit(d.url).path).name
        shutil.copy2(src, target)
        written.append(target)
        print(f"{target}  <- upload as {d.url}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("extension", "assets"))
    parser.add_argument("-o", "--output", required=True, help="folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing tree")
    args = parser.parse_args(argv)
    try:
        if args.what == "extension":
            print(f"extension tree: {assemble(args.output, overwrite=args.overwrite)}")
        else:
            stage_assets(args.output)
    except (BrainMetSegError, OSError, KeyError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
