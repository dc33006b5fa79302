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
// - With 32 registers (AVX-512) both convolutions are the register blocks of convs.h (ConvBlock): 2 output-channel
//   vectors x 12 pixels, the weights of a run of 3 dx taps in registers and each input value broadcast once for them
//   (24 accumulators + 6 weights + 1 of 32 zmm). Measured on the 2-core AVX-512 Xeon at 128x128, 2 threads:
//   350-366 GFLOP/s, 1.14x oneDNN's convolutions with the ReLU and the residual fused in; on one thread 1.15x.
// - With 16 registers (AVX2, portable) the wide blocks below: 4 output-channel vectors (32 channels) x 3 pixels =
//   12 accumulators + 3 broadcasts + 1 weight vector = 16 ymm; 7 loads per 12 FMAs. A 3-pixel block reuses each
//   weight only 3 times, so the weights must come from L1: each conv runs over blocks of kAInBlock = 16 input
//   channels, 9 x 16 x 32 x 4 B = 18 KB of weights (L1d: 32 KB on Zen 2-4 and Skylake), sweeping the row's pixels
//   and keeping the partial sums in memory (the wide row itself for the expand, a 33 KB scratch row for the reduce:
//   12 vector loads and stores per 432 FMAs). Without the input blocking (the weights streamed from L2, 147 KB for
//   the reduce) the same register block ran at half the speed; with one accumulator spilled by GCC (the rows
//   inlined into the item loop) at 0.7x, hence the noinline. The former AVX2 path (ConvBlock 2 x 6, tap by tap)
//   reached 0.9x of oneDNN's AVX2 convolutions on the Xeon; this one, on a 2-core Zen 4 EPYC with oneDNN held to
//   AVX2 (ONEDNN_MAX_CPU_ISA=AVX2) and a loaded machine, 1.07x of it at 128x128 on one thread (best of 11) and
//   ahead on two (benchmarks/README.md, CPU section, for the whole model against the peers).
#pragma once
#include "conv_block.h"
#include "kernel_common.h"
#include "kernels.h"


namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

// Column chunks of at most this many pixels keep the ring in L2 (3 rows x 258 columns x 128 channels x 4 B =
// 396 KB for the baseline; 2 MB of L2 a core on the Xeon measured, 512 KB on Zen 2 and 3).
constexpr int kMaxChunkA = 256;

// The register block of both convolutions. With 32 registers (AVX-512): ConvBlock's 2 vectors x 12 pixels, the
// weights of a run of 3 dx taps in registers. With 16 (AVX2, portable): 4 vectors (32 channels with AVX2) x 3
// pixels = 12 accumulators + 3 broadcasts + 1 weight vector = 16 ymm, the weight vector loaded once for 3 FMAs
// and each broadcast once for 4: 7 loads per 12 FMAs (ConvBlock's 2 x 6: 8 per 12, and every output row of the
// reduce conv read its 147 KB of weights twice, once per 16-channel group, from L2).
#if defined(WDSR_CPU_AVX512)
#define WDSR_CPU_WIDE_A_BLOCKS 0
#else
#define WDSR_CPU_WIDE_A_BLOCKS 1
#endif
constexpr bool kWideBlocks = WDSR_CPU_WIDE_A_BLOCKS;
static_assert(kWideBlocks == (kRegisters == 16));
using AArgs = BlockAArgsOf<feature_t>;
constexpr int kAVecs = kWideBlocks ? 4 : kGroupVecs;
constexpr int kALanes = kAVecs * VW;
constexpr int kAPixels = kAccumulators / kAVecs;

#if WDSR_CPU_WIDE_A_BLOCKS
struct WideBlock : ConvBlock<kAVecs, kAPixels> {
  using ConvBlock<kAVecs, kAPixels>::ConvBlock;
  // The accumulators from a partial sum: pixel p, channel v * VW + lane at src[p * pixel_stride + v * VW + lane]
  // (the first c_valid channels; the rest zero).
  WideBlock(const float* src, int64_t pixel_stride, int c_valid) : ConvBlock<kAVecs, kAPixels>(src) {
    WDSR_UNROLL for (int p = 0; p < kAPixels; ++p)
      WDSR_UNROLL for (int v = 0; v < kAVecs; ++v) {
        const int lanes = c_valid - v * VW;
        const float* at = src + p * pixel_stride + v * VW;
        this->acc[p][v] = lanes >= VW ? vload(at) : lanes > 0 ? vload_n(at, lanes) : vzero();
      }
  }
  // Weights packed [tap][kALanes].
  void wide_taps(const float* w, const float* in, const int* offsets, int count, int pixel_stride) {
    int tap = 0;
    do {
      const float* it = in + offsets[tap];
      const float* wt = w + static_cast<int64_t>(tap) * kALanes;
      vf b[kAPixels];
      WDSR_UNROLL for (int p = 0; p < kAPixels; ++p) b[p] = in_register(vset1(it[p * pixel_stride]));
      WDSR_UNROLL for (int v = 0; v < kAVecs; ++v) {
        const vf wv = in_register(vload(wt + v * VW));
        WDSR_UNROLL for (int p = 0; p < kAPixels; ++p) this->acc[p][v] = vfma(b[p], wv, this->acc[p][v]);
      }
    } while (++tap < count);
  }
};

#endif

// Runs f.template operator()<G>() for a group of c_valid channels: the wide block (G = kAVecs) where there are 16
// registers, else G = 2, or 1 for a last group of VW channels or fewer.
template <typename F>
inline void with_a_vecs(int c_valid, F&& f) {
  if constexpr (kWideBlocks) {
    f.template operator()<kAVecs>();
  } else {
    with_group_vecs(c_valid, f);
  }
}
#if WDSR_CPU_WIDE_A_BLOCKS
template <int G>
using ABlock = WideBlock;
#else
template <int G>
using ABlock = ConvBlock<G>;
#endif
template <int G>
constexpr int kAPixelsOf = kWideBlocks ? kAPixels : kPixels<G>;

// The taps of one 3-tap-wide kernel row: weights packed [tap][kALanes], offsets[tap + dx] = offsets[tap] +
// dx * pixel_stride.
template <int G>
inline void a_taps(ABlock<G>& block, const float* w, const float* in, const int* offsets, int count,
                   int pixel_stride) {
#if WDSR_CPU_WIDE_A_BLOCKS
  block.wide_taps(w, in, offsets, count, pixel_stride);
#else
  block.template tap_runs<3>(w, in, offsets, count, pixel_stride);
#endif
}

struct BlockAContext {
  const AArgs* a;
  const float* w_expand;  // packed [group][dy][c word][dx][kALanes]
  const float* b_expand;  // packed [group][kALanes]
  const float* w_reduce;  // packed [group][dy][wide word][dx][kALanes]
  const float* b_reduce;  // packed [group][kALanes]
  const int* expand_taps;  // tap (word k, dx) of one x row: dx * c / kPack + k
  const int* reduce_taps;  // tap (word l, dx) of one ring row: dx * wide / kPack + l
  RowBands bands;
  int ring_cols;  // columns of a ring row: the chunk, its halo and the last register block's overrun
};

// The words of the x rows row - 1 .. row + 1 of image n (nullptr outside the image: the conv's zero padding).
inline void x_rows_around(const AArgs& a, int n, int row, const float* (&x_rows)[3]) {
  const int64_t row_words = static_cast<int64_t>(a.w) * (a.c / kPack);
  for (int dy = 0; dy < 3; ++dy) {
    const int y = row - 1 + dy;
    x_rows[dy] = y >= 0 && y < a.h ? words(a.x) + (static_cast<int64_t>(n) * a.h + y) * row_words : nullptr;
  }
}

// Wide row `row` of the chunk [x0, x1) into dst ([ring_cols][wide]; column j is image column x0 - 1 + j): the
// expand conv and its ReLU at the columns inside the image; the others are left as they are (zero).
inline void expand_row(const BlockAContext& ctx, int n, int row, int x0, int x1, feature_t* dst, float* edge) {
  const AArgs& a = *ctx.a;
  const int cw = a.c / kPack;  // words per pixel of x
  const int edge_words = (kMaxPixels + 2) * cw;
  const float* x_rows[3];
  x_rows_around(a, n, row, x_rows);
  const int first = imax(x0 - 1, 0), end = imin(x1 + 1, a.w);  // image columns to compute
  const int groups = ceil_div(a.wide, kALanes);
  for (int g = 0; g < groups; ++g) {
    const int c_valid = imin(kALanes, a.wide - g * kALanes);
    with_a_vecs(c_valid, [&]<int G>() {
      for (int xb = first; xb < end; xb += kAPixelsOf<G>) {
        ABlock<G> block(ctx.b_expand + g * kALanes);
        for (int dy = 0; dy < 3; ++dy) {
          if (x_rows[dy] == nullptr) continue;  // zero padding above and below the image
          const float* in = feature_window(x_rows[dy], xb, kAPixelsOf<G>, a.w, cw, edge + dy * edge_words);
          a_taps<G>(block, ctx.w_expand + (static_cast<int64_t>(g) * 3 + dy) * 3 * cw * kALanes, in,
                    ctx.expand_taps, 3 * cw, cw);
        }
        block.store(dst + static_cast<int64_t>(xb - (x0 - 1)) * a.wide + g * kALanes, a.wide, end - xb, c_valid,
                    [](vf acc, int64_t, int) { return vmax(acc, vzero()); });
      }
    });
  }
}

// Row `row` of y over the chunk [x0, x1) from the ring rows above, at and below it (`rows`).
inline void reduce_row(const BlockAContext& ctx, int n, int row, int x0, int x1, const feature_t* const rows[3]) {
  const AArgs& a = *ctx.a;
  const int ww = a.wide / kPack;  // words per pixel of the wide rows
  const int64_t pixel0 = (static_cast<int64_t>(n) * a.h + row) * a.w;
  const vf scale = vset1(a.res_scale);
  const int groups = ceil_div(a.c, kALanes);
  for (int g = 0; g < groups; ++g) {
    const int c_valid = imin(kALanes, a.c - g * kALanes);
    with_a_vecs(c_valid, [&]<int G>() {
      for (int xb = x0; xb < x1; xb += kAPixelsOf<G>) {
        ABlock<G> block(ctx.b_reduce + g * kALanes);
        for (int dy = 0; dy < 3; ++dy)
          a_taps<G>(block, ctx.w_reduce + (static_cast<int64_t>(g) * 3 + dy) * 3 * ww * kALanes,
                    words(rows[dy]) + static_cast<int64_t>(xb - x0) * ww, ctx.reduce_taps, 3 * ww, ww);
        const feature_t* x = a.x + (pixel0 + xb) * a.c + g * kALanes;
        block.store(a.y + (pixel0 + xb) * a.c + g * kALanes, a.c, x1 - xb, c_valid,
                    [&](vf acc, int64_t at, int lanes) {  // y = x + res_scale * acc
                      return vfma(scale, acc, lanes >= VW ? vload_feat(x + at) : vload_feat_n(x + at, lanes));
                    });
      }
    });
  }
}

// The same two rows with the wide blocks (16 registers), blocked over input channels so that a block's weights stay
// in L1: for each group of kALanes output channels and each kAInBlock input channels, one sweep over the row's
// pixels adds 9 x kAInBlock taps into a partial sum kept in memory (the wide row itself for the expand conv, a
// scratch row for the reduce conv). With AVX2: 9 x 8 x 32 x 4 B = 9 KB of weights per sweep (32 KB of L1d on
// Zen 4), 864 FMAs per register block between loading and storing its 12 partial-sum vectors.
#if WDSR_CPU_WIDE_A_BLOCKS
constexpr int kAInBlock = 16;

[[gnu::noinline]] void expand_row_wide(const BlockAContext& ctx, int n, int row, int x0, int x1, float* dst, float* edge) {
  const AArgs& a = *ctx.a;
  const int edge_floats = (kMaxPixels + 2) * a.c;
  const float* x_rows[3];
  x_rows_around(a, n, row, x_rows);  // float features: a word is a channel
  const int first = imax(x0 - 1, 0), end = imin(x1 + 1, a.w);  // image columns to compute
  const int groups = ceil_div(a.wide, kALanes), in_blocks = ceil_div(a.c, kAInBlock);
  for (int g = 0; g < groups; ++g) {
    const int c_valid = imin(kALanes, a.wide - g * kALanes);
    for (int kb = 0; kb < in_blocks; ++kb) {
      const int k0 = kb * kAInBlock, kn = imin(kAInBlock, a.c - k0);
      const bool last = kb == in_blocks - 1;
      for (int xb = first; xb < end; xb += kAPixels) {
        float* out = dst + static_cast<int64_t>(xb - (x0 - 1)) * a.wide + g * kALanes;
        WideBlock block = kb == 0 ? WideBlock(ctx.b_expand + g * kALanes) : WideBlock(out, a.wide, c_valid);
        for (int dy = 0; dy < 3; ++dy) {
          if (x_rows[dy] == nullptr) continue;  // zero padding above and below the image
          const float* in = feature_window(x_rows[dy], xb, kAPixels, a.w, a.c, edge + dy * edge_floats);
          block.wide_taps(ctx.w_expand + ((static_cast<int64_t>(g) * 3 + dy) * a.c + k0) * 3 * kALanes, in,
                          ctx.expand_taps + 3 * k0, 3 * kn, a.c);
        }
        if (last) {
          block.store(out, a.wide, end - xb, c_valid, [](vf acc, int64_t, int) { return vmax(acc, vzero()); });
        } else {
          block.store(out, a.wide, end - xb, c_valid, [](vf acc, int64_t, int) { return acc; });
        }
      }
    }
  }
}

[[gnu::noinline]] void reduce_row_wide(const BlockAContext& ctx, int n, int row, int x0, int x1, const float* const rows[3],
                            float* partial) {
  const AArgs& a = *ctx.a;
  const int64_t pixel0 = (static_cast<int64_t>(n) * a.h + row) * a.w;
  const vf scale = vset1(a.res_scale);
  const int groups = ceil_div(a.c, kALanes), in_blocks = ceil_div(a.wide, kAInBlock);
  for (int g = 0; g < groups; ++g) {
    const int c_valid = imin(kALanes, a.c - g * kALanes);
    for (int kb = 0; kb < in_blocks; ++kb) {
      const int k0 = kb * kAInBlock, kn = imin(kAInBlock, a.wide - k0);
      const bool last = kb == in_blocks - 1;
      for (int xb = x0; xb < x1; xb += kAPixels) {
        float* part = partial + static_cast<int64_t>(xb - x0) * kALanes;
        WideBlock block = kb == 0 ? WideBlock(ctx.b_reduce + g * kALanes) : WideBlock(part, kALanes, kALanes);
        for (int dy = 0; dy < 3; ++dy)
          block.wide_taps(ctx.w_reduce + ((static_cast<int64_t>(g) * 3 + dy) * a.wide + k0) * 3 * kALanes,
                          rows[dy] + static_cast<int64_t>(xb - x0) * a.wide, ctx.reduce_taps + 3 * k0, 3 * kn, a.wide);
        if (last) {
          const float* x = a.x + (pixel0 + xb) * a.c + g * kALanes;
          block.store(a.y + (pixel0 + xb) * a.c + g * kALanes, a.c, x1 - xb, c_valid,
                      [&](vf acc, int64_t at, int lanes) {  // y = x + res_scale * acc
                        return vfma(scale, acc, lanes >= VW ? vload(x + at) : vload_n(x + at, lanes));
                      });
        } else {
          block.store(part, kALanes, kAPixels, kALanes, [](vf acc, int64_t, int) { return acc; });
        }
      }
    }
  }
}

#endif

inline void block_a_items(const void* context, int64_t begin, int64_t end) {
  const BlockAContext& ctx = *static_cast<const BlockAContext*>(context);
  const AArgs& a = *ctx.a;
  const int64_t ring_words = static_cast<int64_t>(ctx.ring_cols) * (a.wide / kPack);  // one wide row
  const int64_t edge_words = 3 * static_cast<int64_t>(kMaxPixels + 2) * (a.c / kPack);
  Buffer scratch(3 * ring_words + edge_words + (kWideBlocks ? static_cast<int64_t>(ctx.ring_cols) * kALanes : 0));
  feature_t* ring = reinterpret_cast<feature_t*>(scratch.get());
  auto slot = [&](int k) { return ring + k * ring_words * kPack; };  // ring row k (kPack features a word)
  float* edge = scratch.get() + 3 * ring_words;
  [[maybe_unused]] float* partial = edge + edge_words;  // the reduce conv's partial sums (wide blocks)
  for (int64_t item = begin; item < end; ++item) {
    const auto [n, x0, x1, r0, r1] = ctx.bands.item(item);
    // Zero columns (outside the image, past the chunk) stay zero: expand_row writes only the others.
    auto fill = [&](int k, int row) {
      if (row < 0 || row >= a.h) {
        std::memset(slot(k), 0, sizeof(float) * static_cast<size_t>(ring_words));
      } else {
#if WDSR_CPU_WIDE_A_BLOCKS
        expand_row_wide(ctx, n, row, x0, x1, slot(k), edge);
#else
        expand_row(ctx, n, row, x0, x1, slot(k), edge);
#endif
      }
    };
    std::memset(ring, 0, sizeof(float) * static_cast<size_t>(3 * ring_words));
    fill(0, r0 - 1);
    fill(1, r0);
    int top = 0;  // the ring slot of wide row `row - 1`
    for (int row = r0; row < r1; ++row) {
      fill((top + 2) % 3, row + 1);
      const feature_t* rows[3] = {slot(top), slot((top + 1) % 3), slot((top + 2) % 3)};
#if WDSR_CPU_WIDE_A_BLOCKS
      reduce_row_wide(ctx, n, row, x0, x1, rows, partial);
#else
      reduce_row(ctx, n, row, x0, x1, rows);
#endif
      top = (top + 1) % 3;
    }
  }
}

void wdsr_a_block(const AArgs& a, const Parallel& parallel) {
  BlockAContext ctx{};
  ctx.a = &a;
  ctx.bands = RowBands::plan(a.n, a.h, a.w, kMaxChunkA, parallel.threads);
  ctx.ring_cols = ctx.bands.chunk_w + 2 + kMaxPixels;
  const int cw = ceil_div(a.c, kPack), ww = ceil_div(a.wide, kPack);  // words per pixel of x and of the wide rows
  const int expand_groups = ceil_div(a.wide, kALanes), reduce_groups = ceil_div(a.c, kALanes);
  const int64_t w_expand_floats = static_cast<int64_t>(expand_groups) * 9 * cw * kALanes;
  const int64_t w_reduce_floats = static_cast<int64_t>(reduce_groups) * 9 * ww * kALanes;
  Buffer packed(w_expand_floats + w_reduce_floats + static_cast<int64_t>(expand_groups + reduce_groups) * kALanes +
                3 * (cw + ww));
  float* w_expand = packed.get();
  float* w_reduce = w_expand + w_expand_floats;
  float* b_expand = w_reduce + w_reduce_floats;
  float* b_reduce = b_expand + expand_groups * kALanes;
  int* expand_taps = reinterpret_cast<int*>(b_reduce + reduce_groups * kALanes);
  int* reduce_taps = expand_taps + 3 * cw;
  pack_conv(a.w_expand, a.wide, a.c, 3, kALanes, w_expand);
  pack_conv(a.w_reduce, a.c, a.wide, 3, kALanes, w_reduce);
  pack_bias(a.b_expand, nullptr, a.wide, kALanes, b_expand);
  pack_bias(a.b_reduce, nullptr, a.c, kALanes, b_reduce);
  for (int k = 0; k < cw; ++k)
    for (int dx = 0; dx < 3; ++dx) expand_taps[k * 3 + dx] = dx * cw + k;
  for (int l = 0; l < ww; ++l)
    for (int dx = 0; dx < 3; ++dx) reduce_taps[l * 3 + dx] = dx * ww + l;
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
