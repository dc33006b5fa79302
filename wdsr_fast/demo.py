"""`wdsr-fast demo`: upscale a real photo that ships offline (scikit-image's astronaut), time it, and run a
quick benchmark.

The photo is downscaled by the chosen factor, upscaled back by WDSR-B (the bundled weights) and by
bicubic, and both are scored against the original (PSNR on Y, the SR convention). Outputs go to --out.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

SAMPLE_PHOTO = "astronaut"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="upscale a real photo that ships offline, time it, quick benchmark",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for the images (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default: %(default)s)")
    parser.add_argument("--no-bench", action="store_true", help="skip the quick benchmark")
    parser.set_defaults(func=run)


def load_photo() -> np.ndarray:
    try:
        from skimage import data
    except ImportError as exc:  # an optional dependency of the demo only
        raise SystemExit("the demo needs scikit-image for its sample photo: pip install scikit-image") from exc
    return getattr(data, SAMPLE_PHOTO)()  # (512, 512, 3) uint8


def run(args: argparse.Namespace) -> int:
    from . import FastWDSR, load_model
    from .data.imresize import imresize
    from .infer import save_png, tensor_to_uint8, uint8_to_tensor
    from .metrics import psnr
    from .weights import bundled_path

    weights = bundled_path(args.scale)
    if weights is None:
        raise SystemExit(f"no bundled weights for x{args.scale} in this install")
    device = torch.device(args.device)
    model = FastWDSR.from_reference(load_model(weights)).to(device).eval()

    hr = load_photo()
    hr = hr[: hr.shape[0] // args.scale * args.scale, : hr.shape[1] // args.scale * args.scale]
    lr = imresize(hr, 1 / args.scale)  # MATLAB-compatible bicubic, as SR datasets are made
    bicubic = imresize(lr, args.scale)
    image = uint8_to_tensor(lr, model.config.rgb_range).to(device)

    with torch.inference_mode():
        model(image)  # warm-up: folds the weights, compiles kernels
        times = []
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            sr_tensor = model(image)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    sr = tensor_to_uint8(sr_tensor, model.config.rgb_range)

    args.out.mkdir(parents=True, exist_ok=True)
    for name, img in (("lr", lr), ("bicubic", bicubic), ("wdsr", sr), ("hr", hr)):
        save_png(img, args.out / f"{SAMPLE_PHOTO}_x{args.scale}_{name}.png")
    ms = 1e3 * statistics.median(times)
    print(f"{SAMPLE_PHOTO}: {lr.shape[1]}x{lr.shape[0]} -> {sr.shape[1]}x{sr.shape[0]} (x{args.scale}) on {device}, "
          f"backend {model.last_backend}: {ms:.1f} ms per image (median of {args.repeats})")
    print(f"PSNR-Y vs the original: WDSR-B {psnr(sr, hr, args.scale):.2f} dB, "
          f"bicubic {psnr(bicubic, hr, args.scale):.2f} dB; images in {args.out}/")

    if not args.no_bench:
        from . import bench

        bench.main(["--quick", "--device", args.device])
    return 0
