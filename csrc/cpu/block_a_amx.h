// The fused WDSR-A block on AMX tiles, bf16 features (CPUs with AMX-BF16):
//   y = x + res_scale * (conv3x3(relu(conv3x3(x) + b_expand), w_reduce) + b_reduce)   as block_a.h
//
// Design, in numbers for the WDSR-A baseline (c = 32, wide = 128):
// - Both 3x3s are amx_conv.h's tap GEMMs: per 32 pixels the expand is 9 taps x 4 steps of 32 wide channels, the
//   reduce 9 taps x 4 K tiles of 32 wide channels: 72 GEMM steps of 4 tile products (16 x 16 x 32 multiply-adds
//   each), exactly the block's 73,728 multiply-adds a pixel, 144 cycles a pixel at one tile product per 16 cycles,
//   where the AVX512-BF16 Winograd block (block_a_winograd.h, 32,768 multiply-adds a pixel) needs 512 at its peak
//   with two 512-bit vdpbf16ps a cycle (1,024 with one).
// - Memory: a work item is a band of rows of one column chunk; x's rows are staged into a ring of three
//   ([column][c_pad] bf16, zero outside the image: the expand's padding), the wide activation into another
//   ([column][wide_pad], 256 bytes a pixel, zero outside the image: the reduce's padding), 110 KB for a 512-column
//   chunk of the baseline, in L2. Per new row: stage x row q + 1, compute wide row q, then y row q - 1. Recomputed
//   work: two wide rows per band and two columns per interior chunk edge.
// - Weights: B tiles packed per call, 9 x 8 + 9 x 8 KB for the baseline.
// Not yet measured (no AMX CPU in our sessions); WDSR_FAST_CPU_BLOCK_A=amx runs it, the default stays the Winograd
// kernel until a race on an AMX CPU (benchmarks/README.md) says otherwise.
#pragma once
#include "amx_conv.h"
#include "kernels.h"

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

#ifndef WDSR_CPU_AMX_A_CHUNK
#define WDSR_CPU_AMX_A_CHUNK kMaxChunkWidth  // the widest column chunk (narrow ones in tests)
#endif

struct AmxAContext {
  const BlockAArgsOf<Bf16>* a;
  RowBands bands;
  int c_pad, wide_pad;  // channel counts rounded up to kTileK
  int ldx, ldw;         // pixels per x ring row (column i: image column x0 - 2 + i), per wide row (x0 - 1 + j)
  const uint16_t* b_expand;  // pack_conv3x3_tiles: [9 taps][wide_pad / 16][c_pad / 32]
  const uint16_t* b_reduce;  // [9 taps][c_pad / 16][wide_pad / 32]
  const float* bias_expand;  // pack_bias_tiles: wide_pad x 16, zero past wide
  const float* bias_reduce;  // c_pad x 16
};

// x's row `row` over the chunk's columns x0 - 2 .. into dst ([ldx][c_pad]); zero outside the image.
inline void amx_x_row(const AmxAContext& ctx, int n, int row, int x0, uint16_t* dst) {
  const BlockAArgsOf<Bf16>& a = *ctx.a;
  std::memset(dst, 0, sizeof(uint16_t) * static_cast<size_t>(ctx.ldx) * ctx.c_pad);
  if (row < 0 || row >= a.h) return;
  const int first = imax(0, x0 - 2), last = imin(a.w, x0 - 2 + ctx.ldx);  // image columns [first, last)
  stage_pixels(a.x + ((static_cast<int64_t>(n) * a.h + row) * a.w + first) * a.c, a.c, last - first, last - first,
               ctx.c_pad, dst + static_cast<int64_t>(first - (x0 - 2)) * ctx.c_pad);
}

// The wide row `row` (ReLU'd) over the chunk [x0, x1) and its halo into dst ([ldw][wide_pad]) from x's rows row - 1,
// row, row + 1 (x_rows[dy]); zero outside the image.
inline void amx_wide_row(const AmxAContext& ctx, int row, int x0, int x1, const uint16_t* const (&x_rows)[3],
                         uint16_t* dst, float* c) {
  const BlockAArgsOf<Bf16>& a = *ctx.a;
  if (row < 0 || row >= a.h) {
    std::memset(dst, 0, sizeof(uint16_t) * static_cast<size_t>(ctx.ldw) * ctx.wide_pad);
    return;
  }
  const int columns = x1 - x0 + 2, wide_pad = ctx.wide_pad;  // a local: the stores below may alias ctx for GCC
  for (int j = 0; j < columns; j += kAmxPixels)
    for (int n0 = 0; n0 < wide_pad; n0 += kAmxChannels) {
      // wide column j + p from x columns j + p + dx: the x ring starts one column left of the wide ring
      amx_conv3x3(x_rows, j, ctx.c_pad, ctx.b_expand, ctx.bias_expand, wide_pad / kTileN, ctx.c_pad / kTileK, n0, c);
      for (int p = 0; p < kAmxPixels; ++p) {
        const int col = x0 - 1 + j + p;
        uint16_t* out = dst + static_cast<int64_t>(j + p) * wide_pad + n0;
        if (col >= 0 && col < a.w) {
          store_bf16_channels<true>(c + p * kAmxChannels, out);
        } else {
          std::memset(out, 0, sizeof(uint16_t) * kAmxChannels);
        }
      }
    }
}

inline void block_a_amx_items(const void* context, int64_t begin, int64_t end) {
  const AmxAContext& ctx = *static_cast<const AmxAContext*>(context);
  const BlockAArgsOf<Bf16>& a = *ctx.a;
  const int64_t x_elems = static_cast<int64_t>(ctx.ldx) * ctx.c_pad;
  const int64_t w_elems = static_cast<int64_t>(ctx.ldw) * ctx.wide_pad;
  Buffer scratch((3 * x_elems + 3 * w_elems) / 2 + kAmxPixels * kAmxChannels);  // bf16 elements two a float
  float* c = scratch.get();
  uint16_t* x_ring = reinterpret_cast<uint16_t*>(c + kAmxPixels * kAmxChannels);
  uint16_t* w_ring = x_ring + 3 * x_elems;
  tiles_configure();
  for (int64_t item = begin; item < end; ++item) {
    const auto [n, x0, x1, r0, r1] = ctx.bands.item(item);
    // x row r in x slot (r - r0 + 2) % 3, wide row q in wide slot (q - r0 + 1) % 3
    auto x_slot = [&](int r) { return x_ring + (r - r0 + 2) % 3 * x_elems; };
    auto w_slot = [&](int q) { return w_ring + (q - r0 + 1) % 3 * w_elems; };
    amx_x_row(ctx, n, r0 - 2, x0, x_slot(r0 - 2));
    amx_x_row(ctx, n, r0 - 1, x0, x_slot(r0 - 1));
    for (int q = r0 - 1; q <= r1; ++q) {
      amx_x_row(ctx, n, q + 1, x0, x_slot(q + 1));
      const uint16_t* const x_rows[3] = {x_slot(q - 1), x_slot(q), x_slot(q + 1)};
      amx_wide_row(ctx, q, x0, x1, x_rows, w_slot(q), c);
      if (q < r0 + 1) continue;
      const int row = q - 1;  // y row from the wide rows row - 1 .. row + 1
      const uint16_t* const w_rows[3] = {w_slot(row - 1), w_slot(row), w_slot(row + 1)};
      const int64_t pixel0 = (static_cast<int64_t>(n) * a.h + row) * a.w;
      for (int xb = x0; xb < x1; xb += kAmxPixels)
        for (int n0 = 0; n0 < ctx.c_pad; n0 += kAmxChannels) {
          amx_conv3x3(w_rows, xb - x0, ctx.wide_pad, ctx.b_reduce, ctx.bias_reduce, ctx.c_pad / kTileN,
                      ctx.wide_pad / kTileK, n0, c);
          store_residual(c, a.res_scale, a.x, a.y, (pixel0 + xb) * a.c, a.c, n0, imin(kAmxPixels, x1 - xb));
        }
    }
  }
  tiles_release();
}

void wdsr_a_block_amx(const BlockAArgsOf<Bf16>& a, const Parallel& parallel) {
  AmxAContext ctx{};
  ctx.a = &a;
  ctx.bands = RowBands::plan(a.n, a.h, a.w, WDSR_CPU_AMX_A_CHUNK, parallel.threads);
  ctx.c_pad = round_up(a.c, kTileK);
  ctx.wide_pad = round_up(a.wide, kTileK);
  // The expand's steps write wide columns up to round_up(chunk + 2, 32) - 1 and read x columns 2 further; the
  // reduce's read wide columns up to round_up(chunk, 32) + 1.
  ctx.ldw = round_up(ctx.bands.chunk_w + 2, kAmxPixels) + kAmxPixels;
  ctx.ldx = ctx.ldw + 2;
  const int64_t expand_elems = pack_conv3x3_tiles(a.w_expand, a.wide, a.c, ctx.wide_pad, ctx.c_pad, nullptr);
  const int64_t reduce_elems = pack_conv3x3_tiles(a.w_reduce, a.c, a.wide, ctx.c_pad, ctx.wide_pad, nullptr);
  const int64_t bias_floats = static_cast<int64_t>(ctx.wide_pad + ctx.c_pad) * kTileRows;
  Buffer packed(bias_floats + (expand_elems + reduce_elems) / 2);
  float* bias_expand = packed.get();
  float* bias_reduce = bias_expand + pack_bias_tiles(a.b_expand, a.wide, ctx.wide_pad, bias_expand);
  pack_bias_tiles(a.b_reduce, a.c, ctx.c_pad, bias_reduce);
  auto* tiles = reinterpret_cast<uint16_t*>(bias_expand + bias_floats);
  pack_conv3x3_tiles(a.w_expand, a.wide, a.c, ctx.wide_pad, ctx.c_pad, tiles);
  pack_conv3x3_tiles(a.w_reduce, a.c, a.wide, ctx.c_pad, ctx.wide_pad, tiles + expand_elems);
  ctx.b_expand = tiles;
  ctx.b_reduce = tiles + expand_elems;
  ctx.bias_expand = bias_expand;
  ctx.bias_reduce = bias_reduce;
  parallel.run(ctx.bands.items, &block_a_amx_items, &ctx);
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
