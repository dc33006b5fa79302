// The fused WDSR-B block of block_b.h with its 3x3 on Winograd F(2x2, 3x3) (block_a_winograd.h's transforms and
// GEMMs), written once for every vector width and features' precision (simd.h).
//   y = x + res_scale * conv3x3(t) + ...,  t = reduce1x1(relu(expand1x1(x))) as in block_b.h
//
// Design, in numbers for WDSR-B 32 (c = 32, wide = 192, low_rank = 25):
// - Fewer multiplies: the 3x3 takes 16 / 4 x 25 x 32 = 3,200 multiply-adds a pixel instead of 9 x 25 x 32 = 7,200
//   (bf16: 25 channels are 13 words, 3,328 instead of 7,488), the block 14,144 instead of 18,144 (1.28x fewer).
//   The 1x1 chain is block_b.h's (t_row, PackedRows), unchanged.
// - Rows: t rows two at a time into a ring of two row pairs (4 rows: block_b.h's 3-row ring plus one, 4 x 25 x 560
//   x 4 B = 224 KB fp32 for a 512-column chunk, 116 KB bf16, in L2), output rows two at a time from its 4 rows, as
//   block_a_winograd.h steps its wide rows. A band of an odd number of rows computes one t row less (zeros) and
//   stores one output row of its last pair.
// - Layout: no transpose. t stays planar per row, [word][column], as the 1x1 chain writes it; the input transform
//   vectorises over tiles instead of channels: for one t word and VW neighbouring tiles, the 4 x 4 inputs are the
//   even and odd columns of the 4 rows from columns 2 t0 and 2 t0 + 2 (vload_even_odd: 2 loads and 2 vpermt2ps
//   each; bf16 words split into their two channels by a shift and an and), so per (word, VW tiles) 16 loads, 16
//   permutes, 32 adds (64 and 32 splits with bf16) and 16 stores of V ([element][word][tile]), whose GEMMs broadcast
//   one V word per (word, tile) as block_a_winograd.h's do (wino_gemm with a word stride): G = 2 output vectors x 8
//   tiles, M to memory, then the output transform and the epilogue (bias, residual) per (tile, channel vector).
//   Measured (perf, bf16, 128x128, one thread): the input transform is 3.8% of the block's time, the GEMMs and
//   output transforms 20.8%, the 1x1 chain (t_row and its GEMMs) 54%.
// - Memory per thread besides the ring: V for a block of kWinoBTiles = 32 tiles, 16 x 25 x 32 x 4 B = 51 KB (bf16
//   26 KB), M 32 x 16 x 32 x 4 B = 64 KB; U (shared) 16 x 25 x 32 x 4 B = 51 KB (bf16 27 KB), direct weights 29 KB.
//   Blocks of 16 to 128 tiles ran within noise of each other; 2 x 12-tile register blocks 8-15% slower than 2 x 8.
// - Accuracy: each GEMM sums over 25 channels, not 225 taps: max |out - ref| / max |ref| against float64 4-6e-8
//   on the test shapes (direct: 4-12e-8); bf16 2.6e-3 against 2.4e-3 (V is rounded to bf16, as in block A).
// Measured on the 2-core AMD EPYC (Zen 4, AVX512-BF16), one block op, medians of 9 rounds interleaved with the direct
// kernel (block_b.h) in one process; the machine shared with another job using 1-1.5 cores (1-minute load average
// 1.9-2.4). Milliseconds, features 128x128 | 270x480, one thread:
//   bf16:    Winograd 2.79 | 21.6, direct 3.10 | 23.6 (1.11x | 1.09x)
//   AVX-512: Winograd 4.98 | 39.3, direct 5.73 | 44.3 (1.15x | 1.13x)
//   AVX2:    Winograd 5.35 | 41.0, direct 6.42 | 47.4 (1.20x | 1.16x)
//   portable (128x128): Winograd 15.3, direct 18.9 (1.24x)
// Whole WDSR-B 32x16 model, x2, 256x256 output, one thread: bf16 46.6 against 51.5 ms (1.11x), fp32 82.4 against
// 95.5 (1.16x); earlier runs 1.10-1.16x (block) and 1.15x (bf16 model). Two threads could not be measured cleanly
// beside that job (two-thread runs took about as long as one-thread ones): medians 0.96-1.46x over four runs, mostly
// 1.00-1.14x; each thread runs the one-thread algorithm on its band. Hence the default on every path (ops.cpp,
// WDSR_FAST_CPU_BLOCK_B); to re-measure on an idle machine.
#pragma once
#include "block_a_winograd.h"
#include "block_b.h"

namespace wdsr_cpu::WDSR_CPU_ISA {
namespace {

#ifndef WDSR_CPU_WINOB_TILES
#define WDSR_CPU_WINOB_TILES 32
#endif
// Tiles per block of V and M (a multiple of every VW).
constexpr int kWinoBTiles = WDSR_CPU_WINOB_TILES;
constexpr int kWinoBVecs = 2;  // output-channel vectors per GEMM register block (as block_a_winograd.h's reduce)

struct WinogradBContext {
  BlockBContext chain;  // the 1x1 chain of block_b.h (its conv fields unused)
  const float* u;       // [16][group][t word][kWinoBVecs * VW]
  const float* bias;    // [groups * kWinoBVecs * VW], zero past c
  int groups;
};

// The input transform of VW tiles (from tile t0 on, ring columns 2 t0 ..) for every t word: rows[i] the 4 t rows
// ([word][ldt]); V [16][t word][kWinoBTiles] words, from column `tile` on.
inline void winograd_b_inputs(const float* const (&rows)[4], int t_words, int ldt, int t0, float* V, int tile) {
  using W = WinogradF<2>;
  for (int k = 0; k < t_words; ++k) {
    vf d[kPack][4][4];
    WDSR_UNROLL for (int i = 0; i < 4; ++i) {
      const float* p = rows[i] + static_cast<int64_t>(k) * ldt + 2 * t0;
      vf w[4];
      vload_even_odd(p, w[0], w[1]);
      vload_even_odd(p + 2, w[2], w[3]);
      WDSR_UNROLL for (int j = 0; j < 4; ++j) {
        vf ch[kPack];
        vsplit_words(w[j], ch);
        WDSR_UNROLL for (int c = 0; c < kPack; ++c) d[c][i][j] = ch[c];
      }
    }
    vf v[kPack][4][4];
    WDSR_UNROLL for (int c = 0; c < kPack; ++c) transform_2d(W::BT, d[c], v[c]);
    WDSR_UNROLL for (int e = 0; e < 16; ++e) {
      vf out[kPack];
      WDSR_UNROLL for (int c = 0; c < kPack; ++c) out[c] = v[c][e / 4][e % 4];
      vstore_words(V + (static_cast<int64_t>(e) * t_words + k) * kWinoBTiles + tile, out);
    }
  }
}

inline void block_b_winograd_items(const void* context, int64_t begin, int64_t end) {
  using W = WinogradF<2>;
  constexpr int TT = 16, lanes = kWinoBVecs * VW;
  const WinogradBContext& ctx = *static_cast<const WinogradBContext*>(context);
  const BlockBContext& chain = ctx.chain;
  const BArgs& a = *chain.a;
  const int ldt = chain.plan.ldt, t_words = chain.plan.t_words;
  const int64_t row_floats = static_cast<int64_t>(t_words) * ldt;  // one t row
  const int64_t v_floats = static_cast<int64_t>(TT) * t_words * kWinoBTiles;
  const int64_t m_floats = static_cast<int64_t>(TT) * kWinoBTiles * lanes;
  Buffer scratch(4 * row_floats + v_floats + m_floats + x_tile_floats(a) + wide_tile_floats(a));
  float* ring = scratch.get();  // two slots of two t rows
  float* V = ring + 4 * row_floats;
  float* Mt = V + v_floats;
  float* x_tile = Mt + m_floats;
  float* wide_tile = x_tile + x_tile_floats(a);
  const vf scale = vset1(a.res_scale);
  for (int64_t item = begin; item < end; ++item) {
    const auto [n, x0, x1, r0, r1] = chain.plan.bands.item(item);
    const int tiles = ceil_div(x1 - x0, 2);
    // t rows r0 - 1 + 2 k and r0 + 2 k into slot k & 1 (a row past r1 is never read for a stored output: zeros).
    auto t_pair = [&](int k) {
      for (int i = 0; i < 2; ++i) {
        const int row = r0 - 1 + 2 * k + i;
        float* dst = ring + ((k & 1) * 2 + i) * row_floats;
        t_row(chain, n, row <= r1 ? row : -1, x0, x1, dst, x_tile, wide_tile);
      }
    };
    t_pair(0);
    for (int j = 0; 2 * j < r1 - r0; ++j) {
      t_pair(j + 1);
      const int row0 = r0 + 2 * j;
      const float* const rows[4] = {ring + (j & 1) * 2 * row_floats, ring + ((j & 1) * 2 + 1) * row_floats,
                                    ring + ((j + 1) & 1) * 2 * row_floats, ring + (((j + 1) & 1) * 2 + 1) * row_floats};
      for (int b0 = 0; b0 < tiles; b0 += kWinoBTiles) {
        const int nt = imin(kWinoBTiles, tiles - b0);
        for (int tv = 0; tv < nt; tv += VW) winograd_b_inputs(rows, t_words, ldt, b0 + tv, V, tv);
        for (int g = 0; g < ctx.groups; ++g) {
          const int c_valid = imin(lanes, a.c - g * lanes);
          with_rows<kWinoBVecs>(ceil_div(c_valid, VW), [&]<int G>() {
            for (int xi = 0; xi < TT; ++xi)
              wino_gemm<G, lanes>(ctx.u + (static_cast<int64_t>(xi) * ctx.groups + g) * t_words * lanes,
                                  V + static_cast<int64_t>(xi) * t_words * kWinoBTiles, 1, t_words, nt,
                                  Mt + xi * G * VW, TT * G * VW, kWinoBTiles);
            for (int t = 0; t < nt; ++t)
              WDSR_UNROLL for (int v = 0; v < G; ++v) {
                vf m[4][4], y[2][2];
                const float* at = Mt + t * TT * G * VW + v * VW;
                WDSR_UNROLL for (int i = 0; i < 4; ++i)
                  WDSR_UNROLL for (int jj = 0; jj < 4; ++jj) m[i][jj] = vload(at + (i * 4 + jj) * G * VW);
                transform_2d(W::AT, m, y);
                const int k0 = g * lanes + v * VW, c_lanes = a.c - k0;
                const vf bias = vload(ctx.bias + k0);
                WDSR_UNROLL for (int i = 0; i < 2; ++i) {
                  if (row0 + i >= r1) break;
                  WDSR_UNROLL for (int jj = 0; jj < 2; ++jj) {
                    const int col = x0 + 2 * (b0 + t) + jj;
                    if (col >= x1) break;
                    const int64_t at_y = ((static_cast<int64_t>(n) * a.h + row0 + i) * a.w + col) * a.c + k0;
                    if (c_lanes >= VW) {
                      vstore_feat(a.y + at_y, vfma(scale, vadd(y[i][jj], bias), vload_feat(a.x + at_y)));
                    } else {
                      vstore_feat_n(a.y + at_y, vfma(scale, vadd(y[i][jj], bias), vload_feat_n(a.x + at_y, c_lanes)),
                                    c_lanes);
                    }
                  }
                }
              }
          });
        }
      }
    }
  }
}

void wdsr_b_block_winograd(const BArgs& a, const Parallel& parallel) {
  constexpr int lanes = kWinoBVecs * VW;
  WinogradBContext ctx{};
  BlockBContext& chain = ctx.chain;
  chain.a = &a;
  chain.plan = plan_block_b(a, parallel.threads);
  // The input transform reads ring columns up to 2 round_up(tiles, VW) + 1.
  chain.plan.ldt = imax(chain.plan.ldt, round_up(2 * round_up(ceil_div(chain.plan.bands.chunk_w, 2), VW) + 2, VW));
  const int t_words = chain.plan.t_words;
  ctx.groups = ceil_div(a.c, lanes);
  const int64_t u_floats = static_cast<int64_t>(16) * ctx.groups * t_words * lanes;
  Buffer packed(chain_floats(a) + u_floats + ctx.groups * lanes);
  float* u = packed.get() + chain_floats(a);
  float* bias = u + u_floats;
  pack_chain(a, packed.get(), chain);
  std::memset(u, 0, sizeof(float) * static_cast<size_t>(u_floats + ctx.groups * lanes));
  for (int o = 0; o < a.c; ++o) bias[o] = a.b_conv[o];
  for (int o0 = 0; o0 < a.c; o0 += VW) {  // VW output channels at a time (lanes)
    float* out = u + static_cast<int64_t>(o0 / lanes) * t_words * lanes + o0 % lanes;
    for (int l = 0; l < a.low_rank; l += kPack)
      store_winograd_words<2>(a.w_conv, a.low_rank, o0, imin(VW, a.c - o0), l, out + (l / kPack) * lanes,
                              static_cast<int64_t>(ctx.groups) * t_words * lanes);
  }
  ctx.u = u;
  ctx.bias = bias;
  parallel.run(chain.plan.bands.items, &block_b_winograd_items, &ctx);
}

}  // namespace
}  // namespace wdsr_cpu::WDSR_CPU_ISA
