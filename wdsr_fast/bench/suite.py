"""Side-by-side throughput: ``wdsr-fast bench`` and ``benchmarks/run.py``.

The command line: the cases (presets x scales x output sizes x batches x dtypes), the backends, the results folder.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from .. import ops
from ..model import PRESETS, SCALES
from .measure import CPU_MATMUL_SIZE, GPU_MATMUL_SIZE, measure, peak_rates
from .memory import METHOD as CPU_MEMORY_METHOD
from .report import environment, format_table, short_cpu_name, write_results
from .rows import DTYPES, Case, Setup

DTYPE_ORDER = ("fp32", "fp16", "bf16")  # fp32 first: the other dtypes are compared with its eager time


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1920x1080, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--device", choices=ops.DEVICE_TYPES, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="a run of under a minute: one small case")
    parser.add_argument("--presets", nargs="+", default=["wdsr-b-32x16", "wdsr-a-baseline"], choices=sorted(PRESETS))
    parser.add_argument("--scales", nargs="+", type=int, default=list(SCALES), choices=SCALES)
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(256, 256), (1280, 720), (1920, 1080)],
                        help="output sizes WxH")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--dtypes", nargs="+", default=None, choices=sorted(DTYPES),
                        help="default: fp32 fp16 bf16 on GPU, fp32 on CPU")
    parser.add_argument("--backends", nargs="+", default=list(reversed(ops.BACKENDS)), choices=ops.BACKENDS,
                        help="default: all, the plain torch ops first")
    parser.add_argument("--threads", nargs="+", type=int, default=None,
                        help="torch's CPU threads (and the ONNX runtimes'); several values are measured in one run, "
                             "interleaved (e.g. --threads 1 2 for the scaling); default: torch's current count")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds of timed calls per row, round-robin over the rows (default: 7 on CPU, 3 with "
                             "--quick; on GPU 3 rounds of a do_bench median)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                        help="measure the peak memory of a forward (CPU: a fresh process per row, about 5 s each); "
                             "default: on, except with --quick on CPU")
    parser.add_argument("--out", type=Path, help="results folder (default: benchmarks/results/<date>-<device>, "
                                                 "with the CPU's short name on CPU)")
    parser.add_argument("--with-triton-on-cpu", dest="triton_on_cpu", action="store_true",
                        help="time the Triton interpreter on CPU too (a correctness tool, very slow)")
    parser.add_argument("--compile", dest="compile_rows", choices=("all", "default", "max", "none"), default=None,
                        help="torch.compile rows: default mode (and, on CPU, with freezing) and max-autotune (all), "
                             "one of them, or none (default: all, except none with --quick on CPU, where the first "
                             "call compiles for tens of seconds)")
    parser.add_argument("--max-autotune-on-cpu", action="store_true",
                        help="time torch.compile's max-autotune on CPU too (minutes of tuning)")
    return parser


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="side-by-side throughput of every backend",
                                   description=__doc__.split("\n\n")[0])
    build_parser(parser).set_defaults(func=run)


def main(argv=None) -> int:
    return run(build_parser(argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0]))
               .parse_args(argv))


def run(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA GPU is visible to torch")
    if any(b < 1 for b in args.batch):
        raise SystemExit("error: --batch must be positive")
    if args.threads is not None and any(t < 1 for t in args.threads):
        raise SystemExit("error: --threads must be positive")
    if args.repeats is not None and args.repeats < 1:
        raise SystemExit("error: --repeats must be positive")
    on_cpu = device.type == "cpu"
    if args.quick:
        args.presets, args.scales, args.sizes, args.batch = ["wdsr-b-32x16"], [2], [(256, 256)], [1]
        args.dtypes = args.dtypes or (["fp32"] if on_cpu else ["fp32", "fp16"])
    if args.compile_rows is None:
        args.compile_rows = "none" if args.quick and on_cpu else "all"
    memory = (not (args.quick and on_cpu)) if args.memory is None else args.memory
    threads = sorted(set(args.threads or [torch.get_num_threads()])) if on_cpu else [torch.get_num_threads()]
    dtypes = sorted(set(args.dtypes or (DTYPE_ORDER if not on_cpu else ["fp32"])), key=DTYPE_ORDER.index)
    rounds = args.repeats or (3 if on_cpu and args.quick else 7 if on_cpu else 3)
    repeats = 100  # GPU: calls in each round's do_bench median
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    env = environment(device)
    peaks = {d: peak_rates(device, DTYPES[d], threads, rounds, repeats) for d in dtypes}
    env["peaks"] = {d: {str(t): {"gflops": f / 1e9, "gbps": b / 1e9} for t, (f, b) in p.items()}
                    for d, p in peaks.items()}
    env["peak_matmul"] = f"{CPU_MATMUL_SIZE if on_cpu else GPU_MATMUL_SIZE}^3 matmul"
    env["threads"], env["rounds"] = threads, rounds
    env["peak_memory_method"] = (CPU_MEMORY_METHOD if on_cpu else "torch.cuda.max_memory_allocated of one forward"
                                 ) if memory else None
    rows, eager_fp32 = [], {}
    for preset_name in args.presets:
        for scale in args.scales:
            for w, h in args.sizes:
                for batch in args.batch:
                    for dtype in dtypes:
                        case = Case(preset_name, scale, w, h, batch, dtype)
                        print(f"measuring {preset_name} x{scale} {w}x{h} batch {batch} {dtype}, threads "
                              f"{', '.join(map(str, threads))}, {rounds} rounds ...", file=sys.stderr, flush=True)
                        with tempfile.TemporaryDirectory() as folder:
                            setup = Setup.of(case, device, args, Path(folder))
                            rows += measure(setup, threads, rounds, repeats, peaks[dtype], eager_fp32, memory)
    if hasattr(os, "getloadavg"):
        env["load_average_at_end"] = os.getloadavg()
    print(f"{env['device']} ({', '.join(env['cpu_flags']) or env['torch_cpu_capability']}), torch {env['torch']}, "
          f"commit {env['commit']}; {env['peak_matmul']} and copy peaks: "
          + "; ".join(f"{d} {t} thr {p['gflops']:.0f} GFLOP/s {p['gbps']:.0f} GB/s"
                      for d, by_threads in env["peaks"].items() for t, p in by_threads.items()))
    print(format_table(rows))
    if not memory:
        print("peak memory not measured" + (" (--quick; --memory measures it)" if args.quick else ""))
    out = args.out or Path("benchmarks/results") / (
        f"{env['date'][:10]}-{'cpu-' + short_cpu_name() if on_cpu else device.type}{'-quick' if args.quick else ''}")
    write_results(rows, env, out)
    print(f"results in {out}/ (results.json, results.csv, throughput.png)")
    return 0
