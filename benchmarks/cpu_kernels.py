#!/usr/bin/env python
"""The fused CPU kernels against plain PyTorch, in one process, fp32.

    python benchmarks/cpu_kernels.py                      # the default table (a few minutes on 2 cores)
    python benchmarks/cpu_kernels.py --threads 1 --block-sizes 64x64 --model-sizes 128x128 --repeats 3

Rows, at each thread count (the thread counts interleaved too):
- ``matmul``: a 2048^3 fp32 matmul, the machine's measured peak (measured before and after the other rows; the
  better of the two is used);
- ``block:<path>``: one WDSR-B block (32 -> 192 -> 25 -> 3x3 -> 32) on a channels_last feature map: the fused op
  of the cpu backend on each instruction-set path this CPU runs, and ``block:reference``, the op of
  ``wdsr_fast/ops/reference.py`` on the same folded weights (what the torch backend runs);
- ``blockA:cpu`` / ``blockA:reference``: one WDSR-A block of the ``wdsr-a-baseline`` preset (32 -> 3x3 -> 128
  -> ReLU -> 3x3 -> 32), the cpu backend's op (its default path here) against the reference op;
- ``model:<row>``: WDSR-B 32x16 x2 on an LR image: FastWDSR on the cpu backend (``fast-cpu``) and on the torch
  backend (``fast-torch``), and the eager reference model in channels_last (``eager-cl``), the baseline of
  the model rows (``block:reference`` is that of the block rows).
The candidates of one size are timed round-robin (one call each, in turn), wall-clock; the table gives the median
and the best call, GFLOP/s (2 FLOPs per multiply-add, convs only) and that rate over the matmul peak of the same
thread count (median over median, best over best: on a shared machine the best calls are those no other process
interrupted).
Results: ``results.json`` and ``results.md`` in the output folder, with the CPU, torch version and commit.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

from wdsr_fast import FastWDSR, ops, preset
from wdsr_fast.bench.report import cpu_name
from wdsr_fast.bench.work import macs_per_pixel
from wdsr_fast.io.atomic import write_text
from wdsr_fast.ops import cpu_backend, reference


def commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except OSError:
        return None


def round_robin(candidates: dict, threads: list[int], repeats: int) -> dict[tuple[str, int], tuple[float, float]]:
    """(median, best) seconds per call of each candidate at each thread count, keyed (name, threads): every
    (candidate, threads) pair is called once in turn, `repeats` times over, after a warm-up call each."""
    def call(fn, n):
        torch.set_num_threads(n)
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    pairs = [(name, n) for name in candidates for n in threads]
    for name, n in pairs:
        call(candidates[name], n)
    times = {pair: [] for pair in pairs}
    for _ in range(repeats):
        for name, n in pairs:
            times[(name, n)].append(call(candidates[name], n))
    return {pair: (statistics.median(t), min(t)) for pair, t in times.items()}


def rows_of(times: dict, size: str, flops: float) -> list[dict]:
    return [dict(row=name, threads=n, size=size, seconds=median, best_seconds=best, flops=flops)
            for (name, n), (median, best) in times.items()]


def matmul_rows(threads: list[int], repeats: int) -> list[dict]:
    """The matmul at each thread count in turn (MKL loses half its 2-thread speed when the count changes
    between calls, so these calls are not interleaved)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    times = {}
    for n in threads:
        times.update(round_robin({"matmul": lambda: a @ b}, [n], repeats))
    return rows_of(times, "2048^3", 2.0 * 2048**3)


def with_isa(isa: str, fn):
    def call():
        saved = os.environ.get(cpu_backend.ISA_ENV)
        os.environ[cpu_backend.ISA_ENV] = isa
        try:
            return fn()
        finally:
            if saved is None:
                del os.environ[cpu_backend.ISA_ENV]
            else:
                os.environ[cpu_backend.ISA_ENV] = saved
    return call


def block_rows(model, size, threads: list[int], repeats: int) -> list[dict]:
    cfg = model.config
    folded = FastWDSR.from_reference(model).folded(torch.device("cpu"), torch.float32)
    weights = folded.blocks[0]
    x = torch.randn(1, cfg.n_feats, *size).contiguous(memory_format=torch.channels_last)
    candidates = {f"block:{isa}": with_isa(isa, lambda: cpu_backend.wdsr_b_block(x, *weights, cfg.res_scale))
                  for isa in cpu_backend.isa_paths()}
    candidates["block:reference"] = lambda: reference.wdsr_b_block(x, *weights, cfg.res_scale)
    flops = 2.0 * macs_per_pixel(cfg)["block"] * size[0] * size[1]
    return rows_of(round_robin(candidates, threads, repeats), f"{size[0]}x{size[1]}", flops)


def block_a_rows(model, size, threads: list[int], repeats: int) -> list[dict]:
    """One WDSR-A block (32 -> 3x3 -> 128 -> ReLU -> 3x3 -> 32): the cpu backend (the fused block with AVX-512,
    oneDNN's convolutions with the ReLU and residual fused in elsewhere) against the reference op."""
    cfg = model.config
    weights = FastWDSR.from_reference(model).folded(torch.device("cpu"), torch.float32).blocks[0]
    x = torch.randn(1, cfg.n_feats, *size).contiguous(memory_format=torch.channels_last)
    candidates = {"blockA:cpu": lambda: cpu_backend.wdsr_a_block(x, *weights, cfg.res_scale),
                  "blockA:reference": lambda: reference.wdsr_a_block(x, *weights, cfg.res_scale)}
    with torch.inference_mode():
        times = round_robin(candidates, threads, repeats)
    return rows_of(times, f"{size[0]}x{size[1]}", 2.0 * macs_per_pixel(cfg)["block"] * size[0] * size[1])


def model_rows(model, size, threads: list[int], repeats: int) -> list[dict]:
    cfg = model.config
    image = torch.rand(1, 3, *size) * 255
    fast_cpu = FastWDSR.from_reference(model, backend="auto", check_finite=False).eval()
    fast_torch = FastWDSR.from_reference(model, backend="torch", check_finite=False).eval()
    eager_cl = preset("wdsr-b-32x16", scale=cfg.scale).eval().to(memory_format=torch.channels_last)
    eager_cl.load_state_dict(model.state_dict())
    image_cl = image.contiguous(memory_format=torch.channels_last)
    candidates = {"model:fast-cpu": lambda: fast_cpu(image), "model:fast-torch": lambda: fast_torch(image),
                  "model:eager-cl": lambda: eager_cl(image_cl)}
    with torch.inference_mode():
        times = round_robin(candidates, threads, repeats)
    if fast_cpu.last_backend != "cpu":
        raise RuntimeError(f"FastWDSR(backend='auto') ran {fast_cpu.last_backend!r}, not the cpu backend")
    macs = macs_per_pixel(cfg)
    flops = 2.0 * (macs["head_conv"] + macs["blocks"] + macs["tail_shuffle"]) * size[0] * size[1]
    return rows_of(times, f"{size[0]}x{size[1]}", flops)


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def format_table(rows: list[dict]) -> str:
    lines = ["| threads | size (HxW) | row | median ms | best ms | GFLOP/s (median) | of matmul peak (median) "
             "| of matmul peak (best) | vs baseline (median) |", "| --- " * 9 + "|"]
    for r in sorted(rows, key=lambda r: r["threads"]):
        vs = f"{r['speedup']:.2f}x" if r.get("speedup") else "-"
        lines.append(f"| {r['threads']} | {r['size']} | {r['row']} | {r['seconds'] * 1e3:.2f} "
                     f"| {r['best_seconds'] * 1e3:.2f} | {r['gflops']:.1f} | {r['of_peak']:.0%} "
                     f"| {r['of_best_peak']:.0%} | {vs} |")
    return "\n".join(lines)


def format_scaling(rows: list[dict], threads: list[int]) -> str:
    """Time at the fewest threads over time at each other thread count, per row and size."""
    first = {(r["row"], r["size"]): r for r in rows if r["threads"] == threads[0]}
    lines = ["| row | size (HxW) | threads | speed-up (median) | speed-up (best) |", "| --- " * 5 + "|"]
    for r in rows:
        base = first[(r["row"], r["size"])]
        if r["threads"] != threads[0]:
            lines.append(f"| {r['row']} | {r['size']} | {threads[0]} -> {r['threads']} "
                         f"| {base['seconds'] / r['seconds']:.2f}x | {base['best_seconds'] / r['best_seconds']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--block-sizes", type=parse_size, nargs="+", default=[(64, 64), (128, 128), (270, 480)])
    parser.add_argument("--model-sizes", type=parse_size, nargs="+", default=[(128, 128), (270, 480)])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results/"
                                                                 "<date>-cpu-kernels)")
    args = parser.parse_args()
    reason = ops.unavailable_reason("cpu", "cpu")
    if reason:
        raise SystemExit(f"the cpu backend cannot run here: {reason}")
    torch.manual_seed(0)
    model = preset("wdsr-b-32x16", scale=2).eval()
    model_a = preset("wdsr-a-baseline", scale=2).eval()
    threads = sorted(args.threads)
    measured = []
    for size in args.block_sizes:
        measured += block_rows(model, size, threads, args.repeats)
        measured += block_a_rows(model_a, size, threads, args.repeats)
    for size in args.model_sizes:
        measured += model_rows(model, size, threads, args.repeats)
    matmul = {}  # the better of two measurements, before and after the other rows
    for r in matmul_rows(threads, args.repeats) + matmul_rows(threads, args.repeats):
        best = matmul.setdefault(r["threads"], r)
        best["best_seconds"] = min(best["best_seconds"], r["best_seconds"])
        best["seconds"] = min(best["seconds"], r["seconds"])
    rows = list(matmul.values()) + measured
    baseline = {(r["size"], r["row"].split(":")[0], r["threads"]): r["seconds"] for r in measured
                if r["row"] in ("block:reference", "blockA:reference", "model:eager-cl")}
    for r in rows:
        peak = matmul[r["threads"]]
        r["gflops"] = r["flops"] / r["seconds"] / 1e9
        r["of_peak"] = r["flops"] / r["seconds"] / (peak["flops"] / peak["seconds"])
        r["of_best_peak"] = r["flops"] / r["best_seconds"] / (peak["flops"] / peak["best_seconds"])
        base = baseline.get((r["size"], r["row"].split(":")[0], r["threads"]))
        r["speedup"] = base / r["seconds"] if base and r["row"] != "matmul" else None
    tables = format_table(rows) + ("\n\n" + format_scaling(rows, threads) if len(threads) > 1 else "")
    print(tables)
    env = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), cpu=cpu_name(),
               isa_paths=list(cpu_backend.isa_paths()), torch=torch.__version__, commit=commit(),
               python=platform.python_version(), repeats=args.repeats)
    out = args.out or Path(__file__).parent / "results" / f"{datetime.date.today()}-cpu-kernels"
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.json", json.dumps(dict(environment=env, rows=rows), indent=1) + "\n")
    header = (f"CPU: {env['cpu']}; instruction-set paths: {', '.join(env['isa_paths'])} (default first); "
              f"torch {env['torch']}; commit {env['commit']}; {env['date']}; {args.repeats} round-robin calls per "
              f"row and thread count (median and best).\n\n")
    write_text(out / "results.md", header + tables + "\n")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
