"""Shared by the stand-ins of tools/gpu_check_sim.sh: the stand-in device, the suite as
the real bnorm-bench prints it, and made-up times (a bandwidth model, not a
measurement: nothing a stand-in writes is a result)."""
import json
import os
import subprocess

GPU = "NVIDIA H200 (stand-in)"
COPY_GBPS = 4300.0  # the device README's figure, standing in for a measurement
ELEM = {"f32": 4, "f16": 2, "bf16": 2}


def real(binary):
    return os.path.join(os.environ["BNORM_SIM_REAL_BUILD"], binary)


def suite(args):
    """The shapes of bnorm-bench --print_suite with these selection arguments."""
    out = subprocess.run([real("bench/bnorm-bench")] + list(args) + ["--print_suite"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def ops(shape):
    if shape.get("fused"):
        return ["forward_training", "backward"]
    train = shape["n"] * shape["h"] * shape["w"] >= 2
    return (["forward_training"] if train else []) + ["forward_inference"] + (["backward"] if train else [])


def nbytes(op, shape):
    s = ELEM[shape["dtype"]] * shape["n"] * shape["c"] * shape["h"] * shape["w"]
    k = (5 if op == "backward" else 3) if shape.get("fused") else (3 if op == "backward" else 2)
    return s * k


def model_ms(op, shape, efficiency):
    """Bytes over a fraction of the copy bandwidth, plus a launch's worth of time."""
    return nbytes(op, shape) / (efficiency * COPY_GBPS * 1e9) * 1e3 + 0.006
