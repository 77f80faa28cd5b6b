"""Finding and loading libbnorm.so, and the ctypes prototype of every C call.

The library is looked for, in this order (the first that loads wins):
  1. $BNORM_LIBRARY, the path of a libbnorm.so (an error if set and unusable);
  2. beside the package: bnorm/libbnorm.so*, what a build's staged package
     (build/<preset>/python) and an install provide;
  3. the lib directories of the package's ancestors: an install prefix holds the package
     in <prefix>/lib/pythonX.Y/site-packages and the library in <prefix>/lib (or lib64,
     lib/<multiarch>);
  4. the system loader (ctypes.util.find_library("bnorm"), then LD_LIBRARY_PATH).
"""
import ctypes
import ctypes.util
import glob
import os
import sysconfig

_ENV = "BNORM_LIBRARY"
_HERE = os.path.dirname(os.path.abspath(__file__))


class TensorDesc(ctypes.Structure):
    """bnorm_tensor_t: sizes, layout and dtype of a dense tensor ((N, C) is h = w = 1)."""
    _fields_ = [("n", ctypes.c_int64), ("c", ctypes.c_int64), ("h", ctypes.c_int64), ("w", ctypes.c_int64),
                ("layout", ctypes.c_int), ("dtype", ctypes.c_int)]

    def __init__(self, n, c, h=1, w=1, layout=0, dtype=0):
        super().__init__(n, c, h, w, int(layout), int(dtype))

    def __repr__(self):
        from ._enums import DType, Layout
        try:
            layout, dtype = Layout(self.layout).name, DType(self.dtype).name
        except ValueError:
            layout, dtype = self.layout, self.dtype
        return f"TensorDesc(n={self.n}, c={self.c}, h={self.h}, w={self.w}, layout={layout}, dtype={dtype})"

    def __eq__(self, other):
        return isinstance(other, TensorDesc) and all(getattr(self, f) == getattr(other, f) for f, _ in self._fields_)

    def __hash__(self):
        return hash(tuple(getattr(self, f) for f, _ in self._fields_))


_P = ctypes.c_void_p      # any pointer: a Python int or None (NULL)
_F = ctypes.c_float
_I = ctypes.c_int         # an enum
_I64 = ctypes.c_int64
_D = ctypes.POINTER(TensorDesc)
_S = ctypes.c_int         # bnorm_status_t

# name: (restype, argtypes). Every call of bnorm.h; bnorm_dlpack.h's are not needed (the
# package reads DLPack itself and calls the plain entry points, which cover every op).
_PROTOTYPES = {
    "bnorm_get_version": (ctypes.c_int, []),
    "bnorm_status_string": (ctypes.c_char_p, [_S]),
    "bnorm_last_error": (ctypes.c_char_p, []),
    "bnorm_create": (_S, [ctypes.POINTER(_P), _I, ctypes.c_int]),
    "bnorm_destroy": (_S, [_P]),
    "bnorm_set_stream": (_S, [_P, _P]),
    "bnorm_get_stream": (_S, [_P, ctypes.POINTER(_P)]),
    "bnorm_get_backend": (_S, [_P, ctypes.POINTER(_I)]),
    "bnorm_set_cpu_threads": (_S, [_P, ctypes.c_int]),
    "bnorm_get_cpu_threads": (_S, [_P, ctypes.POINTER(ctypes.c_int)]),
    "bnorm_forward_training": (_S, [_P, _D, _P, _P, _P, _P, _F, _F, _P, _P, _P, _P]),
    "bnorm_forward_inference": (_S, [_P, _D, _P, _P, _P, _P, _P, _P, _F]),
    "bnorm_backward": (_S, [_P, _D, _P, _P, _P, _P, _P, _P, _P, _P]),
    "bnorm_forward_training_fused": (_S, [_P, _D, _P, _P, _P, _P, _P, _F, _F, _P, _P, _P, _P, _I]),
    "bnorm_forward_inference_fused": (_S, [_P, _D, _P, _P, _P, _P, _P, _P, _P, _F, _I]),
    "bnorm_backward_fused": (_S, [_P, _D, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _I]),
    "bnorm_backward_frozen": (_S, [_P, _D, _P, _P, _P, _P, _P, _F, _P, _P, _P]),
    "bnorm_fold_into_weights": (_S, [_P, _D, _P, _P, _P, _P, _P, _P, _F, _P, _P]),
    "bnorm_group_norm_forward": (_S, [_P, _D, _I64, _P, _P, _P, _P, _F, _P, _P]),
    "bnorm_group_norm_backward": (_S, [_P, _D, _I64, _P, _P, _P, _P, _P, _P, _P, _P]),
    "bnorm_instance_norm_forward": (_S, [_P, _D, _P, _P, _P, _P, _F, _P, _P]),
    "bnorm_instance_norm_backward": (_S, [_P, _D, _P, _P, _P, _P, _P, _P, _P, _P]),
    "bnorm_layer_norm_forward": (_S, [_P, _D, _P, _P, _P, _P, _F, _P, _P]),
    "bnorm_layer_norm_backward": (_S, [_P, _D, _P, _P, _P, _P, _P, _P, _P, _P]),
    "bnorm_sync_local_stats": (_S, [_P, _D, _P, _P]),
    "bnorm_sync_merge_stats": (_S, [_P, _I64, _I64, _P, _P]),
    "bnorm_sync_forward": (_S, [_P, _D, _P, _P, _P, _P, _P, _F, _F, _P, _P, _P, _P]),
    "bnorm_sync_backward_sums": (_S, [_P, _D, _P, _P, _P, _P]),
    "bnorm_sync_backward": (_S, [_P, _D, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P]),
    "bnorm_set_variant": (_S, [_P, _I, ctypes.c_char_p]),
    "bnorm_query_variant": (_S, [_P, _I, _D, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_I)]),
    "bnorm_list_variants": (_S, [_P, _I, _D, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
                                 ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_size_t)]),
    "bnorm_query_variant_grouped": (_S, [_P, _I, _D, _I64, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
                                         ctypes.POINTER(_I)]),
    "bnorm_list_variants_grouped": (_S, [_P, _I, _D, _I64, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
                                         ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_size_t)]),
    "bnorm_tuning_load": (_S, [ctypes.c_char_p]),
    "bnorm_tuning_clear": (_S, []),
}


def _beside_package():
    # The unversioned name first (a build's link), then the SONAME, then any other.
    found = sorted(glob.glob(os.path.join(_HERE, "libbnorm.so*")), key=lambda p: (len(p), p))
    return found


def _under_prefix():
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    libdirs = ["", "lib", "lib64"] + ([os.path.join("lib", multiarch)] if multiarch else [])
    out = []
    d = os.path.dirname(_HERE)  # the directory holding the package
    for _ in range(5):          # site-packages, pythonX.Y, lib[/<multiarch>], <prefix>
        for sub in libdirs:
            out += sorted(glob.glob(os.path.join(d, sub, "libbnorm.so*")), key=lambda p: (len(p), p))
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    return out


def _candidates():
    """(where, path) pairs in lookup order, after $BNORM_LIBRARY."""
    out = [("beside the package", p) for p in _beside_package()]
    out += [("in the install prefix", p) for p in _under_prefix()]
    found = ctypes.util.find_library("bnorm")
    if found:
        out.append(("from the system loader", found))
    out.append(("from the system loader", "libbnorm.so.0"))
    return out


def _bind(lib, path):
    for name, (restype, argtypes) in _PROTOTYPES.items():
        try:
            f = getattr(lib, name)
        except AttributeError:
            raise ImportError(f"bnorm: {path} has no {name}: it is older than this package "
                              f"(set {_ENV} to a matching libbnorm.so)") from None
        f.restype, f.argtypes = restype, argtypes
    return lib


def load():
    """(CDLL with every prototype set, its path, how it was found)."""
    explicit = os.environ.get(_ENV)
    if explicit:
        try:
            lib = ctypes.CDLL(explicit)
        except OSError as e:
            raise ImportError(f"bnorm: {_ENV}={explicit} cannot be loaded: {e}") from None
        return _bind(lib, explicit), explicit, f"${_ENV}"
    tried = []
    for where, path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({where}): {e}")
            continue
        return _bind(lib, path), _resolved(lib, path), where
    raise ImportError("bnorm: libbnorm.so not found. Set BNORM_LIBRARY to its path, or use the package staged "
                      "by the build (build/<preset>/python) or installed by cmake --install. Tried:\n  "
                      + "\n  ".join(tried))


def _resolved(lib, path):
    """The file the loader opened (a bare name resolves through the loader's search)."""
    if os.path.sep in path:
        return os.path.abspath(path)
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and os.path.basename(fields[-1]).startswith("libbnorm.so"):
                    return fields[-1]
    except OSError:
        pass
    return path

