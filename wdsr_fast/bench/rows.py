"""What the benchmark times: one case (model, size, batch, dtype), and a row per way of running it.

A row is data (its kind, backend, op and variant, and the label shown) plus ``make``, which builds the callable
to time or raises to skip the row with the reason. Each row kind is one function of a ``Setup`` returning its rows;
``ROW_KINDS`` lists them, in table order. Adding a way to run WDSR (another runtime, another backend) is one such
function and one entry there; whole-model rows (``op`` None) are compared with eager fp32 and ``torch.compile``,
op rows with the same op of ``ops/reference.py`` on folded weights. FastWDSR and op rows are made for every
backend of the registry (``wdsr_fast.ops``) asked for, so a new backend gets its rows without a change here.

A callable returns its output (a tensor or an array), which is checked against the eager fp32 reference.
``make`` and the calls run under ``torch.inference_mode()``, with torch's thread count set to ``Setup.threads``.

The GPU peers of the fused backends: eager channels_last replayed as a CUDA graph (``eager-cl+graphs``: plain
PyTorch's launch overhead removed); the folded model with its low-rank width zero-padded to 32 channels
(``folded-pad32-cl``, ``+graphs``: the same outputs, but widths cuDNN's fast NHWC half-precision kernels take);
``torch.compile`` (default mode by default on GPU; max-autotune with ``--compile max`` or ``all``). The Triton
rows run each WDSR-B block kernel (``ops.TRITON_BLOCK_VARIANTS``: "tiled", the measured one, as ``triton``;
"persistent" as ``triton-persistent``), so the two are timed side by side.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from .. import ops
from ..inference.fast_wdsr import FastWDSR
from ..model import WDSR, preset
from ..model.fold import folded_copy
from ..ops import reference as reference_ops
from ..ops.cpu_backend import BLOCK_A_ENV, BLOCK_B_ENV
from .runtimes import onnx_model, onnxruntime_runner, openvino_runner

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class RowOptions:
    """Which rows a case times beyond the fixed ones."""

    backends: tuple[str, ...]  # FastWDSR backends, each a row (and +graphs on GPU) and op rows
    compile_rows: str = "all"  # torch.compile rows: all, default, max or none
    max_autotune_on_cpu: bool = False  # max-autotune takes minutes of tuning on CPU
    triton_on_cpu: bool = False  # the Triton interpreter on CPU (a correctness tool, very slow)
    ieee_triton: bool = False  # fp32 Triton rows on GPU with TF32 off (IEEE dots: minutes of FMA per case)
    triton_block_variants: tuple[str, ...] = ("tiled", "persistent")  # the Triton rows' block kernels, side by side
REFERENCE_OPS = "reference"  # the op rows' baseline: the ops of ops/reference.py (the spec) on folded weights

# Row kinds.
EAGER = "eager"  # the trainable WDSR as it is (weight norm computed every call)
FOLDED = "folded"  # the folded reference (plain convs), eager
TORCHSCRIPT = "torchscript"  # the folded reference traced, frozen and optimize_for_inference
COMPILE = "compile"  # the folded reference under torch.compile
RUNTIME = "runtime"  # another inference runtime fed the folded model exported to ONNX
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
    kind: str  # EAGER, FOLDED, COMPILE, FAST, OP, ...
    make: Callable[[], Callable[[], object]] = dataclasses.field(compare=False, repr=False)
    backend: str | None = None
    op: str | None = None  # the op timed alone; None: the whole model
    variant: str = ""  # within a kind: "channels_last", "max-autotune", "cuda-graphs"; "" the plain one


@dataclasses.dataclass
class Setup:
    """What every row of one case shares (the thread count is per row group: ``dataclasses.replace``)."""

    case: Case
    device: torch.device
    reference: WDSR  # fp32, eval mode, on the device
    lr: torch.Tensor  # (batch, 3, out_h / scale, out_w / scale) fp32 in [0, 255], on the device
    options: RowOptions
    folder: Path  # scratch space of the case (the ONNX export)
    threads: int = 1  # torch's intra-op threads for these rows, and the runtimes' threads

    @classmethod
    def of(cls, case: Case, device: torch.device, options: RowOptions, folder: Path) -> Setup:
        lr = torch.rand(case.batch, 3, case.out_h // case.scale, case.out_w // case.scale, device=device) * 255
        return cls(case, device, preset(case.preset, case.scale).to(device).eval(), lr, options, folder,
                   torch.get_num_threads())

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.case.dtype]

    @property
    def on_cpu(self) -> bool:
        return self.device.type == "cpu"

    def folded_model(self, channels_last: bool = True) -> torch.nn.Module:
        model = folded_copy(self.reference).to(dtype=self.dtype)
        return model.to(memory_format=torch.channels_last) if channels_last else model  # type: ignore[call-overload]

    def input(self, channels_last: bool = True) -> torch.Tensor:
        x = self.lr.to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def cuda_graph(fn: Callable[[], torch.Tensor], device: torch.device) -> Callable[[], torch.Tensor]:
    """``fn`` (a call on fixed inputs) captured in a CUDA graph: the returned call replays it and returns its
    (static) output. Warmed up twice on a side stream first (cuDNN's algorithm search, allocations)."""
    if device.type != "cuda":
        raise RuntimeError("CUDA graphs need a GPU")
    with torch.inference_mode(False), torch.no_grad():
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                fn()
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()

    def replay() -> torch.Tensor:
        graph.replay()
        return out
    return replay


def eager_rows(s: Setup) -> list[Row]:
    """The trainable WDSR as it is, eager, NCHW and channels_last, and channels_last as a CUDA graph (GPU)."""
    def eager(channels_last, graphs=False):
        def make():
            model = copy.deepcopy(s.reference).to(dtype=s.dtype)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            x = s.input(channels_last)
            return cuda_graph(lambda: model(x), s.device) if graphs else (lambda: model(x))
        return make

    return [Row("eager", EAGER, eager(False)), Row("eager-cl", EAGER, eager(True), variant="channels_last"),
            Row("eager-cl+graphs", EAGER, eager(True, graphs=True), variant="channels_last+cuda-graphs")]


def pad_low_rank(model: torch.nn.Module, multiple: int = 32) -> torch.nn.Module:
    """A folded WDSR-B (``folded_copy``) whose low-rank convs (reduce 1x1 and the 3x3 after it) are widened with zero
    weights to a multiple of ``multiple`` channels, in place: the same function (the extra channels are zero and
    read with zero weights), in widths cuDNN's tensor-core kernels take."""
    for block in getattr(model, "body", ()):
        body = getattr(block, "body", None)
        if body is None or len(body) != 4:  # WDSR-A blocks: nothing low-rank
            continue
        reduce, conv = body[2], body[3]
        low_rank = reduce.out_channels
        padded = -(-low_rank // multiple) * multiple
        if padded == low_rank:
            continue
        wide_reduce = torch.nn.Conv2d(reduce.in_channels, padded, 1, device=reduce.weight.device,
                                      dtype=reduce.weight.dtype)
        wide_conv = torch.nn.Conv2d(padded, conv.out_channels, 3, padding=1, device=conv.weight.device,
                                    dtype=conv.weight.dtype)
        with torch.no_grad():
            for new, old, in_pad in ((wide_reduce, reduce, False), (wide_conv, conv, True)):
                new.weight.zero_()
                new.bias.zero_()  # type: ignore[union-attr]
                if in_pad:
                    new.weight[:, :low_rank] = old.weight
                    new.bias.copy_(old.bias)  # type: ignore[union-attr]
                else:
                    new.weight[:low_rank] = old.weight
                    new.bias[:low_rank] = old.bias  # type: ignore[index]
        body[2], body[3] = wide_reduce, wide_conv
    return model


def folded_rows(s: Setup) -> list[Row]:
    """The folded reference (weight norm folded once into plain convs), eager, channels_last; and, for WDSR-B, the
    same with its low-rank width zero-padded to 32 (same outputs), plain and as a CUDA graph (GPU)."""
    def folded(pad32=False, graphs=False):
        def make():
            if pad32 and s.reference.config.variant != "b":
                raise RuntimeError("WDSR-A has no low-rank convs to pad")
            model, x = s.folded_model(), s.input()
            if pad32:
                model = pad_low_rank(model).to(memory_format=torch.channels_last)
            return cuda_graph(lambda: model(x), s.device) if graphs else (lambda: model(x))
        return make

    return [Row("folded-cl", FOLDED, folded(), variant="channels_last"),
            Row("folded-pad32-cl", FOLDED, folded(pad32=True), variant="low-rank-32"),
            Row("folded-pad32-cl+graphs", FOLDED, folded(pad32=True, graphs=True), variant="low-rank-32+cuda-graphs")]


def torchscript_rows(s: Setup) -> list[Row]:
    """The folded reference traced, ``torch.jit.freeze``-d and ``torch.jit.optimize_for_inference``, channels_last."""
    def make():
        model, x = s.folded_model(), s.input()
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's warnings about input checks turned constants
            traced = torch.jit.trace(model.eval(), x.clone())
            optimised = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        return lambda: optimised(x)

    return [Row("torchscript", TORCHSCRIPT, make, variant="channels_last")]


def compile_rows(s: Setup) -> list[Row]:
    """The folded reference under torch.compile (inductor), channels_last: default mode, max-autotune, and on CPU
    with inductor's freezing (weights as constants, prepacked for oneDNN), its setting for CPU inference. The first
    call compiles (its time is the row's first-call time)."""
    def compiled(mode, freezing):
        def make():
            if mode == "max-autotune" and s.on_cpu and not s.options.max_autotune_on_cpu:
                raise RuntimeError("max-autotune on CPU tunes for minutes: add --max-autotune-on-cpu")
            if freezing and not s.on_cpu:
                raise RuntimeError("inductor freezing rows run on CPU")
            model, x = s.folded_model(), s.input()
            fn = torch.compile(model, mode=mode, options={"freezing": True} if freezing else None)
            return lambda: fn(x)
        return make

    wanted = s.options.compile_rows  # --compile: all, default, max or none
    rows = []
    if wanted in ("all", "default"):
        rows += [Row("compile", COMPILE, compiled(None, False)),
                 Row("compile-freezing", COMPILE, compiled(None, True), variant="freezing")]
    if wanted in ("all", "max"):
        rows.append(Row("compile-max", COMPILE, compiled("max-autotune", False), variant="max-autotune"))
    return rows


def runtime_rows(s: Setup) -> list[Row]:
    """ONNX Runtime and OpenVINO on CPU, fed the folded model exported to ONNX (fp32), with ``s.threads`` threads:
    both computing in fp32, and OpenVINO at its defaults too (``openvino-default``: its default inference precision,
    bf16 on CPUs with AVX512-BF16 or AMX, fp32 elsewhere; raced in the bf16 cases too, fed fp32 pixels as its users
    do)."""
    def runtime(runner, default_precision=False):
        def make():
            if not s.on_cpu:
                raise RuntimeError("the ONNX runtimes are raced on CPU (--device cpu)")
            if s.dtype != torch.float32 and not (default_precision and s.dtype == torch.bfloat16):
                raise RuntimeError("the ONNX runtimes are raced in fp32 (OpenVINO at its defaults in bf16 too)")
            fp32 = {} if runner is onnxruntime_runner else {"fp32": not default_precision}
            return runner(onnx_model(s.reference, s.folder), s.lr.float().numpy(), s.threads, **fp32)
        return make

    return [Row("onnxruntime", RUNTIME, runtime(onnxruntime_runner), backend="onnxruntime"),
            Row("openvino", RUNTIME, runtime(openvino_runner), backend="openvino"),
            Row("openvino-default", RUNTIME, runtime(openvino_runner, default_precision=True), backend="openvino",
                variant="default-precision")]


def check_backend(backend: str, s: Setup) -> None:
    """Raise, saying why, unless ``backend`` can run here (the Triton interpreter only when asked for; fp32 Triton
    on a GPU with TF32 off, IEEE dots, only when asked for)."""
    reason = ops.unavailable_reason(backend, s.device, s.reference.config, s.dtype)
    if reason is None and not ops.native(backend, s.device) and not s.options.triton_on_cpu:
        reason = f"{backend} on {s.device.type} is the Triton interpreter (add --with-triton-on-cpu)"
    if (reason is None and backend == "triton" and s.device.type == "cuda" and s.dtype == torch.float32
            and not ops.tf32_convolutions() and not s.options.ieee_triton):
        reason = ("fp32 Triton with TF32 off (torch.backends.cudnn.allow_tf32) runs IEEE dots on FMAs, minutes per "
                  "case (add --with-ieee-triton)")
    if reason is not None:
        raise RuntimeError(reason)


def triton_variants(backend: str, s: Setup) -> list[tuple[str, str | None]]:
    """(label suffix, Triton block variant) of a backend's rows: each block kernel for "triton", else one row."""
    if backend != "triton":
        return [("", None)]
    return [("" if v == ops.TRITON_BLOCK_VARIANTS[0] else f"-{v}", v) for v in s.options.triton_block_variants]


def in_variant(variant: str | None, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` called with the Triton block kernel ``variant`` in use (None: as it is)."""
    if variant is None:
        return fn

    def call():
        with ops.use_triton_block_variant(variant):
            return fn()
    return call


def fast_rows(s: Setup) -> list[Row]:
    """FastWDSR on each backend asked for (Triton: each block kernel), without and with CUDA-graph replay (GPU)."""
    def fast(backend, graphs, variant):
        def make():
            if graphs and s.device.type != "cuda":
                raise RuntimeError("CUDA graphs need a GPU")
            check_backend(backend, s)
            model = FastWDSR.from_reference(s.reference, backend=backend, cuda_graphs=graphs,
                                            check_finite=False).to(s.device).eval()
            x = s.input(channels_last=False)
            return in_variant(variant, lambda: model(x))
        return make

    def block_path(env, path):  # the cpu backend with its blocks run one way (WDSR_FAST_CPU_BLOCK_A/B=path)
        def make():
            call = fast("cpu", False, None)()

            def run():
                old = os.environ.get(env)
                os.environ[env] = path
                try:
                    return call()
                finally:
                    if old is None:
                        del os.environ[env]
                    else:
                        os.environ[env] = old
            run()  # raises here, skipping the row, where this build cannot run the path
            return run
        return make

    rows = [Row(f"fast-{backend}{suffix}" + ("+graphs" if graphs else ""), FAST, fast(backend, graphs, variant),
                backend=backend, variant="+".join(filter(None, (variant, "cuda-graphs" if graphs else ""))))
            for backend in s.options.backends for suffix, variant in triton_variants(backend, s)
            for graphs in (False, True)]
    if "cpu" in s.options.backends and s.on_cpu:
        variant = s.reference.config.variant
        env, paths = (BLOCK_A_ENV, ["fused", "winograd", "onednn"]) if variant == "a" else \
            (BLOCK_B_ENV, ["direct", "winograd", "onednn"])
        if s.dtype == torch.bfloat16:  # the AMX kernels take bf16 features only
            paths.append("amx")
        rows += [Row(f"fast-cpu:{variant}-{path}", FAST, block_path(env, path), backend="cpu",
                     variant=f"block-{variant}={path}") for path in paths]
    return rows


def op_rows(s: Setup) -> list[Row]:
    """The model's block op and the tail alone, channels_last features: the reference ops on folded weights (the
    baseline), then each backend asked for (Triton's block: each kernel)."""
    block = "wdsr_a_block" if s.reference.config.variant == "a" else "wdsr_b_block"

    def one_op(op, backend, variant):
        def make():
            if backend != REFERENCE_OPS:
                check_backend(backend, s)
            fns = reference_ops if backend == REFERENCE_OPS else ops.get_backend(backend)
            folded = FastWDSR.from_reference(s.reference).folded(s.device, s.dtype)
            cfg = folded.config
            generator = torch.Generator().manual_seed(0)  # the same features for every backend
            x = torch.randn(s.case.batch, cfg.n_feats, *s.lr.shape[-2:], generator=generator)
            x = x.to(s.device, s.dtype).contiguous(memory_format=torch.channels_last)
            image = s.input()
            if op == block:
                return in_variant(variant, lambda: getattr(fns, op)(x, *folded.blocks[0], cfg.res_scale))
            return lambda: fns.tail_shuffle(x, image, *folded.tail, *folded.skip, folded.mean, cfg.pixel_norm_scale,
                                            cfg.scale)
        return make

    rows = []
    for op in (block, "tail_shuffle"):
        for backend in [REFERENCE_OPS] + list(s.options.backends):
            variants = triton_variants(backend, s) if op == "wdsr_b_block" else [("", None)]
            rows += [Row(f"op:{op}:{backend}{suffix}", OP, one_op(op, backend, variant), backend=backend, op=op,
                         variant=variant or "") for suffix, variant in variants]
    return rows


ROW_KINDS: tuple[Callable[[Setup], list[Row]], ...] = (eager_rows, folded_rows, torchscript_rows, compile_rows,
                                                         runtime_rows, fast_rows, op_rows)


def rows_of(s: Setup) -> list[Row]:
    return [row for kind in ROW_KINDS for row in kind(s)]
