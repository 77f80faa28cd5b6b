"""bnorm from Python: batch-normalization kernels (CUDA and CPU) behind bnorm's C API.

    import numpy as np, bnorm
    h = bnorm.Handle("cpu")                          # or bnorm.Handle("cuda", device=0)
    x = np.random.randn(8, 3, 5, 7).astype(np.float32)
    y = np.empty_like(x)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    h.forward_training(x, y, momentum=0.1, eps=1e-5, running_mean=rm, running_var=rv)

Arrays are any objects that speak DLPack (PyTorch, CuPy, JAX, NumPy >= 1.22), borrowed
without copying; failures raise bnorm.Error subclasses carrying .status and .message.
bnorm.torch has drop-in BatchNorm modules (model.apply(bnorm.torch.convert)).

libbnorm.so is found through $BNORM_LIBRARY, beside this package, in the lib directory
of the prefix this package is installed in, or by the system loader: bnorm.library_path
says which.
"""
from . import _handle, _library
from ._enums import Activation, Backend, Choice, DType, Layout, Op, Status
from ._errors import (AllocFailedError, CommunicationError, CudaError, Error, InternalError, InvalidValueError,
                      NoDeviceError, NotSupportedError)
from ._handle import Handle, stream_pointer
from ._library import TensorDesc

_lib, library_path, library_found = _library.load()
_handle._lib = _lib


def version():
    """The running library's version, major * 10000 + minor * 100 + patch."""
    return _lib.bnorm_get_version()


def _version_string():
    v = version()
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}"


__version__ = _version_string()


def status_string(status):
    """bnorm_status_string: the name of a status."""
    return _lib.bnorm_status_string(int(status)).decode()


def last_error():
    """bnorm_last_error(): the message of this thread's last failing C call ("" if none)."""
    m = _lib.bnorm_last_error()
    return m.decode("utf-8", "replace") if m else ""


def tuning_load(path):
    """Replaces the process-wide tuning cache with the JSON file at path."""
    _handle.check(_lib.bnorm_tuning_load(None if path is None else str(path).encode()))


def tuning_clear():
    """Empties the process-wide tuning cache (dispatch uses the heuristic)."""
    _handle.check(_lib.bnorm_tuning_clear())


def cuda_available():
    """Whether a CUDA handle can be created (a GPU and driver are present)."""
    try:
        Handle(Backend.CUDA, 0).close()
        return True
    except NoDeviceError:
        return False


__all__ = ["Activation", "AllocFailedError", "Backend", "Choice", "CommunicationError", "CudaError", "DType",
           "Error", "Handle", "InternalError", "InvalidValueError", "Layout", "NoDeviceError", "NotSupportedError",
           "Op", "Status", "TensorDesc", "cuda_available", "last_error", "library_path", "status_string",
           "stream_pointer", "tuning_clear", "tuning_load", "version"]
