// The convolutions of the AMX blocks (block_b_amx.h, block_a_amx.h) on amx_tiles.h's register block: GEMM steps of
// 32 pixels x 32 output channels, their weights packed as B tiles, and the AVX-512 epilogues that read the stored C
// tiles. Activations are pixel-major bf16 with their channels padded to whole tiles ([pixel][k_pad], k_pad a multiple
// of kTileK = 32): a pixel's 32-channel group is one A tile row, so a tap of a 3x3 is the rows' pixels shifted by
// dx (no im2col).
#pragma once
#include "amx_tiles.h"
#include "kernel_common.h"

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

constexpr int kAmxPixels = 2 * kTileRows;  // pixels per GEMM step: two A tiles
constexpr int kAmxChannels = 2 * kTileN;   // output channels per GEMM step: two B tiles (= kTileK)

// Packs the weights w (element (n, k) at w[n * n_stride + k * k_stride], n < n_count output and k < k_count input
// channels) as B tiles [n_tiles][k_tiles] (kTileElems bf16 each, VNNI order), zero past the counts.
inline void pack_b_tiles(const float* w, int64_t n_stride, int64_t k_stride, int n_count, int k_count, int n_tiles,
                         int k_tiles, uint16_t* out) {
  for (int nt = 0; nt < n_tiles; ++nt)
    for (int kt = 0; kt < k_tiles; ++kt) {
      uint16_t* tile = out + (static_cast<int64_t>(nt) * k_tiles + kt) * kTileElems;
      for (int r = 0; r < kTileRows; ++r)
        for (int n = 0; n < kTileN; ++n)
          for (int j = 0; j < 2; ++j) {
            const int on = nt * kTileN + n, ik = kt * kTileK + 2 * r + j;
            tile[r * 2 * kTileN + 2 * n + j] =
                on < n_count && ik < k_count ? static_cast<uint16_t>(bf16_bits(w[on * n_stride + ik * k_stride])) : 0;
          }
    }
}

// B tiles of a 3x3 conv's weights w (out_count, in_count, 3, 3) as [tap (dy, dx)][n tiles][k tiles], the counts padded
// to n_pad and k_pad (multiples of 32); returns its bf16 elements' count where out is null.
inline int64_t pack_conv3x3_tiles(const float* w, int out_count, int in_count, int n_pad, int k_pad, uint16_t* out) {
  const int64_t tap_elems = static_cast<int64_t>(n_pad / kTileN) * (k_pad / kTileK) * kTileElems;
  if (out != nullptr)
    for (int tap = 0; tap < 9; ++tap)
      pack_b_tiles(w + tap, 9 * static_cast<int64_t>(in_count), 9, out_count, in_count, n_pad / kTileN,
                   k_pad / kTileK, out + tap * tap_elems);
  return 9 * tap_elems;
}

// A layer's biases as C tiles, each of the n_pad / 16 tiles 16 rows of the same 16 biases (zero past count); returns
// its floats' count where out is null.
inline int64_t pack_bias_tiles(const float* bias, int count, int n_pad, float* out) {
  if (out != nullptr)
    for (int n = 0; n < n_pad; ++n)
      for (int r = 0; r < kTileRows; ++r)
        out[(n / kTileN * kTileRows + r) * kTileN + n % kTileN] = n < count ? bias[n] : 0.0f;
  return static_cast<int64_t>(n_pad) * kTileRows;
}

// The C tiles of output channels n0 .. n0 + 31 set to their biases (bias: pack_bias_tiles').
inline void tiles_init_bias(const float* bias, int n0) {
  const float* tile = bias + static_cast<int64_t>(n0 / kTileN) * kTileRows * kTileN;
  tiles_init(tile, tile + kTileRows * kTileN);
}

// c[p][n] = bias[n0 + n] + sum over k of a[p][k] b[k][n0 + n] for 32 pixels (rows a_ld bf16 apart) and the 32 output
// channels from n0 (b: B tiles [n tiles][k_tiles], bias: pack_bias_tiles'); c: [kAmxPixels][kAmxChannels] fp32.
inline void amx_gemm(const uint16_t* a, int a_ld, const uint16_t* b, const float* bias, int n0, int k_tiles,
                     float* c) {
  tiles_init_bias(bias, n0);
  const uint16_t* b0 = b + static_cast<int64_t>(n0 / kTileN) * k_tiles * kTileElems;
  for (int kt = 0; kt < k_tiles; ++kt)
    tiles_step(a + kt * kTileK, a + kTileRows * a_ld + kt * kTileK, 2 * a_ld, b0 + kt * kTileElems,
               b0 + (k_tiles + kt) * kTileElems);
  tiles_store(c, kAmxChannels * sizeof(float));
}

// The 3x3 plus bias of 32 pixels from column col (rows[dy]: three rows of ld bf16 a pixel, column col + p + dx the
// input of output pixel p at tap dx) for the 32 output channels from n0 (b: pack_conv3x3_tiles' [tap][n tiles][k_tiles],
// bias: pack_bias_tiles').
inline void amx_conv3x3(const uint16_t* const (&rows)[3], int col, int ld, const uint16_t* b, const float* bias,
                        int n_tiles, int k_tiles, int n0, float* c) {
  tiles_init_bias(bias, n0);
  const int64_t tap_elems = static_cast<int64_t>(n_tiles) * k_tiles * kTileElems;
  for (int dy = 0; dy < 3; ++dy)
    for (int dx = 0; dx < 3; ++dx) {
      const uint16_t* a = rows[dy] + static_cast<int64_t>(col + dx) * ld;
      const uint16_t* b0 = b + (dy * 3 + dx) * tap_elems + static_cast<int64_t>(n0 / kTileN) * k_tiles * kTileElems;
      for (int kt = 0; kt < k_tiles; ++kt)
        tiles_step(a + kt * kTileK, a + kTileRows * ld + kt * kTileK, 2 * ld, b0 + kt * kTileElems,
                   b0 + (k_tiles + kt) * kTileElems);
    }
  tiles_store(c, kAmxChannels * sizeof(float));
}

// 32 fp32 channels of c rounded to bf16 (ReLU'd where Relu: one integer max for the rounded words), to dst.
template <bool Relu>
inline void store_bf16_channels(const float* c, uint16_t* dst) {
  const vf words = vpack_lane_pairs(vload(c), vload(c + VW));  // channels 0 .. 15, then 16 .. 31
  _mm512_storeu_si512(dst, _mm512_castps_si512(Relu ? vrelu_words(words) : words));
}

// The blocks' output for `pixels` pixels of one row from the C tiles of the channels n0 .. n0 + 31 (biases
// included): y = x + res_scale * c, x and y NHWC with `channels` channels from the pixel at `at` (elements).
inline void store_residual(const float* c, float res_scale, const Bf16* x, Bf16* y, int64_t at, int channels, int n0,
                           int pixels) {
  const vf scale = vset1(res_scale);
  for (int p = 0; p < pixels; ++p)
    for (int v = 0; v < kAmxChannels; v += VW) {
      const int k0 = n0 + v, lanes = imin(VW, channels - k0);
      if (lanes <= 0) break;
      const int64_t i = at + static_cast<int64_t>(p) * channels + k0;
      vstore_feat_n(y + i, vfma(scale, vload(c + p * kAmxChannels + v), vload_feat_n(x + i, lanes)), lanes);
    }
}

// Zero-padded bf16 copies of `pixels` NHWC pixels (channels each, from src) as rows of k_pad (dst), zero rows after
// them up to `rows`.
inline void stage_pixels(const Bf16* src, int channels, int pixels, int rows, int k_pad, uint16_t* dst) {
  for (int p = 0; p < rows; ++p)
    for (int k = 0; k < k_pad; k += kTileK) {
      const int valid = p < pixels ? imax(0, imin(kTileK, channels - k)) : 0;
      const __mmask32 mask = valid >= kTileK ? ~__mmask32{0} : (__mmask32{1} << valid) - 1;
      _mm512_storeu_si512(dst + static_cast<int64_t>(p) * k_pad + k,
                          _mm512_maskz_loadu_epi16(mask, src + static_cast<int64_t>(p) * channels + k));
    }
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
