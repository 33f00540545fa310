"""Python packages the library needs inside Slicer, and the pip calls that install them.

torch and SimpleITK belong to Slicer (its PyTorch extension and its own build):
they are never installed or upgraded here, and every pip call pins them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Requirement:
    """A package the library needs in Slicer's Python.

    distribution: pip name; module: import name; specifier: PEP 440 version range;
    no_deps: install with ``--no-deps`` (its own requirements would pull a GUI toolkit
    or torch; the ones it really imports are listed separately).
    """

    distribution: str
    module: str
    specifier: str = ""
    no_deps: bool = False
    purpose: str = ""

    def __str__(self) -> str:
        return f"{self.distribution}{self.specifier}"


# torch comes from Slicer's PyTorch extension (right CUDA build for the machine) and
# SimpleITK ships with Slicer: neither is ever installed or upgraded with pip.
PROTECTED = ("torch", "SimpleITK")
TORCH_MINIMUM = "2.2"

REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("monai", "monai", ">=1.4", purpose="sliding-window inference and networks"),
    Requirement("safetensors", "safetensors", ">=0.4", purpose="model weights without pickle"),
    Requirement("connected-components-3d", "cc3d", ">=3.12", purpose="lesion instances"),
    Requirement("scikit-image", "skimage", ">=0.22", purpose="lesion diameters"),
    Requirement("scipy", "scipy", ">=1.11", purpose="lesion measurements"),
    Requirement("tqdm", "tqdm", ">=4.66", purpose="progress"),
    Requirement("nibabel", "nibabel", ">=5", purpose="brain extraction I/O"),
    Requirement("pandas", "pandas", ">=1.5", purpose="brain extraction (deepbet)"),
    Requirement("fill-voids", "fill_voids", ">=2", purpose="brain extraction (deepbet)"),
    # deepbet's metadata requires customtkinter (a GUI toolkit) and torch: install
    # it alone and its runtime imports above.
    Requirement("deepbet", "deepbet", ">=1.0.2", no_deps=True, purpose="brain extraction"),
)


def normalise_name(name: str) -> str:
    """PEP 503 normalised distribution name (``Fill_Voids`` -> ``fill-voids``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _satisfies(version: str, specifier: str) -> bool:
    if not specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging ships with Slicer and pip
        return _satisfies_simple(version, specifier)
    try:
        return Version(version) in SpecifierSet(specifier)
    except InvalidVersion:
        return False


def _version_tuple(version: str) -> tuple[int, ...]:
    nums = []
    for part in re.split(r"[.+-]", version):
        m = re.match(r"\d+", part)
        if not m:
            break
        nums.append(int(m.group()))
    return tuple(nums)


def _satisfies_simple(version: str, specifier: str) -> bool:
    """Fallback for ``>=X`` / ``<X`` / ``==X`` comma lists when ``packaging`` is absent."""
    v = _version_tuple(version)
    for spec in specifier.split(","):
        m = re.fullmatch(r"\s*(>=|<=|==|<|>)\s*([\w.]+)\s*", spec)
        if not m:
            continue
        op, ref = m.group(1), _version_tuple(m.group(2))
        ok = {">=": v >= ref, "<=": v <= ref, "==": v == ref, "<": v < ref, ">": v > ref}[op]
        if not ok:
            return False
    return True


def installed_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution (None when absent), without importing it."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def missing_requirements(installed: Mapping[str, str | None],
                         requirements: Sequence[Requirement] = REQUIREMENTS) -> list[Requirement]:
    """Requirements whose distribution is absent or outside its version range.

    installed: distribution name -> version or None (see :func:`installed_versions`).
    Protected packages (torch, SimpleITK) are never returned, whatever the list says.
    """
    norm = {normalise_name(k): v for k, v in installed.items()}
    protected = {normalise_name(p) for p in PROTECTED}
    out = []
    for req in requirements:
        key = normalise_name(req.distribution)
        if key in protected:
            continue
        version = norm.get(key)
        if version is None or not _satisfies(version, req.specifier):
            out.append(req)
    return out


def torch_problem(torch_version: str | None, minimum: str = TORCH_MINIMUM) -> str | None:
    """Why torch cannot be used (None when fine): absent, or older than ``minimum``."""
    if torch_version is None:
        return "PyTorch is not installed"
    if not _satisfies(torch_version, f">={minimum}"):
        return (f"PyTorch {torch_version} is older than {minimum}; update it in the "
                f"PyTorch Utils module (version requirement >={minimum})")
    return None


def constraints_text(installed: Mapping[str, str | None]) -> str:
    """pip constraints pinning the protected packages to their installed versions.

    Passed with ``-c`` to every pip call, so a package that wants another torch or
    SimpleITK makes pip pick an older compatible release (or fail) instead of
    replacing Slicer's. Protected packages that are absent are pinned to nothing
    installable ("<0"), so pip can never bring them in as a dependency either.
    """
    norm = {normalise_name(k): v for k, v in installed.items()}
    lines = []
    for name in PROTECTED:
        version = norm.get(normalise_name(name))
        lines.append(f"{name}=={version}" if version else f"{name}<0")
    return "\n".join(lines) + "\n"


def pip_install_commands(missing: Sequence[Requirement], constraints_file: str | os.PathLike
                         ) -> list[list[str]]:
    """``pip install`` argument lists (without ``pip install``) for ``missing``.

    Normal requirements go in one call; ``no_deps`` ones in a second call with
    ``--no-deps``. Every call carries ``-c constraints_file``.
    """
    normal = [str(r) for r in missing if not r.no_deps]
    nodeps = [str(r) for r in missing if r.no_deps]
    cmds = []
    if normal:
        cmds.append([*normal, "-c", str(constraints_file)])
    if nodeps:
        cmds.append(["--no-deps", *nodeps, "-c", str(constraints_file)])
    return cmds


def ensure_dependencies(confirm, install_torch, pip_install, make_temp_dir,
                        versions=installed_versions) -> bool:
    """Install what the library needs in Slicer's Python; False when the user declines.

    The Slicer calls come in as functions: ``confirm(items) -> bool`` (asked once, before
    anything is installed; items are human-readable lines), ``install_torch(minimum) ->
    bool`` (the PyTorch extension's installer), ``pip_install(args)`` and
    ``make_temp_dir() -> folder`` (for the constraints file that pins torch and
    SimpleITK). Raises RuntimeError when torch is too old (Slicer's own, never replaced
    here) or something could not be installed.
    """
    names = [*PROTECTED, *(r.distribution for r in REQUIREMENTS)]
    found = versions(names)
    problem = torch_problem(found.get("torch"))
    missing = missing_requirements(found)
    if problem is None and not missing:
        return True
    if problem and found.get("torch") is not None:
        raise RuntimeError(problem)
    if not confirm((["torch (PyTorch extension)"] if problem else []) + [str(r) for r in missing]):
        return False
    if problem:
        if not install_torch(TORCH_MINIMUM):
            raise RuntimeError("PyTorch could not be installed; use the PyTorch Utils module.")
        found = versions(names)
    if missing:
        constraints = os.path.join(str(make_temp_dir()), "constraints.txt")
        with open(constraints, "w", encoding="utf-8") as fh:
            fh.write(constraints_text(found))
        for args in pip_install_commands(missing, constraints):
            pip_install(args)
    still = missing_requirements(versions(names))
    if still:
        raise RuntimeError(f"These packages could not be installed: {', '.join(map(str, still))}")
    return True
