"""Build script: the pure-Python package always; the CUDA extension ``wdsr_fast._C`` (csrc/) where it can be.

The extension is built when torch imports, was built with CUDA, and nvcc is found (CUDA_HOME or PATH). Build it
with ``pip install --no-build-isolation .`` so that this script sees the torch you already have (an isolated
build has no torch and installs the pure-Python package). Environment:
  WDSR_FAST_FORCE_CUDA=1     a missing toolkit is an error instead of a pure-Python install
  WDSR_FAST_SKIP_CUDA=1      never build the extension
  TORCH_CUDA_ARCH_LIST       respected; default "8.0;9.0+PTX": Ampere and Hopper machine code, and PTX that the
                             driver compiles at first use for newer GPUs (Blackwell and later)
  MAX_JOBS                   parallel compile jobs (torch's build respects it)
"""
import os
import sys
from pathlib import Path

from setuptools import setup

DEFAULT_ARCHS = "8.0;9.0+PTX"
SOURCES = ["csrc/ops.cpp", "csrc/wdsr_b_block.cu", "csrc/tail_shuffle.cu"]


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
        define_macros=[("WDSR_FAST_PYTHON_MODULE", None)],
        include_dirs=pip_cuda_includes(),
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "--use_fast_math", "-lineinfo"]},
    )
    return [extension], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = cuda_extension()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
