"""Triton: a 3x3 implicit-GEMM conv with the epilogues WDSR needs, and the ops built on it.

- ``head_conv``: the image is normalised on load (zero padding applies to the normalised values).
- ``wdsr_a_block``: conv3x3 + bias + ReLU into a channels_last wide tensor, then conv3x3 + bias, times
  res_scale, plus the input. The wide tensor goes through memory here (WDSR-A's expand is a 3x3, whose halo of
  wide activations would have to be recomputed 9 times to keep it on chip).

One program computes BLOCK_H x BLOCK_W pixels by CO_BLOCK output channels, looping over the 9 taps and
K_BLOCK-wide slices of the input channels; masked loads give the zero padding. Grid axis 0 runs over images and
tiles (program = image * tiles per image + tile; axis 1, capped at 65535, would cap the batch), axis 1 over the
CO_BLOCK slices.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import (
    check_features,
    check_mean,
    check_weights,
    dot_config,
    mm,
    new_output,
    num_warps,
    on_device,
    pad,
    shifted,
)

BLOCK_H, BLOCK_W = 8, 16
MAX_K_BLOCK, MAX_CO_BLOCK = 64, 64


@triton.jit
def _conv3x3_kernel(
    x_ptr, w_ptr, b_ptr, residual_ptr, mean_ptr, y_ptr,
    H, W, tiles_w, num_tiles, res_scale, norm_scale,
    sxn, sxc, sxh, sxw, srn, src, srh, srw, syn, syc, syh, syw,
    CI: tl.constexpr, CO: tl.constexpr, K_BLOCK: tl.constexpr, CO_BLOCK: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    NORMALISE: tl.constexpr, RELU: tl.constexpr, RESIDUAL: tl.constexpr,
    DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
):
    program = tl.program_id(0)
    n = program // num_tiles
    tile = program % num_tiles
    co = tl.program_id(1) * CO_BLOCK + tl.arange(0, CO_BLOCK)
    co_ok = co < CO
    rows = tl.arange(0, BLOCK_H * BLOCK_W)
    h = (tile // tiles_w) * BLOCK_H + rows // BLOCK_W
    w = (tile % tiles_w) * BLOCK_W + rows % BLOCK_W

    acc = tl.zeros([BLOCK_H * BLOCK_W, CO_BLOCK], dtype=tl.float32)
    x_base = x_ptr + n.to(tl.int64) * sxn
    for tap in tl.static_range(9):
        hh, ww, ok = shifted(h, w, tap // 3 - 1, tap % 3 - 1, H, W)
        for k0 in tl.static_range(0, CI, K_BLOCK):
            ci = k0 + tl.arange(0, K_BLOCK)
            ci_ok = ci < CI
            load_ok = ok[:, None] & ci_ok[None, :]
            v = tl.load(x_base + hh[:, None] * sxh + ww[:, None] * sxw + ci[None, :] * sxc, mask=load_ok, other=0.0)
            if NORMALISE:
                mean = tl.load(mean_ptr + ci, mask=ci_ok, other=0.0)
                v = tl.where(load_ok, (v.to(tl.float32) - mean[None, :]) / norm_scale, 0.0)
            w_tap = tl.load(w_ptr + (co[None, :] * CI + ci[:, None]) * 9 + tap, mask=ci_ok[:, None] & co_ok[None, :],
                            other=0.0)  # [K_BLOCK, CO_BLOCK]
            acc += mm(v, w_tap, DOT_DTYPE, PRECISION)
    acc += tl.load(b_ptr + co, mask=co_ok, other=0.0).to(tl.float32)[None, :]
    if RELU:
        acc = tl.maximum(acc, 0.0)
    in_image = (h < H) & (w < W)
    if RESIDUAL:
        residual_at = residual_ptr + n.to(tl.int64) * srn + h[:, None] * srh + w[:, None] * srw + co[None, :] * src
        residual = tl.load(residual_at, mask=in_image[:, None] & co_ok[None, :], other=0.0)
        acc = residual.to(tl.float32) + res_scale * acc
    tl.store(y_ptr + n.to(tl.int64) * syn + h[:, None] * syh + w[:, None] * syw + co[None, :] * syc,
             acc.to(y_ptr.dtype.element_ty), mask=in_image[:, None] & co_ok[None, :])


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *, relu: bool = False,
            residual: torch.Tensor | None = None, res_scale: float = 1.0, mean: torch.Tensor | None = None,
            norm_scale: float = 1.0) -> torch.Tensor:
    """conv3x3(x or its normalisation) + bias [, ReLU] [, residual + res_scale * that]; channels_last output."""
    n, ci, height, width = x.shape
    co = weight.shape[0]
    y = new_output((n, co, height, width), x, channels_last=True)
    tiles_h, tiles_w = triton.cdiv(height, BLOCK_H), triton.cdiv(width, BLOCK_W)
    co_block = min(MAX_CO_BLOCK, pad(co))
    res = x if residual is None else residual
    with on_device(x):
        _conv3x3_kernel[(n * tiles_h * tiles_w, triton.cdiv(co, co_block))](
            x, weight.contiguous(), bias.contiguous(), res, x if mean is None else mean.contiguous(), y,
            height, width, tiles_w, tiles_h * tiles_w, float(res_scale), float(norm_scale), *x.stride(),
            *res.stride(), *y.stride(), CI=ci, CO=co, K_BLOCK=min(MAX_K_BLOCK, pad(ci)), CO_BLOCK=co_block,
            BLOCK_H=BLOCK_H, BLOCK_W=BLOCK_W, NORMALISE=mean is not None, RELU=relu, RESIDUAL=residual is not None,
            num_warps=num_warps(4), **dot_config(x.dtype))
    return y


def head_conv(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
              norm_scale: float) -> torch.Tensor:
    """Same contract as ``reference.head_conv``; the output is channels_last."""
    check_features("head_conv: image", image)
    if image.shape[1] != 3:
        raise ValueError(f"head_conv: expected an RGB image (N, 3, H, W), got {tuple(image.shape)}")
    check_weights("head_conv", image, weight=(weight, (weight.shape[0], 3, 3, 3)), bias=(bias, (weight.shape[0],)))
    check_mean("head_conv", mean, image)
    return conv3x3(image, weight, bias, mean=mean, norm_scale=norm_scale)


def wdsr_a_block(x: torch.Tensor, w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor,
                 b_reduce: torch.Tensor, res_scale: float) -> torch.Tensor:
    """Same contract as ``reference.wdsr_a_block``; the output is channels_last."""
    check_features("wdsr_a_block: x", x)
    c, wide = x.shape[1], w_expand.shape[0]
    check_weights("wdsr_a_block", x, w_expand=(w_expand, (wide, c, 3, 3)), b_expand=(b_expand, (wide,)),
                  w_reduce=(w_reduce, (c, wide, 3, 3)), b_reduce=(b_reduce, (c,)))
    expanded = conv3x3(x, w_expand, b_expand, relu=True)
    return conv3x3(expanded, w_reduce, b_reduce, residual=x, res_scale=res_scale)
