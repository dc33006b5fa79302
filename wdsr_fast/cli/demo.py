"""`wdsr-fast demo`: run WDSR on a real photo that ships offline (scikit-image's astronaut) and time it.

With bundled weights for the scale, the photo is downscaled, upscaled back by WDSR-B and by bicubic, both
are scored against the original (PSNR on Y, the SR convention) and written to --out. Without them (no
trained weights in this install) the presets are only timed on the photo, and no image is written: an
untrained network's output is not an upscaled image. A quick benchmark follows unless --no-bench.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..bench.suite import Plan, run_benchmark
from ..bench.timing import time_call
from ..inference.fast_wdsr import FastWDSR
from ..io.images import save_png, tensor_to_uint8, uint8_to_tensor
from ..model import SCALES, load_model, preset
from ..ops import DEVICE_TYPES
from ..train.imresize import imresize
from ..train.metrics import psnr_y
from ..weights import bundled_path

SAMPLE_PHOTO = "astronaut"
TIMED_PRESETS = ("wdsr-b-32x16", "wdsr-a-baseline")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="upscale a real photo that ships offline and time it",
                                   description="Run WDSR on a real photo that ships offline (scikit-image's "
                                               "astronaut) and time it.")
    parser.add_argument("--scale", type=int, default=2, choices=SCALES)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=DEVICE_TYPES)
    parser.add_argument("--out", type=Path, default=Path("demo_out"),
                        help="folder for the images (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="LR side in pixels for the timing (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default: %(default)s)")
    parser.add_argument("--no-bench", action="store_true", help="skip the quick benchmark")
    parser.set_defaults(func=run)


def load_photo() -> np.ndarray:
    try:
        from skimage import data
    except ImportError as exc:  # an optional dependency of the demo only
        raise SystemExit("the demo needs scikit-image for its sample photo: pip install scikit-image") from exc
    return getattr(data, SAMPLE_PHOTO)()  # (512, 512, 3) uint8


def time_model(model, image: torch.Tensor, repeats: int):
    """(output, median seconds per call after warm-up: weight folding, kernel compilation)."""
    with torch.inference_mode():
        return model(image), time_call(lambda: model(image), image.device, repeats)


def run(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    photo = load_photo()
    weights = bundled_path(args.scale)
    if weights is not None:
        upscale_photo(FastWDSR.from_reference(load_model(weights)).to(device).eval(), photo, args)
    else:
        print(f"no bundled weights for x{args.scale} in this install: timing the presets with untrained weights "
              f"(no image is written)")
    lr = uint8_to_tensor(photo[: args.size, : args.size], 255.0).to(device)
    for name in TIMED_PRESETS:
        model = FastWDSR.from_reference(preset(name, args.scale)).to(device).eval()
        _, seconds = time_model(model, lr, args.repeats)
        h, w = lr.shape[-2:]
        print(f"{name} x{args.scale}: {w}x{h} -> {w * args.scale}x{h * args.scale} on {device} "
              f"(backend {model.last_backend}): {1e3 * seconds:.1f} ms per image, median of {args.repeats}")
    if not args.no_bench:
        out = run_benchmark(Plan.of(args.device, quick=True, out=args.out / "bench"))
        print(f"benchmark results in {out}/ (results.json, results.csv, throughput.png)")
    return 0


def upscale_photo(model, photo: np.ndarray, args: argparse.Namespace) -> None:
    """Downscale the photo, upscale it back with WDSR and bicubic, score both, write the images."""

    s = args.scale
    hr = photo[: photo.shape[0] // s * s, : photo.shape[1] // s * s]
    lr = imresize(hr, 1 / s)  # MATLAB-compatible bicubic, as SR benchmarks make their LR images
    bicubic = imresize(lr, s)
    sr_tensor, seconds = time_model(model, uint8_to_tensor(lr, model.config.rgb_range).to(args.device), args.repeats)
    sr = tensor_to_uint8(sr_tensor, model.config.rgb_range)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, img in (("lr", lr), ("bicubic", bicubic), ("wdsr", sr), ("hr", hr)):
        save_png(img, args.out / f"{SAMPLE_PHOTO}_x{s}_{name}.png")
    print(f"{SAMPLE_PHOTO} {lr.shape[1]}x{lr.shape[0]} -> {sr.shape[1]}x{sr.shape[0]} (x{s}, bundled WDSR-B, "
          f"backend {model.last_backend}): {1e3 * seconds:.1f} ms per image; PSNR-Y vs the original: "
          f"WDSR-B {psnr_y(sr, hr, s):.2f} dB, bicubic {psnr_y(bicubic, hr, s):.2f} dB; images in {args.out}/")
