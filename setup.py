"""Build script: the pure-Python package always; the CPU extension ``wdsr_fast._cpu`` (csrc/cpu/) and the CUDA
extension ``wdsr_fast._C`` (csrc/cuda/) where they can be; both include csrc/common/.

The CPU extension is built when torch imports and a C++ compiler works; its kernels are compiled once per
instruction set with that set's flags (AVX-512 and AVX2+FMA on x86-64 with GCC or clang, plus a portable path
everywhere) and chosen at run time. A CPU extension that fails to build is left out with the reason printed (the
package then runs the plain PyTorch ops on CPU). The CUDA extension is built when torch imports, was built with
CUDA, and nvcc is found (CUDA_HOME or PATH). Build with ``pip install --no-build-isolation .`` so that this script
sees the torch you already have (an isolated build has no torch and installs the pure-Python package).
Environment:
  WDSR_FAST_FORCE_CPU=1      a CPU extension that cannot be built is an error
  WDSR_FAST_SKIP_CPU=1       never build the CPU extension
  WDSR_FAST_FORCE_CUDA=1     a missing toolkit is an error instead of a pure-Python install
  WDSR_FAST_SKIP_CUDA=1      never build the CUDA extension
  TORCH_CUDA_ARCH_LIST       respected; default "8.0;9.0+PTX": Ampere and Hopper machine code, and PTX that the
                             driver compiles at first use for newer GPUs (Blackwell and later)
  MAX_JOBS                   parallel compile jobs (torch's build respects it)
"""
import os
import platform
import sys
from pathlib import Path

from setuptools import setup

DEFAULT_ARCHS = "8.0;9.0+PTX"
SOURCES = ["csrc/cuda/module.cpp", "csrc/cuda/ops.cpp", "csrc/cuda/wdsr_b_block.cu",
           "csrc/cuda/wdsr_b_block_persistent.cu", "csrc/cuda/tail_shuffle.cu"]
CPU_EXTENSION = "wdsr_fast._cpu"
# The CPU kernels once per instruction set: (name, source, compiler flags); x86 paths only on x86-64 GCC/clang.
CPU_KERNELS = [
    ("avx512", "csrc/cpu/kernels_avx512.cpp", ["-mavx512f", "-mavx512vl", "-mavx2", "-mfma"]),
    ("avx512_bf16", "csrc/cpu/kernels_avx512_bf16.cpp",
     ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512bf16", "-mavx2", "-mfma"]),
    ("amx", "csrc/cpu/kernels_amx.cpp",
     ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512bf16", "-mavx2", "-mfma",
      # For tests (.ci/amx_emulated): the AMX kernels on tiles emulated in C++ (slow), offered on CPUs without AMX.
      *(["-DWDSR_CPU_AMX_EMULATED"] if os.environ.get("WDSR_FAST_CPU_AMX_EMULATED") == "1"
        else ["-mamx-tile", "-mamx-bf16"])]),
    ("avx2", "csrc/cpu/kernels_avx2.cpp", ["-mavx2", "-mfma"]),
    ("generic", "csrc/cpu/kernels_generic.cpp", []),
]


def pip_cuda_includes():
    """Header folders of the CUDA libraries pip installed beside torch (nvidia/*/include: cusparse.h, cublas...).

    ATen's CUDA headers include them, and a bare nvcc toolkit may not ship them."""
    try:
        import nvidia
    except ImportError:
        return []
    return sorted(str(p) for base in nvidia.__path__ for p in Path(base).glob("*/include"))


def cuda_extension():
    """(ext_modules, cmdclass) for wdsr_fast._C, or ([], {}) with the reason printed."""
    force = os.environ.get("WDSR_FAST_FORCE_CUDA") == "1"

    def skip(reason):
        if force:
            sys.exit(f"WDSR_FAST_FORCE_CUDA=1 but the CUDA extension cannot be built: {reason}")
        print(f"wdsr_fast: building without the CUDA extension ({reason})", file=sys.stderr)
        return [], {}

    if os.environ.get("WDSR_FAST_SKIP_CUDA") == "1" and not force:
        return skip("WDSR_FAST_SKIP_CUDA=1")
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension
    except ImportError:
        return skip("torch is not importable here; use `pip install --no-build-isolation .`")
    if torch.version.cuda is None:
        return skip(f"torch {torch.__version__} has no CUDA")
    if CUDA_HOME is None or not Path(CUDA_HOME, "bin", "nvcc").exists():
        return skip("nvcc not found (set CUDA_HOME)")
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)  # torch's build fails on an empty list
    extension = CUDAExtension(
        "wdsr_fast._C", SOURCES,
        include_dirs=pip_cuda_includes(),
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "--use_fast_math", "-lineinfo"]},
    )
    return [extension], {"build_ext": BuildExtension.with_options(use_ninja=True)}


def cpu_extension():
    """(ext_modules, cmdclass) for wdsr_fast._cpu, or ([], {}) with the reason printed."""
    force = os.environ.get("WDSR_FAST_FORCE_CPU") == "1"
    if os.environ.get("WDSR_FAST_SKIP_CPU") == "1" and not force:
        print("wdsr_fast: building without the CPU extension (WDSR_FAST_SKIP_CPU=1)", file=sys.stderr)
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        if force:
            sys.exit("WDSR_FAST_FORCE_CPU=1 but torch is not importable; use `pip install --no-build-isolation .`")
        print("wdsr_fast: building without the CPU extension (torch is not importable here; use "
              "`pip install --no-build-isolation .`)", file=sys.stderr)
        return [], {}
    # at::parallel_for is inline OpenMP code when torch's threads are OpenMP's: the binding needs the flag.
    openmp = ["-fopenmp"] if torch._C.has_openmp and sys.platform.startswith("linux") else []
    if torch._C.has_openmp and not openmp:
        print("wdsr_fast: the CPU extension is built without OpenMP here, so its kernels run on one thread; "
              "where torch runs several, FastWDSR uses the torch backend on CPU instead", file=sys.stderr)
    extension = CppExtension(CPU_EXTENSION, ["csrc/cpu/ops.cpp"], extra_compile_args=["-O3", *openmp],
                             extra_link_args=openmp)

    class BuildExtensions(BuildExtension):
        """torch's BuildExtension, plus: the CPU kernels compiled once per instruction set with that set's flags
        (the sources of one extension share one set of flags) and linked into wdsr_fast._cpu; a CPU extension
        that does not build is left out with the reason printed, unless WDSR_FAST_FORCE_CPU=1."""

        def build_extensions(self):
            try:
                self._check_abi()  # runs the compiler: where it does not, leave the CPU extension out
            except Exception as exc:
                if force:
                    raise
                print(f"wdsr_fast: building without the CPU extension (the C++ compiler does not run: {exc})",
                      file=sys.stderr)
                self.extensions = [e for e in self.extensions if e.name != CPU_EXTENSION]
                if not self.extensions:
                    return
            super().build_extensions()

        def build_extension(self, ext):
            if ext.name != CPU_EXTENSION:
                return super().build_extension(ext)
            if self.compiler.compiler_type == "msvc":  # MSVC does not optimise unless asked, and not with -O3
                ext.extra_compile_args = ["/O2" if arg == "-O3" else arg for arg in ext.extra_compile_args]
            try:
                ext.extra_objects = self.compile_cpu_kernels(ext)
                super().build_extension(ext)
            except Exception as exc:  # any compiler failure: the package still installs, without this extension
                if force:
                    raise
                print(f"wdsr_fast: building without the CPU extension ({type(exc).__name__}: {exc})",
                      file=sys.stderr)

        def compile_cpu_kernels(self, ext):
            x86 = platform.machine().lower() in ("x86_64", "amd64") and self.compiler.compiler_type == "unix"
            objects = []
            for isa, source, flags in CPU_KERNELS:
                if flags and not x86:
                    continue
                try:
                    objects += self.compiler.compile([source], output_dir=self.build_temp,
                                                     extra_postargs=[*ext.extra_compile_args[:1], *flags])
                except Exception as exc:
                    if isa == "generic" or force:
                        raise
                    print(f"wdsr_fast: the CPU extension is built without its {isa} kernels ({exc})",
                          file=sys.stderr)
                    continue
                if flags:  # the portable kernels are always there
                    ext.define_macros.append((f"WDSR_CPU_HAVE_{isa.upper()}", None))
            return objects

    return [extension], {"build_ext": BuildExtensions.with_options(use_ninja=True)}


cpu_modules, cpu_cmdclass = cpu_extension()
cuda_modules, cuda_cmdclass = cuda_extension()
# The CPU extension's build_ext subclass builds the CUDA extension as torch's BuildExtension would.
setup(ext_modules=cpu_modules + cuda_modules, cmdclass=cpu_cmdclass or cuda_cmdclass)
