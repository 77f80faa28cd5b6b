"""Folding an inference batch norm into the convolution or linear layer before it, with
bnorm_fold_into_weights: W' = W * s, b' = (b - running_mean) * s + beta,
s = gamma / sqrt(running_var + eps), so layer'(x) == bn(layer(x)) in eval mode.
"""
import copy

import torch
from torch import nn

from . import _functional as F

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@torch.no_grad()
def fold(layer, bn):
    """A copy of layer (Conv1d/2d/3d or Linear) with bn (a batch norm with running
    statistics, as in eval mode) folded in; always with a bias."""
    if not isinstance(layer, _LAYERS):
        raise TypeError(f"fold takes Conv1d/2d/3d and Linear layers (output channels first), got "
                        f"{type(layer).__name__}")
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        raise TypeError(f"fold takes a batch norm, got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold needs the batch norm's running statistics (track_running_stats=True)")
    w = layer.weight
    if w.shape[0] != bn.num_features:
        raise ValueError(f"{type(layer).__name__} has {w.shape[0]} output channels, the batch norm "
                         f"{bn.num_features}")
    weight = w.detach()
    wv = weight if weight.dim() >= 2 else weight.reshape(weight.shape[0], -1)
    wv = F._borrowable(wv)
    dev = weight.device
    f32 = F._f32
    bias = f32(layer.bias)
    w_out = torch.empty_like(wv)
    b_out = torch.empty(w.shape[0], dtype=torch.float32, device=dev)
    F.handle_for(dev).fold_into_weights(wv, bias, f32(bn.weight), f32(bn.bias), f32(bn.running_mean),
                                        f32(bn.running_var), bn.eps, w_out, b_out)
    out = copy.deepcopy(layer)
    out.weight = nn.Parameter(w_out.reshape(w.shape), requires_grad=w.requires_grad)
    bias_dtype = layer.bias.dtype if layer.bias is not None else w.dtype
    out.bias = nn.Parameter(b_out.to(bias_dtype), requires_grad=w.requires_grad)
    return out


def fold_sequential(module):
    """In every nn.Sequential of module, a Conv/Linear followed by a batch norm becomes the
    folded layer and an nn.Identity, in place, for inference. Returns module."""
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            layer, bn = seq._modules[a], seq._modules[b]
            if isinstance(layer, _LAYERS) and isinstance(bn, nn.modules.batchnorm._BatchNorm) \
                    and bn.running_mean is not None:
                seq._modules[a] = fold(layer, bn)
                seq._modules[b] = nn.Identity()
    return module
