"""The backend registry: every backend has the same interface, and one device rule decides where each runs."""
import pytest
import torch
from helpers import BACKENDS, assert_schema_is_the_reference, op_args

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
    assert ops.pick_backend("cpu") != "triton"  # ...but it is a correctness tool, not a speed path


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        ops.unavailable_reason("tpu", "cpu")


def test_cuda_ops_say_why_where_the_extension_does_not_load():
    cuda = ops.get_backend("cuda")
    if cuda.LOAD_ERROR is None:
        pytest.skip("the CUDA extension loads here")
    with pytest.raises(RuntimeError, match="not built"):
        cuda.wdsr_b_block(torch.zeros(1, 8, 4, 4))


PLAIN_PYTHON = {"torch"}  # backends whose ops are Python functions over ATen ops, not registered custom ops


def registered_op(backend, op):
    """The torch.ops overload behind ``op`` of ``backend``, or None where it is a plain Python function."""
    fn = getattr(ops.get_backend(backend), op)
    if isinstance(fn, torch.library.CustomOpDef):  # torch.library.custom_op (Triton)
        return fn._opoverload
    if isinstance(fn, torch._ops.OpOverloadPacket):  # TORCH_LIBRARY in C++ (CUDA)
        return fn.default
    return None


@pytest.mark.parametrize("backend", sorted(set(BACKENDS) - PLAIN_PYTHON))
@pytest.mark.parametrize("op", ops.OP_NAMES)
def test_registered_schema_is_the_reference(backend, op):
    """Each registered op's schema has the arguments of reference.py's function: names, order, types."""
    assert_schema_is_the_reference(registered_op(backend, op))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ops.OP_NAMES)
def test_opcheck(backend, op):
    """torch.library.opcheck on every registered op of every backend that runs here (schema, autograd registration,
    fake implementation against the real one, AOT dispatch). The torch backend's ops are plain functions over ATen
    ops: no registration for opcheck to check, and torch.compile traces through them (test_fast.py)."""
    registered = registered_op(backend, op)
    if backend in PLAIN_PYTHON:
        assert registered is None
        pytest.skip(f"backend {backend!r}: {op} is a plain Python function, not a registered op")
    assert registered is not None, f"backend {backend!r}: {op} is not a registered op"
    torch.library.opcheck(registered, tuple(op_args(op)))
