"""The ``torch`` backend: the op contract of ``reference.py`` in plain PyTorch, arranged for speed.

It runs on any device PyTorch runs on and any WDSR config; ``FastWDSR`` uses it where no fused backend can run.
Its ops are ordinary Python functions over ATen ops, not registered custom ops: torch.compile traces through them.
They compute what ``reference.py`` computes (tested against it in float64), arranged so that no step is slower than
the plain model's:

- features are channels_last (an NCHW input is converted once), and every conv weight is used in the activation's
  memory format;
- ReLU, the residual add and the de-normalisation run in place: each intermediate tensor is allocated once;
- on CPU, the WDSR-B block's two 1x1 convs on a map larger than ``CPU_CHUNK_PIXELS`` pixels are matrix products
  over chunks of that many pixels (a channels_last map is a (pixels, channels) matrix without a copy) through one
  reused buffer, so the wide activation (6x the features, 100 MB at 480x270) never exists whole: the chunk stays in
  cache and the low-rank result is written straight into its place. Smaller maps, and other devices, take the
  1x1 convs whole.
"""
from __future__ import annotations

import os

import torch
from torch.nn import functional as F

from . import reference
from .common import POISON_ENV

NAME = "torch"
__all__ = ["NAME", "head_conv", "tail_shuffle", "unavailable_reason", "wdsr_a_block", "wdsr_b_block"]

# Pixels per chunk of the WDSR-B block's 1x1 convs on CPU (a (4096, 192) fp32 wide chunk is 3 MB, 1.5 MB a thread
# with 2 threads: L2-sized). Maps of at most one chunk take the two 1x1 convs whole. The chunk sizes tried and their
# timings: benchmarks/README.md, "Where the design numbers come from".
CPU_CHUNK_PIXELS = 4096

_CHANNELS_LAST = torch.channels_last


def unavailable_reason(device: torch.device, config=None, dtype: torch.dtype | None = None) -> str | None:
    return None  # any device, config and dtype


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
    n, _, h, w = x.shape
    if x.device.type == "cpu" and n * h * w > CPU_CHUNK_PIXELS:
        low_rank = _low_rank_in_chunks(x, w_expand, b_expand, w_reduce, b_reduce)
    else:
        wide = F.conv2d(x, _channels_last(w_expand), b_expand).relu_()
        low_rank = F.conv2d(wide, _channels_last(w_reduce), b_reduce)
    return _residual(x, F.conv2d(low_rank, _channels_last(w_conv), b_conv, padding=1), res_scale)


def _low_rank_in_chunks(x: torch.Tensor, w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor,
                        b_reduce: torch.Tensor) -> torch.Tensor:
    """conv1x1_reduce(relu(conv1x1_expand(x))) of a channels_last x, CPU_CHUNK_PIXELS pixels at a time through one
    reused wide buffer: (n, low_rank, h, w), channels_last."""
    n, c, h, w = x.shape
    wide_feats, low_rank_feats = w_expand.shape[0], w_reduce.shape[0]
    pixels = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view: (pixels, c)
    expand = w_expand.reshape(wide_feats, c).t()  # (c, wide)
    reduce = w_reduce.reshape(low_rank_feats, wide_feats).t()  # (wide, low_rank)
    low_rank = _new(x, (n * h * w, low_rank_feats))
    wide = _new(x, (min(CPU_CHUNK_PIXELS, n * h * w), wide_feats))  # reused by every chunk
    for start, stop in _chunks(n * h * w, CPU_CHUNK_PIXELS):
        wide_chunk = wide[: stop - start]
        torch.addmm(b_expand, pixels[start:stop], expand, out=wide_chunk).relu_()
        torch.addmm(b_reduce, wide_chunk, reduce, out=low_rank[start:stop])
    return low_rank.view(n, h, w, low_rank_feats).permute(0, 3, 1, 2)


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
