#!/usr/bin/env python3
"""Where the GPU time goes, in under two minutes: the ``perf`` step of ``scripts/gpu_check``, run first.

    python scripts/gpu_perf.py --out out/gpu              # on a GPU: all three parts, within --budget-s
    python scripts/gpu_perf.py --device cpu --size 40x28   # anywhere: the plan and the timing code on a tiny case

1. ``ops``: each WDSR-B block kernel (Triton: the tiled one and every kept configuration of the persistent one,
   ``block_b_persistent.CONFIGS``; CUDA C++, where the extension is built or carried: the tiled kernel and the
   persistent one, ``WDSR_FAST_CUDA_BLOCK``), the Triton and CUDA tails and the reference ops (cuDNN), timed alone
   on the 960x540 features: with an L2 flush before each call (``triton.testing.do_bench``'s default: the inputs
   come from device memory) and without one (a CUDA graph of 20 calls back to back: as in the model, where a
   block's input was just written by the block before). With the achieved TFLOP/s and GB/s (the minimum bytes of
   ``bench/work.py``). Written to ``perf-ops.csv``; the table is printed again at the very end.
2. ``profile``: a torch.profiler kernel table of FastWDSR (WDSR-B 32x16 x2, 960x540 -> 1080p, fp16) replaying its
   CUDA graph, once per Triton block kernel ("tiled", "persistent"), then, where the extension is there, once per
   CUDA C++ block kernel: which kernels take the time in the graphed model. Written to ``perf-profile.txt``.
3. ``ncu``: Nsight Compute on one launch of each block kernel (speed of light, occupancy, launch statistics, warp
   states, memory workload: the shared-memory traffic the CUDA persistent kernel's design expects to be its
   limit): the Triton ones, then the CUDA C++ persistent and tiled ones; where ncu is missing, may not read the
   counters, or the extension is not there, a note says so and the step goes on. Written to
   ``perf-ncu-<kernel>.txt``.

The ops part checks each output against the float64 reference op (the error column); every part stops at the
budget (--budget-s), naming what it left out. The timings are of the device it ran on, nothing else.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's wdsr_fast

import torch  # noqa: E402

from wdsr_fast import FastWDSR, ops, preset  # noqa: E402
from wdsr_fast.bench.work import op_work  # noqa: E402
from wdsr_fast.ops import reference  # noqa: E402

PARTS = ("profile", "ops", "ncu")
WARM_CALLS = 20  # calls per graph replay in the L2-warm timing
NCU_SECTIONS = ("SpeedOfLight", "Occupancy", "LaunchStats", "WarpStateStats", "SchedulerStats",
                "MemoryWorkloadAnalysis")
# ncu's name for each block kernel it profiles (a "cuda-" prefix: the CUDA C++ kernel of that name), in order.
NCU_KERNELS = {"tiled": "_wdsr_b_block_kernel", "persistent": "_wdsr_b_block_persistent_kernel",
               "cuda-persistent": "regex:wdsr_b_block_persistent", "cuda-tiled": "regex:wdsr_b_block_mma"}


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def block_variants():
    """(label, a call of the block op on x and folded weights): the tiled kernel, then each persistent config."""
    from wdsr_fast.ops.triton import block_b, block_b_persistent

    variants = [("triton tiled", lambda x, w, r: block_b.launch(x, *w, r))]
    for config in block_b_persistent.CONFIGS:
        variants.append((f"triton persistent {config.name}",
                         lambda x, w, r, config=config: block_b_persistent.wdsr_b_block(x, *w, r, config=config)))
    return variants


def cuda_block_variants(device, cfg, dtype) -> tuple[list, str | None]:
    """(label, a call of the CUDA C++ block op on x and folded weights) for each of its kernels that runs here, and
    why the others do not (the extension neither built nor carried, a GPU without the shared memory), or None."""
    from wdsr_fast.ops import cuda_backend

    variants, reasons = [], []
    for variant in ops.CUDA_BLOCK_VARIANTS:
        with ops.use_cuda_block_variant(variant):
            reason = ops.unavailable_reason("cuda", device, cfg, dtype)
        if reason is not None:
            reasons.append(f"{variant}: {reason}")
            continue

        def call(x, w, r, variant=variant):
            with ops.use_cuda_block_variant(variant):
                return cuda_backend.wdsr_b_block(x, *w, r)

        variants.append((f"cuda {variant}", call))
    return variants, "; ".join(reasons) or None


def time_flushed(fn, device) -> float:
    """Median ms per call, L2 flushed before each (triton.testing.do_bench); on CPU the wall-clock median."""
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")
    start = time.perf_counter()  # the CPU run checks the code, it measures nothing worth keeping
    fn()
    return 1e3 * (time.perf_counter() - start)


def time_warm(fn, device) -> float:
    """ms per call of WARM_CALLS calls back to back in one CUDA graph (no flush: L2 holds what the last call left);
    the median of 5 replays. On CPU: the flushed timing's method."""
    if device.type != "cuda":
        return time_flushed(fn, device)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(WARM_CALLS):
            fn()
    graph.replay()
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / WARM_CALLS)
    return statistics.median(times)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double().cpu() - ref.cpu()).abs().max() / ref.abs().max().cpu()).item()


def part_ops(args, device, dtype, budget: Budget, out: Path) -> None:
    model = preset("wdsr-b-32x16", 2)
    fast = FastWDSR.from_reference(model).to(device).eval()
    folded = fast.folded(device, dtype)
    cfg = folded.config
    w, h = args.size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, cfg.n_feats, h, w, generator=gen).to(device, dtype).contiguous(memory_format=torch.channels_last)
    image = (torch.rand(1, 3, h, w, generator=gen) * 255).to(device, dtype)
    block_weights = folded.blocks[0]
    block_ref = reference.wdsr_b_block(x.double(), *[t.double() for t in block_weights], cfg.res_scale)
    tail_args = (x, image, *folded.tail, *folded.skip, folded.mean, cfg.pixel_norm_scale, cfg.scale)
    tail_ref = reference.tail_shuffle(*[a.double() if isinstance(a, torch.Tensor) else a for a in tail_args])
    triton_ops = ops.get_backend("triton") if ops.unavailable_reason("triton", device) is None else None
    cuda_variants, cuda_reason = cuda_block_variants(device, cfg, dtype)
    if cuda_reason is not None:
        print(f"ops: CUDA C++ rows left out ({cuda_reason})", flush=True)
    cases = [("block reference (cuDNN)", "wdsr_b_block",
              lambda: reference.wdsr_b_block(x, *block_weights, cfg.res_scale), block_ref)]
    if triton_ops is not None:
        cases += [(f"block {label}", "wdsr_b_block", lambda call=call: call(x, block_weights, cfg.res_scale),
                   block_ref) for label, call in block_variants()]
    cases += [(f"block {label}", "wdsr_b_block", lambda call=call: call(x, block_weights, cfg.res_scale), block_ref)
              for label, call in cuda_variants]
    cases.append(("tail reference (cuDNN)", "tail_shuffle", lambda: reference.tail_shuffle(*tail_args), tail_ref))
    if triton_ops is not None:
        cases.append(("tail triton", "tail_shuffle", lambda: triton_ops.tail_shuffle(*tail_args), tail_ref))
    if ops.unavailable_reason("cuda", device) is None:
        cuda_ops = ops.get_backend("cuda")
        cases.append(("tail cuda", "tail_shuffle", lambda: cuda_ops.tail_shuffle(*tail_args), tail_ref))
    element = torch.empty((), dtype=dtype).element_size()
    rows = []
    for label, op, fn, ref in cases:
        if budget.left() < 5:
            print(f"ops: out of budget before {label}")
            break
        with torch.inference_mode():
            err = rel_error(fn(), ref)
            flushed, warm = time_flushed(fn, device), time_warm(fn, device)
        flops, nbytes = op_work(cfg, op, w * h, element)
        rows.append({"op": label, "ms_flushed": flushed, "ms_warm": warm, "rel_err": err,
                     "tflops_flushed": flops / flushed / 1e9, "gbps_flushed": nbytes / flushed / 1e6})
        print(f"ops: {label}: {flushed:.4f} ms flushed, {warm:.4f} ms warm, error {err:.1e}", flush=True)
    with open(out / "perf-ops.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]) if rows else ["op"])
        writer.writeheader()
        writer.writerows(rows)
    SUMMARY.extend(table(rows, f"{w}x{h} {str(dtype).split('.')[-1]}"))


SUMMARY: list[str] = []  # the ops table, printed again at the very end


def table(rows: list[dict], case: str) -> list[str]:
    if not rows:
        return []
    width = max(len(r["op"]) for r in rows + [{"op": f"op ({case})"}])
    lines = [f"{'op (' + case + ')':{width}}  ms flushed  ms warm  TFLOP/s  GB/s  error"]
    lines += [f"{r['op']:{width}}  {r['ms_flushed']:10.4f}  {r['ms_warm']:7.4f}  {r['tflops_flushed']:7.1f}  "
              f"{r['gbps_flushed']:4.0f}  {r['rel_err']:.1e}" for r in rows]
    return lines


def part_profile(args, device, dtype, budget: Budget, out: Path) -> None:
    from torch.profiler import ProfilerActivity, profile

    w, h = args.size
    model = preset("wdsr-b-32x16", 2)
    image = (torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1)) * 255).to(device, dtype)
    lines = []
    runs = [("triton", variant, ops.use_triton_block_variant) for variant in ops.TRITON_BLOCK_VARIANTS]
    if ops.unavailable_reason("cuda", device, model.config, dtype) is None:  # the extension built or carried
        runs += [("cuda", variant, ops.use_cuda_block_variant) for variant in ops.CUDA_BLOCK_VARIANTS]
    for wanted, variant, use_variant in runs:
        if budget.left() < 10:
            lines.append(f"profile {wanted} {variant}: out of budget")
            break
        graphs = device.type == "cuda"
        backend = wanted if ops.unavailable_reason(wanted, device) is None else "torch"
        fast = FastWDSR.from_reference(model, backend=backend, cuda_graphs=graphs, check_finite=False).to(device)
        fast.eval()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with use_variant(variant), torch.inference_mode():
            for _ in range(2):
                fast(image)  # compile, capture
            if device.type == "cuda":
                torch.cuda.synchronize()
            with profile(activities=activities) as prof:
                for _ in range(5):
                    fast(image)
                if device.type == "cuda":
                    torch.cuda.synchronize()
        sort = "device_time_total" if device.type == "cuda" else "cpu_time_total"  # "cuda_..." is deprecated
        table = prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=60)
        lines += [f"== FastWDSR backend {backend}, block kernel {variant}, CUDA graphs {graphs}: 5 forwards of "
                  f"{w}x{h} {str(dtype).split('.')[-1]}", table]
        print(lines[-2] + "\n" + table, flush=True)
    (out / "perf-profile.txt").write_text("\n".join(lines) + "\n")


def part_ncu(args, device, dtype, budget: Budget, out: Path) -> None:
    ncu = shutil.which("ncu") or next((p for p in ("/usr/local/cuda/bin/ncu",) if os.path.exists(p)), None)
    for variant, kernel in NCU_KERNELS.items():
        path = out / f"perf-ncu-{variant}.txt"
        backend = "cuda" if variant.startswith("cuda-") else "triton"
        reason = ("not on a GPU" if device.type != "cuda" else "no ncu on PATH" if ncu is None
                  else ops.unavailable_reason(backend, device))
        if reason is not None:
            path.write_text(f"ncu skipped: {reason}\n")
            print(f"ncu {variant}: {path.read_text().strip()}")
            continue
        timeout = min(60.0, budget.left() - 5)
        if timeout < 20:
            path.write_text("ncu skipped: out of budget\n")
            print(f"ncu {variant}: out of budget")
            continue
        argv = [ncu, "--clock-control", "none", "--kernel-name", kernel, "--launch-skip", "1", "--launch-count", "1",
                *[arg for s in NCU_SECTIONS for arg in ("--section", s)], sys.executable, str(Path(__file__)),
                "launch", "--variant", variant, "--size", f"{args.size[0]}x{args.size[1]}"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            text = done.stdout + done.stderr
            if "ERR_NVGPUCTRPERM" in text or "permission" in text.lower() and done.returncode != 0:
                text = "ncu skipped: the performance counters may not be read here\n" + text
        except subprocess.TimeoutExpired:
            text = f"ncu stopped after {timeout:.0f} s\n"
        path.write_text(" ".join(argv) + "\n" + text)
        print(f"ncu {variant}: {path.name} ({len(text.splitlines())} lines)", flush=True)


def launch(args) -> None:
    """The target ncu profiles: the block op of one kernel (a "cuda-" prefix: the CUDA C++ backend's), three launches
    on the 960x540 features."""
    device = torch.device("cuda")
    dtype = torch.float16
    folded = FastWDSR.from_reference(preset("wdsr-b-32x16", 2)).to(device).eval().folded(device, dtype)
    w, h = args.size
    x = torch.randn(1, 32, h, w, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    backend, variant = ("cuda", args.variant[5:]) if args.variant.startswith("cuda-") else ("triton", args.variant)
    use_variant = ops.use_cuda_block_variant if backend == "cuda" else ops.use_triton_block_variant
    with use_variant(variant), torch.inference_mode():
        for _ in range(3):
            ops.get_backend(backend).wdsr_b_block(x, *folded.blocks[0], folded.config.res_scale)
    torch.cuda.synchronize()


def parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="*", help=f"parts to run: {', '.join(PARTS)} (default: all, in that order); "
                        "'launch' is ncu's target")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=parse_size, default=(960, 540), help="input (LR) size WxH")
    parser.add_argument("--budget-s", type=float, default=110)
    parser.add_argument("--variant", choices=list(NCU_KERNELS), default="tiled", help="for 'launch'")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out/gpu")))
    args = parser.parse_args(argv)
    unknown = [p for p in args.part if p not in (*PARTS, "launch")]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; the parts are {', '.join(PARTS)}")
    if args.part == ["launch"]:
        launch(args)
        return 0
    device, dtype = torch.device(args.device), torch.float16 if args.device == "cuda" else torch.float32
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget_s)
    parts = args.part or list(PARTS)
    failed: list[str] = []
    for name, run in (("ops", part_ops), ("profile", part_profile), ("ncu", part_ncu)):
        if name not in parts:
            continue
        if budget.left() < 5:
            print(f"{name}: not run (out of budget)")
            continue
        started = time.monotonic()
        try:
            run(args, device, dtype, budget, args.out)
        except Exception as exc:  # one part's failure does not cost the others their time
            failed.append(name)
            print(f"== {name} failed: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc()
        print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
    print("\n".join(["", *SUMMARY]))
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
