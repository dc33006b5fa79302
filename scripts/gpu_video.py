#!/usr/bin/env python3
"""The video measurement on a GPU, in about two minutes: the ``bench-video`` step of ``scripts/gpu_check``.

    python scripts/gpu_video.py --out out/gpu/bench-video                      # on a GPU
    python scripts/gpu_video.py --device cpu --dtype fp32 --size 64x48 --frames 3 --rounds 1   # anywhere

1080p -> 4K x2 (WDSR-B 32x16, the bundled weights) in fp16: a synthetic 1080p H.264 + AAC clip made on the spot
(``wdsr_fast.bench.video``), upscaled end to end (decoding, the network in batches of 4 and encoding pipelined,
the file written) against the network alone on the same frames, the stage that bounds it named, the encoder where
it is that (``wdsr-fast bench --video``). In this order:

1. PyAV: where ``av`` does not import, the wheel carried in out/wheels/ (``pip download av --no-deps -d
   out/wheels``, about 34 MiB; unpacked it is over 100 MiB, more than a device call carries) is unpacked into
   out/pyav/ and put on the path; with neither, one line says so and the script stops.
2. Each NVENC encoder is opened at the output size: it opens, or the reason it does not (the H100 has no NVENC).
3. The row with the default encoder (libx264, the clip's family), then, where an NVENC encoder opened and
   --budget-s leaves the time the first row took, the row again with it (HEVC first).
4. 16-bit frames (10-bit video's path) through the GPU against the CPU's float32 output on the same frames.

Results: <out>/<encoder>/results.json per row and the tables on stdout. The timings are of the machine it ran on.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's wdsr_fast

NVENC_ORDER = ("hevc_nvenc", "h264_nvenc", "av1_nvenc")  # the one measured: the first that opens


def ensure_module(name: str, wheels: Path, target: Path) -> str:
    """Import ``name``; where it is missing, unpack the last of its wheels in ``wheels`` into ``target`` and import
    it from there. Returns where it came from; a one-line SystemExit when it is neither here nor carried."""
    try:
        return str(Path(importlib.import_module(name).__file__ or name).parent)
    except ImportError:
        pass
    found = sorted(wheels.glob(f"{name}-*.whl"))
    if not found:
        raise SystemExit(f"error: the Python module {name} is not on this machine and no wheel of it was carried in "
                         f"{wheels}/ (pip download {name} --no-deps -d {wheels}, then carry the file)")
    with zipfile.ZipFile(found[-1]) as wheel:
        wheel.extractall(target)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    importlib.import_module(name)
    return f"{found[-1].name}, unpacked into {target}"


def size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def check_16_bit(device: str, half: bool, weights: str | None) -> None:
    """Two 16-bit frames through ``device`` against the CPU's float32 output: the largest difference, in 10-bit
    levels."""
    import numpy as np

    from wdsr_fast import Upscaler

    rng = np.random.default_rng(0)
    frames = (rng.integers(0, 1024, (2, 96, 128, 3)) * 64).astype(np.uint16)  # 10-bit levels in 16-bit samples
    got = Upscaler(weights, scale=2 if weights is None else None, device=device, half=half).upscale_pixels(frames)
    want = Upscaler(weights, scale=2 if weights is None else None, device="cpu").upscale_pixels(frames)
    assert got.dtype == np.uint16 and got.shape == want.shape, (got.dtype, got.shape)
    worst = np.abs(got.astype(np.int64) - want).max() / 64
    print(f"16-bit frames on {device} ({'fp16' if half else 'fp32'}) against the CPU's fp32: at most {worst:.2f} "
          f"10-bit levels apart")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "gpu" / "bench-video")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument("--size", type=size, default=(3840, 2160), help="output size WxH (default: 4K)")
    parser.add_argument("--frames", type=int, default=48, help="frames of the clip (default: 2 s at 24 fps)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", default=None, help="checkpoint (default: the bundled x2 weights)")
    parser.add_argument("--budget-s", type=float, default=100,
                        help="no NVENC row when the first row's time would take the run past this")
    parser.add_argument("--wheels", type=Path, default=ROOT / "out" / "wheels", help="where a carried av wheel is")
    args = parser.parse_args(argv)
    started = time.monotonic()
    where = ensure_module("av", args.wheels, ROOT / "out" / "pyav")
    import av

    from wdsr_fast.bench.video import VideoBench, run_video_benchmark
    from wdsr_fast.io.video import encoder_problem

    print(f"PyAV {av.__version__} (FFmpeg {getattr(av, 'ffmpeg_version_info', '?')}) from {where}", flush=True)
    width, height = args.size
    opens = []
    for name in NVENC_ORDER:
        problem = encoder_problem(name, width, height)
        print(f"{name}: {f'opens at {width}x{height}' if problem is None else problem}", flush=True)
        if problem is None:
            opens.append(name)
    last = 0.0
    for codec in [None, *opens[:1]]:
        if codec is not None and time.monotonic() - started + last > args.budget_s:
            print(f"{codec}: not measured (--budget-s {args.budget_s:g} s would be passed)")
            continue
        start = time.monotonic()
        run_video_benchmark(VideoBench(device=args.device, scale=2, out_w=width, out_h=height, frames=args.frames,
                                       rounds=args.rounds, half=args.dtype == "fp16", codec=codec,
                                       weights=args.weights, out=args.out / (codec or "libx264")))
        last = time.monotonic() - start
    check_16_bit(args.device, args.dtype == "fp16", args.weights)
    print(f"bench-video done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
