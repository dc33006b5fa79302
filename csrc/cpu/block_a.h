// The fused WDSR-A block on the CPU, written once for every vector width (simd.h):
//   y = x + res_scale * (conv3x3(relu(conv3x3(x, w_expand) + b_expand), w_reduce) + b_reduce)
//
// Design, in numbers for the WDSR-A baseline (c = 32, wide = 128):
// - Work per pixel: two 3x3 convolutions of 2 x 9 x 32 x 128 = 73,728 FLOP each. The wide activation (512 B a
//   pixel) never reaches memory: it lives in a ring of three rows (NHWC, one zero column each side), 197 KB for a
//   128-pixel chunk, in L2.
// - Work items are bands of rows of one column chunk of one image, as in block_b.h: a band slides down its rows,
//   computing each new wide row once (the expand conv on x, ReLU) and then the output row above it (the reduce
//   conv on the three ring rows, the residual in its epilogue). Recomputed work: the two halo rows of each band
//   and the two halo columns of each interior chunk edge, of the expand only.
// - Both convolutions are the register blocks of convs.h (ConvBlock): 2 output-channel vectors x 12 pixels with
//   AVX-512, the weights of a run of 3 dx taps in registers and each input value broadcast once for them
//   (24 accumulators + 6 weights + 1 of 32 zmm); AVX2 and the portable path go tap by tap.
// - Measured on the 2-core AVX-512 Xeon at 128x128, 2 threads: 350-366 GFLOP/s, 1.14x oneDNN's convolutions with
//   the ReLU and the residual fused in (6.90 against 7.87 ms); on one thread 1.15x. With AVX2 (oneDNN held to
//   AVX2 too) 0.9x of oneDNN's (13.3 against 12.1 ms; as 1 x 12 blocks sharing broadcasts, 12.9 against 11.2),
//   which the binding therefore runs there (KernelTable::a_block_beats_onednn).
#pragma once
#include "convs.h"  // ConvBlock, feature_window, pack_conv, pack_bias
#include "kernel_common.h"
#include "kernels.h"

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

// Column chunks of at most this many pixels keep the ring in L2 (3 rows x 258 columns x 128 channels x 4 B =
// 396 KB for the baseline; 2 MB of L2 a core on the Xeon measured, 512 KB on Zen 2 and 3).
constexpr int kMaxChunkA = 256;

struct BlockAContext {
  const BlockAArgs* a;
  const float* w_expand;  // packed [group][dy][c][dx][kGroupLanes]
  const float* b_expand;  // packed [group][kGroupLanes]
  const float* w_reduce;  // packed [group][dy][wide][dx][kGroupLanes]
  const float* b_reduce;  // packed [group][kGroupLanes]
  const int* expand_taps;  // tap (k, dx) of one x row: dx * c + k
  const int* reduce_taps;  // tap (l, dx) of one ring row: dx * wide + l
  RowBands bands;
  int ring_cols;  // columns of a ring row: the chunk, its halo and the last register block's overrun
};

// Wide row `row` of the chunk [x0, x1) into dst ([ring_cols][wide]; column j is image column x0 - 1 + j): the
// expand conv and its ReLU at the columns inside the image; the others are left as they are (zero).
inline void expand_row(const BlockAContext& ctx, int n, int row, int x0, int x1, float* dst, float* edge) {
  const BlockAArgs& a = *ctx.a;
  const int64_t row_floats = static_cast<int64_t>(a.w) * a.c;
  const int edge_floats = (kMaxPixels + 2) * a.c;
  const float* x_rows[3];
  for (int dy = 0; dy < 3; ++dy) {
    const int y = row - 1 + dy;
    x_rows[dy] = y >= 0 && y < a.h ? a.x + (static_cast<int64_t>(n) * a.h + y) * row_floats : nullptr;
  }
  const int first = imax(x0 - 1, 0), end = imin(x1 + 1, a.w);  // image columns to compute
  const int groups = ceil_div(a.wide, kGroupLanes);
  for (int g = 0; g < groups; ++g) {
    const int c_valid = imin(kGroupLanes, a.wide - g * kGroupLanes);
    with_group_vecs(c_valid, [&]<int G>() {
      for (int xb = first; xb < end; xb += kPixels<G>) {
        ConvBlock<G> block(ctx.b_expand + g * kGroupLanes);
        for (int dy = 0; dy < 3; ++dy) {
          if (x_rows[dy] == nullptr) continue;  // zero padding above and below the image
          const float* in = feature_window(x_rows[dy], xb, kPixels<G>, a.w, a.c, edge + dy * edge_floats);
          block.template tap_runs<3>(ctx.w_expand + (static_cast<int64_t>(g) * 3 + dy) * 3 * a.c * kGroupLanes, in,
                                     ctx.expand_taps, 3 * a.c, a.c);
        }
        block.store(dst + static_cast<int64_t>(xb - (x0 - 1)) * a.wide + g * kGroupLanes, a.wide, end - xb, c_valid,
                    [](vf acc, int64_t, int) { return vmax(acc, vzero()); });
      }
    });
  }
}

// Row `row` of y over the chunk [x0, x1) from the ring rows above, at and below it (`rows`).
inline void reduce_row(const BlockAContext& ctx, int n, int row, int x0, int x1, const float* const rows[3]) {
  const BlockAArgs& a = *ctx.a;
  const int64_t pixel0 = (static_cast<int64_t>(n) * a.h + row) * a.w;
  const vf scale = vset1(a.res_scale);
  const int groups = ceil_div(a.c, kGroupLanes);
  for (int g = 0; g < groups; ++g) {
    const int c_valid = imin(kGroupLanes, a.c - g * kGroupLanes);
    with_group_vecs(c_valid, [&]<int G>() {
      for (int xb = x0; xb < x1; xb += kPixels<G>) {
        ConvBlock<G> block(ctx.b_reduce + g * kGroupLanes);
        for (int dy = 0; dy < 3; ++dy)
          block.template tap_runs<3>(ctx.w_reduce + (static_cast<int64_t>(g) * 3 + dy) * 3 * a.wide * kGroupLanes,
                                     rows[dy] + static_cast<int64_t>(xb - x0) * a.wide, ctx.reduce_taps, 3 * a.wide,
                                     a.wide);
        const float* x = a.x + (pixel0 + xb) * a.c + g * kGroupLanes;
        block.store(a.y + (pixel0 + xb) * a.c + g * kGroupLanes, a.c, x1 - xb, c_valid,
                    [&](vf acc, int64_t at, int lanes) {  // y = x + res_scale * acc
                      return vfma(scale, acc, lanes >= VW ? vload(x + at) : vload_n(x + at, lanes));
                    });
      }
    });
  }
}

inline void block_a_items(const void* context, int64_t begin, int64_t end) {
  const BlockAContext& ctx = *static_cast<const BlockAContext*>(context);
  const BlockAArgs& a = *ctx.a;
  const int64_t ring_floats = static_cast<int64_t>(ctx.ring_cols) * a.wide;  // one wide row
  Buffer scratch(3 * ring_floats + 3 * static_cast<int64_t>(kMaxPixels + 2) * a.c);
  float* ring = scratch.get();
  float* edge = ring + 3 * ring_floats;
  for (int64_t item = begin; item < end; ++item) {
    const auto [n, x0, x1, r0, r1] = ctx.bands.item(item);
    // Zero columns (outside the image, past the chunk) stay zero: expand_row writes only the others.
    auto fill = [&](int slot, int row) {
      float* dst = ring + slot * ring_floats;
      if (row < 0 || row >= a.h) {
        std::memset(dst, 0, sizeof(float) * static_cast<size_t>(ring_floats));
      } else {
        expand_row(ctx, n, row, x0, x1, dst, edge);
      }
    };
    std::memset(ring, 0, sizeof(float) * static_cast<size_t>(3 * ring_floats));
    fill(0, r0 - 1);
    fill(1, r0);
    int top = 0;  // the ring slot of wide row `row - 1`
    for (int row = r0; row < r1; ++row) {
      fill((top + 2) % 3, row + 1);
      const float* rows[3] = {ring + top * ring_floats, ring + (top + 1) % 3 * ring_floats,
                              ring + (top + 2) % 3 * ring_floats};
      reduce_row(ctx, n, row, x0, x1, rows);
      top = (top + 1) % 3;
    }
  }
}

void wdsr_a_block(const BlockAArgs& a, const Parallel& parallel) {
  BlockAContext ctx{};
  ctx.a = &a;
  ctx.bands = RowBands::plan(a.n, a.h, a.w, kMaxChunkA, parallel.threads);
  ctx.ring_cols = ctx.bands.chunk_w + 2 + kMaxPixels;
  const int expand_groups = ceil_div(a.wide, kGroupLanes), reduce_groups = ceil_div(a.c, kGroupLanes);
  const int64_t w_expand_floats = static_cast<int64_t>(expand_groups) * 9 * a.c * kGroupLanes;
  const int64_t w_reduce_floats = static_cast<int64_t>(reduce_groups) * 9 * a.wide * kGroupLanes;
  Buffer packed(w_expand_floats + w_reduce_floats + static_cast<int64_t>(expand_groups + reduce_groups) * kGroupLanes +
                3 * (a.c + a.wide));
  float* w_expand = packed.get();
  float* w_reduce = w_expand + w_expand_floats;
  float* b_expand = w_reduce + w_reduce_floats;
  float* b_reduce = b_expand + expand_groups * kGroupLanes;
  int* expand_taps = reinterpret_cast<int*>(b_reduce + reduce_groups * kGroupLanes);
  int* reduce_taps = expand_taps + 3 * a.c;
  pack_conv(a.w_expand, a.wide, a.c, 3, w_expand);
  pack_conv(a.w_reduce, a.c, a.wide, 3, w_reduce);
  pack_bias(a.b_expand, nullptr, a.wide, b_expand);
  pack_bias(a.b_reduce, nullptr, a.c, b_reduce);
  for (int k = 0; k < a.c; ++k)
    for (int dx = 0; dx < 3; ++dx) expand_taps[k * 3 + dx] = dx * a.c + k;
  for (int l = 0; l < a.wide; ++l)
    for (int dx = 0; dx < 3; ++dx) reduce_taps[l * 3 + dx] = dx * a.wide + l;
  ctx.w_expand = w_expand;
  ctx.w_reduce = w_reduce;
  ctx.b_expand = b_expand;
  ctx.b_reduce = b_reduce;
  ctx.expand_taps = expand_taps;
  ctx.reduce_taps = reduce_taps;
  parallel.run(ctx.bands.items, &block_a_items, &ctx);
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
