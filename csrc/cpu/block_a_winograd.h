// The fused WDSR-A block on the CPU on Winograd F(2x2, 3x3) convolutions, written once for every vector width and
// features' precision (simd.h):
//   y = x + res_scale * (conv3x3(relu(conv3x3(x, w_expand) + b_expand), w_reduce) + b_reduce)
//
// Design, in numbers for the WDSR-A baseline (c = 32, wide = 128):
// - Fewer multiplies. Per (input, output) channel pair a 3x3 conv gives a 2x2 block of outputs from a 4x4 input tile
//   d as A^T [U .* V] A, U = G g G^T (the weights, transformed once per call, in double) and V = B^T d B: 16
//   multiplies where the direct convolution takes 36, 2.25x fewer, so 32,768 multiply-adds a pixel for the block
//   instead of 73,728. B, G and A hold only 0, +-1 and +-1/2: the transforms are adds and subtractions (mat_vec folds
//   the matrices at compile time).
// - The 16 elements e of a tile are 16 GEMMs over channels, M[tile][e][o] = sum_i U[e][i][o] V[tile][e][i],
//   vectorised over output channels in the register blocks of conv_block.h's scheme (WinoBlock): G output-channel
//   vectors x P tiles, each V value broadcast once for its G FMAs: 2 x 8 with 32 registers, 2 x 6 with 16, for the
//   expand (128 outputs) and the reduce (32). In L1 on one Zen 4 core: 116 GFLOP/s for 4 x 6, 2 x 8 and AVX2's
//   2 x 6, 107 for 2 x 12 (the direct kernel: about 108 on the whole block); in the block, 4 x 6 for the expand
//   (its M 98 KB for a block of 24 tiles, twice 2 x 8's) made the AVX-512 block 1.08-1.12x slower in fp32 and
//   1.07-1.10x in bf16 (128x128 and 270x480, 1 and 2 threads, paired runs), slower than the AVX2 build.
// - Transforms: each input tile once per (tile, input channel): 16 loads, 32 adds, 16 stores a vector of channels;
//   each output tile once per (tile, output channel) in the epilogue: 16 loads, 24 adds, then the bias and the ReLU
//   (expand) or the bias and the residual (reduce). About 2.5 kFLOP a pixel against 65.5 kFLOP in the GEMMs, but
//   memory-bound: a perf profile (one thread, 128x128) puts 77-80% of the time in the GEMM loops, near the FMA peak,
//   and the rest in the transforms and the stores and loads of V and M between them.
// - Structure as block_a.h: work items are bands of rows of one column chunk (at most kWinoChunk = 128 columns) of one
//   image, and the wide activation never reaches memory. The expand conv computes wide rows two at a time (its 2x2
//   output tiles from image row r0 - 1 and column x0 - 1 on, zeroed outside the image, where the reduce conv pads)
//   into a ring of two row pairs: 4 rows x 130 columns x 128 channels x 4 B = 266 KB, in L2 (1 MB a core on Zen 4);
//   each output row pair reads the ring's 4 rows. Recomputed work: the expand's first row pair of each band and its
//   last tile column of each chunk (33 x 65 expand tiles for 32 x 64 output tiles a band at 128x128 on 2 threads:
//   +5% of the expand, +2.5% of the block).
// - Memory: the transformed weights, 2 x 16 x 32 x 128 x 4 B = 512 KB for both convolutions (the direct kernel's:
//   295 KB), shared by the threads; per thread the ring (266 KB), V for a block of kTileBlock tiles (with 32
//   registers 24 tiles: 16 x 24 x 128 x 4 B = 196 KB) and M (24 x 16 x 64 x 4 B = 98 KB); with 16 registers 12-tile
//   blocks (98 KB and 12 KB). Chunks of 64 to 256 columns ran within 4% of each other, blocks of 12 to 96 tiles 3%.
// - Accuracy: F(2x2) is as accurate as the direct kernel (each GEMM sums over the input channels only, 32 or 128
//   terms, not 9 x 32 or 9 x 128): max |out - ref| / max |ref| against float64 3.6e-7 for a block at 64x64 (direct:
//   7e-7), 4.4e-7 for the 16-block preset model at 64x48 (direct: 5.3e-7).
// - F(4x4, 3x3) (WDSR_CPU_WINOGRAD_M=4, not built: 36 multiplies per 16 outputs, 4x fewer than direct; its
//   transforms the same generic code, not optimised) ran 1.29x (AVX2) and 1.46x (AVX-512, 64-column chunks) faster
//   than F(2x2) on one thread at 128x128, but its error is 15x larger: 5-6e-6 for the same block (the tests' bound:
//   1e-5), 1e-6 to 3e-6 for the preset models. Hence F(2x2); the tests run F(4x4) through the harness only.
// Measured on the 2-core AMD EPYC (Zen 4) the project builds on, one block, wall clock, medians of 9 rounds
// interleaved with the direct kernel (block_a.h) and oneDNN's convolutions (ops.cpp; held to AVX2 by
// ONEDNN_MAX_CPU_ISA=AVX2 for the AVX2 rows). The machine is shared: runs started when it was at least 90% idle,
// 1-minute load average 1.7-1.9 with the run itself. Milliseconds, features 128x128 | 270x480:
//   AVX-512, 1 thread:  Winograd 12.7 | 98.0, direct 22.3 | 177 (1.76x | 1.81x), oneDNN 23.7 | 218
//   AVX-512, 2 threads: Winograd 6.67 | 50.2, direct 11.7 | 91.2 (1.76x | 1.82x), oneDNN 12.3 | 117
//   AVX2, 1 thread:     Winograd 12.3 | 96.0, direct 22.7 | 183 (1.85x | 1.91x), oneDNN 25.1 | 217
//   AVX2, 2 threads:    Winograd 6.25 | 48.6, direct 11.8 | 95.9 (1.89x | 1.97x), oneDNN 12.6 | 117
// With the expand's 2 x 8 blocks (before: 4 x 6), idle machine, medians of 5, three paired runs: AVX-512 Winograd
// 11.3-11.4 | 89.4-89.6 on 1 thread (was 12.7 | 99.7-100.2), 5.7-6.0 | 44.6-45.2 on 2 (was 6.3-6.6 | 50.1-52.2);
// AVX2 unchanged (11.7-11.8 | 93.0-94.5, 5.9-6.7 | 46.7-48.0); bf16 6.6 | 51.8-52.2 (was 7.2 | 56.9-57.3), 3.4-3.6 |
// 26.2-26.5 (was 3.6-3.8 | 28.6-28.8).
// bf16 (kernels_avx512_bf16.cpp: V, U, the ring and x, y in bf16, the GEMMs on vdpbf16ps, M, the transforms and the
// epilogues in fp32), the same machine idle (load average 0.8), medians of 9 interleaved rounds, ms, 128x128 |
// 270x480: 1 thread Winograd 7.37 | 57.0, direct 11.3 | 87.0 (1.53x), oneDNN's bf16 convolutions 12.0 | 90.2;
// 2 threads 3.72 | 28.3, direct 5.76 | 43.4 (1.53x), oneDNN 6.00 | 46.3. Less gain than in fp32: the transforms and
// the V and M traffic stay fp32-sized work while the GEMMs halve. Rounding V to bf16 costs accuracy: up to 1.5x the
// direct bf16 kernel's error against float64, about torch's own bf16 error (tests/test_cpu_backend.py).
// The portable path (4 lanes; load average 3): Winograd 34.5 ms, direct 89.7, oneDNN (its AVX-512 kernels here)
// 24.1 at 128x128 on one thread, so it keeps oneDNN where torch has it. The whole model against ONNX Runtime and
// OpenVINO: benchmarks/README.md, CPU section.
#pragma once
#include "kernel_common.h"
#include "kernels.h"

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

// Winograd F(m x m, 3 x 3) (Lavin & Gray 2016): on a (m + 2) x (m + 2) input tile d of one channel,
// y = A^T [(G g G^T) .* (B^T d B)] A gives the m x m outputs of the 3x3 kernel g, (m + 2)^2 multiplies for m^2 x 9.
template <int M>
struct WinogradF;

template <>
struct WinogradF<2> {
  static constexpr int T = 4;
  static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};

template <>
struct WinogradF<4> {
  static constexpr int T = 6;
  static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                     {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr double G[6][3] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
  static constexpr float AT[4][6] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

#ifndef WDSR_CPU_WINOGRAD_M
#define WDSR_CPU_WINOGRAD_M 2
#endif
constexpr int kWinoM = WDSR_CPU_WINOGRAD_M;
#ifndef WDSR_CPU_WINOGRAD_CHUNK
#define WDSR_CPU_WINOGRAD_CHUNK 128
#endif
constexpr int kWinoChunk = WDSR_CPU_WINOGRAD_CHUNK;
#ifndef WDSR_CPU_WINOGRAD_BLOCK
#define WDSR_CPU_WINOGRAD_BLOCK 2
#endif
// Tiles transformed at once, V and M in memory for them: 24 with 32 registers, 12 with 16.
constexpr int kTileBlock = WDSR_CPU_WINOGRAD_BLOCK * kAccumulators / 2;
// Output-channel vectors per register block of the expand conv (128 wide channels) and of the reduce (32): 2 x 8
// tiles with 32 registers, 2 x 6 with 16 (4 x 6 for the expand measured slower: above).
constexpr int kExpandVecs = 2;
constexpr int kReduceVecs = 2;

// out[r] = sum_k m[r][k] in[k], the coefficients known at compile time (as floats): zeros skipped, +-1 as adds.
template <typename Coef, int R, int C>
inline void mat_vec(const Coef (&m)[R][C], const vf (&in)[C], vf (&out)[R]) {
  WDSR_UNROLL for (int r = 0; r < R; ++r) {
    vf acc = vzero();
    bool first = true;
    WDSR_UNROLL for (int k = 0; k < C; ++k) {
      const float coef = static_cast<float>(m[r][k]);
      if (coef == 0.0f) continue;
      if (first) {
        acc = coef == 1.0f ? in[k] : vmul(vset1(coef), in[k]);
      } else if (coef == 1.0f) {
        acc = vadd(acc, in[k]);
      } else if (coef == -1.0f) {
        acc = vsub(acc, in[k]);
      } else {
        acc = vfma(vset1(coef), in[k], acc);
      }
      first = false;
    }
    out[r] = acc;
  }
}

// out = m d m^T for a C x C tile d.
template <typename Coef, int R, int C>
inline void transform_2d(const Coef (&m)[R][C], const vf (&d)[C][C], vf (&out)[R][R]) {
  vf tmp[R][C];
  WDSR_UNROLL for (int j = 0; j < C; ++j) {
    vf col[C], res[R];
    WDSR_UNROLL for (int i = 0; i < C; ++i) col[i] = d[i][j];
    mat_vec(m, col, res);
    WDSR_UNROLL for (int i = 0; i < R; ++i) tmp[i][j] = res[i];
  }
  WDSR_UNROLL for (int i = 0; i < R; ++i) mat_vec(m, tmp[i], out[i]);
}

// U = G g G^T for the 3x3 kernels of n output channels (0 < n <= VW), vectorised over them: lane i from the 9 floats
// at w + i * stride (row-major), the lanes past n zero. In float with G's coefficients as floats (exact for F(2x2):
// 0, 1/2, 1); the transform of a whole call's weights takes microseconds (one channel at a time in double, the
// WDSR-B block's took 23 us a call, measured).
template <int M>
inline void winograd_kernels(const float* w, int64_t stride, int n, vf (&u)[WinogradF<M>::T][WinogradF<M>::T]) {
  vf g[3][3];
  WDSR_UNROLL for (int e = 0; e < 9; ++e) g[e / 3][e % 3] = vgather_n(w + e, static_cast<int>(stride), n);
  transform_2d(WinogradF<M>::G, g, u);
}

// U of the kernels w[o][i] (OIHW 3x3, `cin` input channels a row of w) for output channels o0 .. o0 + n - 1 (lanes;
// zero from n on, all zero for n <= 0) and input channels ci .. ci + kPack - 1 (zero from cin on), as words: element
// e's VW words at out + e * element_stride.
template <int M>
inline void store_winograd_words(const float* w, int cin, int o0, int n, int ci, float* out, int64_t element_stride) {
  constexpr int T = WinogradF<M>::T;
  vf u[kPack][T][T];
  WDSR_UNROLL for (int pi = 0; pi < kPack; ++pi) {
    if (n > 0 && ci + pi < cin) {
      winograd_kernels<M>(w + (static_cast<int64_t>(o0) * cin + ci + pi) * 9, static_cast<int64_t>(cin) * 9, n,
                          u[pi]);
    } else {
      WDSR_UNROLL for (int e = 0; e < T * T; ++e) u[pi][e / T][e % T] = vzero();
    }
  }
  WDSR_UNROLL for (int e = 0; e < T * T; ++e) {
    vf channels[kPack];
    WDSR_UNROLL for (int pi = 0; pi < kPack; ++pi) channels[pi] = u[pi][e / T][e % T];
    vstore(out + e * element_stride, vpack_words(channels));
  }
}

// acc[p][v] = sum_k w[k][v] in[k * k_stride + p * stride] for P tiles, over words k < count (simd.h: a channel, or a
// pair of bf16 ones): G output-channel vectors (weights packed [k][Lanes], the first G * VW lanes used) x P tiles, each
// broadcast once for its G multiply-adds (vdot).
template <int G, int P, int Lanes>
struct WinoBlock {
  vf acc[P][G];

  void gemm(const float* w, const float* in, int count, int64_t stride, int64_t k_stride = 1) {
    WDSR_UNROLL for (int p = 0; p < P; ++p)
      WDSR_UNROLL for (int v = 0; v < G; ++v) acc[p][v] = vzero();
    for (int k = 0; k < count; ++k) {
      vf wv[G];
      WDSR_UNROLL for (int v = 0; v < G; ++v) wv[v] = vload(w + k * Lanes + v * VW);
      WDSR_UNROLL for (int p = 0; p < P; ++p) {
        const vf b = vset1(in[k * k_stride + p * stride]);
        WDSR_UNROLL for (int v = 0; v < G; ++v) acc[p][v] = vdot(b, wv[v], acc[p][v]);
      }
    }
  }
  // acc[p][v] to out[p * stride + v * VW].
  void store(float* out, int64_t stride) const {
    WDSR_UNROLL for (int p = 0; p < P; ++p)
      WDSR_UNROLL for (int v = 0; v < G; ++v) vstore(out + p * stride + v * VW, acc[p][v]);
  }
};

// Tiles per register block of G output-channel vectors: kAccumulators / G, except 8 (not 12) for 2 vectors with 32
// registers (2 x 12 ran at 92% of 2 x 8's rate in L1 on Zen 4: 107 against 116 GFLOP/s, one core).
#ifndef WDSR_CPU_WINOGRAD_P2
#define WDSR_CPU_WINOGRAD_P2 8
#endif
template <int G>
constexpr int kWinoTiles = kRegisters == 32 && G == 2 ? WDSR_CPU_WINOGRAD_P2 : kAccumulators / G;

// One Winograd element's GEMM over `tiles` tiles:
// out[t * out_stride + lane] = sum_k w[k][lane] in[t * in_stride + k * k_stride] for G * VW lanes (weights [k][Lanes],
// k over input words), in register blocks of kWinoTiles<G> tiles (the last one as wide as the tiles left).
template <int G, int Lanes>
inline void wino_gemm(const float* w, const float* in, int64_t in_stride, int count, int tiles, float* out,
                      int64_t out_stride, int64_t k_stride = 1) {
  constexpr int P = kWinoTiles<G>;
  int t = 0;
  for (; t + P <= tiles; t += P) {
    WinoBlock<G, P, Lanes> block;
    block.gemm(w, in + t * in_stride, count, in_stride, k_stride);
    block.store(out + t * out_stride, out_stride);
  }
  if (t < tiles)
    with_rows<P - 1>(tiles - t, [&]<int R>() {
      WinoBlock<G, R, Lanes> block;
      block.gemm(w, in + t * in_stride, count, in_stride, k_stride);
      block.store(out + t * out_stride, out_stride);
    });
}


// One row of `tiles` Winograd tiles of a 3x3 convolution of cin input channels to cout output channels, weights u
// ([T^2][group][cin word][GV * VW]), in blocks of kTileBlock tiles: load(tile, channel, d) gives the input tile of VW
// channels from `channel` on (zero past cin); the tiles are transformed once per (tile, channel) into V
// ([tile][T^2][cin_pad] features: bf16 with WDSR_CPU_BF16, rounded once); each of the T^2 elements is a GEMM over
// the channels (WinoBlock: G output-channel vectors x P tiles, one broadcast of V per (input word, tile)) into Mt
// ([tile][T^2][GV * VW], fp32), one group of GV * VW output channels at a time; epilogue(tile, channel, y) takes
// the m x m outputs of VW channels.
template <int M, int GV, typename Load, typename Epilogue>
inline void winograd_tiles(int tiles, int cin, int cin_pad, int cout, const float* u, feature_t* V, float* Mt,
                           Load&& load, Epilogue&& epilogue) {
  using W = WinogradF<M>;
  constexpr int T = W::T, TT = T * T, lanes = GV * VW;
  const int groups = ceil_div(cout, lanes), cin_words = ceil_div(cin, kPack);
  const int64_t v_tile = static_cast<int64_t>(TT) * cin_pad;  // features of one tile
  for (int t0 = 0; t0 < tiles; t0 += kTileBlock) {
    const int nt = imin(kTileBlock, tiles - t0);
    for (int t = 0; t < nt; ++t)
      for (int cv = 0; cv < cin; cv += VW) {
        vf d[T][T], v[T][T];
        load(t0 + t, cv, d);
        transform_2d(W::BT, d, v);
        feature_t* at = V + t * v_tile + cv;
        WDSR_UNROLL for (int i = 0; i < T; ++i)
          WDSR_UNROLL for (int j = 0; j < T; ++j) vstore_feat(at + (i * T + j) * cin_pad, v[i][j]);
      }
    for (int g = 0; g < groups; ++g) {
      const int c_valid = imin(lanes, cout - g * lanes);
      with_rows<GV>(ceil_div(c_valid, VW), [&]<int G>() {
        for (int xi = 0; xi < TT; ++xi)
          wino_gemm<G, lanes>(u + (static_cast<int64_t>(xi) * groups + g) * cin_words * lanes,
                              words(V + xi * cin_pad), v_tile / kPack, cin_words, nt, Mt + xi * G * VW, TT * G * VW);
        for (int t = 0; t < nt; ++t)
          WDSR_UNROLL for (int v = 0; v < G; ++v) {
            vf m[T][T], y[M][M];
            const float* at = Mt + t * TT * G * VW + v * VW;
            WDSR_UNROLL for (int i = 0; i < T; ++i)
              WDSR_UNROLL for (int j = 0; j < T; ++j) m[i][j] = vload(at + (i * T + j) * G * VW);
            transform_2d(W::AT, m, y);
            epilogue(t0 + t, g * lanes + v * VW, y);
          }
      });
    }
  }
}

using WinoArgs = BlockAArgsOf<feature_t>;

struct WinogradAContext {
  const WinoArgs* a;
  const float* u_expand;  // [T^2][expand group][c word][kExpandVecs * VW]
  const float* b_expand;  // [wide_pad], zero past wide
  const float* u_reduce;  // [T^2][reduce group][wide word][kReduceVecs * VW]
  const float* b_reduce;  // [c_pad], zero past c
  RowBands bands;
  int c_pad, wide_pad;    // channels rounded up to whole vectors
  int ring_cols;          // columns of a ring row: m x (the widest chunk's tiles + 1)
};

// A band of rows of one column chunk: wide rows in groups of m (the expand conv's output tiles, from image row
// r0 - 1 on), kept in a ring of two groups; output rows in groups of m from the ring's 2m rows.
template <int M>
void winograd_a_items(const void* context, int64_t begin, int64_t end) {
  using W = WinogradF<M>;
  constexpr int T = W::T, TT = T * T;
  const WinogradAContext& ctx = *static_cast<const WinogradAContext*>(context);
  const WinoArgs& a = *ctx.a;
  // The ring and V in features (2 a float with bf16), Mt in floats.
  const int64_t row_features = static_cast<int64_t>(ctx.ring_cols) * ctx.wide_pad;  // one wide row
  const int64_t slot_features = M * row_features;
  const int64_t v_features = static_cast<int64_t>(TT) * kTileBlock * imax(ctx.c_pad, ctx.wide_pad);
  const int64_t m_floats = static_cast<int64_t>(TT) * kTileBlock * imax(kExpandVecs, kReduceVecs) * VW;
  Buffer scratch((2 * slot_features + v_features) / kPack + m_floats);
  feature_t* ring = reinterpret_cast<feature_t*>(scratch.get());
  feature_t* V = ring + 2 * slot_features;
  float* Mt = scratch.get() + (2 * slot_features + v_features) / kPack;
  const int64_t x_row = static_cast<int64_t>(a.w) * a.c;
  const int wide_pad = ctx.wide_pad;
  const vf scale = vset1(a.res_scale);
  for (int64_t item = begin; item < end; ++item) {
    const auto [n, x0, x1, r0, r1] = ctx.bands.item(item);
    const int tiles = ceil_div(x1 - x0, M);
    // Wide rows r0 - 1 + m k .. r0 - 2 + m (k + 1) (ring columns j: image column x0 - 1 + j), zero outside the image.
    auto expand = [&](int k) {
      feature_t* slot = ring + (k & 1) * slot_features;
      const int wr = r0 - 1 + M * k;
      if (wr >= a.h) {
        std::memset(slot, 0, sizeof(feature_t) * static_cast<size_t>(slot_features));
        return;
      }
      const feature_t* x_rows[T];
      for (int i = 0; i < T; ++i) {
        const int y = wr - 1 + i;
        x_rows[i] = y >= 0 && y < a.h ? a.x + (static_cast<int64_t>(n) * a.h + y) * x_row : nullptr;
      }
      bool row_in[M], rows_in = true;  // the wide rows inside the image; all of them
      for (int i = 0; i < M; ++i) rows_in &= row_in[i] = wr + i >= 0 && wr + i < a.h;
      bool x_rows_in = true;  // all x rows of the tiles inside the image
      for (int i = 0; i < T; ++i) x_rows_in &= x_rows[i] != nullptr;
      winograd_tiles<M, kExpandVecs>(
          tiles + 1, a.c, ctx.c_pad, a.wide, ctx.u_expand, V, Mt,
          [&](int t, int cv, vf(&d)[T][T]) {
            const int xs = x0 - 2 + M * t, lanes = a.c - cv;
            if (x_rows_in && xs >= 0 && xs + T <= a.w && lanes >= VW) {  // inside the image
              WDSR_UNROLL for (int i = 0; i < T; ++i)
                WDSR_UNROLL for (int j = 0; j < T; ++j) d[i][j] =
                    vload_feat(x_rows[i] + static_cast<int64_t>(xs + j) * a.c + cv);
              return;
            }
            WDSR_UNROLL for (int i = 0; i < T; ++i)
              WDSR_UNROLL for (int j = 0; j < T; ++j) {
                const int col = xs + j;
                if (x_rows[i] == nullptr || col < 0 || col >= a.w) {
                  d[i][j] = vzero();
                } else {
                  const feature_t* p = x_rows[i] + static_cast<int64_t>(col) * a.c + cv;
                  d[i][j] = lanes >= VW ? vload_feat(p) : vload_feat_n(p, lanes);
                }
              }
          },
          [&](int t, int k0, const vf(&y)[M][M]) {
            const vf b = vload(ctx.b_expand + k0);
            feature_t* out = slot + static_cast<int64_t>(M * t) * wide_pad + k0;
            const int col0 = x0 - 1 + M * t;
            if (rows_in && col0 >= 0 && col0 + M <= a.w) {  // inside the image
              WDSR_UNROLL for (int i = 0; i < M; ++i)
                WDSR_UNROLL for (int j = 0; j < M; ++j)
                  vstore_feat(out + i * row_features + j * wide_pad, vmax(vadd(y[i][j], b), vzero()));
              return;
            }
            WDSR_UNROLL for (int i = 0; i < M; ++i)
              WDSR_UNROLL for (int j = 0; j < M; ++j) {
                const bool inside = row_in[i] && col0 + j >= 0 && col0 + j < a.w;
                vstore_feat(out + i * row_features + j * wide_pad,
                            inside ? vmax(vadd(y[i][j], b), vzero()) : vzero());
              }
          });
    };
    // Output rows r0 + m j .. r0 + m j + m - 1 (those before r1) from wide group j (its m rows) and j + 1 (two).
    auto reduce = [&](int j) {
      const int row0 = r0 + M * j;
      const feature_t* rows[T];
      for (int i = 0; i < T; ++i)
        rows[i] = ring + (i < M ? (j & 1) * slot_features + i * row_features
                                : ((j + 1) & 1) * slot_features + (i - M) * row_features);
      winograd_tiles<M, kReduceVecs>(
          tiles, a.wide, wide_pad, a.c, ctx.u_reduce, V, Mt,
          [&](int t, int cv, vf(&d)[T][T]) {
            WDSR_UNROLL for (int i = 0; i < T; ++i)
              WDSR_UNROLL for (int jj = 0; jj < T; ++jj) d[i][jj] =
                  vload_feat(rows[i] + static_cast<int64_t>(M * t + jj) * wide_pad + cv);
          },
          [&](int t, int k0, const vf(&y)[M][M]) {
            const vf b = vload(ctx.b_reduce + k0);
            const int lanes = a.c - k0;
            WDSR_UNROLL for (int i = 0; i < M; ++i) {
              if (row0 + i >= r1) break;
              WDSR_UNROLL for (int jj = 0; jj < M; ++jj) {
                const int col = x0 + M * t + jj;
                if (col >= x1) break;
                const int64_t at = ((static_cast<int64_t>(n) * a.h + row0 + i) * a.w + col) * a.c + k0;
                if (lanes >= VW) {
                  vstore_feat(a.y + at, vfma(scale, vadd(y[i][jj], b), vload_feat(a.x + at)));
                } else {
                  vstore_feat_n(a.y + at, vfma(scale, vadd(y[i][jj], b), vload_feat_n(a.x + at, lanes)), lanes);
                }
              }
            }
          });
    };
    expand(0);
    for (int j = 0; j * M < r1 - r0; ++j) {
      expand(j + 1);
      reduce(j);
    }
  }
}

// U = G g G^T (winograd_kernels; with bf16 features rounded to bf16 words of two input channels). Items: (VW output
// channels, block of kPackInputs input channels) of the expand conv (its output channels rounded up to whole groups,
// zero past wide), then of the reduce conv: 8 + 8 items of equal work for the baseline with AVX-512, so that the
// threads share them evenly.
constexpr int kPackInputs = 32;

struct WinogradPack {
  const WinoArgs* a;
  float* u_expand;
  float* u_reduce;
  int expand_lanes, reduce_lanes;  // output channels rounded up to whole groups
  int64_t expand_items;
};

template <int M>
void winograd_pack_items(const void* context, int64_t begin, int64_t end) {
  const WinogradPack& p = *static_cast<const WinogradPack*>(context);
  for (int64_t item = begin; item < end; ++item) {
    const bool expand = item < p.expand_items;
    const int cout = expand ? p.a->wide : p.a->c, cin = expand ? p.a->c : p.a->wide;
    const int in_blocks = ceil_div(cin, kPackInputs);
    const int64_t i = expand ? item : item - p.expand_items;
    const int k0 = static_cast<int>(i / in_blocks) * VW, ci0 = static_cast<int>(i % in_blocks) * kPackInputs;
    const int group = (expand ? kExpandVecs : kReduceVecs) * VW, cin_words = ceil_div(cin, kPack);
    const int64_t plane = static_cast<int64_t>(expand ? p.expand_lanes : p.reduce_lanes) * cin_words;  // an element
    const float* w = expand ? p.a->w_expand : p.a->w_reduce;
    float* out = (expand ? p.u_expand : p.u_reduce) + static_cast<int64_t>(k0 / group) * cin_words * group + k0 % group;
    const int n = imin(VW, cout - k0);  // output channels k0 .. k0 + n - 1; none in a group's padding
    for (int ci = ci0; ci < imin(cin, ci0 + kPackInputs); ci += kPack)
      store_winograd_words<M>(w, cin, k0, n, ci, out + static_cast<int64_t>(ci / kPack) * group, plane);
  }
}

template <int M>
void wdsr_a_block_winograd_m(const WinoArgs& a, const Parallel& parallel) {
  constexpr int TT = WinogradF<M>::T * WinogradF<M>::T;
  WinogradAContext ctx{};
  ctx.a = &a;
  ctx.bands = RowBands::plan(a.n, a.h, a.w, kWinoChunk, parallel.threads);
  ctx.ring_cols = M * (ceil_div(ctx.bands.chunk_w, M) + 1);
  ctx.c_pad = round_up(a.c, VW);
  ctx.wide_pad = round_up(a.wide, VW);
  const int expand_lanes = round_up(a.wide, kExpandVecs * VW), reduce_lanes = round_up(a.c, kReduceVecs * VW);
  const int64_t u_expand_floats = static_cast<int64_t>(TT) * expand_lanes * ceil_div(a.c, kPack);
  const int64_t u_reduce_floats = static_cast<int64_t>(TT) * reduce_lanes * ceil_div(a.wide, kPack);
  Buffer packed(u_expand_floats + u_reduce_floats + ctx.wide_pad + ctx.c_pad);
  float* u_expand = packed.get();
  float* u_reduce = u_expand + u_expand_floats;
  float* b_expand = u_reduce + u_reduce_floats;
  float* b_reduce = b_expand + ctx.wide_pad;
  for (int k = 0; k < ctx.wide_pad; ++k) b_expand[k] = k < a.wide ? a.b_expand[k] : 0.0f;
  for (int k = 0; k < ctx.c_pad; ++k) b_reduce[k] = k < a.c ? a.b_reduce[k] : 0.0f;
  const int64_t expand_items = static_cast<int64_t>(expand_lanes / VW) * ceil_div(a.c, kPackInputs);
  const WinogradPack pack{&a, u_expand, u_reduce, expand_lanes, reduce_lanes, expand_items};
  parallel.run(expand_items + static_cast<int64_t>(reduce_lanes / VW) * ceil_div(a.wide, kPackInputs),
               &winograd_pack_items<M>, &pack);
  ctx.u_expand = u_expand;
  ctx.u_reduce = u_reduce;
  ctx.b_expand = b_expand;
  ctx.b_reduce = b_reduce;
  parallel.run(ctx.bands.items, &winograd_a_items<M>, &ctx);
}

void wdsr_a_block_winograd(const WinoArgs& a, const Parallel& parallel) {
  wdsr_a_block_winograd_m<kWinoM>(a, parallel);
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
