"""Whether the CUDA backend takes a model on a GPU: the fused WDSR-B block's widths, the GPU's compute capability
and shared memory per block against the block's need, with the device properties stubbed so that this runs without
a GPU; and the default build targets, which must let newer GPUs than the listed ones run the kernels (PTX).

The backend asks the extension for the kernels' limits. Where the CUDA build is not there (a CPU machine), the
extension is the emulator's build of the same sources (csrc/cuda/module.cpp with the kernels, tests/cuda_emulator).
"""
import re
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import cuda_emulator
import pytest
import torch

from wdsr_fast import WDSR, FastWDSR, ops
from wdsr_fast.ops import cuda_backend

ROOT = Path(__file__).resolve().parents[1]
WDSR_B = WDSR(variant="b", n_feats=32, n_resblocks=1).config  # expansion width 192: 148,224 B in fp16/bf16
WDSR_A = WDSR(variant="a", n_feats=32, n_resblocks=1).config  # convolutions through cuDNN only

# name, compute capability, shared memory per multiprocessor (bytes), as the CUDA runtime reports them
GPUS = {
    "H100": ("NVIDIA H100 80GB HBM3", (9, 0), 233_472),
    "A100": ("NVIDIA A100-SXM4-40GB", (8, 0), 167_936),
    "RTX 3090": ("NVIDIA GeForce RTX 3090", (8, 6), 102_400),
    "RTX 4090": ("NVIDIA GeForce RTX 4090", (8, 9), 102_400),
    "RTX 5090": ("NVIDIA GeForce RTX 5090", (12, 0), 102_400),
    "T4": ("Tesla T4", (7, 5), 65_536),
}


@pytest.fixture(scope="module")
def extension(tmp_path_factory):
    """The CUDA extension's Python module: the built one, else the emulator's build of its sources."""
    if cuda_backend.LOAD_ERROR is None:
        return cuda_backend._C
    if shutil.which("g++") is None:
        pytest.skip(f"needs the CUDA extension or g++ to build it for the emulator ({cuda_backend.LOAD_ERROR})")
    return cuda_emulator.extension_module(cuda_emulator.build(tmp_path_factory.mktemp("emulated_cuda")))


@pytest.fixture()
def loaded(monkeypatch, extension):
    """cuda_backend with the extension loaded."""
    monkeypatch.setattr(cuda_backend, "_C", extension)
    monkeypatch.setattr(cuda_backend, "LOAD_ERROR", None)
    return extension


@pytest.fixture()
def gpu(monkeypatch, loaded):
    """install(name): torch reports that GPU's properties (and the extension counts as loaded)."""

    def install(name, **extra):
        full_name, (major, minor), per_sm = GPUS[name]
        properties = SimpleNamespace(name=full_name, major=major, minor=minor, shared_memory_per_multiprocessor=per_sm,
                                     **extra)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: properties)

    return install


@pytest.mark.parametrize("name", ["H100", "A100"])
def test_gpus_with_enough_shared_memory_take_the_fused_block(gpu, name):
    gpu(name)
    assert cuda_backend.unavailable_reason(torch.device("cuda"), WDSR_B) is None


@pytest.mark.parametrize("name", ["RTX 3090", "RTX 4090", "RTX 5090"])
def test_gpus_with_99_kb_per_block_decline_the_fused_block(gpu, name):
    gpu(name)
    reason = cuda_backend.unavailable_reason(torch.device("cuda"), WDSR_B)
    assert "148224 bytes of shared memory" in reason and "allows 101376" in reason and GPUS[name][0] in reason
    assert cuda_backend.unavailable_reason(torch.device("cuda"), WDSR_A) is None  # no fused block needed


def test_the_persistent_block_kernel_is_declined_where_its_shared_memory_does_not_fit(gpu, monkeypatch):
    """With WDSR_FAST_CUDA_BLOCK=persistent the check is made for that kernel: WDSR-B 32x16 (width 192) fits an A100,
    an expansion width of 256 only an H100 (the tiled kernel fits both)."""
    wide_256 = WDSR(variant="b", n_feats=32, expansion=8, n_resblocks=1).config
    monkeypatch.setenv(ops.CUDA_BLOCK_ENV, "persistent")
    gpu("A100")
    assert cuda_backend.unavailable_reason(torch.device("cuda"), WDSR_B) is None
    reason = cuda_backend.unavailable_reason(torch.device("cuda"), wide_256)
    assert "(persistent kernel; WDSR_FAST_CUDA_BLOCK=tiled needs less) needs 175488 bytes" in reason, reason
    with ops.use_cuda_block_variant("tiled"):
        assert cuda_backend.unavailable_reason(torch.device("cuda"), wide_256) is None
    gpu("H100")
    assert cuda_backend.unavailable_reason(torch.device("cuda"), wide_256) is None


def test_the_block_op_is_the_registered_op_of_the_kernel_in_use(monkeypatch):
    """cuda_backend.wdsr_b_block is looked up at each access: the registered op of the kernel that
    $WDSR_FAST_CUDA_BLOCK or use_cuda_block_variant names (stand-ins here for the two ops)."""
    tiled, persistent = object(), object()
    monkeypatch.setattr(cuda_backend, "_wdsr_b_block_tiled", tiled)
    monkeypatch.setattr(cuda_backend, "_wdsr_b_block_persistent", persistent)
    monkeypatch.delenv(ops.CUDA_BLOCK_ENV, raising=False)
    assert ops.get_backend("cuda").wdsr_b_block is tiled
    with ops.use_cuda_block_variant("persistent"):
        assert ops.get_backend("cuda").wdsr_b_block is persistent
    monkeypatch.setenv(ops.CUDA_BLOCK_ENV, "persistent")
    assert cuda_backend.wdsr_b_block is persistent and cuda_backend.block_op("tiled") is tiled
    with pytest.raises(AttributeError, match="wdsr_c_block"):
        cuda_backend.wdsr_c_block  # noqa: B018


def test_gpus_older_than_ampere_are_declined(gpu):
    gpu("T4")
    for config in (WDSR_A, WDSR_B, None):
        assert "compute capability 8.0 or newer; Tesla T4 is 7.5" in cuda_backend.unavailable_reason(
            torch.device("cuda"), config)


def test_the_opt_in_limit_is_used_where_torch_reports_it(gpu):
    gpu("RTX 3090", shared_memory_per_block_optin=160 * 1024)
    assert cuda_backend.unavailable_reason(torch.device("cuda"), WDSR_B) is None


def test_an_explicit_cuda_backend_falls_back_where_the_fused_block_does_not_fit(gpu):
    """backend="cuda" where its half-precision block does not fit warns once and falls back to the fastest other
    backend instead of failing every forward."""
    gpu("RTX 4090")
    if ops.unavailable_reason("triton", "cuda") is not None:
        pytest.skip("triton backend unavailable")
    assert "shared memory" in cuda_backend.unavailable_reason(torch.device("cuda"), WDSR_B, torch.float16)
    model = FastWDSR(variant="b", n_feats=32, n_resblocks=1, backend="cuda")
    with pytest.warns(UserWarning, match="shared memory.*falling back to backend 'triton'"):
        assert model.resolve_backend(torch.device("cuda"), torch.float16) == "triton"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.resolve_backend(torch.device("cuda"), torch.float16) == "triton"


def test_auto_picks_by_dtype_as_measured(gpu):
    """On a GPU, auto takes Triton for half precision (measured 4x faster than the CUDA C++ kernels and cuDNN on an
    H100) and cuDNN through the torch backend for float32 (measured 3x faster than the CUDA C++ fp32 kernels);
    the CUDA C++ kernels where Triton is missing."""
    gpu("H100")
    for config in (WDSR_A, WDSR_B):
        assert ops.pick_backend("cuda", config, torch.float32) == "torch"
        assert ops.pick_backend("cuda", config) == "torch"  # no dtype: torch's default, float32
        for half in (torch.float16, torch.bfloat16):
            expected = "triton" if ops.unavailable_reason("triton", "cuda") is None else "cuda"
            assert ops.pick_backend("cuda", config, half) == expected


def test_blocks_wider_than_the_kernel_are_declined(loaded):
    assert cuda_backend.unsupported_model(WDSR(variant="b", n_feats=32).config) is None
    assert cuda_backend.unsupported_model(WDSR(variant="a", n_feats=128, block_feats=512).config) is None
    reason = cuda_backend.unsupported_model(WDSR(variant="b", n_feats=48).config)
    assert "n_feats <= 32" in reason and "48, 288 and 38" in reason


def test_default_arch_lists_embed_ptx_for_newer_gpus(extension):
    """Machine code from the oldest GPU the kernels run on (Ampere) and for Hopper, and Hopper PTX that the driver
    compiles for any newer GPU."""
    oldest = "{}.{}".format(*extension.limits()["min_compute_capability"])
    archs = re.search(r'DEFAULT_ARCHS = "([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
    assert archs.split(";") == [oldest, "9.0+PTX"]
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"set\(CMAKE_CUDA_ARCHITECTURES ([^)]+)\)", cmake).group(1).split() == ["80-real", "90"]
    assert re.search(r'set\(ENV\{TORCH_CUDA_ARCH_LIST\} "([^"]+)"\)', cmake).group(1) == "8.0;9.0+PTX"


def test_without_the_extension_the_backend_is_unavailable_with_its_reason(gpu, monkeypatch):
    """A CPU-only install (no _C): nothing asks the missing extension for its limits; the backend says why not."""
    gpu("H100")
    monkeypatch.setattr(cuda_backend, "_C", None)
    monkeypatch.setattr(cuda_backend, "LOAD_ERROR", "wdsr_fast._C is not built or does not load (no nvcc)")
    for config in (WDSR_A, WDSR_B, None):
        assert ops.unavailable_reason("cuda", "cuda", config, torch.float16).endswith("(no nvcc)")
        assert ops.pick_backend("cuda", config, torch.float16) != "cuda"
