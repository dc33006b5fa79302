"""csrc/cuda/'s kernels, run on the CPU through a small emulation of the CUDA runtime (see include/cuda_emulation.h).

``build()`` compiles the kernel sources with g++ against the stand-in headers of ``include/``; the only change
made to the source text is the launch syntax, ``kernel<<<grid, block, shared, stream>>>(args)``, which C++
cannot parse, into ``cuda_emulation::launch(kernel, grid, block, shared, stream)(args)``. ``EmulatedCudaOps``
then offers ``wdsr_b_block`` and ``tail_shuffle`` with the signatures of ``wdsr_fast.ops.reference``, as
``csrc/cuda/ops.cpp`` does on a GPU: the launchers' parameter structs (csrc/cuda/kernels.h, mirrored here as ctypes
Structures) filled by field name, outputs NaN-poisoned, channels_last block outputs, and every tensor placed inside
a NaN guard band so that an out-of-bounds read turns the output into NaN and an out-of-bounds write is caught.
The library also holds csrc/cuda/module.cpp: ``extension_module()`` imports it as the extension's Python module
``_C``, whose reports of what the kernels take come from the same sources as on a GPU.
``run_racecheck()`` builds the kernels with ``racecheck.cpp`` under ThreadSanitizer and runs them.
``build_checks()`` builds csrc/common/checks.h, the ops' input validation, into a CPU library of torch ops
(``torch.ops.wdsr_cuda_checks.*``, see checks.cpp).
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import subprocess
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import torch

from wdsr_fast.ops import reference

HERE = Path(__file__).resolve().parent
CSRC = HERE.parents[1] / "csrc"
CUDA_SRC = CSRC / "cuda"
KERNEL_SOURCES = ("wdsr_b_block.cu", "wdsr_b_block_persistent.cu", "tail_shuffle.cu")
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}  # wdsr::DType
BLOCK_KERNELS = ("tiled", "persistent")  # wdsr::BlockKernel, in order
GUARD = 4096  # NaN elements on each side of every tensor

_LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)<<<(.*?)>>>", re.S)
_DYNAMIC_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w ]+?)\s+(\w+)\[\];")


def emulated_source(cuda_source: str) -> str:
    """The kernel source as C++ for the emulator: launches and the dynamic shared-memory declaration rewritten."""
    text = _LAUNCH.sub(r"::cuda_emulation::launch(\1, \2)", cuda_source)
    return _DYNAMIC_SHARED.sub(r"\1* \2 = reinterpret_cast<\1*>(::cuda_emulation::dynamic_shared());", text)


Edits = dict[str, tuple[str, str] | list[tuple[str, str]]]  # file name -> one (old, new) replacement, or several


def _compile(workdir: Path, edits: Edits | None, flags: list[str], drivers: list[Path]) -> list[Path]:
    """The kernel sources (after ``edits``) and ``drivers``, compiled to object files in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    edits = {name: [edit] if isinstance(edit, tuple) else edit for name, edit in (edits or {}).items()}
    for name in edits:
        assert name in KERNEL_SOURCES or (CUDA_SRC / name).suffix in (".h", ".cuh"), f"cannot edit {name}"

    def source(name: str) -> str:
        text = (CUDA_SRC / name).read_text()
        for old, new in edits.get(name, ()):
            assert old in text, f"{name} no longer contains {old!r}"
            text = text.replace(old, new)
        return text

    # Every header of csrc/cuda/ goes into workdir (edited ones edited), searched before csrc/cuda/ by every unit (the
    # drivers' included: one definition), and holding the headers a copied header includes by "name" (found beside
    # it first): a header including an edited one sees the edit.
    for header in sorted(CUDA_SRC.glob("*.h")) + sorted(CUDA_SRC.glob("*.cuh")):
        (workdir / header.name).write_text(source(header.name))
    units = list(drivers)
    for name in KERNEL_SOURCES:
        unit = workdir / (Path(name).stem + ".cpp")
        unit.write_text(emulated_source(source(name)))
        units.append(unit)
    # -fno-strict-aliasing: the kernels read and write shared and global memory of one type through another (16-byte
    # vectors of fp16 as uint4), as CUDA code does.
    flags = ["-std=c++20", "-fPIC", "-pthread", "-fno-strict-aliasing", "-Wno-unknown-pragmas", f"-I{workdir}",
             f"-I{HERE / 'include'}",
             f"-I{CUDA_SRC}", f"-I{sysconfig.get_paths()['include']}", *flags]

    def compile_unit(unit: Path) -> Path:
        obj = workdir / (unit.stem + ".o")
        subprocess.run(["g++", *flags, "-c", str(unit), "-o", str(obj)], check=True, capture_output=True, text=True)
        return obj

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(compile_unit, units))


def build(workdir: Path, edits: Edits | None = None) -> ctypes.CDLL:
    """Compile csrc/cuda/'s kernels, its Python module (module.cpp) and the C harness into
    ``workdir/emulated_cuda.so`` and load it.

    ``edits`` maps a kernel or header file name of csrc/cuda/ to one (old, new) text replacement or a list of them,
    for the tests that check that a broken kernel is caught.
    """
    objects = _compile(workdir, edits, ["-O2"], [HERE / "harness.cpp", CUDA_SRC / "module.cpp"])
    library = workdir / "emulated_cuda.so"
    subprocess.run(["g++", "-shared", "-pthread", *map(str, objects), "-o", str(library)], check=True)
    lib = ctypes.CDLL(str(library))
    lib.emulated_last_fault.restype = ctypes.c_char_p
    lib.emulated_block_grid_x.restype = lib.emulated_tail_grid_x.restype = ctypes.c_longlong
    lib.emulated_last_grid_x.restype = ctypes.c_uint
    return lib


def extension_module(lib: ctypes.CDLL) -> ModuleType:
    """The library ``build()`` made, imported as the Python module ``_C`` of csrc/cuda/module.cpp: what the CUDA
    extension reports of its kernels (``limits()``, ``wdsr_b_block_shared_bytes``), computed by the same code."""
    spec = importlib.util.spec_from_file_location("_C", lib._name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_racecheck(workdir: Path, edits: Edits | None = None) -> subprocess.CompletedProcess:
    """Build racecheck.cpp with the kernels under ThreadSanitizer and run it; exit code 66 means a data race."""
    flags = ["-O1", "-g", "-fsanitize=thread"]
    objects = _compile(workdir, edits, flags, [HERE / "racecheck.cpp"])
    program = workdir / "racecheck"
    subprocess.run(["g++", *flags, "-pthread", *map(str, objects), "-o", str(program)], check=True)
    env = {**os.environ, "TSAN_OPTIONS": "exitcode=66 halt_on_error=1"}
    return subprocess.run([str(program)], capture_output=True, text=True, env=env, timeout=600)


def build_checks(workdir: Path):
    """csrc/common/checks.h built with checks.cpp into a CPU library, loaded: ``torch.ops.wdsr_cuda_checks`` (once per
    process; a second call returns the loaded ops)."""
    if not hasattr(torch.ops.wdsr_cuda_checks, "wdsr_b_block"):
        from torch.utils import cpp_extension

        workdir.mkdir(parents=True, exist_ok=True)
        library = workdir / "wdsr_cuda_checks.so"
        abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
        subprocess.run(["g++", "-std=c++20", "-O0", "-fPIC", "-shared", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
                        *[f"-I{p}" for p in cpp_extension.include_paths()], f"-I{CSRC}", str(HERE / "checks.cpp"),
                        *[f"-L{p}" for p in cpp_extension.library_paths()], "-lc10", "-ltorch_cpu", "-o",
                        str(library)], check=True, capture_output=True, text=True)
        torch.ops.load_library(str(library))
    return torch.ops.wdsr_cuda_checks


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


class Strides(ctypes.Structure):
    """wdsr::Strides: element strides of a logical (N, C, H, W) tensor."""

    _fields_ = [(name, ctypes.c_int64) for name in ("n", "c", "h", "w")]


class WdsrBBlockParams(ctypes.Structure):
    """wdsr::WdsrBBlockParams of csrc/cuda/kernels.h, field for field (test_cuda_emulated.py checks the layout)."""

    _fields_ = [("dtype", ctypes.c_int), ("kernel", ctypes.c_int), ("x", ctypes.c_void_p), ("x_strides", Strides),
                *[(name, ctypes.c_void_p) for name in ("w_expand", "b_expand", "w_reduce", "b_reduce", "w_conv",
                                                       "b_conv", "y")],
                ("y_strides", Strides),
                *[(name, ctypes.c_int) for name in ("n", "c", "h", "w", "wide", "low_rank")],
                ("res_scale", ctypes.c_float)]


class TailShuffleParams(ctypes.Structure):
    """wdsr::TailShuffleParams of csrc/cuda/kernels.h, field for field (test_cuda_emulated.py checks the layout)."""

    _fields_ = [("dtype", ctypes.c_int), ("features", ctypes.c_void_p), ("feature_strides", Strides),
                ("image", ctypes.c_void_p), ("image_strides", Strides),
                *[(name, ctypes.c_void_p) for name in ("w_tail", "b_tail", "w_skip", "b_skip", "mean")],
                ("norm_scale", ctypes.c_float), ("scale", ctypes.c_int), ("out", ctypes.c_void_p),
                *[(name, ctypes.c_int) for name in ("n", "c", "h", "w")]]


def struct_layout(structure: type[ctypes.Structure]) -> list[int]:
    """Field offsets in declaration order, then the size: what the harness's *_layout functions report."""
    return [getattr(structure, name).offset for name, _ in structure._fields_] + [ctypes.sizeof(structure)]


def _strides(t: torch.Tensor) -> Strides:
    return Strides(*t.stride())


class EmulatedCudaOps:
    """The cuda backend's four ops on CPU tensors: ``wdsr_b_block`` and ``tail_shuffle`` are csrc/cuda/'s kernels
    run by the emulator; ``head_conv`` and ``wdsr_a_block`` are plain PyTorch, as csrc/cuda/ops.cpp runs them through
    ATen. ``block_kernel``: the fused block's kernel, "tiled" or "persistent" (wdsr::BlockKernel)."""

    head_conv = staticmethod(reference.head_conv)
    wdsr_a_block = staticmethod(reference.wdsr_a_block)

    def __init__(self, lib: ctypes.CDLL, block_kernel: str = "tiled"):
        self.lib = lib
        self.block_kernel = block_kernel

    def with_block_kernel(self, block_kernel: str) -> EmulatedCudaOps:
        """The same library's ops, the fused block run by ``block_kernel``."""
        return EmulatedCudaOps(self.lib, block_kernel)

    def _check(self, op: str, status: int) -> None:
        if status != 0:
            raise RuntimeError(f"{op}: CUDA error {status}: {self.lib.emulated_last_fault().decode()}")

    def wdsr_b_block(self, x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv, res_scale):
        n, c, h, w = x.shape
        x_in, _ = guarded(x)
        weights = {name: guarded(t.contiguous())[0] for name, t in (
            ("w_expand", w_expand), ("b_expand", b_expand), ("w_reduce", w_reduce), ("b_reduce", b_reduce),
            ("w_conv", w_conv), ("b_conv", b_conv))}
        y, y_band = new_guarded_output(x.shape, x.dtype, torch.channels_last)
        params = WdsrBBlockParams(
            dtype=DTYPE_CODES[x.dtype], kernel=BLOCK_KERNELS.index(self.block_kernel), x=x_in.data_ptr(),
            x_strides=_strides(x_in),
            **{name: t.data_ptr() for name, t in weights.items()}, y=y.data_ptr(), y_strides=_strides(y),
            n=n, c=c, h=h, w=w, wide=w_expand.shape[0], low_rank=w_reduce.shape[0], res_scale=res_scale)
        self._check("wdsr_b_block", self.lib.emulated_wdsr_b_block(ctypes.byref(params)))
        check_guard(y_band, "wdsr_b_block")
        return y

    def tail_shuffle(self, features, image, w_tail, b_tail, w_skip, b_skip, mean, norm_scale, scale):
        n, c, h, w = features.shape
        f_in, _ = guarded(features)
        i_in, _ = guarded(image)
        weights = {name: guarded(t.contiguous())[0] for name, t in (
            ("w_tail", w_tail), ("b_tail", b_tail), ("w_skip", w_skip), ("b_skip", b_skip))}
        mean_in, _ = guarded(mean.float().contiguous())
        out, out_band = new_guarded_output((n, 3, h * scale, w * scale), features.dtype, torch.contiguous_format)
        params = TailShuffleParams(
            dtype=DTYPE_CODES[features.dtype], features=f_in.data_ptr(), feature_strides=_strides(f_in),
            image=i_in.data_ptr(), image_strides=_strides(i_in), **{name: t.data_ptr() for name, t in weights.items()},
            mean=mean_in.data_ptr(), norm_scale=norm_scale, scale=scale, out=out.data_ptr(), n=n, c=c, h=h, w=w)
        self._check("tail_shuffle", self.lib.emulated_tail_shuffle(ctypes.byref(params)))
        check_guard(out_band, "tail_shuffle")
        return out
