"""What the Python tests share: the command line (--device cpu|cuda), the skip protocol
(exit 77, ctest's SKIP_RETURN_CODE, with the reason printed), and the error measure.

    python3 python/tests/test_api.py [--device cuda] [unittest arguments]

bnorm is imported from this source tree's python/, with libbnorm.so from $BNORM_LIBRARY
(ctest sets it to the build's library). With
BNORM_REQUIRE_CUDA=1 a CUDA run that cannot run (no torch with CUDA, no GPU) fails
instead of skipping: the GPU check sets it, so a GPU machine never reports these as
merely skipped.
"""
import argparse
import os
import sys

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))


def skip(reason):
    if os.environ.get("BNORM_REQUIRE_CUDA") == "1" and DEVICE == "cuda":
        print(f"FAILED: cannot run on CUDA: {reason} (BNORM_REQUIRE_CUDA=1)")
        sys.exit(1)
    print(f"skipped: {reason}")
    sys.exit(SKIP)


def parse():
    """--device, and the rest for unittest."""
    global DEVICE
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args, rest = ap.parse_known_args()
    DEVICE = args.device
    return args.device, [sys.argv[0]] + rest


DEVICE = "cpu"


def import_bnorm():
    """This tree's package, whatever else is installed (the library: $BNORM_LIBRARY or the
    package's own lookup)."""
    sys.path.insert(0, os.path.abspath(os.path.join(HERE, os.pardir)))
    import bnorm
    return bnorm


def rel_err(got, want, scale=None):
    """max|got - want| / scale (default max|want|), in float64; inf for a non-finite got."""
    import numpy as np
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape} != {want.shape}")
    if not np.isfinite(got).all():
        return float("inf")
    s = float(np.abs(want).max()) if scale is None else float(scale)
    return float(np.abs(got - want).max()) / max(s, 1e-30) if got.size else 0.0
