"""bnorm's failures as Python exceptions: one class per status, each carrying the status
and the message (bnorm_last_error() for a failing C call, or the wrapper's own when it
refuses an argument before calling, exactly as the C API's DLPack entry points do).

The classes also derive from the built-in exception a Python user would catch for the
same fault (ValueError for a bad argument, MemoryError for an allocation), so code
written against torch's batch norm keeps catching what it caught.
"""
from ._enums import Status


class Error(RuntimeError):
    """A bnorm call failed. .status: the Status; .message: what went wrong."""

    status = Status.INTERNAL_ERROR

    def __init__(self, message, status=None):
        if status is not None:
            self.status = Status(status)
        self.message = message
        super().__init__(f"bnorm: {self.status.name.lower()}: {message}")


class InvalidValueError(Error, ValueError):
    status = Status.INVALID_VALUE


class NotSupportedError(Error):
    status = Status.NOT_SUPPORTED


class AllocFailedError(Error, MemoryError):
    status = Status.ALLOC_FAILED


class NoDeviceError(Error):
    status = Status.NO_DEVICE


class CudaError(Error):
    status = Status.CUDA_ERROR


class InternalError(Error):
    status = Status.INTERNAL_ERROR


class CommunicationError(Error):
    status = Status.COMMUNICATION_ERROR


_BY_STATUS = {cls.status: cls for cls in (InvalidValueError, NotSupportedError, AllocFailedError,
                                          NoDeviceError, CudaError, InternalError, CommunicationError)}


def error_for(status, message):
    """The exception of a non-success status (an unknown value becomes a plain Error)."""
    try:
        status = Status(status)
    except ValueError:
        return Error(f"unknown status {status}: {message}", Status.INTERNAL_ERROR)
    return _BY_STATUS.get(status, Error)(message, status)
