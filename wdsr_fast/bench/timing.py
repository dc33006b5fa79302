"""Timing a call the same way everywhere (the demo, the benchmark): the median after warm-up."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_call(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds per call after warm-up: on a GPU ``triton.testing.do_bench`` (CUDA events, its own warm-up),
    elsewhere wall-clock time after one warm-up call."""
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=max(repeats, 20), return_mode="median") / 1e3
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
