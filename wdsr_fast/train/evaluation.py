"""Evaluation as SR papers do it, and the ``wdsr-fast eval`` command.

For each image: PSNR and SSIM on Y (BT.601) with ``scale`` pixels shaved, and RGB PSNR (same shave), of the
model's output (clamped, rounded to uint8) against the HR image; bicubic (MATLAB-compatible) upscaling of the
same LR image is the baseline row. HR-only folders get their LR images by MATLAB-compatible bicubic.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from .data.datasets import find_pairs, load_pair
from .data.imresize import imresize
from .image_io import tensor_to_uint8, uint8_to_tensor
from .metrics import psnr_rgb, psnr_y, ssim_y
from .model import SCALES
from .ops import DEVICE_TYPES

METRICS = ("psnr_y", "ssim_y", "psnr_rgb")


def score(sr: np.ndarray, hr: np.ndarray, scale: int) -> dict[str, float]:
    return {"psnr_y": psnr_y(sr, hr, scale), "ssim_y": ssim_y(sr, hr, scale), "psnr_rgb": psnr_rgb(sr, hr, scale)}


def evaluate(model, data, scale: int, device="cpu") -> list[dict]:
    """Rows {image, method, psnr_y, ssim_y, psnr_rgb} for WDSR and bicubic on each image, then the two means."""
    pairs = find_pairs(data, scale) if not isinstance(data, list) else data
    model = model.to(device).eval()
    rows = []
    for pair in pairs:
        lr, hr = load_pair(pair, scale)
        with torch.inference_mode():
            sr = model(uint8_to_tensor(lr, model.config.rgb_range).to(device))
        sr_uint8 = tensor_to_uint8(sr, model.config.rgb_range)
        rows.append({"image": pair.name, "method": "wdsr", **score(sr_uint8, hr, scale)})
        rows.append({"image": pair.name, "method": "bicubic", **score(imresize(lr, scale), hr, scale)})
    for method in ("wdsr", "bicubic"):
        mine = [r for r in rows if r["method"] == method]
        rows.append({"image": "MEAN", "method": method, **{m: statistics.fmean(r[m] for r in mine) for m in METRICS}})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'image':<24} {'method':<8} {'PSNR-Y':>8} {'SSIM-Y':>8} {'PSNR-RGB':>9}"]
    lines += [f"{r['image']:<24} {r['method']:<8} {r['psnr_y']:8.2f} {r['ssim_y']:8.4f} {r['psnr_rgb']:9.2f}"
              for r in rows]
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="PSNR/SSIM of a model on a folder of images, with bicubic",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the bundled weights for --scale)")
    parser.add_argument("--data", type=Path, required=True, help="HR folder, DIV2K root, or HR folder with --lr")
    parser.add_argument("--lr", type=Path, help="folder of LR images matching --data (default: made by imresize)")
    parser.add_argument("--scale", type=int, required=True, choices=SCALES)
    parser.add_argument("--device", choices=DEVICE_TYPES, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--csv", type=Path, help="also write the rows to this CSV file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError, load_model
    from .fast import FastWDSR
    from .weights import bundled_path

    weights = args.weights or bundled_path(args.scale)
    if weights is None:
        raise SystemExit(f"error: no bundled weights for x{args.scale}; pass --weights FILE")
    try:
        model = load_model(weights)
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}") from None
    if model.config.scale != args.scale:
        raise SystemExit(f"error: {weights} is a x{model.config.scale} model but --scale {args.scale} was asked")
    try:
        pairs = find_pairs(args.data, args.scale, args.lr)
        rows = evaluate(FastWDSR.from_reference(model), pairs, args.scale, args.device)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(format_rows(rows))
    if args.csv:
        from .atomic import write_text

        header = ["image", "method", *METRICS]
        lines = [",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]
        write_text(args.csv, "\n".join(lines) + "\n")
    return 0
