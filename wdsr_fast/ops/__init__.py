"""The fused ops and the registry that picks a backend for them.

Every backend provides the same four ops with the signatures of ``reference.py``:

    head_conv, wdsr_a_block, wdsr_b_block, tail_shuffle

- ``"torch"``: ``reference.py`` itself (plain PyTorch on folded weights); runs anywhere.
- ``"triton"``: ``triton_backend.py``, Triton kernels registered as ``torch.ops.wdsr_triton.*``;
  CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``.
- ``"cuda"``: ``cuda_backend.py``, the CUDA C++ kernels of ``csrc/`` (``torch.ops.wdsr_cuda.*``).
- ``"cpu"``: ``cpu_backend.py``, the fused C++ CPU kernels of ``csrc/cpu/`` (``torch.ops.wdsr_cpu.*``); float32.

``get_backend(name)`` returns a module-like object holding the four ops; ``unavailable_reason(name,
device, config)`` says why a backend cannot run a model of ``config`` on a device (None when it can);
``pick_backend(device, config)`` is the fastest that can.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import torch

from . import reference

POISON_ENV = "WDSR_FAST_POISON_OUTPUTS"  # "1": every backend NaN-fills outputs before its kernels write (tests)
OP_NAMES = ("head_conv", "wdsr_a_block", "wdsr_b_block", "tail_shuffle")
BACKENDS = ("cuda", "triton", "cpu", "torch")  # fastest first
_MODULES = {"triton": "triton_backend", "cuda": "cuda_backend", "cpu": "cpu_backend"}
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


def register_fakes(namespace: str) -> None:
    """Fake (meta) implementations of the four ops of ``namespace``, for torch.compile and opcheck."""

    def features_like(x: torch.Tensor, channels: int) -> torch.Tensor:
        n, _, h, w = x.shape
        return torch.empty((n, channels, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)

    torch.library.register_fake(f"{namespace}::head_conv")(
        lambda image, weight, bias, mean, norm_scale: features_like(image, weight.shape[0]))
    torch.library.register_fake(f"{namespace}::wdsr_a_block")(
        lambda x, w_expand, b_expand, w_reduce, b_reduce, res_scale: features_like(x, x.shape[1]))
    torch.library.register_fake(f"{namespace}::wdsr_b_block")(
        lambda x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv, res_scale: features_like(x, x.shape[1]))
    torch.library.register_fake(f"{namespace}::tail_shuffle")(
        lambda features, image, w_tail, b_tail, w_skip, b_skip, mean, norm_scale, scale: features.new_empty(
            (features.shape[0], 3, features.shape[2] * scale, features.shape[3] * scale)))


def pick_backend(device: torch.device | str, config=None) -> str:
    """The fastest backend that can run on ``device`` (a model of ``config``, when given)."""
    device = torch.device(device)
    for name in BACKENDS:
        if device.type != "cuda" and name == "triton":
            continue  # the Triton interpreter runs on CPU but is a correctness tool, not a speed path
        if unavailable_reason(name, device, config) is None:
            return name
    return "torch"
