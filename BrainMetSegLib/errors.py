"""User-facing error types.

Each kind of user error has its own exception type. The CLI prints the message
(which names the file and what to do) without a traceback and exits with the
type's ``exit_code``.
"""


class BrainMetSegError(Exception):
    """Base class for errors a user can fix; never a bug in the library.

    exit_code: the CLI's exit status for this kind; meaning: a few words for it.
    """

    exit_code = 1
    meaning = "failed"


class InputError(BrainMetSegError):
    """An input image, mask or manifest is missing, unreadable or unsuitable."""

    exit_code = 2
    meaning = "bad input"


class OptionError(InputError):
    """A run option (command-line flag or config field) has an invalid value."""


class ModelError(BrainMetSegError):
    """A model package is unknown, incomplete, tampered with or inconsistent."""

    exit_code = 3
    meaning = "bad model"


class OutputError(BrainMetSegError):
    """An output cannot be written (permissions, exists without --overwrite)."""

    exit_code = 4
    meaning = "cannot write outputs"


class NotEnoughMemoryError(BrainMetSegError):
    """Inference ran out of memory on every device tried (raised in place of torch's
    ``torch.cuda.OutOfMemoryError`` / ``MemoryError``, hence not that name)."""

    exit_code = 5
    meaning = "out of memory"


class CancelledError(BrainMetSegError):
    """The run was cancelled by the user (Slicer's Cancel button, Ctrl-C)."""

    exit_code = 130
    meaning = "cancelled"


class ConstantImageError(InputError):
    """An image holds a single value: no image data (yet a valid empty mask or label map)."""


class FolderBusyError(OutputError):
    """Another run holds the output folder's lock (it is writing that case now)."""


# Every kind by name and by exit code (the CLI's JSON ``error`` object carries the name).
ERROR_TYPES = {cls.__name__: cls for cls in (BrainMetSegError, InputError, ConstantImageError, ModelError,
                                             OutputError, NotEnoughMemoryError, CancelledError)}
EXIT_CODE_MEANINGS = {cls.exit_code: cls.meaning for cls in ERROR_TYPES.values() if cls.exit_code != 1}
