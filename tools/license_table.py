"""Print the license table of BrainMetSegLib's runtime dependencies (docs/licenses.md).

    python tools/license_table.py

Reads the requirements of pyproject.toml (``dependencies`` and every extra) and, for each,
the installed distribution's metadata (``importlib.metadata``): the SPDX ``License-Expression``
when the package declares one, else a one-line ``License`` field, else the trove
``License ::`` classifiers, else the first line of the ``License`` field (some packages put the
whole license text there). A package that is not installed is listed as such.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def requirements() -> list[tuple[str, str]]:
    """(distribution name, where it is required: "core" or the extra's name), in order."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = [("core", project["dependencies"]), *project["optional-dependencies"].items()]
    out: dict[str, list[str]] = {}
    for group, reqs in groups:
        for req in reqs:
            name = re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0]
            out.setdefault(name, []).append(group)
    return [(name, ", ".join(where)) for name, where in out.items()]


def declared_license(meta) -> str:
    """The license the distribution's metadata declares, as one short line."""
    if meta.get("License-Expression"):
        return meta["License-Expression"].strip()
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 60:
        return text
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                   if c.startswith("License ::")]
    if classifiers:
        return " / ".join(classifiers) + " (classifier)"
    return text.splitlines()[0].strip() + " (first line of License)" if text else "not declared"


def table() -> str:
    rows = ["| package | version | required by | license (installed metadata) |",
            "|---|---|---|---|"]
    for name, where in requirements():
        try:
            meta = md.metadata(name)
            rows.append(f"| {name} | {meta['Version']} | {where} | {declared_license(meta)} |")
        except md.PackageNotFoundError:
            rows.append(f"| {name} | not installed | {where} | - |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
