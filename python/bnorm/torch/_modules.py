"""Drop-in batch-norm modules: subclasses of torch.nn.BatchNorm1d/2d/3d whose forward runs
bnorm. Constructor, parameters, buffers, state_dict keys (num_batches_tracked included),
train()/eval(), momentum=None's cumulative average and isinstance checks are torch's own,
so convert() swaps a module's class in place: parameters, buffers, hooks and optimizer
references stay as they are.
"""
from torch import nn

from bnorm._enums import Activation
from . import _functional as F


class _Bnorm:
    """forward of torch's _BatchNorm with bnorm underneath (the same momentum,
    num_batches_tracked and mode logic, line for line)."""

    _act = Activation.IDENTITY

    def _get_name(self):
        return "bnorm." + type(self).__name__

    def _factor_and_stats(self):
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average: the k-th batch has weight 1/k
                factor = 1.0 / float(self.num_batches_tracked)
            else:
                factor = self.momentum
        training = self.training or (self.running_mean is None and self.running_var is None)
        use_running = not self.training or self.track_running_stats
        rm = self.running_mean if use_running else None
        rv = self.running_var if use_running else None
        return factor, training, rm, rv

    def forward(self, input):
        self._check_input_dim(input)
        factor, training, rm, rv = self._factor_and_stats()
        return F._run(input, None, rm, rv, self.weight, self.bias, training, factor, self.eps, self._act)


class BatchNorm1d(_Bnorm, nn.BatchNorm1d):
    """torch.nn.BatchNorm1d on (N, C) and (N, C, L) inputs, through bnorm."""


class BatchNorm2d(_Bnorm, nn.BatchNorm2d):
    """torch.nn.BatchNorm2d on (N, C, H, W), contiguous or channels_last, through bnorm."""


class BatchNorm3d(_Bnorm, nn.BatchNorm3d):
    """torch.nn.BatchNorm3d on (N, C, D, H, W), contiguous or channels_last_3d, through bnorm."""


class BatchNormReLU1d(BatchNorm1d):
    """relu(BatchNorm1d(x)) in one pass; the state of a BatchNorm1d."""
    _act = Activation.RELU


class BatchNormReLU2d(BatchNorm2d):
    """relu(BatchNorm2d(x)) in one pass; the state of a BatchNorm2d."""
    _act = Activation.RELU


class BatchNormReLU3d(BatchNorm3d):
    _act = Activation.RELU


class BatchNormAddReLU2d(BatchNorm2d):
    """forward(x, residual) = relu(BatchNorm2d(x) + residual), the residual block's tail,
    in one pass; the state of a BatchNorm2d."""
    _act = Activation.RELU

    def forward(self, input, residual):
        self._check_input_dim(input)
        factor, training, rm, rv = self._factor_and_stats()
        if residual is None or residual.shape != input.shape:
            raise ValueError(f"residual must have the input's shape {tuple(input.shape)}")
        return F._run(input, residual, rm, rv, self.weight, self.bias, training, factor, self.eps, self._act)


_SWAP = {nn.BatchNorm1d: BatchNorm1d, nn.BatchNorm2d: BatchNorm2d, nn.BatchNorm3d: BatchNorm3d}
_BACK = {v: k for k, v in _SWAP.items()}
_RELU = {BatchNorm1d: BatchNormReLU1d, BatchNorm2d: BatchNormReLU2d, BatchNorm3d: BatchNormReLU3d}
_RELU_BACK = {v: k for k, v in _RELU.items()}


def convert(module):
    """Makes every torch.nn.BatchNorm1d/2d/3d in module (itself included) run bnorm, in
    place, and returns module: model.apply(bnorm.torch.convert) or convert(model).
    Subclasses of torch's classes (other than bnorm's) and SyncBatchNorm are left alone."""
    for m in module.modules():
        cls = _SWAP.get(type(m))
        if cls is not None:
            m.__class__ = cls
    return module


def revert(module):
    """The inverse of convert: bnorm's BatchNorm1d/2d/3d become torch's again, in place
    (the fused modules of fuse_relu have no torch equivalent and stay)."""
    for m in module.modules():
        cls = _BACK.get(type(m))
        if cls is not None:
            m.__class__ = cls
    return module


def fuse_relu(module):
    """In every nn.Sequential of module, a batch norm followed by nn.ReLU becomes one
    bnorm BatchNormReLU (same parameters and buffers) and an nn.Identity. Returns module."""
    convert(module)
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            bn, relu = seq._modules[a], seq._modules[b]
            if type(bn) in _RELU and type(relu) is nn.ReLU:
                bn.__class__ = _RELU[type(bn)]
                seq._modules[b] = nn.Identity()
    return module
