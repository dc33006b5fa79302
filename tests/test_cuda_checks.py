"""The CUDA ops' input validation (csrc/common/checks.h), run without a GPU: built with tests/cuda_emulator/checks.cpp
into a CPU library of torch ops with the same schemas (csrc/common/op_schemas.h, checked here against reference.py's
signatures). Bad inputs raise what the other backends raise (ValueError for
shapes and values, TypeError for dtypes, dtypes named as Python prints them): each case is also run through the
Triton backend, which must raise the same exception type."""
import shutil

import cuda_emulator
import pytest
import torch
from helpers import assert_schema_is_the_reference

from wdsr_fast import ops

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the checks library")
MEAN = torch.tensor([114.4, 111.5, 103.0])


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    return cuda_emulator.build_checks(tmp_path_factory.mktemp("cuda_checks"))


def randn(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(len(shape)), dtype=dtype)


def block_b(x_dtype=torch.float32, **replace):
    """wdsr_b_block's arguments (n_feats 8, wide 48, low-rank 6), with some replaced by name."""
    args = dict(x=randn(1, 8, 5, 6, dtype=x_dtype).contiguous(memory_format=torch.channels_last),
                w_expand=randn(48, 8, 1, 1), b_expand=randn(48), w_reduce=randn(6, 48, 1, 1), b_reduce=randn(6),
                w_conv=randn(8, 6, 3, 3), b_conv=randn(8), res_scale=0.7)
    return list({**args, **replace}.values())


def block_a(**replace):
    args = dict(x=randn(1, 8, 5, 6), w_expand=randn(24, 8, 3, 3), b_expand=randn(24), w_reduce=randn(8, 24, 3, 3),
                b_reduce=randn(8), res_scale=0.7)
    return list({**args, **replace}.values())


def head(**replace):
    args = dict(image=randn(2, 3, 5, 6) * 255, weight=randn(8, 3, 3, 3), bias=randn(8), mean=MEAN, norm_scale=127.5)
    return list({**args, **replace}.values())


def tail(**replace):
    args = dict(features=randn(2, 8, 5, 6), image=randn(2, 3, 5, 6) * 255, w_tail=randn(12, 8, 3, 3),
                b_tail=randn(12), w_skip=randn(12, 3, 5, 5), b_skip=randn(12), mean=MEAN, norm_scale=127.5, scale=2)
    return list({**args, **replace}.values())


@pytest.mark.parametrize("name", ops.OP_NAMES)
def test_schemas_are_the_reference(checks, name):
    assert_schema_is_the_reference(getattr(checks, name).default)


# (op, arguments, exception, words the message must hold)
BAD_INPUTS = {
    "w_conv of the wrong shape": ("wdsr_b_block", lambda: block_b(w_conv=randn(8, 5, 3, 3)), ValueError, "w_conv"),
    "fp16 input, fp32 weights": ("wdsr_b_block", lambda: block_b(torch.float16), TypeError, "torch.float16"),
    "int32 input": ("wdsr_b_block", lambda: block_b(x=torch.zeros(1, 8, 5, 6, dtype=torch.int32)), TypeError,
                    "float32, float16 or bfloat16, got torch.int32"),
    "3-D input": ("wdsr_b_block", lambda: block_b(x=randn(8, 5, 6)), ValueError, "4-D"),
    "empty input": ("wdsr_b_block", lambda: block_b(x=randn(0, 8, 5, 6)), ValueError, "empty"),
    "bias of another dtype": ("wdsr_b_block", lambda: block_b(b_expand=randn(48, dtype=torch.float64)), TypeError,
                              "b_expand"),
    "wdsr_a b_reduce of the wrong shape": ("wdsr_a_block", lambda: block_a(b_reduce=randn(7)), ValueError,
                                           "b_reduce"),
    "4-channel image": ("head_conv", lambda: head(image=randn(2, 4, 5, 6)), ValueError, "RGB"),
    "float64 mean": ("head_conv", lambda: head(mean=MEAN.double()), ValueError, "mean"),
    "scale 5": ("tail_shuffle", lambda: tail(scale=5), ValueError, "scale"),
    "image of another size": ("tail_shuffle", lambda: tail(image=randn(2, 3, 5, 7)), ValueError, "image"),
    "image of another dtype": ("tail_shuffle", lambda: tail(image=randn(2, 3, 5, 6).half()), ValueError, "image"),
    "mean of 4 values": ("tail_shuffle", lambda: tail(mean=torch.zeros(4)), ValueError, "mean"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_raise_what_the_other_backends_raise(checks, case):
    op, make_args, error, words = BAD_INPUTS[case]
    with pytest.raises(error, match=words):
        getattr(checks, op)(*make_args())
    if ops.unavailable_reason("triton", "cpu") is None:
        with pytest.raises(error):
            getattr(ops.get_backend("triton"), op)(*make_args())


def test_image_on_another_device_than_the_features(checks):
    with pytest.raises(ValueError, match="image"):
        checks.tail_shuffle(*tail(image=torch.empty(2, 3, 5, 6, device="meta")))


def test_good_inputs_pass(checks):
    """The checks accept what the op contract allows: any memory format, a strided (3,) mean, every dtype."""
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x = randn(2, 8, 5, 6).to(dtype)
        weights = [w.to(dtype) for w in block_b()[1:7]]
        assert checks.wdsr_b_block(x, *weights, 0.7).shape == x.shape
    assert checks.wdsr_a_block(*block_a()).shape == (1, 8, 5, 6)
    strided_mean = torch.tensor([114.4, 0.0, 111.5, 0.0, 103.0, 0.0])[::2]
    assert checks.head_conv(*head(mean=strided_mean)).shape == (2, 8, 5, 6)
    assert checks.tail_shuffle(*tail(mean=strided_mean, scale=3, w_tail=randn(27, 8, 3, 3), b_tail=randn(27),
                                     w_skip=randn(27, 3, 5, 5), b_skip=randn(27))).shape == (2, 3, 15, 18)
