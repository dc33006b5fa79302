"""The CUDA backend: the kernels of csrc/, registered in C++ as ``torch.ops.wdsr_cuda.*`` by ``wdsr_fast._C``.

This module loads the extension if it was built (``pip install --no-build-isolation .`` where torch has CUDA
and nvcc is found), adds the fake (meta) implementations torch.compile needs, and exposes the four ops with
the signatures of ``reference.py``.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import register_fakes

try:
    from wdsr_fast import _C  # noqa: F401  (importing it registers the ops)

    LOAD_ERROR: Optional[str] = None
except (ImportError, OSError) as exc:  # not built, or built against another torch
    LOAD_ERROR = f"wdsr_fast._C is not built or does not load ({exc}); install with CUDA torch and nvcc present"


def unavailable_reason(device: torch.device) -> Optional[str]:
    if LOAD_ERROR is not None:
        return LOAD_ERROR
    if device.type != "cuda":
        return f"the CUDA kernels run on CUDA tensors, not on {device}"
    return None


if LOAD_ERROR is None:
    register_fakes("wdsr_cuda")
    head_conv = torch.ops.wdsr_cuda.head_conv
    wdsr_a_block = torch.ops.wdsr_cuda.wdsr_a_block
    wdsr_b_block = torch.ops.wdsr_cuda.wdsr_b_block
    tail_shuffle = torch.ops.wdsr_cuda.tail_shuffle
