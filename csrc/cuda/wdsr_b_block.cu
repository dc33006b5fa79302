// The fused WDSR-B block:  y = x + res_scale * conv3x3(conv1x1_reduce(relu(conv1x1_expand(x))))
//
// The "tiled" kernel (BlockKernel::Tiled, kernels.h), measured on an H100; the "persistent" one is in
// wdsr_b_block_persistent.cu, the tile geometry both use in wdsr_b_block.cuh.
//
// One CTA (8 warps) owns a 16 x 16 output tile of one image (CTAs along grid x, image by image: launch_grid.cuh).
// Its input tile with a one-pixel halo (18 x 18 = 324 pixels, padded to 336 = 21 strips of 16 rows) is staged in
// shared memory, channels padded to 32, rows padded further against bank conflicts (kLd*, below): about 145 KB for
// n_feats 32, so one CTA per SM.
//
// fp16 / bf16 (tensor cores, WMMA 16x16x16, fp32 accumulation):
//   stage 1, per 16-pixel strip and warp: for each 64-wide chunk of the expansion, wide = relu(x W1^T + b1)
//     ([16 x 64], parked in a per-warp shared scratch), then t += wide W2^T; the wide activation never leaves
//     the SM. t + b2 (zeroed outside the image: the 3x3 zero-pads its input) goes to a shared t tile.
//   stage 2, per output row and warp: the 3x3 is an implicit GEMM over K = 9 taps x 32 low-rank channels,
//     each tap's A operand being 16 consecutive rows of the t tile; epilogue adds b3, scales, adds x.
// fp32: the same staging with CUDA-core FMAs (no tensor cores), weights read through the L1 cache.
//
// The shared-memory opt-in above 48 KB is set once per device and kernel, to what the widest block needs (capped
// at the device's limit), so that host threads launching models of different widths never race on it.
//
// Performance to expect (read from the code, not measured):
// - fp16/bf16: every 16 x 16 tile restages all weights into shared memory (about 51 KB with padding, from 36 KB of
//   weights that stay in L2) at one CTA per SM; the persistent kernel (wdsr_b_block_persistent.cu), each CTA
//   looping over tiles, loads them once per SM.
// - fp32: the low-rank tile's rows are kLdT32 = 33 floats apart, so the 32 lanes of a warp, each on its own pixel,
//   hit 32 different banks in stage 1, and at most two share one in stage 2 (with rows of 32 floats all 32 lanes
//   would hit one bank: 32-way conflicts, and 16-way in stage 2).
#include <mma.h>

#include "wdsr_b_block.cuh"

namespace wdsr {
namespace {

using namespace block;  // the tile geometry and leading dimensions both block kernels use

// Shared-memory layout of the tensor-core kernel, in elements of T (sections 128-byte aligned). [rows][ld]:
// the first kChannels (or wide_pad) columns of each row are used, the rest is padding.
template <typename T>
struct MmaSmem {
  int wide_pad;
  __host__ __device__ int w_expand() const { return 0; }                                   // [wide_pad][kLdWeights]
  __host__ __device__ int w_reduce() const { return w_expand() + wide_pad * kLdWeights; }  // [32][reduce_ld]
  __host__ __device__ int w_conv() const { return w_reduce() + kChannels * reduce_ld(wide_pad); }  // [9*32][kLdWeights]
  __host__ __device__ int x_tile() const { return w_conv() + 9 * kChannels * kLdWeights; }  // [336][kLdX]
  __host__ __device__ int t_tile() const { return x_tile() + kHaloRows * kLdX; }            // [336][kLdT]
  __host__ __device__ int wide() const { return t_tile() + kHaloRows * kLdT; }              // [8][16][kLdWide]
  __host__ __device__ int end_t() const { return wide() + kWarps * 16 * kLdWide; }
  // fp32 sections after the T ones: biases and per-warp accumulator scratch
  __host__ __device__ int bytes_t() const { return round_up(end_t() * static_cast<int>(sizeof(T)), 128); }
  __host__ __device__ int f_b_expand() const { return 0; }                                 // [wide_pad]
  __host__ __device__ int f_b_reduce() const { return wide_pad; }                          // [32]
  __host__ __device__ int f_b_conv() const { return wide_pad + kChannels; }                // [32]
  __host__ __device__ int f_scratch() const { return wide_pad + 2 * kChannels; }           // [8][16][kLdAcc]
  __host__ __device__ int bytes() const {
    return bytes_t() + (f_scratch() + kWarps * 16 * kLdAcc) * static_cast<int>(sizeof(float));
  }
};

template <typename T>
__global__ void __launch_bounds__(kThreads, 1) wdsr_b_block_mma(  // 1 CTA per SM: shared memory allows no more
    const T* __restrict__ x, Strides xs, const T* __restrict__ w_expand, const T* __restrict__ b_expand,
    const T* __restrict__ w_reduce, const T* __restrict__ b_reduce, const T* __restrict__ w_conv,
    const T* __restrict__ b_conv, T* __restrict__ y, Strides ys, int c, int h, int w, int wide, int low_rank,
    float res_scale) {
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const MmaSmem<T> layout{round_up(wide, kChunk)};
  T* smem = reinterpret_cast<T*>(smem_raw);
  float* fsmem = reinterpret_cast<float*>(smem_raw + layout.bytes_t());
  T* s_w_expand = smem + layout.w_expand();
  T* s_w_reduce = smem + layout.w_reduce();
  T* s_w_conv = smem + layout.w_conv();
  T* s_x = smem + layout.x_tile();
  T* s_t = smem + layout.t_tile();
  float* s_b_expand = fsmem + layout.f_b_expand();
  float* s_b_reduce = fsmem + layout.f_b_reduce();
  float* s_b_conv = fsmem + layout.f_b_conv();
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  T* s_wide = smem + layout.wide() + warp * 16 * kLdWide;
  float* s_acc = fsmem + layout.f_scratch() + warp * 16 * kLdAcc;
  const int ld_reduce = reduce_ld(layout.wide_pad);
  const T zero = from_float<T>(0.f);
  const TileOrigin tile = block_tile_origin(blockIdx.x, h, w);

  // Weights (zero-padded to the tile widths) and the haloed input tile into shared memory.
  for (int i = tid; i < layout.wide_pad * kChannels; i += kThreads) {
    const int e = i / kChannels, k = i % kChannels;
    s_w_expand[e * kLdWeights + k] = (e < wide && k < c) ? w_expand[e * c + k] : zero;
  }
  for (int i = tid; i < kChannels * layout.wide_pad; i += kThreads) {
    const int l = i / layout.wide_pad, e = i % layout.wide_pad;
    s_w_reduce[l * ld_reduce + e] = (l < low_rank && e < wide) ? w_reduce[l * wide + e] : zero;
  }
  for (int i = tid; i < 9 * kChannels * kChannels; i += kThreads) {  // [tap][l][c] from OIHW [c][l][3][3]
    const int row = i / kChannels, tap = row / kChannels, l = row % kChannels, k = i % kChannels;
    s_w_conv[row * kLdWeights + k] = (l < low_rank && k < c) ? w_conv[(k * low_rank + l) * 9 + tap] : zero;
  }
  for (int i = tid; i < layout.wide_pad; i += kThreads) s_b_expand[i] = i < wide ? to_float(b_expand[i]) : 0.f;
  for (int i = tid; i < kChannels; i += kThreads) {
    s_b_reduce[i] = i < low_rank ? to_float(b_reduce[i]) : 0.f;
    s_b_conv[i] = i < c ? to_float(b_conv[i]) : 0.f;
  }
  const T* x_n = x + static_cast<int64_t>(tile.n) * xs.n;
  for (int i = tid; i < kHaloRows * kChannels; i += kThreads) {
    const int p = i / kChannels, k = i % kChannels;
    int gy, gx;
    halo_pixel(tile, p, gy, gx);
    const bool inside = p < kHaloPixels && k < c && gy >= 0 && gy < h && gx >= 0 && gx < w;
    s_x[p * kLdX + k] = inside ? x_n[k * xs.c + gy * xs.h + gx * xs.w] : zero;
  }
  __syncthreads();

  // Stage 1: t = (relu(x W1^T + b1)) W2^T + b2, strip by strip.
  for (int strip = warp; strip < kStrips; strip += kWarps) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> t_acc[kChannels / 16];
    for (auto& f : t_acc) wmma::fill_fragment(f, 0.f);
    for (int e0 = 0; e0 < layout.wide_pad; e0 += kChunk) {
      for (int nb = 0; nb < kChunk / 16; ++nb) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.f);
        for (int kb = 0; kb < kChannels / 16; ++kb) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
          wmma::load_matrix_sync(a, s_x + strip * 16 * kLdX + kb * 16, kLdX);
          wmma::load_matrix_sync(b, s_w_expand + (e0 + nb * 16) * kLdWeights + kb * 16, kLdWeights);
          wmma::mma_sync(acc, a, b, acc);
        }
        wmma::store_matrix_sync(s_acc, acc, kLdAcc, wmma::mem_row_major);  // the first 16 columns
        __syncwarp();
        for (int i = lane; i < 16 * 16; i += 32) {
          const int r = i / 16, col = i % 16;
          const float v = s_acc[r * kLdAcc + col] + s_b_expand[e0 + nb * 16 + col];
          s_wide[r * kLdWide + nb * 16 + col] = from_float<T>(fmaxf(v, 0.f));
        }
        __syncwarp();
      }
      for (int lb = 0; lb < kChannels / 16; ++lb) {
        for (int kb = 0; kb < kChunk / 16; ++kb) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
          wmma::load_matrix_sync(a, s_wide + kb * 16, kLdWide);
          wmma::load_matrix_sync(b, s_w_reduce + lb * 16 * ld_reduce + e0 + kb * 16, ld_reduce);
          wmma::mma_sync(t_acc[lb], a, b, t_acc[lb]);
        }
      }
      __syncwarp();  // s_wide is rewritten by the next chunk
    }
    for (int lb = 0; lb < kChannels / 16; ++lb)
      wmma::store_matrix_sync(s_acc + lb * 16, t_acc[lb], kLdAcc, wmma::mem_row_major);
    __syncwarp();
    for (int i = lane; i < 16 * kChannels; i += 32) {
      const int r = i / kChannels, l = i % kChannels, p = strip * 16 + r;
      int gy, gx;
      halo_pixel(tile, p, gy, gx);
      const bool inside = p < kHaloPixels && gy >= 0 && gy < h && gx >= 0 && gx < w;
      s_t[p * kLdT + l] = from_float<T>(inside ? s_acc[r * kLdAcc + l] + s_b_reduce[l] : 0.f);
    }
    __syncwarp();
  }
  __syncthreads();

  // Stage 2: 3x3 as an implicit GEMM, one output row (16 pixels) per warp at a time.
  T* y_n = y + static_cast<int64_t>(tile.n) * ys.n;
  for (int row = warp; row < kTile; row += kWarps) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kChannels / 16];
    for (auto& f : acc) wmma::fill_fragment(f, 0.f);
    for (int tap = 0; tap < 9; ++tap) {
      const T* a_rows = s_t + ((row + tap / 3) * kHalo + tap % 3) * kLdT;
      for (int kb = 0; kb < kChannels / 16; ++kb) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::load_matrix_sync(a, a_rows + kb * 16, kLdT);
        for (int cb = 0; cb < kChannels / 16; ++cb) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
          wmma::load_matrix_sync(b, s_w_conv + (tap * kChannels + kb * 16) * kLdWeights + cb * 16, kLdWeights);
          wmma::mma_sync(acc[cb], a, b, acc[cb]);
        }
      }
    }
    for (int cb = 0; cb < kChannels / 16; ++cb)
      wmma::store_matrix_sync(s_acc + cb * 16, acc[cb], kLdAcc, wmma::mem_row_major);
    __syncwarp();
    const int gy = tile.y0 + row;
    for (int i = lane; i < 16 * kChannels; i += 32) {
      const int col = i / kChannels, k = i % kChannels, gx = tile.x0 + col;
      if (k < c && gy < h && gx < w) {
        const float residual = to_float(s_x[((row + 1) * kHalo + col + 1) * kLdX + k]);
        const float conv = s_acc[col * kLdAcc + k] + s_b_conv[k];
        y_n[k * ys.c + gy * ys.h + gx * ys.w] = from_float<T>(residual + res_scale * conv);
      }
    }
    __syncwarp();
  }
}

// fp32: CUDA-core FMAs, one thread per haloed pixel (stage 1) and per output pixel (stage 2).
__global__ void __launch_bounds__(kThreads) wdsr_b_block_fma(
    const float* __restrict__ x, Strides xs, const float* __restrict__ w_expand, const float* __restrict__ b_expand,
    const float* __restrict__ w_reduce, const float* __restrict__ b_reduce, const float* __restrict__ w_conv,
    const float* __restrict__ b_conv, float* __restrict__ y, Strides ys, int c, int h, int w, int wide, int low_rank,
    float res_scale) {
  __shared__ float s_t[kHaloPixels * kLdT32];
  const TileOrigin tile = block_tile_origin(blockIdx.x, h, w);
  const float* x_n = x + static_cast<int64_t>(tile.n) * xs.n;
  for (int p = threadIdx.x; p < kHaloPixels; p += kThreads) {
    int gy, gx;
    halo_pixel(tile, p, gy, gx);
    const bool inside = gy >= 0 && gy < h && gx >= 0 && gx < w;
    float t[kMaxLowRank];
    for (int l = 0; l < kMaxLowRank; ++l) t[l] = 0.f;
    if (inside) {
      float xv[kMaxFeats];
      for (int k = 0; k < kMaxFeats; ++k) xv[k] = k < c ? x_n[k * xs.c + gy * xs.h + gx * xs.w] : 0.f;
      for (int e = 0; e < wide; ++e) {
        float a = b_expand[e];
#pragma unroll
        for (int k = 0; k < kMaxFeats; ++k)
          if (k < c) a = fmaf(xv[k], w_expand[e * c + k], a);
        a = fmaxf(a, 0.f);
#pragma unroll
        for (int l = 0; l < kMaxLowRank; ++l)
          if (l < low_rank) t[l] = fmaf(a, w_reduce[l * wide + e], t[l]);
      }
      for (int l = 0; l < kMaxLowRank; ++l) t[l] += l < low_rank ? b_reduce[l] : 0.f;
    }
    for (int l = 0; l < kMaxLowRank; ++l) s_t[p * kLdT32 + l] = t[l];
  }
  __syncthreads();
  const int row = threadIdx.x / kTile, col = threadIdx.x % kTile;
  const int gy = tile.y0 + row, gx = tile.x0 + col;
  if (gy >= h || gx >= w) return;
  float out[kMaxFeats];
  for (int k = 0; k < kMaxFeats; ++k) out[k] = k < c ? b_conv[k] : 0.f;
  for (int tap = 0; tap < 9; ++tap) {
    const float* t = s_t + ((row + tap / 3) * kHalo + col + tap % 3) * kLdT32;
    for (int l = 0; l < low_rank; ++l) {
      const float tl = t[l];
#pragma unroll
      for (int k = 0; k < kMaxFeats; ++k)
        if (k < c) out[k] = fmaf(tl, w_conv[(k * low_rank + l) * 9 + tap], out[k]);
    }
  }
  float* y_n = y + static_cast<int64_t>(tile.n) * ys.n;
#pragma unroll
  for (int k = 0; k < kMaxFeats; ++k) {
    if (k < c) y_n[k * ys.c + gy * ys.h + gx * ys.w] = x_n[k * xs.c + gy * xs.h + gx * xs.w] + res_scale * out[k];
  }
}

// The dynamic shared memory the fused block may need at most (the widest expansion), for T.
template <typename T>
int max_shared_bytes() {
  return MmaSmem<T>{round_up(kMaxWide, kChunk)}.bytes();
}

// The kernels take typed __restrict__ pointers (loads of read-only data then use the non-coherent cache path),
// unpacked from the parameter struct here, in one place per kernel.
template <typename T>
cudaError_t launch_mma(const WdsrBBlockParams& p, const dim3& grid, cudaStream_t stream) {
  cudaError_t err = raise_shared_memory_limit(wdsr_b_block_mma<T>, max_shared_bytes<T>());
  if (err != cudaSuccess) return err;
  const int bytes = MmaSmem<T>{round_up(p.wide, kChunk)}.bytes();
  wdsr_b_block_mma<T><<<grid, kThreads, bytes, stream>>>(
      static_cast<const T*>(p.x), p.x_strides, static_cast<const T*>(p.w_expand), static_cast<const T*>(p.b_expand),
      static_cast<const T*>(p.w_reduce), static_cast<const T*>(p.b_reduce), static_cast<const T*>(p.w_conv),
      static_cast<const T*>(p.b_conv), static_cast<T*>(p.y), p.y_strides, p.c, p.h, p.w, p.wide, p.low_rank,
      p.res_scale);
  return cudaGetLastError();
}

cudaError_t launch_fma(const WdsrBBlockParams& p, const dim3& grid, cudaStream_t stream) {
  wdsr_b_block_fma<<<grid, kThreads, 0, stream>>>(
      static_cast<const float*>(p.x), p.x_strides, static_cast<const float*>(p.w_expand),
      static_cast<const float*>(p.b_expand), static_cast<const float*>(p.w_reduce),
      static_cast<const float*>(p.b_reduce), static_cast<const float*>(p.w_conv), static_cast<const float*>(p.b_conv),
      static_cast<float*>(p.y), p.y_strides, p.c, p.h, p.w, p.wide, p.low_rank, p.res_scale);
  return cudaGetLastError();
}

}  // namespace

int wdsr_b_block_shared_bytes(DType dtype, int wide, BlockKernel kernel) {
  if (kernel == BlockKernel::Persistent) return wdsr_b_block_persistent_shared_bytes(dtype, wide);
  switch (dtype) {
    case DType::Float16: return MmaSmem<__half>{round_up(wide, kChunk)}.bytes();
    case DType::BFloat16: return MmaSmem<__nv_bfloat16>{round_up(wide, kChunk)}.bytes();
    case DType::Float32: return 0;
  }
  return 0;
}

cudaError_t launch_wdsr_b_block(const WdsrBBlockParams& params, cudaStream_t stream) {
  const long long ctas = block_grid_x(params.n, params.h, params.w);
  if (ctas < 1 || ctas > kMaxGridX) return cudaErrorInvalidConfiguration;
  if (params.kernel == BlockKernel::Persistent && params.dtype != DType::Float32)
    return launch_wdsr_b_block_persistent(params, stream);  // fp32: the FMA kernel below, whichever is named
  const dim3 grid(static_cast<unsigned>(ctas));
  switch (params.dtype) {
    case DType::Float16: return launch_mma<__half>(params, grid, stream);
    case DType::BFloat16: return launch_mma<__nv_bfloat16>(params, grid, stream);
    case DType::Float32: return launch_fma(params, grid, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace wdsr
