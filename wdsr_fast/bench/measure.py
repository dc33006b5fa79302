"""Timing the rows of a case, interleaved, and the machine's peaks they are held against.

Every row of a case, at every thread count asked for, is built and warmed up first (two calls; the first one's
time, which includes compilation where there is any, is the row's ``first_call_s``, and its output is checked
against the eager fp32 reference: ``rel_err``). Then the rows are timed round-robin: each round calls every row
once (on a GPU: one ``triton.testing.do_bench`` median), starting one row later each round, and a row's time is the
median over the rounds. Noise from other work on the machine thus falls on all rows alike. Torch's thread count is
set to the row's before each call.

The peaks, measured in the same run, the best round kept: an n x n x n matmul (n = 2048 on CPU, 8192 on GPU) in
the row's dtype (on CPU: bf16 where the CPU has bf16 units, AVX512-BF16 or AMX, else fp32; ``peak_dtype``) and a
large copy, before the cases; the matmul again among each case's rows, in its rounds (the
faster of the two is the row's ``peak_gflops``). ``of_peak`` is a row's FLOP/s over that peak at the same thread
count; ``roofline`` is max(FLOPs / peak FLOP/s, minimum bytes / peak
bandwidth) over the measured time.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from .memory import peak_memory_cpu
from .report import cpu_flags
from .rows import COMPILE, EAGER, FAST, FOLDED, OP, REFERENCE_OPS, RUNTIME, TORCHSCRIPT, Row, Setup, rows_of
from .runtimes import RuntimeCall
from .timing import time_call
from .work import model_work, op_work

CPU_MATMUL_SIZE = 2048
GPU_MATMUL_SIZE = 8192
PEAK_ROUNDS = 5  # at least
PEER_KINDS = (EAGER, FOLDED, TORCHSCRIPT, COMPILE, RUNTIME)  # whole-model rows a FastWDSR row races
FULL_PRECISION = "fp32"  # a peer computing in it races every case; one in bf16 or fp16 only the bf16 and fp16 cases


@contextlib.contextmanager
def torch_threads(threads: int):
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def interleaved(calls: list[Callable[[], object]], device: torch.device, rounds: int, repeats: int,
                threads: list[int]) -> list[list[float]]:
    """Seconds per call of each of ``calls`` (the i-th run with ``threads[i]`` torch threads), one per round."""
    times: list[list[float]] = [[] for _ in calls]
    for r in range(rounds):
        for k in range(len(calls)):
            i = (r + k) % len(calls)
            with torch_threads(threads[i]):
                if device.type == "cuda":
                    times[i].append(time_call(calls[i], device, repeats))
                else:
                    start = time.perf_counter()
                    calls[i]()
                    times[i].append(time.perf_counter() - start)
    return times


def peak_rates(device: torch.device, dtype: torch.dtype, threads: list[int], rounds: int,
               repeats: int) -> dict[int, tuple[float, float]]:
    """{threads: (FLOP/s of a large matmul in ``dtype``, bytes/s of a large copy)}, measured now: the best of the
    rounds (a peak is what the machine can do; the rows are held to it with their medians)."""
    matmul, flops = matmul_call(device, dtype)
    src = torch.empty(2**28 if device.type == "cuda" else 2**26, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    calls = [matmul, lambda: dst.copy_(src)]
    for t in threads:  # warm-up
        with torch_threads(t):
            for call in calls:
                call()
    times = interleaved(calls * len(threads), device, max(rounds, PEAK_ROUNDS), repeats,
                        [t for t in threads for _ in calls])
    best = [min(t) for t in times]
    return {t: (flops / best[2 * i], 2 * src.numel() / best[2 * i + 1]) for i, t in enumerate(threads)}


def peak_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The dtype of the matmul that rows in ``dtype`` are held to: their own on GPU; on CPU bf16 where the CPU
    multiplies bf16 in hardware (AVX512-BF16 or AMX: a multiple of its fp32 rate), else fp32 (a CPU without bf16
    units multiplies bf16 rows' values in fp32)."""
    if device.type == "cuda":
        return dtype
    bf16_units = bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))
    return dtype if dtype == torch.bfloat16 and bf16_units else torch.float32


def matmul_call(device: torch.device, dtype: torch.dtype) -> tuple[Callable[[], object], int]:
    """(a call of the peak's n x n x n matmul for rows in ``dtype``, its FLOPs)."""
    n = GPU_MATMUL_SIZE if device.type == "cuda" else CPU_MATMUL_SIZE
    a = torch.randn(n, n, device=device).to(peak_dtype(device, dtype))
    return (lambda: a @ a), 2 * n**3


def output_of(value) -> torch.Tensor:
    """A row's output as a CPU float64 tensor (rows return tensors or NumPy arrays)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64)
    return torch.from_numpy(np.array(value, dtype=np.float64))


def relative_error(out: torch.Tensor, expected: torch.Tensor) -> float:
    if out.shape != expected.shape:
        return float("inf")
    return ((out - expected).abs().max() / expected.abs().max()).item()


@dataclasses.dataclass
class Timed:
    """A row being measured: its setup, the callable, and its result so far."""

    setup: Setup
    row: Row
    result: dict
    call: Callable[[], object] | None = None


def build(setup: Setup, row: Row, expected: dict) -> Timed:
    """Make the row and warm it up; ``expected``: reference outputs by op (None: the whole model)."""
    case = setup.case
    result = {**dataclasses.asdict(case), "threads": setup.threads, "row": row.label, "kind": row.kind,
              "backend": row.backend, "op": row.op, "variant": row.variant}
    timed = Timed(setup, row, result)
    try:
        with torch_threads(setup.threads), torch.inference_mode():
            call = row.make()
            result["computes_in"] = call.precision if isinstance(call, RuntimeCall) else case.dtype
            start = time.perf_counter()
            out = output_of(call())
            result["first_call_s"] = time.perf_counter() - start
            call()
    except Exception as exc:  # a row that cannot run here is reported, not fatal
        result["skipped"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return timed
    if row.op is None or (row.op in expected and row.backend != REFERENCE_OPS):
        result["rel_err"] = relative_error(out, expected[row.op])
    elif row.backend == REFERENCE_OPS:
        expected[row.op] = out
        result["rel_err"] = 0.0
    timed.call = call
    return timed


def measure(base: Setup, threads: list[int], rounds: int, repeats: int, peaks: dict[int, tuple[float, float]],
            eager_fp32: dict, memory: bool) -> list[dict]:
    """One result per row of the case at each thread count: its timing and rates, or why it was skipped.
    ``peaks``: {threads: (FLOP/s, bytes/s)} for the case's dtype; ``eager_fp32``: the eager fp32 time per
    (preset, scale, size, batch, threads), filled by the fp32 case and read by the others."""
    case = base.case
    with torch.inference_mode():
        expected = {None: output_of(base.reference(base.lr))}  # the eager fp32 reference, whole model
    timed = []
    for t in threads:
        setup = dataclasses.replace(base, threads=t)
        timed += [build(setup, row, expected) for row in rows_of(setup)]
    live = [x for x in timed if x.call is not None]
    matmul, matmul_flops = matmul_call(base.device, base.dtype)  # the peak again, among the rows
    with torch.inference_mode():
        calls = [x.call for x in live if x.call is not None]
        times = interleaved(calls + [matmul] * len(threads), base.device, rounds, repeats,
                            [x.setup.threads for x in live] + threads)
    peaks = {t: (max(peaks[t][0], matmul_flops / min(times[len(live) + i])), peaks[t][1])
             for i, t in enumerate(threads)}
    element = torch.empty((), dtype=base.dtype).element_size()
    for x, row_times in zip(live, times, strict=False):
        seconds = statistics.median(row_times)
        if x.row.op is None:
            flops, min_bytes = model_work(base.reference.config, case.lr_pixels, element)
        else:
            flops, min_bytes = op_work(base.reference.config, x.row.op, case.lr_pixels, element)
        peak_flops, peak_bytes = peaks[x.setup.threads]
        x.result.update(ms=1e3 * seconds, ms_per_image=1e3 * seconds / case.batch, fps=case.batch / seconds,
                        mpix_per_s=case.batch * case.out_w * case.out_h / seconds / 1e6,
                        gflops=flops / seconds / 1e9, of_peak=flops / seconds / peak_flops,
                        peak_gflops=peak_flops / 1e9,
                        gbps=min_bytes / seconds / 1e9,
                        roofline=max(flops / peak_flops, min_bytes / peak_bytes) / seconds, rounds=len(row_times))
    for x in live:
        x.call = None  # free what the rows hold before memory is measured
    if memory:  # at the most threads measured only: memory hardly depends on the thread count
        for x in live:
            if x.setup.threads == max(threads):
                x.result.update(row_memory(x))
    compare(case, timed, eager_fp32)
    return [x.result for x in timed]


def row_memory(x: Timed) -> dict:
    """{"peak_mem_mb": ...} of one forward of the row, or {"peak_mem_note": why not}."""
    s = x.setup
    try:
        if s.device.type == "cuda":
            with torch.inference_mode():
                call = x.row.make()
                call()
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(s.device)
                call()
                torch.cuda.synchronize()
            return {"peak_mem_mb": torch.cuda.max_memory_allocated(s.device) / 2**20}
        return {"peak_mem_mb": peak_memory_cpu(s.case, s.options, s.threads, x.row.label) / 2**20}
    except Exception as exc:
        return {"peak_mem_note": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}


def compare(case, timed: list[Timed], eager_fp32: dict) -> None:
    """Speed-ups, within each thread count: whole-model rows against eager fp32 (NCHW) and torch.compile, FastWDSR
    rows against the fastest peer (``best_peer``, ``vs_best_peer``: the fastest row of PEER_KINDS computing in the
    case's precision or in fp32, so that in an fp32 case OpenVINO at its bf16 default is no peer), op rows against
    the reference op; and each row against itself at the fewest threads measured (``thread_scaling``)."""
    def ms_of(threads: int, wanted: Callable[[Row], bool]) -> float | None:
        return next((x.result.get("ms") for x in timed if x.setup.threads == threads and wanted(x.row)), None)

    fewest = min(x.setup.threads for x in timed)
    for x in timed:
        if "ms" not in x.result:
            continue
        row, threads, result = x.row, x.setup.threads, x.result
        key = (case.preset, case.scale, case.out_w, case.out_h, case.batch, threads)
        if row.op is None:
            eager = ms_of(threads, lambda r: r.kind == EAGER and not r.variant)
            if case.dtype == "fp32" and eager:
                eager_fp32[key] = eager
            if key in eager_fp32:
                result["vs_eager_fp32"] = eager_fp32[key] / result["ms"]
            if compiled := ms_of(threads, lambda r: r.kind == COMPILE and not r.variant):
                result["vs_compile"] = compiled / result["ms"]
            if row.kind == FAST and (peers := [x for x in timed if is_peer(x, case.dtype, threads)]):
                best = min(peers, key=lambda x: x.result["ms"])
                result["best_peer"] = best.row.label
                result["vs_best_peer"] = best.result["ms"] / result["ms"]
        elif baseline := ms_of(threads, functools.partial(is_reference_op, op=row.op)):
            result["vs_reference_op"] = baseline / result["ms"]
        if threads != fewest and (alone := ms_of(fewest, functools.partial(has_label, label=row.label))):
            result["thread_scaling"] = alone / result["ms"]


def is_peer(x: Timed, dtype: str, threads: int) -> bool:
    return (x.setup.threads == threads and x.row.kind in PEER_KINDS and x.row.op is None and "ms" in x.result
            and x.result["computes_in"] in (dtype, FULL_PRECISION))


def is_reference_op(row: Row, op: str | None) -> bool:
    return row.kind == OP and row.op == op and row.backend == REFERENCE_OPS


def has_label(row: Row, label: str) -> bool:
    return row.label == label
