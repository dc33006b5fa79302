// The register block of the CPU convolutions that vectorise over output channels (the 3x3 of block_b.h, the head
// and tail of convs.h, both convolutions of block_a.h), written once for every vector width (simd.h): G vectors of
// output channels x P pixels of accumulators, one broadcast input value per (tap, pixel).
#pragma once
#include "kernel_common.h"

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

constexpr int kGroupVecs = 2;  // output-channel vectors per register block (1 for a last group of VW or fewer)
constexpr int kGroupLanes = kGroupVecs * VW;
// Whether a register block can hold the weights of K neighbouring taps (dx = 0 .. K - 1) besides its accumulators
// and a broadcast, so that each input value is broadcast once for all the taps that use it: 24 accumulators + 6
// weights + 1 of 32 zmm for a 3x3 with AVX-512. AVX2 runs tap by tap (12 + 6 + 1 > 16 ymm; as 1 x 12 or 2 x 4
// blocks sharing broadcasts the WDSR-B block's 3x3 was 4-6% slower, measured).
constexpr bool fits_tap_run(int taps, int vecs) { return kAccumulators + taps * vecs + 1 <= kRegisters; }

// Register blocks of G output-channel vectors x kPixels<G> pixels (24 accumulators with AVX-512, 12 with AVX2).
template <int G>
constexpr int kPixels = kAccumulators / G;

constexpr int kMaxPixels = kAccumulators;  // the widest block: staged rows are padded by this much

// Runs f.template operator()<G>() with G = 2 channel vectors, or 1 for a last group of VW channels or fewer.
template <typename F>
inline void with_group_vecs(int channels_left, F&& f) {
  if (channels_left > VW) {
    f.template operator()<kGroupVecs>();
  } else {
    f.template operator()<1>();
  }
}

// acc[p][v] = bias[v] + sum_tap w[tap][v] * in[offsets[tap] + p * pixel_stride] for P pixels, over any number of
// taps() calls, in words or floats (Input). Taps come from offset tables, not loop arithmetic (GCC would carry the
// broadcasts shared by neighbouring dx taps in registers and spill accumulators for them), in loops that run at
// least once (see block_b.h's chain_rows). Weights are packed [tap][kGroupLanes].
inline void store_lanes(float* p, vf v) { vstore(p, v); }
inline void store_lanes_n(float* p, vf v, int n) { vstore_n(p, v, n); }
#if defined(WDSR_CPU_BF16)
inline void store_lanes(Bf16* p, vf v) { vstore_feat(p, v); }
inline void store_lanes_n(Bf16* p, vf v, int n) { vstore_feat_n(p, v, n); }
#endif

// What a tap's broadcast input is: a word of features (vdot: with bf16 features a pair of channels), or a float32
// value in every precision (the normalised image of the head and of the tail's skip: vfma).
enum class Input { words, floats };
template <Input In>
inline vf product(vf in, vf w, vf acc) {
  if constexpr (In == Input::words) {
    return vdot(in, w, acc);
  } else {
    return vfma(in, w, acc);
  }
}

// Packs OIHW weights (out, in, k, k) as [group of `lanes` outputs][ky][input word][kx][lanes], zero past `out`: the
// inputs in words of kPack channels (features), or with Input::floats one channel a word (the image).
template <Input In = Input::words>
inline void pack_conv(const float* w, int out, int in, int k, int lanes, float* packed) {
  const int pack = In == Input::words ? kPack : 1;
  const int groups = ceil_div(out, lanes), in_words = ceil_div(in, pack);
  std::memset(packed, 0, sizeof(float) * static_cast<size_t>(groups) * k * k * in_words * lanes);
  for (int o = 0; o < out; ++o)
    for (int i = 0; i < in_words; ++i)
      for (int ky = 0; ky < k; ++ky)
        for (int kx = 0; kx < k; ++kx) {
          const float* at = w + ((static_cast<int64_t>(o) * in + i * pack) * k + ky) * k + kx;
          packed[(((static_cast<int64_t>(o / lanes) * k + ky) * in_words + i) * k + kx) * lanes + o % lanes] =
              In == Input::words ? word_of(at, k * k, in - i * pack) : *at;
        }
}

// bias (+ bias2 where given) as [group][lanes], zero past `out`.
inline void pack_bias(const float* bias, const float* bias2, int out, int lanes, float* packed) {
  std::memset(packed, 0, sizeof(float) * static_cast<size_t>(ceil_div(out, lanes)) * lanes);
  for (int o = 0; o < out; ++o) packed[o] = bias[o] + (bias2 != nullptr ? bias2[o] : 0.0f);
}

template <int G, int P = kPixels<G>>
struct ConvBlock {
  vf acc[P][G];

  explicit ConvBlock(const float* bias) {
    WDSR_UNROLL for (int v = 0; v < G; ++v) {
      const vf b = vload(bias + v * VW);
      WDSR_UNROLL for (int p = 0; p < P; ++p) acc[p][v] = b;
    }
  }
  template <Input In = Input::words>
  void taps(const float* w, const float* in, const int* offsets, int count, int pixel_stride) {
    int tap = 0;
    do {
      const float* it = in + offsets[tap];
      vf wv[G];
      WDSR_UNROLL for (int v = 0; v < G; ++v) wv[v] = vload(w + tap * kGroupLanes + v * VW);
      WDSR_UNROLL for (int p = 0; p < P; ++p) {
        const vf iv = vset1(it[p * pixel_stride]);
        WDSR_UNROLL for (int v = 0; v < G; ++v) acc[p][v] = product<In>(iv, wv[v], acc[p][v]);
      }
    } while (++tap < count);
  }
  // Writes pixels p < `pixels` of the block to out[p * pixel_stride + channel], the first c_valid channels, out
  // float or feature_t: value(acc, offset, lanes) gives what goes to out + offset (lanes < VW: only the first lanes
  // are stored).
  template <typename Out, typename Value>
  void store(Out* out, int64_t pixel_stride, int pixels, int c_valid, Value&& value) const {
    WDSR_UNROLL for (int p = 0; p < P; ++p) {
      if (p >= pixels) break;
      WDSR_UNROLL for (int v = 0; v < G; ++v) {
        const int lanes = c_valid - v * VW;
        const int64_t at = static_cast<int64_t>(p) * pixel_stride + v * VW;
        if (lanes >= VW) {
          store_lanes(out + at, value(acc[p][v], at, VW));
        } else if (lanes > 0) {
          store_lanes_n(out + at, value(acc[p][v], at, lanes), lanes);
        }
      }
    }
  }
  // The same over runs of K taps dx = 0 .. K - 1 (offsets[tap + dx] = offsets[tap] + dx * pixel_stride, count a
  // multiple of K): where the registers hold a run's K x G weights, each input value is broadcast once for the taps
  // of the run that use it (fits_tap_run).
  template <int K, Input In = Input::words>
  void tap_runs(const float* w, const float* in, const int* offsets, int count, int pixel_stride) {
    if constexpr (fits_tap_run(K, G)) {
      int tap = 0;
      do {
        const float* it = in + offsets[tap];
        vf wv[K][G];
        WDSR_UNROLL for (int dx = 0; dx < K; ++dx)
          WDSR_UNROLL for (int v = 0; v < G; ++v)
            wv[dx][v] = in_register(vload(w + (tap + dx) * kGroupLanes + v * VW));
        WDSR_UNROLL for (int i = 0; i < P + K - 1; ++i) {
          const vf iv = vset1(it[i * pixel_stride]);
          WDSR_UNROLL for (int dx = 0; dx < K; ++dx) {
            if (i - dx < 0 || i - dx >= P) continue;
            WDSR_UNROLL for (int v = 0; v < G; ++v) acc[i - dx][v] = product<In>(iv, wv[dx][v], acc[i - dx][v]);
          }
        }
      } while ((tap += K) < count);
    } else {
      taps<In>(w, in, offsets, count, pixel_stride);
    }
  }
};

// Columns xb - 1 .. xb + pixels of one NHWC feature row of `w` pixels x c words, zero outside the row: the row
// itself where the window lies inside it, else a zero-padded copy in `edge` ((pixels + 2) x c words).
inline const float* feature_window(const float* row, int xb, int pixels, int w, int c, float* edge) {
  if (xb >= 1 && xb + pixels + 1 <= w) return row + static_cast<int64_t>(xb - 1) * c;
  std::memset(edge, 0, sizeof(float) * static_cast<size_t>(pixels + 2) * c);
  const int from = imax(xb - 1, 0), to = imin(xb + pixels + 1, w);
  if (to > from)
    std::memcpy(edge + static_cast<int64_t>(from - (xb - 1)) * c, row + static_cast<int64_t>(from) * c,
                sizeof(float) * static_cast<size_t>(to - from) * c);
  return edge;
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
