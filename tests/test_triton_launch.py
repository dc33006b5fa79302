"""How the Triton ops launch, checked without a GPU: every image of a batch along grid axis 0 (axes 1 and 2 are
capped at 65535), each launch inside a guard making the input's GPU the current device, inputs the kernels
read as contiguous made so, and the fp32 dot precision PyTorch's TF32 setting asks for. The kernels are replaced by
recorders and the tensors are shape-only (meta), so a batch of 70000 images costs nothing."""
import contextlib

import pytest
import torch

triton = pytest.importorskip("triton")
from helpers import MEAN  # noqa: E402

from wdsr_fast import ops  # noqa: E402
from wdsr_fast.ops import reference  # noqa: E402
from wdsr_fast.ops.triton import block_b as triton_block_b  # noqa: E402
from wdsr_fast.ops.triton import block_b_persistent as triton_persistent  # noqa: E402
from wdsr_fast.ops.triton import common as triton_common  # noqa: E402
from wdsr_fast.ops.triton import conv as triton_conv  # noqa: E402
from wdsr_fast.ops.triton import tail as triton_tail  # noqa: E402

N = 70_000
MAX_GRID_X, MAX_GRID_YZ = 2**31 - 1, 65535


class RecordingKernel:
    """Stands in for a @triton.jit kernel: ``kernel[grid](*args, **constexprs)`` records the grid and whether the
    launch happened inside ``on_device`` of the op's input."""

    def __init__(self, guard_log):
        self.launches, self.guard_log, self.constexprs = [], guard_log, []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append((grid, list(self.guard_log)))
            self.constexprs.append(kwargs)
        return launch


@pytest.fixture()
def recorded(monkeypatch):
    """Replaces every Triton kernel and on_device; returns {module: recorder} and the list of guarded devices."""
    guarded = []

    @contextlib.contextmanager
    def on_device(t):
        guarded.append(t.device)
        yield
        guarded.pop()

    recorders = {}
    for module, kernel in ((triton_block_b, "_wdsr_b_block_kernel"), (triton_tail, "_tail_shuffle_kernel"),
                           (triton_conv, "_conv3x3_kernel"), (triton_persistent, "_wdsr_b_block_persistent_kernel")):
        recorders[module] = RecordingKernel(guarded)
        monkeypatch.setattr(module, kernel, recorders[module])
        monkeypatch.setattr(module, "on_device", on_device)
    return recorders


def meta(*shape):
    return torch.empty(shape, device="meta")


def check_grid(grid, programs):
    assert grid[0] == programs <= MAX_GRID_X, grid
    assert all(size <= MAX_GRID_YZ for size in grid[1:]), grid


def test_wdsr_b_block_batch_along_axis_0(recorded):
    x = meta(N, 32, 17, 30).contiguous(memory_format=torch.channels_last)
    triton_block_b.wdsr_b_block(x, meta(192, 32, 1, 1), meta(192), meta(25, 192, 1, 1), meta(25), meta(32, 25, 3, 3),
                                meta(32), 1.0)
    [(grid, guards)] = recorded[triton_block_b].launches
    check_grid(grid, N * 2 * 3)  # 14 x 14 interiors: 2 tile rows, 3 tile columns
    assert guards == [x.device]


def test_persistent_block_grid_is_programs_per_sm_times_sms(recorded):
    """The persistent kernel runs programs_per_sm x SMs programs (132 SMs for a launch off the GPU), each looping over
    ``rounds`` rounds of tiles: every image of the batch along the tiles, none along grid axes 1 or 2."""
    x = meta(N, 32, 17, 30).contiguous(memory_format=torch.channels_last)
    config = triton_persistent.CONFIGS[0]
    with ops.use_triton_block_variant("persistent"):
        triton_block_b.wdsr_b_block(x, meta(192, 32, 1, 1), meta(192), meta(25, 192, 1, 1), meta(25),
                                    meta(32, 25, 3, 3), meta(32), 1.0)
    [(grid, guards)] = recorded[triton_persistent].launches
    tiles = N * triton.cdiv(17, config.tile_h - 2) * triton.cdiv(30, config.tile_w - 2)
    programs = config.programs_per_sm * triton_persistent.H100_SMS
    check_grid(grid, programs)
    assert guards == [x.device]
    [kwargs] = recorded[triton_persistent].constexprs
    assert kwargs["num_warps"] == config.warps and kwargs["TILE_H"] == config.tile_h
    assert triton.cdiv(tiles, programs) * programs >= tiles


def test_tail_shuffle_batch_along_axis_0(recorded):
    features = meta(N, 32, 17, 30)
    triton_tail.tail_shuffle(features, meta(N, 3, 17, 30), meta(27, 32, 3, 3), meta(27), meta(27, 3, 5, 5), meta(27),
                             MEAN.to("meta"), 127.5, 3)
    [(grid, guards)] = recorded[triton_tail].launches
    check_grid(grid, N * 3 * 2)  # 8 x 16 tiles
    assert guards == [features.device]


def test_convolutions_batch_along_axis_0(recorded):
    image = meta(N, 3, 17, 30)
    triton_conv.head_conv(image, meta(32, 3, 3, 3), meta(32), MEAN.to("meta"), 127.5)
    x = meta(N, 32, 17, 30)
    triton_conv.wdsr_a_block(x, meta(128, 32, 3, 3), meta(128), meta(32, 128, 3, 3), meta(32), 1.0)
    grids = [(grid, guards) for grid, guards in recorded[triton_conv].launches]
    assert [grid for grid, _ in grids] == [(N * 3 * 2, 1), (N * 3 * 2, 2), (N * 3 * 2, 1)]  # CO_BLOCK 64 slices
    for grid, guards in grids:
        check_grid(grid, N * 3 * 2)
        assert guards == [x.device]


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.device_count() < 2,
                    reason="a fake tensor on cuda:1 initialises that GPU where CUDA is present; this machine has one")
def test_on_device_makes_the_input_gpu_current():
    """For a CUDA tensor, on_device is torch.cuda.device of its index (no GPU needed to build it); for others, no
    guard (the interpreter runs on the CPU)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        on_second_gpu = torch.empty(2, device="cuda:1")
    guard = triton_common.on_device(on_second_gpu)
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert isinstance(triton_common.on_device(torch.empty(2)), contextlib.nullcontext)


@pytest.mark.skipif(not triton_common.interpreting() and not torch.cuda.is_available(),
                    reason="needs a GPU or the Triton interpreter")
def test_a_strided_mean_is_read_correctly():
    """mean is a (3,) tensor of any strides: the kernels get a contiguous copy."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(0)
    strided_mean = torch.stack([MEAN, torch.zeros(3)], dim=1).to(device).reshape(-1)[::2]
    assert not strided_mean.is_contiguous() and torch.equal(strided_mean.cpu(), MEAN)
    image = (torch.rand(2, 3, 9, 11, generator=gen) * 255).to(device)
    weight, bias = (torch.randn(8, 3, 3, 3, generator=gen) * 0.3).to(device), torch.randn(8, generator=gen).to(device)
    out = triton_conv.head_conv(image, weight, bias, strided_mean, 127.5)
    expected = reference.head_conv(image.double(), weight.double(), bias.double(), MEAN.double().to(device), 127.5)
    assert (out.double() - expected).abs().max() / expected.abs().max() < 1e-5
    features = torch.randn(2, 8, 9, 11, generator=gen).to(device)
    w_tail, b_tail = torch.randn(12, 8, 3, 3, generator=gen).to(device), torch.randn(12, generator=gen).to(device)
    w_skip, b_skip = torch.randn(12, 3, 5, 5, generator=gen).to(device), torch.randn(12, generator=gen).to(device)
    out = triton_tail.tail_shuffle(features, image, w_tail, b_tail, w_skip, b_skip, strided_mean, 127.5, 2)
    expected = reference.tail_shuffle(*[t.double() for t in (features, image, w_tail, b_tail, w_skip, b_skip)],
                                      MEAN.double().to(device), 127.5, 2)
    assert (out.double() - expected).abs().max() / expected.abs().max() < 1e-5


@pytest.fixture()
def tf32_setting():
    """Restores cuDNN's TF32 setting (and the newer API's, which a test may mix in) after the test."""
    cudnn = torch.backends.cudnn
    saved = cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision, cudnn.fp32_precision
    yield
    cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision, cudnn.fp32_precision = saved


def run_every_op(dtype):
    """Each Triton op once on small shape-only tensors of ``dtype`` (the kernels recorded, not run)."""
    def m(*shape):
        return torch.empty(shape, device="meta", dtype=dtype)
    mean = MEAN.to("meta")
    for variant in ops.TRITON_BLOCK_VARIANTS:
        with ops.use_triton_block_variant(variant):
            triton_block_b.wdsr_b_block(m(1, 32, 17, 30), m(192, 32, 1, 1), m(192), m(25, 192, 1, 1), m(25),
                                        m(32, 25, 3, 3), m(32), 1.0)
    triton_tail.tail_shuffle(m(1, 32, 17, 30), m(1, 3, 17, 30), m(12, 32, 3, 3), m(12), m(12, 3, 5, 5), m(12), mean,
                             127.5, 2)
    triton_conv.head_conv(m(1, 3, 17, 30), m(32, 3, 3, 3), m(32), mean, 127.5)


@pytest.mark.parametrize("tf32", [True, False])
def test_fp32_dots_follow_cudnns_tf32_setting(recorded, tf32_setting, tf32):
    """fp32: every kernel gets PRECISION "tf32" where torch.backends.cudnn.allow_tf32 lets cuDNN's convolutions use
    TF32 (PyTorch's default), "ieee" where it does not, in the interpreter too (which computes exact fp32 either
    way); the matmul flag (torch.backends.cuda.matmul.allow_tf32) plays no part. fp16: "ieee" (ignored)."""
    torch.backends.cudnn.allow_tf32 = tf32
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = not tf32
        run_every_op(torch.float32)
        run_every_op(torch.float16)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    for recorder in recorded.values():
        precisions = [kwargs["PRECISION"] for kwargs in recorder.constexprs]
        half = len(precisions) // 2
        assert precisions[:half] == ["tf32" if tf32 else "ieee"] * half, precisions
        assert precisions[half:] == ["ieee"] * half, precisions


def test_tf32_setting_through_the_newer_api(tf32_setting):
    """Where the legacy flag and the per-op API were mixed (reading torch.backends.cudnn.allow_tf32 then raises),
    the convolutions' own setting decides, "none" deferring to the levels above it."""
    cudnn = torch.backends.cudnn
    cudnn.allow_tf32 = False
    cudnn.conv.fp32_precision = "tf32"  # conv and rnn now differ: the legacy getter raises
    with pytest.raises(RuntimeError):
        cudnn.allow_tf32  # noqa: B018
    assert triton_common.tf32_convolutions()
    cudnn.conv.fp32_precision = "ieee"
    assert not triton_common.tf32_convolutions()
    cudnn.conv.fp32_precision = "none"
    cudnn.fp32_precision = "tf32"
    assert triton_common.tf32_convolutions()


@pytest.mark.skipif(not triton_common.interpreting(), reason="the interpreter's exact fp32 is what is checked")
def test_interpreter_runs_the_tf32_choice_exactly(tf32_setting):
    """The interpreter takes the "tf32" precision the setting gives and computes exact fp32 anyway: parity on CPU
    holds with PyTorch's default setting."""
    torch.backends.cudnn.allow_tf32 = True
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 8, 5, 6, generator=gen).contiguous(memory_format=torch.channels_last)
    w = [torch.randn(s, generator=gen) * 0.3 for s in ((48, 8, 1, 1), (48,), (6, 48, 1, 1), (6,), (8, 6, 3, 3), (8,))]
    out = triton_block_b.wdsr_b_block(x, *w, 0.7)
    expected = reference.wdsr_b_block(x.double(), *[t.double() for t in w], 0.7)
    assert (out.double() - expected).abs().max() / expected.abs().max() < 1e-6
