"""Timing the rows of a case, and the roofline they are held against.

Timing is ``timing.time_call``: on a GPU ``triton.testing.do_bench`` medians (CUDA events) after warm-up, on a CPU
wall-clock medians after one warm-up call. The roofline of a row is max(FLOPs / peak FLOP/s, minimum bytes / peak
bandwidth), with both peaks measured in the same run (a large matmul in the row's dtype, a large copy);
``roofline`` is that time over the measured time.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from ..timing import time_call
from .rows import COMPILE, OP, REFERENCE, Case, Row, Setup, rows_of
from .work import model_work, op_work


def peak_rates(device: torch.device, dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    """(FLOP/s of a large matmul in ``dtype``, bytes/s of a large copy), measured now."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype if device.type == "cuda" else torch.float32)
    flops = 2 * n**3 / time_call(lambda: a @ a, device, repeats)
    src = torch.empty(2**28 if device.type == "cuda" else 2**25, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    bandwidth = 2 * src.numel() / time_call(lambda: dst.copy_(src), device, repeats)
    return flops, bandwidth


def peak_memory(fn: Callable[[], object], device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(device)


def measure(s: Setup, repeats: int, peaks: tuple[float, float], eager_fp32: dict) -> list[dict]:
    """One result per row of the case: its timing and rates, or why it was skipped. ``peaks``: (FLOP/s, bytes/s)
    for the case's dtype; ``eager_fp32``: the eager fp32 time per (preset, scale, size, batch), filled by the fp32
    case and read by the others."""
    cfg, case = s.reference.config, s.case
    element = torch.empty((), dtype=s.dtype).element_size()
    rows = rows_of(s)
    results = []
    for row in rows:
        result = {**dataclasses.asdict(case), "row": row.label, "kind": row.kind, "backend": row.backend,
                  "op": row.op}
        if row.op is None:
            flops, min_bytes = model_work(cfg, case.lr_pixels, element)
        else:
            flops, min_bytes = op_work(cfg, row.op, case.lr_pixels, element)
        try:
            with torch.inference_mode():
                fn = row.make()
                seconds = time_call(fn, s.device, repeats)
                memory = peak_memory(fn, s.device)
        except Exception as exc:  # a row that cannot run here is reported, not fatal
            result["skipped"] = f"{type(exc).__name__}: {exc}"[:160]
            results.append(result)
            continue
        roofline = max(flops / peaks[0], min_bytes / peaks[1])
        result.update(ms=1e3 * seconds, ms_per_image=1e3 * seconds / case.batch,
                      mpix_per_s=case.batch * case.out_w * case.out_h / seconds / 1e6,
                      tflops=flops / seconds / 1e12, gbps=min_bytes / seconds / 1e9, roofline=roofline / seconds,
                      peak_mem_mb=None if memory is None else memory / 2**20)
        results.append(result)
    compare(case, rows, results, eager_fp32)
    return results


def compare(case: Case, rows: list[Row], results: list[dict], eager_fp32: dict) -> None:
    """Speed-ups: whole-model rows against eager fp32 and torch.compile, op rows against the torch backend's op."""
    def ms_of(wanted: Callable[[Row], bool]) -> float | None:
        return next((r.get("ms") for row, r in zip(rows, results, strict=True) if wanted(row)), None)

    key = (case.preset, case.scale, case.out_w, case.out_h, case.batch)
    eager = ms_of(lambda row: row.kind == REFERENCE and not row.variant)
    if case.dtype == "fp32" and eager:
        eager_fp32[key] = eager
    compiled = ms_of(lambda row: row.kind == COMPILE and not row.variant)
    for row, result in zip(rows, results, strict=True):
        if "ms" not in result:
            continue
        if row.op is None:
            if key in eager_fp32:
                result["vs_eager_fp32"] = eager_fp32[key] / result["ms"]
            if compiled:
                result["vs_compile"] = compiled / result["ms"]
        elif baseline := ms_of(lambda other, op=row.op: other.kind == OP and other.op == op and
                                other.backend == "torch"):
            result["vs_reference_op"] = baseline / result["ms"]
