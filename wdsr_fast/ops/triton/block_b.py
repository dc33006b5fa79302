"""Triton: the whole WDSR-B block in one kernel.

    y = x + res_scale * conv3x3(conv1x1_reduce(relu(conv1x1_expand(x))))

One program owns a TILE_H x TILE_W *haloed* tile of pixels (16 x 16 = 256 rows, a power of two as tl.arange
needs) and writes the (TILE_H-2) x (TILE_W-2) interior.

Stage 1 (per pixel, on tensor cores): the expand 1x1 runs E_BLOCK (64) wide channels at a time; each chunk is
biased, ReLU'd and immediately multiplied into the low-rank accumulator by its slice of the reduce 1x1, so the
wide activation (n_feats * 6 channels) only ever exists as one [256, 64] register tile and never reaches device
memory. Halo pixels are recomputed (+31% of the 1x1 work for 16 x 16) rather than exchanged between programs.
The low-rank tile is zeroed outside the image (the 3x3 zero-pads its input) and staged in a per-program scratch
slab (256 x L_PAD values), because Triton cannot shift a register tile by a pixel.

Stage 2: the 3x3 is 9 shifted reloads of that slab, each a [256, L_PAD] @ [L_PAD, C_PAD] dot, then bias,
res_scale and the residual (x, still in registers from stage 1) in the epilogue.
Recomputing the 1x1 chain per 3x3 tap instead would cost about 5.8x the MACs; staging costs one small
round trip through memory, hence staging.

Programs run along grid axis 0 only, image by image (program = image * tiles per image + tile): axis 1 would cap
the batch at 65535.

Design in numbers, WDSR-B 32x16 (C 32, E 192, L 25 -> L_PAD 32), 960x540, fp16: 2,691 programs of a 16x16 tile
(14x14 written); the 1x1 chain runs on 256/196 = 1.31x the pixels, the 3x3 on all 256 rows at K = 32 (25 useful);
bytes per tile: x 16 KB read (haloed), y 12.3 KB written, scratch 16 KB written and 9 x 16 KB reloaded, about 40 KB
of weights read (the 3x3's as a stride-9 gather); the scratch is 44 MB per block, beside 33 MB of activations read
and written, more than an H100's 50 MB L2 together. Compiled for sm_90 as a 1080p launch
(``scripts/triton_sm90_compile.py``, Triton 3.6): channels_last fp16 and bf16, 164 registers, 20 KB shared memory, no
stack, 1 CTA of 8 warps per SM; every dot on wgmma: expand 12 x m64n64k16 (A from shared memory), reduce
24 x m64n32k16 (A from registers), 3x3 36 x m64n32k16; 15 wgmma waits a tile. NCHW read as it is: 176 registers,
the expand's A from registers. fp32: TF32 255 registers and a 24 B stack; IEEE (FMA) a 17 KB stack per thread.
Measured on an H100: benchmarks/README.md, "Where the design numbers come from".
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common import triton_block_variant
from . import block_b_persistent
from .common import check_features, check_weights, dot_config, mm, new_output, num_warps, on_device, pad

TILE_H, TILE_W = 16, 16  # haloed; the interior written per program is 14 x 14
# Whether the op gives an NCHW x to the kernels as it is. On an H100 (2026-11-25) this kernel given NCHW fp16/bf16 x of
# 32 channels (thin maps were tested) wrote wrong values (relative error 0.8-1.0), the same inputs channels_last were
# right. Compiled for sm_90 (scripts/triton_sm90_compile.py), NCHW x was then the expand's A operand in shared
# memory M-major (wgmma transpose flag tA1), the only operand form no channels_last run uses; the kernels now keep an
# NCHW x's A operand in registers instead (RS wgmma, the reduce's form). The interpreter finds every layout right but
# cannot tell the forms apart: until scripts/probe_triton_layouts.py has run both on a GPU, the op copies NCHW x.
READ_NCHW = False
E_BLOCK = 64  # wide channels per chunk of the expand


@triton.jit
def _wdsr_b_block_kernel(
    x_ptr, w_expand_ptr, b_expand_ptr, w_reduce_ptr, b_reduce_ptr, w_conv_ptr, b_conv_ptr, y_ptr, scratch_ptr,
    H, W, tiles_w, num_tiles, res_scale,
    sxn, sxc, sxh, sxw, syn, syc, syh, syw,
    C: tl.constexpr, E: tl.constexpr, L: tl.constexpr,
    C_PAD: tl.constexpr, E_BLOCK: tl.constexpr, L_PAD: tl.constexpr,
    TILE_H: tl.constexpr, TILE_W: tl.constexpr, A_FROM_REGISTERS: tl.constexpr, DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    program = tl.program_id(0)
    n = program // num_tiles
    tile = program % num_tiles
    M: tl.constexpr = TILE_H * TILE_W
    rows = tl.arange(0, M)
    i = rows // TILE_W  # position inside the haloed tile
    j = rows % TILE_W
    h = (tile // tiles_w) * (TILE_H - 2) + i - 1  # position in the image
    w = (tile % tiles_w) * (TILE_W - 2) + j - 1
    inside = (h >= 0) & (h < H) & (w >= 0) & (w < W)
    c = tl.arange(0, C_PAD)
    c_ok = c < C
    rank = tl.arange(0, L_PAD)
    l_ok = rank < L

    # Stage 1: x [M, C_PAD] -> low-rank t [M, L_PAD], the wide activation chunk by chunk.
    x_base = x_ptr + n.to(tl.int64) * sxn
    x = tl.load(x_base + h[:, None] * sxh + w[:, None] * sxw + c[None, :] * sxc,
                mask=inside[:, None] & c_ok[None, :], other=0.0)
    if A_FROM_REGISTERS:  # a no-op select Triton does not fold: the expand's A operand stays in registers
        x = tl.where(inside[:, None], x, 0.0)  # (READ_NCHW)
    t = tl.zeros([M, L_PAD], dtype=tl.float32)
    for e0 in tl.static_range(0, E, E_BLOCK):
        e = e0 + tl.arange(0, E_BLOCK)
        e_ok = e < E
        w_expand = tl.load(w_expand_ptr + e[None, :] * C + c[:, None], mask=c_ok[:, None] & e_ok[None, :],
                           other=0.0)  # [C_PAD, E_BLOCK]
        b_expand = tl.load(b_expand_ptr + e, mask=e_ok, other=0.0).to(tl.float32)
        wide = tl.maximum(mm(x, w_expand, DOT_DTYPE, PRECISION) + b_expand[None, :], 0.0)  # [M, E_BLOCK]
        w_reduce = tl.load(w_reduce_ptr + rank[None, :] * E + e[:, None], mask=e_ok[:, None] & l_ok[None, :],
                           other=0.0)  # [E_BLOCK, L_PAD]
        t += mm(wide, w_reduce, DOT_DTYPE, PRECISION)
    b_reduce = tl.load(b_reduce_ptr + rank, mask=l_ok, other=0.0).to(tl.float32)
    t = tl.where(inside[:, None], t + b_reduce[None, :], 0.0)  # the 3x3 sees zeros outside the image

    scratch = scratch_ptr + program.to(tl.int64) * (M * L_PAD)
    tl.store(scratch + rows[:, None] * L_PAD + rank[None, :], t.to(scratch_ptr.dtype.element_ty))
    tl.debug_barrier()  # the whole tile's t is written before any thread reads a neighbour's

    # Stage 2: 3x3 over the staged tile, 9 shifted reloads.
    acc = tl.zeros([M, C_PAD], dtype=tl.float32)
    for tap in tl.static_range(9):
        si = i + (tap // 3 - 1)
        sj = j + (tap % 3 - 1)
        ok = (si >= 0) & (si < TILE_H) & (sj >= 0) & (sj < TILE_W)
        t_tap = tl.load(scratch + (si * TILE_W + sj)[:, None] * L_PAD + rank[None, :], mask=ok[:, None], other=0.0)
        w_tap = tl.load(w_conv_ptr + (c[None, :] * L + rank[:, None]) * 9 + tap, mask=l_ok[:, None] & c_ok[None, :],
                        other=0.0)  # [L_PAD, C_PAD]
        acc += mm(t_tap, w_tap, DOT_DTYPE, PRECISION)
    b_conv = tl.load(b_conv_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
    y = x.to(tl.float32) + res_scale * (acc + b_conv[None, :])

    interior = inside & (i >= 1) & (i < TILE_H - 1) & (j >= 1) & (j < TILE_W - 1)
    y_base = y_ptr + n.to(tl.int64) * syn
    tl.store(y_base + h[:, None] * syh + w[:, None] * syw + c[None, :] * syc, y.to(y_ptr.dtype.element_ty),
             mask=interior[:, None] & c_ok[None, :])


def wdsr_b_block(x: torch.Tensor, w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor,
                 b_reduce: torch.Tensor, w_conv: torch.Tensor, b_conv: torch.Tensor, res_scale: float) -> torch.Tensor:
    """Same contract as ``reference.wdsr_b_block``; the output is channels_last.

    Runs the kernel of ``ops.triton_block_variant()``: "tiled" (this module's, the default) or "persistent"
    (``block_b_persistent.py``). Both read any layout, but an x that is not channels_last is copied to channels_last
    first (FastWDSR's features already are) until a GPU run has confirmed the kernels on NCHW input
    (``READ_NCHW``)."""
    check_features("wdsr_b_block: x", x)
    if not READ_NCHW:
        x = x.contiguous(memory_format=torch.channels_last)
    if triton_block_variant() == "persistent":
        return block_b_persistent.wdsr_b_block(x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv, res_scale)
    return launch(x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv, res_scale)


def launch(x: torch.Tensor, w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor,
           b_reduce: torch.Tensor, w_conv: torch.Tensor, b_conv: torch.Tensor, res_scale: float,
           a_from_registers: bool | None = None) -> torch.Tensor:
    """The kernel on ``x`` as it is laid out (any strides); ``wdsr_b_block`` is the op. ``a_from_registers``: whether
    the expand's A operand is forced into registers (default: for an x that is not channels_last; False for NCHW x
    compiles the operand form of the first GPU run, for ``scripts/probe_triton_layouts.py``)."""
    n, c, height, width = x.shape
    wide, low_rank = w_expand.shape[0], w_reduce.shape[0]
    check_weights("wdsr_b_block", x, w_expand=(w_expand, (wide, c, 1, 1)), b_expand=(b_expand, (wide,)),
                  w_reduce=(w_reduce, (low_rank, wide, 1, 1)), b_reduce=(b_reduce, (low_rank,)),
                  w_conv=(w_conv, (c, low_rank, 3, 3)), b_conv=(b_conv, (c,)))
    y = new_output(x.shape, x, channels_last=True)
    if a_from_registers is None:
        a_from_registers = not (x.stride(1) == 1 and c > 1)
    tiles_h, tiles_w = triton.cdiv(height, TILE_H - 2), triton.cdiv(width, TILE_W - 2)
    dots = dot_config(x.dtype)
    l_pad = pad(low_rank)
    scratch_dtype = torch.float32 if dots["DOT_DTYPE"] == triton.language.float32 else x.dtype
    scratch = torch.empty(n * tiles_h * tiles_w * TILE_H * TILE_W * l_pad, dtype=scratch_dtype, device=x.device)
    with on_device(x):
        _wdsr_b_block_kernel[(n * tiles_h * tiles_w,)](
            x, w_expand.contiguous(), b_expand.contiguous(), w_reduce.contiguous(), b_reduce.contiguous(),
            w_conv.contiguous(), b_conv.contiguous(), y, scratch, height, width, tiles_w, tiles_h * tiles_w,
            float(res_scale), *x.stride(), *y.stride(),
            C=c, E=wide, L=low_rank, C_PAD=pad(c), E_BLOCK=min(E_BLOCK, pad(wide)), L_PAD=l_pad,
            TILE_H=TILE_H, TILE_W=TILE_W, A_FROM_REGISTERS=a_from_registers, num_warps=num_warps(8), **dots)
    return y
