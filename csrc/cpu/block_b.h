// The fused WDSR-B block on the CPU, written once for every vector width (simd.h):
//   y = x + res_scale * conv3x3(t) + ...,  t = reduce1x1(relu(expand1x1(x)))   (biases everywhere)
//
// Design, in numbers for WDSR-B 32 (c = 32, wide = 192, low_rank = 25):
// - Work per pixel: expand 2*32*192 = 12,288 FLOP, reduce 2*192*25 = 9,600, 3x3 2*9*25*32 = 14,400; 36,288 in
//   all. The 192-channel wide activation (768 B a pixel) never leaves L1; the low-rank t (100 B a pixel) lives
//   in a ring of three rows in L2; x is read once and y written once (128 B a pixel each).
// - A work item is a band of rows of one image, restricted to a column chunk of at most kMaxChunkWidth = 512
//   pixels. It slides down its rows: for each new row it computes that row's t once (the 1x1 chain on the
//   chunk's pixels plus a one-pixel halo each side), then the 3x3 of the row above from the three t rows.
//   t is zero outside the image (the 3x3 zero-pads its input), so halo columns are computed only at chunk
//   edges inside the image: a 480-wide map is one chunk with no halo work. Recomputed work: 2 t rows per band
//   and 2 t columns per interior chunk edge (+0.4% at 512 columns). Bands are as few as keep every thread
//   busy: a 128-row map on 2 threads is 2 bands of 64 rows, +3% of the 1x1 work (+1.9% in all).
// - t ring: 3 rows x 25 channels x ldt (>= chunk + 2 + padding) floats, planar per row [l][column]:
//   154 KB for a 512-wide chunk, in L2 (2 MB a core on the Xeon we measure on, 512 KB on Zen 2/3).
// - The 1x1 chain runs on micro-tiles of P = 2 vectors of pixels (32 with AVX-512, 16 with AVX2), transposed
//   from NHWC to planar [channel][pixel] in registers (VW x VW blocks: 128 cycles a bf16 tile on Zen 4 where
//   strided gathers took 650, measured alone with x in L2; the next tile prefetched: the loads otherwise wait
//   for memory), so that both GEMMs vectorise over pixels and odd channel counts (25) cost no padding: x tile
//   32 x P (4 KB with AVX-512), wide tile 192 x P (24 KB with AVX-512, 12 KB with AVX2), both in L1.
//   Register blocks: R output channels x 2 pixel vectors with R = kAccumulators / 2 (12 on AVX-512: 24 zmm
//   accumulators, 2 input vectors, 1 broadcast; 6 on AVX2: 12 ymm). Per input channel: 2 vector loads and
//   R broadcast weights for 2R FMAs. Weights are packed per call as [group][k][R] so the broadcasts stream.
//   expand: 192 rows = 16 blocks of 12 (AVX-512), 32 of 6 (AVX2); reduce: 25 rows = 9 + 8 + 8, or 5 x 5.
// - The 3x3 vectorises over output channels instead, so that y is written in NHWC without a transpose:
//   blocks of 2 channel vectors x PB pixels, PB = kAccumulators / 2 (12 on AVX-512, 6 on AVX2), the 225 taps'
//   ring offsets read from a table. AVX2: per (dy, l, dx) tap 2 weight-vector loads and PB broadcasts of t for
//   2 PB FMAs. AVX-512: per (dy, l) the 3 dx taps' 6 weight vectors and 14 broadcasts for 72 FMAs (0.28 loads
//   per FMA instead of 0.58; the block 4-7% faster on one core, measured). Channel counts that are not a
//   multiple of the vector width use zero-padded weights and masked stores. Bias, res_scale and the residual
//   are applied in the epilogue, from the accumulators.
// - Measured on one core of the AVX-512 Xeon (3.7 GHz, an FMA-only loop of 24 zmm accumulators: 238 GFLOP/s):
//   alone in cache, expand and reduce reach 0.78-0.87 of that FMA peak with AVX-512 and 0.95 with AVX2; inside
//   the block at 128x128 the 1x1 chain (with its x gathers, under 1%) runs at 0.79 and the 3x3 at 0.73; the
//   whole block at 0.76-0.83 (177-198 GFLOP/s), linear in pixels from 128x128 to 270x480. Two threads:
//   1.9-2.0x one thread, 93-95% of the 2-thread 2048^3 matmul (benchmarks/cpu_kernels.py).
// - Tried and measured slower: the 3x3 as Winograd F(2,3) along rows (4 multiply-adds per output pair instead
//   of 6): its register blocks need 4 accumulators per pixel pair, so they stream 1.5x the weight bytes per
//   FMA, and the transform of each t row costs what the saved multiply-adds gain (block 4% slower with
//   AVX-512, 5-8% with AVX2, at 128x128). F(2x2, 3x3) over tiles of two rows is faster: block_b_winograd.h.
#pragma once
#include "conv_block.h"
#include "kernel_common.h"
#include "kernels.h"

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

constexpr int kTileVecs = 2;                           // pixel vectors per 1x1-chain micro-tile
constexpr int kTilePixels = kTileVecs * VW;            // P
constexpr int kChainRows = kAccumulators / kTileVecs;  // R: output channels per 1x1 register block
constexpr int kConvPixels = kPixels<kGroupVecs>;  // PB: pixels per 3x3 register block
// Floats per word of the x tile: P, or with bf16 2 P (each word twice, for expand_pairs).
constexpr int kXStride = kPack * kTilePixels;
using BArgs = BlockBArgsOf<feature_t>;

// 1x1 conv of a planar micro-tile: out[r][p] = act(bias[r] + sum_k w[k][r] * in[k][p]) for R rows, k over input
// words; the output rows as words too, kPack rows a word (R a multiple of kPack).
template <int R, bool Relu>
inline void chain_rows(const float* w, const float* bias, const float* in, int k_count, float* out, int ld_out) {
  vf acc[R][kTileVecs];
  WDSR_UNROLL for (int r = 0; r < R; ++r)
    WDSR_UNROLL for (int v = 0; v < kTileVecs; ++v) acc[r][v] = vset1(bias[r]);
  int k = 0;
  do {  // k_count >= 1; a loop that may run zero times makes GCC keep acc in memory as well
    vf in_v[kTileVecs];
    WDSR_UNROLL for (int v = 0; v < kTileVecs; ++v) in_v[v] = vload(in + k * kTilePixels + v * VW);
    const float* wk = w + k * R;
    WDSR_UNROLL for (int r = 0; r < R; ++r) {
      const vf b = vset1(wk[r]);
      WDSR_UNROLL for (int v = 0; v < kTileVecs; ++v) acc[r][v] = vdot(b, in_v[v], acc[r][v]);
    }
  } while (++k < k_count);
  WDSR_UNROLL for (int r = 0; r < R; r += kPack)
    WDSR_UNROLL for (int v = 0; v < kTileVecs; ++v) {
      vf rows[kPack];
      WDSR_UNROLL for (int j = 0; j < kPack; ++j) rows[j] = acc[r + j][v];
      const vf packed = vpack_words(rows);  // the ReLU after the rounding: one max for both rows with bf16
      vstore(out + r / kPack * ld_out + v * VW, Relu ? vrelu_words(packed) : packed);
    }
}

#if defined(WDSR_CPU_BF16)
// The expand with bf16 features, a word of wide channels at a time: the accumulators hold channel pairs (r, r + 1)
// in neighbouring lanes for 8 pixels (weights broadcast as word pairs, x words duplicated in the x tile), so that
// one vcvtne2ps2bf16 of two of them gives 16 words of the wide tile in order; chain_rows needs a vpermw more
// to pair rows, and 14 loads per 24 vdpbf16ps against 10 here (the Winograd bf16 block 2% faster at 128x128 and
// 270x480 on one Zen 4 core, paired rounds). Pairs x 2 kTileVecs accumulators; x tile [k][kXStride], out rows as
// words (ld_out apart).
template <int Pairs>
inline void expand_pairs(const float* w, const float* bias, const float* x_tile, int k_count, float* out,
                         int ld_out) {
  constexpr int Q = 2 * kTileVecs;  // vectors of 8 pixels
  vf acc[Pairs][Q];
  WDSR_UNROLL for (int j = 0; j < Pairs; ++j) {
    const vf b = vset1_pair(bias + 2 * j);
    WDSR_UNROLL for (int q = 0; q < Q; ++q) acc[j][q] = b;
  }
  int k = 0;
  do {  // k_count >= 1 (chain_rows)
    vf in[Q];
    WDSR_UNROLL for (int q = 0; q < Q; ++q) in[q] = vload(x_tile + k * kXStride + q * VW);
    const float* wk = w + k * 2 * Pairs;
    WDSR_UNROLL for (int j = 0; j < Pairs; ++j) {
      const vf b = vset1_pair(wk + 2 * j);
      WDSR_UNROLL for (int q = 0; q < Q; ++q) acc[j][q] = vdot(b, in[q], acc[j][q]);
    }
  } while (++k < k_count);
  WDSR_UNROLL for (int j = 0; j < Pairs; ++j)
    WDSR_UNROLL for (int v = 0; v < kTileVecs; ++v) {
      vstore(out + j * ld_out + v * VW, vrelu_words(vpack_lane_pairs(acc[j][2 * v], acc[j][2 * v + 1])));
    }
}
#endif

// A 1x1 conv, rows x channels weights (OI), packed per register block as [k][R] over input words k (block g starts
// at start(g) * k_count); rows padded to whole words with zero weights and biases.
struct PackedRows {
  RowGroups groups;
  int k_count;  // input words
  const float* w;
  const float* bias;

  static int64_t floats(int rows, int channels) {
    return static_cast<int64_t>(round_up(rows, kPack)) * (ceil_div(channels, kPack) + 1);
  }
  // Packs w and bias into `packed` (floats(rows, channels) of them).
  static PackedRows pack(const float* w, const float* bias, int rows, int channels, float* packed) {
    const RowGroups groups = RowGroups::split(rows, kChainRows, kPack);
    const int k_count = ceil_div(channels, kPack);
    const int padded = round_up(rows, kPack);
    float* packed_bias = packed + static_cast<int64_t>(padded) * k_count;
    for (int g = 0; g < groups.count; ++g) {
      const int start = groups.start(g), size = groups.size(g);
      float* dst = packed + static_cast<int64_t>(start) * k_count;
      for (int k = 0; k < k_count; ++k)
        for (int r = 0; r < size; ++r)
          dst[k * size + r] = start + r < rows ? word_of(w + static_cast<int64_t>(start + r) * channels + k * kPack,
                                                         1, channels - k * kPack)
                                               : 0.0f;
    }
    for (int r = 0; r < padded; ++r) packed_bias[r] = r < rows ? bias[r] : 0.0f;
    return {groups, k_count, packed, packed_bias};
  }
};

// Also prefetches `ahead_floats` floats from `ahead`, spread over the register blocks (a burst of prefetches
// would wait for free line-fill buffers).
template <bool Relu>
inline void chain_layer(const PackedRows& layer, const float* in, float* out, int ld_out,
                        const float* ahead = nullptr, int ahead_floats = 0) {
  const int ahead_per_block = round_up(ceil_div(ahead_floats, layer.groups.count), 16);
  for (int g = 0; g < layer.groups.count; ++g) {
    for (int f = g * ahead_per_block; f < imin((g + 1) * ahead_per_block, ahead_floats); f += 16) prefetch(ahead + f);
    const int start = layer.groups.start(g);
    with_rows<kChainRows / kPack>(layer.groups.size(g) / kPack, [&]<int Words>() {
      const float* w = layer.w + static_cast<int64_t>(start) * layer.k_count;
      float* out_rows = out + static_cast<int64_t>(start / kPack) * ld_out;
#if defined(WDSR_CPU_BF16)
      if constexpr (Relu) {  // the expand
        expand_pairs<Words>(w, layer.bias + start, in, layer.k_count, out_rows, ld_out);
        return;
      }
#endif
      chain_rows<Words * kPack, Relu>(w, layer.bias + start, in, layer.k_count, out_rows, ld_out);
    });
  }
}

// 3x3 over the t ring for PB pixels and G channel vectors, with the residual epilogue:
// y[p][c] = x[p][c] + res_scale * (bias[c] + sum_tap w[tap][c] * t[taps[tap] + p]), the taps (dy, l, dx) listed
// as offsets into the ring (a table, not loop arithmetic: GCC would carry the broadcasts shared by neighbouring
// dx taps in registers and spill accumulators for them).
template <int G>
inline void conv3x3_pixels(const float* t, const int* taps, int tap_count, const float* w, const float* bias,
                           const feature_t* x, feature_t* y, int c_stride, int c_valid, int pixels, float res_scale) {
  ConvBlock<G, kConvPixels> block(bias);
  block.template tap_runs<3>(w, t, taps, tap_count, 1);
  const vf scale = vset1(res_scale);
  block.store(y, c_stride, pixels, c_valid, [&](vf acc, int64_t at, int lanes) {  // y = x + res_scale * acc
    return vfma(scale, acc, lanes >= VW ? vload_feat(x + at) : vload_feat_n(x + at, lanes));
  });
}

struct BlockBPlan {
  RowBands bands;
  int ldt;  // words per word-row of t (kPack channels): the chunk, its halo and padding
  int t_words;  // word-rows of t: low_rank / kPack, rounded up
};

inline BlockBPlan plan_block_b(const BArgs& a, int threads) {
  BlockBPlan plan{};
  plan.bands = RowBands::plan(a.n, a.h, a.w, a.max_chunk_w, threads);
  plan.ldt = round_up(plan.bands.chunk_w + 2 + imax(kTilePixels, kConvPixels + 2), VW);
  plan.t_words = ceil_div(a.low_rank, kPack);
  return plan;
}

struct BlockBContext {
  const BArgs* a;
  BlockBPlan plan;
  PackedRows expand, reduce;
  const float* w_conv;  // packed [channel group][dy][t word][dx][kGroupLanes]
  const float* b_conv;  // packed [channel group][kGroupLanes]
  int conv_groups;
};

// The 1x1 chain's weights and biases, packed into `packed` (chain_floats(a) of them), into ctx.expand and ctx.reduce.
inline int64_t chain_floats(const BArgs& a) {
  return PackedRows::floats(a.wide, a.c) + PackedRows::floats(a.low_rank, a.wide);
}
inline void pack_chain(const BArgs& a, float* packed, BlockBContext& ctx) {
  ctx.expand = PackedRows::pack(a.w_expand, a.b_expand, a.wide, a.c, packed);
  ctx.reduce = PackedRows::pack(a.w_reduce, a.b_reduce, a.low_rank, a.wide, packed + PackedRows::floats(a.wide, a.c));
}

// Pixels v VW .. v VW + VW - 1 of x word k into the x tile ([k][kXStride]; with bf16 each word twice).
inline void store_x_column(float* x_tile, int k, int v, vf column) {
#if defined(WDSR_CPU_BF16)
  vstore(x_tile + k * kXStride + 2 * v * VW, vdup_words(column, 0));
  vstore(x_tile + k * kXStride + (2 * v + 1) * VW, vdup_words(column, 1));
#else
  vstore(x_tile + k * kXStride + v * VW, column);
#endif
}

// Floats of the x tile and of the wide tile ([wide word][kTilePixels]) of t_row.
inline int64_t x_tile_floats(const BArgs& a) { return static_cast<int64_t>(ceil_div(a.c, kPack)) * kXStride; }
inline int64_t wide_tile_floats(const BArgs& a) { return static_cast<int64_t>(ceil_div(a.wide, kPack)) * kTilePixels; }

// One t row of the chunk [x0, x1) for image row `row` into dst ([t_words][ldt] words; column j is image column
// x0 - 1 + j). Zero outside the image.
inline void t_row(const BlockBContext& ctx, int n, int row, int x0, int x1, float* dst, float* x_tile,
                  float* wide_tile) {
  const BArgs& a = *ctx.a;
  const int ldt = ctx.plan.ldt;
  if (row < 0 || row >= a.h) {
    std::memset(dst, 0, sizeof(float) * static_cast<size_t>(ctx.plan.t_words) * ldt);
    return;
  }
  const int ja = x0 == 0 ? 1 : 0;                 // first column inside the image
  const int jb = imin(x1 + 1, a.w) - x0 + 1;     // one past the last
  const int cw = a.c / kPack;                     // words per pixel of x
  const float* x_row = words(a.x) + (static_cast<int64_t>(n) * a.h + row) * a.w * cw;
  for (int j = ja; j < jb; j += kTilePixels) {
    const int pixels = imin(kTilePixels, jb - j);
    const float* src = x_row + static_cast<int64_t>(x0 - 1 + j) * cw;
    for (int v = 0; v < kTileVecs; ++v) {  // NHWC -> planar [k][pixel] words, zeros past the row's end
      const float* px = src + v * VW * cw;
      const int valid = pixels - v * VW;
      int k = 0;
      if (valid >= VW)
        for (; k + VW <= cw; k += VW) {
          vf columns[VW];
          vtranspose(px + k, cw, columns);
          WDSR_UNROLL for (int j = 0; j < VW; ++j) store_x_column(x_tile, k + j, v, columns[j]);
        }
      for (; k < cw; ++k) store_x_column(x_tile, k, v, valid > 0 ? vgather_n(px + k, cw, valid) : vzero());
    }
    // The next tile's pixels (or the next row's first), from memory while this one computes: the loads
    // above would wait for them.
    const bool last = j + kTilePixels >= jb;
    const float* ahead = last ? x_row + (static_cast<int64_t>(a.w) + x0 - 1 + ja) * cw : src + kTilePixels * cw;
    int ahead_pixels = imin(kTilePixels, jb - j - kTilePixels);
    if (last) ahead_pixels = row + 1 < a.h ? imin(kTilePixels, jb - ja) : 0;
    chain_layer<true>(ctx.expand, x_tile, wide_tile, kTilePixels, ahead, ahead_pixels * cw);
    chain_layer<false>(ctx.reduce, wide_tile, dst + j, ldt);
  }
  for (int l = 0; l < ctx.plan.t_words; ++l) {
    float* dl = dst + static_cast<int64_t>(l) * ldt;
    if (ja == 1) dl[0] = 0.0f;
    std::memset(dl + jb, 0, sizeof(float) * static_cast<size_t>(ldt - jb));
  }
}

// Row `row` of y over the chunk [x0, x1): ring holds the t rows, `taps` their offsets for this row's rotation.
inline void conv_row(const BlockBContext& ctx, int n, int row, int x0, int x1, const float* ring, const int* taps) {
  const BArgs& a = *ctx.a;
  const int64_t pixel0 = (static_cast<int64_t>(n) * a.h + row) * a.w;
  const int tap_count = 9 * ctx.plan.t_words;
  for (int xb = x0; xb < x1; xb += kConvPixels) {
    const int pixels = imin(kConvPixels, x1 - xb);
    const feature_t* x = a.x + (pixel0 + xb) * a.c;
    feature_t* y = a.y + (pixel0 + xb) * a.c;
    const float* t = ring + (xb - x0);
    for (int g = 0; g < ctx.conv_groups; ++g) {
      const int c0 = g * kGroupLanes;
      const int c_valid = imin(kGroupLanes, a.c - c0);
      const float* w = ctx.w_conv + static_cast<int64_t>(g) * tap_count * kGroupLanes;
      const float* b = ctx.b_conv + g * kGroupLanes;
      if (c_valid > VW) {
        conv3x3_pixels<kGroupVecs>(t, taps, tap_count, w, b, x + c0, y + c0, a.c, c_valid, pixels, a.res_scale);
      } else {
        conv3x3_pixels<1>(t, taps, tap_count, w, b, x + c0, y + c0, a.c, c_valid, pixels, a.res_scale);
      }
    }
  }
}

inline void block_b_items(const void* context, int64_t begin, int64_t end) {
  const BlockBContext& ctx = *static_cast<const BlockBContext*>(context);
  const BArgs& a = *ctx.a;
  const BlockBPlan& plan = ctx.plan;
  const int64_t ring_floats = static_cast<int64_t>(plan.t_words) * plan.ldt;  // one t row
  const int tap_count = 9 * plan.t_words;
  Buffer scratch(3 * ring_floats + x_tile_floats(a) + wide_tile_floats(a) + 3 * tap_count);
  float* ring = scratch.get();
  float* x_tile = ring + 3 * ring_floats;
  float* wide_tile = x_tile + x_tile_floats(a);
  // taps[top][(dy * t_words + l) * 3 + dx]: offset of t[row - 1 + dy][l][dx] (word l) when row - 1 is in ring slot
  // top
  int* taps = reinterpret_cast<int*>(wide_tile + wide_tile_floats(a));
  for (int top = 0; top < 3; ++top)
    for (int dy = 0; dy < 3; ++dy)
      for (int l = 0; l < plan.t_words; ++l)
        for (int dx = 0; dx < 3; ++dx)
          taps[top * tap_count + (dy * plan.t_words + l) * 3 + dx] =
              static_cast<int>((top + dy) % 3 * ring_floats + static_cast<int64_t>(l) * plan.ldt + dx);
  for (int64_t item = begin; item < end; ++item) {
    const auto [n, x0, x1, r0, r1] = plan.bands.item(item);
    int top = 0;  // the ring slot of t row `row - 1`; the next two slots (mod 3) hold rows `row` and `row + 1`
    t_row(ctx, n, r0 - 1, x0, x1, ring, x_tile, wide_tile);
    t_row(ctx, n, r0, x0, x1, ring + ring_floats, x_tile, wide_tile);
    for (int row = r0; row < r1; ++row) {
      t_row(ctx, n, row + 1, x0, x1, ring + (top + 2) % 3 * ring_floats, x_tile, wide_tile);
      conv_row(ctx, n, row, x0, x1, ring, taps + top * tap_count);
      top = (top + 1) % 3;
    }
  }
}

void wdsr_b_block(const BArgs& a, const Parallel& parallel) {
  BlockBContext ctx{};
  ctx.a = &a;
  ctx.plan = plan_block_b(a, parallel.threads);
  ctx.conv_groups = ceil_div(a.c, kGroupLanes);
  const int t_words = ctx.plan.t_words;
  const int64_t conv_floats = static_cast<int64_t>(ctx.conv_groups) * 9 * t_words * kGroupLanes;
  Buffer packed(chain_floats(a) + conv_floats + ctx.conv_groups * kGroupLanes);
  float* w_conv = packed.get() + chain_floats(a);
  float* b_conv = w_conv + conv_floats;
  pack_chain(a, packed.get(), ctx);
  std::memset(w_conv, 0, sizeof(float) * static_cast<size_t>(conv_floats + ctx.conv_groups * kGroupLanes));
  for (int c = 0; c < a.c; ++c) {
    const int g = c / kGroupLanes, lane = c % kGroupLanes;
    b_conv[g * kGroupLanes + lane] = a.b_conv[c];
    for (int l = 0; l < t_words; ++l)
      for (int dy = 0; dy < 3; ++dy)
        for (int dx = 0; dx < 3; ++dx)
          w_conv[((static_cast<int64_t>(g) * 3 + dy) * t_words + l) * 3 * kGroupLanes + dx * kGroupLanes + lane] =
              word_of(a.w_conv + ((static_cast<int64_t>(c) * a.low_rank + l * kPack) * 3 + dy) * 3 + dx, 9,
                      a.low_rank - l * kPack);
  }
  ctx.w_conv = w_conv;
  ctx.b_conv = b_conv;
  parallel.run(ctx.plan.bands.items, &block_b_items, &ctx);
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
