"""Evaluation as SR papers do it.

For each image: PSNR and SSIM on Y (BT.601) with ``scale`` pixels shaved, and RGB PSNR (same shave), of the
model's output (clamped, rounded to uint8) against the HR image; bicubic (MATLAB-compatible) upscaling of the
same LR image is the baseline row. HR-only folders get their LR images by MATLAB-compatible bicubic.
"""
from __future__ import annotations

import statistics

import numpy as np
import torch

from ..io.images import tensor_to_uint8, uint8_to_tensor
from .data import find_pairs, load_pair
from .imresize import imresize
from .metrics import psnr_rgb, psnr_y, ssim_y

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
        means = {m: statistics.fmean(float(r[m]) for r in mine) for m in METRICS}
        rows.append({"image": "MEAN", "method": method, **means})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'image':<24} {'method':<8} {'PSNR-Y':>8} {'SSIM-Y':>8} {'PSNR-RGB':>9}"]
    lines += [f"{r['image']:<24} {r['method']:<8} {r['psnr_y']:8.2f} {r['ssim_y']:8.4f} {r['psnr_rgb']:9.2f}"
              for r in rows]
    return "\n".join(lines)


def rows_csv(rows: list[dict]) -> str:
    """The rows as CSV text, with a header line."""
    header = ["image", "method", *METRICS]
    return "\n".join([",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]) + "\n"
