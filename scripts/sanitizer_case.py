"""One small FastWDSR forward per scale and dtype (odd sizes, batch 2) on one backend (Triton and CUDA: with each
WDSR-B block kernel): the program that scripts/gpu_check runs under compute-sanitizer, so that every fused kernel of
the backend runs in every variant.

    python scripts/sanitizer_case.py --backend cuda            # on a GPU, under compute-sanitizer
    python scripts/sanitizer_case.py --backend torch --device cpu   # the same program anywhere (CI)

Exits non-zero, naming the case, if the backend asked for did not run or an output is not finite.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's wdsr_fast

import torch  # noqa: E402

from wdsr_fast import FastWDSR, ops  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("cuda", "triton", "torch"), required=True)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    variants = {"triton": ops.TRITON_BLOCK_VARIANTS, "cuda": ops.CUDA_BLOCK_VARIANTS}.get(args.backend, (None,))
    use_variant = ops.use_cuda_block_variant if args.backend == "cuda" else ops.use_triton_block_variant
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for scale in (2, 3, 4):
            for variant in variants:  # Triton and CUDA: each WDSR-B block kernel
                if args.backend == "cuda" and dtype == torch.float32 and variant != variants[0]:
                    continue  # fp32 runs the one CUDA-core block kernel under either name
                model = FastWDSR(variant="b", scale=scale, n_feats=32, n_resblocks=2, backend=args.backend)
                model = model.to(args.device).eval()
                image = (torch.rand(2, 3, 19, 21, generator=generator) * 255).to(args.device, dtype)
                with torch.inference_mode(), use_variant(variant):
                    out = model(image)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                if model.last_backend != args.backend or not out.isfinite().all():
                    raise SystemExit(f"{dtype} x{scale} {variant or ''}: ran {model.last_backend!r}, finite: "
                                     f"{bool(out.isfinite().all())}")
    print(f"small case ok: backend {args.backend}, fp32/fp16/bf16, x2/x3/x4"
          + (f", block kernels {', '.join(variants)}" if variants != (None,) else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
