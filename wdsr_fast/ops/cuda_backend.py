"""The ``cuda`` backend: the kernels of csrc/cuda/, registered in C++ as ``torch.ops.wdsr_cuda.*`` by ``wdsr_fast._C``.

This module loads the extension if it was built (``pip install --no-build-isolation .`` where torch has CUDA
and nvcc is found) through ``common.load_extension`` and exposes the four ops with the signatures of
``reference.py``; where the extension does not load, the four ops raise, saying why. What the kernels take (the
fused WDSR-B block's widths, compute capability, shared memory) the extension reports itself: ``_C.limits()`` and
``_C.wdsr_b_block_shared_bytes(dtype, wide, kernel)`` (csrc/cuda/module.cpp), asked here, never copied.

The fused WDSR-B block has two kernels, registered as two ops of the same schema: ``torch.ops.wdsr_cuda.wdsr_b_block``
("tiled", measured on an H100) and ``wdsr_b_block_persistent`` (one CTA per SM looping over tiles, its input copied
asynchronously; not yet measured). ``wdsr_b_block`` here is, at each access, the one ``ops.cuda_block_variant()``
names (``$WDSR_FAST_CUDA_BLOCK``, default "tiled"; ``block_op``); fp32 runs the same CUDA-core kernel under either.
"""
from __future__ import annotations

import torch

from .common import cuda_block_variant, load_extension

NAME = "cuda"

_C, LOAD_ERROR, (head_conv, wdsr_a_block, _wdsr_b_block_tiled, tail_shuffle) = load_extension(
    "_C", "wdsr_cuda", "install with CUDA torch and nvcc present")


def _persistent_op():
    """torch.ops.wdsr_cuda.wdsr_b_block_persistent with its fake implementation, or a function raising why not."""
    if LOAD_ERROR is not None:
        return _wdsr_b_block_tiled  # raises LOAD_ERROR
    if not hasattr(torch.ops.wdsr_cuda, "wdsr_b_block_persistent"):
        def missing(*args, **kwargs):
            raise RuntimeError("this build of wdsr_fast._C has no persistent WDSR-B block kernel (built before it was "
                               "added): rebuild the extension, or use WDSR_FAST_CUDA_BLOCK=tiled")
        return missing
    torch.library.register_fake("wdsr_cuda::wdsr_b_block_persistent")(
        lambda x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv, res_scale: torch.empty_like(
            x, memory_format=torch.channels_last))
    return torch.ops.wdsr_cuda.wdsr_b_block_persistent


_wdsr_b_block_persistent = _persistent_op()


def block_op(variant: str | None = None):
    """The registered op of the CUDA block kernel ``variant`` ("tiled" or "persistent"; None: the one
    ``cuda_block_variant()`` names)."""
    return _wdsr_b_block_persistent if (variant or cuda_block_variant()) == "persistent" else _wdsr_b_block_tiled


def __getattr__(name: str):
    """``wdsr_b_block``: the registered op of the block kernel in use, looked up at each access, so that the backend's
    four ops stay registered ops (torch.compile resolves this one when it traces, and guards on it)."""
    if name == "wdsr_b_block":
        return block_op()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _extension():
    """The loaded ``_C`` (the callers run only where the backend is available)."""
    if _C is None:
        raise RuntimeError(LOAD_ERROR)
    return _C


def fused_block_shared_bytes(wide: int, dtype: torch.dtype = torch.float16, kernel: str | None = None) -> int:
    """Dynamic shared memory (bytes) one CTA of the fused WDSR-B block's ``kernel`` ("tiled" or "persistent"; None:
    ``cuda_block_variant()``) asks for at expansion width ``wide`` in ``dtype``, as the extension computes it: 0 for
    float32, whose block uses 42 KB of static shared memory, which every GPU it runs on has."""
    return _extension().wdsr_b_block_shared_bytes(str(dtype).removeprefix("torch."), wide,
                                                   kernel or cuda_block_variant())


def unsupported_model(config) -> str | None:
    """Why the CUDA kernels cannot run a model of ``config`` (a WDSRConfig), or None."""
    if config is None or config.variant != "b":
        return None  # WDSR-A's blocks and the head go through cuDNN: any width
    limits = _extension().limits()
    widths = (config.n_feats, config.wide_feats, config.low_rank_feats)
    if widths[0] > limits["max_feats"] or widths[1] > limits["max_wide"] or widths[2] > limits["max_low_rank"]:
        return (f"the fused CUDA WDSR-B block takes n_feats <= {limits['max_feats']}, expansion width <= "
                f"{limits['max_wide']} and low-rank width <= {limits['max_low_rank']}; this model has {widths[0]}, "
                f"{widths[1]} and {widths[2]}")
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
    compute capability, and the shared memory of the fused block's kernel in use (``cuda_block_variant()``) against
    the device's limit per block (made for the half-precision block unless ``dtype`` is float32)."""
    properties = torch.cuda.get_device_properties(device)
    name, capability = properties.name, (properties.major, properties.minor)
    oldest = _extension().limits()["min_compute_capability"]
    if capability < oldest:
        return (f"the CUDA kernels need compute capability {oldest[0]}.{oldest[1]} or newer; {name} is "
                f"{capability[0]}.{capability[1]}")
    if config is not None and config.variant == "b" and dtype != torch.float32:
        half = torch.bfloat16 if dtype == torch.bfloat16 else torch.float16
        kernel = cuda_block_variant()
        need, limit = fused_block_shared_bytes(config.wide_feats, half, kernel), shared_memory_per_block(properties)
        if limit is not None and need > limit:
            which = " (persistent kernel; WDSR_FAST_CUDA_BLOCK=tiled needs less)" if kernel == "persistent" else ""
            return (f"the fused CUDA WDSR-B block{which} needs {need} bytes of shared memory per block at expansion "
                    f"width {config.wide_feats}; {name} allows {limit}")
    return None


def unavailable_reason(device: torch.device, config=None, dtype: torch.dtype | None = None) -> str | None:
    if LOAD_ERROR is not None:
        return LOAD_ERROR
    if device.type != "cuda":  # CPU tensors standing in under TRITON_INTERPRET=1: an interpreter of Triton only
        return "the CUDA kernels need CUDA tensors (TRITON_INTERPRET=1 runs Triton kernels on CPU, not these)"
    return unsupported_model(config) or unsupported_device(device, config, dtype)
