"""Batch norm on torch tensors through bnorm: the autograd function and its functional
forms. Forward and backward are bnorm's calls on the tensors' own memory (contiguous or
channels last; anything else is made contiguous first), on a handle per (device, thread)
bound to the tensor's current CUDA stream.
"""
import threading

import torch

import bnorm
from bnorm import _arrays
from bnorm._enums import Activation, Backend

_local = threading.local()
_cpu_backend = Backend.CPU


def set_cpu_backend(backend):
    """The bnorm backend that runs CPU tensors (a Backend or its name; default "cpu")."""
    global _cpu_backend
    _cpu_backend = bnorm._enums.coerce(Backend, backend, "backend")
    if _cpu_backend == Backend.CUDA:
        raise ValueError("CPU tensors need a host backend, not cuda")


def handle_for(device):
    """The calling thread's bnorm handle for a torch device; for CUDA, bound to that
    device's current stream (as torch's own kernels are)."""
    handles = getattr(_local, "handles", None)
    if handles is None:
        handles = _local.handles = {}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        key = (Backend.CUDA, index)
    elif device.type == "cpu":
        index, key = 0, (_cpu_backend, 0)
    else:
        raise bnorm.NotSupportedError(f"tensors on {device}: bnorm runs CPU and CUDA tensors")
    h = handles.get(key)
    if h is None:
        h = handles[key] = bnorm.Handle(key[0], index)
    if key[0] == Backend.CUDA:
        stream = torch.cuda.current_stream(index).cuda_stream
        if stream != h._stream:
            h.set_stream(stream)
    return h


def _borrowable(x):
    """x itself where bnorm can read its memory (contiguous or channels last), else a
    contiguous copy."""
    if _arrays.layout_of(_arrays.borrow(x)) is None:
        return x.contiguous()
    return x


def _laid_out_like(t, ref):
    """t in ref's memory layout (t itself when it already is)."""
    if t.stride() == ref.stride() or t.numel() == 0:
        return t
    b, r = _arrays.borrow(t), _arrays.borrow(ref)
    ref_layout = _arrays.layout_of(r)
    if _arrays.layout_of(b) == ref_layout or (ref_layout is not None and _arrays._has_layout(b, ref_layout)):
        return t
    out = torch.empty_like(ref, dtype=t.dtype)  # dense: empty_like keeps ref's strides
    out.copy_(t)
    return out


def _f32(t):
    """A per-channel tensor as contiguous float32 (a copy only when it is not)."""
    if t is None:
        return None
    t = t.detach()
    if t.dtype != torch.float32:
        t = t.float()
    return t.contiguous()


class BatchNormFunction(torch.autograd.Function):
    """act(batch_norm(x) + z) with bnorm's forward and backward. In training the batch
    statistics are used and running_mean/var (if given) updated in place; otherwise the
    running statistics, and the backward holds them fixed (bnorm_backward_frozen)."""

    @staticmethod
    def forward(ctx, x, weight, bias, z, running_mean, running_var, training, momentum, eps, act):
        h = handle_for(x.device)
        xc = _borrowable(x)
        zc = None if z is None else _laid_out_like(z, xc)
        w, b = _f32(weight), _f32(bias)
        y = torch.empty_like(xc)
        fused = act != Activation.IDENTITY or zc is not None
        c = x.shape[1]
        if training:
            # bnorm updates float32 running statistics in place; others go through a copy.
            rm, rv = _f32(running_mean), _f32(running_var)
            sm = torch.empty(c, dtype=torch.float32, device=x.device)
            si = torch.empty(c, dtype=torch.float32, device=x.device)
            if fused:
                h.forward_training_fused(xc, zc, y, w, b, momentum, eps, rm, rv, sm, si, act)
            else:
                h.forward_training(xc, y, w, b, momentum, eps, rm, rv, sm, si)
            for mine, theirs in ((rm, running_mean), (rv, running_var)):
                if theirs is not None and mine.data_ptr() != theirs.data_ptr():
                    theirs.copy_(mine)
            stats = (sm, si)
        else:
            rm, rv = _f32(running_mean), _f32(running_var)
            if fused:
                h.forward_inference_fused(xc, zc, y, w, b, rm, rv, eps, act)
            else:
                h.forward_inference(xc, y, w, b, rm, rv, eps)
            # The constants of this forward, whatever happens to the buffers later (only
            # when a backward can follow: no copies under no_grad).
            stats = (rm.clone(), rv.clone()) if any(ctx.needs_input_grad[:4]) else (None, None)
        ctx.training, ctx.eps, ctx.act, ctx.has_z = training, eps, act, z is not None
        ctx.has_weight = weight is not None
        ctx.param_dtypes = (None if weight is None else weight.dtype, None if bias is None else bias.dtype)
        ctx.save_for_backward(xc, w, y if act == Activation.RELU else None, *stats)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        xc, w, y, s0, s1 = ctx.saved_tensors
        need_x, need_w, need_b, need_z = ctx.needs_input_grad[:4]
        if not (need_x or need_w or need_b or need_z):
            return (None,) * 10
        h = handle_for(xc.device)
        dy = _laid_out_like(dy, xc)
        dx = torch.empty_like(xc)
        c = xc.shape[1]
        dg = torch.empty(c, dtype=torch.float32, device=xc.device) if need_w else None
        db = torch.empty(c, dtype=torch.float32, device=xc.device) if need_b else None
        dz = None
        if ctx.training:
            if ctx.act != Activation.IDENTITY or ctx.has_z:
                dz = torch.empty_like(xc) if need_z else None
                h.backward_fused(xc, y, dy, w, s0, s1, dx, dz, dg, db, ctx.act)
            else:
                h.backward(xc, dy, w, s0, s1, dx, dg, db)
        else:
            g = dy
            if ctx.act == Activation.RELU:
                g = torch.where(y > 0, dy, torch.zeros((), dtype=dy.dtype, device=dy.device))
            if ctx.has_z and need_z:
                dz = g
            h.backward_frozen(xc, g, w, s0, s1, ctx.eps, dx, dg, db)
        wd, bd = ctx.param_dtypes
        if dg is not None and wd != torch.float32:
            dg = dg.to(wd)
        if db is not None and bd != torch.float32:
            db = db.to(bd)
        return dx if need_x else None, dg, db, dz, None, None, None, None, None, None


def _verify(input, training, running_mean, running_var):
    if input.dim() < 2:
        raise ValueError(f"expected an input of at least 2 dimensions (N, C, ...), got {input.dim()}")
    if training:
        size = input.shape
        values = size[0]
        for s in size[2:]:
            values *= s
        if values == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {size}")
    elif running_mean is None or running_var is None:
        raise ValueError("batch norm in evaluation mode needs running_mean and running_var")


def _run(input, z, running_mean, running_var, weight, bias, training, momentum, eps, act):
    _verify(input, training, running_mean, running_var)
    if momentum is None:
        momentum = 0.0
    return BatchNormFunction.apply(input, weight, bias, z, running_mean, running_var, bool(training), float(momentum),
                                   float(eps), act)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """torch.nn.functional.batch_norm, through bnorm."""
    return _run(input, None, running_mean, running_var, weight, bias, training, momentum, eps, Activation.IDENTITY)


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5):
    """relu(batch_norm(input)) in one pass (bnorm's fused ReLU epilogue)."""
    return _run(input, None, running_mean, running_var, weight, bias, training, momentum, eps, Activation.RELU)


def batch_norm_add_relu(input, residual, running_mean, running_var, weight=None, bias=None, training=False,
                        momentum=0.1, eps=1e-5):
    """relu(batch_norm(input) + residual), the residual block's tail, in one pass; the
    residual gets its gradient too."""
    if residual is None or residual.shape != input.shape:
        raise ValueError(f"residual must have the input's shape {tuple(input.shape)}, got "
                         f"{None if residual is None else tuple(residual.shape)}")
    return _run(input, residual, running_mean, running_var, weight, bias, training, momentum, eps, Activation.RELU)
