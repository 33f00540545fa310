"""`brainmetseg models --download NAME`: a registry model fetched from a (file://) URL,
sha256-checked, unpacked safely and only then put into the cache."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

from BrainMetSegLib.download import download_model
from BrainMetSegLib.errors import ModelError
from BrainMetSegLib.models import load_package


def _zip(folder, path, prefix="", extra=None):
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, prefix + f.name)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _registry(tmp_path, archive, sha):
    reg = tmp_path / "Models.json"
    reg.write_text(json.dumps({"models": [{"name": "remote", "url": archive.as_uri(), "sha256": sha},
                                          {"name": "local", "path": "nowhere"}]}))
    return reg


def test_download_checks_and_caches_the_package(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINMETSEG_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "remote.zip"
    reg = _registry(tmp_path, archive, _zip(tiny_model.folder, archive, prefix="tiny/"))
    with pytest.raises(ModelError, match="not downloaded yet.*brainmetseg models --download remote"):
        load_package("remote", reg)
    package = download_model("remote", reg)
    assert package.folder == tmp_path / "cache" / "models" / "remote"
    assert load_package("remote", reg).card.sha256 == tiny_model.card.sha256
    assert sorted(p.name for p in package.folder.parent.iterdir()) == ["remote"]  # no leftovers
    with pytest.raises(ModelError, match="bundled"):
        download_model("local", reg)


@pytest.mark.parametrize("fault", ["sha256", "escape", "no card", "bad weights"])
def test_bad_downloads_leave_nothing_in_the_cache(fault, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINMETSEG_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "remote.zip"
    extra = {"../../evil.txt": "x"} if fault == "escape" else None
    if fault == "no card":
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("readme.txt", "no package here")
        sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    elif fault == "bad weights":
        bad = tmp_path / "bad"
        bad.mkdir()
        for f in tiny_model.folder.iterdir():
            (bad / f.name).write_bytes(f.read_bytes())
        weights = bad / tiny_model.card.weights
        weights.write_bytes(weights.read_bytes()[:-3] + b"xyz")
        sha = _zip(bad, archive)
    else:
        sha = _zip(tiny_model.folder, archive, extra=extra)
    if fault == "sha256":
        sha = "0" * 64
    reg = _registry(tmp_path, archive, sha)
    match = {"sha256": "does not match the registry", "escape": "outside the model folder",
             "no card": "holds no model.json", "bad weights": "sha256"}[fault]
    with pytest.raises(ModelError, match=match):
        download_model("remote", reg)
    cache = tmp_path / "cache" / "models"
    assert not cache.exists() or not any(cache.iterdir())
    assert not (tmp_path / "evil.txt").exists()


def test_unknown_model_or_unreachable_url(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINMETSEG_CACHE", str(tmp_path / "cache"))
    reg = _registry(tmp_path, tmp_path / "missing.zip", "a" * 64)
    with pytest.raises(ModelError, match="unknown model 'nope'.*known: remote, local"):
        download_model("nope", reg)
    with pytest.raises(ModelError, match="download failed"):
        download_model("remote", reg)


def test_cli_download_of_a_bundled_or_unknown_model_is_a_clear_error(capsys):
    from BrainMetSegLib.cli import main

    assert main(["models", "--download", "no-such-model"]) == ModelError.exit_code
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert main(["models", "--download", "brainmetseg-demo"]) == ModelError.exit_code
    assert "is bundled" in capsys.readouterr().err
