// The head conv and the fused tail on the CPU, written once for every vector width (simd.h).
//
// Both are small next to the blocks (WDSR-B 32x16 x2: head 1,728 FLOP per LR pixel, tail 6,912 + skip 1,800,
// blocks 16 x 36,288 = 580,608), so they aim at no wasted memory traffic rather than at peak FLOPs:
// - A work item is one image row. Its inputs are staged as zero-padded rows (the normalised image planar per
//   colour, 3 rows for the head and 5 for the skip; 3 feature rows in NHWC for the tail), so the taps need no
//   bounds checks: about 30 floats a pixel copied against 1,728 (head) or 17,400 (tail) FLOPs.
// - Register blocks vectorise over output channels: 2 vectors x PB pixels (PB = kAccumulators / 2: 12 on
//   AVX-512, 6 on AVX2), one broadcast input value per (tap, pixel), weights packed per call as
//   [group][tap][2 vectors] with zeros past the last channel.
// - The tail's 3 s^2 channels (12, 27, 48) pad to whole vectors (16, 32, 48 lanes with AVX-512: 25%, 16% and 0%
//   wasted). Its result row is kept as [pixel][channel] and written with the de-normalisation straight into
//   the pixel-shuffle positions of the (N, 3, sH, sW) output, s contiguous floats at a time.
#pragma once
#include "block_b.h"  // kGroupVecs, kConvPixels, kGroupLanes
#include "kernel_common.h"
#include "kernels.h"

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

// acc[p][v] += sum_t w[t][v] * in[t_offset(t) + p * in_stride]: one register block of a direct conv whose
// taps are listed as input offsets. Taps are grouped by rows of `row_taps` consecutive offsets (dx), which
// lets the compiler keep the offsets simple.
template <int G>
struct ConvAcc {
  vf acc[kConvPixels][G];

  void init(const float* bias) {
    for (int v = 0; v < G; ++v) {
      const vf b = vload(bias + v * VW);
      for (int p = 0; p < kConvPixels; ++p) acc[p][v] = b;
    }
  }
  // One tap: the input of pixel p is in[p * in_stride].
  void tap(const float* w, const float* in, int in_stride) {
    vf wv[G];
    for (int v = 0; v < G; ++v) wv[v] = vload(w + v * VW);
    for (int p = 0; p < kConvPixels; ++p) {
      const vf iv = vset1(in[p * in_stride]);
      for (int v = 0; v < G; ++v) acc[p][v] = vfma(iv, wv[v], acc[p][v]);
    }
  }
};

// Packs OIHW weights (out, in, k, k) as [group][ky][in][kx][kGroupLanes] (zero past `out`), and the bias
// (plus an optional second bias) as [group][kGroupLanes].
inline void pack_conv(const float* w, const float* bias, const float* bias2, int out, int in, int k, float* packed,
                      float* packed_bias) {
  const int groups = ceil_div(out, kGroupLanes);
  std::memset(packed, 0, sizeof(float) * static_cast<size_t>(groups) * k * k * in * kGroupLanes);
  std::memset(packed_bias, 0, sizeof(float) * static_cast<size_t>(groups) * kGroupLanes);
  for (int o = 0; o < out; ++o) {
    const int g = o / kGroupLanes, lane = o % kGroupLanes;
    packed_bias[g * kGroupLanes + lane] = bias[o] + (bias2 != nullptr ? bias2[o] : 0.0f);
    for (int i = 0; i < in; ++i)
      for (int ky = 0; ky < k; ++ky)
        for (int kx = 0; kx < k; ++kx)
          packed[(((static_cast<int64_t>(g) * k + ky) * in + i) * k + kx) * kGroupLanes + lane] =
              w[((static_cast<int64_t>(o) * in + i) * k + ky) * k + kx];
  }
}

// Rows `row - pad .. row + pad` of the normalised image of batch n, planar: dst[(dy * 3 + ch) * ld + i] holds
// column i - pad, zero outside the image.
inline void normalised_rows(const Image& image, const float* mean, float norm_scale, int n, int row, int pad,
                            int h, int w, int ld, float* dst) {
  for (int dy = 0; dy < 2 * pad + 1; ++dy) {
    const int y = row - pad + dy;
    for (int ch = 0; ch < 3; ++ch) {
      float* d = dst + static_cast<int64_t>(dy * 3 + ch) * ld;
      std::memset(d, 0, sizeof(float) * static_cast<size_t>(ld));
      if (y < 0 || y >= h) continue;
      const float* src = image.data + n * image.stride_n + ch * image.stride_c + y * image.stride_h;
      for (int x = 0; x < w; ++x) d[x + pad] = (src[x * image.stride_w] - mean[ch]) / norm_scale;
    }
  }
}

// ---- head conv -------------------------------------------------------------------------------------------
struct HeadContext {
  const HeadArgs* a;
  const float* w;     // packed [group][dy][ch][dx][kGroupLanes]
  const float* bias;  // packed [group][kGroupLanes]
  int groups, ld;
};

template <int G>
inline void head_pixels(const HeadContext& ctx, const float* rows, int xb, int group, float* out, int pixels) {
  const HeadArgs& a = *ctx.a;
  ConvAcc<G> acc;
  acc.init(ctx.bias + group * kGroupLanes);
  const float* w = ctx.w + static_cast<int64_t>(group) * 27 * kGroupLanes;
  for (int dy = 0; dy < 3; ++dy)
    for (int ch = 0; ch < 3; ++ch)
      for (int dx = 0; dx < 3; ++dx)
        acc.tap(w + ((dy * 3 + ch) * 3 + dx) * kGroupLanes, rows + (dy * 3 + ch) * ctx.ld + xb + dx, 1);
  const int c_valid = imin(kGroupLanes, a.c - group * kGroupLanes);
  for (int p = 0; p < pixels; ++p)
    for (int v = 0; v < G; ++v) {
      const int lanes = c_valid - v * VW;
      if (lanes >= VW) {
        vstore(out + static_cast<int64_t>(p) * a.c + v * VW, acc.acc[p][v]);
      } else if (lanes > 0) {
        vstore_n(out + static_cast<int64_t>(p) * a.c + v * VW, acc.acc[p][v], lanes);
      }
    }
}

inline void head_items(const void* context, int64_t begin, int64_t end) {
  const HeadContext& ctx = *static_cast<const HeadContext*>(context);
  const HeadArgs& a = *ctx.a;
  Buffer rows(9 * static_cast<int64_t>(ctx.ld));
  for (int64_t item = begin; item < end; ++item) {
    const int n = static_cast<int>(item / a.h), row = static_cast<int>(item % a.h);
    normalised_rows(a.image, a.mean, a.norm_scale, n, row, 1, a.h, a.w, ctx.ld, rows.get());
    float* out_row = a.features + (static_cast<int64_t>(n) * a.h + row) * a.w * a.c;
    for (int xb = 0; xb < a.w; xb += kConvPixels) {
      const int pixels = imin(kConvPixels, a.w - xb);
      for (int g = 0; g < ctx.groups; ++g) {
        float* out = out_row + static_cast<int64_t>(xb) * a.c + g * kGroupLanes;
        if (a.c - g * kGroupLanes > VW) {
          head_pixels<kGroupVecs>(ctx, rows.get(), xb, g, out, pixels);
        } else {
          head_pixels<1>(ctx, rows.get(), xb, g, out, pixels);
        }
      }
    }
  }
}

void head_conv(const HeadArgs& a, const Parallel& parallel) {
  HeadContext ctx{};
  ctx.a = &a;
  ctx.groups = ceil_div(a.c, kGroupLanes);
  ctx.ld = round_up(a.w + 2 + kConvPixels, VW);
  Buffer packed(static_cast<int64_t>(ctx.groups) * 28 * kGroupLanes);
  pack_conv(a.weight, a.bias, nullptr, a.c, 3, 3, packed.get(), packed.get() + ctx.groups * 27 * kGroupLanes);
  ctx.w = packed.get();
  ctx.bias = packed.get() + ctx.groups * 27 * kGroupLanes;
  parallel.run(static_cast<int64_t>(a.n) * a.h, &head_items, &ctx);
}

// ---- tail: 3x3 tail conv + 5x5 skip conv + pixel shuffle + de-normalisation ------------------------------
struct TailContext {
  const TailArgs* a;
  const float* w_tail;  // packed [group][dy][c][dx][kGroupLanes]
  const float* w_skip;  // packed [group][dy][ch][dx][kGroupLanes]
  const float* bias;    // b_tail + b_skip, packed [group][kGroupLanes]
  int out_channels, groups, feature_ld, image_ld, result_ld;
};

template <int G>
inline void tail_pixels(const TailContext& ctx, const float* features, const float* image_rows, int xb, int group,
                        float* result) {
  const TailArgs& a = *ctx.a;
  ConvAcc<G> acc;
  acc.init(ctx.bias + group * kGroupLanes);
  const float* wt = ctx.w_tail + static_cast<int64_t>(group) * 9 * a.c * kGroupLanes;
  for (int dy = 0; dy < 3; ++dy)
    for (int c = 0; c < a.c; ++c)
      for (int dx = 0; dx < 3; ++dx)
        acc.tap(wt + ((static_cast<int64_t>(dy) * a.c + c) * 3 + dx) * kGroupLanes,
                features + static_cast<int64_t>(dy) * ctx.feature_ld + static_cast<int64_t>(xb + dx) * a.c + c, a.c);
  const float* ws = ctx.w_skip + static_cast<int64_t>(group) * 75 * kGroupLanes;
  for (int dy = 0; dy < 5; ++dy)
    for (int ch = 0; ch < 3; ++ch)
      for (int dx = 0; dx < 5; ++dx)
        acc.tap(ws + ((dy * 3 + ch) * 5 + dx) * kGroupLanes, image_rows + (dy * 3 + ch) * ctx.image_ld + xb + dx, 1);
  for (int p = 0; p < kConvPixels; ++p)
    for (int v = 0; v < G; ++v)
      vstore(result + static_cast<int64_t>(xb + p) * ctx.result_ld + group * kGroupLanes + v * VW, acc.acc[p][v]);
}

inline void tail_items(const void* context, int64_t begin, int64_t end) {
  const TailContext& ctx = *static_cast<const TailContext*>(context);
  const TailArgs& a = *ctx.a;
  const int s = a.scale;
  const int64_t feature_floats = 3 * static_cast<int64_t>(ctx.feature_ld);
  const int64_t image_floats = 15 * static_cast<int64_t>(ctx.image_ld);
  const int64_t result_floats = static_cast<int64_t>(round_up(a.w, kConvPixels)) * ctx.result_ld;
  Buffer scratch(feature_floats + image_floats + result_floats);
  float* features = scratch.get();
  float* image_rows = features + feature_floats;
  float* result = image_rows + image_floats;
  const int64_t out_h = static_cast<int64_t>(a.h) * s, out_w = static_cast<int64_t>(a.w) * s;
  for (int64_t item = begin; item < end; ++item) {
    const int n = static_cast<int>(item / a.h), row = static_cast<int>(item % a.h);
    for (int dy = 0; dy < 3; ++dy) {  // feature rows, NHWC, column i holds image column i - 1
      float* d = features + dy * ctx.feature_ld;
      const int y = row - 1 + dy;
      std::memset(d, 0, sizeof(float) * static_cast<size_t>(ctx.feature_ld));
      if (y >= 0 && y < a.h)
        std::memcpy(d + a.c, a.features + (static_cast<int64_t>(n) * a.h + y) * a.w * a.c,
                    sizeof(float) * static_cast<size_t>(a.w) * a.c);
    }
    normalised_rows(a.image, a.mean, a.norm_scale, n, row, 2, a.h, a.w, ctx.image_ld, image_rows);
    for (int xb = 0; xb < a.w; xb += kConvPixels)
      for (int g = 0; g < ctx.groups; ++g) {
        if (ctx.out_channels - g * kGroupLanes > VW) {
          tail_pixels<kGroupVecs>(ctx, features, image_rows, xb, g, result);
        } else {
          tail_pixels<1>(ctx, features, image_rows, xb, g, result);
        }
      }
    // result[x][ch * s^2 + i * s + j] -> out[n][ch][s * row + i][s * x + j], de-normalised
    for (int ch = 0; ch < 3; ++ch) {
      for (int i = 0; i < s; ++i) {
        float* dst = a.out + ((static_cast<int64_t>(n) * 3 + ch) * out_h + static_cast<int64_t>(s) * row + i) * out_w;
        const float* src = result + (ch * s + i) * s;
        for (int x = 0; x < a.w; ++x)
          for (int j = 0; j < s; ++j)
            dst[x * s + j] = src[static_cast<int64_t>(x) * ctx.result_ld + j] * a.norm_scale + a.mean[ch];
      }
    }
  }
}

void tail_shuffle(const TailArgs& a, const Parallel& parallel) {
  TailContext ctx{};
  ctx.a = &a;
  ctx.out_channels = 3 * a.scale * a.scale;
  ctx.groups = ceil_div(ctx.out_channels, kGroupLanes);
  ctx.feature_ld = (a.w + 2 + kConvPixels) * a.c;
  ctx.image_ld = round_up(a.w + 4 + kConvPixels, VW);
  ctx.result_ld = ctx.groups * kGroupLanes;
  const int64_t tail_floats = static_cast<int64_t>(ctx.groups) * 9 * a.c * kGroupLanes;
  const int64_t skip_floats = static_cast<int64_t>(ctx.groups) * 75 * kGroupLanes;
  Buffer packed(tail_floats + skip_floats + 2 * static_cast<int64_t>(ctx.groups) * kGroupLanes);
  float* w_tail = packed.get();
  float* w_skip = w_tail + tail_floats;
  float* bias = w_skip + skip_floats;
  float* unused_bias = bias + ctx.groups * kGroupLanes;
  pack_conv(a.w_tail, a.b_tail, a.b_skip, ctx.out_channels, a.c, 3, w_tail, bias);
  pack_conv(a.w_skip, a.b_skip, nullptr, ctx.out_channels, 3, 5, w_skip, unused_bias);
  ctx.w_tail = w_tail;
  ctx.w_skip = w_skip;
  ctx.bias = bias;
  parallel.run(static_cast<int64_t>(a.n) * a.h, &tail_items, &ctx);
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
