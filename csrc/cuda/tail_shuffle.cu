// The tail: out = PixelShuffle(conv3x3_tail(features) + conv5x5_skip((image - mean) / norm_scale))
//                 * norm_scale + mean, written straight into the (N, 3, s*H, s*W) output.
//
// One thread per LR pixel holds the 3*s^2 sums in registers (SCALE is a template parameter, so they stay
// there): the 9 tail taps over the features, the 25 skip taps over the normalised image (zero padding applies
// to the normalised values, as in the reference), then de-normalises and stores channel k = colour*s^2 + i*s + j
// to out[n, colour, y*s + i, x*s + j]: no separate shuffle or add pass. Weights are read through the L1 cache
// (every thread of a warp reads the same weight: a broadcast).
#include "kernel_common.cuh"
#include "launch_grid.cuh"

namespace wdsr {
namespace {

constexpr int kThreads = kTailThreads;  // 128

template <typename T, int SCALE>
__global__ void __launch_bounds__(kThreads) tail_shuffle_kernel(
    const T* __restrict__ features, Strides fs, const T* __restrict__ image, Strides is, const T* __restrict__ w_tail,
    const T* __restrict__ b_tail, const T* __restrict__ w_skip, const T* __restrict__ b_skip,
    const float* __restrict__ mean, float norm_scale, T* __restrict__ out, int c, int h, int w) {
  constexpr int kOut = 3 * SCALE * SCALE;
  const PixelIndex index = tail_pixel(blockIdx.x, threadIdx.x, h, w);
  const int n = index.n, pixel = index.pixel;
  if (pixel >= h * w) return;
  const int py = pixel / w, px = pixel % w;
  float acc[kOut];
#pragma unroll
  for (int o = 0; o < kOut; ++o) acc[o] = to_float(b_tail[o]) + to_float(b_skip[o]);

  const T* f_n = features + static_cast<int64_t>(n) * fs.n;
  for (int tap = 0; tap < 9; ++tap) {
    const int y = py + tap / 3 - 1, x = px + tap % 3 - 1;
    if (y < 0 || y >= h || x < 0 || x >= w) continue;
    for (int k = 0; k < c; ++k) {
      const float f = to_float(f_n[k * fs.c + y * fs.h + x * fs.w]);
#pragma unroll
      for (int o = 0; o < kOut; ++o) acc[o] = fmaf(f, to_float(w_tail[(o * c + k) * 9 + tap]), acc[o]);
    }
  }
  const T* image_n = image + static_cast<int64_t>(n) * is.n;
  for (int tap = 0; tap < 25; ++tap) {
    const int y = py + tap / 5 - 2, x = px + tap % 5 - 2;
    if (y < 0 || y >= h || x < 0 || x >= w) continue;
    for (int colour = 0; colour < 3; ++colour) {
      // normalised in fp32, then rounded to T as the reference's normalised image is
      const float v = to_float(from_float<T>((to_float(image_n[colour * is.c + y * is.h + x * is.w]) - mean[colour]) /
                                             norm_scale));
#pragma unroll
      for (int o = 0; o < kOut; ++o) acc[o] = fmaf(v, to_float(w_skip[(o * 3 + colour) * 25 + tap]), acc[o]);
    }
  }

  const int out_h = h * SCALE, out_w = w * SCALE;
  T* out_n = out + static_cast<int64_t>(n) * 3 * out_h * out_w;
#pragma unroll
  for (int o = 0; o < kOut; ++o) {
    const int colour = o / (SCALE * SCALE), i = o % (SCALE * SCALE) / SCALE, j = o % SCALE;
    out_n[(static_cast<int64_t>(colour) * out_h + py * SCALE + i) * out_w + px * SCALE + j] =
        from_float<T>(acc[o] * norm_scale + mean[colour]);
  }
}

// The kernel takes typed __restrict__ pointers (loads of read-only data then use the non-coherent cache path),
// unpacked from the parameter struct here, in one place.
template <typename T, int SCALE>
void launch_scale(const TailShuffleParams& p, const dim3& grid, cudaStream_t stream) {
  tail_shuffle_kernel<T, SCALE><<<grid, kThreads, 0, stream>>>(
      static_cast<const T*>(p.features), p.feature_strides, static_cast<const T*>(p.image), p.image_strides,
      static_cast<const T*>(p.w_tail), static_cast<const T*>(p.b_tail), static_cast<const T*>(p.w_skip),
      static_cast<const T*>(p.b_skip), p.mean, p.norm_scale, static_cast<T*>(p.out), p.c, p.h, p.w);
}

template <typename T>
cudaError_t launch(const TailShuffleParams& params, cudaStream_t stream) {
  const long long ctas = tail_grid_x(params.n, params.h, params.w);
  if (ctas < 1 || ctas > kMaxGridX) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(ctas));
  switch (params.scale) {
    case 2: launch_scale<T, 2>(params, grid, stream); break;
    case 3: launch_scale<T, 3>(params, grid, stream); break;
    case 4: launch_scale<T, 4>(params, grid, stream); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_tail_shuffle(const TailShuffleParams& params, cudaStream_t stream) {
  switch (params.dtype) {
    case DType::Float32: return launch<float>(params, stream);
    case DType::Float16: return launch<__half>(params, stream);
    case DType::BFloat16: return launch<__nv_bfloat16>(params, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace wdsr
