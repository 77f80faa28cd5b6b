#!/usr/bin/env python3
"""bnorm's Python wrapper (python/bnorm) on arrays through DLPack: every call against a
float64 NumPy reference on fresh random inputs with outputs poisoned (NaN) first; bad
arguments raising bnorm.Error subclasses with the status and a message, and writing
nothing; the handle, stream, variant and tuning calls; finding libbnorm.so.

    python3 python/tests/test_api.py [--device cpu|cuda]

--device cpu: NumPy arrays (NumPy >= 1.22 speaks DLPack), and torch tensors where torch
is present. --device cuda: torch CUDA tensors, read directly and through their DLPack
capsules. Exit 77 (skipped) without NumPy, or for cuda without torch with CUDA or a GPU.

Tolerances are those of float32 kernels, not of float64-exact ones: an output is a few
float32 roundings of its own scale, |got - want| <= 1e-4 * max|want| (the saved and
running statistics 1e-5; sums over the batch relative to the sum of their terms'
magnitudes; dx relative to max|gamma*dy|*max(invstd), the size of the terms it is a
difference of). At |mean|/std = 1e4 the fp32 mean carries an error of a few ulp(|mean|),
which reaches y as ~|mean|/std * 2^-24 per ulp: the output bound grows as
1e-4 * max(1, (|mean|/std) / 500), the CUDA tests' 2e-3 at 1e4. float16: 2^-11 per
rounding, 2e-3.
"""
import os
import subprocess
import sys
import tempfile
import unittest

import _common

DEVICE, ARGV = _common.parse()
try:
    import numpy as np
except ImportError as e:
    _common.skip(f"{e} (Debian: python3-numpy)")
if not hasattr(np.ndarray, "__dlpack__"):
    _common.skip(f"NumPy {np.__version__} has no __dlpack__ (NumPy >= 1.22)")
try:
    import torch
except ImportError:
    torch = None
if DEVICE == "cuda" and (torch is None or not torch.cuda.is_available()):
    _common.skip("torch with CUDA and a GPU are needed for --device cuda" if torch is None
                 else f"torch {torch.__version__} sees no CUDA device")
bnorm = _common.import_bnorm()
if DEVICE == "cuda" and not bnorm.cuda_available():
    _common.skip("bnorm reports no CUDA device")

rel_err = _common.rel_err
OUT_TOL, STAT_TOL, F16_TOL = 1e-4, 1e-5, 2e-3
EPS = 1e-5


class DLPackOnly:
    """Hides everything of an array but the DLPack protocol: the capsule path."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, stream=None):
        if stream is None:
            return self.a.__dlpack__()
        return self.a.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


class Arrays:
    """NumPy on the CPU, torch CUDA tensors on CUDA: put() places a NumPy array, get()
    reads one back (after the device's work)."""

    def __init__(self, device):
        self.cuda = device == "cuda"

    def put(self, a, channels_last=False):
        a = np.array(a, copy=True)
        if channels_last:
            a = np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, -1)), -1, 1)
        if not self.cuda:
            return a
        t = torch.from_numpy(np.ascontiguousarray(a)).cuda()
        if channels_last:
            t = t.movedim(1, -1).contiguous().movedim(-1, 1)
        return t

    def get(self, t):
        if self.cuda:
            torch.cuda.synchronize()
            return t.cpu().numpy()
        return np.array(t)

    def nan(self, shape, dtype=np.float32, channels_last=False):
        return self.put(np.full(shape, np.nan, dtype=dtype), channels_last)


A = Arrays(DEVICE)


def f64(a):
    return np.asarray(a, dtype=np.float64)


def axes(x):
    return (0,) + tuple(range(2, x.ndim))


def per_channel(v, x):
    return np.asarray(v).reshape((1, -1) + (1,) * (x.ndim - 2))


def inputs(shape, seed, mean_scale=1.0, dtype=np.float32):
    """x with per-channel means ~ mean_scale and spreads in [0.5, 2], dy, gamma, beta:
    the values bnorm sees (rounded to dtype), which the reference starts from."""
    r = np.random.default_rng(seed)
    c = shape[1]
    means = r.standard_normal(c) * mean_scale
    spreads = r.uniform(0.5, 2.0, c)
    x = (r.standard_normal(shape) * per_channel(spreads, np.empty(shape)) + per_channel(means, np.empty(shape)))
    dy = r.standard_normal(shape)
    gamma = r.uniform(0.5, 1.5, c).astype(np.float32)
    beta = r.standard_normal(c).astype(np.float32)
    return x.astype(dtype), dy.astype(dtype), gamma, beta


def ref_forward(x, gamma, beta, eps=EPS):
    x = f64(x)
    mean = x.mean(axis=axes(x))
    var = x.var(axis=axes(x))
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - per_channel(mean, x)) * per_channel(invstd, x)
    g = np.ones_like(mean) if gamma is None else f64(gamma)
    b = np.zeros_like(mean) if beta is None else f64(beta)
    return xhat * per_channel(g, x) + per_channel(b, x), mean, var, invstd, xhat


def ref_backward(dy, xhat, gamma, invstd):
    dy = f64(dy)
    m = dy.size // dy.shape[1]
    dbeta = dy.sum(axis=axes(dy))
    dgamma = (dy * xhat).sum(axis=axes(dy))
    g = np.ones_like(dbeta) if gamma is None else f64(gamma)
    dx = per_channel(g * invstd / m, dy) * (m * dy - per_channel(dbeta, dy) - xhat * per_channel(dgamma, dy))
    return dx, dgamma, dbeta, np.abs(dy).sum(axis=axes(dy)).max(), np.abs(dy * xhat).sum(axis=axes(dy)).max()


def dx_scale(dy, gamma, invstd):
    return float(np.abs(f64(dy) * per_channel(f64(gamma), dy)).max() * np.max(invstd))


class Case(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.h = bnorm.Handle(DEVICE)

    @classmethod
    def tearDownClass(cls):
        cls.h.close()

    def close(self, got, want, tol, what, scale=None):
        err = rel_err(A.get(got) if not isinstance(got, np.ndarray) else got, want, scale)
        self.assertLessEqual(err, tol, f"{what}: relative error {err:.3g} > {tol:.3g}")


class BatchNorm(Case):
    SHAPES = [(8, 3, 5, 7), (2, 6, 4, 4), (16, 5), (3, 4, 13), (2, 3, 3, 4, 5), (65, 2, 1, 3), (2, 1, 1, 1)]

    def run_batch_norm(self, shape, channels_last, mean_scale=1.0, momentum=0.1, affine=True, wrap=lambda a: a):
        x, dy, gamma, beta = inputs(shape, sum(shape) + 7 * channels_last, mean_scale)
        if not affine:
            gamma = beta = None
        c = shape[1]
        rng = np.random.default_rng(1)
        rm0 = rng.standard_normal(c).astype(np.float32)
        rv0 = rng.uniform(0.5, 1.5, c).astype(np.float32)
        y_ref, mean, var, invstd, xhat = ref_forward(x, gamma, beta)
        m = x.size // c
        dx_ref, dg_ref, db_ref, db_scale, dg_scale = ref_backward(dy, xhat, gamma, invstd)

        cl = channels_last and len(shape) > 2
        xd, dyd = A.put(x, cl), A.put(dy, cl)
        y, dx = A.nan(shape, channels_last=cl), A.nan(shape, channels_last=cl)
        g = None if gamma is None else A.put(gamma)
        b = None if beta is None else A.put(beta)
        rm, rv = A.put(rm0), A.put(rv0)
        sm, si, dg, db = (A.nan((c,)) for _ in range(4))
        self.h.forward_training(wrap(xd), wrap(y), wrap(g) if g is not None else None,
                                wrap(b) if b is not None else None, momentum, EPS, wrap(rm), wrap(rv), wrap(sm),
                                wrap(si))
        self.h.backward(wrap(xd), wrap(dyd), g, wrap(sm), wrap(si), wrap(dx), dg, db)
        out_tol = OUT_TOL * max(1.0, mean_scale / 500)
        self.close(y, y_ref, out_tol, "y")
        stat_scale = np.abs(mean).max() + np.sqrt(var.max())
        self.close(sm, mean, STAT_TOL, "save_mean", stat_scale)
        self.close(si, invstd, STAT_TOL * max(1.0, mean_scale / 500), "save_invstd")
        self.close(rm, (1 - momentum) * f64(rm0) + momentum * mean, STAT_TOL, "running_mean",
                   np.abs(rm0).max() + stat_scale)
        self.close(rv, (1 - momentum) * f64(rv0) + momentum * var * m / (m - 1),
                   STAT_TOL * max(1.0, mean_scale / 500), "running_var (unbiased)")
        self.close(dx, dx_ref, OUT_TOL * max(1.0, mean_scale / 500), "dx",
                   dx_scale(dy, np.ones(c) if gamma is None else gamma, invstd))
        self.close(dg, dg_ref, OUT_TOL, "dgamma", dg_scale)
        self.close(db, db_ref, OUT_TOL, "dbeta", db_scale)

        # Inference with the updated running statistics.
        rmf, rvf = f64(A.get(rm)), f64(A.get(rv))
        gg = np.ones(c) if gamma is None else f64(gamma)
        bb = np.zeros(c) if beta is None else f64(beta)
        yi_ref = (f64(x) - per_channel(rmf, x)) / np.sqrt(per_channel(rvf, x) + EPS) * per_channel(gg, x) \
            + per_channel(bb, x)
        yi = A.nan(shape, channels_last=cl)
        self.h.forward_inference(wrap(xd), wrap(yi), g, b, wrap(rm), wrap(rv), EPS)
        self.close(yi, yi_ref, out_tol, "inference y")

    def test_training_backward_inference(self):
        for shape in self.SHAPES:
            for cl in (False, True):
                with self.subTest(shape=shape, channels_last=cl):
                    self.run_batch_norm(shape, cl)

    def test_large_mean_and_without_affine(self):
        for shape in [(16, 3, 7, 5), (257, 2)]:
            for cl in (False, True):
                with self.subTest(shape=shape, channels_last=cl):
                    self.run_batch_norm(shape, cl, mean_scale=1e4, momentum=0.3)
        self.run_batch_norm((4, 3, 5, 5), False, affine=False, momentum=1.0)
        self.run_batch_norm((4, 3, 5, 5), True, affine=False, momentum=0.0)

    def test_through_dlpack_capsules(self):
        # Every array through __dlpack__ alone, as a consumer that knows only the protocol.
        self.run_batch_norm((5, 4, 3, 3), False, wrap=DLPackOnly)
        self.run_batch_norm((5, 4, 3, 3), True, wrap=DLPackOnly)

    def test_tiny_and_huge_channels(self):
        # One channel's spread 1e-3, the next 1e3: each is normalised by its own statistics.
        r = np.random.default_rng(5)
        x = r.standard_normal((6, 2, 4, 4))
        x[:, 0] *= 1e-3
        x[:, 1] = x[:, 1] * 1e3 + 5e3
        x = x.astype(np.float32)
        y_ref, mean, _, invstd, _ = ref_forward(x, None, None)
        y, si = A.nan(x.shape), A.nan((2,))
        self.h.forward_training(A.put(x), y, None, None, 0.1, EPS, None, None, None, si)
        got = A.get(y)
        for ch in range(2):
            self.assertLessEqual(rel_err(got[:, ch], y_ref[:, ch]), OUT_TOL * 10, f"channel {ch}")
        self.close(si, invstd, 1e-4, "save_invstd")

    def test_float16(self):
        shape = (4, 3, 6, 5)
        x, dy, gamma, beta = inputs(shape, 3, 2.0, np.float16)
        y_ref, _, _, invstd, xhat = ref_forward(x, gamma, beta)
        xd, y = A.put(x), A.nan(shape, np.float16)
        sm, si = A.nan((3,)), A.nan((3,))
        self.h.forward_training(xd, y, A.put(gamma), A.put(beta), 0.1, EPS, None, None, sm, si)
        self.close(y, y_ref, F16_TOL, "float16 y")
        dx = A.nan(shape, np.float16)
        self.h.backward(xd, A.put(dy), A.put(gamma), sm, si, dx)
        self.close(dx, ref_backward(dy, xhat, gamma, invstd)[0], F16_TOL, "float16 dx", dx_scale(dy, gamma, invstd))

    def test_in_place_and_empty_batch(self):
        x, _, gamma, beta = inputs((4, 3, 5, 2), 9)
        y_ref = ref_forward(x, gamma, beta)[0]
        xd = A.put(x)
        self.h.forward_training(xd, xd, A.put(gamma), A.put(beta))  # y may alias x
        self.close(xd, y_ref, OUT_TOL, "in-place y")
        # n = 0: accepted, nothing moved, running statistics untouched.
        rm, rv = A.put(np.array([1, 2, 3], np.float32)), A.put(np.array([4, 5, 6], np.float32))
        empty = A.put(np.zeros((0, 3, 4, 4), np.float32))
        self.h.forward_training(empty, A.put(np.zeros((0, 3, 4, 4), np.float32)), None, None, 0.5, EPS, rm, rv)
        self.assertEqual(A.get(rm).tolist(), [1, 2, 3])
        self.assertEqual(A.get(rv).tolist(), [4, 5, 6])

    def test_fused_relu_and_add(self):
        shape = (6, 4, 3, 5)
        x, dy, gamma, beta = inputs(shape, 11)
        z = np.random.default_rng(12).standard_normal(shape).astype(np.float32)
        bn, _, _, invstd, xhat = ref_forward(x, gamma, beta)
        for with_z in (False, True):
            with self.subTest(add=with_z):
                pre = bn + (f64(z) if with_z else 0.0)
                y_ref = np.maximum(pre, 0.0)
                xd, zd, y = A.put(x), A.put(z) if with_z else None, A.nan(shape)
                sm, si = A.nan((4,)), A.nan((4,))
                self.h.forward_training_fused(xd, zd, y, A.put(gamma), A.put(beta), 0.1, EPS, None, None, sm, si,
                                              "relu")
                self.close(y, y_ref, OUT_TOL, "fused y")
                # The backward's mask is the fused forward's y > 0.
                mask = A.get(y) > 0
                gref = f64(dy) * mask
                dx_ref, dg_ref, db_ref, dbs, dgs = ref_backward(gref, xhat, gamma, invstd)
                dx, dz, dg, db = A.nan(shape), A.nan(shape) if with_z else None, A.nan((4,)), A.nan((4,))
                self.h.backward_fused(xd, y, A.put(dy), A.put(gamma), sm, si, dx, dz, dg, db, bnorm.Activation.RELU)
                self.close(dx, dx_ref, OUT_TOL, "fused dx", dx_scale(dy, gamma, invstd))
                self.close(dg, dg_ref, OUT_TOL, "fused dgamma", dgs)
                self.close(db, db_ref, OUT_TOL, "fused dbeta", dbs)
                if with_z:
                    self.close(dz, gref, 0.0, "dz = masked dy")
                # Inference fused with running statistics 0 and 1.
                yi = A.nan(shape)
                rm0, rv0 = A.put(np.zeros(4, np.float32)), A.put(np.ones(4, np.float32))
                self.h.forward_inference_fused(xd, zd, yi, A.put(gamma), A.put(beta), rm0, rv0, EPS, "relu")
                inf = f64(x) / np.sqrt(1 + EPS) * per_channel(gamma, x) + per_channel(beta, x)
                self.close(yi, np.maximum(inf + (f64(z) if with_z else 0.0), 0), OUT_TOL, "fused inference y")

    def test_backward_frozen(self):
        shape = (5, 3, 4, 6)
        x, dy, gamma, beta = inputs(shape, 21)
        rmv = np.array([0.5, -1.0, 2.0], np.float32)
        rvv = np.array([0.7, 1.3, 2.1], np.float32)
        invstd = 1 / np.sqrt(f64(rvv) + EPS)
        xhat = (f64(x) - per_channel(rmv, x)) * per_channel(invstd, x)
        dx_ref = f64(dy) * per_channel(f64(gamma) * invstd, x)
        dx, dg, db = A.nan(shape), A.nan((3,)), A.nan((3,))
        self.h.backward_frozen(A.put(x), A.put(dy), A.put(gamma), A.put(rmv), A.put(rvv), EPS, dx, dg, db)
        self.close(dx, dx_ref, OUT_TOL, "frozen dx")
        self.close(dg, (f64(dy) * xhat).sum(axis=(0, 2, 3)), OUT_TOL, "frozen dgamma",
                   np.abs(f64(dy) * xhat).sum(axis=(0, 2, 3)).max())
        self.close(db, f64(dy).sum(axis=(0, 2, 3)), OUT_TOL, "frozen dbeta", np.abs(dy).sum(axis=(0, 2, 3)).max())
        dx2 = A.nan(shape)
        self.h.backward_frozen(None, A.put(dy), A.put(gamma), A.put(rmv), A.put(rvv), EPS, dx2)  # no x needed
        self.close(dx2, dx_ref, OUT_TOL, "frozen dx without x")

    def test_fold_into_weights(self):
        r = np.random.default_rng(31)
        w = r.standard_normal((6, 3, 5, 5)).astype(np.float32)
        bias = r.standard_normal(6).astype(np.float32)
        gamma, beta = r.uniform(0.5, 1.5, 6).astype(np.float32), r.standard_normal(6).astype(np.float32)
        rmv, rvv = r.standard_normal(6).astype(np.float32), r.uniform(0.2, 2, 6).astype(np.float32)
        s = f64(gamma) / np.sqrt(f64(rvv) + EPS)
        for cl in (False, True):
            with self.subTest(channels_last=cl):
                wo, bo = A.nan(w.shape, channels_last=cl), A.nan((6,))
                self.h.fold_into_weights(A.put(w, cl), A.put(bias), A.put(gamma), A.put(beta), A.put(rmv),
                                         A.put(rvv), EPS, wo, bo)
                self.close(wo, f64(w) * s.reshape(6, 1, 1, 1), OUT_TOL, "folded weight")
                self.close(bo, (f64(bias) - rmv) * s + beta, OUT_TOL, "folded bias")
        # A linear layer's (C_out, C_in) weights, no bias.
        w2 = r.standard_normal((6, 10)).astype(np.float32)
        wo, bo = A.nan(w2.shape), A.nan((6,))
        self.h.fold_into_weights(A.put(w2), None, A.put(gamma), A.put(beta), A.put(rmv), A.put(rvv), EPS, wo, bo)
        self.close(wo, f64(w2) * s.reshape(6, 1), OUT_TOL, "folded linear weight")
        self.close(bo, -f64(rmv) * s + beta, OUT_TOL, "folded linear bias")


class PerSample(Case):
    def test_group_and_instance_norm(self):
        for shape, groups in [((4, 6, 5, 7), 3), ((3, 4, 2, 3), 4), ((5, 4), 2)]:
            with self.subTest(shape=shape, groups=groups):
                x, dy, gamma, beta = inputs(shape, 40 + groups, 2.0)
                n, c = shape[:2]
                xg = f64(x).reshape(n, groups, -1)
                mean, var = xg.mean(axis=2), xg.var(axis=2)
                invstd = 1 / np.sqrt(var + EPS)
                xhat = ((xg - mean[..., None]) * invstd[..., None]).reshape(shape)
                y_ref = xhat * per_channel(gamma, x) + per_channel(beta, x)
                gdy = f64(dy) * per_channel(gamma, x)
                gg = gdy.reshape(n, groups, -1)
                xh = xhat.reshape(n, groups, -1)
                L = gg.shape[2]
                dx_ref = (invstd[..., None] * (gg - gg.sum(2, keepdims=True) / L
                                               - xh * (gg * xh).sum(2, keepdims=True) / L)).reshape(shape)
                red = axes(x)
                for instance in ([False, True] if groups == c else [False]):
                    xd, y, dx = A.put(x), A.nan(shape), A.nan(shape)
                    sm, si = A.nan((n, groups)), A.nan((n * groups,))
                    dg, db = A.nan((c,)), A.nan((c,))
                    if instance:
                        self.h.instance_norm_forward(xd, y, A.put(gamma), A.put(beta), EPS, sm, si)
                        self.h.instance_norm_backward(xd, A.put(dy), A.put(gamma), sm, si, dx, dg, db)
                    else:
                        self.h.group_norm_forward(xd, groups, y, A.put(gamma), A.put(beta), EPS, sm, si)
                        self.h.group_norm_backward(xd, groups, A.put(dy), A.put(gamma), sm, si, dx, dg, db)
                    what = "instance" if instance else "group"
                    self.close(y, y_ref, OUT_TOL, f"{what} y")
                    self.close(sm, mean, STAT_TOL, f"{what} save_mean", np.abs(mean).max() + np.sqrt(var.max()))
                    self.close(si, invstd.reshape(-1), STAT_TOL, f"{what} save_invstd")
                    self.close(dx, dx_ref, OUT_TOL, f"{what} dx", np.abs(gdy).max() * invstd.max())
                    self.close(dg, (f64(dy) * xhat).sum(axis=red), OUT_TOL, f"{what} dgamma",
                               np.abs(f64(dy) * xhat).sum(axis=red).max())
                    self.close(db, f64(dy).sum(axis=red), OUT_TOL, f"{what} dbeta",
                               np.abs(dy).sum(axis=red).max())

    def test_layer_norm(self):
        for shape in [(4, 3, 5, 7), (6, 64), (3, 5, 6)]:
            with self.subTest(shape=shape):
                x, dy, _, _ = inputs(shape, 50 + len(shape), 2.0)
                n = shape[0]
                r = np.random.default_rng(51)
                gamma = r.uniform(0.5, 1.5, shape[1:]).astype(np.float32)
                beta = r.standard_normal(shape[1:]).astype(np.float32)
                xf = f64(x).reshape(n, -1)
                mean, var = xf.mean(1), xf.var(1)
                invstd = 1 / np.sqrt(var + EPS)
                xhat = (xf - mean[:, None]) * invstd[:, None]
                y_ref = xhat * f64(gamma).reshape(1, -1) + f64(beta).reshape(1, -1)
                g = f64(dy).reshape(n, -1) * f64(gamma).reshape(1, -1)
                K = g.shape[1]
                dx_ref = invstd[:, None] * (g - g.sum(1, keepdims=True) / K - xhat * (g * xhat).sum(1, keepdims=True) / K)
                xd, y, dx = A.put(x), A.nan(shape), A.nan(shape)
                sm, si, dg, db = A.nan((n,)), A.nan((n,)), A.nan(shape[1:]), A.nan(shape[1:])
                self.h.layer_norm_forward(xd, y, A.put(gamma), A.put(beta), EPS, sm, si)
                self.h.layer_norm_backward(xd, A.put(dy), A.put(gamma), sm, si, dx, dg, db)
                self.close(y, y_ref.reshape(shape), OUT_TOL, "y")
                self.close(si, invstd, STAT_TOL, "save_invstd")
                self.close(dx, dx_ref.reshape(shape), OUT_TOL, "dx", np.abs(g).max() * invstd.max())
                dyf = f64(dy).reshape(n, -1)
                self.close(dg, (dyf * xhat).sum(0).reshape(shape[1:]), OUT_TOL, "dgamma",
                           np.abs(dyf * xhat).sum(0).max())
                self.close(db, dyf.sum(0).reshape(shape[1:]), OUT_TOL, "dbeta", np.abs(dyf).sum(0).max())


class Sync(Case):
    def test_three_ranks_equal_one_batch(self):
        """Three slices (one empty) through the sync calls give one batch's batch norm."""
        shape = (7, 3, 4, 5)
        x, dy, gamma, beta = inputs(shape, 61, 3.0)
        y_ref, mean, var, invstd, xhat = ref_forward(x, gamma, beta)
        dx_ref, dg_ref, db_ref, dbs, dgs = ref_backward(dy, xhat, gamma, invstd)
        slices = [(0, 4), (4, 4), (4, 7)]
        c = 3
        g, b = A.put(gamma), A.put(beta)
        local = [A.nan((3 * c,)) for _ in slices]
        xs = [A.put(x[a:e]) for a, e in slices]
        dys = [A.put(dy[a:e]) for a, e in slices]
        for xi, li in zip(xs, local):
            self.h.sync_local_stats(xi, li)
        gathered = A.put(np.concatenate([A.get(li) for li in local]))
        glob = A.nan((3 * c,))
        self.h.sync_merge_stats(c, len(slices), gathered, glob)
        gs = A.get(glob).reshape(c, 3)
        self.close(gs[:, 0], np.full(c, x.size // c), 0.0, "count")
        self.close(gs[:, 1], mean, STAT_TOL, "merged mean", np.abs(mean).max() + np.sqrt(var.max()))
        sums = []
        outs = []
        rm, rv = A.put(np.zeros(c, np.float32)), A.put(np.ones(c, np.float32))
        for i, (xi, dyi) in enumerate(zip(xs, dys)):
            yi, sm, si = A.nan(xi.shape), A.nan((c,)), A.nan((c,))
            rmi, rvi = (rm, rv) if i == 0 else (A.put(np.zeros(c, np.float32)), A.put(np.ones(c, np.float32)))
            self.h.sync_forward(xi, yi, g, b, glob, 0.1, EPS, rmi, rvi, sm, si)
            ls = A.nan((2 * c,))
            self.h.sync_backward_sums(xi, dyi, sm, ls)
            sums.append(A.get(ls))
            outs.append((yi, sm, si))
        glob_sums = A.put(np.sum(sums, axis=0).astype(np.float32))
        m = x.size // c
        self.close(rm, 0.1 * mean, STAT_TOL, "running_mean", np.abs(mean).max() + np.sqrt(var.max()))
        self.close(rv, 0.9 + 0.1 * var * m / (m - 1), STAT_TOL, "running_var")
        for (a, e), xi, dyi, (yi, sm, si) in zip(slices, xs, dys, outs):
            if e == a:
                continue
            self.close(yi, y_ref[a:e], OUT_TOL, f"y of rows {a}:{e}")
            dx, dg, db = A.nan(xi.shape), A.nan((c,)), A.nan((c,))
            self.h.sync_backward(xi, dyi, g, sm, si, glob, glob_sums, dx, dg, db)
            self.close(dx, dx_ref[a:e], OUT_TOL, f"dx of rows {a}:{e}", dx_scale(dy, gamma, invstd))
            self.close(dg, dg_ref, OUT_TOL, "dgamma", dgs)
            self.close(db, db_ref, OUT_TOL, "dbeta", dbs)


class BadInput(Case):
    """Each refused call raises the right class with .status and .message, and leaves
    every output as it was."""

    def setUp(self):
        shape = self.shape = (4, 3, 5, 6)
        x, dy, gamma, beta = inputs(shape, 71)
        self.x, self.dy = A.put(x), A.put(dy)
        self.gamma, self.beta = A.put(gamma), A.put(beta)
        self.outs = {"y": A.nan(shape), "rm": A.put(np.full(3, 7.0, np.float32)),
                     "rv": A.put(np.full(3, 9.0, np.float32)), "sm": A.nan((3,)), "si": A.nan((3,))}
        self.before = {k: A.get(v).copy() for k, v in self.outs.items()}

    def assertUntouched(self):
        for k, v in self.outs.items():
            np.testing.assert_array_equal(A.get(v), self.before[k], err_msg=f"{k} was written")

    def refused(self, cls, status, words, call):
        with self.assertRaises(cls) as cm:
            call()
        e = cm.exception
        self.assertIsInstance(e, bnorm.Error)
        self.assertEqual(e.status, status)
        for w in words:
            self.assertIn(w, e.message)
        self.assertIn(e.message, str(e))
        self.assertUntouched()
        return e

    def train(self, **kw):
        o = self.outs
        args = dict(x=self.x, y=o["y"], gamma=self.gamma, beta=self.beta, momentum=0.1, eps=EPS,
                    running_mean=o["rm"], running_var=o["rv"], save_mean=o["sm"], save_invstd=o["si"])
        args.update(kw)
        return lambda: self.h.forward_training(**args)

    def test_wrong_shapes_and_counts(self):
        S = bnorm.Status
        self.refused(bnorm.InvalidValueError, S.INVALID_VALUE, ["y", "shape"],
                     self.train(y=A.nan((4, 3, 5, 5))))
        self.refused(bnorm.InvalidValueError, S.INVALID_VALUE, ["gamma", "4 elements"],
                     self.train(gamma=A.put(np.ones(4, np.float32))))
        self.refused(bnorm.InvalidValueError, S.INVALID_VALUE, ["running_var"],
                     self.train(running_var=A.put(np.ones(2, np.float32))))
        self.refused(bnorm.InvalidValueError, S.INVALID_VALUE, ["x", "None"], self.train(x=None))
        e = self.refused(bnorm.InvalidValueError, S.INVALID_VALUE, ["momentum"], self.train(momentum=1.5))
        self.assertIsInstance(e, ValueError)  # what torch users catch
        self.assertEqual(bnorm.last_error(), e.message)
        self.refused(bnorm.InvalidValueError, S.INVALID_VALUE, ["eps"], self.train(eps=0.0))
        self.refused(bnorm.InvalidValueError, S.INVALID_VALUE, [], self.train(x=A.put(np.ones((1, 3, 1, 1), np.float32)),
                                                                             y=A.nan((1, 3, 1, 1))))
        # Both running statistics or neither (the C API's rule).
        self.refused(bnorm.InvalidValueError, S.INVALID_VALUE, ["running"], self.train(running_var=None))

    def test_unsupported_memory(self):
        S = bnorm.Status
        wide = A.put(np.ones((4, 3, 5, 12), np.float32))
        self.refused(bnorm.NotSupportedError, S.NOT_SUPPORTED, ["x", "strides"], self.train(x=wide[..., ::2]))
        self.refused(bnorm.NotSupportedError, S.NOT_SUPPORTED, ["y", "laid out alike"],
                     self.train(y=A.nan(self.shape, channels_last=True)))
        self.refused(bnorm.NotSupportedError, S.NOT_SUPPORTED, ["float64"],
                     self.train(x=A.put(np.ones(self.shape)), y=A.put(np.ones(self.shape))))
        self.refused(bnorm.InvalidValueError, S.INVALID_VALUE, ["y", "float16"],
                     self.train(y=A.nan(self.shape, np.float16)))
        self.refused(bnorm.NotSupportedError, S.NOT_SUPPORTED, ["gamma", "float64"],
                     self.train(gamma=A.put(np.ones(3))))
        self.refused(bnorm.NotSupportedError, S.NOT_SUPPORTED, ["dimension"],
                     self.train(x=A.put(np.ones((4,), np.float32))))
        self.refused(bnorm.NotSupportedError, S.NOT_SUPPORTED, ["gamma", "contiguous"],
                     self.train(gamma=A.put(np.ones(6, np.float32))[::2]))
        with self.assertRaises(TypeError):
            self.train(x=[[1.0, 2.0]])()
        self.assertUntouched()

    @unittest.skipIf(DEVICE != "cpu", "NumPy's read-only flag")
    def test_read_only(self):
        x = np.asarray(self.x).copy()
        x.setflags(write=False)  # NumPy 1.x will not export it by DLPack; inputs still work
        y = np.full(self.shape, np.nan, np.float32)
        self.h.forward_training(x, y)
        self.assertTrue(np.isfinite(y).all())
        ro = self.outs["y"]
        ro.setflags(write=False)
        self.refused(bnorm.InvalidValueError, bnorm.Status.INVALID_VALUE, ["y", "read-only"], self.train(y=ro))

    def test_overlap_is_refused_by_the_library(self):
        if DEVICE != "cpu":
            self.skipTest("NumPy views")
        buf = np.full(6, np.nan, np.float32)
        self.outs["sm"] = buf[:3]
        self.before["sm"] = buf[:3].copy()
        # save_invstd overlapping save_mean: the C API names both.
        self.refused(bnorm.InvalidValueError, bnorm.Status.INVALID_VALUE, ["save_mean", "save_invstd"],
                     self.train(save_mean=buf[:3], save_invstd=buf[1:4]))

    def test_wrong_device(self):
        if torch is None:
            self.skipTest("torch is needed for a tensor on another device")
        if DEVICE == "cpu":
            if not torch.cuda.is_available():
                self.skipTest("no CUDA tensor to offer a CPU handle")
            self.refused(bnorm.NotSupportedError, bnorm.Status.NOT_SUPPORTED, ["CUDA", "CPU handle"],
                         self.train(gamma=torch.ones(3, device="cuda")))
        else:
            self.refused(bnorm.NotSupportedError, bnorm.Status.NOT_SUPPORTED, ["CPU", "CUDA handle"],
                         self.train(gamma=np.ones(3, np.float32)))

    def test_enum_arguments(self):
        with self.assertRaises(ValueError):
            self.h.forward_training_fused(self.x, None, self.outs["y"], act="sigmoid")
        with self.assertRaises(ValueError):
            bnorm.Handle("tpu")
        with self.assertRaises(ValueError):
            self.h.set_variant(99, None)
        self.assertUntouched()


class HandleAndLibrary(Case):
    def test_handle(self):
        with bnorm.Handle(DEVICE) as h:
            self.assertEqual(h.get_backend(), bnorm.Backend[DEVICE.upper()])
            self.assertEqual(h.stream, 0)
            self.assertIn(DEVICE, repr(h))
            self.assertTrue(h.handle)
            if DEVICE == "cuda":
                s = torch.cuda.Stream()
                h.set_stream(s)
                self.assertEqual(h.stream, s.cuda_stream)
                h.set_stream(None)
            else:
                h.set_stream(12345)  # the CPU backend accepts and ignores a stream
            self.assertEqual(h.describe(A.put(np.ones((2, 3, 4, 5), np.float32), True)),
                             bnorm.TensorDesc(2, 3, 4, 5, bnorm.Layout.NHWC, bnorm.DType.F32))
            self.assertEqual(h.describe(A.put(np.ones((2, 3, 7), np.float16))),
                             bnorm.TensorDesc(2, 3, 7, 1, bnorm.Layout.NCHW, bnorm.DType.F16))
        with self.assertRaises(bnorm.InvalidValueError):
            h.forward_training(A.put(np.ones((2, 3), np.float32)), A.nan((2, 3)))
        self.assertEqual(bnorm.Backend(0).name, "CPU")
        self.assertEqual(bnorm.status_string(bnorm.Status.NO_DEVICE).lower().count("device"), 1)

    def test_no_device(self):
        if DEVICE == "cuda":
            self.skipTest("a GPU is present")
        with self.assertRaises(bnorm.NoDeviceError) as cm:
            bnorm.Handle("cuda")
        self.assertEqual(cm.exception.status, bnorm.Status.NO_DEVICE)
        self.assertFalse(bnorm.cuda_available())

    def test_variants_and_tuning(self):
        d = bnorm.TensorDesc(8, 6, 24, 24)
        spec, why = self.h.query_variant(bnorm.Op.FORWARD_TRAINING, d)
        self.assertIsInstance(why, bnorm.Choice)
        every = self.h.list_variants("forward_training", d)
        self.assertGreaterEqual(len(every), 1)
        self.assertEqual(every[0].split(":")[0], spec.split(":")[0])
        grouped = self.h.list_variants("group_norm_forward", d, groups=3)
        self.assertGreaterEqual(len(grouped), 1)
        self.assertEqual(self.h.query_variant("forward_training", A.put(np.ones((8, 6, 24, 24), np.float32)))[0],
                         spec)
        self.h.set_variant("forward_training", every[-1])
        self.assertEqual(self.h.query_variant("forward_training", d), (every[-1], bnorm.Choice.OVERRIDE))
        if DEVICE == "cpu":  # the fast path and its float64 oracle
            self.assertEqual(every, ["cpu_fast", "cpu_reference"])
            self.h.cpu_threads = 1
            self.assertEqual(self.h.cpu_threads, 1)
            with self.assertRaises(bnorm.InvalidValueError):
                self.h.cpu_threads = -1
            self.h.cpu_threads = 0
        self.h.set_variant("forward_training", None)
        with self.assertRaises(bnorm.InvalidValueError):
            self.h.set_variant("forward_training", "no_such_variant")
        with tempfile.TemporaryDirectory() as tmp:
            bad = os.path.join(tmp, "cache.json")
            with open(bad, "w") as f:
                f.write("{not json")
            with self.assertRaises(bnorm.InvalidValueError) as cm:
                bnorm.tuning_load(bad)
            self.assertIn("cache.json", cm.exception.message)
        bnorm.tuning_clear()

    def lookup(self, env_extra, pythonpath, code):
        env = {k: v for k, v in os.environ.items() if k not in ("BNORM_LIBRARY", "PYTHONPATH")}
        env.update(env_extra)
        env["PYTHONPATH"] = pythonpath
        # From a folder of its own: python -c puts the working directory first on sys.path.
        with tempfile.TemporaryDirectory() as cwd:
            return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                                  cwd=cwd)

    def test_library_lookup(self):
        lib = os.path.realpath(bnorm.library_path)
        show = "import bnorm; print(bnorm.library_found); print(bnorm.library_path)"
        src = os.path.dirname(os.path.dirname(bnorm.__file__))
        with tempfile.TemporaryDirectory() as tmp:
            # Beside the package: a copy of the package with the library linked in.
            pkg = os.path.join(tmp, "site", "bnorm")
            import shutil
            shutil.copytree(os.path.dirname(bnorm.__file__), pkg, ignore=shutil.ignore_patterns("__pycache__", "*.so*"))
            os.symlink(lib, os.path.join(pkg, "libbnorm.so.0"))
            r = self.lookup({}, os.path.join(tmp, "site"), show)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.split("\n")[0], "beside the package")
            # In an install prefix: <prefix>/lib/pythonX.Y/site-packages/bnorm and <prefix>/lib.
            prefix = os.path.join(tmp, "prefix")
            site = os.path.join(prefix, "lib", "python3.x", "site-packages")
            shutil.copytree(pkg, os.path.join(site, "bnorm"), symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.so*"))
            os.symlink(lib, os.path.join(prefix, "lib", "libbnorm.so"))
            r = self.lookup({}, site, show)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.split("\n")[:2], ["in the install prefix", os.path.join(prefix, "lib", "libbnorm.so")])
            # $BNORM_LIBRARY wins, and a wrong one is an ImportError that says so.
            r = self.lookup({"BNORM_LIBRARY": lib}, site, show)
            self.assertEqual(r.stdout.split("\n")[:2], ["$BNORM_LIBRARY", lib])
            r = self.lookup({"BNORM_LIBRARY": os.path.join(tmp, "missing.so")}, src, show)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("BNORM_LIBRARY", r.stderr)
            self.assertIn("ImportError", r.stderr)
            # Nowhere: the error lists where it looked.
            empty = os.path.join(tmp, "site2", "bnorm")
            shutil.copytree(os.path.dirname(bnorm.__file__), empty, ignore=shutil.ignore_patterns("__pycache__", "*.so*"))
            r = self.lookup({"LD_LIBRARY_PATH": ""}, os.path.join(tmp, "site2"), show)
            if r.returncode == 0:  # a libbnorm.so the system loader knows (an install in /usr/local)
                self.assertEqual(r.stdout.split("\n")[0], "from the system loader")
            else:
                self.assertIn("libbnorm.so not found", r.stderr)

    def test_staged_build_package(self):
        staged = os.environ.get("BNORM_STAGED_PYTHON")
        if not staged:
            self.skipTest("BNORM_STAGED_PYTHON (the build's python/ folder) is not set")
        r = self.lookup({}, staged, "import bnorm; print(bnorm.library_found); print(bnorm.__file__)")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split("\n")[0], "beside the package")
        self.assertTrue(r.stdout.split("\n")[1].startswith(os.path.realpath(staged)) or
                        r.stdout.split("\n")[1].startswith(staged))


if __name__ == "__main__":
    print(f"bnorm {bnorm.__version__} from {bnorm.library_path}; NumPy {np.__version__}; "
          f"torch {torch.__version__ if torch else 'absent'}; device {DEVICE}")
    unittest.main(argv=ARGV, verbosity=2)
