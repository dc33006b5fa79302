"""Compile every Triton kernel for an H100 (sm_90) without a GPU, as CI's stand-in for running them there.

Run by tests/test_triton_compiles.py in a subprocess without TRITON_INTERPRET (the interpreter replaces the
compiler). Catches what the interpreter does not check: GPU-only shape rules of tl.dot, type errors in the
lowering, shared-memory overflows, and local memory (stack) in the fp16/bf16 fused block and tail, the WDSR-B
speed path. Prints one line per kernel: name, shared memory, registers, stack bytes per thread, tensor-core use.

Seen with triton 3.6: every fp32 kernel keeps a stack (block 14 KB, tail 10-24 KB, WDSR-A convs 2 KB per
thread): IEEE fp32 tl.dot lowers to FMAs that hold whole K-slices of the operands per thread. The driver reserves
local memory for the stack of every thread that can be resident: 14 KB x 2048 threads x 132 SMs is about 3.8 GB
on an H100 (arithmetic, not measured). Only an 8x8 haloed block tile (78% of the 1x1 chain recomputed, against
31% at 16x16) compiled without one; which is faster is a question for a GPU timing. The CUDA backend's fp32
block has no stack (tests/test_cuda_resources.py).
"""
import os
import re
import subprocess
import sys
import tempfile

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from wdsr_fast.ops.triton import block_b as triton_block_b
from wdsr_fast.ops.triton import conv as triton_conv
from wdsr_fast.ops.triton import tail as triton_tail

TARGET = GPUTarget("cuda", 90, 32)
H100_SHARED_BYTES = 227 * 1024
POINTER = {"fp32": "*fp32", "fp16": "*fp16", "bf16": "*bf16"}
DOT = {"fp32": tl.float32, "fp16": tl.float16, "bf16": tl.bfloat16}


def compile_kernel(kernel, dtype: str, constexprs: dict, floats=(), fp32_pointers=(), num_warps=4):
    signature = {}
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = "*fp32" if name in fp32_pointers else POINTER[dtype]
        else:
            signature[name] = "fp32" if name in floats else "i32"
    constants = {(i,): constexprs[n] for i, n in enumerate(kernel.arg_names) if n in constexprs}
    source = ASTSource(kernel, signature, constexprs=constants)
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps})


def registers_and_stack(compiled) -> tuple[int, int]:
    """Registers and stack bytes per thread of the kernel's SASS (cuobjdump -res-usage on its cubin)."""
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([cuobjdump, "-res-usage", cubin.name], capture_output=True, text=True, check=True)
    registers, stack = re.search(r"REG:(\d+) STACK:(\d+)", usage.stdout).groups()
    return int(registers), int(stack)


def report(name, compiled, dtype, no_stack=False):
    ptx = compiled.asm["ptx"]
    tensor_cores = "wgmma" in ptx or "mma.sync" in ptx
    shared = compiled.metadata.shared
    registers, stack = registers_and_stack(compiled)
    print(f"{name} {dtype}: shared {shared} B, registers {registers}, stack {stack} B, "
          f"tensor cores {'yes' if tensor_cores else 'no'}")
    assert shared <= H100_SHARED_BYTES, f"{name}: {shared} B of shared memory"
    if dtype != "fp32":
        assert tensor_cores, f"{name} {dtype}: no mma instruction in the PTX"
    if no_stack:
        assert stack == 0, f"{name} {dtype}: {stack} B of stack per thread (local memory)"


def main(dtypes, quick=False):
    """Every kernel in every dtype; ``quick``: every kernel in fp16, the fused block and tail x2 in the others."""
    for dtype in dtypes:
        every_kernel = not quick or dtype == "fp16"
        dots = dict(DOT_DTYPE=DOT[dtype], PRECISION="ieee")
        compiled = compile_kernel(triton_block_b._wdsr_b_block_kernel, dtype, dict(
            C=32, E=192, L=25, C_PAD=32, E_BLOCK=64, L_PAD=32, TILE_H=triton_block_b.TILE_H,
            TILE_W=triton_block_b.TILE_W, **dots), floats=("res_scale",), num_warps=8)
        report("wdsr_b_block", compiled, dtype, no_stack=dtype != "fp32")
        for scale in (2, 3, 4) if every_kernel else (2,):
            compiled = compile_kernel(triton_tail._tail_shuffle_kernel, dtype, dict(
                C=32, C_PAD=32, SCALE=scale, OUT_PAD=max(16, triton.next_power_of_2(3 * scale**2)),
                BLOCK_H=triton_tail.BLOCK_H, BLOCK_W=triton_tail.BLOCK_W, SKIP_TAPS=triton_tail.SKIP_TAPS,
                SKIP_K=triton_tail.SKIP_K, **dots), floats=("norm_scale",), fp32_pointers=("mean_ptr",))
            report(f"tail_shuffle x{scale}", compiled, dtype, no_stack=dtype != "fp32")
        convs = (("head_conv", 3, 32, dict(NORMALISE=True, RELU=False, RESIDUAL=False)),
                 ("wdsr_a expand", 32, 128, dict(NORMALISE=False, RELU=True, RESIDUAL=False)),
                 ("wdsr_a reduce", 128, 32, dict(NORMALISE=False, RELU=False, RESIDUAL=True)))
        for name, ci, co, flags in convs if every_kernel else ():
            compiled = compile_kernel(triton_conv._conv3x3_kernel, dtype, dict(
                CI=ci, CO=co, K_BLOCK=min(64, max(16, triton.next_power_of_2(ci))), CO_BLOCK=min(64, co),
                BLOCK_H=triton_conv.BLOCK_H, BLOCK_W=triton_conv.BLOCK_W, **flags, **dots),
                floats=("res_scale", "norm_scale"), fp32_pointers=("mean_ptr",))
            report(name, compiled, dtype)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    main([a for a in sys.argv[1:] if a != "--quick"] or ["fp32", "fp16", "bf16"], quick)
