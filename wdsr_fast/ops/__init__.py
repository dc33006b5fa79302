"""The fused ops and the registry of backends that run them.

Every backend is one module with the same small interface:

    NAME                                  its name in the registry ("cuda", "triton", "cpu", "torch")
    unavailable_reason(device, config, dtype)
                                          None if it can run a model of ``config`` (a WDSRConfig; None: any) on
                                          tensors of ``device`` and ``dtype`` (None: any it runs), else a
                                          sentence saying why not
    head_conv, wdsr_a_block, wdsr_b_block, tail_shuffle
                                          the four ops, with the signatures and semantics of ``reference.py``

- ``"torch"``: ``torch_backend.py``, the op contract in plain PyTorch ops (in place, channels_last, the WDSR-B
  block's 1x1 convs on large CPU maps as chunked matrix products), tested against ``reference.py``; any device.
- ``"triton"``: the ``triton/`` subpackage, Triton kernels registered as ``torch.ops.wdsr_triton.*``.
- ``"cuda"``: ``cuda_backend.py``, the CUDA C++ kernels of ``csrc/cuda/`` (``torch.ops.wdsr_cuda.*``).
- ``"cpu"``: ``cpu_backend.py``, the fused C++ CPU kernels of ``csrc/cpu/`` (``torch.ops.wdsr_cpu.*``); float32, and
  bfloat16 on CPUs with AVX512-BF16.

``REGISTRY`` is data: for each backend, in the order ``auto`` tries them, the module holding it, the device types
whose tensors it takes and the activation dtypes ``auto`` picks it for (where it was measured fastest). The device
rule is written once, here (``device_reason``): a backend takes tensors of its device types; under
``TRITON_INTERPRET=1`` CPU tensors stand in for CUDA ones (the test suite runs the Triton kernels that way, without
a GPU). ``unavailable_reason(name, device, config)`` applies that rule, then the backend's own
``unavailable_reason`` (an extension not built, a model wider than a kernel); ``pick_backend(device, config, dtype)``
returns the first backend that runs natively on the device and is picked for the dtype (never the interpreter, a
correctness tool).

Adding a backend is one new module with the interface above (``cuda_backend.py`` and ``cpu_backend.py`` are the
models for a compiled extension: ``common.load_extension`` loads it, registers the fake implementations and says
why not where it does not load) and one entry in ``REGISTRY``, placed by speed. Backend modules import only
``common.py`` (and their own files) from this package, never this registry, so that there is no import loop.
"""
from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

import torch

from .common import (
    CUDA_BLOCK_ENV,
    CUDA_BLOCK_VARIANTS,
    OP_NAMES,
    POISON_ENV,
    TRITON_BLOCK_ENV,
    TRITON_BLOCK_VARIANTS,
    cuda_block_variant,
    interpreting,
    kernel_settings,
    tf32_convolutions,
    triton_block_variant,
    use_cuda_block_variant,
    use_triton_block_variant,
)

__all__ = ["AUTO", "BACKENDS", "CUDA_BLOCK_ENV", "CUDA_BLOCK_VARIANTS", "DEVICE_TYPES", "OP_NAMES", "POISON_ENV",
           "REGISTRY", "TRITON_BLOCK_ENV", "TRITON_BLOCK_VARIANTS", "cuda_block_variant", "device_reason",
           "get_backend", "kernel_settings", "native", "pick_backend", "preload", "tf32_convolutions",
           "triton_block_variant", "unavailable_reason", "use_cuda_block_variant", "use_triton_block_variant"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """Where a backend lives and what it runs on."""

    module: str  # the module holding its interface, relative to this package
    devices: tuple[str, ...] | None  # device types whose tensors it takes; None: any device PyTorch runs on
    auto_dtypes: tuple[torch.dtype, ...] | None = None  # dtypes pick_backend picks it for; None: every dtype it runs


HALF = (torch.float16, torch.bfloat16)
# The order and dtypes follow the measured timings (benchmarks/README.md, "Where the design numbers come from"):
# in fp16/bf16 Triton, then the CUDA C++ kernels; float32 on a GPU goes to cuDNN (the torch backend).
REGISTRY = {  # in the order pick_backend tries them
    "triton": Entry(".triton", ("cuda",), HALF),
    "cuda": Entry(".cuda_backend", ("cuda",), HALF),
    "cpu": Entry(".cpu_backend", ("cpu",)),
    "torch": Entry(".torch_backend", None),
}
BACKENDS = tuple(REGISTRY)
AUTO = "auto"  # FastWDSR(backend=AUTO) and the commands' --backend auto: pick_backend per call
DEVICE_TYPES = ("cpu", "cuda")  # the devices the commands offer (--device)
_LOADED: dict[str, ModuleType] = {}  # backend name -> its module, once imported


def _entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    return REGISTRY[name]


def _load(name: str) -> ModuleType:
    """Backend ``name``'s module, imported on first use; after that a dict lookup, which torch.compile traces
    (it refuses to trace an import)."""
    if name not in _LOADED:
        _LOADED[name] = importlib.import_module(_entry(name).module, __name__)
    return _LOADED[name]


def preload() -> None:
    """Import every backend that can be imported, so that choosing one later imports nothing."""
    for name in BACKENDS:
        try:
            _load(name)
        except ImportError:
            pass  # unavailable_reason says why, when asked


def native(name: str, device: torch.device | str) -> bool:
    """Whether backend ``name`` runs on ``device``'s tensors by design (not through the Triton interpreter)."""
    devices = _entry(name).devices
    return devices is None or torch.device(device).type in devices


def device_reason(name: str, device: torch.device | str) -> str | None:
    """None if backend ``name`` takes tensors on ``device``, else why not. The one device rule of every backend:
    the device types of its registry entry; under TRITON_INTERPRET=1, CPU tensors stand in for CUDA ones."""
    device = torch.device(device)
    devices = _entry(name).devices
    if devices is None or native(name, device) or (device.type == "cpu" and "cuda" in devices and interpreting()):
        return None
    kinds = " or ".join(d.upper() for d in devices)
    return f"backend {name!r} runs on {kinds} tensors only, got a {device.type.upper()} tensor"


def unavailable_reason(name: str, device: torch.device | str, config=None, dtype: torch.dtype | None = None
                       ) -> str | None:
    """None if backend ``name`` can run on ``device`` (a model of ``config``, a WDSRConfig, and activations of
    ``dtype``, when given), else a sentence saying why not."""
    reason = device_reason(name, device)
    if reason is not None:
        return reason
    try:
        module = _load(name)
    except ImportError as exc:  # e.g. triton not installed
        return f"backend {name!r} cannot be imported: {exc}"
    return module.unavailable_reason(torch.device(device), config, dtype)


def get_backend(name: str) -> ModuleType:
    """The module holding backend ``name``'s ops (raises if it cannot even be imported)."""
    return _load(name)


def pick_backend(device: torch.device | str, config=None, dtype: torch.dtype | None = None) -> str:
    """The fastest backend that runs natively on ``device``, for a model of ``config`` (None: any) with activations
    of ``dtype`` (None: torch's default dtype, float32 unless changed)."""
    dtype = dtype or torch.get_default_dtype()
    for name in BACKENDS:
        picked_for = REGISTRY[name].auto_dtypes
        if (native(name, device) and (picked_for is None or dtype in picked_for)
                and unavailable_reason(name, device, config, dtype) is None):
            return name
    raise RuntimeError(f"no backend runs on {device}")  # unreachable while "torch" runs anywhere
