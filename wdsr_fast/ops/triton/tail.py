"""Triton: the tail, the skip branch, the pixel shuffle and the de-normalisation in one kernel.

    out = PixelShuffle(conv3x3_tail(features) + conv5x5_skip(normalised image)) * norm_scale + mean

One program computes a BLOCK_H x BLOCK_W tile of LR pixels as a [pixels, 3s^2] accumulator (3s^2 = 12, 27,
48 padded to 16, 32, 64): the tail is 9 tap dots over the features; the skip is a single dot whose K axis
packs the 5x5 taps and the 3 colours (75 of 128), normalising the image on load (zero padding applies to the
normalised values, as in the reference). The epilogue writes accumulator column k = colour*s^2 + di*s + dj of
pixel (h, w) straight to out[n, colour, h*s + di, w*s + dj]: no shuffle pass, no add pass. Programs run along grid
axis 0 only, image by image (axis 1 would cap the batch at 65535).

Design in numbers: an 8x16 tile of LR pixels, no recompute (each tap's features and the image's 5x5 window are
reloaded from L1/L2, 9 and 25 times); per tile 128 x (9 x 32 + 128) x 3s^2-padded MACs, 8 KB of features read per
tap, 128 x 3s^2 output values written. Compiled for sm_90 as a 960x540 launch (scripts/triton_sm90_compile.py, Triton
3.6, fp16 and bf16): x2 / x3 / x4 147 / 158 / 222 registers, 36 / 40 / 48 KB shared memory, 3 / 3 / 2 CTAs of 4 warps
per SM, no stack; the taps 36 wgmma m64nNk16 (N 16 / 32 / 64, A from shared memory), the skip 16 (A from registers);
10 wgmma waits a tile. In fp32 the IEEE tl.dot keeps a per-thread stack of 10-24 KB, for which the driver reserves
local memory for every resident thread. Timings: benchmarks/README.md, "Where the design numbers come from".
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
SKIP_TAPS = 25 * 3  # 5x5 taps x 3 colours
SKIP_K = 128  # SKIP_TAPS padded to a power of two


@triton.jit
def _tail_shuffle_kernel(
    f_ptr, image_ptr, w_tail_ptr, b_tail_ptr, w_skip_ptr, b_skip_ptr, mean_ptr, out_ptr,
    H, W, tiles_w, num_tiles, norm_scale,
    sfn, sfc, sfh, sfw, sin, sic, sih, siw,
    C: tl.constexpr, C_PAD: tl.constexpr, SCALE: tl.constexpr, OUT_PAD: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, SKIP_TAPS: tl.constexpr, SKIP_K: tl.constexpr,
    DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
):
    program = tl.program_id(0)
    n = program // num_tiles
    tile = program % num_tiles
    rows = tl.arange(0, BLOCK_H * BLOCK_W)
    h = (tile // tiles_w) * BLOCK_H + rows // BLOCK_W
    w = (tile % tiles_w) * BLOCK_W + rows % BLOCK_W
    OUT: tl.constexpr = 3 * SCALE * SCALE
    o = tl.arange(0, OUT_PAD)
    o_ok = o < OUT
    c = tl.arange(0, C_PAD)
    c_ok = c < C

    # Tail: 3x3 over the features, [pixels, C_PAD] @ [C_PAD, OUT_PAD] per tap.
    acc = tl.zeros([BLOCK_H * BLOCK_W, OUT_PAD], dtype=tl.float32)
    f_base = f_ptr + n.to(tl.int64) * sfn
    for tap in tl.static_range(9):
        hh, ww, ok = shifted(h, w, tap // 3 - 1, tap % 3 - 1, H, W)
        f = tl.load(f_base + hh[:, None] * sfh + ww[:, None] * sfw + c[None, :] * sfc,
                    mask=ok[:, None] & c_ok[None, :], other=0.0)
        w_tap = tl.load(w_tail_ptr + (o[None, :] * C + c[:, None]) * 9 + tap, mask=c_ok[:, None] & o_ok[None, :],
                        other=0.0)
        acc += mm(f, w_tap, DOT_DTYPE, PRECISION)

    # Skip: 5x5 over the normalised image as one dot, K = (tap, colour) pairs.
    k = tl.arange(0, SKIP_K)
    k_ok = k < SKIP_TAPS
    tap = k // 3
    colour = k % 3
    hh = h[:, None] + (tap // 5 - 2)[None, :]
    ww = w[:, None] + (tap % 5 - 2)[None, :]
    ok = k_ok[None, :] & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
    pixels = tl.load(image_ptr + n.to(tl.int64) * sin + colour[None, :] * sic + hh * sih + ww * siw, mask=ok,
                     other=0.0).to(tl.float32)
    mean_k = tl.load(mean_ptr + colour, mask=k_ok, other=0.0)
    normalised = tl.where(ok, (pixels - mean_k[None, :]) / norm_scale, 0.0)
    w_skip = tl.load(w_skip_ptr + o[None, :] * SKIP_TAPS + colour[:, None] * 25 + tap[:, None],
                     mask=k_ok[:, None] & o_ok[None, :], other=0.0)  # [SKIP_K, OUT_PAD]
    acc += mm(normalised, w_skip, DOT_DTYPE, PRECISION)

    bias = tl.load(b_tail_ptr + o, mask=o_ok, other=0.0).to(tl.float32) + \
        tl.load(b_skip_ptr + o, mask=o_ok, other=0.0).to(tl.float32)
    out_colour = o // (SCALE * SCALE)
    di = (o % (SCALE * SCALE)) // SCALE
    dj = o % SCALE
    mean_o = tl.load(mean_ptr + out_colour, mask=o_ok, other=0.0)
    out = (acc + bias[None, :]) * norm_scale + mean_o[None, :]

    out_h = h[:, None] * SCALE + di[None, :]
    out_w = w[:, None] * SCALE + dj[None, :]
    out_base = out_ptr + n.to(tl.int64) * (3 * H * SCALE * W * SCALE)
    tl.store(out_base + out_colour[None, :] * (H * SCALE * W * SCALE) + out_h * (W * SCALE) + out_w,
             out.to(out_ptr.dtype.element_ty), mask=((h < H) & (w < W))[:, None] & o_ok[None, :])


def tail_shuffle(features: torch.Tensor, image: torch.Tensor, w_tail: torch.Tensor, b_tail: torch.Tensor,
                 w_skip: torch.Tensor, b_skip: torch.Tensor, mean: torch.Tensor, norm_scale: float,
                 scale: int) -> torch.Tensor:
    """Same contract as ``reference.tail_shuffle``: (N, 3, s*H, s*W), contiguous NCHW."""
    check_features("tail_shuffle: features", features)
    check_features("tail_shuffle: image", image)
    if scale not in (2, 3, 4):
        raise ValueError(f"tail_shuffle: scale must be 2, 3 or 4, got {scale}")
    n, c, height, width = features.shape
    if image.shape != (n, 3, height, width) or image.dtype != features.dtype or image.device != features.device:
        raise ValueError(f"tail_shuffle: image must be ({n}, 3, {height}, {width}) {features.dtype} on "
                         f"{features.device} like the features, "
                         f"got {tuple(image.shape)} {image.dtype} on {image.device}")
    out_feats = 3 * scale**2
    check_weights("tail_shuffle", features, w_tail=(w_tail, (out_feats, c, 3, 3)), b_tail=(b_tail, (out_feats,)),
                  w_skip=(w_skip, (out_feats, 3, 5, 5)), b_skip=(b_skip, (out_feats,)))
    check_mean("tail_shuffle", mean, features)
    out = new_output((n, 3, height * scale, width * scale), features, channels_last=False)
    if out.numel() >= 2**31:
        raise ValueError(f"tail_shuffle: output {tuple(out.shape)} has 2**31 or more elements; upscale in tiles")
    tiles_h, tiles_w = triton.cdiv(height, BLOCK_H), triton.cdiv(width, BLOCK_W)
    with on_device(features):
        _tail_shuffle_kernel[(n * tiles_h * tiles_w,)](
            features, image, w_tail.contiguous(), b_tail.contiguous(), w_skip.contiguous(), b_skip.contiguous(),
            mean.contiguous(), out, height, width, tiles_w, tiles_h * tiles_w, float(norm_scale), *features.stride(),
            *image.stride(), C=c, C_PAD=pad(c), SCALE=scale, OUT_PAD=pad(out_feats), BLOCK_H=BLOCK_H,
            BLOCK_W=BLOCK_W, SKIP_TAPS=SKIP_TAPS, SKIP_K=SKIP_K, num_warps=num_warps(4),
            **dot_config(features.dtype))
    return out
