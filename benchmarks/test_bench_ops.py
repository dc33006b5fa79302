"""pytest-benchmark micro-benchmarks of the fused ops on every available backend (not collected by CI:
run `pytest benchmarks/test_bench_ops.py`). GPU sizes: the 960x540 LR frame of a 1080p x2 output."""
import pytest
import torch

from wdsr_fast import FastWDSR, ops, preset

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SIZE = (540, 960) if DEVICE == "cuda" else (64, 64)
BACKENDS = [b for b in ops.BACKENDS if ops.native(b, DEVICE) and ops.unavailable_reason(b, DEVICE) is None]


def sync(fn):
    def run():
        out = fn()
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out
    return run


@pytest.fixture(scope="module")
def folded():
    dtype = torch.float16 if DEVICE == "cuda" else torch.float32
    return FastWDSR.from_reference(preset("wdsr-b-32x16", 2)).folded(torch.device(DEVICE), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wdsr_b_block(benchmark, backend, folded):
    x = torch.randn(1, 32, *SIZE, device=DEVICE, dtype=folded.head[0].dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    op = ops.get_backend(backend).wdsr_b_block
    with torch.inference_mode():
        benchmark(sync(lambda: op(x, *folded.blocks[0], 1.0)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_tail_shuffle(benchmark, backend, folded):
    dtype = folded.head[0].dtype
    x = torch.randn(1, 32, *SIZE, device=DEVICE, dtype=dtype).contiguous(memory_format=torch.channels_last)
    image = torch.rand(1, 3, *SIZE, device=DEVICE, dtype=dtype) * 255
    op = ops.get_backend(backend).tail_shuffle
    with torch.inference_mode():
        benchmark(sync(lambda: op(x, image, *folded.tail, *folded.skip, folded.mean, 127.5, 2)))
