#!/usr/bin/env python3
"""bnorm.torch against torch.nn itself: the drop-in modules beside torch's BatchNorm1d/2d/3d
run in float64 on the same (float32-representable) inputs — outputs, gradients by
autograd, running statistics and num_batches_tracked over several steps, eval mode,
state_dict round trips, convert()/revert(), the fused ReLU and add+ReLU, folding,
float16/bfloat16 inputs, and bad input.

    python3 python/tests/test_torch.py [--device cpu|cuda]

Exit 77 (skipped) without PyTorch, and for --device cuda without CUDA.

float64: bnorm has no float64 tensors, so torch.autograd.gradcheck cannot run through it
in float64. What runs instead: (1) every gradient is compared with torch's float64
autograd of the same function on the same inputs (bnorm's backward in float32 against
the exact derivative, to float32 tolerances); (2) gradcheck itself in float32, where a
central difference with step h has rounding error ~ 2^-24 * |y| / h and truncation error
~ h^2 * |y'''|: with h = 1e-2 and O(1) data both are ~1e-4 of the gradient entries,
hence atol = rtol = 1e-2 (a wrong term of the backward, such as a missing mean term,
is O(1) and fails it).

Tolerances are float32 kernels': outputs 1e-4 of max|want|; dx relative to
max|gamma*dy|*max(invstd) (the terms it is a difference of); dgamma, dbeta relative to
the sum of their terms' magnitudes; running statistics 1e-5 of their scale; float16
2e-3, bfloat16 1.6e-2 (a few roundings at 2^-11 and 2^-8).
"""
import copy
import sys
import unittest
import warnings

import _common

DEVICE, ARGV = _common.parse()
try:
    import torch
    from torch import nn
except ImportError as e:
    _common.skip(f"{e} (Debian: python3-torch; tools/deps.sh)")
if DEVICE == "cuda" and not torch.cuda.is_available():
    _common.skip(f"torch {torch.__version__} sees no CUDA device")
bnorm = _common.import_bnorm()
if DEVICE == "cuda" and not bnorm.cuda_available():
    _common.skip("bnorm reports no CUDA device")
import bnorm.torch as bt  # noqa: E402

DEV = torch.device(DEVICE)
# The comparisons put convolutions around batch norm: on a GPU they must be float32 and
# repeatable (TF32 rounds to 2^-11, which would swamp the batch norms' differences).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.backends.cudnn.deterministic = True
OUT_TOL, STAT_TOL = 1e-4, 1e-5
DTYPE_TOL = {torch.float32: OUT_TOL, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def rel(got, want, scale=None):
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    if got.shape != want.shape:
        raise AssertionError(f"shape {tuple(got.shape)} != {tuple(want.shape)}")
    if not torch.isfinite(got).all():
        return float("inf")
    if got.numel() == 0:
        return 0.0
    s = want.abs().max().item() if scale is None else float(scale)
    return (got - want).abs().max().item() / max(s, 1e-30)


def reduce_dims(x):
    return [0] + list(range(2, x.dim()))


def channel_view(v, x):
    return v.reshape([1, -1] + [1] * (x.dim() - 2))


def make_input(shape, seed, mean_scale=2.0, dtype=torch.float32, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    means = torch.randn(c, generator=g, dtype=torch.float64) * mean_scale
    spreads = torch.rand(c, generator=g, dtype=torch.float64) * 1.5 + 0.5
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x = x * channel_view(spreads, x) + channel_view(means, x)
    x = x.to(dtype).to(DEV)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    return x


def grad_scales(x, dy, weight, eps):
    """(dx scale, dgamma scale, dbeta scale) in float64: the sizes of the terms each is a
    difference or sum of."""
    x, dy = x.detach().double(), dy.detach().double()
    dims = reduce_dims(x)
    mean = x.mean(dims, keepdim=True)
    invstd = 1 / torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
    xhat = (x - mean) * invstd
    w = torch.ones(x.shape[1], dtype=torch.float64, device=x.device) if weight is None else weight.detach().double()
    dx_s = (dy * channel_view(w, x)).abs().max().item() * invstd.max().item()
    return dx_s, (dy * xhat).abs().sum(dims).max().item(), dy.abs().sum(dims).max().item()


class Case(unittest.TestCase):
    def assertClose(self, got, want, tol, what, scale=None):
        err = rel(got, want, scale)
        self.assertLessEqual(err, tol, f"{what}: relative error {err:.3g} > {tol:.3g}")


class Modules(Case):
    def pair(self, cls, num_features, **kw):
        """A torch module (made float64, the reference) and the same module converted."""
        torch.manual_seed(3)
        ref = getattr(nn, cls)(num_features, **kw).to(DEV)
        if ref.affine:  # not torch's 1 and 0: a swapped gamma and beta must show
            with torch.no_grad():
                ref.weight.uniform_(0.5, 1.5)
                ref.bias.normal_()
        mine = bt.convert(copy.deepcopy(ref))
        self.assertIs(type(mine), getattr(bt, cls))
        return ref.double(), mine

    def steps(self, ref, mine, shape, steps=3, channels_last=False, dtype=torch.float32, tol=None):
        tol = DTYPE_TOL[dtype] if tol is None else tol
        for step in range(steps):
            x = make_input(shape, 10 * step + len(shape), dtype=dtype, channels_last=channels_last)
            dy = make_input(shape, 10 * step + 1, mean_scale=0.0, dtype=dtype, channels_last=channels_last)
            xr = x.detach().double().requires_grad_(True)
            xm = x.detach().clone().requires_grad_(True)
            yr, ym = ref(xr), mine(xm)
            self.assertEqual(ym.dtype, dtype)
            self.assertClose(ym, yr, tol, f"step {step}: y")
            yr.backward(dy.double())
            ym.backward(dy)
            dxs, dgs, dbs = grad_scales(x, dy, ref.weight, ref.eps)
            self.assertClose(xm.grad, xr.grad, tol, f"step {step}: dx", dxs)
            if ref.affine:
                self.assertClose(mine.weight.grad, ref.weight.grad, tol, f"step {step}: dweight", dgs)
                self.assertClose(mine.bias.grad, ref.bias.grad, tol, f"step {step}: dbias", dbs)
                ref.zero_grad()
                mine.zero_grad()
            if ref.track_running_stats:
                sc = ref.running_mean.abs().max().item() + ref.running_var.max().item()
                self.assertClose(mine.running_mean, ref.running_mean, STAT_TOL * (tol / OUT_TOL), "running_mean", sc)
                self.assertClose(mine.running_var, ref.running_var, STAT_TOL * (tol / OUT_TOL), "running_var")
                self.assertEqual(mine.num_batches_tracked.item(), ref.num_batches_tracked.item())
                self.assertEqual(mine.running_mean.dtype, torch.float32)

    def check(self, cls, shape, channels_last=False, **kw):
        ref, mine = self.pair(cls, shape[1], **kw)
        ref.train(), mine.train()
        self.steps(ref, mine, shape, channels_last=channels_last)
        ref.eval(), mine.eval()
        self.steps(ref, mine, shape, steps=2, channels_last=channels_last)

    def test_batch_norm_1d_2d_3d(self):
        for cls, shape in [("BatchNorm1d", (16, 5)), ("BatchNorm1d", (4, 6, 9)), ("BatchNorm2d", (4, 3, 7, 5)),
                           ("BatchNorm2d", (3, 2, 1, 1)), ("BatchNorm3d", (2, 3, 3, 4, 5))]:
            for cl in ([False, True] if len(shape) >= 4 else [False]):
                with self.subTest(cls=cls, shape=shape, channels_last=cl):
                    self.check(cls, shape, channels_last=cl)

    def test_constructor_options(self):
        for kw in [dict(momentum=None), dict(momentum=0.5, eps=1e-3), dict(affine=False),
                   dict(track_running_stats=False), dict(affine=False, track_running_stats=False)]:
            with self.subTest(**kw):
                self.check("BatchNorm2d", (5, 4, 3, 6), **kw)

    def test_cumulative_average(self):
        """momentum=None: the running statistics are the plain average of the batches'."""
        ref, mine = self.pair("BatchNorm2d", 3, momentum=None)
        means, variances = [], []
        for k in range(4):
            x = make_input((6, 3, 4, 4), 100 + k)
            mine(x)
            means.append(x.double().mean((0, 2, 3)))
            variances.append(x.double().var((0, 2, 3), unbiased=True))
        self.assertEqual(mine.num_batches_tracked.item(), 4)
        self.assertClose(mine.running_mean, torch.stack(means).mean(0), STAT_TOL, "cumulative mean",
                         torch.stack(means).abs().max().item() + 1)
        self.assertClose(mine.running_var, torch.stack(variances).mean(0), STAT_TOL, "cumulative var")

    def test_non_contiguous_input_and_grad(self):
        ref, mine = self.pair("BatchNorm2d", 4)
        base = make_input((6, 4, 10, 9), 7)
        x = base[::2, :, 1:8, ::2]  # neither contiguous nor channels last: copied first
        self.assertFalse(x.is_contiguous())
        xr, xm = x.detach().double().requires_grad_(True), x.detach().clone().requires_grad_(True)
        yr, ym = ref(xr), mine(xm)
        self.assertClose(ym, yr, OUT_TOL, "y")
        dy = make_input(tuple(x.shape), 8, mean_scale=0.0).transpose(2, 3).contiguous().transpose(2, 3)
        yr.backward(dy.double())
        ym.backward(dy)
        self.assertClose(xm.grad, xr.grad, OUT_TOL, "dx", grad_scales(x, dy, ref.weight, ref.eps)[0])
        # An expanded gradient (stride 0), as from y.sum().backward().
        xm.grad = None
        mine(xm).sum().backward()
        self.assertTrue(torch.isfinite(xm.grad).all())
        self.assertLessEqual(xm.grad.abs().max().item(), 1e-4)  # d(sum(bn(x)))/dx = 0 with batch statistics

    def test_channels_last_borrowed(self):
        """A channels_last input and its output share the layout: nothing was made contiguous."""
        mine = bt.BatchNorm2d(3).to(DEV)
        x = make_input((2, 3, 5, 4), 1, channels_last=True)
        y = mine(x)
        self.assertTrue(y.is_contiguous(memory_format=torch.channels_last))
        self.assertFalse(y.is_contiguous())

    def test_half_and_bfloat16_inputs(self):
        """float16 / bfloat16 activations, float32 parameters and statistics (autocast's
        arrangement), against float64 on the same rounded inputs."""
        for dtype in (torch.float16, torch.bfloat16):
            for cl in (False, True):
                with self.subTest(dtype=dtype, channels_last=cl):
                    ref, mine = self.pair("BatchNorm2d", 3)
                    self.steps(ref, mine, (4, 3, 6, 5), steps=2, channels_last=cl, dtype=dtype)
                    self.assertEqual(mine.weight.dtype, torch.float32)

    def test_autocast(self):
        kind, dtype = ("cuda", torch.float16) if DEVICE == "cuda" else ("cpu", torch.bfloat16)
        torch.manual_seed(4)
        conv = nn.Conv2d(3, 4, 3).to(DEV)
        ref = nn.BatchNorm2d(4).to(DEV)
        mine = bt.convert(copy.deepcopy(ref))
        x = make_input((4, 3, 8, 8), 2)
        with torch.autocast(kind, dtype=dtype):
            h = conv(x)
            self.assertEqual(h.dtype, dtype)
            y = mine(h)
        self.assertEqual(y.dtype, dtype)
        want = ref.double()(h.double())
        self.assertClose(y, want, DTYPE_TOL[dtype], "autocast y")
        self.assertClose(mine.running_var, ref.running_var, DTYPE_TOL[dtype], "autocast running_var")

    def test_half_parameters(self):
        """A module made .half(): float16 parameters and buffers go through float32 copies."""
        ref, mine = self.pair("BatchNorm2d", 3)
        mine.half()
        x = make_input((4, 3, 5, 5), 9, dtype=torch.float16).requires_grad_(True)
        y = mine(x)
        y.float().sum().backward()
        want = ref(x.detach().double())
        self.assertClose(y, want, DTYPE_TOL[torch.float16], "y")
        self.assertEqual(mine.weight.grad.dtype, torch.float16)
        self.assertClose(mine.running_mean, ref.running_mean, 1e-3, "running_mean", 1 + ref.running_mean.abs().max())

    def test_empty_batch(self):
        ref, mine = self.pair("BatchNorm2d", 3)
        before = mine.running_mean.clone()
        y = mine(torch.zeros((0, 3, 4, 4), device=DEV))
        self.assertEqual(tuple(y.shape), (0, 3, 4, 4))
        self.assertTrue(torch.equal(mine.running_mean, before))

    def test_single_value_per_channel_raises_like_torch(self):
        ref, mine = self.pair("BatchNorm1d", 4)
        x = torch.randn(1, 4, device=DEV)
        with self.assertRaises(ValueError) as want:
            ref(x.double())
        before = mine.running_mean.clone()
        with self.assertRaises(ValueError) as got:
            mine(x)
        self.assertEqual(str(got.exception), str(want.exception))
        self.assertIn("Expected more than 1 value per channel when training", str(got.exception))
        self.assertTrue(torch.equal(mine.running_mean, before))
        mine.eval()
        self.assertEqual(tuple(mine(x).shape), (1, 4))  # eval mode takes one value

    def test_bad_input_raises_and_writes_nothing(self):
        _, mine = self.pair("BatchNorm2d", 3)
        rm, rv = mine.running_mean.clone(), mine.running_var.clone()
        with self.assertRaises(bnorm.NotSupportedError) as cm:
            mine(torch.randn(4, 3, 5, 5, dtype=torch.float64, device=DEV))
        self.assertIn("float64", cm.exception.message)
        with self.assertRaises(bnorm.InvalidValueError) as cm:
            mine(torch.randn(4, 5, 5, 5, device=DEV))  # 5 channels, 3 features
        self.assertIn("gamma", cm.exception.message)
        with self.assertRaises(ValueError):
            mine(torch.randn(4, 3, 5, device=DEV))  # torch's own dimension check
        self.assertTrue(torch.equal(mine.running_mean, rm))
        self.assertTrue(torch.equal(mine.running_var, rv))

    def test_state_dict_round_trip(self):
        torch.manual_seed(5)
        ref = nn.BatchNorm2d(4).to(DEV)
        ref(make_input((6, 4, 3, 3), 1))  # statistics worth keeping
        mine = bt.BatchNorm2d(4).to(DEV)
        self.assertEqual(list(mine.state_dict()), list(ref.state_dict()))
        mine.load_state_dict(ref.state_dict())
        for k, v in ref.state_dict().items():
            self.assertTrue(torch.equal(mine.state_dict()[k], v), k)
        mine(make_input((6, 4, 3, 3), 2))
        back = nn.BatchNorm2d(4).to(DEV)
        back.load_state_dict(mine.state_dict())
        self.assertEqual(back.num_batches_tracked.item(), 2)
        back.eval(), mine.eval()
        x = make_input((2, 4, 3, 3), 3)
        self.assertClose(mine(x), back(x), OUT_TOL, "eval after round trip")

    def test_convert_a_model(self):
        torch.manual_seed(6)
        model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.Sigmoid(), nn.Flatten(),
                              nn.Linear(6 * 4 * 4, 10), nn.BatchNorm1d(10)).to(DEV)
        params = [id(p) for p in model.parameters()]
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model.apply(bt.convert)
        self.assertEqual([id(p) for p in model.parameters()], params)
        self.assertIs(type(model[1]), bt.BatchNorm2d)
        self.assertIs(type(model[5]), bt.BatchNorm1d)
        self.assertIsInstance(model[1], nn.BatchNorm2d)
        self.assertIn("bnorm.BatchNorm2d", repr(model))
        root = nn.BatchNorm2d(3)
        root.apply(bt.convert)  # apply reaches the root too
        self.assertIs(type(root), bt.BatchNorm2d)
        x = torch.randn(8, 1, 8, 8, device=DEV)
        loss = model(x).square().mean()
        loss.backward()
        opt.step()
        self.assertIsNotNone(model[1].weight.grad)
        bt.revert(model)
        self.assertIs(type(model[1]), nn.BatchNorm2d)
        custom = type("MyBN", (nn.BatchNorm2d,), {})(3)
        self.assertIs(type(bt.convert(custom)), type(custom))  # subclasses keep their own forward

    def test_lenet_trains_the_same(self):
        """A few SGD steps of the seed's BN-LeNet, swapped and not, from the same start: the
        losses agree to float32 accumulated over the steps."""
        sys.path.insert(0, _common.os.path.join(_common.HERE, "..", "..", "tools", "lenet"))
        from pytorch_lenet import bn_lenet
        torch.manual_seed(7)
        ref = bn_lenet(True).to(DEV)
        mine = bt.convert(copy.deepcopy(ref))
        g = torch.Generator().manual_seed(8)
        data = [(torch.randn(32, 1, 28, 28, generator=g).to(DEV), torch.randint(0, 10, (32,), generator=g).to(DEV))
                for _ in range(6)]
        losses = []
        for net in (ref, mine):
            opt = torch.optim.SGD(net.parameters(), lr=0.5)
            out = []
            for x, y in data:
                loss = nn.functional.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                out.append(loss.item())
            losses.append(out)
        for a, b in zip(*losses):
            self.assertAlmostEqual(a, b, delta=1e-3 * max(1.0, abs(a)))
        ref.eval(), mine.eval()
        x = data[0][0]
        self.assertClose(mine(x), ref(x), 1e-3, "eval logits")


class Gradients(Case):
    def test_gradcheck_float32(self):
        """torch's gradcheck on bnorm's backward in float32 (see the module docstring)."""
        g = torch.Generator().manual_seed(9)
        for training in (True, False):
            with self.subTest(training=training):
                x = torch.randn(3, 2, 3, 2, generator=g).to(DEV).requires_grad_(True)
                w = (torch.rand(2, generator=g) + 0.5).to(DEV).requires_grad_(True)
                b = torch.randn(2, generator=g).to(DEV).requires_grad_(True)
                rm = torch.randn(2, generator=g).to(DEV)
                rv = (torch.rand(2, generator=g) + 0.5).to(DEV)

                def f(x, w, b):  # running statistics not updated: gradcheck calls f many times
                    return bt.batch_norm(x, rm.clone() if not training else None,
                                         rv.clone() if not training else None, w, b, training=training)

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "not double precision": the point here
                    self.assertTrue(torch.autograd.gradcheck(f, (x, w, b), eps=1e-2, atol=1e-2, rtol=1e-2))

    def test_gradcheck_catches_a_wrong_backward(self):
        """The float32 gradcheck above can fail: a backward without its mean terms does."""
        x = torch.randn(4, 2, 3, 3, device=DEV, requires_grad=True)

        class Wrong(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return bt.batch_norm(x, None, None, training=True)

            @staticmethod
            def backward(ctx, dy):
                return dy / x.detach().std((0, 2, 3), unbiased=False, keepdim=True)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertFalse(torch.autograd.gradcheck(Wrong.apply, (x,), eps=1e-2, atol=1e-2, rtol=1e-2,
                                                      raise_exception=False))

    def test_double_backward_is_refused(self):
        x = torch.randn(4, 3, device=DEV, requires_grad=True)
        y = bt.batch_norm(x, None, None, training=True)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        with self.assertRaises(RuntimeError):
            gx.sum().backward()

    def test_only_what_is_needed(self):
        w = torch.rand(3, device=DEV, requires_grad=True)
        x = torch.randn(5, 3, 4, device=DEV)  # no grad for x
        bt.batch_norm(x, None, None, w, None, training=True).sum().backward()
        self.assertIsNotNone(w.grad)


class Fused(Case):
    def reference(self, x, z, w, b, rm, rv, training, momentum=0.1, eps=1e-5):
        y = nn.functional.batch_norm(x, rm, rv, w, b, training, momentum, eps)
        return torch.relu(y if z is None else y + z)

    def test_relu_and_add_relu(self):
        for training in (True, False):
            for add in (False, True):
                for cl in (False, True):
                    with self.subTest(training=training, add=add, channels_last=cl):
                        shape = (5, 4, 6, 3)
                        x = make_input(shape, 20, mean_scale=0.3, channels_last=cl)
                        z = make_input(shape, 21, mean_scale=0.0) if add else None
                        dy = make_input(shape, 22, mean_scale=0.0)
                        w = (torch.rand(4) + 0.5).to(DEV)
                        b = torch.randn(4).to(DEV)
                        rm0, rv0 = torch.randn(4).to(DEV), (torch.rand(4) + 0.5).to(DEV)
                        leaves = [t.detach().clone().requires_grad_(True) for t in ([x, w, b] + ([z] if add else []))]
                        refs = [t.detach().double().requires_grad_(True) for t in leaves]
                        rm, rv = rm0.clone(), rv0.clone()
                        rmr, rvr = rm0.double(), rv0.double()
                        if add:
                            y = bt.batch_norm_add_relu(leaves[0], leaves[3], rm, rv, leaves[1], leaves[2], training)
                            yr = self.reference(refs[0], refs[3], refs[1], refs[2], rmr, rvr, training)
                        else:
                            y = bt.batch_norm_relu(leaves[0], rm, rv, leaves[1], leaves[2], training)
                            yr = self.reference(refs[0], None, refs[1], refs[2], rmr, rvr, training)
                        self.assertClose(y, yr, OUT_TOL, "y")
                        self.assertGreater((y == 0).sum().item(), 0)  # the ReLU cut something
                        y.backward(dy)
                        yr.backward(dy.double())
                        dxs, dgs, dbs = grad_scales(x, dy, w, 1e-5)
                        self.assertClose(leaves[0].grad, refs[0].grad, OUT_TOL, "dx", dxs)
                        self.assertClose(leaves[1].grad, refs[1].grad, OUT_TOL, "dweight", dgs)
                        self.assertClose(leaves[2].grad, refs[2].grad, OUT_TOL, "dbias", dbs)
                        if add:
                            self.assertClose(leaves[3].grad, refs[3].grad, 0.0, "dresidual")
                        self.assertClose(rm, rmr, STAT_TOL, "running_mean", 1 + rmr.abs().max())
                        self.assertClose(rv, rvr, STAT_TOL, "running_var")

    def test_modules(self):
        torch.manual_seed(11)
        seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1)).to(DEV)
        ref = copy.deepcopy(seq)
        bt.fuse_relu(seq)
        self.assertIs(type(seq[1]), bt.BatchNormReLU2d)
        self.assertIs(type(seq[2]), nn.Identity)
        self.assertEqual(list(seq.state_dict()), list(ref.state_dict()))
        x = make_input((4, 3, 7, 7), 12)
        self.assertClose(seq(x), ref(x), 1e-4, "fused Sequential", ref(x).abs().max() + 1)
        block = bt.BatchNormAddReLU2d(4).to(DEV)
        h, r = make_input((3, 4, 5, 5), 13, 0.2), make_input((3, 4, 5, 5), 14, 0.0)
        tb = nn.BatchNorm2d(4).to(DEV)
        self.assertClose(block(h, r), torch.relu(tb(h) + r), OUT_TOL, "BatchNormAddReLU2d")
        self.assertClose(block.running_var, tb.running_var, STAT_TOL, "running_var")
        with self.assertRaises(ValueError):
            block(h, r[:, :2])


class Folding(Case):
    def test_fold_conv_and_linear(self):
        torch.manual_seed(12)
        for layer, shape in [(nn.Conv2d(3, 6, 3), (4, 3, 8, 8)), (nn.Conv2d(4, 6, 3, groups=2, bias=False), (2, 4, 6, 6)),
                             (nn.Conv1d(3, 5, 3), (4, 3, 9)), (nn.Linear(7, 5), (6, 7))]:
            with self.subTest(layer=type(layer).__name__):
                layer = layer.to(DEV)
                bn = nn.BatchNorm1d(layer.weight.shape[0]) if layer.weight.dim() <= 3 else nn.BatchNorm2d(6)
                bn = bn.to(DEV)
                bn.train()
                bn(layer(make_input(shape, 1)))  # running statistics from a batch
                with torch.no_grad():
                    bn.weight.uniform_(0.5, 1.5)
                    bn.bias.normal_()
                bn.eval()
                x = make_input(shape, 2)
                folded = bt.fold(layer, bn)
                want = bn(layer(x))
                self.assertClose(folded(x), want, 1e-4, "folded layer", want.abs().max())
                self.assertIsNot(folded, layer)
        model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 36, 4),
                              nn.BatchNorm1d(4)).to(DEV)
        model(make_input((8, 3, 8, 8), 3))
        model.eval()
        x = make_input((3, 3, 8, 8), 4)
        want = model(x)
        bt.fold_sequential(bt.convert(model))
        self.assertIs(type(model[1]), nn.Identity)
        self.assertIs(type(model[5]), nn.Identity)
        self.assertClose(model(x), want, 1e-4, "folded model")
        with self.assertRaises(TypeError):
            bt.fold(nn.ConvTranspose2d(3, 3, 2), nn.BatchNorm2d(3))


@unittest.skipIf(DEVICE != "cuda", "CUDA streams")
class Streams(Case):
    def test_side_stream_and_threads(self):
        mine = bt.BatchNorm2d(4).cuda()
        ref = copy.deepcopy(mine)
        bt.revert(ref)
        x = make_input((8, 4, 16, 16), 30)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            y = mine(x)
            self.assertEqual(bt.handle_for(x.device).stream, s.cuda_stream)
        torch.cuda.current_stream().wait_stream(s)
        self.assertClose(y, ref(x), OUT_TOL, "side-stream y")
        import threading
        errors = []

        def worker():
            try:
                h = bt.handle_for(x.device)
                errors.append(h is main)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        main = bt.handle_for(x.device)
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        self.assertEqual(errors, [False])  # one handle per thread


if __name__ == "__main__":
    print(f"bnorm {bnorm.__version__} from {bnorm.library_path}; torch {torch.__version__}; device {DEVICE}")
    unittest.main(argv=ARGV, verbosity=2)
