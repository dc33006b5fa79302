// The fused WDSR-B block on AMX tiles, bf16 features (CPUs with AMX-BF16: Sapphire Rapids and later):
//   y = x + res_scale * conv3x3(t) + ...,  t = reduce1x1(relu(expand1x1(x)))   as block_b.h
//
// Design, in numbers for WDSR-B 32 (c = 32, wide = 192, low_rank = 25):
// - Every layer is a GEMM over pixels on amx_tiles.h's 2 x 2 register block (amx_conv.h): 32 pixels (two A tiles) x 32
//   output channels (two B tiles), one tile product 16 x 16 x 32 = 8,192 multiply-adds. Channel counts round up to whole
//   tiles (32): per 32 pixels the expand is 6 x 4 products, the reduce 1 x 6 x 4 (25 -> 32 low-rank channels), the
//   3x3 9 taps x 4 (its A tiles the t ring's pixel rows shifted by the tap: no im2col) = 84 products, 1.36x the
//   multiply-adds of the exact layers; a tile product issues every 16 cycles, so 42 cycles a pixel where the
//   AVX512-BF16 Winograd block (block_b_winograd.h, 14,144 multiply-adds a pixel) needs 221 at its peak with two
//   512-bit vdpbf16ps a cycle (Sapphire Rapids; 442 with one, as Zen 4).
// - Memory: as block_b.h, a work item is a band of rows of one column chunk; the low-rank t lives in a ring of three
//   rows, but pixel-major with its channels padded to 32 ([column][32] bf16, 64 bytes a pixel: one A tile row),
//   36 KB a row for a 512-column chunk; the wide activation of 32 pixels (12 KB) and x's 32 pixels (2 KB), padded
//   the same way, stay in L1. Weights are packed per call as B tiles: 12 + 12 + 18 KB.
// - The C tiles start as the biases (tiles loaded from a packed copy); epilogues run in AVX-512 from the C tiles
//   stored to a 4 KB buffer: rounding to bf16 and ReLU for the wide activation (per 32 pixels 6 x 32 of 2 loads, a
//   vcvtne2ps2bf16, an integer max and a store), rounding for t, res_scale and the residual for y.
// - Accuracy: the products and sums are fp32 as in the AVX512-BF16 kernels; the wide activation and t are rounded
//   to bf16 once, as there.
// Not yet measured (no AMX CPU in our sessions); WDSR_FAST_CPU_BLOCK_B=amx runs it, the default stays the Winograd
// kernel until a race on an AMX CPU (benchmarks/README.md) says otherwise.
#pragma once
#include "amx_conv.h"
#include "kernels.h"

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

struct AmxBContext {
  const BlockBArgsOf<Bf16>* a;
  RowBands bands;
  int c_pad, wide_pad, low_pad;  // channel counts rounded up to kTileK
  int ldt;                       // pixels per ring row: the chunk, its halo and a GEMM step's overhang
  const uint16_t* b_expand;      // B tiles [wide_pad / 16][c_pad / 32]
  const uint16_t* b_reduce;      // [low_pad / 16][wide_pad / 32]
  const uint16_t* b_conv;        // [9 taps][c_pad / 16][low_pad / 32]
  const float* bias_expand;      // pack_bias_tiles: wide_pad x 16, zero past wide
  const float* bias_reduce;      // low_pad x 16
  const float* bias_conv;        // c_pad x 16
};

// Per item: the t ring, x's and the wide activation's 32 pixels, the C tiles.
struct AmxBScratch {
  uint16_t* ring;  // 3 rows [ldt][low_pad]
  uint16_t* x;     // [kAmxPixels][c_pad]
  uint16_t* wide;  // [kAmxPixels][wide_pad]
  float* c;        // [kAmxPixels][kAmxChannels]
};

// One t row (image row `row`, the chunk [x0, x1) and its halo: ring column j is image column x0 - 1 + j) into dst
// ([ldt][low_pad]); zero outside the image.
inline void amx_t_row(const AmxBContext& ctx, int n, int row, int x0, int x1, uint16_t* dst, const AmxBScratch& s) {
  const BlockBArgsOf<Bf16>& a = *ctx.a;
  const int64_t row_elems = static_cast<int64_t>(ctx.ldt) * ctx.low_pad;
  if (row < 0 || row >= a.h) {
    std::memset(dst, 0, sizeof(uint16_t) * static_cast<size_t>(row_elems));
    return;
  }
  const int ja = x0 == 0 ? 1 : 0;              // first column inside the image
  const int jb = imin(x1 + 1, a.w) - x0 + 1;  // one past the last
  const Bf16* x_row = a.x + (static_cast<int64_t>(n) * a.h + row) * a.w * a.c;
  const int wide_pad = ctx.wide_pad, low_pad = ctx.low_pad;  // locals: the stores below may alias ctx for GCC
  for (int j = ja; j < jb; j += kAmxPixels) {
    const int pixels = imin(kAmxPixels, jb - j);
    stage_pixels(x_row + static_cast<int64_t>(x0 - 1 + j) * a.c, a.c, pixels, kAmxPixels, ctx.c_pad, s.x);
    for (int n0 = 0; n0 < ctx.wide_pad; n0 += kAmxChannels) {  // expand, ReLU
      amx_gemm(s.x, ctx.c_pad, ctx.b_expand, ctx.bias_expand, n0, ctx.c_pad / kTileK, s.c);
      uint16_t* wide = s.wide + n0;
      for (int p = 0; p < kAmxPixels; ++p) store_bf16_channels<true>(s.c + p * kAmxChannels, wide + p * wide_pad);
    }
    for (int n0 = 0; n0 < ctx.low_pad; n0 += kAmxChannels) {  // reduce
      amx_gemm(s.wide, wide_pad, ctx.b_reduce, ctx.bias_reduce, n0, wide_pad / kTileK, s.c);
      uint16_t* t = dst + static_cast<int64_t>(j) * low_pad + n0;
      for (int p = 0; p < pixels; ++p) store_bf16_channels<false>(s.c + p * kAmxChannels, t + p * low_pad);
    }
  }
  if (ja == 1) std::memset(dst, 0, sizeof(uint16_t) * ctx.low_pad);
  std::memset(dst + static_cast<int64_t>(jb) * ctx.low_pad, 0,
              sizeof(uint16_t) * static_cast<size_t>(row_elems - static_cast<int64_t>(jb) * ctx.low_pad));
}

// Row `row` of y over the chunk [x0, x1) from the t rows row - 1, row, row + 1 (rows[dy]).
inline void amx_conv_row(const AmxBContext& ctx, int n, int row, int x0, int x1, const uint16_t* const (&rows)[3],
                         const AmxBScratch& s) {
  const BlockBArgsOf<Bf16>& a = *ctx.a;
  const int64_t pixel0 = (static_cast<int64_t>(n) * a.h + row) * a.w;
  for (int xb = x0; xb < x1; xb += kAmxPixels)
    for (int n0 = 0; n0 < ctx.c_pad; n0 += kAmxChannels) {
      amx_conv3x3(rows, xb - x0, ctx.low_pad, ctx.b_conv, ctx.bias_conv, ctx.c_pad / kTileN, ctx.low_pad / kTileK, n0,
                  s.c);
      store_residual(s.c, a.res_scale, a.x, a.y, (pixel0 + xb) * a.c, a.c, n0, imin(kAmxPixels, x1 - xb));
    }
}

inline void block_b_amx_items(const void* context, int64_t begin, int64_t end) {
  const AmxBContext& ctx = *static_cast<const AmxBContext*>(context);
  const int64_t row_elems = static_cast<int64_t>(ctx.ldt) * ctx.low_pad;
  const int64_t elems = 3 * row_elems + static_cast<int64_t>(kAmxPixels) * (ctx.c_pad + ctx.wide_pad);
  Buffer scratch(elems / 2 + kAmxPixels * kAmxChannels);  // bf16 elements two a float
  AmxBScratch s{};
  s.c = scratch.get();
  s.ring = reinterpret_cast<uint16_t*>(s.c + kAmxPixels * kAmxChannels);
  s.x = s.ring + 3 * row_elems;
  s.wide = s.x + kAmxPixels * ctx.c_pad;
  tiles_configure();
  for (int64_t item = begin; item < end; ++item) {
    const auto [n, x0, x1, r0, r1] = ctx.bands.item(item);
    int top = 0;  // the ring slot of t row `row - 1`; the next two slots (mod 3) hold rows `row` and `row + 1`
    amx_t_row(ctx, n, r0 - 1, x0, x1, s.ring, s);
    amx_t_row(ctx, n, r0, x0, x1, s.ring + row_elems, s);
    for (int row = r0; row < r1; ++row) {
      amx_t_row(ctx, n, row + 1, x0, x1, s.ring + (top + 2) % 3 * row_elems, s);
      const uint16_t* const rows[3] = {s.ring + top * row_elems, s.ring + (top + 1) % 3 * row_elems,
                                       s.ring + (top + 2) % 3 * row_elems};
      amx_conv_row(ctx, n, row, x0, x1, rows, s);
      top = (top + 1) % 3;
    }
  }
  tiles_release();
}

void wdsr_b_block_amx(const BlockBArgsOf<Bf16>& a, const Parallel& parallel) {
  AmxBContext ctx{};
  ctx.a = &a;
  ctx.bands = RowBands::plan(a.n, a.h, a.w, a.max_chunk_w, parallel.threads);
  ctx.c_pad = round_up(a.c, kTileK);
  ctx.wide_pad = round_up(a.wide, kTileK);
  ctx.low_pad = round_up(a.low_rank, kTileK);
  // A GEMM step of the 3x3 reads 32 pixels from column xb - x0 + dx: up to round_up(chunk, 32) + 2.
  ctx.ldt = round_up(ctx.bands.chunk_w + 2, kAmxPixels) + kAmxPixels;
  const int64_t expand_elems = static_cast<int64_t>(ctx.wide_pad / kTileN) * (ctx.c_pad / kTileK) * kTileElems;
  const int64_t reduce_elems = static_cast<int64_t>(ctx.low_pad / kTileN) * (ctx.wide_pad / kTileK) * kTileElems;
  const int64_t conv_elems = pack_conv3x3_tiles(a.w_conv, a.c, a.low_rank, ctx.c_pad, ctx.low_pad, nullptr);
  const int64_t bias_floats = static_cast<int64_t>(ctx.wide_pad + ctx.low_pad + ctx.c_pad) * kTileRows;
  Buffer packed(bias_floats + (expand_elems + reduce_elems + conv_elems) / 2);
  float* bias_expand = packed.get();
  float* bias_reduce = bias_expand + pack_bias_tiles(a.b_expand, a.wide, ctx.wide_pad, bias_expand);
  float* bias_conv = bias_reduce + pack_bias_tiles(a.b_reduce, a.low_rank, ctx.low_pad, bias_reduce);
  pack_bias_tiles(a.b_conv, a.c, ctx.c_pad, bias_conv);
  ctx.bias_expand = bias_expand;
  ctx.bias_reduce = bias_reduce;
  ctx.bias_conv = bias_conv;
  auto* tiles = reinterpret_cast<uint16_t*>(bias_expand + bias_floats);
  pack_b_tiles(a.w_expand, a.c, 1, a.wide, a.c, ctx.wide_pad / kTileN, ctx.c_pad / kTileK, tiles);
  pack_b_tiles(a.w_reduce, a.wide, 1, a.low_rank, a.wide, ctx.low_pad / kTileN, ctx.wide_pad / kTileK,
               tiles + expand_elems);
  pack_conv3x3_tiles(a.w_conv, a.c, a.low_rank, ctx.c_pad, ctx.low_pad, tiles + expand_elems + reduce_elems);
  ctx.b_expand = tiles;
  ctx.b_reduce = tiles + expand_elems;
  ctx.b_conv = tiles + expand_elems + reduce_elems;
  parallel.run(ctx.bands.items, &block_b_amx_items, &ctx);
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
