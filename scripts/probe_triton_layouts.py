"""The Triton WDSR-B block kernels run directly on NCHW and channels_last inputs, against the float64 reference: the
GPU confirmation for the first H100 run's finding (the tiled kernel given NCHW fp16/bf16 x of 32 channels wrote
wrong values, relative error 0.8-1.0; the same inputs channels_last were right). ``scripts/gpu_check
probe-triton-layouts`` runs it.

    python scripts/probe_triton_layouts.py --dtypes fp16             # on a GPU (default: fp16 and bf16)
    TRITON_INTERPRET=1 python scripts/probe_triton_layouts.py --device cpu --dtypes fp32 fp16   # anywhere

Each kernel form is named by how its expand dot takes x, as the sm_90 compile shows it
(``scripts/triton_sm90_compile.py``: "SS tA1" is A from shared memory, M-major; "RS" is A from registers):

    tiled channels_last             SS tA0   what every GPU run so far used, right on the first H100 run
    tiled nchw A-in-shared          SS tA1   the NCHW form of the first GPU run (block_b.launch(a_from_registers=False))
    tiled nchw A-in-registers       RS       the NCHW form the kernel now compiles (the op still copies NCHW x)
    persistent channels_last        SS tA0   the persistent kernel, its default configuration
    persistent nchw A-in-shared     SS tA1   its default configuration (with prefetch, x is staged M-major)
    persistent nchw A-in-registers  RS       a configuration without prefetch

What it should show, if the lead (the M-major A operand with two k16 steps) is the cause: every "A-in-shared" NCHW
row of 32 channels FAILs, on ordinary sizes as on thin ones, and passes with 8 channels (one k16 step); every
"A-in-registers" and channels_last row passes. Then the op can read NCHW as it is (``block_b.READ_NCHW = True``).
If an "A-in-registers" row fails too, the cause is not the operand form: look at the load of x (its mask and
strides) instead. If only thin maps fail, the cause is the specialisation of a stride or size equal to 1.

Prints one line per case (kernel form, shape, dtype, relative error, pass/FAIL), then a verdict line, and exits 1 if
a case expected to pass failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's wdsr_fast

import torch  # noqa: E402

from wdsr_fast.ops import reference  # noqa: E402
from wdsr_fast.ops.triton import block_b, block_b_persistent  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 2e-2}  # as tests/test_ops.py
# (n, c, h, w): an ordinary map of 32 channels over several tiles first, then the first run's failing thin shapes, then
# 8 channels (one k16 step).
SHAPES = [(2, 32, 19, 21), (1, 32, 17, 1), (2, 32, 1, 30), (2, 8, 9, 13)]
NO_PREFETCH = next(c for c in block_b_persistent.CONFIGS if not c.prefetch)
FORMS = {  # name: (channels_last, run(x, weights)), expected to pass
    "tiled channels_last": (True, lambda x, w: block_b.launch(x, *w, 0.7)),
    "tiled nchw A-in-shared": (False, lambda x, w: block_b.launch(x, *w, 0.7, a_from_registers=False)),
    "tiled nchw A-in-registers": (False, lambda x, w: block_b.launch(x, *w, 0.7, a_from_registers=True)),
    "persistent channels_last": (True, lambda x, w: block_b_persistent.wdsr_b_block(x, *w, 0.7)),
    "persistent nchw A-in-shared": (False, lambda x, w: block_b_persistent.wdsr_b_block(x, *w, 0.7)),
    "persistent nchw A-in-registers": (False, lambda x, w: block_b_persistent.wdsr_b_block(
        x, *w, 0.7, config=NO_PREFETCH)),
}
SUSPECT = ("tiled nchw A-in-shared", "persistent nchw A-in-shared")  # the forms under suspicion: may fail


def case(shape, dtype, form: str, device: str, seed: int) -> float:
    n, c, h, w = shape
    wide, low_rank = 6 * c, int(0.8 * c)
    gen = torch.Generator().manual_seed(seed)

    def randn(*size, scale=1.0):
        return (torch.randn(*size, generator=gen) * scale).to(device, dtype)

    x = randn(n, c, h, w)
    channels_last, run = FORMS[form]
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
    weights = [randn(wide, c, 1, 1, scale=0.3), randn(wide, scale=0.1), randn(low_rank, wide, 1, 1, scale=0.3),
               randn(low_rank, scale=0.1), randn(c, low_rank, 3, 3, scale=0.3), randn(c, scale=0.1)]
    out = run(x, weights)
    ref = reference.wdsr_b_block(x.double(), *[t.double() for t in weights], 0.7)
    if not torch.isfinite(out).all():
        return float("inf")
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


def verdict(results: dict) -> str:
    """One line: what the table says about the cause (module docstring)."""
    def failed(form, channels=None):
        return [s for (f, s, _), ok in results.items() if f == form and not ok and (channels is None or
                                                                                     s[1] == channels)]
    shared32 = failed("tiled nchw A-in-shared", 32)
    registers = failed("tiled nchw A-in-registers") + failed("persistent nchw A-in-registers")
    thin_only = shared32 and all(1 in s[2:] for s in shared32)
    if not shared32 and not registers:
        return ("verdict: every form passed here (the first run's failure did not reproduce): the op can read NCHW "
                "as it is (block_b.READ_NCHW = True)")
    if registers:
        return "verdict: A in registers fails too: not the operand form; look at the load of x (mask, strides)"
    if thin_only:
        return ("verdict: A M-major in shared memory fails on thin maps only: a stride or size of 1 specialised; "
                "A in registers passes: the op can read NCHW as it is (block_b.READ_NCHW = True)")
    return ("verdict: A M-major in shared memory fails with 32 channels, A in registers passes: the operand form is "
            "the cause; the op can read NCHW as it is (block_b.READ_NCHW = True)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=["fp16", "bf16"])
    parser.add_argument("--shapes", type=int, default=len(SHAPES), help="the first N shapes only")
    parser.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    args = parser.parse_args(argv)
    results = {}
    unexpected = 0
    for shape in SHAPES[:args.shapes]:
        for name in args.dtypes:
            dtype = DTYPES[name]
            for form in args.forms:
                err = case(shape, dtype, form, args.device, seed=sum(shape))
                ok = err < TOLERANCE[dtype]
                results[(form, shape, name)] = ok
                unexpected += not ok and form not in SUSPECT
                print(f"{form:31} {str(shape):16} {name}  relative error {err:.2e}  {'pass' if ok else 'FAIL'}",
                      flush=True)
    failed = sum(not ok for ok in results.values())
    print(f"{failed} case(s) failed, {unexpected} of them in a form expected to pass")
    print(verdict(results))
    return 1 if unexpected else 0


if __name__ == "__main__":
    raise SystemExit(main())
