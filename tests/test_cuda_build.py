"""The CUDA extension is built, registers its ops and reports what its kernels take (runs in CI's CUDA-torch venv,
no GPU needed).

Skipped, with the reason, where wdsr_fast._C is not importable (e.g. the CPU venv of the main test run).
"""
import pytest
import torch
from helpers import assert_schema_is_the_reference

from wdsr_fast import WDSR, ops
from wdsr_fast.ops import cuda_backend

pytestmark = pytest.mark.skipif(cuda_backend.LOAD_ERROR is not None, reason=str(cuda_backend.LOAD_ERROR))


@pytest.mark.parametrize("name", ops.OP_NAMES)
def test_registered_with_the_reference_signature(name):
    op = getattr(torch.ops.wdsr_cuda, name).default
    assert op._schema.name == f"wdsr_cuda::{name}"
    assert_schema_is_the_reference(op)


def test_the_persistent_block_kernel_is_the_same_op():
    """wdsr_b_block_persistent, the block on the persistent kernel, takes wdsr_b_block's arguments; the backend's
    wdsr_b_block runs the one $WDSR_FAST_CUDA_BLOCK names."""
    tiled, persistent = torch.ops.wdsr_cuda.wdsr_b_block.default, torch.ops.wdsr_cuda.wdsr_b_block_persistent.default
    assert str(persistent._schema).replace("wdsr_b_block_persistent", "wdsr_b_block") == str(tiled._schema)
    assert cuda_backend.block_op("persistent") is torch.ops.wdsr_cuda.wdsr_b_block_persistent
    assert cuda_backend.block_op("tiled") is torch.ops.wdsr_cuda.wdsr_b_block
    assert cuda_backend.fused_block_shared_bytes(192, torch.float16, "persistent") == 166_016


def test_reports_its_limits():
    """The built module answers what cuda_backend asks: the fused block's widths, the oldest GPU, its shared memory
    (the numbers themselves are checked against the kernels in test_cuda_emulated.py)."""
    limits = cuda_backend._C.limits()
    assert sorted(limits) == ["max_feats", "max_low_rank", "max_wide", "min_compute_capability"]
    assert cuda_backend.unsupported_model(WDSR(variant="b", n_feats=limits["max_feats"]).config) is None
    assert cuda_backend.fused_block_shared_bytes(1) < cuda_backend.fused_block_shared_bytes(limits["max_wide"])
    assert cuda_backend.fused_block_shared_bytes(limits["max_wide"], torch.float32) == 0
    with pytest.raises(ValueError, match="float64"):
        cuda_backend.fused_block_shared_bytes(64, torch.float64)


def test_fake_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 32, 17, 23, dtype=torch.float16, device="cuda")
        image = torch.empty(2, 3, 17, 23, dtype=torch.float16, device="cuda")
        def w(*s):
            return torch.empty(*s, dtype=torch.float16, device="cuda")
        y = torch.ops.wdsr_cuda.wdsr_b_block(x, w(192, 32, 1, 1), w(192), w(25, 192, 1, 1), w(25), w(32, 25, 3, 3),
                                             w(32), 1.0)
        assert y.shape == x.shape and y.is_contiguous(memory_format=torch.channels_last)
        y = torch.ops.wdsr_cuda.wdsr_b_block_persistent(x, w(192, 32, 1, 1), w(192), w(25, 192, 1, 1), w(25),
                                                        w(32, 25, 3, 3), w(32), 1.0)
        assert y.shape == x.shape and y.is_contiguous(memory_format=torch.channels_last)
        mean = torch.empty(3, device="cuda")
        out = torch.ops.wdsr_cuda.tail_shuffle(x, image, w(27, 32, 3, 3), w(27), w(27, 3, 5, 5), w(27), mean, 127.5, 3)
        assert out.shape == (2, 3, 51, 69)


def test_cpu_tensor_is_refused_clearly():
    x = torch.zeros(1, 8, 4, 4)
    with pytest.raises(NotImplementedError, match="wdsr_cuda::wdsr_b_block"):  # no CPU kernel registered
        torch.ops.wdsr_cuda.wdsr_b_block(x, x, x, x, x, x, x, 1.0)


def test_backend_says_it_needs_a_gpu():
    assert "CUDA tensors" in cuda_backend.unavailable_reason(torch.device("cpu"))
