#!/usr/bin/env python
"""How far the CPU's bf16 path is from float64 on real photos, against float32 and torch's own bf16.

    python benchmarks/cpu_bf16_error.py                 # the bundled WDSR-B weights x2, x3, x4 on six photos

For each photo of scikit-image's sample data (RGB, 8-bit) and each bundled model, the network's output before
rounding to 8 bits, run four ways: float64 (the reference model), float32 and bfloat16 on the cpu backend
(FastWDSR), and bfloat16 on the torch backend (torch's bf16 convolutions). PSNR in dB of each against float64, on
the [0, 255] scale (the output of an 8-bit image; above 58.9 dB the error is below half a level on average).
Needs a CPU with AVX512-BF16 for the cpu backend's bf16 row. Prints a Markdown table.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from skimage import data

from wdsr_fast import FastWDSR, load_model, ops
from wdsr_fast.weights import bundled_path

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina")
SIDE = 256  # a centre crop of each photo, in LR pixels


def crop(name: str) -> torch.Tensor:
    """(1, 3, SIDE, SIDE) float32 in [0, 255]: the centre of an RGB sample photo."""
    pixels = getattr(data, name)()[..., :3]
    top, left = (pixels.shape[0] - SIDE) // 2, (pixels.shape[1] - SIDE) // 2
    pixels = np.ascontiguousarray(pixels[top:top + SIDE, left:left + SIDE])
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].float()


def psnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    mse = float(((out.double() - ref) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def main() -> None:
    if ops.unavailable_reason("cpu", "cpu", dtype=torch.bfloat16) is not None:
        raise SystemExit(f"no bf16 CPU kernels here: {ops.unavailable_reason('cpu', 'cpu', dtype=torch.bfloat16)}")
    print("| model | photo | float32 | bf16, cpu backend | bf16, torch backend |")
    print("| --- | --- | --- | --- | --- |")
    for scale in (2, 3, 4):
        reference = load_model(bundled_path(scale)).eval()
        runs = {"fp32": FastWDSR.from_reference(reference, backend="cpu").eval(),
                "bf16-cpu": FastWDSR.from_reference(reference, backend="cpu").to(torch.bfloat16).eval(),
                "bf16-torch": FastWDSR.from_reference(reference, backend="torch").to(torch.bfloat16).eval()}
        exact = load_model(bundled_path(scale)).double().eval()
        with torch.inference_mode():
            for name in PHOTOS:
                image = crop(name)
                ref = exact(image.double())
                scores = {}
                for row, model in runs.items():
                    dtype = torch.float32 if row == "fp32" else torch.bfloat16
                    scores[row] = psnr(model(image.to(dtype)), ref)
                    assert model.last_backend == row.split("-")[-1] if row != "fp32" else model.last_backend == "cpu"
                print(f"| WDSR-B 32x16 x{scale} | {name} | {scores['fp32']:.1f} | {scores['bf16-cpu']:.1f} | "
                      f"{scores['bf16-torch']:.1f} |")


if __name__ == "__main__":
    main()
