"""The CPU backend: the fused C++ kernels of csrc/cpu/, registered as ``torch.ops.wdsr_cpu.*`` by ``wdsr_fast._cpu``.

float32 on CPU tensors, and bfloat16 where the CPU has AVX512-BF16 (``bf16_isa()``: bf16 features with fp32
accumulation, the image that the head and the tail's skip convolve in float32; the bf16 kernels take even channel
counts; other dtypes raise TypeError), threads through ATen's ``parallel_for``, so ``torch.set_num_threads`` applies.
The kernels are compiled for several instruction sets and the fastest the CPU runs is used (``isa_paths()`` lists them);
the environment variable ``WDSR_FAST_CPU_ISA`` (``avx512``, ``avx2`` or ``generic``) picks another, read at every call.
float32 WDSR-A blocks run the fused kernel on Winograd F(2x2, 3x3) convolutions with AVX-512 and AVX2 and oneDNN's
convolutions (the ReLU and the residual fused in) on the portable path (the Winograd kernel where torch has no oneDNN),
as measured; ``WDSR_FAST_CPU_BLOCK_A`` (``fused``: the fused kernel on direct convolutions, ``winograd`` or ``onednn``)
picks one; ``WDSR_FAST_CPU_BLOCK_B`` (``direct``, ``winograd``: the fused kernel with its 3x3 direct or on Winograd
F(2x2, 3x3), or ``onednn``) how WDSR-B blocks run (default: the fastest measured on the path). For bfloat16 features on
CPUs with AMX-BF16 both also take ``amx``: the fused kernels on AMX tiles (``amx()`` says whether this CPU and build run
them), and there the default is raced against them and ``onednn`` at the first call of each block kind; ``fastest``
races every way offered at the first call (``races()`` says what was measured). This module loads the extension if it
was built (``pip install --no-build-isolation .`` with a C++ compiler) through ``common.load_extension`` and exposes
the four ops with the signatures of ``reference.py``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .common import load_extension

NAME = "cpu"

ISA_ENV = "WDSR_FAST_CPU_ISA"
BLOCK_A_ENV = "WDSR_FAST_CPU_BLOCK_A"
BLOCK_B_ENV = "WDSR_FAST_CPU_BLOCK_B"

_cpu, LOAD_ERROR, (head_conv, wdsr_a_block, wdsr_b_block, tail_shuffle) = load_extension(
    "_cpu", "wdsr_cpu", "it is built by `pip install --no-build-isolation .` where a C++ compiler works, and the "
    "install prints why it was not")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # the CPU's bf16 units, as /proc/cpuinfo names them


def bf16_units() -> tuple[str, ...]:
    """Which of BF16_FLAGS the CPU reports (Linux: /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return tuple(f for f in BF16_FLAGS if f in flags)


THREADED = _cpu is not None and _cpu.threaded()  # False: built without the OpenMP that torch's threads use


def isa_paths() -> tuple[str, ...]:
    """The instruction-set paths of the kernels that this CPU runs, fastest (the default) first."""
    return tuple(_cpu.isa_paths()) if _cpu is not None else ()


def bf16_isa() -> str | None:
    """The instruction-set path of the bf16 block kernels on this CPU and build (None: bf16 is not run here)."""
    return _cpu.bf16_isa() if _cpu is not None else None


def amx() -> bool:
    """Whether blocks on bfloat16 features can run on AMX tiles here (``WDSR_FAST_CPU_BLOCK_A`` / ``_B=amx``)."""
    return bool(_cpu.amx()) if _cpu is not None else False


def races() -> dict[str, tuple[str, dict[str, float], dict[str, float]]]:
    """The ways of running a block kind raced at its first call so far (``WDSR_FAST_CPU_BLOCK_A`` / ``_B=fastest``,
    and by default bfloat16 blocks on CPUs with AMX-BF16): ``{"<block> <features>: <ways>": (way chosen, {way: best
    of three in ms}, {way: largest difference from the default way's output, relative to its largest value})}``."""
    return dict(_cpu.races()) if _cpu is not None else {}


def forget_races() -> None:
    """Race again at the next call of each block kind (after the inputs' size or the thread count changed)."""
    if _cpu is not None:
        _cpu.forget_races()


def _bf16_reason(config) -> str | None:
    if bf16_isa() is None:
        units = bf16_units()
        why = (f"this build has no bf16 kernels for this CPU's bf16 units ({', '.join(units)})" if units else
               "this CPU has no bf16 units (AVX512-BF16)")
        return f"the CPU kernels run bfloat16 on CPUs with AVX512-BF16 ({why})"
    widths = {} if config is None else {"n_feats": config.n_feats, "expansion width": config.wide_feats}
    odd = [f"{name} {width}" for name, width in widths.items() if width % 2]
    if odd:
        return f"the bf16 CPU kernels take even channel counts, this model has {', '.join(odd)}"
    return None


def unavailable_reason(device: torch.device, config=None, dtype: torch.dtype | None = None) -> str | None:
    if LOAD_ERROR is not None:
        return LOAD_ERROR
    if device.type != "cpu":
        return f"the CPU kernels run on CPU tensors, not on {device}"
    if dtype == torch.bfloat16:
        reason = _bf16_reason(config)
        if reason is not None:
            return reason
    elif dtype is not None and dtype != torch.float32:
        return f"the CPU kernels run float32 and bfloat16, not {dtype}"
    if not THREADED and torch.get_num_threads() > 1:
        return (f"wdsr_fast._cpu was built without OpenMP, so its kernels would run on one thread where torch "
                f"uses {torch.get_num_threads()}; rebuild it with a compiler that supports -fopenmp")
    return None
