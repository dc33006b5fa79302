// The head conv and the fused tail on the CPU, written once for every vector width and features' precision (simd.h):
// with bf16 features the tail's 3x3 multiplies feature words (vdot), while the head and the tail's 5x5 skip take the
// float32 normalised image in both precisions (Input::floats: vfma).
//
// Both are small next to the blocks (WDSR-B 32x16 x2, FLOP per LR pixel: head 1,728, tail 6,912 + skip 1,800,
// blocks 16 x 36,288 = 580,608), so the aim is no wasted memory traffic rather than peak FLOPs:
// - A work item is one output row; a thread runs consecutive rows. The normalised image is staged once per
//   image row in a ring of zero-padded rows, planar per colour (3 rows for the head, 5 for the skip). The
//   tail reads the features straight from the NHWC tensor (a zero row above and below the image); only the
//   register blocks at the left and right edges read a small zero-padded copy.
// - Register blocks vectorise over output channels: G vectors x 24 / G pixels with AVX-512 (12 / G with AVX2),
//   one broadcast input per (tap, pixel); taps are read from offset tables, weights packed per call as
//   [group][tap][2 vectors] with zeros past the last channel. With AVX-512 the K taps dx = 0 .. K - 1 of a row
//   share their broadcasts where their weights fit in registers (the 3x3s and, for 12 channels, the 5x5 skip):
//   the x2 tail 23% faster at 128x128, 2 threads (1.12 -> 0.86 ms, measured).
// - The tail's 3 s^2 channels (12, 27, 48) pad to whole vectors (16, 32, 48 lanes with AVX-512: 25%, 16% and 0%
//   wasted). Its result row is kept as [pixel][channel] and written, de-normalised, into the pixel-shuffle
//   positions of the (N, 3, sH, sW) output a vector at a time (gathered through an index table).
#pragma once
#include "conv_block.h"
#include "kernel_common.h"
#include "kernels.h"

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

// A ring of `height` zero-padded rows of the normalised image of one batch element, planar per colour:
// row(y)[ch * ld + i] is (image[ch][y][i - pad] - mean[ch]) / norm_scale, zero outside the image.
class NormalisedRows {
 public:
  NormalisedRows(int pad, int w) : pad_(pad), ld_(round_up(w + 2 * pad + kMaxPixels, VW)), ring_(ring_floats()) {}
  int ld() const { return ld_; }
  const float* row(int y) const { return ring_.get() + ((y % height() + height()) % height()) * 3 * ld_; }
  // Makes rows row - pad .. row + pad of batch element n available, normalising only those not yet held.
  void advance(const Image& image, const float* mean, float norm_scale, int n, int row, int h, int w) {
    for (int y = row - pad_; y <= row + pad_; ++y) {
      if (n == n_ && y >= first_ && y <= last_) continue;
      float* d = ring_.get() + ((y % height() + height()) % height()) * 3 * ld_;
      std::memset(d, 0, sizeof(float) * 3 * static_cast<size_t>(ld_));
      if (y >= 0 && y < h) {
        for (int ch = 0; ch < 3; ++ch) {
          const float* src = image.data + n * image.stride_n + ch * image.stride_c + y * image.stride_h;
          for (int x = 0; x < w; ++x) d[ch * ld_ + x + pad_] = (src[x * image.stride_w] - mean[ch]) / norm_scale;
        }
      }
    }
    n_ = n;  // rows of one window never share a slot, so the whole window is held now
    first_ = row - pad_;
    last_ = row + pad_;
  }

 private:
  int height() const { return 2 * pad_ + 1; }
  int64_t ring_floats() const { return static_cast<int64_t>(2 * pad_ + 1) * 3 * ld_; }
  int pad_, ld_;
  Buffer ring_;
  int n_ = -1, first_ = 0, last_ = -1;  // the rows held: first_ .. last_ of batch element n_
};

// ---- head conv -------------------------------------------------------------------------------------------
using HArgs = HeadArgsOf<feature_t>;
using TArgs = TailArgsOf<feature_t>;

struct HeadContext {
  const HArgs* a;
  const float* w;     // packed [group][dy][ch][dx][kGroupLanes]
  const float* bias;  // packed [group][kGroupLanes]
  int groups;
};

inline void head_items(const void* context, int64_t begin, int64_t end) {
  const HeadContext& ctx = *static_cast<const HeadContext*>(context);
  const HArgs& a = *ctx.a;
  NormalisedRows rows(1, a.w);
  int taps[9];  // tap (ch, dx) of one image row
  for (int ch = 0; ch < 3; ++ch)
    for (int dx = 0; dx < 3; ++dx) taps[ch * 3 + dx] = ch * rows.ld() + dx;
  for (int64_t item = begin; item < end; ++item) {
    const int n = static_cast<int>(item / a.h), row = static_cast<int>(item % a.h);
    rows.advance(a.image, a.mean, a.norm_scale, n, row, a.h, a.w);
    feature_t* out_row = a.features + (static_cast<int64_t>(n) * a.h + row) * a.w * a.c;
    for (int g = 0; g < ctx.groups; ++g) {
      const int c_valid = imin(kGroupLanes, a.c - g * kGroupLanes);
      with_group_vecs(c_valid, [&]<int G>() {
        for (int xb = 0; xb < a.w; xb += kPixels<G>) {
          ConvBlock<G> block(ctx.bias + g * kGroupLanes);
          WDSR_UNROLL for (int dy = 0; dy < 3; ++dy)
            block.template tap_runs<3, Input::floats>(ctx.w + (static_cast<int64_t>(g) * 27 + dy * 9) * kGroupLanes,
                              rows.row(row - 1 + dy) + xb, taps, 9, 1);
          block.store(out_row + static_cast<int64_t>(xb) * a.c + g * kGroupLanes, a.c, a.w - xb, c_valid,
                      [](vf acc, int64_t, int) { return acc; });
        }
      });
    }
  }
}

void head_conv(const HArgs& a, const Parallel& parallel) {
  HeadContext ctx{};
  ctx.a = &a;
  ctx.groups = ceil_div(a.c, kGroupLanes);
  Buffer packed(static_cast<int64_t>(ctx.groups) * 28 * kGroupLanes);
  pack_conv<Input::floats>(a.weight, a.c, 3, 3, kGroupLanes, packed.get());
  pack_bias(a.bias, nullptr, a.c, kGroupLanes, packed.get() + ctx.groups * 27 * kGroupLanes);
  ctx.w = packed.get();
  ctx.bias = packed.get() + ctx.groups * 27 * kGroupLanes;
  parallel.run(static_cast<int64_t>(a.n) * a.h, &head_items, &ctx);
}

// ---- tail: 3x3 tail conv + 5x5 skip conv + pixel shuffle + de-normalisation ------------------------------
struct TailContext {
  const TArgs* a;
  const float* w_tail;   // packed [group][dy][c word][dx][kGroupLanes]
  const float* w_skip;   // packed [group][dy][ch][dx][kGroupLanes]
  const float* bias;     // b_tail + b_skip, packed [group][kGroupLanes]
  const int* tail_taps;  // tap (c word, dx) of one feature row: dx * c_words + c word
  const int* shuffle;    // [s * w]: output column u of one (colour, i) row comes from result[shuffle[u]]
  int out_channels, groups, result_ld;
};

inline void tail_items(const void* context, int64_t begin, int64_t end) {
  const TailContext& ctx = *static_cast<const TailContext*>(context);
  const TArgs& a = *ctx.a;
  const int s = a.scale, cw = a.c / kPack;  // words of features a pixel
  const int64_t row_words = static_cast<int64_t>(a.w) * cw;
  const int edge_words = (kMaxPixels + 2) * cw;  // one padded edge block of one feature row
  NormalisedRows image_rows(2, a.w);
  Buffer scratch(row_words + 3 * edge_words + static_cast<int64_t>(round_up(a.w, kMaxPixels)) * ctx.result_ld);
  float* zero_row = scratch.get();  // the features above and below the image
  float* edge = zero_row + row_words;  // [dy][(kMaxPixels + 2) * cw], column i holds feature column xb - 1 + i
  float* result = edge + 3 * edge_words;  // [pixel][result_ld]
  std::memset(zero_row, 0, sizeof(float) * static_cast<size_t>(row_words));
  int skip_taps[15];  // tap (ch, dx) of one image row
  for (int ch = 0; ch < 3; ++ch)
    for (int dx = 0; dx < 5; ++dx) skip_taps[ch * 5 + dx] = ch * image_rows.ld() + dx;
  const int64_t out_h = static_cast<int64_t>(a.h) * s, out_w = static_cast<int64_t>(a.w) * s;
  for (int64_t item = begin; item < end; ++item) {
    const int n = static_cast<int>(item / a.h), row = static_cast<int>(item % a.h);
    image_rows.advance(a.image, a.mean, a.norm_scale, n, row, a.h, a.w);
    const float* feature_rows[3];
    for (int dy = 0; dy < 3; ++dy) {
      const int y = row - 1 + dy;
      feature_rows[dy] =
          y >= 0 && y < a.h ? words(a.features) + (static_cast<int64_t>(n) * a.h + y) * row_words : zero_row;
    }
    for (int g = 0; g < ctx.groups; ++g) {
      with_group_vecs(ctx.out_channels - g * kGroupLanes, [&]<int G>() {
        for (int xb = 0; xb < a.w; xb += kPixels<G>) {
          const float* in[3];
          for (int dy = 0; dy < 3; ++dy)
            in[dy] = feature_window(feature_rows[dy], xb, kPixels<G>, a.w, cw, edge + dy * edge_words);
          ConvBlock<G> block(ctx.bias + g * kGroupLanes);
          WDSR_UNROLL for (int dy = 0; dy < 3; ++dy)
            block.template tap_runs<3>(ctx.w_tail + (static_cast<int64_t>(g) * 3 + dy) * 3 * cw * kGroupLanes, in[dy],
                              ctx.tail_taps, 3 * cw, cw);
          WDSR_UNROLL for (int dy = 0; dy < 5; ++dy)
            block.template tap_runs<5, Input::floats>(
                ctx.w_skip + (static_cast<int64_t>(g) * 5 + dy) * 15 * kGroupLanes,
                              image_rows.row(row - 2 + dy) + xb, skip_taps, 15, 1);
          WDSR_UNROLL for (int p = 0; p < kPixels<G>; ++p)
            WDSR_UNROLL for (int v = 0; v < G; ++v)
              vstore(result + static_cast<int64_t>(xb + p) * ctx.result_ld + g * kGroupLanes + v * VW,
                     block.acc[p][v]);
        }
      });
    }
    // result[x][ch * s^2 + i * s + j] -> out[n][ch][s * row + i][s * x + j], de-normalised
    const vf scale = vset1(a.norm_scale);
    for (int ch = 0; ch < 3; ++ch) {
      const vf mean = vset1(a.mean[ch]);
      for (int i = 0; i < s; ++i) {
        feature_t* dst =
            a.out + ((static_cast<int64_t>(n) * 3 + ch) * out_h + static_cast<int64_t>(s) * row + i) * out_w;
        const float* src = result + (ch * s + i) * s;
        for (int u = 0; u < out_w; u += VW) {
          const int lanes = imin(VW, static_cast<int>(out_w - u));
          const vf v = vfma(vgather_idx_n(src, ctx.shuffle + u, lanes), scale, mean);
          if (lanes == VW) {
            vstore_feat(dst + u, v);
          } else {
            vstore_feat_n(dst + u, v, lanes);
          }
        }
      }
    }
  }
}

void tail_shuffle(const TArgs& a, const Parallel& parallel) {
  TailContext ctx{};
  ctx.a = &a;
  const int s = a.scale, cw = a.c / kPack;
  ctx.out_channels = 3 * s * s;
  ctx.groups = ceil_div(ctx.out_channels, kGroupLanes);
  ctx.result_ld = ctx.groups * kGroupLanes;
  const int64_t tail_floats = static_cast<int64_t>(ctx.groups) * 9 * cw * kGroupLanes;
  const int64_t skip_floats = static_cast<int64_t>(ctx.groups) * 75 * kGroupLanes;
  const int64_t bias_floats = static_cast<int64_t>(ctx.groups) * kGroupLanes;
  Buffer packed(tail_floats + skip_floats + bias_floats + 3 * cw + static_cast<int64_t>(s) * a.w);
  float* w_tail = packed.get();
  float* w_skip = w_tail + tail_floats;
  float* bias = w_skip + skip_floats;
  int* tail_taps = reinterpret_cast<int*>(bias + bias_floats);
  int* shuffle = tail_taps + 3 * cw;
  for (int ci = 0; ci < cw; ++ci)
    for (int dx = 0; dx < 3; ++dx) tail_taps[ci * 3 + dx] = dx * cw + ci;
  for (int u = 0; u < s * a.w; ++u) shuffle[u] = u / s * ctx.result_ld + u % s;
  pack_conv(a.w_tail, ctx.out_channels, a.c, 3, kGroupLanes, w_tail);
  pack_conv<Input::floats>(a.w_skip, ctx.out_channels, 3, 5, kGroupLanes, w_skip);
  pack_bias(a.b_tail, a.b_skip, ctx.out_channels, kGroupLanes, bias);
  ctx.w_tail = w_tail;
  ctx.w_skip = w_skip;
  ctx.bias = bias;
  ctx.tail_taps = tail_taps;
  ctx.shuffle = shuffle;
  parallel.run(static_cast<int64_t>(a.n) * a.h, &tail_items, &ctx);
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
