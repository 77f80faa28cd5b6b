"""The C API's enums (include/bnorm/bnorm.h), value for value: the values are its ABI.

A value added to the header is one line here; Handle("name") accepts every Backend by
its lower-case name, so a new backend needs no other change.
"""
import enum


class Status(enum.IntEnum):
    SUCCESS = 0
    INVALID_VALUE = 1
    NOT_SUPPORTED = 2
    ALLOC_FAILED = 3
    NO_DEVICE = 4
    CUDA_ERROR = 5
    INTERNAL_ERROR = 6
    COMMUNICATION_ERROR = 7


class Backend(enum.IntEnum):
    CPU = 0
    CUDA = 1


class Layout(enum.IntEnum):
    NCHW = 0
    NHWC = 1  # channels last


class DType(enum.IntEnum):
    F32 = 0
    F16 = 1
    BF16 = 2


class Op(enum.IntEnum):
    FORWARD_TRAINING = 0
    FORWARD_INFERENCE = 1
    BACKWARD = 2
    BACKWARD_FROZEN = 3
    GROUP_NORM_FORWARD = 4
    GROUP_NORM_BACKWARD = 5
    LAYER_NORM_FORWARD = 6
    LAYER_NORM_BACKWARD = 7
    FOLD = 8
    SYNC_LOCAL_STATS = 9
    SYNC_FORWARD = 10
    SYNC_BACKWARD_SUMS = 11
    SYNC_BACKWARD = 12


class Activation(enum.IntEnum):
    IDENTITY = 0
    RELU = 1


class Choice(enum.IntEnum):
    """Why dispatch chose a variant (bnorm_query_variant)."""
    OVERRIDE = 0
    CACHE = 1
    NEAREST = 2
    HEURISTIC = 3
    ONLY = 4


def coerce(enum_type, value, what):
    """An enum member from a member, an int or a case-insensitive name."""
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str):
        try:
            return enum_type[value.upper()]
        except KeyError:
            names = ", ".join(m.name.lower() for m in enum_type)
            raise ValueError(f"{what}: {value!r} is not one of {names}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return enum_type(value)
        except ValueError:
            raise ValueError(f"{what}: {value} is not a {enum_type.__name__} value") from None
    raise TypeError(f"{what}: expected a {enum_type.__name__}, a name or an int, got {type(value).__name__}")
