"""csrc/cuda/'s kernels, run here without a GPU by the CPU emulator of tests/cuda_emulator/.

The kernel source is compiled by g++ against stand-in CUDA headers (threads and barriers for CTAs, lane-0 WMMA,
NaN-filled shared memory, sm_90 launch limits); see tests/cuda_emulator/include/cuda_emulation.h for what that
does and does not prove. Parity is measured as in test_ops.py, against the float64 reference, with the same
per-dtype tolerances, bf16 included (the emulator's bf16 is exact IEEE rounding, unlike the Triton interpreter's).
Every tensor sits inside a NaN guard band: an out-of-bounds read makes the output NaN, an out-of-bounds write
fails the guard check. A build under ThreadSanitizer checks that barriers order every shared-memory access.
The launch arithmetic (batch folded into grid x), the parameter structs' layout and the once-per-device
shared-memory opt-in are checked against the compiled C++, and what the extension's module reports of the kernels
(csrc/cuda/module.cpp, built into the same library) against what they do.
The fused block has two kernels (wdsr::BlockKernel): "tiled" and "persistent" (one CTA per SM looping over tiles,
the next tile's input copied with cp.async during this one's compute); the emulated devices have 3 SMs unless a
test sets another number, so that the persistent kernel's CTAs loop over several tiles and use both input buffers.
The mutant tests break the kernels on purpose and check that these tests notice.
"""
import ctypes
import shutil

import cuda_emulator
import pytest
import torch
from helpers import MEAN, TOLERANCE, features, float64_forward, image, randomise, rel_error, weights

from wdsr_fast import WDSR, FastWDSR
from wdsr_fast.inference.fast_wdsr import run_folded
from wdsr_fast.ops import reference

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the emulated kernels")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
KERNELS = cuda_emulator.BLOCK_KERNELS  # "tiled", "persistent"
SM80_OPTIN, SM90_OPTIN = 166_912, 232_448  # shared memory one block may opt into: A100, H100


@pytest.fixture(scope="module")
def cuda_ops(tmp_path_factory):
    return cuda_emulator.EmulatedCudaOps(cuda_emulator.build(tmp_path_factory.mktemp("emulated_cuda")))


@pytest.fixture(scope="module")
def extension(cuda_ops):
    """The extension's Python module (csrc/cuda/module.cpp) of the same build."""
    return cuda_emulator.extension_module(cuda_ops.lib)


@pytest.fixture()
def lib(cuda_ops):
    """The emulated library, on device 0 again after the test."""
    yield cuda_ops.lib
    cuda_ops.lib.emulated_set_device(0)


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


# (n, c, h, w, wide, low_rank): WDSR-B 32's widths over 2x2 tiles of 16 with odd edges (8 tiles: the persistent
# kernel's 3 CTAs compute 3, 3 and 2); a partial 64-wide expansion chunk and a 1-pixel-wide image; few channels
# (padded to 32 inside the kernel), a 1-pixel-high one; 12 channels, not a multiple of 8 (the persistent kernel then
# reads x and writes y element by element instead of as 16-byte vectors).
BLOCK_SHAPES = [(2, 32, 19, 21, 192, 25), (1, 16, 17, 1, 96, 12), (2, 8, 1, 30, 48, 6), (1, 12, 9, 20, 64, 10)]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BLOCK_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("channels_last", [False, True])
def test_wdsr_b_block(cuda_ops, kernel, dtype, shape, channels_last):
    """Parity of both kernels (in fp32 both names run the one CUDA-core kernel); NCHW x takes the persistent kernel's
    ordinary loads, channels_last x of a multiple of 8 channels its cp.async copies."""
    ops = cuda_ops.with_block_kernel(kernel)
    err = error_against_reference(ops, "wdsr_b_block", block_args(*shape, dtype, channels_last))
    assert err < TOLERANCE[dtype], f"wdsr_b_block {kernel} {dtype}: relative error {err:.2e}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", BLOCK_SHAPES[:1] + BLOCK_SHAPES[3:], ids=lambda s: "x".join(map(str, s)))
def test_persistent_block_computes_what_the_tiled_one_does(cuda_ops, dtype, shape):
    """The persistent kernel does the tiled kernel's arithmetic in the same order (the same WMMA products, bias,
    rounding and epilogue), so in the emulator its output is the tiled kernel's, bit for bit, on either layout."""
    for channels_last in (False, True):
        args = block_args(*shape, dtype, channels_last)
        tiled = cuda_ops.with_block_kernel("tiled").wdsr_b_block(*args)
        persistent = cuda_ops.with_block_kernel("persistent").wdsr_b_block(*args)
        assert torch.equal(tiled, persistent)


@pytest.mark.parametrize("sms", [1, 2, 5, 64])
def test_persistent_grid_is_one_cta_per_sm_looping_over_tiles(cuda_ops, lib, sms):
    """min(tiles, SMs) CTAs: one CTA computing all 8 tiles (alternating its two input buffers), a few computing
    several each with a partial last round, or one tile each where the device has more SMs than tiles."""
    shape = BLOCK_SHAPES[0]
    tiles = lib.emulated_block_grid_x(shape[0], shape[2], shape[3])
    lib.emulated_set_sm_count(0, sms)
    try:
        err = error_against_reference(cuda_ops.with_block_kernel("persistent"), "wdsr_b_block",
                                      block_args(*shape, torch.float16, True))
    finally:
        lib.emulated_set_sm_count(0, 3)
    assert err < TOLERANCE[torch.float16] and lib.emulated_last_grid_x() == min(tiles, sms) and tiles == 8


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels_last", [False, True])
def test_tail_shuffle(cuda_ops, dtype, scale, channels_last):
    err = error_against_reference(cuda_ops, "tail_shuffle", tail_args(scale, dtype, channels_last))
    assert err < TOLERANCE[dtype], f"tail_shuffle {dtype} x{scale}: relative error {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_whole_model(cuda_ops, dtype, scale, kernel="tiled"):
    """FastWDSR's forward (run_folded) with the cuda backend's ops, on a WDSR-B of the real widths."""
    model = randomise(WDSR(variant="b", scale=scale, n_feats=32, n_resblocks=2, res_scale=0.6))
    folded = FastWDSR.from_reference(model).folded(torch.device("cpu"), dtype)
    image = torch.rand(2, 3, 17, 19, generator=torch.Generator().manual_seed(5)) * 255
    out = run_folded(cuda_ops.with_block_kernel(kernel), folded, image.to(dtype))
    expected = float64_forward(model.state_dict(), model.config, image.to(dtype))
    assert out.shape == (2, 3, 17 * scale, 19 * scale) and not out.isnan().any()
    err = rel_error(out, expected)
    assert err < TOLERANCE[dtype], f"x{scale} {dtype}: relative error {err:.2e}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_whole_model_on_the_persistent_block(cuda_ops, dtype):
    test_whole_model(cuda_ops, dtype, 2, kernel="persistent")


def attribute_calls(lib) -> list[tuple[int, int]]:
    """(device, value) of every cudaFuncSetAttribute call the library made so far."""
    count = lib.emulated_attribute_calls(None, 0)
    buffer = (ctypes.c_int * (2 * count))()
    lib.emulated_attribute_calls(buffer, count)
    return [(buffer[2 * i], buffer[2 * i + 1]) for i in range(count)]


def run_two_widths(ops, device: int, dtype=torch.float16) -> list[tuple[int, int]]:
    """Fused blocks of two expansion widths on emulated ``device``; the attribute calls they made."""
    ops.lib.emulated_set_device(device)
    before = len(attribute_calls(ops.lib))
    for shape in ((1, 8, 5, 6, 48, 6), (1, 32, 5, 6, 192, 25)):
        ops.wdsr_b_block(*block_args(*shape, dtype, True))
    return attribute_calls(ops.lib)[before:]


@pytest.mark.parametrize("kernel", KERNELS)
def test_shared_memory_limit_is_set_once_per_device_to_the_maximum(cuda_ops, lib, extension, kernel):
    """One cudaFuncSetAttribute per device and kernel, to what the widest block needs, whatever the widths that
    follow: a per-launch value could race between host threads running models of different widths."""
    ops = cuda_ops.with_block_kernel(kernel)  # each kernel is another function, with its own limit per device
    widest = extension.wdsr_b_block_shared_bytes("float16", extension.limits()["max_wide"], kernel)
    assert run_two_widths(ops, 5) == [(5, widest)]
    assert run_two_widths(ops, 5) == []  # already raised there
    assert run_two_widths(ops, 5, torch.bfloat16) == [(5, widest)]  # the bf16 kernel is another function
    assert run_two_widths(ops, 6) == [(6, widest)]


@pytest.mark.parametrize("kernel", KERNELS)
def test_shared_memory_limit_is_capped_at_the_device_limit(cuda_ops, lib, extension, kernel):
    """On a GPU with 99 KB per block (sm_86, sm_89, sm_120) the limit is set to that, and a block needing more
    fails its launch with a clear error (FastWDSR does not choose the CUDA backend there: see test_cuda_backend)."""
    lib.emulated_set_shared_optin(7, 99 * 1024)
    lib.emulated_set_device(7)
    need = extension.wdsr_b_block_shared_bytes("float16", BLOCK_SHAPES[0][4], kernel)
    with pytest.raises(RuntimeError, match=f"dynamic shared memory {need} > 101376"):
        cuda_ops.with_block_kernel(kernel).wdsr_b_block(*block_args(*BLOCK_SHAPES[0], torch.float16, True))
    assert attribute_calls(lib)[-1] == (7, 99 * 1024)


def test_shared_memory_of_the_persistent_block_against_sm80_and_sm90(extension):
    """What wdsr_b_block_persistent.cu's header and csrc/cuda/README.md state: at WDSR-B 32x16's expansion width
    (192) the persistent CTA fits an A100's 163 KB per block; at the widest (256) only an H100's 227 KB, where the
    tiled kernel fits both. fp32 runs the one CUDA-core kernel (static shared memory) under either name."""
    for dtype in ("float16", "bfloat16"):
        persistent = {wide: extension.wdsr_b_block_shared_bytes(dtype, wide, "persistent") for wide in (192, 256)}
        assert persistent == {192: 166_016, 256: 175_488}
        assert persistent[192] <= SM80_OPTIN < persistent[256] <= SM90_OPTIN
        assert extension.wdsr_b_block_shared_bytes(dtype, 256, "tiled") <= SM80_OPTIN
    assert extension.wdsr_b_block_shared_bytes("float32", 192, "persistent") == 0
    with pytest.raises(ValueError, match="tiled or persistent"):
        extension.wdsr_b_block_shared_bytes("float16", 192, "pipelined")


def test_parameter_structs_match_kernels_h(cuda_ops):
    """The ctypes mirrors of kernels.h's parameter structs have the C++ offsets and sizes, field for field."""
    for structure, report in ((cuda_emulator.WdsrBBlockParams, cuda_ops.lib.emulated_block_params_layout),
                              (cuda_emulator.TailShuffleParams, cuda_ops.lib.emulated_tail_params_layout)):
        buffer = (ctypes.c_size_t * 64)()
        count = report(buffer)
        assert list(buffer[:count]) == cuda_emulator.struct_layout(structure), structure.__name__


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reported_shared_memory_is_what_a_launch_needs(cuda_ops, lib, extension, dtype, kernel):
    """The shared memory the extension reports for a width (which decides whether a GPU can run the block) is what
    the block's launch asks for: on a device that allows exactly that much it runs; one byte less, it fails."""
    name = str(dtype).removeprefix("torch.")
    ops = cuda_ops.with_block_kernel(kernel)
    for (fits, short), wide in zip(((1, 2), (3, 4)), (48, extension.limits()["max_wide"]), strict=True):
        need = extension.wdsr_b_block_shared_bytes(name, wide, kernel)
        args = block_args(1, 8, 5, 6, wide, 6, dtype, True)
        lib.emulated_set_shared_optin(fits, need)
        lib.emulated_set_device(fits)
        ops.wdsr_b_block(*args)
        lib.emulated_set_shared_optin(short, need - 1)
        lib.emulated_set_device(short)
        with pytest.raises(RuntimeError, match=f"dynamic shared memory {need} > {need - 1}"):
            ops.wdsr_b_block(*args)
    assert extension.wdsr_b_block_shared_bytes("float32", 192) == 0  # a static array under 48 KB
    with pytest.raises(ValueError, match="float64"):
        extension.wdsr_b_block_shared_bytes("float64", 192)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_widest_block_the_extension_reports_runs(cuda_ops, extension, dtype, kernel):
    """A block of the widths the extension reports as its limits runs, with parity (its weights fill the tiles)."""
    limits = extension.limits()
    shape = (1, limits["max_feats"], 5, 19, limits["max_wide"], limits["max_low_rank"])
    err = error_against_reference(cuda_ops.with_block_kernel(kernel), "wdsr_b_block", block_args(*shape, dtype, True))
    assert err < TOLERANCE[dtype], f"wdsr_b_block {dtype}: relative error {err:.2e}"


MAX_GRID_X, MAX_GRID_Y = 2**31 - 1, 65535


def block_origin(lib, cta, h, w):
    origin = (ctypes.c_int * 3)()
    lib.emulated_block_tile_origin(cta, h, w, origin)
    return tuple(origin)


def tail_index(lib, cta, thread, h, w):
    index = (ctypes.c_int * 2)()
    lib.emulated_tail_pixel(cta, thread, h, w, index)
    return tuple(index)


def test_launch_grid_of_a_batch_of_70000(cuda_ops):
    """On paper: the batch goes along grid x, so 70000 images (more than grid y's 65535) launch, and the last CTA
    computes the last tile of the last image."""
    lib, n = cuda_ops.lib, 70_000
    for h, w in ((17, 17), (540, 960)):
        tiles_h, tiles_w = -(-h // 16), -(-w // 16)
        ctas = lib.emulated_block_grid_x(n, h, w)
        assert ctas == n * tiles_h * tiles_w <= MAX_GRID_X and n > MAX_GRID_Y
        assert block_origin(lib, ctas - 1, h, w) == (n - 1, (tiles_h - 1) * 16, (tiles_w - 1) * 16)
        assert block_origin(lib, tiles_h * tiles_w, h, w) == (1, 0, 0)
    h, w = 9, 11  # one tail CTA of 128 threads per image
    ctas = lib.emulated_tail_grid_x(n, h, w)
    assert ctas == n
    assert tail_index(lib, ctas - 1, 98, h, w) == (n - 1, 98)
    h, w = 540, 960
    ctas = lib.emulated_tail_grid_x(n, h, w)
    assert ctas == n * 4050 <= MAX_GRID_X and tail_index(lib, ctas - 1, 127, h, w) == (n - 1, h * w - 1)


def test_launch_grid_covers_every_tile_and_pixel_once(cuda_ops):
    """Small sizes, every CTA: each (image, tile) and (image, pixel) is computed by exactly one thread."""
    lib, n, h, w = cuda_ops.lib, 3, 33, 17
    origins = [block_origin(lib, cta, h, w) for cta in range(lib.emulated_block_grid_x(n, h, w))]
    assert sorted(origins) == [(i, y, x) for i in range(n) for y in range(0, h, 16) for x in range(0, w, 16)]
    pixels = [tail_index(lib, cta, thread, h, w) for cta in range(lib.emulated_tail_grid_x(n, h, w))
              for thread in range(128)]
    inside = sorted(p for p in pixels if p[1] < h * w)
    assert inside == [(i, p) for i in range(n) for p in range(h * w)]


# Deliberate bugs: the file, one text edit or a list of them, the symptom the tests above must show ("parity",
# "guard", "unwritten", "attribute", or "error: <regex>" for a failed launch), and the block kernels it is run on
# (none: the tail). The geometry, the grid arithmetic and the shared-memory opt-in are shared by both kernels.
PERSISTENT = "wdsr_b_block_persistent.cu"
MUTANTS = {
    "halo off by one row": (
        "wdsr_b_block.cuh", ("gy = t.y0 + p / kHalo - 1;", "gy = t.y0 + p / kHalo;"), "parity", KERNELS),
    "shuffle rows and columns swapped": (
        "tail_shuffle.cu",
        ("i = o % (SCALE * SCALE) / SCALE, j = o % SCALE", "j = o % (SCALE * SCALE) / SCALE, i = o % SCALE"),
        "parity", ()),
    "no bounds check on the last CTA": ("tail_shuffle.cu", ("if (pixel >= h * w) return;", ""), "guard", ()),
    "shared memory not raised above 48 KB": (
        "wdsr_b_block.cuh",
        ("err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, limit);",
         "err = limit > 0 ? cudaSuccess : cudaErrorInvalidValue;"),
        "error: dynamic shared memory", KERNELS),
    "shared memory limit set on every launch": (
        "wdsr_b_block.cuh", ("  if (done) return cudaSuccess;\n", ""), "attribute", KERNELS),
    "every CTA on the first image": (
        "launch_grid.cuh", ("return {static_cast<int>(cta / tiles),", "return {0,"), "unwritten", KERNELS),
    "persistent: a tile read before its copies are waited for": (
        PERSISTENT,
        [("    __pipeline_wait_prior(0);\n    __syncthreads();\n    const long long next",
          "    __syncthreads();\n    const long long next"),
         ("    __syncthreads();\n\n    // Stage 2",
          "    __pipeline_wait_prior(0);\n    __syncthreads();\n\n    // Stage 2")],
        "parity", ("persistent",)),  # the first tile's x is NaN poison in stage 1, which the ReLU (fmaxf) turns to 0
    "persistent: copies waited for a tile late": (
        PERSISTENT, ("__pipeline_wait_prior(0);", "__pipeline_wait_prior(1);"), "error: cp.async copies not waited for",
        ("persistent",)),
    "persistent: the next tile copied into the buffer being read": (
        PERSISTENT, ("layout.x_tile(buffer ^ 1)", "layout.x_tile(buffer)"), "unwritten", ("persistent",)),
    "persistent: a copy's source not 16-byte aligned": (
        PERSISTENT, ("x_n + gy * xs.h + gx * xs.w + k, 16);", "x_n + gy * xs.h + gx * xs.w + k + 1, 16);"),
        "error: not aligned to the copy's size", ("persistent",)),
}


@pytest.mark.parametrize("mutant", MUTANTS)
def test_broken_kernels_are_caught(tmp_path, mutant):
    source, edit, symptom, kernels = MUTANTS[mutant]
    built = cuda_emulator.EmulatedCudaOps(cuda_emulator.build(tmp_path, {source: edit}))
    if not kernels:
        cases = [(built, "tail_shuffle", tail_args(3, torch.float32, False))]
    else:
        cases = [(built.with_block_kernel(kernel), "wdsr_b_block", block_args(*BLOCK_SHAPES[0], torch.float16, True))
                 for kernel in kernels]
    for ops, name, args in cases:
        if symptom == "parity":
            assert error_against_reference(ops, name, args) > 100 * TOLERANCE[args[0].dtype]
        elif symptom == "guard":
            with pytest.raises(AssertionError, match="wrote outside the tensor"):
                getattr(ops, name)(*args)
        elif symptom == "unwritten":
            with pytest.raises(AssertionError, match="never written"):
                error_against_reference(ops, name, args)
        elif symptom == "attribute":
            assert len(run_two_widths(ops, 0)) == 2  # the test of the once-per-device limit would fail
        else:
            with pytest.raises(RuntimeError, match=symptom.removeprefix("error: ")):
                getattr(ops, name)(*args)


def test_racecheck(tmp_path):
    """ThreadSanitizer over the emulated kernels (every kernel and dtype once): no shared-memory access that no
    barrier orders. The CPU counterpart of compute-sanitizer's racecheck, for the accesses the emulation makes."""
    result = cuda_emulator.run_racecheck(tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "all launches ran" in result.stdout


# Barriers of the block kernels, each removed in turn: ThreadSanitizer must report the race it opens.
BARRIERS = {
    "after staging (tensor-core path)": ("wdsr_b_block.cu", ("  __syncthreads();\n\n  // Stage 1", "\n  // Stage 1")),
    "after a warp's accumulator store": (
        "wdsr_b_block.cu",
        ("        __syncwarp();\n        for (int i = lane; i < 16 * 16;", "        for (int i = lane; i < 16 * 16;")),
    "between the stages (fp32 path)": (
        "wdsr_b_block.cu",
        ("  __syncthreads();\n  const int row = threadIdx.x / kTile", "  const int row = threadIdx.x / kTile")),
    "after the wait for a tile's copies (persistent)": (
        PERSISTENT, ("    __pipeline_wait_prior(0);\n    __syncthreads();\n", "    __pipeline_wait_prior(0);\n")),
    "between the stages (persistent)": (PERSISTENT, ("    __syncthreads();\n\n    // Stage 2", "\n    // Stage 2")),
}


@pytest.mark.parametrize("barrier", BARRIERS)
def test_racecheck_finds_a_missing_barrier(tmp_path, barrier):
    source, edit = BARRIERS[barrier]
    result = cuda_emulator.run_racecheck(tmp_path, {source: edit})
    assert result.returncode == 66 and "ThreadSanitizer: data race" in result.stderr, result.stderr[-2000:]
