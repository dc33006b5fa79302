"""Test set-up: Triton kernels run in the interpreter on CPU tensors when no GPU is visible.

TRITON_INTERPRET must be set before any @triton.jit runs, hence here, before wdsr_fast is imported.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# -- model files in the authors' layouts, and a real photo (export, spandrel and info tests) ----------

def ychfan_keys(state: dict, n_resblocks: int) -> dict:
    """A state_dict of ours in the ychfan/wdsr layout: body.0 head, body.1..n blocks, body.n+1 tail, skip.0."""
    import re

    out = {}
    for key, value in state.items():
        key = key.replace("head.0.", "body.0.").replace("tail.0.", f"body.{n_resblocks + 1}.")
        block = re.match(r"body\.(\d+)\.body\.(.*)", key)
        out[f"body.{int(block.group(1)) + 1}.body.{block.group(2)}" if block else key] = value
    return out


def parametrizations_keys(state: dict) -> dict:
    """A state_dict of ours with the keys torch.nn.utils.parametrizations.weight_norm writes."""
    return {key.replace(".weight_g", ".parametrizations.weight.original0")
               .replace(".weight_v", ".parametrizations.weight.original1"): value for key, value in state.items()}


def photo(height: int, width: int, batch: int = 1) -> torch.Tensor:
    """Crops of scikit-image's astronaut photo, (batch, 3, height, width) float32 in [0, 1]."""
    from skimage import data

    array = data.astronaut()  # (512, 512, 3) uint8
    crops = [array[40 + 37 * i: 40 + 37 * i + height, 150 + 23 * i: 150 + 23 * i + width] for i in range(batch)]
    return torch.stack([torch.from_numpy(c.copy()).permute(2, 0, 1) for c in crops]).float() / 255
