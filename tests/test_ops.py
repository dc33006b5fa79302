"""Parity of each fused op, on every backend that can run here, against a float64 reference.

Error measure: max |out - ref| / max |ref| over the whole output, the reference being the op of
``ops/reference.py`` run in float64 on the same (rounded) inputs. Tolerances per dtype: fp32 1e-5, fp16 5e-3,
bf16 2e-2 (bf16 only on GPU: the Triton interpreter's bf16 arithmetic is wrong). On a GPU machine the same
tests run every backend there (cuda, triton, torch) with TF32 off for the reference. Outputs are poisoned with NaN
before the kernels write them, so a missed write fails the test.
"""
import pytest
import torch
from helpers import BACKENDS, DEVICE, DTYPES, MEAN, TOLERANCE, features, image, rel_error, require_gpu_backend, weights

from wdsr_fast import ops
from wdsr_fast.ops import reference

try:
    from wdsr_fast.ops.triton.block_b_persistent import CONFIGS
except ImportError:  # triton not installed
    CONFIGS = ()

pytestmark = pytest.mark.usefixtures("poison")  # NaN-poisoned outputs, no TF32 (conftest.py)


def check(backend, name, args, dtype):
    op = getattr(ops.get_backend(backend), name)
    if backend == "cpu" and dtype != torch.float32:
        with pytest.raises(TypeError, match="float32"):
            op(*args)
        pytest.skip("the cpu backend runs float32 only (its TypeError for other dtypes was checked)")
    out = op(*args)
    as64 = [a.double() if isinstance(a, torch.Tensor) else a for a in args]
    ref = getattr(reference, name)(*as64)
    assert out.dtype == dtype
    assert not torch.isnan(out).any(), "an output element was never written"
    err = rel_error(out, ref)
    assert err < TOLERANCE[dtype], f"{backend} {name} {dtype}: relative error {err:.2e}"
    return out


SHAPES = [(2, 8, 9, 13), (1, 32, 17, 1), (2, 32, 1, 30)]  # odd sizes, edge sizes, not multiples of the tiles


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_wdsr_b_block(backend, dtype, shape, channels_last):
    n, c, h, w = shape
    wide, low_rank = 6 * c, int(0.8 * c)
    args = [features(*shape, dtype, channels_last)] + weights(
        (wide, c, 1, 1), (wide,), (low_rank, wide, 1, 1), (low_rank,), (c, low_rank, 3, 3), (c,), dtype=dtype) + [0.7]
    check(backend, "wdsr_b_block", args, dtype)


def block_args(shape, dtype, channels_last, seed):
    """Fresh random x (in the layout asked for) and block weights for a test case, from its own seed."""
    n, c, h, w = shape
    wide, low_rank = 6 * c, int(0.8 * c)
    return [features(*shape, dtype, channels_last, seed=seed)] + weights(
        (wide, c, 1, 1), (wide,), (low_rank, wide, 1, 1), (low_rank,), (c, low_rank, 3, 3), (c,), dtype=dtype,
        seed=seed + 1) + [0.7]


def check_block(out, args, dtype):
    ref = reference.wdsr_b_block(*[a.double() if isinstance(a, torch.Tensor) else a for a in args])
    assert out.dtype == dtype and out.shape == ref.shape
    assert not torch.isnan(out).any(), "an output element was never written"
    err = rel_error(out, ref)
    assert err < TOLERANCE[dtype], f"relative error {err:.2e}"


# The persistent kernel runs INTERPRETER_PROGRAMS programs in the interpreter: (1, 8, 15, 43) is 8 tiles, so 3 rounds
# of 3 programs, the last one partial; (2, 32, 19, 30) is 12 tiles, 4 rounds, over two images.
BLOCK_SHAPES = SHAPES + [(1, 8, 15, 43), (2, 32, 19, 30)]


@pytest.mark.skipif("triton" not in BACKENDS, reason="triton backend unavailable")
@pytest.mark.parametrize("variant", ops.TRITON_BLOCK_VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BLOCK_SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_triton_block_variants(variant, dtype, shape, channels_last):
    """The op contract on each Triton block kernel (the op copies NCHW x: block_b.READ_NCHW)."""
    seed = 10 + BLOCK_SHAPES.index(shape) * 4 + 2 * channels_last + (dtype == torch.float16)
    args = block_args(shape, dtype, channels_last, seed)
    with ops.use_triton_block_variant(variant):
        out = ops.get_backend("triton").wdsr_b_block(*args)
    assert out.is_contiguous(memory_format=torch.channels_last)
    check_block(out, args, dtype)


@pytest.mark.skipif("cuda" not in BACKENDS, reason="cuda backend unavailable (a GPU and the built extension)")
@pytest.mark.parametrize("variant", ops.CUDA_BLOCK_VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BLOCK_SHAPES + [(2, 32, 200, 180)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_block_variants(variant, dtype, shape, channels_last):
    """The op contract on each CUDA C++ block kernel (fp32 runs the one CUDA-core kernel under either name). The
    last shape is 312 tiles: more than an H100's 132 SMs, so that the persistent kernel's CTAs loop over tiles and
    use both input buffers (the smaller ones give every CTA a single tile there)."""
    seed = 200 + BLOCK_SHAPES.index(shape) * 4 if shape in BLOCK_SHAPES else 300
    args = block_args(shape, dtype, channels_last, seed + 2 * channels_last + (dtype == torch.float16))
    with ops.use_cuda_block_variant(variant):
        out = ops.get_backend("cuda").wdsr_b_block(*args)
    assert out.is_contiguous(memory_format=torch.channels_last)
    check_block(out, args, dtype)


@pytest.mark.skipif("triton" not in BACKENDS, reason="triton backend unavailable")
@pytest.mark.parametrize("kernel", ["tiled", "tiled-a-in-shared-memory", *[c.name for c in CONFIGS]])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BLOCK_SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_triton_block_kernels_read_any_layout(kernel, dtype, shape, channels_last):
    """Each block kernel, and each kept configuration of the persistent one, given x as it is (NCHW not copied),
    against the float64 reference: fresh inputs and weights per case, odd sizes, batches, partial last rounds."""
    from wdsr_fast.ops.triton import block_b, block_b_persistent

    seed = 100 + BLOCK_SHAPES.index(shape) * 4 + 2 * channels_last + (dtype == torch.float16)
    args = block_args(shape, dtype, channels_last, seed)
    if kernel.startswith("tiled"):
        out = block_b.launch(*args, a_from_registers=False if kernel != "tiled" else None)
    else:
        out = block_b_persistent.wdsr_b_block(*args, config=block_b_persistent.config_named(kernel))
    check_block(out, args, dtype)


def test_persistent_block_packs_weights_once_per_version():
    """The packed weights are kept on w_conv while none of the six weights changed; an in-place change repacks."""
    if "triton" not in BACKENDS:
        pytest.skip("triton backend unavailable")
    from wdsr_fast.ops.triton import block_b_persistent

    args = block_args((1, 8, 5, 6), torch.float32, True, 7)
    first = block_b_persistent.packed_weights(*args[1:7])
    assert block_b_persistent.packed_weights(*args[1:7]) is first
    with torch.no_grad():
        args[3].mul_(2)  # w_reduce, as an optimizer step would
    second = block_b_persistent.packed_weights(*args[1:7])
    assert second is not first and torch.equal(second[2][:6, :48], args[3].reshape(6, 48))
    with ops.use_triton_block_variant("persistent"):
        check_block(ops.get_backend("triton").wdsr_b_block(*args), args, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES[:2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_wdsr_a_block(backend, dtype, shape, channels_last):
    n, c, h, w = shape
    wide = 3 * c
    args = [features(*shape, dtype, channels_last)] + weights(
        (wide, c, 3, 3), (wide,), (c, wide, 3, 3), (c,), dtype=dtype) + [0.5]
    check(backend, "wdsr_a_block", args, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(9, 13), (1, 5)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_head_conv(backend, dtype, hw, channels_last):
    img = image(2, *hw, dtype)
    img = img.contiguous(memory_format=torch.channels_last) if channels_last else img
    args = [img] + weights((8, 3, 3, 3), (8,), dtype=dtype) + [MEAN.to(DEVICE), 127.5]
    check(backend, "head_conv", args, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels_last", [False, True])
def test_tail_shuffle(backend, dtype, scale, channels_last):
    out_feats = 3 * scale**2
    feats = features(2, 8, 9, 11, dtype, channels_last)
    img = image(2, 9, 11, dtype)
    args = [feats, img] + weights((out_feats, 8, 3, 3), (out_feats,), (out_feats, 3, 5, 5), (out_feats,),
                                  dtype=dtype) + [MEAN.to(DEVICE), 127.5, scale]
    out = check(backend, "tail_shuffle", args, dtype)
    assert out.shape == (2, 3, 9 * scale, 11 * scale) and out.is_contiguous()


def test_poison_catches_a_missed_write(monkeypatch):
    """The NaN poison must be able to fail a test: drop the last output row and see it caught."""
    if "triton" not in BACKENDS:
        pytest.skip("triton backend unavailable")
    from wdsr_fast.ops.triton import block_b as triton_block_b

    monkeypatch.setattr(triton_block_b, "TILE_H", 8)  # fewer rows per program...
    x = features(1, 8, 9, 5, torch.float32, True)
    args = [x] + weights((48, 8, 1, 1), (48,), (6, 48, 1, 1), (6,), (8, 6, 3, 3), (8,), dtype=torch.float32) + [1.0]
    original_cdiv = triton_block_b.triton.cdiv
    # ...one tile short
    monkeypatch.setattr(triton_block_b.triton, "cdiv", lambda a, b: max(1, original_cdiv(a, b) - 1))
    out = ops.get_backend("triton").wdsr_b_block(*args)
    assert torch.isnan(out).any()


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "torch"])
def test_bad_inputs(backend):
    op = ops.get_backend(backend)
    x = features(1, 8, 5, 5, torch.float32, True)
    good = weights((48, 8, 1, 1), (48,), (6, 48, 1, 1), (6,), (8, 6, 3, 3), (8,), dtype=torch.float32)
    with pytest.raises(ValueError, match="w_conv"):
        op.wdsr_b_block(x, *good[:4], good[4][:, :5], good[5], 1.0)
    with pytest.raises(TypeError, match="float16"):
        op.wdsr_b_block(x.half(), *good, 1.0)
    with pytest.raises((TypeError, RuntimeError), match="float32"):
        op.wdsr_b_block(x.int(), *good, 1.0)
    with pytest.raises(ValueError, match="RGB"):
        op.head_conv(features(1, 4, 5, 5, torch.float32, False), *weights((8, 3, 3, 3), (8,), dtype=torch.float32),
                     MEAN, 127.5)
    with pytest.raises(ValueError, match="scale"):
        op.tail_shuffle(x, image(1, 5, 5, torch.float32), *weights((12, 8, 3, 3), (12,), (12, 3, 5, 5), (12,),
                                                                    dtype=torch.float32), MEAN, 127.5, 5)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", [b for b in ops.BACKENDS if b != "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_1080p_parity_gpu(backend, dtype):
    """960x540 input (1080p output at x2), the preset's widths; TF32 off for the reference."""
    require_gpu_backend(backend)
    x = features(1, 32, 540, 960, dtype, True)
    args = [x] + weights((192, 32, 1, 1), (192,), (25, 192, 1, 1), (25,), (32, 25, 3, 3), (32,), dtype=dtype) + [1.0]
    check(backend, "wdsr_b_block", args, dtype)
    for scale in (2, 3, 4):
        o = 3 * scale**2
        args = [x, image(1, 540, 960, dtype)] + weights((o, 32, 3, 3), (o,), (o, 3, 5, 5), (o,), dtype=dtype) + [
            MEAN.to(DEVICE), 127.5, scale]
        check(backend, "tail_shuffle", args, dtype)


@pytest.mark.gpu
def test_fp32_follows_the_tf32_setting_gpu():
    """fp32 Triton dots follow cuDNN's TF32 setting (``torch.backends.cudnn.allow_tf32``, PyTorch's default on): IEEE
    with it off (the poison fixture's setting), TF32 with it on, where the error stays under 5e-3: TF32 rounds both
    operands of each of the three chained dots to 10 mantissa bits (2^-11, 4.9e-4, each), and the measure is the
    largest error over the whole map (2.1e-3 measured on an H100)."""
    require_gpu_backend("triton")
    x = features(2, 32, 37, 45, torch.float32, True)
    args = [x] + weights((192, 32, 1, 1), (192,), (25, 192, 1, 1), (25,), (32, 25, 3, 3), (32,),
                         dtype=torch.float32) + [1.0]
    ref = reference.wdsr_b_block(*[a.double() if isinstance(a, torch.Tensor) else a for a in args])
    block = ops.get_backend("triton").wdsr_b_block
    assert rel_error(block(*args), ref) < 1e-5
    torch.backends.cudnn.allow_tf32 = True  # the poison fixture restores it
    err = rel_error(block(*args), ref)
    assert 1e-6 < err < 5e-3, f"tf32: relative error {err:.2e}"  # above 1e-6: TF32 was used


@pytest.fixture()
def small_chunks(monkeypatch):
    """The torch backend's WDSR-B block in chunks of 7 pixels: many chunks, the last one partial."""
    from wdsr_fast.ops import torch_backend

    monkeypatch.setattr(torch_backend, "CPU_CHUNK_PIXELS", 7)
    return torch_backend


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_torch_backend_block_in_chunks(small_chunks, dtype, channels_last):
    """The chunked 1x1 convs of the torch backend (CPU) against the reference; 2 x 9 x 13 = 234 pixels = 33 chunks of 7
    and one of 3."""
    if DEVICE != "cpu":
        pytest.skip("the 1x1 convs run in chunks on CPU only")
    args = [features(2, 8, 9, 13, dtype, channels_last)] + weights(
        (48, 8, 1, 1), (48,), (6, 48, 1, 1), (6,), (8, 6, 3, 3), (8,), dtype=dtype) + [0.7]
    out = check("torch", "wdsr_b_block", args, dtype)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_poison_catches_a_missed_chunk(small_chunks, monkeypatch):
    """A chunk left out of the torch backend's block shows as NaN (the poison reaches its buffers). The chunks are
    the backend's CPU path: the tensors are on the CPU wherever the suite runs."""
    chunks = small_chunks._chunks
    monkeypatch.setattr(small_chunks, "_chunks", lambda total, chunk: list(chunks(total, chunk))[:-1])
    args = [features(1, 8, 5, 6, torch.float32, True)] + weights(
        (48, 8, 1, 1), (48,), (6, 48, 1, 1), (6,), (8, 6, 3, 3), (8,), dtype=torch.float32)
    args = [a.cpu() for a in args] + [1.0]
    assert torch.isnan(small_chunks.wdsr_b_block(*args)).any()
