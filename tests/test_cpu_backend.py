"""The fused C++ CPU backend (csrc/cpu/, ``torch.ops.wdsr_cpu.*``) against the float64 reference.

Every op, on every instruction-set path this machine runs (``WDSR_FAST_CPU_ISA``; WDSR-A blocks on each way
``WDSR_FAST_CPU_BLOCK_A`` runs them: direct or Winograd convolutions, oneDNN; WDSR-B blocks with their 3x3 direct
or on Winograd, oneDNN, ``WDSR_FAST_CPU_BLOCK_B``), with 1 and 2 threads, on
odd sizes (1-pixel-wide and 1-row images, widths that are not multiples of any vector width, maps wider than a
column chunk, bands of rows), batch 2, NCHW and channels_last inputs, the WDSR-B width of the presets and a
narrower one, outputs poisoned with NaN first. Error: max |out - ref| / max |ref| below 1e-5 (float32). bfloat16
(where the CPU has AVX512-BF16): the same cases against float64 on the same bf16 values, an error at most that of
torch's own bf16 ops on the same input (both roughly 1e-2: bf16 keeps 8 significant bits).
The halo logic is also run through a ctypes harness with narrow column chunks, where deliberately broken
copies of the kernel source must fail the same check.
"""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from wdsr_fast import FastWDSR, ops
from wdsr_fast.model import WDSR
from wdsr_fast.ops import cpu_backend, reference

pytestmark = pytest.mark.skipif(cpu_backend.LOAD_ERROR is not None, reason=str(cpu_backend.LOAD_ERROR))

TOLERANCE = 1e-5
MEAN = torch.tensor([114.4, 111.5, 103.0])
ISAS = list(cpu_backend.isa_paths())
KERNEL_DIR = Path(__file__).resolve().parents[1] / "csrc" / "cpu"
HARNESS = Path(__file__).resolve().parent / "cpu_harness" / "block_b.cpp"
WINOGRAD_HARNESS = Path(__file__).resolve().parent / "cpu_harness" / "block_a_winograd.cpp"


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setenv(ops.POISON_ENV, "1")


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    monkeypatch.setenv(cpu_backend.ISA_ENV, request.param)
    return request.param


@pytest.fixture(params=[1, 2])
def threads(request):
    saved = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(saved)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert out.shape == ref.shape
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


def randn(*shape, seed, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def block_b_weights(c, expansion, low_rank, seed=0):
    wide, rank = c * expansion, int(c * low_rank)
    shapes = [(wide, c, 1, 1), (wide,), (rank, wide, 1, 1), (rank,), (c, rank, 3, 3), (c,)]
    return [randn(*s, seed=seed + i, scale=0.3 if len(s) > 1 else 0.1) for i, s in enumerate(shapes)]


def image(n, h, w, seed=2):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255


def layout(t, channels_last):
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()


def check(name, args):
    out = getattr(cpu_backend, name)(*args)
    ref = getattr(reference, name)(*[a.double() if isinstance(a, torch.Tensor) else a for a in args])
    assert out.dtype == torch.float32
    assert not torch.isnan(out).any(), "an output element was never written"
    err = rel_error(out, ref)
    assert err < TOLERANCE, f"{name}: relative error {err:.2e}"
    return out


# How a WDSR-B block can run (WDSR_FAST_CPU_BLOCK_B): the fused kernel with its 3x3 direct (block_b.h) or on Winograd
# F(2x2, 3x3) (block_b_winograd.h), or oneDNN's convolutions where torch has oneDNN; the default of each path (float32
# by instruction set, and bf16): the fastest measured there
B_BLOCK_PATHS = ["direct", "winograd"] + (["onednn"] if torch.backends.mkldnn.is_available() else [])
DEFAULT_B_BLOCK_PATHS = {"avx512": "winograd", "avx2": "winograd", "generic": "winograd", "bf16": "winograd"}


@pytest.fixture(params=B_BLOCK_PATHS)
def b_block_path(request, monkeypatch):
    monkeypatch.setenv(cpu_backend.BLOCK_B_ENV, request.param)
    return request.param


# bf16 WDSR-B blocks run these ways too: on AMX tiles (block_b_amx.h) where the CPU has AMX-BF16
B_BF16_BLOCK_PATHS = B_BLOCK_PATHS + (["amx"] if cpu_backend.amx() else [])


@pytest.fixture(params=B_BF16_BLOCK_PATHS)
def b_bf16_block_path(request, monkeypatch):
    monkeypatch.setenv(cpu_backend.BLOCK_B_ENV, request.param)
    return request.param


# n, c, h, w: odd sizes; 1 pixel wide; 1 row; wider than a column chunk (512); three chunks and two bands of rows
BLOCK_SHAPES = [(2, 32, 9, 13), (1, 32, 17, 1), (2, 32, 1, 30), (1, 32, 5, 530), (1, 32, 7, 1100)]
WIDTHS = [(6, 0.8), (4, 0.8)]  # (expansion, low_rank): the presets' WDSR-B and a narrower block


@pytest.mark.parametrize("shape", BLOCK_SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_wdsr_b_block(isa, threads, b_block_path, shape, channels_last):
    x = layout(randn(*shape, seed=1), channels_last)
    y = check("wdsr_b_block", [x, *block_b_weights(shape[1], 6, 0.8), 0.7])
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("c, expansion, low_rank", [(24, 4, 0.8), (8, 6, 0.8), (40, 3, 0.5)])
def test_wdsr_b_block_other_widths(isa, threads, b_block_path, c, expansion, low_rank):
    """Channel counts that are not multiples of the vector widths (24, 40; low ranks 19, 6, 20)."""
    x = randn(2, c, 11, 19, seed=3)
    check("wdsr_b_block", [x, *block_b_weights(c, expansion, low_rank), 1.0])


# How the float32 WDSR-A block op can run (WDSR_FAST_CPU_BLOCK_A): the fused kernel on direct convolutions
# (block_a.h) or on Winograd F(2x2, 3x3) ones (block_a_winograd.h), or oneDNN's convolutions where torch has oneDNN
A_BLOCK_PATHS = ["fused", "winograd"] + (["onednn"] if torch.backends.mkldnn.is_available() else [])
# The default of each instruction-set path: the fastest measured there (KernelTable::a_block_default)
DEFAULT_A_BLOCK_PATHS = {"avx512": "winograd", "avx2": "winograd", "generic": "onednn"}


@pytest.fixture(params=A_BLOCK_PATHS)
def a_block_path(request, monkeypatch):
    monkeypatch.setenv(cpu_backend.BLOCK_A_ENV, request.param)
    return request.param


# bf16 WDSR-A blocks run these ways too: on AMX tiles (block_a_amx.h) where the CPU has AMX-BF16
A_BF16_BLOCK_PATHS = A_BLOCK_PATHS + (["amx"] if cpu_backend.amx() else [])


@pytest.fixture(params=A_BF16_BLOCK_PATHS)
def a_bf16_block_path(request, monkeypatch):
    monkeypatch.setenv(cpu_backend.BLOCK_A_ENV, request.param)
    return request.param


# n, c, h, w: odd sizes, 1 row, 1 column, two bands of rows on 2 threads (one of an odd number of rows), two column
# chunks (direct: 256 columns at most) or three (Winograd: 128), chunks of an odd width (261: 131 + 130 direct, 87 x 3
# Winograd); channel counts that are not multiples of the register blocks (AVX2: 32 output channels), of the
# input-channel blocks (16) nor of the vector widths: c 12 and 20, wide 40 and 72; batch 3
@pytest.mark.parametrize("shape, wide", [((2, 32, 9, 13), 128), ((1, 24, 1, 7), 96), ((1, 32, 7, 13), 128),
                                         ((1, 32, 4, 300), 128), ((1, 12, 6, 37), 40), ((3, 20, 5, 11), 72),
                                         ((1, 16, 9, 1), 48), ((1, 16, 5, 261), 48)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_wdsr_a_block(isa, threads, a_block_path, shape, wide, channels_last):
    c = shape[1]
    x = layout(randn(*shape, seed=1), channels_last)
    w = [randn(wide, c, 3, 3, seed=4, scale=0.1), randn(wide, seed=5, scale=0.1),
         randn(c, wide, 3, 3, seed=6, scale=0.05), randn(c, seed=7, scale=0.1)]
    y = check("wdsr_a_block", [x, *w, 0.5])
    assert y.is_contiguous(memory_format=torch.channels_last)


def a_block_run(monkeypatch, isa, path):
    """One WDSR-A block on `isa` with WDSR_FAST_CPU_BLOCK_A=`path` (None: unset): its output and how many oneDNN
    convolutions it ran."""
    monkeypatch.setenv(cpu_backend.ISA_ENV, isa)
    if path is None:
        monkeypatch.delenv(cpu_backend.BLOCK_A_ENV, raising=False)
    else:
        monkeypatch.setenv(cpu_backend.BLOCK_A_ENV, path)
    x = layout(randn(1, 8, 5, 7, seed=1), True)
    w = [randn(16, 8, 3, 3, seed=2), randn(16, seed=3), randn(8, 16, 3, 3, seed=4), randn(8, seed=5)]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = cpu_backend.wdsr_a_block(x, *w, 0.5)
    names = [event.name for event in prof.events()]
    assert "aten::relu_" not in names and "aten::conv2d" not in names
    return out, names.count("mkldnn::_convolution_pointwise")


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
def test_wdsr_a_block_path_by_instruction_set(monkeypatch):
    """The Winograd kernel with AVX-512 and AVX2 (measured fastest there), oneDNN's convolutions with the ReLU and
    the residual as post-ops on the portable path; WDSR_FAST_CPU_BLOCK_A overrides it (the parity tests above run
    every path). The default's output is that of the path it names, bit for bit, and not that of the other fused
    kernel."""
    for isa in ISAS:
        runs = {path: a_block_run(monkeypatch, isa, path) for path in A_BLOCK_PATHS}
        assert {path: convs for path, (_, convs) in runs.items()} == {"fused": 0, "winograd": 0, "onednn": 2}
        default, convs = a_block_run(monkeypatch, isa, None)
        expected = DEFAULT_A_BLOCK_PATHS[isa]
        assert convs == runs[expected][1] and torch.equal(default, runs[expected][0]), isa
        assert not torch.equal(runs["fused"][0], runs["winograd"][0])


def test_wdsr_a_block_path_must_be_known(monkeypatch):
    monkeypatch.setenv(cpu_backend.BLOCK_A_ENV, "fft")
    x = randn(1, 8, 5, 7, seed=1)
    w = [randn(16, 8, 3, 3, seed=2), randn(16, seed=3), randn(8, 16, 3, 3, seed=4), randn(8, seed=5)]
    with pytest.raises(ValueError, match=r"WDSR_FAST_CPU_BLOCK_A=fft is not a way this CPU and build run WDSR-A "
                                         r"blocks on float32 features; choose one of: fused, winograd, (onednn, )?"
                                         r"fastest$"):
        cpu_backend.wdsr_a_block(x, *w, 0.5)


@pytest.mark.parametrize("hw", [(9, 13), (1, 5), (17, 1), (6, 40)])
@pytest.mark.parametrize("c", [32, 24])
@pytest.mark.parametrize("channels_last", [False, True])
def test_head_conv(isa, threads, hw, c, channels_last):
    img = layout(image(2, *hw), channels_last)
    out = check("head_conv", [img, randn(c, 3, 3, 3, seed=8, scale=0.3), randn(c, seed=9, scale=0.1), MEAN, 127.5])
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(2, 32, 9, 11), (1, 24, 1, 7), (1, 32, 13, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_tail_shuffle(isa, threads, scale, shape, channels_last):
    n, c, h, w = shape
    o = 3 * scale**2
    feats = layout(randn(*shape, seed=1), channels_last)
    img = layout(image(n, h, w), channels_last)
    weights = [randn(o, c, 3, 3, seed=10, scale=0.3), randn(o, seed=11, scale=0.1),
               randn(o, 3, 5, 5, seed=12, scale=0.3), randn(o, seed=13, scale=0.1)]
    out = check("tail_shuffle", [feats, img, *weights, MEAN, 127.5, scale])
    assert out.shape == (n, 3, h * scale, w * scale) and out.is_contiguous()


def test_strided_image(isa):
    """The head and the tail read the image through its strides (here a flipped, every-other-column view)."""
    img = image(1, 9, 26).flip(2)[..., ::2]
    check("head_conv", [img, randn(32, 3, 3, 3, seed=8, scale=0.3), randn(32, seed=9, scale=0.1), MEAN, 127.5])
    weights = [randn(12, 32, 3, 3, seed=10, scale=0.3), randn(12, seed=11), randn(12, 3, 5, 5, seed=12),
               randn(12, seed=13)]
    check("tail_shuffle", [randn(1, 32, 9, 13, seed=1), img, *weights, MEAN, 127.5, 2])


def test_thread_count_does_not_change_the_result(isa, b_block_path):
    """Bands of rows change with the thread count; each pixel's arithmetic must not."""
    x = randn(1, 32, 21, 37, seed=1)
    w = block_b_weights(32, 6, 0.8)
    saved = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(cpu_backend.wdsr_b_block(x, *w, 1.0))
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(outs[0], outs[1])


def whole_model_errors(variant, scale):
    """FastWDSR on the cpu backend (backend "cpu" and "auto") against the reference model run in float64: the
    relative error of each."""
    kwargs = dict(n_feats=32, block_feats=128) if variant == "a" else dict(n_feats=32, expansion=6, low_rank=0.8)
    model = WDSR(variant=variant, scale=scale, n_resblocks=3, res_scale=0.5, **kwargs).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial weights, biases and weight-norm gains
        for p in model.parameters():
            p.copy_(p + torch.randn(p.shape, generator=gen) * 0.05)
    img = image(2, 11, 14)
    errors = {}
    with torch.inference_mode():
        expected = WDSR.from_config(model.config).double().eval()
        expected.load_state_dict(model.state_dict())
        ref = expected(img.double())
        for backend in ("cpu", "auto"):
            fast = FastWDSR.from_reference(model, backend=backend).eval()
            out = fast(layout(img, variant == "b"))
            assert fast.last_backend == "cpu"
            assert not torch.isnan(out).any()
            errors[backend] = rel_error(out, ref)
    return errors


@pytest.mark.parametrize("variant, scale", [("b", 2), ("b", 3), ("b", 4), ("a", 2)])
def test_whole_model(isa, threads, variant, scale):
    """FastWDSR on the cpu backend against the reference model run in float64."""
    errors = whole_model_errors(variant, scale)
    assert max(errors.values()) < TOLERANCE, f"relative errors {errors}"


def test_whole_model_wdsr_b_block_paths(isa, threads, b_block_path):
    errors = whole_model_errors("b", 2)
    assert max(errors.values()) < TOLERANCE, f"relative errors {errors}"


def b_block_runs(monkeypatch, dtype):
    """One WDSR-B block run each way and with WDSR_FAST_CPU_BLOCK_B unset (None)."""
    x = randn(1, 32, 9, 37, seed=1).to(dtype)
    w = [t.to(dtype) for t in block_b_weights(32, 6, 0.8)]
    runs = {}
    for path in (None, *B_BLOCK_PATHS):
        if path is None:
            monkeypatch.delenv(cpu_backend.BLOCK_B_ENV, raising=False)
        else:
            monkeypatch.setenv(cpu_backend.BLOCK_B_ENV, path)
        runs[path] = cpu_backend.wdsr_b_block(x, *w, 0.7)
    return runs


def test_wdsr_b_block_path_by_instruction_set(monkeypatch):
    """The default's output is that of the path it names for each instruction set, bit for bit, and not the
    other's."""
    for isa in ISAS:
        monkeypatch.setenv(cpu_backend.ISA_ENV, isa)
        runs = b_block_runs(monkeypatch, torch.float32)
        assert torch.equal(runs[None], runs[DEFAULT_B_BLOCK_PATHS[isa]]), isa
        assert not torch.equal(runs["direct"], runs["winograd"]), isa


def test_wdsr_b_block_path_must_be_known(monkeypatch):
    monkeypatch.setenv(cpu_backend.BLOCK_B_ENV, "fft")
    w = block_b_weights(8, 6, 0.8)
    with pytest.raises(ValueError, match=r"WDSR_FAST_CPU_BLOCK_B=fft is not a way this CPU and build run WDSR-B "
                                         r"blocks on float32 features; choose one of: direct, winograd, (onednn, )?"
                                         r"fastest$"):
        cpu_backend.wdsr_b_block(randn(1, 8, 5, 7, seed=1), *w, 1.0)
    monkeypatch.setenv(cpu_backend.BLOCK_B_ENV, "amx")  # bfloat16 features only
    with pytest.raises(ValueError, match=r"WDSR_FAST_CPU_BLOCK_B=amx is not a way this CPU and build run WDSR-B "
                                         r"blocks on float32 features"):
        cpu_backend.wdsr_b_block(randn(1, 8, 5, 7, seed=1), *w, 1.0)


@pytest.mark.parametrize("variant", ["a", "b"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fastest_races_the_ways_at_the_first_call(monkeypatch, variant, dtype):
    """WDSR_FAST_CPU_BLOCK_A / _B=fastest: the first call of at least 64 x 64 pixels runs every way offered, records
    their times and their outputs' differences from the default's, and returns the chosen way's output, bit for bit;
    later calls run that way without racing again, until forget_races()."""
    if dtype == torch.bfloat16 and cpu_backend.bf16_isa() is None:
        pytest.skip("this CPU or build runs no bf16 kernels")
    env, ways = ((cpu_backend.BLOCK_A_ENV, A_BF16_BLOCK_PATHS if dtype == torch.bfloat16 else A_BLOCK_PATHS)
                 if variant == "a" else
                 (cpu_backend.BLOCK_B_ENV, B_BF16_BLOCK_PATHS if dtype == torch.bfloat16 else B_BLOCK_PATHS))
    op = getattr(cpu_backend, f"wdsr_{variant}_block")
    small, x = randn(1, 16, 9, 21, seed=1).to(dtype), randn(1, 16, 64, 67, seed=1).to(dtype)
    w = ([randn(32, 16, 3, 3, seed=2, scale=0.1), randn(32, seed=3, scale=0.1), randn(16, 32, 3, 3, seed=4, scale=0.05),
          randn(16, seed=5, scale=0.1)] if variant == "a" else block_b_weights(16, 6, 0.8))
    w = [t.to(dtype) for t in w]
    key = f"WDSR-{variant.upper()} {'bfloat16' if dtype == torch.bfloat16 else 'float32'}: {' '.join(ways)}"
    cpu_backend.forget_races()
    monkeypatch.setenv(env, "fastest")
    op(small, *w, 0.7)  # under 64 x 64 pixels: the default way, no race
    assert cpu_backend.races() == {}
    raced = op(x, *w, 0.7)
    assert list(cpu_backend.races()) == [key]
    chosen, ms, difference = cpu_backend.races()[key]
    assert chosen in ways and list(ms) == ways and list(difference) == ways and all(t > 0 for t in ms.values())
    assert max(difference.values()) < (2e-2 if dtype == torch.bfloat16 else 1e-5) and min(difference.values()) == 0
    again = op(x, *w, 0.7)
    monkeypatch.setenv(env, chosen)
    assert torch.equal(raced, op(x, *w, 0.7)) and torch.equal(again, raced)
    assert cpu_backend.races()[key] == (chosen, ms, difference)  # not raced again
    cpu_backend.forget_races()
    assert cpu_backend.races() == {}


def test_the_default_races_only_unmeasured_ways(monkeypatch):
    """Unset, WDSR_FAST_CPU_BLOCK_B runs the way measured fastest on the path, raced at the first call only where
    the CPU has AMX, against the AMX kernel and oneDNN's convolutions (their speeds not yet measured by our races)."""
    monkeypatch.delenv(cpu_backend.BLOCK_B_ENV, raising=False)
    cpu_backend.forget_races()
    w, x = block_b_weights(16, 6, 0.8), randn(1, 16, 64, 64, seed=1)
    cpu_backend.wdsr_b_block(x, *w, 1.0)
    assert cpu_backend.races() == {}
    if cpu_backend.bf16_isa() is not None:
        cpu_backend.wdsr_b_block(x.bfloat16(), *[t.bfloat16() for t in w], 1.0)
        raced = {"WDSR-B bfloat16: winograd onednn amx"} if cpu_backend.amx() else set()
        assert set(cpu_backend.races()) == raced
    cpu_backend.forget_races()


def test_whole_model_wdsr_a_block_paths(isa, threads, a_block_path):
    """WDSR-A with its blocks run each way (the Winograd kernel's error accumulates over the blocks)."""
    errors = whole_model_errors("a", 2)
    assert max(errors.values()) < TOLERANCE, f"relative errors {errors}"


def test_registry_picks_cpu_on_cpu_tensors():
    assert ops.pick_backend("cpu") == "cpu"
    assert "CPU tensors" in ops.unavailable_reason("cpu", "meta")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_outputs_reuse_freed_buffers_without_aliasing(dtype):
    """The ops' outputs come from a pool of freed output buffers (csrc/cpu/output_pool.h): a freed output's buffer
    is handed to the next output of its size, never to one while it is alive, and the values are the op's; freed
    buffers of other sizes, however many, do not keep it out of the pool."""
    if dtype == torch.bfloat16 and cpu_backend.bf16_isa() is None:
        pytest.skip("this CPU or build runs no bf16 kernels")
    w = [t.to(dtype) for t in block_b_weights(32, 6, 0.8)]
    for width in range(1, 9):  # freed at once: outputs of sizes this test does not ask for again
        cpu_backend.wdsr_b_block(randn(1, 32, 2, width, seed=2).to(dtype), *w, 1.0)
    # a size no other test uses
    x = randn(1, 32, 13, 17, seed=1).to(dtype).contiguous(memory_format=torch.channels_last)
    first = cpu_backend.wdsr_b_block(x, *w, 1.0)
    second = cpu_backend.wdsr_b_block(x, *w, 1.0)
    assert first.data_ptr() != second.data_ptr()
    freed, expected = first.data_ptr(), first.clone()
    del first
    third = cpu_backend.wdsr_b_block(x, *w, 1.0)
    assert third.data_ptr() == freed
    assert torch.equal(third, expected) and torch.equal(second, expected)


# ---- bfloat16 -------------------------------------------------------------------------------------------------
needs_bf16 = pytest.mark.skipif(cpu_backend.bf16_isa() is None, reason="this CPU or build runs no bf16 kernels")


def check_bf16(name, args):
    """The op on bf16 inputs against float64 on the same values: at most 2x the error of torch's bf16 ops
    (reference.py run in bf16; Winograd's transformed inputs are rounded to bf16 too, which costs up to 1.5x), and
    at most 2e-2."""
    args = [a.bfloat16() if isinstance(a, torch.Tensor) and a is not MEAN else a for a in args]
    out = getattr(cpu_backend, name)(*args)
    ref = getattr(reference, name)(*[a.double() if isinstance(a, torch.Tensor) else a for a in args])
    assert out.dtype == torch.bfloat16
    assert not torch.isnan(out).any(), "an output element was never written"
    err, torch_err = rel_error(out, ref), rel_error(getattr(reference, name)(*args), ref)
    assert err <= 2 * max(torch_err, 1e-3) and err < 2e-2, f"{name}: error {err:.2e} (torch bf16 {torch_err:.2e})"
    return out


@needs_bf16
@pytest.mark.parametrize("shape", BLOCK_SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_wdsr_b_block_bf16(threads, b_bf16_block_path, shape, channels_last):
    x = layout(randn(*shape, seed=1), channels_last)
    y = check_bf16("wdsr_b_block", [x, *block_b_weights(shape[1], 6, 0.8), 0.7])
    assert y.is_contiguous(memory_format=torch.channels_last)


@needs_bf16
@pytest.mark.parametrize("c, expansion, low_rank", [(24, 4, 0.8), (8, 6, 0.8), (40, 3, 0.5)])
def test_wdsr_b_block_bf16_other_widths(threads, b_bf16_block_path, c, expansion, low_rank):
    """An odd low rank (19: a zero channel pads its last pair), channel counts that are not multiples of 16."""
    check_bf16("wdsr_b_block", [randn(2, c, 11, 19, seed=3), *block_b_weights(c, expansion, low_rank), 1.0])


@needs_bf16
@pytest.mark.parametrize("shape, wide", [((2, 32, 9, 13), 128), ((1, 24, 1, 7), 96), ((1, 32, 4, 300), 128),
                                         ((1, 12, 6, 37), 40), ((3, 20, 5, 11), 72)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_wdsr_a_block_bf16(threads, a_bf16_block_path, shape, wide, channels_last):
    c = shape[1]
    x = layout(randn(*shape, seed=1), channels_last)
    w = [randn(wide, c, 3, 3, seed=4, scale=0.1), randn(wide, seed=5, scale=0.1),
         randn(c, wide, 3, 3, seed=6, scale=0.05), randn(c, seed=7, scale=0.1)]
    check_bf16("wdsr_a_block", [x, *w, 0.5])


@needs_bf16
@pytest.mark.parametrize("c, h, w", [(32, 9, 13), (24, 5, 53), (7, 3, 30)])
def test_head_bf16(threads, c, h, w):
    """bf16 features straight from the kernel (an odd channel count: float32 kernels, then rounded)."""
    out = check_bf16("head_conv", [image(2, h, w), randn(c, 3, 3, 3, seed=8, scale=0.3), randn(c, seed=9, scale=0.1),
                                   MEAN, 127.5])
    assert out.is_contiguous(memory_format=torch.channels_last)


@needs_bf16
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_head_and_tail_bf16_convolve_the_image_in_float32(threads, scale):
    """With bf16 features the head and the tail's skip still take the normalised image in float32: with zero
    features every output element is its float64 value rounded to bf16 once (relative error at most 2^-8), where
    the image rounded to bf16 would add up to 2^-7 more."""
    img = image(2, 5, 21).bfloat16()
    head = [randn(32, 3, 3, 3, seed=8, scale=0.3).bfloat16(), randn(32, seed=9, scale=0.1).bfloat16()]
    out_c = 3 * scale * scale
    tail = [torch.zeros(out_c, 32, 3, 3, dtype=torch.bfloat16), randn(out_c, seed=11, scale=0.1).bfloat16(),
            randn(out_c, 3, 5, 5, seed=12, scale=0.3).bfloat16(), randn(out_c, seed=13, scale=0.1).bfloat16()]
    features = torch.zeros(2, 32, 5, 21, dtype=torch.bfloat16)
    for name, args in (("head_conv", [img, *head, MEAN, 127.5]),
                       ("tail_shuffle", [features, img, *tail, MEAN, 127.5, scale])):
        out = getattr(cpu_backend, name)(*args).double()
        ref = getattr(reference, name)(*[a.double() if isinstance(a, torch.Tensor) else a for a in args])
        assert ((out - ref).abs() <= 2.0**-8 * ref.abs() + 1e-6).all(), name


@needs_bf16
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("c, h, w", [(32, 9, 13), (20, 4, 53), (7, 3, 30)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_tail_bf16(threads, scale, c, h, w, channels_last):
    """The tail on bf16 features (its skip on the float32 image), widths past one register block of pixels, an odd
    channel count (float32 kernels on a float32 copy)."""
    out_c = 3 * scale * scale
    weights = [randn(out_c, c, 3, 3, seed=10, scale=0.3), randn(out_c, seed=11, scale=0.1),
               randn(out_c, 3, 5, 5, seed=12, scale=0.3), randn(out_c, seed=13, scale=0.1)]
    features = layout(randn(2, c, h, w, seed=1), channels_last)
    check_bf16("tail_shuffle", [features, image(2, h, w), *weights, MEAN, 127.5, scale])


@needs_bf16
@pytest.mark.parametrize("variant", ["a", "b"])
def test_whole_model_bf16(threads, variant):
    """FastWDSR in bf16 on a CPU with AVX512-BF16: auto picks the CPU kernels; the error at most 2x the torch
    backend's bf16 (the output rounding to bf16 dominates both: half a step of 8 bits at 255 is 2e-3)."""
    kwargs = dict(n_feats=32, block_feats=128) if variant == "a" else dict(n_feats=32, expansion=6, low_rank=0.8)
    model = WDSR(variant=variant, scale=2, n_resblocks=3, res_scale=0.5, **kwargs).eval()
    img = image(2, 11, 14)
    with torch.inference_mode():
        expected = WDSR.from_config(model.config).double().eval()
        expected.load_state_dict(model.state_dict())
        ref = expected(img.bfloat16().double())
        errors = {}
        for backend in ("auto", "torch"):
            fast = FastWDSR.from_reference(model, backend=backend).to(torch.bfloat16).eval()
            out = fast(img.bfloat16())
            assert fast.last_backend == ("cpu" if backend == "auto" else "torch") and out.dtype == torch.bfloat16
            errors[backend] = rel_error(out, ref)
    assert errors["auto"] <= 2 * errors["torch"], errors


@needs_bf16
def test_bf16_wdsr_a_blocks_run_winograd_by_default(monkeypatch):
    """As in float32, the bf16 WDSR-A block runs on Winograd convolutions unless WDSR_FAST_CPU_BLOCK_A says
    otherwise (1.5x the direct bf16 kernel, measured)."""
    x = randn(1, 16, 9, 13, seed=1).bfloat16()
    w = [t.bfloat16() for t in (randn(32, 16, 3, 3, seed=2, scale=0.1), randn(32, seed=3, scale=0.1),
                                randn(16, 32, 3, 3, seed=4, scale=0.05), randn(16, seed=5, scale=0.1))]
    runs = {}
    for path in (None, "winograd", "fused"):
        if path is None:
            monkeypatch.delenv(cpu_backend.BLOCK_A_ENV, raising=False)
        else:
            monkeypatch.setenv(cpu_backend.BLOCK_A_ENV, path)
        runs[path] = cpu_backend.wdsr_a_block(x, *w, 0.5)
    assert torch.equal(runs[None], runs["winograd"]) and not torch.equal(runs["winograd"], runs["fused"])


@needs_bf16
def test_bf16_wdsr_b_block_path(monkeypatch):
    """The bf16 default is the path it names, bit for bit."""
    runs = b_block_runs(monkeypatch, torch.bfloat16)
    assert torch.equal(runs[None], runs[DEFAULT_B_BLOCK_PATHS["bf16"]])
    assert not torch.equal(runs["direct"], runs["winograd"])


@needs_bf16
def test_bf16_kernels_take_even_channel_counts():
    x = randn(1, 9, 5, 5, seed=1).bfloat16()
    with pytest.raises(ValueError, match=r"wdsr_b_block: the bf16 CPU kernels take even channel counts, got 9 "
                                         r"features and 54 wide channels; use float32"):
        cpu_backend.wdsr_b_block(x, *[w.bfloat16() for w in block_b_weights(9, 6, 0.8)], 1.0)
    odd = WDSR(variant="b", scale=2, n_feats=9, n_resblocks=1).config
    assert "even channel counts, this model has n_feats 9" in ops.unavailable_reason("cpu", "cpu", odd, torch.bfloat16)
    assert ops.pick_backend("cpu", odd, torch.bfloat16) == "torch"


def test_float16_on_cpu_runs_the_torch_backend():
    """float16 is no CPU speed path: auto picks the torch backend; an explicit backend="cpu" warns once and falls
    back to it."""
    assert ops.pick_backend("cpu", dtype=torch.float16) == "torch"
    assert ops.unavailable_reason("cpu", "cpu", dtype=torch.float16) == ("the CPU kernels run float32 and bfloat16, "
                                                                         "not torch.float16")
    model = WDSR(variant="b", scale=2, n_feats=8, n_resblocks=1)
    image_16 = (torch.rand(1, 3, 6, 5) * 255).half()
    with torch.inference_mode():
        asked = FastWDSR.from_reference(model, backend="cpu").eval()
        with pytest.warns(UserWarning, match="float32 and bfloat16") as caught:
            out = asked(image_16)
        assert len(caught) == 1 and asked.last_backend == "torch" and out.dtype == torch.float16
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per model
            asked(image_16)
        asked(image_16.float())
        assert asked.last_backend == "cpu"


def test_bf16_without_bf16_kernels_runs_the_torch_backend(monkeypatch):
    """Where the CPU has no AVX512-BF16 (or the build no bf16 kernels) bf16 runs the torch backend, and the reason
    says whether the CPU has bf16 units."""
    monkeypatch.setattr(cpu_backend, "bf16_isa", lambda: None)
    assert ops.pick_backend("cpu", dtype=torch.bfloat16) == "torch"
    reason = ops.unavailable_reason("cpu", "cpu", dtype=torch.bfloat16)
    assert "AVX512-BF16" in reason
    assert ("has no bf16 units" in reason) == (not cpu_backend.bf16_units())


def test_registry_falls_back_with_the_reason(monkeypatch):
    monkeypatch.setattr(cpu_backend, "LOAD_ERROR", "wdsr_fast._cpu is not built (no compiler)")
    assert ops.unavailable_reason("cpu", "cpu") == "wdsr_fast._cpu is not built (no compiler)"
    assert ops.pick_backend("cpu") == "torch"


def test_a_build_without_threads_is_not_picked_where_torch_has_several(monkeypatch):
    assert cpu_backend.THREADED  # this build uses torch's threads
    monkeypatch.setattr(cpu_backend, "THREADED", False)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert "without OpenMP" in ops.unavailable_reason("cpu", "cpu")
        assert ops.pick_backend("cpu") == "torch"
        torch.set_num_threads(1)
        assert ops.pick_backend("cpu") == "cpu"
    finally:
        torch.set_num_threads(saved)


def test_opcheck():
    x = randn(2, 8, 5, 7, seed=1).contiguous(memory_format=torch.channels_last)
    img = image(2, 5, 7)
    cases = {
        "head_conv": (img, randn(8, 3, 3, 3, seed=2), randn(8, seed=3), MEAN, 127.5),
        "wdsr_a_block": (x, randn(16, 8, 3, 3, seed=2), randn(16, seed=3), randn(8, 16, 3, 3, seed=4),
                         randn(8, seed=5), 0.5),
        "wdsr_b_block": (x, *block_b_weights(8, 6, 0.8), 0.5),
        "tail_shuffle": (x, img, randn(27, 8, 3, 3, seed=2), randn(27, seed=3), randn(27, 3, 5, 5, seed=4),
                         randn(27, seed=5), MEAN, 127.5, 3),
    }
    for name, args in cases.items():
        torch.library.opcheck(getattr(torch.ops.wdsr_cpu, name).default, args)


def test_bad_inputs_say_what_is_wrong(monkeypatch):
    x = randn(1, 8, 5, 5, seed=1)
    w = block_b_weights(8, 6, 0.8)
    with pytest.raises(TypeError, match=r"wdsr_b_block: x: expected float32 or bfloat16 \(the CPU kernels compute in "
                                        r"these\), got torch\.float64"):
        cpu_backend.wdsr_b_block(x.double(), *w, 1.0)
    with pytest.raises(TypeError, match=r"b_conv: expected torch\.float32 on cpu like the input, got torch\.float64"):
        cpu_backend.wdsr_b_block(x, *w[:5], w[5].double(), 1.0)
    with pytest.raises(ValueError, match=r"w_reduce: expected shape \[6, 48, 1, 1\], got \[6, 40, 1, 1\]"):
        cpu_backend.wdsr_b_block(x, w[0], w[1], w[2][:, :40], *w[3:], 1.0)
    with pytest.raises(ValueError, match=r"x: empty tensor \[1, 8, 0, 5\]"):
        cpu_backend.wdsr_b_block(x[:, :, :0], *w, 1.0)
    with pytest.raises(ValueError, match="mean must be a"):
        cpu_backend.head_conv(image(1, 5, 5), randn(8, 3, 3, 3, seed=2), randn(8, seed=3), MEAN.double(), 127.5)
    with pytest.raises(ValueError, match=r"image must be \(1, 3, 5, 5\)"):
        cpu_backend.tail_shuffle(x, image(1, 5, 6), randn(12, 8, 3, 3, seed=2), randn(12, seed=3),
                                 randn(12, 3, 5, 5, seed=4), randn(12, seed=5), MEAN, 127.5, 2)
    monkeypatch.setenv(cpu_backend.ISA_ENV, "sse9")
    with pytest.raises(ValueError, match=r"WDSR_FAST_CPU_ISA=sse9 .* choose one of: " + ", ".join(ISAS)):
        cpu_backend.wdsr_b_block(x, *w, 1.0)


# ---- the halo logic through the ctypes harness, and deliberate bugs it must catch ------------------------
HARNESS_FLAGS = {"avx512": ["-DWDSR_CPU_AVX512", "-mavx512f", "-mavx512vl", "-mavx2", "-mfma"],
                 "avx2": ["-DWDSR_CPU_AVX2", "-mavx2", "-mfma"], "generic": ["-DWDSR_CPU_GENERIC"],
                 # the portable path as compilers without GNU vector extensions build it
                 "generic-structs": ["-DWDSR_CPU_GENERIC", "-DWDSR_CPU_NO_VECTOR_EXTENSIONS"],
                 "amx": []}  # the AMX harness defines its instruction set; build_amx_harness passes the flags
# (what the bug breaks, text of block_b.h, its replacement)
MUTANTS = [
    ("left halo column of a chunk", "const int ja = x0 == 0 ? 1 : 0;", "const int ja = 1;"),
    ("right halo column of a chunk", "const int jb = imin(x1 + 1, a.w) - x0 + 1;",
     "const int jb = imin(x1, a.w) - x0 + 1;"),
    ("halo row above a band", "t_row(ctx, n, r0 - 1, x0, x1, ring,", "t_row(ctx, n, -1, x0, x1, ring,"),
    ("ring rotation", "top = (top + 1) % 3;", "top = (top + 2) % 3;"),
    ("last, partial pixel block of a row", "for (int xb = x0; xb < x1; xb += kConvPixels)",
     "for (int xb = x0; xb + kConvPixels <= x1; xb += kConvPixels)"),
]


def build_harness(tmp_path, isa, mutant=None, harness=HARNESS, header="block_b.h", defines=()):
    return ctypes.CDLL(str(compile_harness(tmp_path, isa, mutant, harness, header, defines)))


def compile_harness(tmp_path, isa, mutant=None, harness=HARNESS, header="block_b.h", defines=()):
    """The harness built as a shared library (its path): for `isa`, from the kernel headers or a copy with `mutant`
    (what it breaks, text of `header`, its replacement) applied."""
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the test harness")
    include = KERNEL_DIR
    if mutant is not None:
        include = tmp_path / "mutant"
        shutil.copytree(KERNEL_DIR, include)
        source = (include / header).read_text()
        assert source.count(mutant[1]) == 1, f"mutant {mutant[0]!r}: its text is not in {header} once"
        (include / header).write_text(source.replace(mutant[1], mutant[2]))
    library = tmp_path / f"harness_{isa}.so"
    subprocess.run([compiler, "-std=c++20", "-O1", "-shared", "-fPIC", *HARNESS_FLAGS[isa], *defines, f"-I{include}",
                    str(harness), "-o", str(library)], check=True, capture_output=True)
    return library


def harness_block(lib, x, weights, res_scale, max_chunk_w, threads, winograd=False):
    """wdsr_b_block through the harness (its 3x3 direct, or on Winograd): x (N, C, H, W) -> y (N, C, H, W), NaN where
    nothing was written."""
    n, c, h, w = x.shape
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    y = torch.full_like(nhwc, float("nan"))
    ws = [t.contiguous() for t in weights]
    ptr = ctypes.c_void_p
    lib.harness_wdsr_b_block(*[ptr(t.data_ptr()) for t in [nhwc, *ws]], ctypes.c_float(res_scale),
                             ptr(y.data_ptr()), n, h, w, c, ws[0].shape[0], ws[2].shape[0], max_chunk_w, threads,
                             int(winograd))
    return y.permute(0, 3, 1, 2)


def harness_error(lib, winograd=False):
    """Worst relative error over cases with chunks of 5 and 8 columns and 1, 3 or 4 threads' bands."""
    worst = 0.0
    for shape, chunk, threads in [((2, 16, 11, 23), 8, 4), ((1, 16, 9, 17), 5, 3), ((1, 16, 6, 1), 8, 4),
                                  ((1, 16, 1, 9), 5, 1)]:
        x = randn(*shape, seed=1)
        w = block_b_weights(shape[1], 6, 0.8)
        out = harness_block(lib, x, w, 0.7, chunk, threads, winograd)
        ref = reference.wdsr_b_block(x.double(), *[t.double() for t in w], 0.7)
        worst = max(worst, float("inf") if torch.isnan(out).any() else rel_error(out, ref))
    return worst


@pytest.mark.parametrize("harness_isa", ISAS + ["generic-structs"])
def test_narrow_chunks_through_the_harness(tmp_path, harness_isa):
    lib = build_harness(tmp_path, harness_isa)
    assert harness_error(lib) < TOLERANCE
    assert harness_error(lib, winograd=True) < TOLERANCE


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_deliberate_bugs_are_caught(tmp_path, mutant):
    assert harness_error(build_harness(tmp_path, "generic", mutant)) > TOLERANCE


# (what the bug breaks, text of block_b_winograd.h, its replacement)
WINOGRAD_B_MUTANTS = [
    ("t row below a band", "row <= r1 ? row : -1", "row < r1 ? row : -1"),
    ("last, partial tile of a chunk", "const int tiles = ceil_div(x1 - x0, 2);", "const int tiles = (x1 - x0) / 2;"),
    ("ring of two row pairs", "ring + ((j + 1) & 1) * 2 * row_floats,", "ring + (j & 1) * 2 * row_floats,"),
    ("last, partial vector of tiles", "for (int tv = 0; tv < nt; tv += VW)",
     "for (int tv = 0; tv + VW <= nt; tv += VW)"),
]


@pytest.mark.parametrize("mutant", WINOGRAD_B_MUTANTS, ids=[m[0] for m in WINOGRAD_B_MUTANTS])
def test_winograd_b_deliberate_bugs_are_caught(tmp_path, mutant):
    lib = build_harness(tmp_path, "generic", mutant, header="block_b_winograd.h")
    assert harness_error(lib, winograd=True) > TOLERANCE


# ---- the blocks on AMX tiles through their harness: the tile operations emulated in C++ (any CPU with
# AVX512-BF16 for the epilogues), narrow column chunks, bands, channel counts past one tile, and bugs it must catch
AMX_HARNESS = Path(__file__).resolve().parent / "cpu_harness" / "amx_blocks.cpp"
AMX_FLAGS = ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512bf16", "-mavx2", "-mfma"]
# (n, c, h, w), expansion, low_rank, column chunk, threads planned for: c and the wide and low-rank channels below,
# at and past one tile (32); rows of 1 to 3 GEMM steps of 32 pixels, the last one partial
AMX_B_CASES = [((2, 16, 11, 23), 6, 0.8, 8, 4), ((1, 32, 9, 37), 6, 0.8, 512, 2), ((1, 40, 5, 70), 3, 0.5, 33, 3),
               ((1, 32, 6, 1), 6, 0.8, 8, 4), ((1, 8, 1, 9), 6, 0.8, 5, 1)]
# WDSR-A: (n, c, h, w), wide, threads planned for, with column chunks of 5 or 40 pixels (AMX_A_CHUNKS)
AMX_A_CASES = [((2, 16, 11, 23), 40, 4), ((1, 32, 9, 37), 128, 2), ((1, 40, 6, 70), 72, 3), ((1, 16, 6, 1), 40, 4),
               ((1, 20, 1, 9), 24, 1)]
AMX_A_CHUNKS = (5, 40)
# (what the bug breaks, the header, its text, the replacement)
AMX_MUTANTS = [
    ("left halo column of a chunk", "block_b_amx.h", "const int ja = x0 == 0 ? 1 : 0;", "const int ja = 1;"),
    ("ring rotation", "block_b_amx.h", "top = (top + 1) % 3;", "top = (top + 2) % 3;"),
    ("halo row above a band", "block_b_amx.h", "amx_t_row(ctx, n, r0 - 1, x0, x1, s.ring, s);",
     "amx_t_row(ctx, n, -1, x0, x1, s.ring, s);"),
    ("biases past the first step of the 1x1s", "amx_conv.h",
     "tiles_init_bias(bias, n0);\n  const uint16_t* b0", "tiles_init_bias(bias, 0);\n  const uint16_t* b0"),
    ("second K tile of the reduce", "block_b_amx.h",
     "amx_gemm(s.wide, wide_pad, ctx.b_reduce, ctx.bias_reduce, n0, wide_pad / kTileK, s.c);",
     "amx_gemm(s.wide, wide_pad, ctx.b_reduce, ctx.bias_reduce, n0, 1, s.c);"),
    ("second A tile of the 1x1 GEMM steps", "amx_conv.h",
     "tiles_step(a + kt * kTileK, a + kTileRows * a_ld + kt * kTileK,", "tiles_step(a + kt * kTileK, a + kt * kTileK,"),
    ("the taps' column shift", "amx_conv.h", "rows[dy] + static_cast<int64_t>(col + dx) * ld;",
     "rows[dy] + static_cast<int64_t>(col + 1) * ld;"),
    ("WDSR-A: zero wide columns outside the image", "block_a_amx.h", "if (col >= 0 && col < a.w) {", "if (col >= 0) {"),
    ("WDSR-A: the x ring's rotation", "block_a_amx.h", "return x_ring + (r - r0 + 2) % 3 * x_elems;",
     "return x_ring + (r - r0 + 2) % 2 * x_elems;"),
    ("WDSR-A: the halo row below a band", "block_a_amx.h", "amx_wide_row(ctx, q, x0, x1, x_rows, w_slot(q), c);",
     "amx_wide_row(ctx, q < r1 ? q : -1, x0, x1, x_rows, w_slot(q), c);"),
]


def build_amx_harness(tmp_path, mutant=None, emulated=True, a_chunk=5, sanitize=False):
    """The harness on emulated tiles, or on the CPU's, its WDSR-A column chunks a_chunk wide; mutant: an entry of
    AMX_MUTANTS; sanitize: with AddressSanitizer (then its path, not loaded)."""
    if cpu_backend.bf16_isa() is None:
        pytest.skip("the harness's epilogues need AVX512-BF16, which this CPU or build lacks")
    flags = [*AMX_FLAGS, "-DWDSR_CPU_AMX_EMULATED"] if emulated else [*AMX_FLAGS, "-mamx-tile", "-mamx-bf16"]
    header, change = (mutant[1], (mutant[0], *mutant[2:])) if mutant else ("block_b_amx.h", None)
    (tmp_path / f"chunk{a_chunk}").mkdir()
    library = compile_harness(tmp_path / f"chunk{a_chunk}", "amx", change, AMX_HARNESS, header,
                              ["-O2", f"-DWDSR_CPU_AMX_A_CHUNK={a_chunk}", *flags,
                               *(["-fsanitize=address", "-fno-omit-frame-pointer"] if sanitize else [])])
    return library if sanitize else ctypes.CDLL(str(library))  # a sanitized one runs in a process of its own


def bf16_error_ratio(out, ref, torch_out):
    """out's error against float64 over that of torch's bf16 ops (torch_out), inf where out has NaN."""
    return float("inf") if torch.isnan(out).any() else rel_error(out, ref) / max(rel_error(torch_out, ref), 1e-3)


def amx_harness_error(lib):
    """The worst ratio over AMX_B_CASES and AMX_A_CASES of the harness's error against float64 (on the same bf16
    values) to that of torch's bf16 ops on the same input (inf where an output was never written)."""
    worst = 0.0
    for shape, wide, threads in AMX_A_CASES:
        n, c, h, w = shape
        x = randn(*shape, seed=1).bfloat16()
        ws = [t.bfloat16() for t in (randn(wide, c, 3, 3, seed=4, scale=0.1), randn(wide, seed=5, scale=0.1),
                                     randn(c, wide, 3, 3, seed=6, scale=0.05), randn(c, seed=7, scale=0.1))]
        nhwc = x.permute(0, 2, 3, 1).contiguous()
        y = torch.full_like(nhwc, float("nan"))
        floats = [t.float().contiguous() for t in ws]  # alive during the call
        ptr = ctypes.c_void_p
        lib.harness_wdsr_a_block_amx(*[ptr(t.data_ptr()) for t in [nhwc, *floats]], ctypes.c_float(0.5),
                                     ptr(y.data_ptr()), n, h, w, c, wide, threads)
        ref = reference.wdsr_a_block(x.double(), *[t.double() for t in ws], 0.5)
        worst = max(worst, bf16_error_ratio(y.permute(0, 3, 1, 2), ref, reference.wdsr_a_block(x, *ws, 0.5)))
    for shape, expansion, low_rank, chunk, threads in AMX_B_CASES:
        n, c, h, w = shape
        x = randn(*shape, seed=1).bfloat16()
        ws = [t.bfloat16() for t in block_b_weights(c, expansion, low_rank)]
        nhwc = x.permute(0, 2, 3, 1).contiguous()
        y = torch.full_like(nhwc, float("nan"))
        floats = [t.float().contiguous() for t in ws]
        ptr = ctypes.c_void_p
        lib.harness_wdsr_b_block_amx(*[ptr(t.data_ptr()) for t in [nhwc, *floats]], ctypes.c_float(0.7),
                                     ptr(y.data_ptr()), n, h, w, c, ws[0].shape[0], ws[2].shape[0], chunk, threads)
        ref = reference.wdsr_b_block(x.double(), *[t.double() for t in ws], 0.7)
        worst = max(worst, bf16_error_ratio(y.permute(0, 3, 1, 2), ref, reference.wdsr_b_block(x, *ws, 0.7)))
    return worst


@pytest.mark.parametrize("a_chunk", AMX_A_CHUNKS)
def test_amx_blocks_through_the_harness(tmp_path, a_chunk):
    """At most 2x the error of torch's bf16 ops (as the other bf16 kernels, check_bf16)."""
    assert amx_harness_error(build_amx_harness(tmp_path, a_chunk=a_chunk)) <= 2


@pytest.mark.skipif("amx_bf16" not in cpu_backend.bf16_units(), reason="this CPU has no AMX tiles for bf16")
def test_amx_blocks_through_the_harness_on_tiles(tmp_path):
    lib = build_amx_harness(tmp_path, emulated=False)
    assert lib.harness_amx_permit() == 1
    assert amx_harness_error(lib) <= 2


# Runs both AMX blocks of the harness at argv[1] on every case of argv[2] (a JSON list of [block, n, c, h, w, wide,
# low_rank, chunk, threads]), random inputs: under AddressSanitizer it aborts on any read or write outside a buffer.
AMX_ASAN_RUNNER = """
import ctypes, json, sys
import numpy as np
lib = ctypes.CDLL(sys.argv[1])
rng = np.random.default_rng(0)
def arr(*shape):
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)
def bf16(*shape):  # the upper halves of float32 values
    return (arr(*shape).view(np.uint32) >> 16).astype(np.uint16)
ptr = lambda a: ctypes.c_void_p(a.ctypes.data)
for block, n, c, h, w, wide, low, chunk, threads in json.loads(sys.argv[2]):
    x, y = bf16(n, h, w, c), np.zeros((n, h, w, c), np.uint16)
    if block == "a":
        ws = [arr(wide, c, 3, 3), arr(wide), arr(c, wide, 3, 3), arr(c)]
        lib.harness_wdsr_a_block_amx(ptr(x), *map(ptr, ws), ctypes.c_float(0.5), ptr(y), n, h, w, c, wide, threads)
    else:
        ws = [arr(wide, c), arr(wide), arr(low, wide), arr(low), arr(c, low, 3, 3), arr(c)]
        lib.harness_wdsr_b_block_amx(ptr(x), *map(ptr, ws), ctypes.c_float(0.5), ptr(y), n, h, w, c, wide, low,
                                     chunk, threads)
"""


@pytest.mark.parametrize("a_chunk", AMX_A_CHUNKS)
def test_amx_blocks_stay_inside_their_buffers(tmp_path, a_chunk):
    """The emulated tile loads and stores touch the bytes the tile instructions do (16 rows of 64 bytes at the
    stride): under AddressSanitizer neither block reads or writes outside a buffer."""
    asan = subprocess.run([shutil.which("c++") or "g++", "-print-file-name=libasan.so"], capture_output=True,
                          text=True).stdout.strip()
    if not Path(asan).is_file():
        pytest.skip("the compiler has no AddressSanitizer runtime")
    lib = build_amx_harness(tmp_path, a_chunk=a_chunk, sanitize=True)
    cases = [["a", *shape, wide, 0, 0, threads] for shape, wide, threads in AMX_A_CASES]
    cases += [["b", *shape, int(shape[1] * e), int(shape[1] * r), chunk, threads]
              for shape, e, r, chunk, threads in AMX_B_CASES]
    run = subprocess.run([sys.executable, "-c", AMX_ASAN_RUNNER, str(lib), json.dumps(cases)], capture_output=True,
                         text=True, env={**os.environ, "LD_PRELOAD": asan, "ASAN_OPTIONS": "detect_leaks=0"})
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.parametrize("mutant", AMX_MUTANTS, ids=[m[0] for m in AMX_MUTANTS])
def test_amx_deliberate_bugs_are_caught(tmp_path, mutant):
    assert amx_harness_error(build_amx_harness(tmp_path, mutant)) > 2


# ---- the Winograd WDSR-A block's halo logic through its harness: column chunks of 5 (3 tiles of F(2x2), the last
# one partial; 2 of F(4x4)), bands of rows, and deliberate bugs it must catch ------------------------------------
# (what the bug breaks, text of block_a_winograd.h, its replacement)
WINOGRAD_MUTANTS = [
    ("zero wide columns right of the image", "inside = row_in[i] && col0 + j >= 0 && col0 + j < a.w;",
     "inside = row_in[i] && col0 + j >= 0;"),
    ("zero wide rows outside the image", "rows_in &= row_in[i] = wr + i >= 0 && wr + i < a.h;",
     "rows_in &= row_in[i] = wr + i >= 0;"),
    ("interior tiles of the expand's output", "if (rows_in && col0 >= 0 && col0 + M <= a.w) {",
     "if (rows_in && col0 >= 0 && col0 + M <= a.w + 1) {"),
    ("interior tiles of the expand's input", "if (x_rows_in && xs >= 0 && xs + T <= a.w && lanes >= VW) {",
     "if (x_rows_in && xs >= 0 && xs + T <= a.w + 1 && lanes >= VW) {"),
    ("ring of two row groups", "rows[i] = ring + (i < M ? (j & 1) * slot_features", "rows[i] = ring + (i < M ? 0"),
    ("last, partial tile of a chunk", "const int tiles = ceil_div(x1 - x0, M);", "const int tiles = (x1 - x0) / M;"),
]
WINOGRAD_CASES = [((2, 16, 11, 23), 40, 4), ((1, 12, 9, 17), 24, 3), ((1, 16, 6, 1), 40, 4), ((1, 20, 1, 9), 24, 1),
                  ((1, 16, 8, 10), 40, 2)]  # (n, c, h, w), wide, threads planned for


def winograd_harness_error(lib):
    """Worst relative error of the harness's Winograd WDSR-A block over WINOGRAD_CASES (inf where an output was
    never written)."""
    worst = 0.0
    for shape, wide, threads in WINOGRAD_CASES:
        n, c, h, w = shape
        x = randn(*shape, seed=1)
        ws = [randn(wide, c, 3, 3, seed=4, scale=0.1), randn(wide, seed=5, scale=0.1),
              randn(c, wide, 3, 3, seed=6, scale=0.05), randn(c, seed=7, scale=0.1)]
        nhwc = x.permute(0, 2, 3, 1).contiguous()
        y = torch.full_like(nhwc, float("nan"))
        ptr = ctypes.c_void_p
        lib.harness_wdsr_a_block(*[ptr(t.data_ptr()) for t in [nhwc, *ws]], ctypes.c_float(0.5), ptr(y.data_ptr()),
                                 n, h, w, c, wide, threads)
        out = y.permute(0, 3, 1, 2)
        ref = reference.wdsr_a_block(x.double(), *[t.double() for t in ws], 0.5)
        worst = max(worst, float("inf") if torch.isnan(out).any() else rel_error(out, ref))
    return worst


def build_winograd_harness(tmp_path, isa, m=2, mutant=None):
    return build_harness(tmp_path, isa, mutant, WINOGRAD_HARNESS, "block_a_winograd.h",
                         ["-DWDSR_CPU_WINOGRAD_CHUNK=5", f"-DWDSR_CPU_WINOGRAD_M={m}"])


@pytest.mark.parametrize("harness_isa, m", [(isa, 2) for isa in ISAS] + [("generic", 4)])
def test_winograd_narrow_chunks_through_the_harness(tmp_path, harness_isa, m):
    """F(2x2, 3x3), the tile size built, on every path; F(4x4, 3x3) (measured, not built: see block_a_winograd.h)
    on the portable one."""
    assert winograd_harness_error(build_winograd_harness(tmp_path, harness_isa, m)) < TOLERANCE


@pytest.mark.parametrize("mutant", WINOGRAD_MUTANTS, ids=[m[0] for m in WINOGRAD_MUTANTS])
def test_winograd_deliberate_bugs_are_caught(tmp_path, mutant):
    assert winograd_harness_error(build_winograd_harness(tmp_path, "generic", mutant=mutant)) > TOLERANCE
