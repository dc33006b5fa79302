// The fused WDSR-B block, "persistent" kernel (BlockKernel::Persistent, kernels.h): fp16 / bf16 only (fp32 runs
// the tiled file's CUDA-core kernel whichever kernel is named).
//
//     y = x + res_scale * conv3x3(conv1x1_reduce(relu(conv1x1_expand(x))))
//
// The same arithmetic as the tiled kernel of wdsr_b_block.cu (16 x 16 output tiles, 18 x 18 haloed input, WMMA
// 16x16x16 with fp32 accumulation, the wide activation only in a per-warp shared scratch, the low-rank tile in
// shared memory, the 3x3 as an implicit GEMM over 9 taps x 32 channels), organised differently:
//
// - persistent: min(tiles, SMs) CTAs of 8 warps, CTA b computing tiles b, b + gridDim.x, ... (neighbouring CTAs
//   take neighbouring tiles at the same time, so halos are read from L2);
// - the weights (expand, reduce, 3x3, biases) are staged into shared memory once per CTA, each read in memory
//   order (coalesced), while the first tile's input is already being copied;
// - the haloed input tile is double-buffered: right after the barrier that starts tile i, every thread issues the
//   cp.async copies of tile i + gridDim.x into the other buffer (16 bytes per copy, zero-filled outside the image
//   and past c), and waits for them only at the start of that tile, so the copy runs during tile i's compute. That
//   needs channels_last x with c % 8 == 0 and 16-byte aligned pixels; any other x is copied with ordinary loads at
//   the same place (no overlap): FastWDSR's features are channels_last;
// - stage 1 keeps each strip's x fragments in registers across the expansion (the tiled kernel reloads them for
//   every 16 wide channels); bias + ReLU and the low-rank epilogue move 8 or 16 values per lane as 16-byte vectors;
// - stage 2 gives each warp two adjacent output rows (16 rows, 8 warps), sharing each 3x3 weight fragment between
//   them: 36 A and 36 B fragment loads per warp instead of 2 x (18 + 36);
// - y is written as 16-byte vectors of 8 channels where y is channels_last (it is, from ops.cpp) and c % 8 == 0;
// - the x buffers hold the 324 haloed pixels only: the last strip of 16 pixels starts at pixel 308 (overlapping
//   the one before, whose rows it does not write), so no padding rows are copied or kept;
// - two barriers per tile (after the wait; between the stages), none at its end: the next tile's barrier comes
//   before anything overwrites the t tile or the buffer just read.
//
// Design in numbers (ESTIMATES from the code, nothing here was timed): WDSR-B 32x16 (C 32, E 192, L 25), 960x540,
// fp16, on an H100 (132 SMs).
// - Shared memory per CTA: 166,016 B at expansion width 192 (weights 51,200 with row padding; two x buffers of
//   25,984; the t tile 31,104; per-warp scratch 8 x 3,840; biases 1,024): within sm_80's 166,912 B per block and
//   sm_90's 232,448. At width 256, 175,488 B: sm_90 only (on an A100 the op refuses, saying so, and FastWDSR picks
//   another backend). wdsr_b_block_persistent_shared_bytes() is the exact figure for every width.
// - Occupancy: 1 CTA of 8 warps per SM (shared memory allows no second); __launch_bounds__(256, 1).
// - Tiles: 60 x 34 = 2,040 for 132 CTAs: 15.45 rounds, so 60 CTAs compute 16 tiles and 72 compute 15.
// - Global memory per tile: x 20.7 KB read (324 pixels x 64 B; about 16.4 KB of it new, the halo from L2), y
//   16.4 KB written. Weights: 36 KB read once per CTA (4.8 MB a launch; the tiled kernel reads them per tile,
//   73 MB, and writes 51 KB of shared memory per tile staging them).
// - Tensor work per tile: 21 strips x 16 x (32x192 + 192x32) + 256 x 9 x 32 x 32 = 6.5 M MAC (1.31x the useful
//   work of the 1x1 convolutions for the halo, 28% padding in the 3x3's K of 25 -> 32).
// - Shared-memory traffic per tile: stage 1 about 68 KB per strip (of which 31 KB the fp32 bias + ReLU round trip
//   of the expansion, 25 KB weight fragments), 1.43 MB for 21 strips; stage 2 about 0.41 MB; the x copy 21 KB. At
//   128 B per clock per SM that is about 14,500 clocks (7.6 us at 1.9 GHz) per tile against about 3-4 us of
//   mma.sync work: shared-memory bandwidth is the expected limit, about 16 x 7.6 = 0.12 ms a block plus the weights
//   and the last round's imbalance, so 0.13-0.2 ms (the tiled kernel measured 0.752 ms, Triton 0.198 ms). Next, if
//   it is: the expand's accumulator kept in registers as the reduce's A operand (raw mma.sync, whose fragment
//   layouts are documented, instead of WMMA's opaque ones) removes the largest item.
//
// The emulator (tests/cuda_emulator) runs this source: cp.async as a copy taken at issue and written at the wait,
// the destination NaN-poisoned in between, so that a missing wait or barrier gives NaN or wrong outputs, or a race
// that its ThreadSanitizer build reports (tests/test_cuda_emulated.py breaks each on purpose).
#include <cuda_pipeline.h>
#include <mma.h>

#include <cstdint>

#include "wdsr_b_block.cuh"

namespace wdsr {
namespace {

using namespace block;  // the tile geometry and leading dimensions both block kernels use

constexpr int kVec = 8;                           // channels per 16-byte vector
constexpr int kLastStripPixel = kHaloPixels - 16;  // 308: the last strip's first pixel (it overlaps the one before)
constexpr int kLdAccE = 24;   // per-warp fp32 expansion accumulator [16][24]: 96-byte rows
constexpr int kLdAcc32 = 40;  // per-warp fp32 low-rank / output accumulators [16][40]: 160-byte rows
constexpr int kCtasPerSm = 1;
static_assert(kTile == 2 * kWarps, "stage 2 gives each warp two output rows");
static_assert(kChannels % kVec == 0 && kChunk % 16 == 0, "vectors and fragments tile the channels");

__host__ __device__ constexpr int align128(int bytes) { return round_up(bytes, 128); }

// Shared-memory layout, in bytes from the start (every section 128-byte aligned):
//   w_expand [wide_pad][kLdWeights] T | w_reduce [32][reduce_ld] T | w_conv [9 * 32][kLdWeights] T |
//   x [2][324][kLdX] T | t [324][kLdT] T | per warp: wide [16][kLdWide] T + expansion accumulator [16][kLdAccE] fp32,
//   the first 16 x kLdAcc32 floats of which are the low-rank and output accumulators once the wide scratch is free |
//   b_expand [wide_pad], b_reduce [32], b_conv [32] fp32
template <typename T>
struct PersistentSmem {
  static constexpr int kElement = static_cast<int>(sizeof(T));
  static constexpr int kWideBytes = 16 * kLdWide * kElement;
  static constexpr int kWarpBytes = kWideBytes + 16 * kLdAccE * 4;
  static constexpr int kXBytes = align128(kHaloPixels * kLdX * kElement);
  static_assert(kWarpBytes >= 16 * kLdAcc32 * 4 && kWarpBytes % 32 == 0 && kWideBytes % 32 == 0,
                "the per-warp scratch holds the 16 x 32 accumulators and keeps WMMA pointers 32-byte aligned");
  int wide_pad;
  __host__ __device__ int w_expand() const { return 0; }
  __host__ __device__ int w_reduce() const { return w_expand() + align128(wide_pad * kLdWeights * kElement); }
  __host__ __device__ int w_conv() const {
    return w_reduce() + align128(kChannels * reduce_ld(wide_pad) * kElement);
  }
  __host__ __device__ int x_tile(int buffer) const {
    return w_conv() + align128(9 * kChannels * kLdWeights * kElement) + buffer * kXBytes;
  }
  __host__ __device__ int t_tile() const { return x_tile(2); }
  __host__ __device__ int warp_scratch(int warp) const {
    return t_tile() + align128(kHaloPixels * kLdT * kElement) + warp * kWarpBytes;
  }
  __host__ __device__ int biases() const { return align128(warp_scratch(kWarps)); }
  __host__ __device__ int bytes() const { return align128(biases() + (wide_pad + 2 * kChannels) * 4); }
};

__device__ __forceinline__ unsigned short bits_of(__half v) { return __half_as_ushort(v); }
__device__ __forceinline__ unsigned short bits_of(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }
template <typename T> __device__ __forceinline__ float from_bits(unsigned short b);
template <> __device__ __forceinline__ float from_bits<__half>(unsigned short b) {
  return __half2float(__ushort_as_half(b));
}
template <> __device__ __forceinline__ float from_bits<__nv_bfloat16>(unsigned short b) {
  return __bfloat162float(__ushort_as_bfloat16(b));
}

template <typename T>
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
  return static_cast<unsigned>(bits_of(from_float<T>(lo))) | static_cast<unsigned>(bits_of(from_float<T>(hi))) << 16;
}

// 8 values rounded to T, stored as one 16-byte vector at a 16-byte aligned address (shared or global).
template <typename T>
__device__ __forceinline__ void store8(T* dst, const float (&v)[kVec]) {
  uint4 packed;
  packed.x = pack2<T>(v[0], v[1]);
  packed.y = pack2<T>(v[2], v[3]);
  packed.z = pack2<T>(v[4], v[5]);
  packed.w = pack2<T>(v[6], v[7]);
  *reinterpret_cast<uint4*>(dst) = packed;
}

// 8 values of T read as one 16-byte vector from a 16-byte aligned address.
template <typename T>
__device__ __forceinline__ void load8(const T* src, float (&v)[kVec]) {
  const uint4 packed = *reinterpret_cast<const uint4*>(src);
  const unsigned words[4] = {packed.x, packed.y, packed.z, packed.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = from_bits<T>(static_cast<unsigned short>(words[i] & 0xffffu));
    v[2 * i + 1] = from_bits<T>(static_cast<unsigned short>(words[i] >> 16));
  }
}

// 8 floats read as two 16-byte vectors from a 16-byte aligned address in shared memory.
__device__ __forceinline__ void load8(const float* src, float (&v)[kVec]) {
  const float4 lo = reinterpret_cast<const float4*>(src)[0], hi = reinterpret_cast<const float4*>(src)[1];
  v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
}

// Issues the copy of tile `tile`'s haloed input into s_x ([324][kLdX]; channels past c and pixels outside the image
// zero). async_x: channels_last x, c % 8 == 0, 16-byte aligned pixels: cp.async, 16 bytes a copy, in flight until
// the caller's __pipeline_wait_prior; otherwise ordinary loads and stores, done on return.
template <typename T>
__device__ __forceinline__ void copy_x_tile(T* s_x, const T* __restrict__ x, const Strides& xs, long long tile, int c,
                                            int h, int w, bool async_x) {
  const TileOrigin origin = block_tile_origin(static_cast<unsigned>(tile), h, w);
  const T* x_n = x + static_cast<int64_t>(origin.n) * xs.n;
  if (async_x) {
    constexpr int kVectors = kChannels / kVec;  // per pixel
    for (int i = threadIdx.x; i < kHaloPixels * kVectors; i += kThreads) {
      const int p = i / kVectors, k = i % kVectors * kVec;
      int gy, gx;
      halo_pixel(origin, p, gy, gx);
      T* dst = s_x + p * kLdX + k;
      if (k < c && gy >= 0 && gy < h && gx >= 0 && gx < w) {
        __pipeline_memcpy_async(dst, x_n + gy * xs.h + gx * xs.w + k, 16);
      } else {
        __pipeline_memcpy_async(dst, x, 16, 16);  // 16 bytes of zeros; nothing is read
      }
    }
  } else {
    const T zero = from_float<T>(0.f);
    for (int i = threadIdx.x; i < kHaloPixels * kChannels; i += kThreads) {
      const int p = i / kChannels, k = i % kChannels;
      int gy, gx;
      halo_pixel(origin, p, gy, gx);
      const bool inside = k < c && gy >= 0 && gy < h && gx >= 0 && gx < w;
      s_x[p * kLdX + k] = inside ? x_n[k * xs.c + gy * xs.h + gx * xs.w] : zero;
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, kCtasPerSm) wdsr_b_block_persistent(
    const T* __restrict__ x, Strides xs, const T* __restrict__ w_expand, const T* __restrict__ b_expand,
    const T* __restrict__ w_reduce, const T* __restrict__ b_reduce, const T* __restrict__ w_conv,
    const T* __restrict__ b_conv, T* __restrict__ y, Strides ys, int n, int c, int h, int w, int wide, int low_rank,
    float res_scale, bool async_x, bool vector_y) {
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const PersistentSmem<T> layout{round_up(wide, kChunk)};
  const int wide_pad = layout.wide_pad, ld_reduce = reduce_ld(wide_pad);
  T* s_w_expand = reinterpret_cast<T*>(smem_raw + layout.w_expand());
  T* s_w_reduce = reinterpret_cast<T*>(smem_raw + layout.w_reduce());
  T* s_w_conv = reinterpret_cast<T*>(smem_raw + layout.w_conv());
  T* s_t = reinterpret_cast<T*>(smem_raw + layout.t_tile());
  float* s_b_expand = reinterpret_cast<float*>(smem_raw + layout.biases());
  float* s_b_reduce = s_b_expand + wide_pad;
  float* s_b_conv = s_b_reduce + kChannels;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  T* s_wide = reinterpret_cast<T*>(smem_raw + layout.warp_scratch(warp));
  float* s_acc_e = reinterpret_cast<float*>(smem_raw + layout.warp_scratch(warp) + PersistentSmem<T>::kWideBytes);
  float* s_acc = reinterpret_cast<float*>(smem_raw + layout.warp_scratch(warp));  // once s_wide is free
  const T zero = from_float<T>(0.f);
  const long long tiles = block_grid_x(n, h, w);

  // The first tile's input on its way, then the weights (zero-padded to the tile widths), each array read in memory
  // order so that a warp's loads are contiguous (w_conv, OIHW [c][l][3][3], is scattered into [tap][l][c]).
  long long tile = blockIdx.x;
  if (tile < tiles) copy_x_tile(reinterpret_cast<T*>(smem_raw + layout.x_tile(0)), x, xs, tile, c, h, w, async_x);
  __pipeline_commit();
#pragma unroll 4
  for (int i = tid; i < wide_pad * kChannels; i += kThreads) {
    const int e = i / kChannels, k = i % kChannels;
    s_w_expand[e * kLdWeights + k] = (e < wide && k < c) ? w_expand[e * c + k] : zero;
  }
#pragma unroll 4
  for (int i = tid; i < kChannels * wide_pad; i += kThreads) {
    const int l = i / wide_pad, e = i % wide_pad;
    s_w_reduce[l * ld_reduce + e] = (l < low_rank && e < wide) ? w_reduce[l * wide + e] : zero;
  }
#pragma unroll 4
  for (int i = tid; i < c * low_rank * 9; i += kThreads) {
    const int k = i / (low_rank * 9), l = i / 9 % low_rank, tap = i % 9;
    s_w_conv[(tap * kChannels + l) * kLdWeights + k] = w_conv[i];
  }
  for (int i = tid; i < 9 * kChannels * kChannels; i += kThreads) {  // the padding the loop above leaves
    const int row = i / kChannels, l = row % kChannels, k = i % kChannels;
    if (l >= low_rank || k >= c) s_w_conv[row * kLdWeights + k] = zero;
  }
  for (int i = tid; i < wide_pad; i += kThreads) s_b_expand[i] = i < wide ? to_float(b_expand[i]) : 0.f;
  for (int i = tid; i < kChannels; i += kThreads) {
    s_b_reduce[i] = i < low_rank ? to_float(b_reduce[i]) : 0.f;
    s_b_conv[i] = i < c ? to_float(b_conv[i]) : 0.f;
  }

  for (int buffer = 0; tile < tiles; tile += gridDim.x, buffer ^= 1) {
    // This thread's copies of this tile are done; after the barrier everyone's are, and every warp has finished the
    // previous tile (its t tile and its x buffer, the other one, are free).
    __pipeline_wait_prior(0);
    __syncthreads();
    const long long next = tile + gridDim.x;
    if (next < tiles)
      copy_x_tile(reinterpret_cast<T*>(smem_raw + layout.x_tile(buffer ^ 1)), x, xs, next, c, h, w, async_x);
    __pipeline_commit();
    const T* s_x = reinterpret_cast<const T*>(smem_raw + layout.x_tile(buffer));
    const TileOrigin origin = block_tile_origin(static_cast<unsigned>(tile), h, w);

    // Stage 1: t = (relu(x W1^T + b1)) W2^T + b2, strip by strip (zero outside the image: the 3x3 pads with zeros).
    for (int strip = warp; strip < kStrips; strip += kWarps) {
      const int first = strip * 16 < kLastStripPixel ? strip * 16 : kLastStripPixel;
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> x_frag[kChannels / 16];
#pragma unroll
      for (int kb = 0; kb < kChannels / 16; ++kb)
        wmma::load_matrix_sync(x_frag[kb], s_x + first * kLdX + kb * 16, kLdX);
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> t_acc[kChannels / 16];
      for (auto& f : t_acc) wmma::fill_fragment(f, 0.f);
      for (int e0 = 0; e0 < wide_pad; e0 += kChunk) {
        for (int nb = 0; nb < kChunk / 16; ++nb) {
          wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
          wmma::fill_fragment(acc, 0.f);
#pragma unroll
          for (int kb = 0; kb < kChannels / 16; ++kb) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
            wmma::load_matrix_sync(b, s_w_expand + (e0 + nb * 16) * kLdWeights + kb * 16, kLdWeights);
            wmma::mma_sync(acc, x_frag[kb], b, acc);
          }
          wmma::store_matrix_sync(s_acc_e, acc, kLdAccE, wmma::mem_row_major);
          __syncwarp();
          {  // bias + ReLU to T, a lane per half row: row lane / 2, 8 columns
            const int r = lane / 2, col = lane % 2 * kVec;
            float v[kVec], bias[kVec];
            load8(s_acc_e + r * kLdAccE + col, v);
            load8(s_b_expand + e0 + nb * 16 + col, bias);
#pragma unroll
            for (int j = 0; j < kVec; ++j) v[j] = fmaxf(v[j] + bias[j], 0.f);
            store8(s_wide + r * kLdWide + nb * 16 + col, v);
          }
          __syncwarp();
        }
        for (int kb = 0; kb < kChunk / 16; ++kb) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
          wmma::load_matrix_sync(a, s_wide + kb * 16, kLdWide);
#pragma unroll
          for (int lb = 0; lb < kChannels / 16; ++lb) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
            wmma::load_matrix_sync(b, s_w_reduce + lb * 16 * ld_reduce + e0 + kb * 16, ld_reduce);
            wmma::mma_sync(t_acc[lb], a, b, t_acc[lb]);
          }
        }
        __syncwarp();  // s_wide is rewritten by the next chunk (and s_acc overlays it below)
      }
#pragma unroll
      for (int lb = 0; lb < kChannels / 16; ++lb)
        wmma::store_matrix_sync(s_acc + lb * 16, t_acc[lb], kLdAcc32, wmma::mem_row_major);
      __syncwarp();
      {  // + b2 to T, a lane per half row: row lane / 2, 16 low-rank channels
        const int r = lane / 2, l0 = lane % 2 * 16, p = first + r;
        if (p >= strip * 16) {  // not a row of the strip before (the last strip overlaps it)
          int gy, gx;
          halo_pixel(origin, p, gy, gx);
          const bool inside = gy >= 0 && gy < h && gx >= 0 && gx < w;
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int l = l0 + half * kVec;
            float v[kVec], bias[kVec];
            load8(s_acc + r * kLdAcc32 + l, v);
            load8(s_b_reduce + l, bias);
#pragma unroll
            for (int j = 0; j < kVec; ++j) v[j] = inside ? v[j] + bias[j] : 0.f;
            store8(s_t + p * kLdT + l, v);
          }
        }
      }
      __syncwarp();  // s_acc overlays the next strip's s_wide
    }
    __syncthreads();

    // Stage 2: the 3x3 as an implicit GEMM, output rows 2 * warp and 2 * warp + 1 sharing each weight fragment.
    {
      const int row0 = 2 * warp;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][kChannels / 16];
      for (auto& row : acc)
        for (auto& f : row) wmma::fill_fragment(f, 0.f);
      for (int tap = 0; tap < 9; ++tap) {
        const int dy = tap / 3, dx = tap % 3;
#pragma unroll
        for (int kb = 0; kb < kChannels / 16; ++kb) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
#pragma unroll
          for (int j = 0; j < 2; ++j)
            wmma::load_matrix_sync(a[j], s_t + ((row0 + j + dy) * kHalo + dx) * kLdT + kb * 16, kLdT);
#pragma unroll
          for (int cb = 0; cb < kChannels / 16; ++cb) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
            wmma::load_matrix_sync(b, s_w_conv + (tap * kChannels + kb * 16) * kLdWeights + cb * 16, kLdWeights);
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[j][cb], a[j], b, acc[j][cb]);
          }
        }
      }
      T* y_n = y + static_cast<int64_t>(origin.n) * ys.n;
#pragma unroll
      for (int j = 0; j < 2; ++j) {
#pragma unroll
        for (int cb = 0; cb < kChannels / 16; ++cb)
          wmma::store_matrix_sync(s_acc + cb * 16, acc[j][cb], kLdAcc32, wmma::mem_row_major);
        __syncwarp();
        // Epilogue, a lane per half pixel: pixel lane / 2 of the row, 16 channels as two vectors of 8.
        const int row = row0 + j, col = lane / 2, gy = origin.y0 + row, gx = origin.x0 + col;
        if (gy < h && gx < w) {
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int k = lane % 2 * 16 + half * kVec;
            if (k < c) {
              float out[kVec], conv[kVec], bias[kVec];
              load8(s_x + ((row + 1) * kHalo + col + 1) * kLdX + k, out);  // the residual
              load8(s_acc + col * kLdAcc32 + k, conv);
              load8(s_b_conv + k, bias);
#pragma unroll
              for (int i = 0; i < kVec; ++i) out[i] += res_scale * (conv[i] + bias[i]);
              if (vector_y) {
                store8(y_n + gy * ys.h + gx * ys.w + k, out);
              } else {
#pragma unroll
                for (int i = 0; i < kVec; ++i)
                  if (k + i < c) y_n[(k + i) * ys.c + gy * ys.h + gx * ys.w] = from_float<T>(out[i]);
              }
            }
          }
        }
        __syncwarp();  // s_acc is rewritten by the next row
      }
    }
  }
}

// Whether a tensor of sizes (n, c, h, w) and strides `s` at `base` can be read or written as 16-byte vectors of 8
// channels: channels innermost, every pixel's first channel 16-byte aligned.
bool vectors_fit(const void* base, const Strides& s, int n, int c, int h, int w) {
  const auto multiple = [](int64_t stride, int size) { return size == 1 || stride % kVec == 0; };
  return s.c == 1 && c % kVec == 0 && multiple(s.n, n) && multiple(s.h, h) && multiple(s.w, w) &&
         reinterpret_cast<uintptr_t>(base) % 16 == 0;
}

template <typename T>
int shared_bytes(int wide) {
  return PersistentSmem<T>{round_up(wide, kChunk)}.bytes();
}

template <typename T>
cudaError_t launch(const WdsrBBlockParams& p, cudaStream_t stream) {
  cudaError_t err = raise_shared_memory_limit(wdsr_b_block_persistent<T>, shared_bytes<T>(kMaxWide));
  if (err != cudaSuccess) return err;
  int device = 0, sms = 0;
  err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  const long long tiles = block_grid_x(p.n, p.h, p.w);
  const long long ctas = std::min<long long>(tiles, static_cast<long long>(sms) * kCtasPerSm);
  if (ctas < 1) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(ctas));
  const bool async_x = vectors_fit(p.x, p.x_strides, p.n, p.c, p.h, p.w);
  const bool vector_y = vectors_fit(p.y, p.y_strides, p.n, p.c, p.h, p.w);
  wdsr_b_block_persistent<T><<<grid, kThreads, shared_bytes<T>(p.wide), stream>>>(
      static_cast<const T*>(p.x), p.x_strides, static_cast<const T*>(p.w_expand), static_cast<const T*>(p.b_expand),
      static_cast<const T*>(p.w_reduce), static_cast<const T*>(p.b_reduce), static_cast<const T*>(p.w_conv),
      static_cast<const T*>(p.b_conv), static_cast<T*>(p.y), p.y_strides, p.n, p.c, p.h, p.w, p.wide, p.low_rank,
      p.res_scale, async_x, vector_y);
  return cudaGetLastError();
}

}  // namespace

int wdsr_b_block_persistent_shared_bytes(DType dtype, int wide) {
  switch (dtype) {
    case DType::Float16: return shared_bytes<__half>(wide);
    case DType::BFloat16: return shared_bytes<__nv_bfloat16>(wide);
    case DType::Float32: return 0;  // fp32 runs the tiled file's CUDA-core kernel (static shared memory)
  }
  return 0;
}

cudaError_t launch_wdsr_b_block_persistent(const WdsrBBlockParams& params, cudaStream_t stream) {
  switch (params.dtype) {
    case DType::Float16: return launch<__half>(params, stream);
    case DType::BFloat16: return launch<__nv_bfloat16>(params, stream);
    case DType::Float32: break;  // launch_wdsr_b_block runs the CUDA-core kernel for fp32
  }
  return cudaErrorInvalidValue;
}

}  // namespace wdsr
