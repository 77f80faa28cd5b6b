#!/usr/bin/env python3
"""PyTorch's batch norm as a benchmark peer of bnorm-bench, on the same shapes and GPU.

Times torch.nn.functional.batch_norm in training and inference mode and its backward
(torch.autograd.grad through it), timed as bnorm-bench times: CUDA events around
batches of back-to-back calls on rotating input buffers that total at least twice the
L2, after a warm-up; the median over the batches. Two rows per shape and op:

  pytorch/<op>/<shape>/default   what PyTorch runs (cuDNN where it chooses to)
  pytorch/<op>/<shape>/native    with torch.backends.cudnn disabled: its own kernels

A shape's dtype (f32, f16, bf16: torch.float32, float16, bfloat16, statistics and
parameters float32) and layout (nchw, or nhwc: memory_format=torch.channels_last) come
from the suite, and its name carries them as bnorm-bench writes it: 32x64x56x56_f16_nhwc.
A fused shape (_add_relu) has two rows per variant instead: forward training
F.relu(F.batch_norm(x, ...) + z) and its backward to x, z, weight and bias.

Columns (as in bench/results): name, impl, variant, op, shape, group, dtype, layout,
time_ms, gb_per_s, pct_floor, where gb_per_s counts the bytes the op must move (forward
2S, backward 3S; fused forward 3S, fused backward 5S; S = stored bytes of x) and
pct_floor = (bytes / copy bandwidth) / time * 100.

  python3 bench/peers/pytorch_bn.py --out pytorch.json \
      [--suite suite.json] [--groups all] [--copy-gbps 3000] [--ops all] [--target-ms 40]
  python3 bench/peers/pytorch_bn.py --device cpu --threads 2 --out pytorch_cpu.json ...

On the CPU (--device cpu, the peer of bnorm-bench-cpu; tools/cpu_bench.py runs both) the
rows are pytorch/<op>/<shape>/cpu with op forward_training, forward_inference, backward
and train_step (forward training then its backward), timed as bnorm-bench-cpu times: the
wall-clock median per call over samples of back-to-back calls on the same tensors, with
torch.set_num_threads(--threads). The calls are ATen's own (native_batch_norm and
native_batch_norm_backward, what F.batch_norm and its autograd run) without autograd's
bookkeeping around them: PyTorch's best case. --copy-gbps is then the memory bandwidth.

--suite takes the shape list of `bnorm-bench --print_suite`, so both time the same
shapes; without it the same suite is built in. --groups keeps the shapes of those suite
groups. --copy-gbps takes bnorm-bench's measured copy bandwidth so the floors agree;
without it the bandwidth is measured here the same way (device-to-device copy of 1 GiB,
bytes read + written, median of 10).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

OPS = ("forward_training", "forward_inference", "backward")
MOMENTUM, EPS = 0.1, 1e-5
ELEM_BYTES = {"f32": 4, "f16": 2, "bf16": 2}
RESNET50 = ((64, 112), (64, 56), (256, 56), (128, 28), (512, 28), (256, 14), (1024, 14), (512, 7),
            (2048, 7))


def builtin_suite():
    """bench/common/suite.cpp's suite, in its order (checked against bnorm-bench
    --print_suite by bench/peers/test_pytorch_bn.py)."""
    shapes = []

    def resnet50(batches, group, dtype="f32", layout="nchw", fused=False):
        for n in batches:
            for c, h in RESNET50:
                shapes.append(normalize({"n": n, "c": c, "h": h, "w": h, "group": group,
                                         "dtype": dtype, "layout": layout, "fused": fused}))
    resnet50((32, 256), "resnet50")
    for n, c, h, w in ((128, 6, 24, 24), (128, 16, 8, 8), (128, 120, 1, 1), (128, 84, 1, 1)):
        shapes.append(normalize({"n": n, "c": c, "h": h, "w": w, "group": "lenet"}))
    for n, c, h, w in ((3, 5, 7, 9), (2, 1, 1, 1), (65536, 3, 1, 1), (2, 4096, 1, 1)):
        shapes.append(normalize({"n": n, "c": c, "h": h, "w": w, "group": "odd"}))
    resnet50((32, 256), "resnet50-f16", dtype="f16")
    resnet50((32, 256), "resnet50-bf16", dtype="bf16")
    resnet50((32, 256), "resnet50-nhwc", layout="nhwc")
    resnet50((32,), "resnet50-nhwc-f16", dtype="f16", layout="nhwc")
    resnet50((32,), "resnet50-fused", fused=True)
    return shapes


def normalize(s):
    """A suite entry with every field: an older --print_suite (dims and group only)
    means F32, NCHW, plain."""
    s = dict(s)
    s.setdefault("group", "user")
    s.setdefault("dtype", "f32")
    s.setdefault("layout", "nchw")
    s.setdefault("fused", False)
    if s["dtype"] not in ELEM_BYTES:
        raise ValueError("unknown dtype %r in the suite" % s["dtype"])
    if s["layout"] not in ("nchw", "nhwc"):
        raise ValueError("unknown layout %r in the suite" % s["layout"])
    name = shape_name(s)
    if s.get("name", name) != name:
        raise ValueError("suite entry named %r is %r here" % (s["name"], name))
    s["name"] = name
    return s


def load_suite(path):
    with open(path) as f:
        return [normalize(s) for s in json.load(f)]


def select_groups(shapes, groups):
    """The shapes of those groups ("all" or a comma-separated list), in suite order."""
    if groups in (None, "", "all"):
        return list(shapes)
    wanted = groups.split(",")
    known = {s["group"] for s in shapes}
    unknown = [g for g in wanted if g not in known]
    if unknown:
        raise ValueError("unknown group(s): %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(known))))
    return [s for s in shapes if s["group"] in wanted]


def shape_name(s):
    """As bnorm-bench names it: NxCxHxW, then _f16 / _bf16, _nhwc, _add_relu."""
    name = "%dx%dx%dx%d" % (s["n"], s["c"], s["h"], s["w"])
    if s.get("dtype", "f32") != "f32":
        name += "_" + s["dtype"]
    if s.get("layout", "nchw") != "nchw":
        name += "_" + s["layout"]
    if s.get("fused"):
        name += "_add_relu"
    return name


def tensor_bytes(s):
    """S: the stored bytes of x."""
    return ELEM_BYTES[s.get("dtype", "f32")] * s["n"] * s["c"] * s["h"] * s["w"]


def bytes_moved(op, s):
    if s.get("fused"):
        return tensor_bytes(s) * (5 if op == "backward" else 3)
    return tensor_bytes(s) * (3 if op == "backward" else 2)


def applies(op, s):
    if op == "forward_inference":
        return not s.get("fused")
    return s["n"] * s["h"] * s["w"] >= 2


def copy_bandwidth(torch, nbytes=1 << 30):
    src = torch.rand(nbytes // 4, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(11)]
    ev[0].record()
    for i in range(10):
        dst.copy_(src)
        ev[i + 1].record()
    ev[-1].synchronize()
    ms = statistics.median(ev[i].elapsed_time(ev[i + 1]) for i in range(10))
    del src, dst
    return 2.0 * nbytes / (ms * 1e-3) / 1e9


def time_calls(torch, call, target_ms, min_samples=10, max_samples=200, sample_us=200.0,
               warmup_ms=2.0):
    """Per-call median in ms of call(k), k the rotating set; as bench/common/timing.cpp."""
    k = 0
    t0 = time.perf_counter()
    i = 0
    while True:
        call(k)
        k += 1
        i += 1
        if i >= 3 and (time.perf_counter() - t0) * 1e3 >= warmup_ms:
            break
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(3):
        call(k)
        k += 1
    b.record()
    b.synchronize()
    est = max(a.elapsed_time(b) / 3, 1e-4)
    per_sample = int(min(max(math.ceil(sample_us * 1e-3 / est), 1), 4096))
    samples = int(min(max(math.ceil(target_ms / (est * per_sample)), min_samples), max_samples))
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(samples + 1)]
    ev[0].record()
    for s in range(samples):
        for _ in range(per_sample):
            call(k)
            k += 1
        ev[s + 1].record()
    ev[-1].synchronize()
    return statistics.median(ev[s].elapsed_time(ev[s + 1]) / per_sample for s in range(samples))


MAX_SETS = 4096  # tiny shapes are launch-bound; past this, more sets change nothing but set-up time


def rotating_sets(s, l2_bytes):
    """As RotatingBuffers: enough sets that two tensors of each span twice the L2."""
    size = tensor_bytes(s)
    touched = 2 * ((size + 127) // 128 * 128)
    sets = max(1, -(-2 * l2_bytes // touched))
    if size < 4 * l2_bytes:
        sets = max(sets, 2)
    return min(sets, MAX_SETS)


def torch_dtype(torch, s):
    return {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[s.get("dtype", "f32")]


def set_stride(s):
    """Elements between sets: 256 bytes apart, as bnorm-bench lays them out."""
    per_256 = 256 // ELEM_BYTES[s.get("dtype", "f32")]
    numel = s["n"] * s["c"] * s["h"] * s["w"]
    return (numel + per_256 - 1) // per_256 * per_256


def random_sets(torch, s, sets, gen):
    """sets tensors of shape s in its dtype and layout (NHWC: a channels_last view of
    shape (n, c, h, w)), 256 bytes apart in one slab (as bnorm-bench lays them out), with
    per-channel means and spreads: never zeros."""
    n, c, h, w = s["n"], s["c"], s["h"], s["w"]
    numel = n * c * h * w
    slab = torch.empty(sets, set_stride(s), device="cuda", dtype=torch_dtype(torch, s))
    nhwc = s.get("layout", "nchw") == "nhwc"
    views = []
    for k in range(sets):
        if nhwc:
            v = slab[k, :numel].view(n, h, w, c).permute(0, 3, 1, 2)
            assert v.is_contiguous(memory_format=torch.channels_last)
        else:
            v = slab[k, :numel].view(n, c, h, w)
        mean = torch.randn(1, c, 1, 1, device="cuda", generator=gen)
        sd = 0.5 + 1.5 * torch.rand(1, c, 1, 1, device="cuda", generator=gen)
        v.copy_(mean + sd * torch.randn(n, c, h, w, device="cuda", generator=gen))
        views.append(v)
    return views


def row_for(op, s, variant):
    """A row's identifying columns, as bnorm-bench's rows have them."""
    name = shape_name(s)
    return {"name": "pytorch/%s/%s/%s" % (op, name, variant), "impl": "pytorch", "variant": variant,
            "op": op, "shape": name, "group": s.get("group", "user"), "dtype": s.get("dtype", "f32"),
            "layout": s.get("layout", "nchw")}


def measure_shape(torch, F, s, ops, l2_bytes, copy_gbps, target_ms, gen):
    rows = []
    sets = rotating_sets(s, l2_bytes)
    xs = random_sets(torch, s, sets, gen)
    dys = random_sets(torch, s, sets, gen)  # also z of a fused forward, as in bnorm-bench
    fused = bool(s.get("fused"))
    zs = random_sets(torch, s, sets, gen) if fused and "backward" in ops else None
    c = s["c"]
    weight = (0.5 + torch.rand(c, device="cuda", generator=gen)).requires_grad_(True)
    bias = (torch.rand(c, device="cuda", generator=gen) - 0.5).requires_grad_(True)
    rm = torch.rand(c, device="cuda", generator=gen) - 0.5
    rv = 0.5 + 1.5 * torch.rand(c, device="cuda", generator=gen)

    for op in ops:
        if not applies(op, s):
            continue
        for variant, cudnn_on in (("default", True), ("native", False)):
            row = row_for(op, s, variant)
            try:
                with torch.backends.cudnn.flags(enabled=cudnn_on):
                    if fused and op == "forward_training":
                        def call(k):
                            j = k % sets
                            with torch.no_grad():
                                F.relu(F.batch_norm(xs[j], rm, rv, weight, bias, True, MOMENTUM, EPS) + dys[j])
                    elif fused:
                        # relu(bn(x) + z) per set, kept; each call runs only its backward,
                        # to x, z, weight and bias (what a residual block's step needs).
                        xg = [x.detach().requires_grad_(True) for x in xs]
                        zg = [z.detach().requires_grad_(True) for z in zs]
                        ys = [F.relu(F.batch_norm(x, rm.clone(), rv.clone(), weight, bias, True, MOMENTUM, EPS) + z)
                              for x, z in zip(xg, zg)]

                        def call(k):
                            j = k % sets
                            torch.autograd.grad(ys[j], (xg[j], zg[j], weight, bias), dys[j], retain_graph=True)
                    elif op == "forward_training":
                        def call(k):
                            with torch.no_grad():
                                F.batch_norm(xs[k % sets], rm, rv, weight, bias, True, MOMENTUM, EPS)
                    elif op == "forward_inference":
                        def call(k):
                            with torch.no_grad():
                                F.batch_norm(xs[k % sets], rm, rv, weight, bias, False, MOMENTUM, EPS)
                    else:
                        # One forward graph per set, kept; each call runs only the backward.
                        xg = [x.detach().requires_grad_(True) for x in xs]
                        ys = [F.batch_norm(x, rm.clone(), rv.clone(), weight, bias, True, MOMENTUM, EPS)
                              for x in xg]

                        def call(k):
                            j = k % sets
                            torch.autograd.grad(ys[j], (xg[j], weight, bias), dys[j], retain_graph=True)
                    ms = time_calls(torch, call, target_ms)
                gbps = bytes_moved(op, s) / (ms * 1e-3) / 1e9
                row.update({"time_ms": ms, "gb_per_s": gbps, "pct_floor": 100.0 * gbps / copy_gbps})
            except RuntimeError as e:  # reported, not fatal: the other rows still count
                row["error"] = str(e).splitlines()[0]
                torch.cuda.synchronize()
            rows.append(row)
    return rows


CPU_OPS = ("forward_training", "forward_inference", "backward", "train_step")


def time_cpu(call, target_ms):
    """The wall-clock median per call: warm-up, then samples of >= 1 ms of calls."""
    t0 = time.perf_counter()
    call()
    if (time.perf_counter() - t0) < 0.1:
        call()
        call()
    t0 = time.perf_counter()
    call()
    est = max((time.perf_counter() - t0) * 1e3, 1e-4)
    per = max(1, int(1.0 / est))
    samples = []
    start = time.perf_counter()
    while len(samples) < 5 or ((time.perf_counter() - start) * 1e3 < target_ms and len(samples) < 500):
        t0 = time.perf_counter()
        for _ in range(per):
            call()
        samples.append((time.perf_counter() - t0) * 1e3 / per)
    return statistics.median(samples)


def cpu_bytes(op, s):
    return tensor_bytes(s) * {"forward_training": 2, "forward_inference": 2, "backward": 3, "train_step": 5}[op]


def measure_shape_cpu(torch, s, ops, bandwidth_gbps, target_ms, gen):
    """The rows of one shape on the CPU (see the module's doc)."""
    n, c, h, w = s["n"], s["c"], s["h"], s["w"]
    dtype = torch_dtype(torch, s)
    fmt = torch.channels_last if s.get("layout") == "nhwc" else torch.contiguous_format
    x = (0.5 + 1.5 * torch.randn(n, c, h, w, generator=gen)).to(dtype).contiguous(memory_format=fmt)
    dy = torch.randn(n, c, h, w, generator=gen).to(dtype).contiguous(memory_format=fmt)
    weight = torch.full((c,), 1.25)
    bias = torch.full((c,), -0.5)
    rm = torch.full((c,), 0.1)
    rv = torch.full((c,), 2.0)
    aten = torch.ops.aten
    _, sm, si = aten.native_batch_norm(x, weight, bias, rm, rv, True, MOMENTUM, EPS)
    mask = [True, True, True]
    calls = {
        "forward_training": lambda: aten.native_batch_norm(x, weight, bias, rm, rv, True, MOMENTUM, EPS),
        "forward_inference": lambda: aten.native_batch_norm(x, weight, bias, rm, rv, False, MOMENTUM, EPS),
        "backward": lambda: aten.native_batch_norm_backward(dy, x, weight, rm, rv, sm, si, True, EPS, mask),
    }

    def step():
        _, m, i = aten.native_batch_norm(x, weight, bias, rm, rv, True, MOMENTUM, EPS)
        aten.native_batch_norm_backward(dy, x, weight, rm, rv, m, i, True, EPS, mask)
    calls["train_step"] = step
    rows = []
    for op in ops:
        if op != "forward_inference" and n * h * w < 2:
            continue
        if s.get("fused"):
            continue
        row = row_for(op, s, "cpu")
        row["name"] = "pytorch/%s/%s/cpu" % (op, shape_name(s))
        with torch.no_grad():
            ms = time_cpu(calls[op], target_ms)
        gbps = cpu_bytes(op, s) / (ms * 1e-3) / 1e9
        row.update({"time_ms": ms, "gb_per_s": gbps, "pct_floor": 100.0 * gbps / bandwidth_gbps,
                    "threads": torch.get_num_threads()})
        rows.append(row)
    return rows


def main_cpu(args, shapes):
    import torch
    torch.set_num_threads(args.threads)
    ops = CPU_OPS if args.ops == "all" else tuple(args.ops.split(","))
    bw = args.copy_gbps
    if not bw:
        a = torch.ones(1 << 28, dtype=torch.uint8)
        b = torch.empty_like(a)
        b.copy_(a)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            b.copy_(a)
            times.append(time.perf_counter() - t0)
        bw = 2.0 * a.numel() / statistics.median(times) / 1e9
    context = {"device": "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(),
               "memory_bandwidth_gb_per_s": bw, "memory_bandwidth_measured_here": not args.copy_gbps}
    print("pytorch_bn.py: CPU, torch %s, %d threads, memory bandwidth %.1f GB/s"
          % (torch.__version__, torch.get_num_threads(), bw), file=sys.stderr)
    gen = torch.Generator()
    gen.manual_seed(args.seed)
    rows = []
    for s in shapes:
        new = measure_shape_cpu(torch, s, ops, bw, args.target_ms, gen)
        rows += new
        for r in new:
            print("%-50s %10.4f ms %8.1f GB/s %6.1f%%" % (r["name"], r["time_ms"], r["gb_per_s"], r["pct_floor"]),
                  file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump({"context": context, "rows": rows}, f, indent=1)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--suite", help="shapes as printed by bnorm-bench --print_suite")
    ap.add_argument("--groups", default="all", help="all or a comma-separated list of suite groups")
    ap.add_argument("--ops", default="all", help="all or a comma-separated list of " + ", ".join(OPS))
    ap.add_argument("--copy-gbps", type=float, default=0.0,
                    help="device copy bandwidth (GB/s, read + write) for the floor; measured if 0")
    ap.add_argument("--target-ms", type=float, default=40.0, help="device time per row's samples")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (--device cpu; 0: torch's default)")
    args = ap.parse_args()
    if args.device == "cpu":
        shapes = load_suite(args.suite) if args.suite else builtin_suite()
        try:
            shapes = select_groups(shapes, args.groups)
        except ValueError as e:
            ap.error(str(e))
        if args.threads <= 0:
            import os
            args.threads = os.cpu_count() or 1
        for op in ([] if args.ops == "all" else args.ops.split(",")):
            if op not in CPU_OPS:
                ap.error("unknown op %r" % op)
        return main_cpu(args, shapes)

    ops = OPS if args.ops == "all" else tuple(args.ops.split(","))
    for op in ops:
        if op not in OPS:
            ap.error("unknown op %r" % op)
    shapes = load_suite(args.suite) if args.suite else builtin_suite()
    try:
        shapes = select_groups(shapes, args.groups)
    except ValueError as e:
        ap.error(str(e))

    import torch
    import torch.nn.functional as F
    if not torch.cuda.is_available():
        print("pytorch_bn.py: no CUDA device: nothing to measure", file=sys.stderr)
        with open(args.out, "w") as f:
            json.dump({"context": {"error": "no CUDA device"}, "rows": []}, f, indent=1)
        return 0
    props = torch.cuda.get_device_properties(0)
    l2_bytes = getattr(props, "L2_cache_size", 50 << 20)
    copy_gbps = args.copy_gbps or copy_bandwidth(torch)
    context = {
        "gpu": props.name,
        "sm_count": props.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "copy_bandwidth_gb_per_s": copy_gbps,
        "copy_bandwidth_measured_here": not args.copy_gbps,
    }
    print("pytorch_bn.py: %s, torch %s, cuDNN %s, copy bandwidth %.1f GB/s"
          % (props.name, torch.__version__, context["cudnn"], copy_gbps), file=sys.stderr)
    gen = torch.Generator(device="cuda")
    gen.manual_seed(args.seed)
    rows = []
    write_rows(args.out, context, rows)
    for s in shapes:
        new = measure_shape(torch, F, s, ops, l2_bytes, copy_gbps, args.target_ms, gen)
        rows += new
        torch.cuda.empty_cache()
        for r in new:
            if "time_ms" in r:
                print("%-50s %10.4f ms %8.1f GB/s %6.1f%%" % (r["name"], r["time_ms"], r["gb_per_s"],
                                                          r["pct_floor"]), file=sys.stderr)
        # After every shape: a run stopped on its time budget (tools/gpu_check.sh) keeps
        # the shapes it measured.
        write_rows(args.out, context, rows)
    return 0


def write_rows(path, context, rows):
    """The results so far, replacing the file at once (never half written)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"context": context, "rows": rows}, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
