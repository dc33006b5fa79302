"""The Triton WDSR-B block kernel run directly on NCHW and on channels_last inputs, shape by shape, against the
float64 reference: the probe for the first GPU run's finding (NCHW fp16/bf16 input of 32 channels one pixel high
or wide gave wrong values on an H100, channels_last did not). ``scripts/gpu_check probe-triton-layouts`` runs it.

    python scripts/probe_triton_layouts.py                       # on a GPU: fp32, fp16, bf16
    TRITON_INTERPRET=1 python scripts/probe_triton_layouts.py --device cpu --dtypes fp32 fp16   # anywhere

Prints one line per case (layout, shape, dtype, relative error, pass/FAIL) and exits 1 if any case fails.
"""
from __future__ import annotations

import argparse

import torch

from wdsr_fast.ops import reference
from wdsr_fast.ops.triton import block_b

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 2e-2}  # as tests/test_ops.py
# (n, c, h, w): the failing shapes first, then their neighbours: width or height 1 and 2, 8 and 32 channels,
# one whole tile, odd sizes over several tiles.
SHAPES = [(1, 32, 17, 1), (2, 32, 1, 30), (1, 8, 17, 1), (2, 8, 1, 30), (1, 32, 17, 2), (2, 32, 2, 30),
          (1, 32, 14, 14), (2, 32, 19, 21), (2, 8, 9, 13)]


def case(shape, dtype, layout: str, device: str, seed: int) -> float:
    n, c, h, w = shape
    wide, low_rank = 6 * c, int(0.8 * c)
    gen = torch.Generator().manual_seed(seed)

    def randn(*size, scale=1.0):
        return (torch.randn(*size, generator=gen) * scale).to(device, dtype)

    x = randn(n, c, h, w)
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x.contiguous()
    weights = [randn(wide, c, 1, 1, scale=0.3), randn(wide, scale=0.1), randn(low_rank, wide, 1, 1, scale=0.3),
               randn(low_rank, scale=0.1), randn(c, low_rank, 3, 3, scale=0.3), randn(c, scale=0.1)]
    out = block_b.launch(x, *weights, 0.7)
    ref = reference.wdsr_b_block(x.double(), *[t.double() for t in weights], 0.7)
    if not torch.isfinite(out).all():
        return float("inf")
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--shapes", type=int, default=len(SHAPES), help="the first N shapes only")
    args = parser.parse_args(argv)
    failed = 0
    for shape in SHAPES[:args.shapes]:
        for name in args.dtypes:
            dtype = DTYPES[name]
            for layout in ("nchw", "channels_last"):
                err = case(shape, dtype, layout, args.device, seed=sum(shape))
                ok = err < TOLERANCE[dtype]
                failed += not ok
                print(f"{layout:13} {str(shape):16} {name}  relative error {err:.2e}  {'pass' if ok else 'FAIL'}")
    print(f"{failed} case(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
