"""The ``triton`` backend: the four ops of ``reference.py`` as ``torch.ops.wdsr_triton.*`` custom ops.

Registered with ``torch.library.custom_op`` and fake implementations, so ``torch.compile`` (fullgraph)
and CUDA-graph capture see them as single opaque ops with known output shapes. The kernels:

- ``conv.py``: a 3x3 implicit-GEMM conv with WDSR's epilogues: ``head_conv`` and ``wdsr_a_block``;
- ``block_b.py``: the whole WDSR-B block in one kernel, the wide activation kept on chip;
- ``tail.py``: tail conv, skip conv, pixel shuffle and de-normalisation in one kernel;
- ``common.py``: what they share (tile padding, dot precision, input checks, output allocation, num_warps).

They run on CUDA tensors, or on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``): the registry's
device rule (``wdsr_fast.ops.device_reason``) says which.
"""
from __future__ import annotations

import torch

from ..common import register_fakes
from . import block_b, conv, tail

NAME = "triton"


def unavailable_reason(device: torch.device, config=None, dtype: torch.dtype | None = None) -> str | None:
    return None  # any WDSR config, fp32/fp16/bf16, on the devices the registry's device rule lets through


@torch.library.custom_op("wdsr_triton::head_conv", mutates_args=())
def head_conv(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
              norm_scale: float) -> torch.Tensor:
    return conv.head_conv(image, weight, bias, mean, norm_scale)


@torch.library.custom_op("wdsr_triton::wdsr_a_block", mutates_args=())
def wdsr_a_block(x: torch.Tensor, w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor,
                 b_reduce: torch.Tensor, res_scale: float) -> torch.Tensor:
    return conv.wdsr_a_block(x, w_expand, b_expand, w_reduce, b_reduce, res_scale)


@torch.library.custom_op("wdsr_triton::wdsr_b_block", mutates_args=())
def wdsr_b_block(x: torch.Tensor, w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor,
                 b_reduce: torch.Tensor, w_conv: torch.Tensor, b_conv: torch.Tensor, res_scale: float) -> torch.Tensor:
    return block_b.wdsr_b_block(x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv, res_scale)


@torch.library.custom_op("wdsr_triton::tail_shuffle", mutates_args=())
def tail_shuffle(features: torch.Tensor, image: torch.Tensor, w_tail: torch.Tensor, b_tail: torch.Tensor,
                 w_skip: torch.Tensor, b_skip: torch.Tensor, mean: torch.Tensor, norm_scale: float,
                 scale: int) -> torch.Tensor:
    return tail.tail_shuffle(features, image, w_tail, b_tail, w_skip, b_skip, mean, norm_scale, scale)


register_fakes("wdsr_triton")
