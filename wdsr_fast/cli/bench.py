"""``wdsr-fast bench`` (also ``benchmarks/run.py``): side-by-side throughput of every backend and its peers."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .. import ops
from ..bench.rows import DTYPES
from ..bench.suite import DEFAULT_PRESETS, DEFAULT_SIZES, Plan, run_benchmark
from ..bench.suite import parse_case as suite_parse_case
from ..model import PRESETS, SCALES

DESCRIPTION = "Side-by-side throughput of WDSR: every backend, its peers and each fused op, measured interleaved."


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
    parser.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS), choices=sorted(PRESETS))
    parser.add_argument("--scales", nargs="+", type=int, default=list(SCALES), choices=SCALES)
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=list(DEFAULT_SIZES), help="output sizes WxH")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--dtypes", nargs="+", default=None, choices=sorted(DTYPES),
                        help="default: fp32 fp16 bf16 on GPU, fp32 on CPU")
    parser.add_argument("--backends", nargs="+", default=None, choices=ops.BACKENDS,
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
                             "one of them, or none (default: all on CPU, except none with --quick, where the first "
                             "call compiles for tens of seconds; default on GPU, where max-autotune tunes for "
                             "minutes)")
    parser.add_argument("--max-autotune-on-cpu", action="store_true",
                        help="time torch.compile's max-autotune on CPU too (minutes of tuning)")
    parser.add_argument("--cases", nargs="+", type=parse_case, default=None, metavar="PRESET:SCALE:WxH:BATCH:DTYPE",
                        help="measure these cases (output size WxH) instead of the product of --presets, --scales, "
                             "--sizes, --batch and --dtypes, e.g. wdsr-b-32x16:2:3840x2160:1:fp16 (1080p to 4K)")
    parser.add_argument("--with-ieee-triton", dest="ieee_triton", action="store_true",
                        help="time fp32 Triton on a GPU with TF32 off too (IEEE dots on FMAs: minutes per case); "
                             "with PyTorch's default (torch.backends.cudnn.allow_tf32 on) fp32 Triton runs TF32")
    parser.add_argument("--triton-blocks", nargs="+", choices=ops.TRITON_BLOCK_VARIANTS, default=None,
                        help="the Triton WDSR-B block kernels timed side by side (default: all; 'tiled' is the "
                             "triton rows, others add -<name> rows)")
    video = parser.add_argument_group("video", "--video: a video upscaled end to end (decode, network, encode "
                                               "pipelined) against the network alone on the same frames")
    video.add_argument("--video", action="store_true", help="the video benchmark instead of the backends' race "
                                                            "(one --sizes output size, default 960x540; --dtypes "
                                                            "fp16: in half precision, as upscale --half)")
    video.add_argument("--frames", type=int, default=None, help="frames of the clip (default: 10 on CPU, 120 on GPU)")
    video.add_argument("--codec", default=None, help="video encoder (default: libx264, the clip's family)")
    video.add_argument("--weights", default=None, help="checkpoint (default: the bundled weights of the scale)")
    return parser


def parse_case(text: str):
    try:
        return suite_parse_case(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="side-by-side throughput of every backend", description=DESCRIPTION)
    build_parser(parser).set_defaults(func=run)


def main(argv=None) -> int:
    """``benchmarks/run.py``: the same options as ``wdsr-fast bench``."""
    return run(build_parser(argparse.ArgumentParser(prog="benchmarks/run.py", description=DESCRIPTION))
               .parse_args(argv))


def run(args: argparse.Namespace) -> int:
    if args.video:
        return run_video(args)
    try:
        plan = Plan.of(args.device, args.quick, args.presets, args.scales, args.sizes, args.batch, args.dtypes,
                       args.backends, args.threads, args.repeats, args.memory, args.out, args.compile_rows,
                       args.triton_on_cpu, args.max_autotune_on_cpu, args.cases, args.ieee_triton,
                       args.triton_blocks)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    out = run_benchmark(plan)
    print(f"results in {out}/ (results.json, results.csv, throughput.png)")
    return 0


def run_video(args: argparse.Namespace) -> int:
    from ..bench.video import VideoBench, run_video_benchmark
    from ..io.video import VideoError

    sizes = [(960, 540)] if args.sizes == list(DEFAULT_SIZES) else args.sizes
    on_gpu = args.device == "cuda"
    if args.dtypes not in (None, ["fp32"], ["fp16"]):
        raise SystemExit(f"error: --video measures fp32 or fp16 (the upscale command's --half), one of them; got "
                         f"--dtypes {' '.join(args.dtypes)}")
    try:
        bench = VideoBench(device=args.device, scale=args.scales[0] if args.scales != list(SCALES) else 2,
                           out_w=sizes[0][0], out_h=sizes[0][1],
                           frames=args.frames or (4 if args.quick else 120 if on_gpu else 10),
                           rounds=args.repeats or (1 if args.quick else 5),
                           threads=args.threads[0] if args.threads else None,
                           batch=args.batch[0] if args.batch != [1, 4] else None, half=args.dtypes == ["fp16"],
                           codec=args.codec, weights=args.weights, out=args.out)
        bench.in_size  # noqa: B018 - checks the size against the scale
        run_video_benchmark(bench)
    except (ValueError, VideoError) as exc:
        raise SystemExit(f"error: {exc}") from None
    return 0
