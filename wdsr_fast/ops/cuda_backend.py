"""The ``cuda`` backend: the kernels of csrc/, registered in C++ as ``torch.ops.wdsr_cuda.*`` by ``wdsr_fast._C``.

This module loads the extension if it was built (``pip install --no-build-isolation .`` where torch has CUDA
and nvcc is found), adds the fake (meta) implementations torch.compile needs, and exposes the four ops with
the signatures of ``reference.py``; where the extension does not load, the four ops raise, saying why.
"""
from __future__ import annotations

import torch

from .common import register_fakes

NAME = "cuda"

try:
    from wdsr_fast import _C  # noqa: F401  (importing it registers the ops)

    LOAD_ERROR: str | None = None
except (ImportError, OSError) as exc:  # not built, or built against another torch
    LOAD_ERROR = f"wdsr_fast._C is not built or does not load ({exc}); install with CUDA torch and nvcc present"


# The fused WDSR-B kernel keeps all of a block's weights in shared memory, which bounds its widths
# (csrc/kernels.h: kMaxFeats, kMaxWide, kMaxLowRank).
MAX_FEATS, MAX_WIDE, MAX_LOW_RANK = 32, 256, 32


def unsupported_model(config) -> str | None:
    """Why the CUDA kernels cannot run a model of ``config`` (a WDSRConfig), or None."""
    if config is None or config.variant != "b":
        return None  # WDSR-A's blocks and the head go through cuDNN: any width
    widths = (config.n_feats, config.wide_feats, config.low_rank_feats)
    if widths[0] > MAX_FEATS or widths[1] > MAX_WIDE or widths[2] > MAX_LOW_RANK:
        return (f"the fused CUDA WDSR-B block takes n_feats <= {MAX_FEATS}, expansion width <= {MAX_WIDE} and "
                f"low-rank width <= {MAX_LOW_RANK}; this model has {widths[0]}, {widths[1]} and {widths[2]}")
    return None


def unavailable_reason(device: torch.device, config=None) -> str | None:
    if LOAD_ERROR is not None:
        return LOAD_ERROR
    if device.type != "cuda":  # CPU tensors standing in under TRITON_INTERPRET=1: an interpreter of Triton only
        return "the CUDA kernels need CUDA tensors (TRITON_INTERPRET=1 runs Triton kernels on CPU, not these)"
    return unsupported_model(config)


if LOAD_ERROR is None:
    register_fakes("wdsr_cuda")
    head_conv = torch.ops.wdsr_cuda.head_conv
    wdsr_a_block = torch.ops.wdsr_cuda.wdsr_a_block
    wdsr_b_block = torch.ops.wdsr_cuda.wdsr_b_block
    tail_shuffle = torch.ops.wdsr_cuda.tail_shuffle
else:
    def _not_loaded(*args, **kwargs):
        raise RuntimeError(LOAD_ERROR)

    head_conv = wdsr_a_block = wdsr_b_block = tail_shuffle = _not_loaded
