"""What the benchmark times: one case (model, size, batch, dtype), and a row per way of running it.

A row is data (its kind, backend, op and variant, and the label shown) plus ``make``, which builds the callable
to time or raises to skip the row with the reason. Each row kind is one function of a ``Setup`` returning its rows;
``ROW_KINDS`` lists them, in table order. Adding a way to run WDSR (another runtime, another backend) is one such
function and one entry there; whole-model rows (``op`` None) are compared with eager fp32 and ``torch.compile``,
op rows with the same op of the torch backend.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
from collections.abc import Callable

import torch

from .. import ops
from ..fast import FastWDSR
from ..fold import folded_copy
from ..model import WDSR, preset

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TIMED_OPS = ("wdsr_b_block", "tail_shuffle")

# Row kinds.
REFERENCE = "reference"  # the trainable WDSR, eager (weight norm computed every call)
COMPILE = "compile"  # the folded reference under torch.compile
FAST = "fast"  # FastWDSR on one backend
OP = "op"  # one op of one backend, alone


@dataclasses.dataclass(frozen=True)
class Case:
    preset: str
    scale: int
    out_w: int
    out_h: int
    batch: int
    dtype: str  # a key of DTYPES

    @property
    def lr_pixels(self) -> int:
        return self.batch * (self.out_h // self.scale) * (self.out_w // self.scale)


@dataclasses.dataclass(frozen=True)
class Row:
    label: str  # as printed and stored, e.g. "fast-triton+graphs", "op:wdsr_b_block:torch"
    kind: str  # REFERENCE, COMPILE, FAST, OP, ...
    make: Callable[[], Callable[[], object]] = dataclasses.field(compare=False, repr=False)
    backend: str | None = None
    op: str | None = None  # the op timed alone; None: the whole model
    variant: str = ""  # within a kind: "channels_last", "max-autotune", "cuda-graphs"; "" the plain one


@dataclasses.dataclass
class Setup:
    """What every row of one case shares."""

    case: Case
    device: torch.device
    reference: WDSR  # fp32, eval mode, on the device
    lr: torch.Tensor  # (batch, 3, out_h / scale, out_w / scale) fp32 in [0, 255], on the device
    args: argparse.Namespace  # the command line: backends, compile_on_cpu, triton_on_cpu

    @classmethod
    def of(cls, case: Case, device: torch.device, args: argparse.Namespace) -> Setup:
        lr = torch.rand(case.batch, 3, case.out_h // case.scale, case.out_w // case.scale, device=device) * 255
        return cls(case, device, preset(case.preset, case.scale).to(device).eval(), lr, args)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.case.dtype]


def reference_rows(s: Setup) -> list[Row]:
    """The trainable WDSR as it is, eager, NCHW and channels_last."""
    def eager(channels_last):
        def make():
            model = copy.deepcopy(s.reference).to(dtype=s.dtype)
            x = s.lr.to(s.dtype)
            if channels_last:
                model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            return lambda: model(x)
        return make

    return [Row("reference", REFERENCE, eager(False)),
            Row("reference-cl", REFERENCE, eager(True), variant="channels_last")]


def compile_rows(s: Setup) -> list[Row]:
    """The folded reference under torch.compile, default and max-autotune, channels_last (CPU only when asked)."""
    def compiled(mode):
        def make():
            if s.device.type != "cuda" and not s.args.compile_on_cpu:
                raise RuntimeError("torch.compile rows run on GPU only (add --compile-on-cpu)")
            model = folded_copy(s.reference).to(dtype=s.dtype).to(memory_format=torch.channels_last)
            fn = torch.compile(model, mode=mode)
            x = s.lr.to(s.dtype).contiguous(memory_format=torch.channels_last)
            return lambda: fn(x)
        return make

    wanted = getattr(s.args, "compile_rows", "all")  # --compile: all, default, max or none
    rows = [Row("compile", COMPILE, compiled(None))] if wanted in ("all", "default") else []
    if wanted in ("all", "max"):
        rows.append(Row("compile-max", COMPILE, compiled("max-autotune"), variant="max-autotune"))
    return rows


def check_backend(backend: str, s: Setup) -> None:
    """Raise, saying why, unless ``backend`` can run here (the Triton interpreter only when asked for)."""
    reason = ops.unavailable_reason(backend, s.device, s.reference.config, s.dtype)
    if reason is None and not ops.native(backend, s.device) and not s.args.triton_on_cpu:
        reason = f"{backend} on {s.device.type} is the Triton interpreter (add --with-triton-on-cpu)"
    if reason is not None:
        raise RuntimeError(reason)


def fast_rows(s: Setup) -> list[Row]:
    """FastWDSR on each backend asked for, without and with CUDA-graph replay (GPU)."""
    def fast(backend, graphs):
        def make():
            if graphs and s.device.type != "cuda":
                raise RuntimeError("CUDA graphs need a GPU")
            check_backend(backend, s)
            model = FastWDSR.from_reference(s.reference, backend=backend, cuda_graphs=graphs,
                                            check_finite=False).to(s.device).eval()
            x = s.lr.to(s.dtype)
            return lambda: model(x)
        return make

    return [Row(f"fast-{backend}" + ("+graphs" if graphs else ""), FAST, fast(backend, graphs), backend=backend,
                variant="cuda-graphs" if graphs else "")
            for backend in s.args.backends for graphs in (False, True)]


def op_rows(s: Setup) -> list[Row]:
    """The ops of TIMED_OPS alone, on the torch backend (the baseline) and each backend asked for."""
    def one_op(op, backend):
        def make():
            if op == "wdsr_b_block" and s.reference.config.variant != "b":
                raise RuntimeError("WDSR-A has no wdsr_b_block")
            check_backend(backend, s)
            fns = ops.get_backend(backend)
            folded = FastWDSR.from_reference(s.reference).folded(s.device, s.dtype)
            cfg = folded.config
            x = torch.randn(s.case.batch, cfg.n_feats, *s.lr.shape[-2:], device=s.device, dtype=s.dtype)
            x = x.contiguous(memory_format=torch.channels_last)
            image = s.lr.to(s.dtype)
            if op == "wdsr_b_block":
                return lambda: fns.wdsr_b_block(x, *folded.blocks[0], cfg.res_scale)
            return lambda: fns.tail_shuffle(x, image, *folded.tail, *folded.skip, folded.mean, cfg.pixel_norm_scale,
                                            cfg.scale)
        return make

    backends = ["torch"] + [b for b in s.args.backends if b != "torch"]
    return [Row(f"op:{op}:{backend}", OP, one_op(op, backend), backend=backend, op=op)
            for op in TIMED_OPS for backend in backends]


ROW_KINDS: tuple[Callable[[Setup], list[Row]], ...] = (reference_rows, compile_rows, fast_rows, op_rows)


def rows_of(s: Setup) -> list[Row]:
    return [row for kind in ROW_KINDS for row in kind(s)]
