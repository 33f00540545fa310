"""A case folder's ``run.json``: its schema, and checking that the outputs it lists are the
files it wrote.

``segment`` writes ``run.json`` last, with the sha256 of every other output (``output_sha256``).
Whoever later believes the folder (``--skip-existing``, ``summarize``, a longitudinal
comparison) first checks, with :func:`verify_outputs`, that

* every field read has its type (:data:`RUN_SCHEMA`; a bad one is named with the file),
* every output is a plain file name inside the case folder (no absolute path, no ``..``, no
  symbolic link leading out of the folder), a regular file, and
* its content hash is the one recorded (an emptied label map, a replaced table, are caught).

A run.json without ``output_sha256`` (written before this check existed) is not believed:
the case must be redone (``--skip-existing --overwrite``).
"""

from __future__ import annotations

import os
from pathlib import Path

from . import records as r
from .checksums import sha256_file
from .errors import InputError

RUN_NAME = "run.json"

# Fields are typed, not required: readers that need one say so (a comparison needs only the
# scan in ``inputs``; skip-existing and summarize need ``case`` and ``outputs``).
RUN_SCHEMA = {
    "case": r.string(),
    "model": r.obj({"sha256": r.string(), "name": r.string()}),
    "settings": r.obj({k: r.num(low=0.0) for k in ("threshold", "threshold_used", "min_volume_mm3",
                                                      "min_volume_mm3_used", "outline_threshold",
                                                      "outline_threshold_used")}),
    "inputs": r.mapping(r.obj({"path": r.string(), "sha256": r.sha256()})),
    "timings_s": r.mapping(r.num(low=0.0)),
    "lesions": r.num(low=0, integer=True),
    "warnings": r.array(r.string()),
    "outputs": r.mapping(r.file_name()),
    "output_sha256": r.mapping(r.sha256()),
}


class RunRecordError(InputError):
    """run.json is unreadable, or a field of it has the wrong type or value."""


def read_run(folder: str | os.PathLike) -> dict | None:
    """The case folder's checked run.json; None when there is none; :class:`RunRecordError`
    naming the file (and field) when it is there but cannot be believed."""
    path = Path(folder) / RUN_NAME
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file():
        raise RunRecordError(f"{path}: not a regular file (a link or a folder); a run record is "
                             "written by segment as a file of its own.")
    return r.read(path, "the run record", RUN_SCHEMA, RunRecordError)


def output_hashes(files: dict[str, str | os.PathLike]) -> dict[str, str]:
    """sha256 of each written file, by output key (to record in run.json)."""
    return {key: sha256_file(path) for key, path in files.items()}


def verify_outputs(folder: str | os.PathLike, run: dict) -> str:
    """Why the outputs ``run`` lists are not the files it wrote ("" when every one is).

    ``run`` is a record from :func:`read_run` (types checked)."""
    folder = Path(folder)
    if not run.get("outputs"):
        return f"{folder / RUN_NAME} lists no outputs"
    hashes = run.get("output_sha256")
    if not hashes:
        return (f"{folder / RUN_NAME} records no content hashes of its outputs (written by an older "
                "version, or edited), so they cannot be checked")
    home = folder.resolve()
    for key, name in run["outputs"].items():
        if name == RUN_NAME:
            continue
        path = folder / name
        if path.is_symlink() and not path.resolve().is_relative_to(home):
            return f"{path} is a link leading out of the case folder"
        if not path.is_file():
            return f"{path} missing"
        if key not in hashes:
            return f"{folder / RUN_NAME} records no content hash for {name}"
        if sha256_file(path) != hashes[key]:
            return f"{path} changed since it was written (sha256 differs from run.json)"
    return ""
