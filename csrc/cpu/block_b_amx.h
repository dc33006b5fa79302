// The fused WDSR-B block on AMX tiles, bf16 features (CPUs with AMX-BF16: Sapphire Rapids and later):
//   y = x + res_scale * conv3x3(t) + ...,  t = reduce1x1(relu(expand1x1(x)))   as block_b.h
//
// Design, in numbers for WDSR-B 32 (c = 32, wide = 192, low_rank = 25):
// - Every layer is a GEMM over pixels on amx_tiles.h's 2 x 2 register block: 32 pixels (two A tiles) x 32 output
//   channels (two B tiles), one tile product 16 x 16 x 32 = 8,192 multiply-adds. Channel counts round up to whole
//   tiles (32): per 32 pixels the expand is 6 x 4 products, the reduce 1 x 6 x 4 (25 -> 32 low-rank channels), the
//   3x3 9 taps x 4 (its A tiles the t ring's pixel rows shifted by the tap: no im2col) = 84 products, 1.36x the
//   multiply-adds of the exact layers; a tile product issues every 16 cycles, so 42 cycles a pixel where the
//   AVX512-BF16 Winograd block (block_b_winograd.h) needs about 440 at its peak.
// - Memory: as block_b.h, a work item is a band of rows of one column chunk; the low-rank t lives in a ring of three
//   rows, but pixel-major with its channels padded to 32 ([column][32] bf16, 64 bytes a pixel: one A tile row),
//   36 KB a row for a 512-column chunk; the wide activation of 32 pixels (12 KB) and x's 32 pixels (2 KB), padded
//   the same way, stay in L1. Weights are packed per call as B tiles: 12 + 12 + 18 KB.
// - Epilogues run in AVX-512 from the C tiles stored to a 4 KB buffer: bias, ReLU and rounding to bf16 for the wide
//   activation (per 32 pixels 12 x 32 vectors), bias for t, bias, res_scale and the residual for y.
// - Accuracy: the products and sums are fp32 as in the AVX512-BF16 kernels; the wide activation and t are rounded
//   to bf16 once, as there.
// Not yet measured (no AMX CPU in our sessions); WDSR_FAST_CPU_BLOCK_B=amx runs it, the default stays the Winograd
// kernel until a race on an AMX CPU (benchmarks/README.md) says otherwise.
#pragma once
#include "amx_tiles.h"
#include "kernel_common.h"
#include "kernels.h"

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

constexpr int kAmxPixels = 2 * kTileRows;  // pixels per GEMM step: two A tiles
constexpr int kAmxChannels = 2 * kTileN;   // output channels per GEMM step: two B tiles (= kTileK)

struct AmxBContext {
  const BlockBArgsOf<Bf16>* a;
  RowBands bands;
  int c_pad, wide_pad, low_pad;  // channel counts rounded up to kTileK
  int ldt;                       // pixels per ring row: the chunk, its halo and a GEMM step's overhang
  const uint16_t* b_expand;      // B tiles [wide_pad / 16][c_pad / 32]
  const uint16_t* b_reduce;      // [low_pad / 16][wide_pad / 32]
  const uint16_t* b_conv;        // [9 taps (dy, dx)][c_pad / 16][low_pad / 32]
  const float* bias_expand;      // [wide_pad], zero past wide
  const float* bias_reduce;      // [low_pad]
  const float* bias_conv;        // [c_pad]
};

// Per item: the t ring, x's and the wide activation's 32 pixels, the C tiles.
struct AmxBScratch {
  uint16_t* ring;  // 3 rows [ldt][low_pad]
  uint16_t* x;     // [kAmxPixels][c_pad]
  uint16_t* wide;  // [kAmxPixels][wide_pad]
  float* c;        // [kAmxPixels][kAmxChannels]
};

// out[p][n] = A[p][k] x B for 32 pixels and the output channels n0 .. n0 + 31 (B tiles b: [n tiles][k_tiles]), into
// scratch c; A rows a_ld bf16 apart.
inline void amx_gemm(const uint16_t* a, int a_ld, const uint16_t* b, int n0, int k_tiles, float* c) {
  tiles_zero();
  const uint16_t* b0 = b + static_cast<int64_t>(n0 / kTileN) * k_tiles * kTileElems;
  for (int kt = 0; kt < k_tiles; ++kt)
    tiles_step(a + kt * kTileK, a + kTileRows * a_ld + kt * kTileK, 2 * a_ld, b0 + kt * kTileElems,
               b0 + (k_tiles + kt) * kTileElems);
  tiles_store(c, kAmxChannels * sizeof(float));
}

// 32 fp32 channels of c plus bias, rounded to bf16 (ReLU'd where Relu), to dst.
template <bool Relu>
inline void store_bf16_channels(const float* c, const float* bias, uint16_t* dst) {
  vf low = vadd(vload(c), vload(bias)), high = vadd(vload(c + VW), vload(bias + VW));
  if constexpr (Relu) {
    low = vmax(low, vzero());
    high = vmax(high, vzero());
  }
  _mm512_storeu_si512(dst, (__m512i)_mm512_cvtne2ps_pbh(high, low));
}

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
  for (int j = ja; j < jb; j += kAmxPixels) {
    const int pixels = imin(kAmxPixels, jb - j);
    for (int p = 0; p < kAmxPixels; ++p) {  // x's pixels, channels zero-padded to c_pad; zero rows past the end
      uint16_t* xp = s.x + static_cast<int64_t>(p) * ctx.c_pad;
      const Bf16* src = x_row + static_cast<int64_t>(x0 - 1 + j + p) * a.c;
      for (int k = 0; k < ctx.c_pad; k += kTileK) {
        const int valid = p < pixels ? imax(0, imin(kTileK, a.c - k)) : 0;
        const __mmask32 mask = valid >= 32 ? ~__mmask32{0} : (__mmask32{1} << valid) - 1;
        _mm512_storeu_si512(xp + k, _mm512_maskz_loadu_epi16(mask, src + k));
      }
    }
    for (int n0 = 0; n0 < ctx.wide_pad; n0 += kAmxChannels) {  // expand, ReLU
      amx_gemm(s.x, ctx.c_pad, ctx.b_expand, n0, ctx.c_pad / kTileK, s.c);
      for (int p = 0; p < kAmxPixels; ++p)
        store_bf16_channels<true>(s.c + p * kAmxChannels, ctx.bias_expand + n0,
                                  s.wide + static_cast<int64_t>(p) * ctx.wide_pad + n0);
    }
    for (int n0 = 0; n0 < ctx.low_pad; n0 += kAmxChannels) {  // reduce
      amx_gemm(s.wide, ctx.wide_pad, ctx.b_reduce, n0, ctx.wide_pad / kTileK, s.c);
      for (int p = 0; p < pixels; ++p)
        store_bf16_channels<false>(s.c + p * kAmxChannels, ctx.bias_reduce + n0,
                                   dst + static_cast<int64_t>(j + p) * ctx.low_pad + n0);
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
  const int k_tiles = ctx.low_pad / kTileK, n_tiles = ctx.c_pad / kTileN;
  const int64_t tap_elems = static_cast<int64_t>(n_tiles) * k_tiles * kTileElems;
  const vf scale = vset1(a.res_scale);
  for (int xb = x0; xb < x1; xb += kAmxPixels) {
    const int pixels = imin(kAmxPixels, x1 - xb);
    for (int n0 = 0; n0 < ctx.c_pad; n0 += kAmxChannels) {
      tiles_zero();
      for (int dy = 0; dy < 3; ++dy)
        for (int dx = 0; dx < 3; ++dx) {
          const uint16_t* t = rows[dy] + static_cast<int64_t>(xb - x0 + dx) * ctx.low_pad;
          const uint16_t* b = ctx.b_conv + (dy * 3 + dx) * tap_elems +
                              static_cast<int64_t>(n0 / kTileN) * k_tiles * kTileElems;
          for (int kt = 0; kt < k_tiles; ++kt)
            tiles_step(t + kt * kTileK, t + kTileRows * ctx.low_pad + kt * kTileK, 2 * ctx.low_pad,
                       b + kt * kTileElems, b + (k_tiles + kt) * kTileElems);
        }
      tiles_store(s.c, kAmxChannels * sizeof(float));
      for (int p = 0; p < pixels; ++p) {  // y = x + res_scale * (acc + bias), VW channels at a time
        const int64_t at = ((static_cast<int64_t>(n) * a.h + row) * a.w + xb + p) * a.c;
        for (int v = 0; v < kAmxChannels; v += VW) {
          const int k0 = n0 + v, lanes = imin(VW, a.c - k0);
          if (lanes <= 0) break;
          const vf acc = vadd(vload(s.c + p * kAmxChannels + v), vload(ctx.bias_conv + k0));
          vstore_feat_n(a.y + at + k0, vfma(scale, acc, vload_feat_n(a.x + at + k0, lanes)), lanes);
        }
      }
    }
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
  const int64_t conv_elems = 9 * static_cast<int64_t>(ctx.c_pad / kTileN) * (ctx.low_pad / kTileK) * kTileElems;
  const int64_t bias_floats = ctx.wide_pad + ctx.low_pad + ctx.c_pad;
  Buffer packed(bias_floats + (expand_elems + reduce_elems + conv_elems) / 2);
  float* bias = packed.get();
  std::memset(bias, 0, sizeof(float) * static_cast<size_t>(bias_floats));
  std::memcpy(bias, a.b_expand, sizeof(float) * static_cast<size_t>(a.wide));
  std::memcpy(bias + ctx.wide_pad, a.b_reduce, sizeof(float) * static_cast<size_t>(a.low_rank));
  std::memcpy(bias + ctx.wide_pad + ctx.low_pad, a.b_conv, sizeof(float) * static_cast<size_t>(a.c));
  auto* tiles = reinterpret_cast<uint16_t*>(bias + bias_floats);
  pack_b_tiles(a.w_expand, a.c, 1, a.wide, a.c, ctx.wide_pad / kTileN, ctx.c_pad / kTileK, tiles);
  pack_b_tiles(a.w_reduce, a.wide, 1, a.low_rank, a.wide, ctx.low_pad / kTileN, ctx.wide_pad / kTileK,
               tiles + expand_elems);
  uint16_t* conv = tiles + expand_elems + reduce_elems;
  for (int tap = 0; tap < 9; ++tap)
    pack_b_tiles(a.w_conv + tap, 9 * static_cast<int64_t>(a.low_rank), 9, a.c, a.low_rank, ctx.c_pad / kTileN,
                 ctx.low_pad / kTileK, conv + tap * (conv_elems / 9));
  ctx.b_expand = tiles;
  ctx.b_reduce = tiles + expand_elems;
  ctx.b_conv = conv;
  ctx.bias_expand = bias;
  ctx.bias_reduce = bias + ctx.wide_pad;
  ctx.bias_conv = bias + ctx.wide_pad + ctx.low_pad;
  parallel.run(ctx.bands.items, &block_b_amx_items, &ctx);
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
