#!/usr/bin/env python3
"""bnorm's CPU backend against PyTorch itself (torch.nn.functional in float64, autograd for
the gradients) on fresh random inputs: batch norm's training forward with the running
statistics, inference, backward and frozen (eval-mode) backward; group, instance and layer
norm forward and backward; folding into a convolution. NCHW and channels-last.

  python3 tests/pytorch/test_against_pytorch.py --lib LIBBNORM

Each output must agree with PyTorch's float64 result to a few float32 roundings of the
output's scale: |got - want| <= TOL * max|want| with TOL = 1e-5; dx is measured against
the size of its terms, max|gamma * dy| * max(invstd), with 4e-5 (its terms cancel). ctest
runs it twice: on the CPU backend's default, its float32 fast path, and with
BNORM_VARIANT=cpu_reference on its float64 oracle. Exit status 77 (ctest: skipped)
when this Python has no PyTorch (Debian: python3-torch; tools/deps.sh).
"""
import argparse
import ctypes
import sys
import unittest

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print("skipped: %s (Debian: python3-torch; tools/deps.sh)" % e)
    sys.exit(77)

LIB = None
TOL = 1e-5
DX_TOL = 4e-5
NCHW, NHWC = 0, 1
F32 = 0


class Tensor(ctypes.Structure):  # bnorm_tensor_t
    _fields_ = [("n", ctypes.c_int64), ("c", ctypes.c_int64), ("h", ctypes.c_int64),
                ("w", ctypes.c_int64), ("layout", ctypes.c_int), ("dtype", ctypes.c_int)]


def ptr(t):
    """A float32 contiguous CPU tensor's data, or NULL for None."""
    if t is None:
        return None
    assert t.dtype == torch.float32 and t.is_contiguous()
    return ctypes.c_void_p(t.data_ptr())


def to_layout(x, layout):
    """An NCHW tensor in the memory order of layout, float32 and contiguous."""
    x = x.float()
    return (x.permute(0, 2, 3, 1) if layout == NHWC else x).contiguous()


def from_layout(y, layout):
    return (y.permute(0, 3, 1, 2) if layout == NHWC else y).double()


def poisoned(shape):
    return torch.full(shape, float("nan"), dtype=torch.float32)


class Bnorm:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.bnorm_last_error.restype = ctypes.c_char_p
        self.h = ctypes.c_void_p()
        self.check(self.lib.bnorm_create(ctypes.byref(self.h), 0, 0))

    def check(self, status):
        if status != 0:
            raise AssertionError("bnorm status %d: %s" % (status, self.lib.bnorm_last_error().decode()))

    def call(self, name, *args):
        f = getattr(self.lib, name)
        conv = []
        for a in args:
            if isinstance(a, float):
                conv.append(ctypes.c_float(a))
            elif isinstance(a, int) and not isinstance(a, bool):
                conv.append(ctypes.c_int64(a))
            else:
                conv.append(a)
        self.check(f(self.h, *conv))


def term_scale(gamma_dy, invstd):
    """The size of dx's terms: max|gamma * dy| * max(invstd)."""
    return gamma_dy.abs().max().item() * invstd.max().item()


def desc(shape, layout):
    n, c, h, w = shape
    return ctypes.byref(Tensor(n, c, h, w, layout, F32))


class AgainstPyTorch(unittest.TestCase):
    def assertClose(self, got, want, tol=TOL, what="", scale=None):
        """scale: the size the error is measured against, max|want| unless given (dx
        cancels its terms: a group of two values has dx = 0 but for eps)."""
        got, want = got.double(), want.double()
        self.assertEqual(got.shape, want.shape, what)
        self.assertTrue(torch.isfinite(got).all(), "%s: non-finite values" % what)
        scale = max(want.abs().max().item() if scale is None else scale, 1e-30)
        err = (got - want).abs().max().item() / scale
        self.assertLessEqual(err, tol, "%s: relative error %.3g > %.3g" % (what, err, tol))

    @classmethod
    def setUpClass(cls):
        cls.bn = Bnorm(LIB)

    def inputs(self, shape, seed, mean_scale=1.0):
        g = torch.Generator().manual_seed(seed)
        n, c, h, w = shape
        means = torch.randn(c, generator=g, dtype=torch.float64) * mean_scale
        spreads = torch.rand(c, generator=g, dtype=torch.float64) * 1.5 + 0.5
        x = torch.randn(shape, generator=g, dtype=torch.float64) * spreads.view(1, c, 1, 1) + means.view(1, c, 1, 1)
        dy = torch.randn(shape, generator=g, dtype=torch.float64)
        gamma = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
        beta = torch.randn(c, generator=g, dtype=torch.float64)
        # bnorm sees float32 values: the reference starts from the same ones.
        return x.float().double(), dy.float().double(), gamma.float().double(), beta.float().double()

    SHAPES = [(8, 3, 5, 7), (2, 6, 4, 4), (16, 5, 1, 1), (3, 4, 13, 3)]

    def test_batch_norm_training_inference_backward(self):
        momentum, eps = 0.1, 1e-5
        for shape in self.SHAPES:
            for layout in (NCHW, NHWC):
                with self.subTest(shape=shape, layout=layout):
                    x, dy, gamma, beta = self.inputs(shape, 1 + sum(shape), mean_scale=3.0)
                    c = shape[1]
                    rm0 = torch.randn(c, dtype=torch.float64).float()
                    rv0 = (torch.rand(c, dtype=torch.float64) + 0.5).float()
                    # PyTorch, float64, autograd.
                    xr, gr, br = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
                    rm_ref, rv_ref = rm0.double().clone(), rv0.double().clone()
                    y_ref = F.batch_norm(xr, rm_ref, rv_ref, gr, br, training=True, momentum=momentum, eps=eps)
                    y_ref.backward(dy)
                    mean_ref = x.mean(dim=(0, 2, 3))
                    invstd_ref = 1.0 / torch.sqrt(x.var(dim=(0, 2, 3), unbiased=False) + eps)
                    # bnorm.
                    xb, dyb = to_layout(x, layout), to_layout(dy, layout)
                    y, dx = poisoned(xb.shape), poisoned(xb.shape)
                    rm, rv = rm0.clone(), rv0.clone()
                    sm, si, dg, db = (poisoned((c,)) for _ in range(4))
                    gf, bf = gamma.float(), beta.float()
                    d = desc(shape, layout)
                    self.bn.call("bnorm_forward_training", d, ptr(xb), ptr(y), ptr(gf), ptr(bf), momentum, eps,
                                 ptr(rm), ptr(rv), ptr(sm), ptr(si))
                    self.bn.call("bnorm_backward", d, ptr(xb), ptr(dyb), ptr(gf), ptr(sm), ptr(si), ptr(dx),
                                 ptr(dg), ptr(db))
                    self.assertClose(from_layout(y, layout), y_ref.detach(), what="y")
                    self.assertClose(sm, mean_ref, what="save_mean")
                    self.assertClose(si, invstd_ref, what="save_invstd")
                    self.assertClose(rm, rm_ref, what="running_mean")
                    self.assertClose(rv, rv_ref, what="running_var (unbiased)")
                    self.assertClose(from_layout(dx, layout), xr.grad, DX_TOL, what="dx",
                                     scale=term_scale(gamma.view(1, c, 1, 1) * dy, invstd_ref))
                    self.assertClose(dg, gr.grad, what="dgamma")
                    self.assertClose(db, br.grad, what="dbeta")

                    # Inference with the updated running statistics, and eval-mode
                    # (frozen) backward: the statistics are constants.
                    xr2, gr2, br2 = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
                    y2_ref = F.batch_norm(xr2, rm.double(), rv.double(), gr2, br2, training=False, eps=eps)
                    y2_ref.backward(dy)
                    y2, dx2 = poisoned(xb.shape), poisoned(xb.shape)
                    dg2, db2 = poisoned((c,)), poisoned((c,))
                    self.bn.call("bnorm_forward_inference", d, ptr(xb), ptr(y2), ptr(gf), ptr(bf), ptr(rm),
                                 ptr(rv), eps)
                    self.bn.call("bnorm_backward_frozen", d, ptr(xb), ptr(dyb), ptr(gf), ptr(rm), ptr(rv), eps,
                                 ptr(dx2), ptr(dg2), ptr(db2))
                    self.assertClose(from_layout(y2, layout), y2_ref.detach(), what="inference y")
                    self.assertClose(from_layout(dx2, layout), xr2.grad, what="frozen dx")
                    self.assertClose(dg2, gr2.grad, what="frozen dgamma")
                    self.assertClose(db2, br2.grad, what="frozen dbeta")

    def run_group(self, shape, groups, layout, instance):
        eps = 1e-5
        x, dy, gamma, beta = self.inputs(shape, 100 + groups + sum(shape), mean_scale=2.0)
        n, c = shape[0], shape[1]
        xr, gr, br = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
        y_ref = (F.instance_norm(xr, weight=gr, bias=br, eps=eps) if instance
                 else F.group_norm(xr, groups, gr, br, eps=eps))
        y_ref.backward(dy)
        xb, dyb = to_layout(x, layout), to_layout(dy, layout)
        y, dx = poisoned(xb.shape), poisoned(xb.shape)
        sm, si = poisoned((n * groups,)), poisoned((n * groups,))
        dg, db = poisoned((c,)), poisoned((c,))
        gf, bf = gamma.float(), beta.float()
        d = desc(shape, layout)
        if instance:
            self.bn.call("bnorm_instance_norm_forward", d, ptr(xb), ptr(y), ptr(gf), ptr(bf), eps, ptr(sm), ptr(si))
            self.bn.call("bnorm_instance_norm_backward", d, ptr(xb), ptr(dyb), ptr(gf), ptr(sm), ptr(si), ptr(dx),
                         ptr(dg), ptr(db))
        else:
            self.bn.call("bnorm_group_norm_forward", d, groups, ptr(xb), ptr(y), ptr(gf), ptr(bf), eps, ptr(sm),
                         ptr(si))
            self.bn.call("bnorm_group_norm_backward", d, groups, ptr(xb), ptr(dyb), ptr(gf), ptr(sm), ptr(si),
                         ptr(dx), ptr(dg), ptr(db))
        grouped = x.reshape(n, groups, -1)
        invstd_ref = 1.0 / torch.sqrt(grouped.var(dim=2, unbiased=False) + eps)
        self.assertClose(from_layout(y, layout), y_ref.detach(), what="y")
        self.assertClose(sm, grouped.mean(dim=2).reshape(-1), what="save_mean")
        self.assertClose(si, invstd_ref.reshape(-1), what="save_invstd")
        self.assertClose(from_layout(dx, layout), xr.grad, DX_TOL, what="dx",
                         scale=term_scale(gamma.view(1, c, 1, 1) * dy, invstd_ref))
        self.assertClose(dg, gr.grad, what="dgamma")
        self.assertClose(db, br.grad, what="dbeta")

    def test_group_and_instance_norm(self):
        for shape, groups in [((4, 6, 5, 7), 3), ((2, 6, 4, 4), 1), ((3, 8, 3, 5), 8), ((5, 4, 1, 1), 2)]:
            for layout in (NCHW, NHWC):
                with self.subTest(shape=shape, groups=groups, layout=layout):
                    self.run_group(shape, groups, layout, instance=False)
        for shape in [(4, 6, 5, 7), (2, 3, 9, 2)]:
            for layout in (NCHW, NHWC):
                with self.subTest(shape=shape, instance=True, layout=layout):
                    self.run_group(shape, shape[1], layout, instance=True)

    def test_layer_norm(self):
        eps = 1e-5
        for shape in [(4, 3, 5, 7), (6, 64, 1, 1), (2, 5, 2, 3)]:
            with self.subTest(shape=shape):
                n, c, h, w = shape
                x, dy, _, _ = self.inputs(shape, 200 + sum(shape), mean_scale=2.0)
                g = torch.Generator().manual_seed(7)
                gamma = (torch.rand((c, h, w), generator=g, dtype=torch.float64) + 0.5).float().double()
                beta = torch.randn((c, h, w), generator=g, dtype=torch.float64).float().double()
                xr, gr, br = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
                y_ref = F.layer_norm(xr, (c, h, w), gr, br, eps=eps)
                y_ref.backward(dy)
                xb, dyb = to_layout(x, NCHW), to_layout(dy, NCHW)
                y, dx = poisoned(xb.shape), poisoned(xb.shape)
                sm, si = poisoned((n,)), poisoned((n,))
                dg, db = poisoned((c * h * w,)), poisoned((c * h * w,))
                gf, bf = gamma.float().contiguous(), beta.float().contiguous()
                d = desc(shape, NCHW)
                self.bn.call("bnorm_layer_norm_forward", d, ptr(xb), ptr(y), ptr(gf), ptr(bf), eps, ptr(sm),
                             ptr(si))
                self.bn.call("bnorm_layer_norm_backward", d, ptr(xb), ptr(dyb), ptr(gf), ptr(sm), ptr(si),
                             ptr(dx), ptr(dg), ptr(db))
                self.assertClose(y.double(), y_ref.detach(), what="y")
                invstd_ref = 1.0 / torch.sqrt(x.reshape(n, -1).var(dim=1, unbiased=False) + eps)
                self.assertClose(dx.double(), xr.grad, DX_TOL, what="dx", scale=term_scale(gamma * dy, invstd_ref))
                self.assertClose(dg.reshape(c, h, w), gr.grad, what="dgamma")
                self.assertClose(db.reshape(c, h, w), br.grad, what="dbeta")

    def test_fold_into_convolution(self):
        eps = 1e-5
        g = torch.Generator().manual_seed(11)
        c_out, c_in, k = 6, 3, 5
        x = torch.randn((4, c_in, 12, 12), generator=g, dtype=torch.float64)
        weight = (torch.randn((c_out, c_in, k, k), generator=g, dtype=torch.float64) * 0.2).float()
        bias = torch.randn(c_out, generator=g, dtype=torch.float64).float()
        gamma = (torch.rand(c_out, generator=g, dtype=torch.float64) + 0.5).float()
        beta = torch.randn(c_out, generator=g, dtype=torch.float64).float()
        rm = torch.randn(c_out, generator=g, dtype=torch.float64).float()
        rv = (torch.rand(c_out, generator=g, dtype=torch.float64) + 0.1).float()
        w_out, b_out = poisoned(weight.shape), poisoned((c_out,))
        self.bn.call("bnorm_fold_into_weights", desc((c_out, c_in, k, k), NCHW), ptr(weight), ptr(bias),
                     ptr(gamma), ptr(beta), ptr(rm), ptr(rv), eps, ptr(w_out), ptr(b_out))
        conv = F.conv2d(x, weight.double(), bias.double())
        want = F.batch_norm(conv, rm.double(), rv.double(), gamma.double(), beta.double(), training=False, eps=eps)
        got = F.conv2d(x, w_out.double(), b_out.double())
        self.assertClose(got, want, what="folded convolution")


def main():
    global LIB
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True, help="libbnorm.so")
    args, rest = ap.parse_known_args()
    LIB = args.lib
    torch.manual_seed(0)
    print("PyTorch %s" % torch.__version__)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
