"""What every backend shares: the op names, the Triton interpreter switch, the tests' poison switch, the settings
that choose kernels (TF32 for fp32 convolutions, the Triton and CUDA C++ WDSR-B block variants), the fake
implementations of the ops, and the loading of a C++ extension.

Backend modules import from here, never from the package ``wdsr_fast.ops`` (the registry, which imports them).
"""
from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import NamedTuple

import torch

POISON_ENV = "WDSR_FAST_POISON_OUTPUTS"  # "1": every fused backend NaN-fills outputs before its kernels write (tests)
OP_NAMES = ("head_conv", "wdsr_a_block", "wdsr_b_block", "tail_shuffle")


def interpreting() -> bool:
    """Whether Triton kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1), as in the test suite."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def tf32_convolutions() -> bool:
    """Whether float32 convolutions may use TF32 tensor cores: PyTorch's setting for cuDNN's convolutions,
    ``torch.backends.cudnn.allow_tf32`` (on by default), or, where that and the newer per-op API were mixed (reading
    the old flag then raises), ``torch.backends.cudnn.conv.fp32_precision`` resolved as PyTorch resolves it ("none"
    defers to ``torch.backends.cudnn.fp32_precision``, then to ``torch.backends.fp32_precision``). The Triton
    backend's fp32 dots follow it, as cuDNN does; kernels captured in a CUDA graph keep the setting of their
    capture, hence ``kernel_settings``."""
    try:
        return bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # "a mix of the legacy and new APIs": cuDNN's conv and RNN settings differ
        chain = (getattr(torch.backends.cudnn, "conv", None), torch.backends.cudnn, torch.backends)
        precision = next((p for p in (getattr(level, "fp32_precision", "none") for level in chain) if p != "none"),
                         "none")
        return precision == "tf32"


def kernel_settings() -> tuple:
    """The global settings that change which kernels a forward runs, for caches of captured work (FastWDSR's CUDA
    graphs and folded weights): the TF32 setting of fp32 convolutions, the Triton WDSR-B block variant and the CUDA
    C++ one."""
    return (tf32_convolutions(), triton_block_variant(), cuda_block_variant())


class KernelChoice:
    """Which of a fused op's kernels runs: the one a ``use`` context names, else the environment variable ``env``'s,
    else the first of ``variants`` (the measured one). ``what`` names the choice in errors."""

    def __init__(self, env: str, variants: tuple[str, ...], what: str):
        self.env, self.variants, self.what = env, variants, what
        self._chosen: list[str | None] = [None]  # set by use(); None: the environment's

    def current(self) -> str:
        variant = self._chosen[0] or os.environ.get(self.env) or self.variants[0]
        if variant not in self.variants:
            raise ValueError(f"{self.env}={variant!r}: expected one of {self.variants}")
        return variant

    @contextlib.contextmanager
    def use(self, variant: str | None):
        """A context in which ``variant`` runs (None: the environment's choice)."""
        if variant is not None and variant not in self.variants:
            raise ValueError(f"unknown {self.what} {variant!r}; choose one of {self.variants}")
        saved = self._chosen[0]
        self._chosen[0] = variant
        try:
            yield
        finally:
            self._chosen[0] = saved


TRITON_BLOCK_ENV = "WDSR_FAST_TRITON_BLOCK"  # the Triton WDSR-B block kernel: "tiled" (default) or "persistent"
TRITON_BLOCK_VARIANTS = ("tiled", "persistent")
_TRITON_BLOCK = KernelChoice(TRITON_BLOCK_ENV, TRITON_BLOCK_VARIANTS, "Triton block variant")
CUDA_BLOCK_ENV = "WDSR_FAST_CUDA_BLOCK"  # the CUDA C++ WDSR-B block kernel: "tiled" (default) or "persistent"
CUDA_BLOCK_VARIANTS = ("tiled", "persistent")
_CUDA_BLOCK = KernelChoice(CUDA_BLOCK_ENV, CUDA_BLOCK_VARIANTS, "CUDA block variant")


def triton_block_variant() -> str:
    """The Triton WDSR-B block kernel in use: set by ``use_triton_block_variant``, else ``$WDSR_FAST_TRITON_BLOCK``,
    else "tiled" (the kernel measured on an H100; "persistent" is the newer one, not yet measured)."""
    return _TRITON_BLOCK.current()


def use_triton_block_variant(variant: str | None):
    """A context in which the Triton backend's ``wdsr_b_block`` runs kernel ``variant`` ("tiled" or "persistent";
    None: the environment's choice)."""
    return _TRITON_BLOCK.use(variant)


def cuda_block_variant() -> str:
    """The CUDA C++ WDSR-B block kernel in use (fp16/bf16; fp32 has one): set by ``use_cuda_block_variant``, else
    ``$WDSR_FAST_CUDA_BLOCK``, else "tiled" (the kernel measured on an H100; "persistent", one CTA per SM looping over
    tiles, is the newer one, not yet measured)."""
    return _CUDA_BLOCK.current()


def use_cuda_block_variant(variant: str | None):
    """A context in which the CUDA backend's ``wdsr_b_block`` runs kernel ``variant`` ("tiled" or "persistent";
    None: the environment's choice)."""
    return _CUDA_BLOCK.use(variant)


def register_fakes(namespace: str) -> None:
    """Fake (meta) implementations of the four ops of ``namespace``, for torch.compile and opcheck."""

    def features_like(x: torch.Tensor, channels: int) -> torch.Tensor:
        n, _, h, w = x.shape
        return torch.empty((n, channels, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)

    torch.library.register_fake(f"{namespace}::head_conv")(
        lambda image, weight, bias, mean, norm_scale: features_like(image, weight.shape[0]))
    torch.library.register_fake(f"{namespace}::wdsr_a_block")(
        lambda x, w_expand, b_expand, w_reduce, b_reduce, res_scale: features_like(x, x.shape[1]))
    torch.library.register_fake(f"{namespace}::wdsr_b_block")(
        lambda x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv, res_scale: features_like(x, x.shape[1]))
    torch.library.register_fake(f"{namespace}::tail_shuffle")(
        lambda features, image, w_tail, b_tail, w_skip, b_skip, mean, norm_scale, scale: features.new_empty(
            (features.shape[0], 3, features.shape[2] * scale, features.shape[3] * scale)))


class Extension(NamedTuple):
    """A C++ extension of wdsr_fast as ``load_extension`` found it."""

    module: ModuleType | None  # the Python module (where it reports what its kernels take); None: not loaded
    error: str | None  # why it does not load; None: loaded
    ops: tuple[Callable, ...]  # the four ops in OP_NAMES order: the registered ones, or functions raising ``error``


def load_extension(module: str, namespace: str, how_to_build: str) -> Extension:
    """Import the C++ extension ``wdsr_fast.<module>``, whose library registers ``torch.ops.<namespace>.*``, and add
    the ops' fake implementations. Where it does not import (not built, or built against another torch), the error
    says why, then ``how_to_build``, and each op raises it."""
    try:
        extension = importlib.import_module(f"wdsr_fast.{module}")
    except (ImportError, OSError) as exc:
        error = f"wdsr_fast.{module} is not built or does not load ({exc}); {how_to_build}"

        def not_loaded(*args, **kwargs):
            raise RuntimeError(error)

        return Extension(None, error, (not_loaded,) * len(OP_NAMES))
    register_fakes(namespace)
    registered = getattr(torch.ops, namespace)
    return Extension(extension, None, tuple(getattr(registered, name) for name in OP_NAMES))
