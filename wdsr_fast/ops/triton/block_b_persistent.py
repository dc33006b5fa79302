"""Triton: the WDSR-B block as a persistent kernel (the ``"persistent"`` variant of the Triton block).

    y = x + res_scale * conv3x3(conv1x1_reduce(relu(conv1x1_expand(x))))

The same fusion as ``block_b.py`` (the ``"tiled"`` variant: one program per haloed tile, the wide activation only
in registers, the low-rank map staged through memory for the 3x3), reorganised after the ranked ideas of the
read-through of where the GPU time goes:

- persistent: ``programs_per_sm`` x (number of SMs) programs, each looping over tiles ``pid, pid + programs, ...``
  (neighbouring programs take neighbouring tiles, so halos are read from L2), instead of one program per tile; every
  program runs the same number of rounds, the last one's tiles past the end masked off;
- the staging slab is per program, not per tile, and rewritten by each of its tiles: programs x 16 KB (16x16 tile,
  fp16), about 4 MB on an H100 at 2 programs per SM, where the tiled kernel's scratch is 44 MB per block at
  960x540, so the slab stays in L2 (L1 between the store and the reloads of one tile);
- weights pre-packed on the host (``pack_weights``) in the layouts the dots read, each dot's B operand K-major as in
  the tiled kernel (wgmma's untransposed B): expand [E_PAD][C_PAD], reduce [L_PAD][E_PAD], 3x3 [kernel row][C_PAD]
  [4 pixel slots x L_PAD] (the 4th slot zero), biases fp32, all zero-padded: every weight load is unmasked and
  contiguous (the tiled kernel gathers the 3x3 weights with stride 9); they are packed once per weight version
  (cached on the weight tensor) and read by each tile from L1/L2 (the compile shows the loads in the loop: held in
  registers across it they would take 42-48 more per thread, and Triton has no shared memory that outlives a dot);
- the 3x3 as three dots of K = 4 x L_PAD (``taps_per_dot`` 3): for a kernel row ky, the three taps dx = -1, 0, +1 of
  pixel (i, j) are three consecutive pixels of the slab, so one contiguous window of 4 pixels x L_PAD values per
  output row is the A operand of one dot (the 4th pixel masked off, its weights zero). Three loads and three dots
  (three waits) instead of nine, for 4/3 of the 3x3's tensor work; ``taps_per_dot`` 1 keeps nine K = L_PAD dots;
- an x that is not channels_last (read as it is: the op in ``block_b.py`` copies NCHW x to channels_last until a GPU
  run has confirmed NCHW, ``block_b.READ_NCHW``) goes through a no-op select, so that the expand's A operand comes
  from registers (wgmma with A in registers, the reduce's form) rather than M-major from shared memory, the form of
  the first H100 run's wrong NCHW results; with ``prefetch`` the loop-carried x is staged M-major all the same (the
  compile shows tA1), so NCHW is confirmed only without it;
- ``stages``: 0 runs the tile loop as a while loop; 1 or more as ``tl.range(..., num_stages=stages)``, for Triton's
  software pipeliner. Triton 3.6 leaves this loop as it is (stages 1 and 2 compile to the same code); a pipeliner that
  issued the slab reloads of the next round ahead would read this round's slab, which the interpreter cannot show,
  so configurations with stages are kept only where the compile shows no slab load pipelined. ``prefetch`` overlaps
  by hand instead: the next tile's x is loaded right after the slab store, in flight during the 3x3 (+16 registers).
  The interpreter always runs the while loop (its ``range`` cannot take run-time bounds).

Design in numbers, WDSR-B 32x16 (C 32, E 192, L 25 -> L_PAD 32), 960x540, fp16: a 16x16 tile (14x14 written) gives
2,691 tiles, the 1x1 chain on 256/196 = 1.31x the pixels (16x32: 1,330 tiles, 1.22x; 8x32: 3,420 tiles, 1.42x);
tensor work per 16x16 tile 256 x (32x192 + 192x32 + 9x32x32) = 5.5 M MACs with nine 3x3 dots, 6.3 M with three
windows; bytes per 16x16 tile: x 16 KB read (haloed), y 12.3 KB written, the slab 16 KB written and 144 KB (nine
dots) or 192 KB (three windows) reloaded from L1/L2, 42-48 KB of packed weights read from L1/L2. The kept
configurations (``CONFIGS``) compiled for sm_90 as a 1080p launch (Triton 3.6, fp16 channels_last; bf16 the same),
every dot on wgmma, no stack; wgmma instructions per expand / reduce / 3x3 and waits a tile:

    16x16-e32-taps1-w4-s0-prefetch-p2  248 registers, 18 KB shared, 2 CTAs of 4 warps/SM; 48 / 48 / 72, 21 waits
    16x16-e64-taps3-w8-s0-prefetch-p1  220 registers, 72 KB shared, 1 CTA of 8 warps/SM;  12 / 24 / 48,  9 waits
    16x32-e32-taps1-w8-s0-prefetch-p1  244 registers, 34 KB shared, 1 CTA of 8 warps/SM;  48 / 48 / 72, 21 waits
    8x32-e32-taps3-w4-s0-p2            252 registers, 72 KB shared, 2 CTAs of 4 warps/SM; 48 / 48 / 96, 15 waits
    16x16-e64-taps1-w8-s0-prefetch-p1  176 registers, 20 KB shared, 1 CTA of 8 warps/SM;  12 / 24 / 36, 15 waits

(the tiled kernel: 164 registers, 20 KB, 1 CTA of 8 warps/SM, 12 / 24 / 36, 15 waits, one program per tile). Of the
96 candidates (``CANDIDATES``), 52 keep a stack (every 4-warp one with E_BLOCK 64, every 16x32 one but the two
8-warp E_BLOCK 32 nine-dot ones, and a few 4-warp others); ``stages`` 2 compiles to the same registers, loads and
waits as 0, which halves the 44 others to 22, of which the five above span the choices (tile, dots per 3x3, 1 or 2
CTAs per SM). None reaches 2 CTAs of 8 warps per SM (at most 128 registers) without a stack: capped at 128
registers (``max_registers``), the 8-warp ones spill 24-224 B.
``python scripts/triton_sm90_compile.py --only persistent [--all-configs]`` prints these lines. The speed of every
configuration is unmeasured: ``scripts/gpu_check perf`` times each beside the tiled kernel.

In the interpreter (the CPU test suite) a launch runs ``INTERPRETER_PROGRAMS`` programs, so that every program loops
over several tiles and the last round is partial.
"""
from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl

from ..common import interpreting
from .common import check_weights, dot_config, mm, new_output, on_device, pad

H100_SMS = 132  # for a launch that is not on a GPU (shape-only tensors compiled for an H100)
INTERPRETER_PROGRAMS = 3
E_ALIGN = 64  # the wide channels are padded to a multiple of this (every e_block divides it)
PACKED = "_wdsr_triton_packed"  # the attribute of w_conv holding its block's packed weights
Packed = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # w1 b1 w2 b2 w3 b3


@dataclasses.dataclass(frozen=True)
class Config:
    """One configuration of the kernel: the haloed tile, wide channels per expand chunk, taps per 3x3 dot, warps,
    software-pipeline stages of the tile loop (Triton's pipeliner), whether the next tile's x is loaded during this
    tile's 3x3 (by hand), and programs per SM (at most the CTAs per SM its registers and shared memory allow, from
    the sm_90 compile)."""

    tile_h: int = 16
    tile_w: int = 16
    e_block: int = 64
    taps_per_dot: int = 3
    warps: int = 8
    stages: int = 1
    prefetch: bool = True
    programs_per_sm: int = 1
    max_registers: int | None = None  # ptxas's register cap (Triton's maxnreg); None: its own choice

    @property
    def name(self) -> str:
        return (f"{self.tile_h}x{self.tile_w}-e{self.e_block}-taps{self.taps_per_dot}-w{self.warps}-s{self.stages}"
                f"{'-prefetch' if self.prefetch else ''}-p{self.programs_per_sm}"
                f"{f'-r{self.max_registers}' if self.max_registers else ''}")

    @classmethod
    def of(cls, kwargs: dict, programs_per_sm: int = 1) -> Config:
        """The configuration of a recorded launch (its keyword arguments; the programs per SM are the grid's)."""
        return cls(kwargs["TILE_H"], kwargs["TILE_W"], kwargs["E_BLOCK"], kwargs["TAPS_PER_DOT"],
                   kwargs["num_warps"], kwargs["STAGES"], kwargs["PREFETCH"], programs_per_sm, kwargs.get("maxnreg"))


# Every configuration considered; scripts/triton_sm90_compile.py --only persistent --all-configs compiles them.
# programs_per_sm plays no part in the compiled code: the candidates have 1, the kept ones what the compile allows.
CANDIDATES = tuple(Config(th, tw, eb, taps, warps, stages, prefetch)
                   for th, tw in ((16, 16), (8, 32), (16, 32))
                   for eb in (32, 64) for taps in (3, 1) for warps in (4, 8) for stages in (0, 2)
                   for prefetch in (True, False))
# The ones kept from CANDIDATES by compiling them for sm_90 (fp16, channels_last; benchmarks/README.md, "The persistent
# Triton block"): no stack, programs_per_sm the CTAs per SM that registers and shared memory allow. stages 2
# (tl.range) compiled to the same registers, loads and waits as the while loop (stages 0): the while loop is kept.
# In order of expected speed (unmeasured), the first the default:
CONFIGS = (
    Config(16, 16, 32, 1, 4, 0, True, 2),  # 2 CTAs of 4 warps per SM: one's waits overlap the other's work
    Config(16, 16, 64, 3, 8, 0, True, 1),  # the fewest waits (9: 3 expand, 3 reduce, 3 for the 3x3)
    Config(16, 32, 32, 1, 8, 0, True, 1),  # the smallest halo (1x1 chain on 1.22x the pixels)
    Config(8, 32, 32, 3, 4, 0, False, 2),  # 2 CTAs per SM and 3x3 windows (halo 1.42x)
    Config(16, 16, 64, 1, 8, 0, True, 1),  # the tiled kernel's tile, dots and warps: persistence alone
)


def sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return H100_SMS


def interpreted(device: torch.device) -> bool:
    """Whether a launch on tensors of ``device`` runs in Triton's interpreter (CPU tensors, under TRITON_INTERPRET=1);
    shape-only (meta) tensors stand for an H100's."""
    return device.type == "cpu" and interpreting()


def programs_for(num_tiles: int, config: Config, device: torch.device) -> int:
    if interpreted(device):
        return min(num_tiles, INTERPRETER_PROGRAMS)
    return min(num_tiles, config.programs_per_sm * sm_count(device))


@triton.jit
def _tile_position(tile_id, num_tiles, tiles_per_image, tiles_w, i, j, H, W, TILE_H: tl.constexpr,
                   TILE_W: tl.constexpr):
    """Image, pixel rows and columns of tile ``tile_id``'s haloed rows, and which are in the image (none for a tile
    past the last)."""
    n = tile_id // tiles_per_image
    tile = tile_id % tiles_per_image
    h = (tile // tiles_w) * (TILE_H - 2) + i - 1
    w = (tile % tiles_w) * (TILE_W - 2) + j - 1
    inside = (h >= 0) & (h < H) & (w >= 0) & (w < W) & (tile_id < num_tiles)
    return n, h, w, inside


@triton.jit
def _tile_x(x_ptr, tile_id, num_tiles, tiles_per_image, tiles_w, i, j, c, c_ok, H, W, sxn, sxc, sxh, sxw,
            TILE_H: tl.constexpr, TILE_W: tl.constexpr, X_CHANNELS_LAST: tl.constexpr):
    """Tile ``tile_id``'s haloed input [M, C_PAD], zero outside the image (and for a tile past the last)."""
    n, h, w, inside = _tile_position(tile_id, num_tiles, tiles_per_image, tiles_w, i, j, H, W, TILE_H, TILE_W)
    x = tl.load(x_ptr + n.to(tl.int64) * sxn + h[:, None] * sxh + w[:, None] * sxw + c[None, :] * sxc,
                mask=inside[:, None] & c_ok[None, :], other=0.0)
    if not X_CHANNELS_LAST:
        x = tl.where(inside[:, None], x, 0.0)  # the expand's A from registers (module docstring)
    return x


@triton.jit
def _one_tile(
    r, x_next, x_ptr, w1_ptr, b1_ptr, w2_ptr, w3_ptr, y_ptr, scratch, pid, programs, num_tiles, tiles_per_image,
    tiles_w, H, W, res_scale, sxn, sxc, sxh, sxw, syn, syc, syh, syw, rows, i, j, written, c, c_ok, rank, eb, b2, b3,
    C_PAD: tl.constexpr, E_PAD: tl.constexpr, E_BLOCK: tl.constexpr, L_PAD: tl.constexpr, TILE_H: tl.constexpr,
    TILE_W: tl.constexpr, TAPS_PER_DOT: tl.constexpr, PREFETCH: tl.constexpr, X_CHANNELS_LAST: tl.constexpr,
    DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
):
    """Round ``r`` of a program: its tile ``pid + r * programs``; returns the next tile's x when PREFETCH."""
    M: tl.constexpr = TILE_H * TILE_W
    tile_id = pid + r * programs
    n, h, w, inside = _tile_position(tile_id, num_tiles, tiles_per_image, tiles_w, i, j, H, W, TILE_H, TILE_W)

    # Stage 1: x [M, C_PAD] -> low-rank t [M, L_PAD], the wide activation E_BLOCK channels at a time.
    if PREFETCH:
        x = x_next
    else:
        x = _tile_x(x_ptr, tile_id, num_tiles, tiles_per_image, tiles_w, i, j, c, c_ok, H, W, sxn, sxc, sxh, sxw,
                    TILE_H, TILE_W, X_CHANNELS_LAST)
    t = tl.zeros([M, L_PAD], dtype=tl.float32)
    for e0 in tl.static_range(0, E_PAD, E_BLOCK):
        w1 = tl.load(w1_ptr + (e0 + eb)[None, :] * C_PAD + c[:, None])  # [C_PAD, E_BLOCK]
        b1 = tl.load(b1_ptr + e0 + eb)
        wide = tl.maximum(mm(x, w1, DOT_DTYPE, PRECISION) + b1[None, :], 0.0)  # [M, E_BLOCK]
        w2 = tl.load(w2_ptr + rank[None, :] * E_PAD + (e0 + eb)[:, None])  # [E_BLOCK, L_PAD]
        t += mm(wide, w2, DOT_DTYPE, PRECISION)
    t = tl.where(inside[:, None], t + b2[None, :], 0.0)  # the 3x3 sees zeros outside the image

    tl.debug_barrier()  # every thread is done with the previous tile's slab
    tl.store(scratch + rows[:, None] * L_PAD + rank[None, :], t.to(scratch.dtype.element_ty))
    tl.debug_barrier()  # the whole slab is written before any thread reads a neighbour's row
    if PREFETCH:  # the next tile's x, in flight during this tile's 3x3
        x_next = _tile_x(x_ptr, tile_id + programs, num_tiles, tiles_per_image, tiles_w, i, j, c, c_ok, H, W, sxn,
                         sxc, sxh, sxw, TILE_H, TILE_W, X_CHANNELS_LAST)

    # Stage 2: the 3x3 over the slab, for the written rows (the halo rows' results are not stored).
    acc = tl.zeros([M, C_PAD], dtype=tl.float32)
    if TAPS_PER_DOT == 3:
        k = tl.arange(0, 4 * L_PAD)  # (pixel slot dx + 1, low-rank channel); slot 3 is masked off
        for ky in tl.static_range(3):
            first = rows + (ky - 1) * TILE_W - 1  # the window's first pixel: (i + ky - 1, j - 1)
            window = tl.load(scratch + first[:, None] * L_PAD + k[None, :],
                             mask=written[:, None] & (k < 3 * L_PAD)[None, :], other=0.0)  # [M, 4 L_PAD]
            w3 = tl.load(w3_ptr + ky * (C_PAD * 4 * L_PAD) + c[None, :] * (4 * L_PAD) + k[:, None])
            acc += mm(window, w3, DOT_DTYPE, PRECISION)
    else:
        for tap in tl.static_range(9):
            source = rows + (tap // 3 - 1) * TILE_W + (tap % 3 - 1)
            t_tap = tl.load(scratch + source[:, None] * L_PAD + rank[None, :], mask=written[:, None], other=0.0)
            w3 = tl.load(w3_ptr + (tap // 3) * (C_PAD * 4 * L_PAD) + c[None, :] * (4 * L_PAD) + (tap % 3) * L_PAD
                         + rank[:, None])
            acc += mm(t_tap, w3, DOT_DTYPE, PRECISION)
    y = x.to(tl.float32) + res_scale * (acc + b3[None, :])
    tl.store(y_ptr + n.to(tl.int64) * syn + h[:, None] * syh + w[:, None] * syw + c[None, :] * syc,
             y.to(y_ptr.dtype.element_ty), mask=(written & inside)[:, None] & c_ok[None, :])
    return x_next


@triton.jit
def _wdsr_b_block_persistent_kernel(
    x_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, y_ptr, scratch_ptr,
    H, W, tiles_w, tiles_per_image, num_tiles, programs, rounds, res_scale,
    sxn, sxc, sxh, sxw, syn, syc, syh, syw,
    C: tl.constexpr, C_PAD: tl.constexpr, E_PAD: tl.constexpr, E_BLOCK: tl.constexpr, L_PAD: tl.constexpr,
    TILE_H: tl.constexpr, TILE_W: tl.constexpr, TAPS_PER_DOT: tl.constexpr, STAGES: tl.constexpr,
    PREFETCH: tl.constexpr, X_CHANNELS_LAST: tl.constexpr, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
):
    M: tl.constexpr = TILE_H * TILE_W
    pid = tl.program_id(0)  # of ``programs``
    rows = tl.arange(0, M)
    i = rows // TILE_W  # position inside the haloed tile
    j = rows % TILE_W
    written = (i >= 1) & (i < TILE_H - 1) & (j >= 1) & (j < TILE_W - 1)  # the interior: all 9 neighbours in the tile
    c = tl.arange(0, C_PAD)
    c_ok = c < C
    rank = tl.arange(0, L_PAD)
    eb = tl.arange(0, E_BLOCK)
    scratch = scratch_ptr + pid.to(tl.int64) * (M * L_PAD)  # this program's slab
    b2 = tl.load(b2_ptr + rank)
    b3 = tl.load(b3_ptr + c)
    x_next = 0  # unused without PREFETCH
    if PREFETCH:
        x_next = _tile_x(x_ptr, pid, num_tiles, tiles_per_image, tiles_w, i, j, c, c_ok, H, W, sxn, sxc, sxh, sxw,
                         TILE_H, TILE_W, X_CHANNELS_LAST)
    # Every program runs ``rounds`` rounds; the last one's tiles past the end are masked off.
    if STAGES == 0:  # a while loop (the interpreter cannot run tl.range over run-time bounds)
        r = 0
        while r < rounds:
            x_next = _one_tile(
                r, x_next, x_ptr, w1_ptr, b1_ptr, w2_ptr, w3_ptr, y_ptr, scratch, pid, programs, num_tiles,
                tiles_per_image, tiles_w, H, W, res_scale, sxn, sxc, sxh, sxw, syn, syc, syh, syw, rows, i, j, written,
                c, c_ok, rank, eb, b2, b3, C_PAD, E_PAD, E_BLOCK, L_PAD, TILE_H, TILE_W, TAPS_PER_DOT, PREFETCH,
                X_CHANNELS_LAST, DOT_DTYPE, PRECISION)
            r += 1
    else:  # Triton's software pipeliner may overlap rounds (it leaves this loop as it is in Triton 3.6)
        for r in tl.range(0, rounds, num_stages=STAGES):
            x_next = _one_tile(
                r, x_next, x_ptr, w1_ptr, b1_ptr, w2_ptr, w3_ptr, y_ptr, scratch, pid, programs, num_tiles,
                tiles_per_image, tiles_w, H, W, res_scale, sxn, sxc, sxh, sxw, syn, syc, syh, syw, rows, i, j, written,
                c, c_ok, rank, eb, b2, b3, C_PAD, E_PAD, E_BLOCK, L_PAD, TILE_H, TILE_W, TAPS_PER_DOT, PREFETCH,
                X_CHANNELS_LAST, DOT_DTYPE, PRECISION)


def pack_weights(w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor, b_reduce: torch.Tensor,
                 w_conv: torch.Tensor, b_conv: torch.Tensor, config: Config | None = None) -> Packed:
    """The block's weights in the kernel's layouts (module docstring), zero-padded; biases fp32. ``config`` plays no
    part (every configuration reads the same layouts); it is accepted so that a caller can pass one."""
    wide, c = w_expand.shape[:2]
    low_rank = w_reduce.shape[0]
    c_pad, l_pad, e_pad = pad(c), pad(low_rank), -(-wide // E_ALIGN) * E_ALIGN
    dtype, device = w_expand.dtype, w_expand.device

    def zeros(*shape, dtype=dtype):
        return torch.zeros(shape, dtype=dtype, device=device)

    with torch.no_grad():
        w1 = zeros(e_pad, c_pad)
        w1[:wide, :c] = w_expand.reshape(wide, c)
        b1 = zeros(e_pad, dtype=torch.float32)
        b1[:wide] = b_expand
        w2 = zeros(l_pad, e_pad)
        w2[:low_rank, :wide] = w_reduce.reshape(low_rank, wide)
        b2 = zeros(l_pad, dtype=torch.float32)
        b2[:low_rank] = b_reduce
        w3 = zeros(3, c_pad, 4, l_pad)
        w3[:, :c, :3, :low_rank] = w_conv.permute(2, 0, 3, 1)  # (c, l, ky, kx) -> (ky, c, kx, l)
        b3 = zeros(c_pad, dtype=torch.float32)
        b3[:c] = b_conv
    return w1, b1, w2, b2, w3, b3


def _version(t: torch.Tensor) -> int:
    return -1 if t.is_inference() else t._version  # inference tensors keep no version counter


def packed_weights(w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor, b_reduce: torch.Tensor,
                   w_conv: torch.Tensor, b_conv: torch.Tensor) -> Packed:
    """``pack_weights`` of the block's six weights, kept on ``w_conv`` (an attribute) while none of the six changed
    (same storage, same version: an optimizer step or ``copy_`` repacks), so a forward packs nothing; the packed
    tensors live as long as the weights do (a captured CUDA graph that reads them is kept with its weights)."""
    weights = (w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv)
    key = tuple((t.data_ptr(), _version(t), t.dtype, t.device) for t in weights)
    cached = getattr(w_conv, PACKED, None)
    if cached is not None and cached[0] == key and w_conv.device.type != "meta":
        return cached[1]
    packed = pack_weights(*weights)
    setattr(w_conv, PACKED, (key, packed))
    return packed


def wdsr_b_block(x: torch.Tensor, w_expand: torch.Tensor, b_expand: torch.Tensor, w_reduce: torch.Tensor,
                 b_reduce: torch.Tensor, w_conv: torch.Tensor, b_conv: torch.Tensor, res_scale: float,
                 config: Config | None = None) -> torch.Tensor:
    """Same contract as ``reference.wdsr_b_block`` (x checked by the caller, ``block_b.wdsr_b_block``); the output is
    channels_last; ``x`` in any layout, read as it is; ``config``: one of CONFIGS or CANDIDATES (default CONFIGS[0])."""
    n, c, height, width = x.shape
    wide, low_rank = w_expand.shape[0], w_reduce.shape[0]
    check_weights("wdsr_b_block", x, w_expand=(w_expand, (wide, c, 1, 1)), b_expand=(b_expand, (wide,)),
                  w_reduce=(w_reduce, (low_rank, wide, 1, 1)), b_reduce=(b_reduce, (low_rank,)),
                  w_conv=(w_conv, (c, low_rank, 3, 3)), b_conv=(b_conv, (c,)))
    weights = packed_weights(w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv)
    return launch(x, *weights, res_scale, config or CONFIGS[0])


def launch(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, w3: torch.Tensor,
           b3: torch.Tensor, res_scale: float, config: Config) -> torch.Tensor:
    """The kernel on ``x`` (any strides) with packed weights (``pack_weights``) in configuration ``config``."""
    n, c, height, width = x.shape
    e_pad, c_pad = w1.shape
    l_pad = w2.shape[0]
    y = new_output(x.shape, x, channels_last=True)
    tiles_h = triton.cdiv(height, config.tile_h - 2)
    tiles_w = triton.cdiv(width, config.tile_w - 2)
    num_tiles = n * tiles_h * tiles_w
    programs = programs_for(num_tiles, config, x.device)
    on_cpu = interpreted(x.device)
    dots = dot_config(x.dtype)
    scratch_dtype = torch.float32 if dots["DOT_DTYPE"] == tl.float32 else x.dtype
    scratch = torch.empty(programs * config.tile_h * config.tile_w * l_pad, dtype=scratch_dtype, device=x.device)
    with on_device(x):
        _wdsr_b_block_persistent_kernel[(programs,)](
            x, w1, b1, w2, b2, w3, b3, y, scratch, height, width, tiles_w, tiles_h * tiles_w, num_tiles,
            programs, triton.cdiv(num_tiles, programs), float(res_scale), *x.stride(), *y.stride(),
            C=c, C_PAD=c_pad, E_PAD=e_pad, E_BLOCK=config.e_block, L_PAD=l_pad, TILE_H=config.tile_h,
            TILE_W=config.tile_w, TAPS_PER_DOT=config.taps_per_dot, STAGES=0 if on_cpu else config.stages,
            PREFETCH=config.prefetch,
            X_CHANNELS_LAST=x.stride(1) == 1 and c > 1,
            num_warps=1 if on_cpu else config.warps,
            **({} if on_cpu or config.max_registers is None else {"maxnreg": config.max_registers}), **dots)
    return y


def config_named(name: str) -> Config:
    """The configuration of ``Config.name`` ``name`` among CANDIDATES (for the perf script's command line)."""
    for config in CANDIDATES + CONFIGS:
        if config.name == name:
            return config
    raise ValueError(f"no configuration named {name!r}")
