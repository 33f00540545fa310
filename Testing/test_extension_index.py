"""The Slicer Extensions Index's checks, applied to the extension release tree.

The index's validator (Slicer/ExtensionsIndex, scripts/check_description_files.py) clones the
repository named by the description's scm_url and checks: the description JSON against Slicer's
catalog-entry schema (v1.0.1), the category, the repository name, the scm_url syntax, the
top-level CMakeLists.txt (project name, icon and screenshot URLs that return images) and a
license file in the root; the repository must stay under 100 MB with its history (SPEC.md,
"Slicer Extensions Index rules"). The tree tools/extension_release.py assembles is what would be
pushed to that repository, so the checks run on it, offline: the schema is vendored
(Testing/data/slicer), raw.githubusercontent.com URLs of scm_url are mapped to the tree's files.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import load_script

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "Testing" / "data" / "slicer" / "slicer-extension-catalog-entry-schema-v1.0.1.json"
NAME = "BrainMetSeg"  # the extension's name: the description file's stem
MAX_REPOSITORY_BYTES = 100 * 10**6
# Categories the index accepts (the validator's list, Slicer/ExtensionsIndex 2026).
KNOWN_CATEGORIES = {
    "Active Learning", "Analysis", "Auto3dgm", "BigImage", "Cardiac", "Chest Imaging Platform",
    "Conda", "Converters", "DICOM", "DSCI", "Developer Tools", "Diffusion", "Examples", "Exporter",
    "FTV Segmentation", "Filtering", "Filtering.Morphology", "Filtering.Vesselness",
    "Holographic Display", "IGT", "Informatics", "Netstim", "Neuroimaging", "Nuclear Medicine",
    "Orthodontics", "Osteotomy Planning", "Otolaryngology", "Photogrammetry", "Pipelines",
    "Planning", "Printing", "Quantification", "Radiotherapy", "Registration", "Remote",
    "Rendering", "SPHARM", "Segmentation", "Sequences", "Shape Analysis", "Shape Regression",
    "Shape Visualization", "Simulation", "SlicerCMF", "SlicerMorph", "Spectral Imaging",
    "Supervisely", "Surface Models", "SurfaceLearner", "Tomographic Reconstruction", "Tracking",
    "Tractography", "Training", "Ultrasound", "Utilities", "Vascular Modeling Toolkit",
    "Virtual Reality", "VisSimTools", "Web System Tools", "Wizards"}
LICENSE_NAMES = ("LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING",
                 "COPYING.txt")
IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"GIF8": "gif"}


def _load_tool():
    return load_script(REPO / "tools" / "extension_release.py", "extension_release")


release = _load_tool()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """The release tree, made by the tool's command line, as a fresh git repository with one
    commit (what the index clones)."""
    out = tmp_path_factory.mktemp("release") / "SlicerBrainMetSeg"
    done = subprocess.run([sys.executable, str(REPO / "tools" / "extension_release.py"), "extension",
                           "-o", str(out)], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    git = ["git", "-c", "user.name=release", "-c", "user.email=release@example.invalid",
           "-c", "init.defaultBranch=main", "-c", "core.autocrlf=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "release"]):
        subprocess.run([*git, *args], cwd=out, check=True, capture_output=True)
    return out


def _description(tree: Path) -> dict:
    return json.loads((tree / f"{NAME}.json").read_text(encoding="utf-8"))


def _cmake(tree: Path) -> str:
    return (tree / "CMakeLists.txt").read_text(encoding="utf-8")


def test_description_is_valid_against_the_catalog_entry_schema(tree):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    entry = _description(tree)
    jsonschema.validate(entry, schema)
    assert entry["$schema"].split("#")[0].endswith("/slicer-extension-catalog-entry-schema-v1.0.1.json")
    assert entry["tier"] in (1, 3, 5)  # SPEC.md: tier 1/3/5 (one schema revision's enum)
    assert b"\r" not in (tree / f"{NAME}.json").read_bytes()  # LF line endings
    # the schema really refuses what the index refuses (a test that could fail)
    for bad in ({k: v for k, v in entry.items() if k != "scm_url"}, {**entry, "homepage": "x"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_category_is_known(tree):
    assert _description(tree)["category"] in KNOWN_CATEGORIES


def test_repository_and_extension_names(tree):
    scm_url = _description(tree)["scm_url"]
    parts = urlsplit(scm_url)
    assert parts.scheme in ("https", "git") and parts.netloc, scm_url
    repo_name = Path(parts.path).name.removesuffix(".git")
    assert repo_name.startswith(("Slicer", "Slicer-", "Slicer_", "SlicerExtension-")), repo_name
    assert repo_name == f"Slicer{NAME}"
    assert not NAME.lower().startswith("slicer")


def test_cmake_project_is_the_extension_name(tree):
    project = re.findall(r"project\s*\(\s*([^\s)]+)", _cmake(tree), re.I)
    assert project and project[0].strip("\"'") == NAME


@pytest.mark.parametrize("variable", ["EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"])
def test_icon_and_screenshot_urls_are_images_in_the_tree(tree, variable):
    urls = release.cmake_urls(_cmake(tree), variable)
    assert urls, f"{variable} is not set"
    scm_url = _description(tree)["scm_url"]
    for url in urls:
        assert url.startswith(("http://", "https://")), url
        path = release.raw_url_path(url, scm_url)
        assert path, f"{variable}: {url} is not a raw URL of {scm_url}"
        data = (tree / path).read_bytes()
        kinds = [kind for magic, kind in IMAGE_MAGIC.items() if data.startswith(magic)]
        assert kinds and Path(path).suffix.lower().lstrip(".") in {kinds[0], "jpg"}, path
    assert release.raw_url_path("https://raw.githubusercontent.com/someone/Other/main/a.png", scm_url) is None


def test_license_file_in_the_root(tree):
    found = [n for n in LICENSE_NAMES if (tree / n).is_file()]
    assert found == ["LICENSE"]
    text = (tree / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a stub
    assert (tree / "docs" / "licenses.md").is_file()


def test_repository_is_small_and_carries_no_weights_or_sample(tree):
    total = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())  # .git included
    print(f"release tree as a git repository: {total / 1e6:.2f} MB")
    assert total < MAX_REPOSITORY_BYTES
    assert total < 5 * 10**6  # weights and sample stay out; the rest is text, icons, a screenshot
    assert not list(tree.rglob("*.safetensors"))
    assert not list((tree / "Resources" / "Sample").glob("*.nii.gz"))
    assert (tree / "Resources" / "Models" / "brainmetseg-demo" / "model.json").is_file()
    assert not [p for p in tree.rglob("*") if "__pycache__" in p.parts or p.suffix == ".pyc"]


def test_text_files_have_lf_line_endings(tree):
    crlf = [p.relative_to(tree) for p in tree.rglob("*") if p.is_file() and ".git" not in p.parts
            and p.suffix in {".py", ".json", ".md", ".txt", ".cmake", ".ui", ""} and b"\r\n" in p.read_bytes()]
    assert not crlf


def test_download_list_is_the_registry_and_the_cards(tree):
    from BrainMetSegLib.models import load_package

    text = (tree / "CMake" / "BrainMetSegDownloads.cmake").read_text(encoding="utf-8")
    listed = re.findall(r'^\s+(model|sample) "([^"]+)" "([^"]+)" "([0-9a-f]{64})"$', text, re.M)
    registry = json.loads((REPO / "Resources" / "Models.json").read_text(encoding="utf-8"))
    expected = []
    for entry in registry["models"]:
        if "path" in entry:
            package = load_package(REPO / "Resources" / entry["path"])
            for path, sha in package.all_weight_files():  # thick-slice weights and int8 networks too
                name = path.name
                expected.append(("model", f"{entry['path']}/{name}", entry["weights_urls"][name], sha))
                assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    for item in registry["sample"]:
        expected.append(("sample", item["file"], item["url"], item["sha256"]))
        assert hashlib.sha256((REPO / "Resources" / item["file"]).read_bytes()).hexdigest() == item["sha256"]
    assert listed == expected
    assert {p for _, p, _, _ in listed} >= {"Sample/sample_ce_t1.nii.gz",
                                            "Models/brainmetseg-demo/model.safetensors"}


def test_weights_url_must_name_the_card_version(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "Resources", repo / "Resources",
                    ignore=shutil.ignore_patterns("*.safetensors", "*.nii.gz"))
    registry = json.loads((repo / "Resources" / "Models.json").read_text())
    entry = registry["models"][0]
    entry["weights_urls"] = {"model.safetensors": "https://example.org/brainmetseg-demo-1.1.0.safetensors"}
    (repo / "Resources" / "Models.json").write_text(json.dumps(registry))
    with pytest.raises(release.ModelError, match="does not name brainmetseg-demo-"):
        release.downloads(repo)
    entry["weights_urls"] = {}
    (repo / "Resources" / "Models.json").write_text(json.dumps(registry))
    with pytest.raises(release.ModelError, match="no weights_urls entry for model.safetensors"):
        release.downloads(repo)


def _cmake_fetch(tree: Path, dest: Path, mirror: str, kinds: str = "model;sample"):
    return subprocess.run(["cmake", f"-DRESOURCES_DIR={dest}", f"-DKINDS={kinds}",
                           f"-DBrainMetSeg_DOWNLOAD_MIRROR={mirror}",
                           "-P", str(tree / "CMake" / "BrainMetSegDownload.cmake")],
                          capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed (.ci/apt-packages.txt)")
def test_cmake_downloads_file_urls_and_checks_the_sha256(tree, tmp_path):
    """CMake's file(DOWNLOAD ... EXPECTED_HASH) fetches every listed file from a file:// URL and
    stops, naming the file, when one does not match its sha256."""
    from BrainMetSegLib.models import load_package

    done = _cmake_fetch(tree, tmp_path / "ok", (REPO / "Resources").as_uri())
    assert done.returncode == 0, done.stderr
    fetched = tmp_path / "ok" / "Models" / "brainmetseg-demo" / "model.safetensors"
    demo = REPO / "Resources" / "Models" / "brainmetseg-demo"
    assert fetched.read_bytes() == (demo / "model.safetensors").read_bytes()
    assert (tmp_path / "ok" / "Sample" / "sample_ce_t1.nii.gz").is_file()
    shutil.copy(REPO / "Resources" / "Models" / "brainmetseg-demo" / "model.json", fetched.parent)
    load_package(fetched.parent).load_network("cpu")  # a package again: card + checked weights
    # a damaged mirror: one byte changed in the weights
    mirror = tmp_path / "mirror"
    shutil.copytree(REPO / "Resources", mirror, ignore=shutil.ignore_patterns("Sample"))
    damaged = mirror / "Models" / "brainmetseg-demo" / "model.safetensors"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    done = _cmake_fetch(tree, tmp_path / "bad", mirror.as_uri(), "model")
    assert done.returncode != 0
    assert "HASH mismatch" in done.stderr
    assert not (tmp_path / "bad" / "Models" / "brainmetseg-demo" / "model.safetensors").exists()
    # a missing file fails as well
    done = _cmake_fetch(tree, tmp_path / "none", (tmp_path / "nowhere").as_uri(), "model")
    assert done.returncode != 0
    assert not (tmp_path / "none" / "Models" / "brainmetseg-demo" / "model.safetensors").exists()


def test_the_tool_refuses_to_overwrite_and_keeps_a_clones_history(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, str(REPO / "tools" / "extension_release.py"), "extension",
                           "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0
    assert "already exists" in done.stderr
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / "stale.txt").write_text("from an older release")
    done = subprocess.run([sys.executable, str(REPO / "tools" / "extension_release.py"), "extension",
                           "-o", str(out), "--overwrite"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (out / ".git" / "HEAD").is_file() and not (out / "stale.txt").exists()
    assert (out / "CMakeLists.txt").is_file()


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("c++") is None,
                    reason="cmake and a C++ compiler are needed to configure (.ci/apt-packages.txt)")
def test_configure_step_downloads_and_installs_the_weights(tree, tmp_path):
    """The tree's own CMakeLists.txt, configured against a stand-in for Slicer
    (Testing/data/slicer_stub), downloads the weights from file:// URLs into the build tree
    and installs them beside the model card."""
    build, prefix = tmp_path / "build", tmp_path / "install"
    done = subprocess.run(["cmake", "-S", str(tree), "-B", str(build),
                           f"-DSlicer_DIR={REPO / 'Testing' / 'data' / 'slicer_stub'}",
                           f"-DBrainMetSeg_DOWNLOAD_MIRROR={(REPO / 'Resources').as_uri()}",
                           "-DBUILD_TESTING=OFF"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    weights = REPO / "Resources" / "Models" / "brainmetseg-demo" / "model.safetensors"
    rel = Path("lib/Slicer-5.10/qt-scripted-modules/Resources/Models/brainmetseg-demo/model.safetensors")
    assert (build / rel).read_bytes() == weights.read_bytes()
    assert not (build / "lib/Slicer-5.10/qt-scripted-modules/Resources/Sample").exists()  # opt-in
    done = subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix),
                           "--component", "RuntimeLibraries"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (prefix / rel).read_bytes() == weights.read_bytes()


def test_assets_are_the_registered_files_named_as_their_urls(tmp_path, capsys):
    written = release.stage_assets(tmp_path / "assets")
    items = release.downloads(REPO)
    assert [p.name for p in written] == [Path(urlsplit(d.url).path).name for d in items]
    for path, item in zip(written, items):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == item.sha256
    assert "upload as https://github.com/brainmetseg/BrainMetSeg/releases/download/" in capsys.readouterr().out
