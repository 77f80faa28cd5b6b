"""Borrowing array memory: any object that speaks DLPack (__dlpack__: PyTorch, CuPy, JAX,
NumPy >= 1.22), NumPy's __array_interface__ (read-only arrays, which NumPy 1.x will not
export through DLPack), and torch tensors read directly (no capsule, and tensors that
require grad are accepted). Nothing is copied: the wrapper hands bnorm the producer's
pointer and keeps the producer's object (or DLPack capsule) alive for the call.

Then what bnorm takes, checked before any call so that a refused argument writes
nothing: an activation of 2 to 5 dimensions, (N, C), (N, C, L) as h = L, w = 1,
(N, C, H, W) and (N, C, D, H, W) as h = D*H, in contiguous or channels-last memory (the
C API's NCHW and NHWC; PyTorch's contiguity rule, a dimension of size 1 may have any
stride); every other tensor of a call the same shape, dtype and memory layout as x;
per-channel (and per-sample) vectors contiguous float32 of the element count the call
needs, of any shape.
"""
import ctypes
import sys

from ._enums import Backend, DType, Layout
from ._errors import InvalidValueError, NotSupportedError
from ._library import TensorDesc

# DLPack device types (dlpack.h)
kDLCPU, kDLCUDA, kDLCUDAHost, kDLCUDAManaged = 1, 2, 3, 13
_DEVICE_NAMES = {1: "CPU", 2: "CUDA", 3: "CUDA host", 4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI", 10: "ROCm",
                 11: "ROCm host", 12: "ext_dev", 13: "CUDA managed", 14: "oneAPI", 15: "WebGPU", 16: "Hexagon"}
# DLPack (code, bits) of the three dtypes bnorm takes
_BNORM_DTYPES = {(2, 32): DType.F32, (2, 16): DType.F16, (4, 16): DType.BF16}
_ELEM_BYTES = {DType.F32: 4, DType.F16: 2, DType.BF16: 2}
_CODE_NAMES = {0: "int", 1: "uint", 2: "float", 3: "opaque", 4: "bfloat", 5: "complex", 6: "bool"}


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int), ("dtype", DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


_capsule_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_valid.restype, _capsule_valid.argtypes = ctypes.c_int, [ctypes.py_object, ctypes.c_char_p]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype, _capsule_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]


class Borrowed:
    """One argument's memory: first element, shape, strides in elements (None: compact
    row-major), DLPack dtype and device, and what keeps the memory alive."""
    __slots__ = ("ptr", "shape", "strides", "code", "bits", "lanes", "device_type", "device_id", "readonly",
                 "keep")

    def __init__(self, ptr, shape, strides, code, bits, lanes, device_type, device_id, readonly, keep):
        self.ptr, self.shape, self.strides = ptr, tuple(shape), None if strides is None else tuple(strides)
        self.code, self.bits, self.lanes = code, bits, lanes
        self.device_type, self.device_id, self.readonly, self.keep = device_type, device_id, readonly, keep

    @property
    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def dtype_name(self):
        name = f"{_CODE_NAMES.get(self.code, 'code%d' % self.code)}{self.bits}"
        return name if self.lanes == 1 else f"{name}x{self.lanes}"

    @property
    def device_name(self):
        name = _DEVICE_NAMES.get(self.device_type, f"type {self.device_type}")
        return name if self.device_type in (kDLCPU, kDLCUDAHost) else f"{name} device {self.device_id}"


# ---- producers -------------------------------------------------------------------------

_TORCH_DTYPES = None


def _torch_dtypes(torch):
    global _TORCH_DTYPES
    if _TORCH_DTYPES is None:
        _TORCH_DTYPES = {
            torch.float32: (2, 32), torch.float16: (2, 16), torch.bfloat16: (4, 16), torch.float64: (2, 64),
            torch.int8: (0, 8), torch.int16: (0, 16), torch.int32: (0, 32), torch.int64: (0, 64),
            torch.uint8: (1, 8), torch.bool: (6, 8), torch.complex64: (5, 64), torch.complex128: (5, 128)}
    return _TORCH_DTYPES


def _from_torch(t, torch):
    if t.layout != torch.strided:
        raise NotSupportedError(f"a torch tensor with layout {t.layout}: bnorm takes dense (strided) tensors")
    if t.is_neg() or t.is_conj():  # lazy views: the memory does not hold the values
        raise NotSupportedError("a torch tensor with its negative or conjugate bit set (resolve_neg() first)")
    code, bits = _torch_dtypes(torch).get(t.dtype, (3, t.element_size() * 8))
    dev = t.device
    if dev.type == "cpu":
        dtype_, did = kDLCPU, 0
    elif dev.type == "cuda":
        dtype_, did = kDLCUDA, dev.index if dev.index is not None else torch.cuda.current_device()
    else:
        raise NotSupportedError(f"a torch tensor on device {dev}: bnorm takes CPU and CUDA memory")
    ptr = t.data_ptr() or None
    return Borrowed(ptr, t.shape, t.stride(), code, bits, 1, dtype_, did, False, t)


def _from_dltensor(capsule, obj):
    if not _capsule_valid(capsule, b"dltensor"):
        raise NotSupportedError(f"a {type(obj).__name__} whose __dlpack__() returned no DLPack capsule")
    m = DLManagedTensor.from_address(_capsule_pointer(capsule, b"dltensor"))
    t = m.dl_tensor
    shape = [t.shape[i] for i in range(t.ndim)]
    strides = [t.strides[i] for i in range(t.ndim)] if t.strides else None
    ptr = (t.data or 0) + t.byte_offset
    # The capsule keeps its name "dltensor": its destructor returns the tensor to the
    # producer when the capsule dies, after the call. bnorm keeps no pointer.
    return Borrowed(ptr or None, shape, strides, t.dtype.code, t.dtype.bits, t.dtype.lanes, t.device.device_type,
                    t.device.device_id, False, (capsule, obj))


def _from_array_interface(obj):
    ai = obj.__array_interface__
    typestr = ai["typestr"]
    if typestr[0] == (">" if sys.byteorder == "little" else "<"):
        raise NotSupportedError(f"an array of type {typestr}: bnorm takes native byte order")
    kind, size = typestr[1], int(typestr[2:])
    code = {"f": 2, "i": 0, "u": 1, "b": 6, "c": 5}.get(kind, 3)
    ptr, readonly = ai["data"]
    item = size
    strides = ai.get("strides")
    if strides is not None:
        if any(s % item for s in strides):
            raise NotSupportedError(f"an array with byte strides {strides}, not multiples of its {item}-byte elements")
        strides = [s // item for s in strides]
    return Borrowed(ptr or None, ai["shape"], strides, code, size * 8, 1, kDLCPU, 0, bool(readonly), obj)


def borrow(obj, stream=None):
    """The memory of obj. stream: the consumer's CUDA stream (an int; 1 is the legacy
    default), passed to __dlpack__ for CUDA memory so that the producer orders its work
    before bnorm's."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return _from_torch(obj, torch)
    if isinstance(obj, Borrowed):
        return obj
    if hasattr(obj, "__dlpack__"):
        device_type = None
        if hasattr(obj, "__dlpack_device__"):
            device_type = int(obj.__dlpack_device__()[0])
        try:
            if device_type in (kDLCUDA, kDLCUDAManaged):
                capsule = obj.__dlpack__(stream=1 if not stream else int(stream))
            else:
                capsule = obj.__dlpack__()
        except BufferError as e:
            # NumPy 1.x refuses to export read-only arrays through DLPack.
            if hasattr(obj, "__array_interface__"):
                return _from_array_interface(obj)
            raise NotSupportedError(f"a {type(obj).__name__} that DLPack cannot export ({e})") from None
        return _from_dltensor(capsule, obj)
    if hasattr(obj, "__array_interface__"):
        return _from_array_interface(obj)
    raise TypeError(f"bnorm takes objects with __dlpack__ (PyTorch, CuPy, JAX, NumPy >= 1.22) or "
                    f"__array_interface__; got {type(obj).__name__}")


# ---- what bnorm takes --------------------------------------------------------------------

def _compact(shape):
    strides, s = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        strides[i] = s
        s *= shape[i]
    return strides


def _channels_last(shape):
    """Strides of (N, C, *S) stored as (N, *S, C)."""
    strides = [0] * len(shape)
    strides[1] = 1
    s = shape[1]
    for i in range(len(shape) - 1, 1, -1):
        strides[i] = s
        s *= shape[i]
    strides[0] = s
    return strides


def _matches(b, want):
    if b.strides is None or b.numel == 0:
        return True
    return all(size == 1 or st == w for size, st, w in zip(b.shape, b.strides, want))


def is_compact(b):
    return b.strides is None or _matches(b, _compact(b.shape))


def layout_of(b):
    """NCHW, NHWC, or None when the memory is neither."""
    if b.strides is None or b.numel == 0 or _matches(b, _compact(b.shape)):
        return Layout.NCHW
    if len(b.shape) >= 3 and _matches(b, _channels_last(b.shape)):
        return Layout.NHWC
    return None


def _has_layout(b, layout):
    if b.strides is None or b.numel == 0:
        return layout == Layout.NCHW or len(b.shape) < 3 or b.numel == 0
    want = _compact(b.shape) if layout == Layout.NCHW or len(b.shape) < 3 else _channels_last(b.shape)
    return _matches(b, want)


def check_device(b, name, backend, device):
    if backend == Backend.CUDA:
        if b.device_type in (kDLCUDAHost, kDLCUDAManaged):
            return
        if b.device_type != kDLCUDA:
            raise NotSupportedError(f"{name} lives in {b.device_name} memory; a CUDA handle takes CUDA, CUDA "
                                    f"host and CUDA managed memory")
        if b.device_id != device:
            raise InvalidValueError(f"{name} is on CUDA device {b.device_id}, the handle on device {device}")
        return
    if b.device_type not in (kDLCPU, kDLCUDAHost):
        raise NotSupportedError(f"{name} lives in {b.device_name} memory; a {Backend(backend).name} handle takes "
                                f"host memory")


def bnorm_dtype(b, name):
    dt = _BNORM_DTYPES.get((b.code, b.bits)) if b.lanes == 1 else None
    if dt is None:
        raise NotSupportedError(f"{name} is {b.dtype_name}; bnorm takes float32, float16 and bfloat16 tensors")
    return dt


def check_aligned(b, name, size):
    if b.ptr is not None and b.ptr % size:
        raise InvalidValueError(f"{name} is not aligned to its {size}-byte elements")


def check_writable(b, name):
    if b.readonly:
        raise InvalidValueError(f"{name} is read-only")


def activation_desc(b, name):
    """The TensorDesc of an activation-shaped tensor."""
    nd = len(b.shape)
    if nd < 2 or nd > 5:
        raise NotSupportedError(f"{name} has {nd} dimension(s); bnorm takes (N, C), (N, C, L), (N, C, H, W) and "
                                f"(N, C, D, H, W)")
    n, c = b.shape[0], b.shape[1]
    spatial = list(b.shape[2:])
    if nd == 2:
        h, w = 1, 1
    elif nd == 3:
        h, w = spatial[0], 1
    else:
        w = spatial[-1]
        h = 1
        for s in spatial[:-1]:
            h *= s
    dtype = bnorm_dtype(b, name)
    layout = layout_of(b)
    if layout is None:
        raise NotSupportedError(f"{name} has strides {b.strides} for shape {b.shape}: neither contiguous nor "
                                f"channels last (make it contiguous first)")
    check_aligned(b, name, _ELEM_BYTES[dtype])
    return TensorDesc(n, c, h, w, layout, dtype)


def check_like(b, name, x, xname, desc):
    """b is shaped, typed and laid out as x."""
    if b.shape != x.shape:
        raise InvalidValueError(f"{name} has shape {b.shape}, {xname} {x.shape}")
    dt = bnorm_dtype(b, name)
    if dt != desc.dtype:
        raise InvalidValueError(f"{name} is {b.dtype_name}, {xname} {x.dtype_name}")
    if not _has_layout(b, Layout(desc.layout)):
        other = "channels last" if desc.layout == Layout.NHWC else "contiguous"
        raise NotSupportedError(f"{name} has strides {b.strides}; {xname} is {other}, and every tensor of a call "
                                f"must be laid out alike")
    check_aligned(b, name, _ELEM_BYTES[dt])


def check_vector(b, name, count, what="float32 values"):
    """A contiguous float32 array of count elements, any shape."""
    if (b.code, b.bits, b.lanes) != (2, 32, 1):
        raise NotSupportedError(f"{name} is {b.dtype_name}; it must be float32")
    if b.numel != count:
        raise InvalidValueError(f"{name} has {b.numel} elements; the call needs {count} ({what})")
    if not is_compact(b):
        raise NotSupportedError(f"{name} has strides {b.strides}: it must be contiguous")
    if count and b.ptr is None:
        raise InvalidValueError(f"{name} has no data")
    check_aligned(b, name, 4)
