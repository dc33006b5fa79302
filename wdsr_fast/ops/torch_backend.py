"""The ``torch`` backend: the op contract of ``reference.py`` in plain PyTorch, arranged for speed.

It runs on any device PyTorch runs on and any WDSR config; ``FastWDSR`` uses it where no fused backend can run.
Its ops are ordinary Python functions over ATen ops, not registered custom ops: torch.compile traces through them.
They compute what ``reference.py`` computes (tested against it in float64), arranged so that no step is slower than
the plain model's:

- features are channels_last (an NCHW input is converted once), and every conv weight is used in the activation's
  memory format (a mismatch makes oneDNN reorder per call);
- ReLU, bias-free residual adds and the de-normalisation run in place: each intermediate tensor is allocated once;
- the WDSR-B block's two 1x1 convs are matrix products over the pixels (a channels_last map is a (pixels, channels)
  matrix without a copy). On CPU they run over chunks of ``CPU_CHUNK_PIXELS`` pixels through one reused buffer, so
  the wide activation (6x the features, 100 MB at 480x270) never exists whole: the chunk stays in cache and the
  low-rank result is written straight into its place. Elsewhere (GPU) one product covers all pixels.
"""
from __future__ import annotations

import os

import torch
from torch.nn import functional as F

from . import reference
from .common import POISON_ENV

NAME = "torch"
__all__ = ["NAME", "head_conv", "tail_shuffle", "unavailable_reason", "wdsr_a_block", "wdsr_b_block"]

# Pixels per chunk of the WDSR-B block's 1x1 convs on CPU (a (8192, 192) fp32 wide chunk is 6 MB, 3 MB a thread
# with 2 threads). Measured on an Intel Xeon (AVX-512), one WDSR-B 32x16 block, 1 thread, interleaved medians: on
# 480x270 features, chunks of 2048 to 8192 pixels 74-78 ms, 16384 86 ms, 1x1 convs on the whole map 177 ms; on
# 128x128 features, chunks 8.7-9.8 ms against 9.4 ms for the convs. Fewer, larger chunks mean fewer thread
# fork/joins, which cost most where the cores are shared with other work.
CPU_CHUNK_PIXELS = 8192

_CHANNELS_LAST = torch.channels_last


def unavailable_reason(device: torch.device, config=None) -> str | None:
    return None  # any device, any config


def _new(like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised buffer (NaN-filled under the tests' poison switch, so that a missed write shows)."""
    if os.environ.get(POISON_ENV) == "1":
        return like.new_full(shape, float("nan"))
    return like.new_empty(shape)


def _chunks(total: int, chunk: int):
    """(start, stop) of each chunk of ``chunk`` items covering range(total)."""
    return ((start, min(start + chunk, total)) for start in range(0, total, chunk))


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=_CHANNELS_LAST)


def _residual(x: torch.Tensor, y: torch.Tensor, res_scale: float) -> torch.Tensor:
    """x + res_scale * y, written into y (y is a fresh conv output)."""
    if res_scale != 1:
        y.mul_(res_scale)
    return y.add_(x)


def _normalised(image: torch.Tensor, mean: torch.Tensor, norm_scale: float) -> torch.Tensor:
    if image.dtype != torch.float32:
        return reference.normalise(image, mean, norm_scale)  # computed in fp32 (or fp64), then cast back
    return (image - mean.view(1, -1, 1, 1)).div_(norm_scale)


def head_conv(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
              norm_scale: float) -> torch.Tensor:
    """``reference.head_conv``: image (N, 3, H, W) -> features (N, n_feats, H, W), channels_last."""
    return F.conv2d(_normalised(_channels_last(image), mean, norm_scale), _channels_last(weight), bias, padding=1)


def wdsr_a_block(x: torch.Tensor, w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor,
                 b_reduce: torch.Tensor, res_scale: float) -> torch.Tensor:
    """``reference.wdsr_a_block``, channels_last."""
    x = _channels_last(x)
    wide = F.conv2d(x, _channels_last(w_expand), b_expand, padding=1).relu_()
    return _residual(x, F.conv2d(wide, _channels_last(w_reduce), b_reduce, padding=1), res_scale)


def wdsr_b_block(x: torch.Tensor, w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor,
                 b_reduce: torch.Tensor, w_conv: torch.Tensor, b_conv: torch.Tensor,
                 res_scale: float) -> torch.Tensor:
    """``reference.wdsr_b_block``, channels_last; the 1x1 convs as chunked matrix products (module docstring)."""
    x = _channels_last(x)
    n, c, h, w = x.shape
    wide_feats, low_rank_feats = w_expand.shape[0], w_reduce.shape[0]
    pixels = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view: (pixels, c)
    expand = w_expand.reshape(wide_feats, c).t()  # (c, wide)
    reduce = w_reduce.reshape(low_rank_feats, wide_feats).t()  # (wide, low_rank)
    low_rank = _new(x, (n * h * w, low_rank_feats))
    chunk = CPU_CHUNK_PIXELS if x.device.type == "cpu" else max(1, n * h * w)
    wide = _new(x, (min(chunk, n * h * w), wide_feats))  # reused by every chunk
    for start, stop in _chunks(n * h * w, chunk):
        wide_chunk = wide[: stop - start]
        torch.addmm(b_expand, pixels[start:stop], expand, out=wide_chunk).relu_()
        torch.addmm(b_reduce, wide_chunk, reduce, out=low_rank[start:stop])
    low_rank = low_rank.view(n, h, w, low_rank_feats).permute(0, 3, 1, 2)  # (n, low_rank, h, w), channels_last
    return _residual(x, F.conv2d(low_rank, _channels_last(w_conv), b_conv, padding=1), res_scale)


def tail_shuffle(features: torch.Tensor, image: torch.Tensor, w_tail: torch.Tensor, b_tail: torch.Tensor,
                 w_skip: torch.Tensor, b_skip: torch.Tensor, mean: torch.Tensor, norm_scale: float,
                 scale: int) -> torch.Tensor:
    """``reference.tail_shuffle``: -> (N, 3, s*H, s*W), contiguous NCHW."""
    summed = F.conv2d(_channels_last(features), _channels_last(w_tail), b_tail, padding=1)
    summed.add_(F.conv2d(_normalised(_channels_last(image), mean, norm_scale), _channels_last(w_skip), b_skip,
                         padding=2))
    shuffled = F.pixel_shuffle(summed, scale)
    if summed.dtype != torch.float32:
        return reference.denormalise(shuffled, mean, norm_scale)
    n, _, sh, sw = shuffled.shape
    out = _new(shuffled, (n, 3, sh, sw))  # contiguous NCHW
    return torch.add(mean.view(1, -1, 1, 1), shuffled, alpha=norm_scale, out=out)  # mean + norm_scale * shuffled
