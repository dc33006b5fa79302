"""The fused ops and the registry that picks a backend for them.

Every backend provides the same four ops with the signatures of ``reference.py``:

    head_conv, wdsr_a_block, wdsr_b_block, tail_shuffle

- ``"torch"``: ``reference.py`` itself (plain PyTorch on folded weights); runs anywhere.
- ``"triton"``: ``triton_backend.py``, Triton kernels registered as ``torch.ops.wdsr_triton.*``;
  CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``.
- ``"cuda"``: ``cuda_backend.py``, the CUDA C++ kernels of ``csrc/`` (``torch.ops.wdsr_cuda.*``).

``get_backend(name)`` returns a module-like object holding the four ops; ``unavailable_reason(name,
device, config)`` says why a backend cannot run a model of ``config`` on a device (None when it can);
``pick_backend(device, config)`` is the fastest that can.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import torch

from . import reference
from .common import OP_NAMES, POISON_ENV

__all__ = ["BACKENDS", "OP_NAMES", "POISON_ENV", "get_backend", "pick_backend", "preload", "unavailable_reason"]
BACKENDS = ("cuda", "triton", "torch")  # fastest first
_MODULES = {"triton": "triton_backend", "cuda": "cuda_backend"}
_LOADED = {"torch": reference}  # backend name -> its module, once imported


def _load(name: str) -> ModuleType:
    """Backend ``name``'s module, imported on first use; after that a dict lookup, which torch.compile traces
    (it refuses to trace an import)."""
    if name not in _LOADED:
        if name not in _MODULES:
            raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
        _LOADED[name] = importlib.import_module(f".{_MODULES[name]}", __name__)
    return _LOADED[name]


def preload() -> None:
    """Import every backend that can be imported, so that choosing one later imports nothing."""
    for name in BACKENDS:
        try:
            _load(name)
        except ImportError:
            pass  # unavailable_reason says why, when asked


def unavailable_reason(name: str, device: torch.device | str, config=None) -> str | None:
    """None if backend ``name`` can run on ``device`` (a model of ``config``, a WDSRConfig, when given), else a
    sentence saying why not."""
    if name == "torch":
        return None
    try:
        module = _load(name)
    except ImportError as exc:  # e.g. triton not installed
        return f"backend {name!r} cannot be imported: {exc}"
    return module.unavailable_reason(torch.device(device), config)


def get_backend(name: str) -> ModuleType:
    """The module holding backend ``name``'s ops (raises if it cannot even be imported)."""
    return _load(name)


def pick_backend(device: torch.device | str, config=None) -> str:
    """The fastest backend that can run on ``device`` (a model of ``config``, when given)."""
    device = torch.device(device)
    for name in BACKENDS:
        if device.type != "cuda" and name != "torch":
            continue  # the Triton interpreter runs on CPU but is a correctness tool, not a speed path
        if unavailable_reason(name, device, config) is None:
            return name
    return "torch"
