"""Writing a whole output folder atomically (a model package, a DICOM series): it is built in a
temporary folder beside its place and renamed into place only when complete, so a failed or
interrupted write leaves no partial folder and replaces nothing. Single files: :mod:`.staging`."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError
from .staging import current_umask


@contextlib.contextmanager
def staged_folder(folder: Path, what: str) -> Iterator[Path]:
    """An empty temporary folder beside ``folder`` to fill. When the block ends without an error
    it takes ``folder``'s place (a folder already there stays whole until the new one is in
    place, then it is removed); on an error it is removed and nothing is replaced. The caller
    decides beforehand whether ``folder`` may be replaced. ``what`` names the folder in the
    :class:`OutputError` when the temporary folder cannot be made."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=folder.parent))
    except OSError as exc:
        raise OutputError(f"{folder.parent}: cannot create the {what} ({exc.strerror}).") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's folders are private (0700)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            try:
                os.replace(tmp, folder)
            except OSError:
                os.replace(old, folder)  # the folder that was there comes back whole
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
