"""PSNR and SSIM the way SR papers report them.

Both images are uint8 (H, W, 3) RGB (SR output clamped and rounded, as a saved image would be). The Y channel
is ITU-R BT.601 studio swing, as MATLAB's ``rgb2ycbcr``: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255.
``shave`` pixels are cropped from every border first (the convention: shave = scale). SSIM is Wang et al.'s,
with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, averaged over the valid window
positions.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

BT601_Y = np.array([65.481, 128.553, 24.966]) / 255.0


def _check(sr: np.ndarray, hr: np.ndarray, shave: int) -> None:
    if sr.shape != hr.shape or sr.ndim != 3 or sr.shape[2] != 3:
        raise ValueError(f"expected two RGB images of the same shape, got {sr.shape} and {hr.shape}")
    if min(sr.shape[:2]) <= 2 * shave:
        raise ValueError(f"image {sr.shape[:2]} is too small to shave {shave} pixels from each border")


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 255] -> (H, W) float64 Y in [16, 235]."""
    return 16.0 + image.astype(np.float64) @ BT601_Y


def _crop(image: np.ndarray, shave: int) -> np.ndarray:
    return image[shave:image.shape[0] - shave, shave:image.shape[1] - shave] if shave else image


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    _check(sr, hr, shave)
    return _psnr(_crop(rgb_to_y(sr), shave), _crop(rgb_to_y(hr), shave))


def psnr_rgb(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    _check(sr, hr, shave)
    return _psnr(_crop(sr, shave), _crop(hr, shave))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    _check(sr, hr, shave)
    a = torch.from_numpy(_crop(rgb_to_y(sr), shave))[None, None]
    b = torch.from_numpy(_crop(rgb_to_y(hr), shave))[None, None]
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after shaving, got {tuple(a.shape[-2:])}")
    window = _gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
