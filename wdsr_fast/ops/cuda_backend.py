"""The ``cuda`` backend: the kernels of csrc/cuda/, registered in C++ as ``torch.ops.wdsr_cuda.*`` by ``wdsr_fast._C``.

This module loads the extension if it was built (``pip install --no-build-isolation .`` where torch has CUDA
and nvcc is found) through ``common.load_extension`` and exposes the four ops with the signatures of
``reference.py``; where the extension does not load, the four ops raise, saying why.
"""
from __future__ import annotations

import torch

from .common import load_extension

NAME = "cuda"

_C, LOAD_ERROR, (head_conv, wdsr_a_block, wdsr_b_block, tail_shuffle) = load_extension(
    "_C", "wdsr_cuda", "install with CUDA torch and nvcc present")


# The fused WDSR-B kernel keeps all of a block's weights in shared memory, which bounds its widths
# (csrc/cuda/kernels.h: kMaxFeats, kMaxWide, kMaxLowRank), and uses bf16 tensor cores (kMinComputeCapability).
MAX_FEATS, MAX_WIDE, MAX_LOW_RANK = 32, 256, 32
MIN_COMPUTE_CAPABILITY = (8, 0)


def fused_block_shared_bytes(wide: int) -> int:
    """Dynamic shared memory (bytes) one CTA of the fp16/bf16 fused WDSR-B block asks for at expansion width
    ``wide``: csrc/cuda/wdsr_b_block.cu's MmaSmem layout (tests/test_cuda_emulated.py checks that the two agree).
    The fp32 block uses 42 KB of static shared memory, which every GPU it runs on has."""
    wide_pad = -(-wide // 64) * 64  # expansion chunks of 64
    halves = (wide_pad * 40            # w_expand rows, padded to 40
              + 32 * (wide_pad + 8)    # w_reduce rows
              + 9 * 32 * 40            # w_conv, a row per tap and low-rank channel
              + 336 * 40 + 336 * 48    # the haloed x and t tiles (21 strips of 16 pixels)
              + 8 * 16 * 72)           # a 16 x 64 wide scratch per warp
    floats = wide_pad + 2 * 32 + 8 * 16 * 36  # biases and a 16 x 32 accumulator scratch per warp
    return -(-halves * 2 // 128) * 128 + floats * 4


def unsupported_model(config) -> str | None:
    """Why the CUDA kernels cannot run a model of ``config`` (a WDSRConfig), or None."""
    if config is None or config.variant != "b":
        return None  # WDSR-A's blocks and the head go through cuDNN: any width
    widths = (config.n_feats, config.wide_feats, config.low_rank_feats)
    if widths[0] > MAX_FEATS or widths[1] > MAX_WIDE or widths[2] > MAX_LOW_RANK:
        return (f"the fused CUDA WDSR-B block takes n_feats <= {MAX_FEATS}, expansion width <= {MAX_WIDE} and "
                f"low-rank width <= {MAX_LOW_RANK}; this model has {widths[0]}, {widths[1]} and {widths[2]}")
    return None


def shared_memory_per_block(properties) -> int | None:
    """The most shared memory one block may opt into on a device (torch's device properties), or None if torch
    does not say. Where torch gives only the amount per multiprocessor, 1 KB less: what CUDA reserves per block
    on compute capability 8.0 and newer."""
    optin = getattr(properties, "shared_memory_per_block_optin", None)
    if optin is not None:
        return optin
    per_sm = getattr(properties, "shared_memory_per_multiprocessor", None)
    return None if per_sm is None else per_sm - 1024


def unsupported_device(device: torch.device, config=None, dtype: torch.dtype | None = None) -> str | None:
    """Why the CUDA kernels cannot run on ``device`` (a model of ``config`` in ``dtype``, when given), or None:
    compute capability, and the fp16/bf16 fused block's shared memory against the device's limit per block (made
    for the half-precision block unless ``dtype`` is float32, whose block fits every GPU the kernels run on)."""
    properties = torch.cuda.get_device_properties(device)
    name, capability = properties.name, (properties.major, properties.minor)
    if capability < MIN_COMPUTE_CAPABILITY:
        return (f"the CUDA kernels need compute capability {MIN_COMPUTE_CAPABILITY[0]}.{MIN_COMPUTE_CAPABILITY[1]}"
                f" or newer; {name} is {capability[0]}.{capability[1]}")
    if config is not None and config.variant == "b" and dtype != torch.float32:
        need, limit = fused_block_shared_bytes(config.wide_feats), shared_memory_per_block(properties)
        if limit is not None and need > limit:
            return (f"the fused CUDA WDSR-B block needs {need} bytes of shared memory per block at expansion width "
                    f"{config.wide_feats}; {name} allows {limit}")
    return None


def unavailable_reason(device: torch.device, config=None, dtype: torch.dtype | None = None) -> str | None:
    if LOAD_ERROR is not None:
        return LOAD_ERROR
    if device.type != "cuda":  # CPU tensors standing in under TRITON_INTERPRET=1: an interpreter of Triton only
        return "the CUDA kernels need CUDA tensors (TRITON_INTERPRET=1 runs Triton kernels on CPU, not these)"
    return unsupported_model(config) or unsupported_device(device, config, dtype)
