"""Capturing what native code (ITK, GDCM) prints on file descriptor 2.

ITK reports doubts and some failures on stderr instead of raising; Python's ``sys.stderr``
does not see them, so the descriptor itself is redirected for the call.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_to(sink):
    """Send file descriptor 2 to ``sink`` (an open file) for a while: ITK's NIfTI writer reports a
    short write (``** ERROR: NWAD``) on stderr and returns normally, its readers print warnings
    there; the caller turns what was said into one error line or warnings."""
    getattr(sys.stderr, "flush", lambda: None)()
    saved = os.dup(2)
    try:
        os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
