"""Exceptions: every non-zero mtl_status becomes one of these.

Each class mirrors one status code and also derives from the closest Python
built-in exception, so ``except ValueError`` catches a shape mismatch and
``except OSError`` an I/O failure, while ``except MtlError`` catches all.
"""

from .enums import Status

__all__ = [
    "MtlError", "InvalidArgumentError", "OutOfMemoryError", "ShapeError", "StateError",
    "FileIOError", "FormatError", "VersionError", "NonFiniteError", "UnsupportedError",
    "InternalError", "NotFoundError", "error_for_status",
]


class MtlError(Exception):
    """A libmtl call failed.

    Attributes:
        status:   the :class:`Status` code.
        message:  the library's detailed message (``mtl_last_error_message()``),
                  or a message from the Python layer when it caught the problem
                  before calling C.
        function: the C function that failed (None for Python-side checks).
    """

    status = Status.INTERNAL  # overridden by each subclass

    def __init__(self, message, function=None, status=None):
        if status is not None:
            self.status = status
        self.message = message
        self.function = function
        what = status_text(self.status)
        detail = message
        if function and detail.startswith(function + ": "):
            detail = detail[len(function) + 2:]  # most C messages name their function already
        text = f"{what}: {detail}" if detail else what
        if function:
            text = f"{function}: {text}"
        # One argument only: OSError and friends treat two as (errno, strerror).
        super().__init__(text)


class InvalidArgumentError(MtlError, ValueError):
    status = Status.INVALID_ARGUMENT


class OutOfMemoryError(MtlError, MemoryError):
    status = Status.OUT_OF_MEMORY


class ShapeError(MtlError, ValueError):
    status = Status.SHAPE


class StateError(MtlError):
    status = Status.STATE


class FileIOError(MtlError, OSError):
    status = Status.IO


class FormatError(MtlError, ValueError):
    status = Status.FORMAT


class VersionError(MtlError):
    status = Status.VERSION


class NonFiniteError(MtlError, ArithmeticError):
    status = Status.NON_FINITE


class UnsupportedError(MtlError, NotImplementedError):
    status = Status.UNSUPPORTED


class InternalError(MtlError):
    status = Status.INTERNAL


class NotFoundError(MtlError, LookupError):
    status = Status.NOT_FOUND


_BY_STATUS = {cls.status: cls for cls in (
    InvalidArgumentError, OutOfMemoryError, ShapeError, StateError, FileIOError, FormatError,
    VersionError, NonFiniteError, UnsupportedError, InternalError, NotFoundError)}


def status_text(status):
    """Short description of a status code.  Replaced by the library's own
    mtl_status_string() once the library is loaded (see _capi.py)."""
    try:
        return Status(status).name.lower().replace("_", " ")
    except ValueError:
        return f"status {int(status)}"


def error_for_status(status, message, function=None):
    """The exception instance for a non-zero status code.  An unknown code
    (from a newer library) gives a plain MtlError whose ``status`` is the
    raw integer."""
    try:
        cls = _BY_STATUS[Status(status)]
    except (ValueError, KeyError):
        return MtlError(message, function, status=int(status))
    return cls(message, function)
