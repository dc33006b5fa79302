"""MATLAB-compatible bicubic ``imresize`` (antialiased), the resize SR datasets are made with.

Facts of MATLAB's algorithm (no code of it is used): Keys' cubic kernel with a = -0.5; when shrinking by
s < 1 the kernel is stretched to width 4/s and scaled by s (antialiasing); output pixel x (1-based) samples
input coordinate u = x/s + (1 - 1/s)/2; borders mirror symmetrically; each output's weights are normalised
to sum to 1; the two axes are resized one after the other, the one shrinking most first; uint8 input gives
uint8 output, rounded and clipped.
"""
from __future__ import annotations

import math

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(weights, indices), each (out_len, taps): output i = sum_t weights[i, t] * input[indices[i, t]]."""
    shrink = scale < 1
    width = 4.0 / scale if shrink else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if shrink else cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])  # symmetric border, 0-based
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    used = np.any(weights != 0, axis=0)
    return weights[:, used], indices[:, used]


def _resize_axis(array: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    weights, indices = contributions(array.shape[axis], out_len, scale)
    moved = np.moveaxis(array, axis, 0)  # (in_len, ...)
    gathered = moved[indices]  # (out_len, taps, ...)
    out = np.einsum("ot,ot...->o...", weights, gathered)
    return np.moveaxis(out, 0, axis)


def imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) image by ``scale`` like MATLAB's ``imresize(image, scale)`` (bicubic).

    The output is ceil(H * scale) x ceil(W * scale); uint8 in, uint8 out (rounded, clipped); floats stay
    float64.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    out = image.astype(np.float64)
    for axis in (0, 1):  # equal scales on both axes: MATLAB's order is rows, then columns
        out = _resize_axis(out, axis, int(math.ceil(image.shape[axis] * scale)), scale)
    if image.dtype == np.uint8:
        return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)  # MATLAB rounds halves up
    return out
