"""The op contract: each fused op written in plain PyTorch. This is the spec every backend matches.

Tensors are logical NCHW (shape N x C x H x W) in any memory format; the fused backends keep features
channels_last. Weights are plain folded conv weights (``fold.py``) in OIHW, in the activation dtype;
``mean`` is a (3,) fp32 tensor in pixel units; ``norm_scale`` the normalisation divisor.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.promote_types(t.dtype, torch.float32))


def normalise(image: torch.Tensor, mean: torch.Tensor, norm_scale: float) -> torch.Tensor:
    """(image - mean) / norm_scale, computed in fp32 (or fp64) whatever the image dtype."""
    return ((_at_least_fp32(image) - mean.view(1, -1, 1, 1)) / norm_scale).to(image.dtype)


def denormalise(x: torch.Tensor, mean: torch.Tensor, norm_scale: float) -> torch.Tensor:
    """x * norm_scale + mean, computed in fp32 (or fp64) whatever the dtype of x; contiguous NCHW in x's dtype."""
    return (_at_least_fp32(x) * norm_scale + mean.view(1, -1, 1, 1)).to(x.dtype).contiguous()


def head_conv(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
              norm_scale: float) -> torch.Tensor:
    """3x3 conv of the normalised image (zero padding applies to the normalised values).

    image (N, 3, H, W) -> features (N, n_feats, H, W)
    """
    return F.conv2d(normalise(image, mean, norm_scale), weight, bias, padding=1)


def wdsr_a_block(x: torch.Tensor, w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor,
                 b_reduce: torch.Tensor, res_scale: float) -> torch.Tensor:
    """y = x + res_scale * conv3x3_reduce(relu(conv3x3_expand(x)))

    x (N, C, H, W); w_expand (wide, C, 3, 3); w_reduce (C, wide, 3, 3)
    """
    wide = F.relu(F.conv2d(x, w_expand, b_expand, padding=1))
    return x + res_scale * F.conv2d(wide, w_reduce, b_reduce, padding=1)


def wdsr_b_block(x: torch.Tensor, w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor,
                 b_reduce: torch.Tensor, w_conv: torch.Tensor, b_conv: torch.Tensor,
                 res_scale: float) -> torch.Tensor:
    """y = x + res_scale * conv3x3(conv1x1_reduce(relu(conv1x1_expand(x))))

    x (N, C, H, W); w_expand (wide, C, 1, 1); w_reduce (low_rank, wide, 1, 1); w_conv (C, low_rank, 3, 3)
    """
    wide = F.relu(F.conv2d(x, w_expand, b_expand))
    low_rank = F.conv2d(wide, w_reduce, b_reduce)
    return x + res_scale * F.conv2d(low_rank, w_conv, b_conv, padding=1)


def tail_shuffle(features: torch.Tensor, image: torch.Tensor, w_tail: torch.Tensor, b_tail: torch.Tensor,
                 w_skip: torch.Tensor, b_skip: torch.Tensor, mean: torch.Tensor, norm_scale: float,
                 scale: int) -> torch.Tensor:
    """PixelShuffle(conv3x3_tail(features) + conv5x5_skip(normalised image)), de-normalised.

    features (N, C, H, W); image (N, 3, H, W); w_tail (3s^2, C, 3, 3); w_skip (3s^2, 3, 5, 5)
    -> (N, 3, s*H, s*W), contiguous NCHW
    """
    summed = F.conv2d(features, w_tail, b_tail, padding=1)
    summed = summed + F.conv2d(normalise(image, mean, norm_scale), w_skip, b_skip, padding=2)
    return denormalise(F.pixel_shuffle(summed, scale), mean, norm_scale)
