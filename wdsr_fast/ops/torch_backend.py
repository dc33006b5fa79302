"""The ``torch`` backend: the plain-PyTorch ops of ``reference.py`` (the op contract) on folded weights.

It runs on any device PyTorch runs on and any WDSR config; ``FastWDSR`` uses it where no fused backend can run.
Its ops are ordinary Python functions over ATen ops, not registered custom ops: torch.compile traces through them.
"""
from __future__ import annotations

import torch

from .reference import head_conv, tail_shuffle, wdsr_a_block, wdsr_b_block

NAME = "torch"
__all__ = ["NAME", "head_conv", "tail_shuffle", "unavailable_reason", "wdsr_a_block", "wdsr_b_block"]


def unavailable_reason(device: torch.device, config=None, dtype: torch.dtype | None = None) -> str | None:
    return None  # any device, config and dtype
