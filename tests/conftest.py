"""Test set-up: Triton kernels run in the interpreter on CPU tensors when no GPU is visible; the shared fixtures.

TRITON_INTERPRET must be set before any @triton.jit runs, hence here, before wdsr_fast is imported. The shared test
functions are in helpers.py.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from wdsr_fast.ops import POISON_ENV  # noqa: E402  (after TRITON_INTERPRET is set)

torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture()
def poison(monkeypatch):
    """NaN-poisoned outputs (a missed write shows as NaN), and exact fp32 (no TF32) for the references on GPU."""
    monkeypatch.setenv(POISON_ENV, "1")
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
