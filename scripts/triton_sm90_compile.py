"""Compile every Triton kernel for an H100 (sm_90) without a GPU, exactly as a launch at 1080p would, and report
what the compiled code holds: CI's stand-in for running the kernels there.

    python scripts/triton_sm90_compile.py                    # every kernel, fp32 (TF32 and IEEE), fp16, bf16
    python scripts/triton_sm90_compile.py --quick            # what tests/test_triton_compiles.py checks
    python scripts/triton_sm90_compile.py --only block --dtypes fp16 --dump /tmp/k    # TTGIR, PTX, SASS to /tmp/k

Each op's own launch code runs on shape-only (meta) tensors of the WDSR-B 32x16 x2 case (960x540 input), the
kernel replaced by a recorder; the recorded arguments are then specialised as Triton's launcher specialises them
(integers equal to 1 become constants, multiples of 16 and aligned pointers are marked so: this is what makes a
channels_last and an NCHW input compile differently) and compiled for sm_90. Run without TRITON_INTERPRET (the
interpreter replaces the compiler). tests/test_triton_compiles.py runs ``--quick``.

One line per kernel: name, dtype, input layout, configuration; shared memory, registers, stack (local memory: spills
or arrays) per thread, CTAs per SM that registers and shared memory allow; then per tl.dot (by the kernel source line
that calls it) the tensor-core instructions it compiled to: wgmma count and shape, A from shared memory (SS) or
registers (RS), the transpose flags (tA/tB: 1 = the operand is MN-major in shared memory), or mma.sync, or none (FMA);
and the kernel's wgmma waits (each a point where the warps stall until the tensor cores finish), 16-byte global loads,
async copies (cp.async) and barriers.

Seen with triton 3.6: every IEEE fp32 kernel keeps a stack (block 14 KB, tail 10-24 KB, WDSR-A convs 2 KB per
thread): IEEE fp32 tl.dot lowers to FMAs that hold whole K-slices of the operands per thread. The driver reserves
local memory for the stack of every thread that can be resident: 14 KB x 2048 threads x 132 SMs is about 3.8 GB on
an H100 (arithmetic, not measured). The CUDA backend's fp32 block has no stack (tests/test_cuda_resources.py).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's wdsr_fast, not an installed one

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import CUDABackend  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import create_function_from_signature  # noqa: E402

from wdsr_fast.ops.common import use_triton_block_variant  # noqa: E402
from wdsr_fast.ops.triton import block_b as triton_block_b  # noqa: E402
from wdsr_fast.ops.triton import block_b_persistent as triton_persistent  # noqa: E402
from wdsr_fast.ops.triton import conv as triton_conv  # noqa: E402
from wdsr_fast.ops.triton import tail as triton_tail  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
SM_REGISTERS, SM_SHARED, SM_WARPS, SM_CTAS = 65536, 228 * 1024, 64, 32  # per H100 SM
CTA_RESERVED_SHARED = 1024  # the driver's per-CTA shared memory
BLOCK_SHARED_LIMIT = 227 * 1024
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
N, C, E, L, H, W = 1, 32, 192, 25, 540, 960  # WDSR-B 32x16, 960x540 input
KERNELS = {"block": (triton_block_b, "_wdsr_b_block_kernel"),
           "persistent": (triton_persistent, "_wdsr_b_block_persistent_kernel"),
           "tail": (triton_tail, "_tail_shuffle_kernel"), "conv": (triton_conv, "_conv3x3_kernel")}


class Recorder:
    """Stands in for a @triton.jit kernel: ``kernel[grid](*args, **kwargs)`` records the call."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((grid, args, kwargs))


@contextlib.contextmanager
def recording() -> Iterator[dict[str, Recorder]]:
    """Every kernel of the Triton backend replaced by a recorder, for the duration."""
    recorders = {name: Recorder(getattr(module, attr)) for name, (module, attr) in KERNELS.items()}
    try:
        for name, (module, attr) in KERNELS.items():
            setattr(module, attr, recorders[name])
        yield recorders
    finally:
        for name, (module, attr) in KERNELS.items():
            setattr(module, attr, recorders[name].kernel)


def compile_launch(kernel, args, kwargs):
    """Compile ``kernel`` for sm_90 as Triton's launcher would for these arguments (its specialisation included)."""
    backend = CUDABackend(TARGET)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    return triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=TARGET, options=options.__dict__)


def sass_tool(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def resources(compiled) -> tuple[int, int, str]:
    """Registers and stack bytes per thread (cuobjdump -res-usage on the cubin), and the SASS."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([sass_tool("cuobjdump"), "-res-usage", cubin.name], capture_output=True, text=True,
                               check=True).stdout
        sass = subprocess.run([sass_tool("cuobjdump"), "-sass", cubin.name], capture_output=True, text=True).stdout
    registers, stack = re.search(r"REG:(\d+) STACK:(\d+)", usage).groups()
    return int(registers), int(stack), sass


def ctas_per_sm(registers: int, shared: int, warps: int) -> int:
    """CTAs an H100 SM can hold at once, by registers (allocated per warp in units of 256), shared memory and
    warps."""
    per_warp = -(-registers * 32 // 256) * 256
    return min(SM_REGISTERS // (per_warp * warps), SM_SHARED // (shared + CTA_RESERVED_SHARED), SM_WARPS // warps,
               SM_CTAS)


# wgmma.mma_async.sync.aligned.<shape>.<types> {d}, a-descriptor | {a registers}, b-descriptor, p, scale-a, scale-b
# [, trans-a (A from shared memory only)][, trans-b] (16-bit types only: tf32 has no transpose flags)
WGMMA = re.compile(r"wgmma\.mma_async\.sync\.aligned\.(m\d+n\d+k\d+)\.([\w.]+)\s+\{[^}]*\},\s*(\{[^}]*\}|%rd\d+),"
                   r"\s*%rd\d+,([^;]*);")
CALL_SITE = re.compile(r"//\s*(?:[\w.]+:\d+:\d+\s*@\[\s*)?([\w.]+):(\d+):\d+")


@dataclasses.dataclass
class Dot:
    """The tensor-core instructions one tl.dot call site compiled to."""

    line: str  # "block_b.py:75"
    shape: str = ""
    wgmma: int = 0
    operands: set = dataclasses.field(default_factory=set)  # "SS tA0 tB1", "RS tB0"
    mma_sync: int = 0

    def __str__(self) -> str:
        if self.wgmma:
            return f"{self.line} {self.wgmma}x wgmma {self.shape} {'/'.join(sorted(self.operands))}"
        return f"{self.line} {self.mma_sync}x mma.sync"


def dots_of(ptx: str, source_files: tuple[str, ...]) -> list[Dot]:
    """Tensor-core instructions per call site: the innermost line of the kernel's own file (``source_files[0]``) in
    the PTX's location comment before each instruction (the call of the inlined ``mm`` helper of common.py)."""
    dots: dict[str, Dot] = {}
    where = "?"
    for line in ptx.splitlines():
        if ".loc" in line and "//" in line:
            frames = re.findall(r"([\w.]+):(\d+):\d+", line.split("//", 1)[1])  # innermost first
            sites = [f"{f}:{n}" for f, n in frames if f == source_files[0]]
            if sites:
                where = sites[0]  # the innermost frame in the kernel's own file: the call of mm or tl.dot
        elif "wgmma.mma_async" in line:
            match = WGMMA.search(line)
            dot = dots.setdefault(where, Dot(where))
            dot.wgmma += 1
            if match:
                shape, types, a, rest = match.groups()
                trans = [f.strip() for f in rest.split(",")][3:]  # after p, scale-a, scale-b
                dot.shape = f"{shape}.{types}"
                if a.startswith("{"):
                    dot.operands.add("RS" + (f" tB{trans[0]}" if trans else ""))
                else:
                    dot.operands.add("SS" + (f" tA{trans[0]} tB{trans[1]}" if len(trans) == 2 else ""))
        elif re.search(r"\bmma\.sync\.aligned", line):
            dots.setdefault(where, Dot(where)).mma_sync += 1
    return sorted(dots.values(), key=lambda d: int(d.line.rsplit(":", 1)[1]))


@dataclasses.dataclass
class Report:
    name: str
    dtype: str
    layout: str
    config: str
    shared: int
    registers: int
    stack: int
    warps: int
    ctas: int
    dots: list[Dot]
    waits: int
    vector_loads: int
    async_copies: int
    barriers: int
    spill_instructions: int
    code: str = ""  # a hash of the PTX without its source locations: equal for identical code

    def line(self) -> str:
        dots = "; ".join(map(str, self.dots)) or "no tensor cores (FMA)"
        return (f"{self.name} {self.dtype} {self.layout}{' ' + self.config if self.config else ''}: "
                f"shared {self.shared} B, registers {self.registers}, stack {self.stack} B, "
                f"{self.ctas} CTA/SM of {self.warps} warps | {dots} | waits {self.waits}, 16-byte loads "
                f"{self.vector_loads}, cp.async {self.async_copies}, barriers {self.barriers}"
                + (f", spill instructions {self.spill_instructions}" if self.spill_instructions else ""))

    @property
    def wgmma(self) -> int:
        return sum(d.wgmma for d in self.dots)


def report_of(name, dtype, layout, config, compiled, source_files) -> Report:
    ptx = compiled.asm["ptx"]
    registers, stack, sass = resources(compiled)
    warps = compiled.metadata.num_warps
    shared = compiled.metadata.shared
    return Report(name, dtype, layout, config, shared, registers, stack, warps, ctas_per_sm(registers, shared, warps),
                  dots_of(ptx, source_files), ptx.count("wgmma.wait_group"),
                  len(re.findall(r"ld\.global[\w.]*\.v4\.b32|ld\.global[\w.]*\.v2\.b64", ptx)),
                  len(re.findall(r"cp\.async\.(?:ca|cg)", ptx)) + ptx.count("cp.async.bulk"),
                  len(re.findall(r"\bbar\.sync|barrier\.sync", ptx)),
                  len(re.findall(r"\b(?:LDL|STL)\b", sass)),
                  hashlib.sha256(re.sub(r"(\.loc|\.file)[^\n]*|//[^\n]*", "", ptx.split(".section")[0])
                                 .encode()).hexdigest()[:12])


def meta(*shape, dtype, channels_last=False):
    t = torch.empty(shape, device="meta", dtype=dtype)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


@dataclasses.dataclass
class Case:
    """One op launch to compile: ``run(dtype, channels_last)`` calls the op (its kernel recorded)."""

    name: str
    kernel: str  # a key of KERNELS
    run: Callable[[torch.dtype, bool], object]
    layouts: tuple[bool, ...] = (True,)  # channels_last values to compile
    fast: bool = False  # a speed-path kernel: no stack and wgmma in fp16/bf16
    config: Callable[[dict, tuple], str] = lambda kwargs, grid: ""


def block_weights(dtype):
    return (meta(E, C, 1, 1, dtype=dtype), meta(E, dtype=dtype), meta(L, E, 1, 1, dtype=dtype), meta(L, dtype=dtype),
            meta(C, L, 3, 3, dtype=dtype), meta(C, dtype=dtype))


def tiled_block(dtype, channels_last):
    """The tiled kernel as the op launches it on channels_last x, and as it compiles for NCHW x read as it is (the op
    copies NCHW x until that form is confirmed on a GPU: block_b.READ_NCHW)."""
    x = meta(N, C, H, W, dtype=dtype, channels_last=channels_last)
    if channels_last:
        with use_triton_block_variant("tiled"):
            triton_block_b.wdsr_b_block(x, *block_weights(dtype), 1.0)
    else:
        triton_block_b.launch(x, *block_weights(dtype), 1.0)


def persistent_block(config):
    def run(dtype, channels_last):
        x = meta(N, C, H, W, dtype=dtype, channels_last=channels_last)
        triton_persistent.launch(x, *triton_persistent.pack_weights(*block_weights(dtype), config), 1.0, config)
    return run


def tail(scale):
    def run(dtype, channels_last):
        o = 3 * scale**2
        mean = torch.empty(3, device="meta")
        triton_tail.tail_shuffle(meta(N, C, H, W, dtype=dtype, channels_last=True), meta(N, 3, H, W, dtype=dtype),
                                 meta(o, C, 3, 3, dtype=dtype), meta(o, dtype=dtype), meta(o, 3, 5, 5, dtype=dtype),
                                 meta(o, dtype=dtype), mean, 127.5, scale)
    return run


def conv(which):
    def run(dtype, channels_last):
        if which == "head_conv":
            triton_conv.head_conv(meta(N, 3, H, W, dtype=dtype), meta(C, 3, 3, 3, dtype=dtype), meta(C, dtype=dtype),
                                  torch.empty(3, device="meta"), 127.5)
        else:
            x = meta(N, C, H, W, dtype=dtype, channels_last=True)
            wide = 4 * C
            if which == "wdsr_a expand":
                triton_conv.conv3x3(x, meta(wide, C, 3, 3, dtype=dtype), meta(wide, dtype=dtype), relu=True)
            else:
                wide_x = meta(N, wide, H, W, dtype=dtype, channels_last=True)
                triton_conv.conv3x3(wide_x, meta(C, wide, 3, 3, dtype=dtype), meta(C, dtype=dtype), residual=x)
    return run


def persistent_config_name(kwargs, grid) -> str:
    return triton_persistent.Config.of(kwargs, max(1, grid[0] // triton_persistent.H100_SMS)).name


def cases(configs=None) -> list[Case]:
    """Every kernel launch, the fast ones first."""
    configs = triton_persistent.CONFIGS if configs is None else configs
    return ([Case("wdsr_b_block tiled", "block", tiled_block, (True, False), fast=True)]
            + [Case("wdsr_b_block persistent", "persistent", persistent_block(c), (True, False), fast=True,
                    config=persistent_config_name) for c in configs]
            + [Case(f"tail_shuffle x{s}", "tail", tail(s), fast=True) for s in (2, 3, 4)]
            + [Case(name, "conv", conv(name)) for name in ("head_conv", "wdsr_a expand", "wdsr_a reduce")])


def compile_case(case: Case, dtype: str, channels_last: bool, tf32: bool = True, dump: Path | None = None) -> Report:
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        with recording() as recorders:
            case.run(DTYPES[dtype], channels_last)
    finally:
        torch.backends.cudnn.allow_tf32 = saved
    recorder = recorders[case.kernel]
    (grid, args, kwargs), = recorder.calls[-1:]
    compiled = compile_launch(recorder.kernel, args, kwargs)
    module = KERNELS[case.kernel][0]
    label = dtype + ("" if dtype != "fp32" else " tf32" if tf32 else " ieee")
    report = report_of(case.name, label, "channels_last" if channels_last else "nchw", case.config(kwargs, grid),
                       compiled, (Path(module.__file__).name, "common.py"))
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^\w.-]+", "_", f"{report.name}_{report.config}_{label}_{report.layout}")
        for ext in ("ttgir", "ptx"):
            (dump / f"{stem}.{ext}").write_text(compiled.asm[ext])
        (dump / f"{stem}.sass").write_text(resources(compiled)[2])
    return report


def check(report: Report, fast: bool) -> list[str]:
    """What a kernel must not do: overflow shared memory; in fp16/bf16 a speed-path kernel (``fast``) must use
    wgmma and keep no stack."""
    problems = []
    if report.shared > BLOCK_SHARED_LIMIT:
        problems.append(f"{report.shared} B of shared memory")
    if report.dtype in ("fp16", "bf16"):
        if report.wgmma == 0 and not any(d.mma_sync for d in report.dots):
            problems.append("no tensor-core instruction")
        if fast and report.wgmma == 0:
            problems.append("no wgmma")
        if fast and report.stack:
            problems.append(f"{report.stack} B of stack per thread")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fp16: every kernel (the blocks on both layouts); bf16 and fp32 (TF32): the blocks and "
                             "the x2 tail; the persistent block in its default configuration only")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--only", nargs="+", choices=sorted(KERNELS), help="these kernels only")
    parser.add_argument("--all-configs", action="store_true", help="every candidate configuration of the "
                        "persistent block (block_b_persistent.CANDIDATES), not only its CONFIGS")
    parser.add_argument("--dump", type=Path, help="write each kernel's TTGIR, PTX and SASS here")
    args = parser.parse_args(argv)
    configs = (triton_persistent.CANDIDATES if args.all_configs
               else triton_persistent.CONFIGS[:1] if args.quick else triton_persistent.CONFIGS)
    failures = []
    seen: dict[str, str] = {}  # code hash -> the first kernel compiled to it
    for dtype in args.dtypes:
        for case in cases(configs):
            if args.only and case.kernel not in args.only:
                continue
            if args.quick and dtype != "fp16" and not case.name.startswith(("wdsr_b_block", "tail_shuffle x2")):
                continue
            for channels_last in case.layouts:
                if (args.quick or args.all_configs) and not channels_last and (dtype != "fp16" or args.all_configs):
                    continue
                precisions = (True, False) if dtype == "fp32" and not args.quick else (True,)
                for tf32 in precisions:
                    report = compile_case(case, dtype, channels_last, tf32, args.dump)
                    problems = check(report, case.fast and channels_last)
                    label = " ".join(filter(None, (report.name, report.config, report.dtype, report.layout)))
                    first = seen.setdefault(report.code, label)
                    print(report.line() + (f" | the same code as {first}" if first != label else "")
                          + (f"  PROBLEM: {', '.join(problems)}" if problems else ""), flush=True)
                    failures += [f"{report.name} {report.dtype} {report.layout}: {p}" for p in problems]
    counts = collections.Counter(f.split(":")[0] for f in failures)
    if failures:
        print(f"{len(failures)} problem(s) in {len(counts)} kernel(s):\n  " + "\n  ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
