"""csrc/'s CUDA kernels, run on the CPU through a small emulation of the CUDA runtime (see include/cuda_emulation.h).

``build()`` compiles the kernel sources with g++ against the stand-in headers of ``include/``; the only change
made to the source text is the launch syntax, ``kernel<<<grid, block, shared, stream>>>(args)``, which C++
cannot parse, into ``cuda_emulation::launch(kernel, grid, block, shared, stream)(args)``. ``EmulatedCudaOps``
then offers ``wdsr_b_block`` and ``tail_shuffle`` with the signatures of ``wdsr_fast.ops.reference``, as
``csrc/ops.cpp`` does on a GPU: outputs NaN-poisoned, channels_last block outputs, and every tensor placed inside
a NaN guard band so that an out-of-bounds read turns the output into NaN and an out-of-bounds write is caught.
``run_racecheck()`` builds the kernels with ``racecheck.cpp`` under ThreadSanitizer and runs them.
"""
from __future__ import annotations

import ctypes
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from wdsr_fast.ops import reference

HERE = Path(__file__).resolve().parent
CSRC = HERE.parents[1] / "csrc"
KERNEL_SOURCES = ("wdsr_b_block.cu", "tail_shuffle.cu")
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}  # wdsr::DType
GUARD = 4096  # NaN elements on each side of every tensor

_LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)<<<(.*?)>>>", re.S)
_DYNAMIC_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w ]+?)\s+(\w+)\[\];")


def emulated_source(cuda_source: str) -> str:
    """The kernel source as C++ for the emulator: launches and the dynamic shared-memory declaration rewritten."""
    text = _LAUNCH.sub(r"::cuda_emulation::launch(\1, \2)", cuda_source)
    return _DYNAMIC_SHARED.sub(r"\1* \2 = reinterpret_cast<\1*>(::cuda_emulation::dynamic_shared());", text)


def _compile(workdir: Path, edits, flags: list[str], driver: Path) -> list[Path]:
    """The kernel sources (after ``edits``) and ``driver``, compiled to object files in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    units = [driver]
    for name in KERNEL_SOURCES:
        text = (CSRC / name).read_text()
        if edits and name in edits:
            old, new = edits[name]
            assert old in text, f"{name} no longer contains {old!r}"
            text = text.replace(old, new)
        unit = workdir / (Path(name).stem + ".cpp")
        unit.write_text(emulated_source(text))
        units.append(unit)
    flags = ["-std=c++20", "-fPIC", "-pthread", "-Wno-unknown-pragmas", f"-I{HERE / 'include'}", f"-I{CSRC}", *flags]

    def compile_unit(unit: Path) -> Path:
        obj = workdir / (unit.stem + ".o")
        subprocess.run(["g++", *flags, "-c", str(unit), "-o", str(obj)], check=True, capture_output=True, text=True)
        return obj

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(compile_unit, units))


def build(workdir: Path, edits: dict[str, tuple[str, str]] | None = None) -> ctypes.CDLL:
    """Compile csrc/'s kernels and the C harness into ``workdir/emulated_cuda.so`` and load it.

    ``edits`` maps a kernel file name to one (old, new) text replacement, for the tests that check that a
    broken kernel is caught.
    """
    objects = _compile(workdir, edits, ["-O2"], HERE / "harness.cpp")
    library = workdir / "emulated_cuda.so"
    subprocess.run(["g++", "-shared", "-pthread", *map(str, objects), "-o", str(library)], check=True)
    lib = ctypes.CDLL(str(library))
    lib.emulated_last_fault.restype = ctypes.c_char_p
    return lib


def run_racecheck(workdir: Path, edits: dict[str, tuple[str, str]] | None = None) -> subprocess.CompletedProcess:
    """Build racecheck.cpp with the kernels under ThreadSanitizer and run it; exit code 66 means a data race."""
    flags = ["-O1", "-g", "-fsanitize=thread"]
    objects = _compile(workdir, edits, flags, HERE / "racecheck.cpp")
    program = workdir / "racecheck"
    subprocess.run(["g++", *flags, "-pthread", *map(str, objects), "-o", str(program)], check=True)
    env = {**os.environ, "TSAN_OPTIONS": "exitcode=66 halt_on_error=1"}
    return subprocess.run([str(program)], capture_output=True, text=True, env=env, timeout=600)


def nan_band(shape, stride, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """An all-NaN tensor of ``shape`` and ``stride`` inside a NaN band of GUARD elements each side: (view, band)."""
    span = 1 + sum((size - 1) * step for size, step in zip(shape, stride, strict=False))
    band = torch.full((span + 2 * GUARD,), float("nan"), dtype=dtype)
    return band.as_strided(shape, stride, GUARD), band


def guarded(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A copy of ``t`` with the same strides, inside a NaN band: (copy, band)."""
    copy, band = nan_band(t.shape, t.stride(), t.dtype)
    copy.copy_(t)
    return copy, band


def new_guarded_output(shape, dtype, memory_format) -> tuple[torch.Tensor, torch.Tensor]:
    """A NaN-poisoned output in ``memory_format``, inside a NaN band."""
    stride = torch.empty(shape, device="meta").contiguous(memory_format=memory_format).stride()
    return nan_band(shape, stride, dtype)


def check_guard(band: torch.Tensor, name: str) -> None:
    if not (band[:GUARD].isnan().all() and band[-GUARD:].isnan().all()):
        raise AssertionError(f"{name}: the kernel wrote outside the tensor")


def _strides(t: torch.Tensor):
    return (ctypes.c_int64 * 4)(*t.stride())


def _ptr(t: torch.Tensor):
    return ctypes.c_void_p(t.data_ptr())


class EmulatedCudaOps:
    """The cuda backend's four ops on CPU tensors: ``wdsr_b_block`` and ``tail_shuffle`` are csrc/'s kernels run
    by the emulator; ``head_conv`` and ``wdsr_a_block`` are plain PyTorch, as csrc/ops.cpp runs them through ATen."""

    head_conv = staticmethod(reference.head_conv)
    wdsr_a_block = staticmethod(reference.wdsr_a_block)

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib

    def _check(self, op: str, status: int) -> None:
        if status != 0:
            raise RuntimeError(f"{op}: CUDA error {status}: {self.lib.emulated_last_fault().decode()}")

    def wdsr_b_block(self, x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv, res_scale):
        n, c, h, w = x.shape
        wide, low_rank = w_expand.shape[0], w_reduce.shape[0]
        x_in, _ = guarded(x)
        weights = [guarded(t.contiguous())[0] for t in (w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv)]
        y, y_band = new_guarded_output(x.shape, x.dtype, torch.channels_last)
        status = self.lib.emulated_wdsr_b_block(
            DTYPE_CODES[x.dtype], _ptr(x_in), _strides(x_in), *map(_ptr, weights), _ptr(y), _strides(y), n, c, h, w,
            wide, low_rank, ctypes.c_float(res_scale))
        self._check("wdsr_b_block", status)
        check_guard(y_band, "wdsr_b_block")
        return y

    def tail_shuffle(self, features, image, w_tail, b_tail, w_skip, b_skip, mean, norm_scale, scale):
        n, c, h, w = features.shape
        f_in, _ = guarded(features)
        i_in, _ = guarded(image)
        weights = [guarded(t.contiguous())[0] for t in (w_tail, b_tail, w_skip, b_skip)]
        mean_in, _ = guarded(mean.float().contiguous())
        out, out_band = new_guarded_output((n, 3, h * scale, w * scale), features.dtype, torch.contiguous_format)
        status = self.lib.emulated_tail_shuffle(
            DTYPE_CODES[features.dtype], _ptr(f_in), _strides(f_in), _ptr(i_in), _strides(i_in), *map(_ptr, weights),
            _ptr(mean_in), ctypes.c_float(norm_scale), scale, _ptr(out), n, c, h, w)
        self._check("tail_shuffle", status)
        check_guard(out_band, "tail_shuffle")
        return out
