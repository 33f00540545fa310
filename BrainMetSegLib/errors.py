"""User-facing error types.

Each kind of user error has its own exception type. The CLI prints the message
(which names the file and what to do) without a traceback and exits with the
type's ``exit_code``.
"""


class BrainMetSegError(Exception):
    """Base class for errors a user can fix; never a bug in the library."""

    exit_code = 1


class InputError(BrainMetSegError):
    """An input image, mask or manifest is missing, unreadable or unsuitable."""

    exit_code = 2


class OptionError(InputError):
    """A run option (command-line flag or config field) has an invalid value."""


class ModelError(BrainMetSegError):
    """A model package is unknown, incomplete, tampered with or inconsistent."""

    exit_code = 3


class OutputError(BrainMetSegError):
    """An output cannot be written (permissions, exists without --overwrite)."""

    exit_code = 4


class OutOfMemoryError(BrainMetSegError):
    """Inference ran out of memory on every device tried."""

    exit_code = 5


class CancelledError(BrainMetSegError):
    """The run was cancelled by the user (Slicer's Cancel button, Ctrl-C)."""

    exit_code = 130
