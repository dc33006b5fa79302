"""``wdsr-fast eval``: PSNR/SSIM of a model on a folder of images, with bicubic as the baseline row."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..inference.fast_wdsr import FastWDSR
from ..io.atomic import write_text
from ..model import SCALES, CheckpointError, load_model
from ..ops import DEVICE_TYPES
from ..train.data import find_pairs
from ..train.evaluation import evaluate, format_rows, rows_csv
from ..weights import bundled_path

DESCRIPTION = ("For each image: PSNR and SSIM on Y (BT.601) with scale pixels shaved, and RGB PSNR, of the "
               "model's output against the HR image; MATLAB-compatible bicubic upscaling of the same LR image is "
               "the baseline row. HR-only folders get their LR images by MATLAB-compatible bicubic.")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="PSNR/SSIM of a model on a folder of images, with bicubic",
                                   description=DESCRIPTION)
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the bundled weights for --scale)")
    parser.add_argument("--data", type=Path, required=True, help="HR folder, DIV2K root, or HR folder with --lr")
    parser.add_argument("--lr", type=Path, help="folder of LR images matching --data (default: made by imresize)")
    parser.add_argument("--scale", type=int, required=True, choices=SCALES)
    parser.add_argument("--device", choices=DEVICE_TYPES, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--csv", type=Path, help="also write the rows to this CSV file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
        write_text(args.csv, rows_csv(rows))
    return 0
