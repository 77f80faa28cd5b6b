"""bnorm for PyTorch: drop-in batch norm modules, their functional forms, the fused
ReLU and add+ReLU, and folding for inference.

    model.apply(bnorm.torch.convert)   # every nn.BatchNorm1d/2d/3d now runs bnorm

CPU tensors run on bnorm's CPU backend, CUDA tensors on its CUDA backend (a handle per
device and thread, on the tensor's current stream). Inputs: float32, float16 or
bfloat16 (parameters and statistics kept in float32, as under autocast), contiguous or
channels_last. bnorm has no float64: a float64 input raises bnorm.NotSupportedError.
"""
from ._fold import fold, fold_sequential
from ._functional import (BatchNormFunction, batch_norm, batch_norm_add_relu, batch_norm_relu, handle_for,
                          set_cpu_backend)
from ._modules import (BatchNorm1d, BatchNorm2d, BatchNorm3d, BatchNormAddReLU2d, BatchNormReLU1d, BatchNormReLU2d,
                       BatchNormReLU3d, convert, fuse_relu, revert)

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "BatchNormAddReLU2d", "BatchNormFunction", "BatchNormReLU1d",
           "BatchNormReLU2d", "BatchNormReLU3d", "batch_norm", "batch_norm_add_relu", "batch_norm_relu", "convert",
           "fold", "fold_sequential", "fuse_relu", "handle_for", "revert", "set_cpu_backend"]
