"""csrc/'s CUDA kernels, run here without a GPU by the CPU emulator of tests/cuda_emulator/.

The kernel source is compiled by g++ against stand-in CUDA headers (threads and barriers for CTAs, lane-0 WMMA,
NaN-filled shared memory, sm_90 launch limits); see tests/cuda_emulator/include/cuda_emulation.h for what that
does and does not prove. Parity is measured as in test_ops.py, against the float64 reference, with the same
per-dtype tolerances, bf16 included (the emulator's bf16 is exact IEEE rounding, unlike the Triton interpreter's).
Every tensor sits inside a NaN guard band: an out-of-bounds read makes the output NaN, an out-of-bounds write
fails the guard check. A build under ThreadSanitizer checks that barriers order every shared-memory access.
The mutant tests break the kernels on purpose and check that these tests notice.
"""
import shutil

import cuda_emulator
import pytest
import torch
from helpers import MEAN, TOLERANCE, features, float64_forward, image, randomise, rel_error, weights

from wdsr_fast import WDSR, FastWDSR
from wdsr_fast.fast import run_folded
from wdsr_fast.ops import reference

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the emulated kernels")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(scope="module")
def cuda_ops(tmp_path_factory):
    return cuda_emulator.EmulatedCudaOps(cuda_emulator.build(tmp_path_factory.mktemp("emulated_cuda")))


def on_cpu(args):
    """The emulator runs on CPU tensors (test_ops' helpers make them on the GPU where there is one)."""
    return [a.cpu() if isinstance(a, torch.Tensor) else a for a in args]


def block_args(n, c, h, w, wide, low_rank, dtype, channels_last):
    return on_cpu([features(n, c, h, w, dtype, channels_last), *weights(
        (wide, c, 1, 1), (wide,), (low_rank, wide, 1, 1), (low_rank,), (c, low_rank, 3, 3), (c,), dtype=dtype), 0.7])


def tail_args(scale, dtype, channels_last, n=2, c=8, h=9, w=11):
    out_feats = 3 * scale**2
    return on_cpu([features(n, c, h, w, dtype, channels_last), image(n, h, w, dtype), *weights(
        (out_feats, c, 3, 3), (out_feats,), (out_feats, 3, 5, 5), (out_feats,), dtype=dtype), MEAN, 127.5, scale])


def error_against_reference(ops, name, args):
    out = getattr(ops, name)(*args)
    ref = getattr(reference, name)(*[a.double() if isinstance(a, torch.Tensor) else a for a in args])
    assert out.dtype == args[0].dtype
    assert not out.isnan().any(), "an output element was never written, or came from an out-of-bounds read"
    return rel_error(out, ref)


# (n, c, h, w, wide, low_rank): WDSR-B 32's widths over 2x2 tiles of 16 with odd edges; a partial 64-wide
# expansion chunk and a 1-pixel-wide image; few channels (padded to 32 inside the kernel), a 1-pixel-high one.
BLOCK_SHAPES = [(2, 32, 19, 21, 192, 25), (1, 16, 17, 1, 96, 12), (2, 8, 1, 30, 48, 6)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BLOCK_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("channels_last", [False, True])
def test_wdsr_b_block(cuda_ops, dtype, shape, channels_last):
    err = error_against_reference(cuda_ops, "wdsr_b_block", block_args(*shape, dtype, channels_last))
    assert err < TOLERANCE[dtype], f"wdsr_b_block {dtype}: relative error {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels_last", [False, True])
def test_tail_shuffle(cuda_ops, dtype, scale, channels_last):
    err = error_against_reference(cuda_ops, "tail_shuffle", tail_args(scale, dtype, channels_last))
    assert err < TOLERANCE[dtype], f"tail_shuffle {dtype} x{scale}: relative error {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_whole_model(cuda_ops, dtype, scale):
    """FastWDSR's forward (run_folded) with the cuda backend's ops, on a WDSR-B of the real widths."""
    model = randomise(WDSR(variant="b", scale=scale, n_feats=32, n_resblocks=2, res_scale=0.6))
    folded = FastWDSR.from_reference(model).folded(torch.device("cpu"), dtype)
    image = torch.rand(2, 3, 17, 19, generator=torch.Generator().manual_seed(5)) * 255
    out = run_folded(cuda_ops, folded, image.to(dtype))
    expected = float64_forward(model.state_dict(), model.config, image.to(dtype))
    assert out.shape == (2, 3, 17 * scale, 19 * scale) and not out.isnan().any()
    err = rel_error(out, expected)
    assert err < TOLERANCE[dtype], f"x{scale} {dtype}: relative error {err:.2e}"


# Deliberate bugs, one text edit each, and how the tests above must react.
MUTANTS = {
    "halo off by one row": ("wdsr_b_block.cu", ("gy = t.y0 + p / kHalo - 1;", "gy = t.y0 + p / kHalo;"), "parity"),
    "shuffle rows and columns swapped": (
        "tail_shuffle.cu",
        ("i = o % (SCALE * SCALE) / SCALE, j = o % SCALE", "j = o % (SCALE * SCALE) / SCALE, i = o % SCALE"),
        "parity"),
    "no bounds check on the last CTA": ("tail_shuffle.cu", ("if (pixel >= h * w) return;", ""), "guard"),
    "shared memory not raised above 48 KB": (
        "wdsr_b_block.cu",
        ("cudaFuncSetAttribute(wdsr_b_block_mma<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)",
         "cudaSuccess"),
        "launch"),
}


@pytest.mark.parametrize("mutant", MUTANTS)
def test_broken_kernels_are_caught(tmp_path, mutant):
    source, edit, symptom = MUTANTS[mutant]
    ops = cuda_emulator.EmulatedCudaOps(cuda_emulator.build(tmp_path, {source: edit}))
    if source == "tail_shuffle.cu":
        name, args = "tail_shuffle", tail_args(3, torch.float32, False)
    else:
        name, args = "wdsr_b_block", block_args(*BLOCK_SHAPES[0], torch.float16, True)
    if symptom == "parity":
        assert error_against_reference(ops, name, args) > 100 * TOLERANCE[args[0].dtype]
    elif symptom == "guard":
        with pytest.raises(AssertionError, match="wrote outside the tensor"):
            getattr(ops, name)(*args)
    else:
        with pytest.raises(RuntimeError, match="dynamic shared memory"):
            getattr(ops, name)(*args)


def test_racecheck(tmp_path):
    """ThreadSanitizer over the emulated kernels (every kernel and dtype once): no shared-memory access that no
    barrier orders. The CPU counterpart of compute-sanitizer's racecheck, for the accesses the emulation makes."""
    result = cuda_emulator.run_racecheck(tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "all launches ran" in result.stdout


# Barriers of wdsr_b_block.cu, each removed in turn: ThreadSanitizer must report the race it opens.
BARRIERS = {
    "after staging (tensor-core path)": ("  __syncthreads();\n\n  // Stage 1", "\n  // Stage 1"),
    "after a warp's accumulator store": ("        __syncwarp();\n        for (int i = lane; i < 16 * 16;",
                                         "        for (int i = lane; i < 16 * 16;"),
    "between the stages (fp32 path)": ("  __syncthreads();\n  const int row = threadIdx.x / kTile",
                                       "  const int row = threadIdx.x / kTile"),
}


@pytest.mark.parametrize("barrier", BARRIERS)
def test_racecheck_finds_a_missing_barrier(tmp_path, barrier):
    result = cuda_emulator.run_racecheck(tmp_path, {"wdsr_b_block.cu": BARRIERS[barrier]})
    assert result.returncode == 66 and "ThreadSanitizer: data race" in result.stderr, result.stderr[-2000:]
