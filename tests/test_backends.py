"""The backend registry: every backend has the same interface, and one device rule decides where each runs."""
import pytest
import torch

from wdsr_fast import ops
from wdsr_fast.model import WDSRConfig


def importable(name):
    try:
        return ops.get_backend(name)
    except ImportError as exc:
        pytest.skip(f"backend {name!r} cannot be imported here: {exc}")


@pytest.mark.parametrize("name", ops.BACKENDS)
def test_every_backend_has_the_same_interface(name):
    module = importable(name)
    assert module.NAME == name
    assert all(callable(getattr(module, op)) for op in ops.OP_NAMES)
    reason = module.unavailable_reason(torch.device("cuda"), WDSRConfig())
    assert reason is None or isinstance(reason, str)


def test_registry_devices_are_what_the_commands_offer():
    assert all(e.devices is None or set(e.devices) <= set(ops.DEVICE_TYPES) for e in ops.REGISTRY.values())
    assert ops.AUTO not in ops.BACKENDS


def test_the_device_rule(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert ops.device_reason("torch", "cpu") is None and ops.device_reason("torch", "meta") is None
    for name in ("triton", "cuda"):
        assert ops.device_reason(name, "cuda") is None
        assert ops.device_reason(name, "cpu") == f"backend {name!r} runs on CUDA tensors only, got a CPU tensor"
        assert not ops.native(name, "cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # CPU tensors stand in for CUDA ones
    assert ops.device_reason("triton", "cpu") is None and ops.device_reason("cuda", "cpu") is None
    assert ops.unavailable_reason("cuda", "cpu") is not None  # the CUDA kernels have no interpreter


def test_auto_never_picks_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert ops.unavailable_reason("triton", "cpu") is None  # it could run...
    assert ops.pick_backend("cpu") == "torch"  # ...but it is a correctness tool, not a speed path


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        ops.unavailable_reason("tpu", "cpu")


def test_cuda_ops_say_why_where_the_extension_does_not_load():
    cuda = ops.get_backend("cuda")
    if cuda.LOAD_ERROR is None:
        pytest.skip("the CUDA extension loads here")
    with pytest.raises(RuntimeError, match="not built"):
        cuda.wdsr_b_block(torch.zeros(1, 8, 4, 4))
