"""Side-by-side throughput: ``wdsr-fast bench`` and ``benchmarks/run.py``.

The command line: the cases (presets x scales x output sizes x batches x dtypes), the backends, the results folder.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .. import ops
from ..model import PRESETS, SCALES
from .measure import measure, peak_rates
from .report import environment, format_table, write_results
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
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default: 5 CPU, 100 GPU)")
    parser.add_argument("--out", type=Path, help="results folder (default: benchmarks/results/<date>-<device>)")
    parser.add_argument("--with-triton-on-cpu", dest="triton_on_cpu", action="store_true",
                        help="time the Triton interpreter on CPU too (a correctness tool, very slow)")
    parser.add_argument("--compile-on-cpu", action="store_true", help="time torch.compile rows on CPU too (slow)")
    parser.add_argument("--compile", dest="compile_rows", choices=("all", "default", "max", "none"), default="all",
                        help="torch.compile rows: default and max-autotune (all), one of them, or none (max-autotune "
                             "compiles for minutes)")
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
    if args.quick:
        args.presets, args.scales, args.sizes, args.batch = ["wdsr-b-32x16"], [2], [(256, 256)], [1]
        args.dtypes = args.dtypes or (["fp32", "fp16"] if device.type == "cuda" else ["fp32"])
    dtypes = sorted(set(args.dtypes or (DTYPE_ORDER if device.type == "cuda" else ["fp32"])), key=DTYPE_ORDER.index)
    repeats = args.repeats or (100 if device.type == "cuda" else (3 if args.quick else 5))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    peaks = {d: peak_rates(device, DTYPES[d], repeats) for d in dtypes}
    env = environment(device)
    env["peaks"] = {d: {"tflops": f / 1e12, "gbps": b / 1e9} for d, (f, b) in peaks.items()}
    rows, eager_fp32 = [], {}
    for preset_name in args.presets:
        for scale in args.scales:
            for w, h in args.sizes:
                for batch in args.batch:
                    for dtype in dtypes:
                        setup = Setup.of(Case(preset_name, scale, w, h, batch, dtype), device, args)
                        rows += measure(setup, repeats, peaks[dtype], eager_fp32)
    print(f"{env['device']}, torch {env['torch']}, triton {env['triton']}, commit {env['commit']}; peaks: "
          + ", ".join(f"{d} {p['tflops']:.1f} TFLOP/s {p['gbps']:.0f} GB/s" for d, p in env["peaks"].items()))
    print(format_table(rows))
    out = args.out or Path("benchmarks/results") / f"{env['date'][:10]}-{device.type}{'-quick' if args.quick else ''}"
    write_results(rows, env, out)
    print(f"results in {out}/ (results.json, results.csv, throughput.png)")
    return 0
