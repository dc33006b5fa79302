"""Pieces every Triton op shares: padded tile sizes, dot precision, warps per program, output allocation, the
input checks (the same messages and exception types as every backend: ValueError for shapes, TypeError for
dtypes and devices) and the device a kernel launches on."""
from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl

from ..common import POISON_ENV, interpreting, tf32_convolutions


def on_device(t: torch.Tensor):
    """A context in which ``t``'s GPU is the current device: Triton launches on the current device, whatever the
    tensors' (several GPUs). Nothing for a tensor off the GPU (the interpreter, shape-only meta tensors)."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def pad(n: int, minimum: int = 16) -> int:
    """A power of two >= n and >= minimum: tl.arange needs powers of two, tl.dot (GPU) needs K, N >= 16."""
    return max(minimum, triton.next_power_of_2(n))


def dot_config(dtype: torch.dtype) -> dict:
    """Constexprs choosing the dtype tl.dot runs in and its fp32 precision.

    fp32: TF32 tensor cores where PyTorch lets cuDNN's convolutions use them (``torch.backends.cudnn.allow_tf32``, on
    by default: ``common.tf32_convolutions``), else IEEE. The interpreter is given the same choice (and computes
    exact fp32 whatever it is given). bf16 under the interpreter: fp32 IEEE (the interpreter's bf16 arithmetic is
    wrong); on GPU bf16 itself. fp16 and bf16 dots ignore the precision.
    """
    if dtype == torch.float32 or (dtype == torch.bfloat16 and interpreting()):
        dot_dtype = tl.float32
    else:
        dot_dtype = tl.float16 if dtype == torch.float16 else tl.bfloat16
    precision = "tf32" if dtype == torch.float32 and tf32_convolutions() else "ieee"
    return dict(DOT_DTYPE=dot_dtype, PRECISION=precision)


def num_warps(on_gpu: int) -> int:
    """Warps per program: ``on_gpu`` on a GPU, 1 in the interpreter (which has no warps to spread work over)."""
    return 1 if interpreting() else on_gpu


def new_output(shape, like: torch.Tensor, channels_last: bool) -> torch.Tensor:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if os.environ.get(POISON_ENV) == "1":
        return torch.full(shape, float("nan"), dtype=like.dtype, device=like.device).contiguous(memory_format=fmt)
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt)


def check_features(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{name}: expected a 4-D (N, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"{name}: expected float32, float16 or bfloat16, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name}: empty tensor {tuple(x.shape)}")
    if x.numel() >= 2**31:
        raise ValueError(f"{name}: {tuple(x.shape)} has 2**31 or more elements; upscale it in tiles "
                         f"(wdsr_fast.inference.upscaler.upscale_tensor)")


def check_weights(op: str, x: torch.Tensor, **weights: tuple[torch.Tensor, tuple]) -> None:
    """Each weight (or bias), given as name=(tensor, expected shape), of exactly that shape, in the dtype of the
    activations ``x`` and on their device."""
    for name, (w, shape) in weights.items():
        if tuple(w.shape) != tuple(shape):
            raise ValueError(f"{op}: {name}: expected shape {tuple(shape)}, got {tuple(w.shape)}")
        if w.dtype != x.dtype or w.device != x.device:
            raise TypeError(f"{op}: {name}: expected {x.dtype} on {x.device} like the input, "
                            f"got {w.dtype} on {w.device}")


def check_mean(op: str, mean: torch.Tensor, x: torch.Tensor) -> None:
    """The (3,) fp32 mean in pixel units, on the device of ``x``."""
    if mean.shape != (3,) or mean.dtype != torch.float32 or mean.device != x.device:
        raise ValueError(f"{op}: mean must be a (3,) float32 tensor on {x.device}")


@triton.jit
def mm(a, b, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr):
    """a @ b with fp32 accumulation, operands cast to DOT_DTYPE."""
    return tl.dot(a.to(DOT_DTYPE), b.to(DOT_DTYPE), input_precision=PRECISION, out_dtype=tl.float32)


@triton.jit
def shifted(h, w, dy, dx, H, W):
    """Pixel coordinates moved by (dy, dx), and whether they fall inside the H x W image (else zero padding)."""
    hh = h + dy
    ww = w + dx
    return hh, ww, (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
