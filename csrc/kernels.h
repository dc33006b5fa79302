// The launch API between the thin torch binding (ops.cpp) and the CUDA kernels (*.cu), which include only
// CUDA headers so that they build quickly. Tensors are passed as raw pointers with element strides.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace wdsr {

enum class DType { Float32, Float16, BFloat16 };

struct Strides {  // element strides of a logical (N, C, H, W) tensor
  int64_t n, c, h, w;
};

// Limits of the fused WDSR-B kernel (its weights and tiles live in shared memory).
constexpr int kMaxFeats = 32;     // n_feats
constexpr int kMaxWide = 256;     // n_feats * expansion
constexpr int kMaxLowRank = 32;   // int(n_feats * low_rank)

// y = x + res_scale * conv3x3(conv1x1_reduce(relu(conv1x1_expand(x)))); weights OIHW contiguous, in `dtype`.
cudaError_t launch_wdsr_b_block(DType dtype, const void* x, Strides xs, const void* w_expand, const void* b_expand,
                                const void* w_reduce, const void* b_reduce, const void* w_conv, const void* b_conv,
                                void* y, Strides ys, int n, int c, int h, int w, int wide, int low_rank,
                                float res_scale, cudaStream_t stream);

// out (N, 3, s*H, s*W) contiguous = shuffle(conv3x3(features) + conv5x5((image - mean) / norm_scale))
//                                   * norm_scale + mean
cudaError_t launch_tail_shuffle(DType dtype, const void* features, Strides fs, const void* image, Strides is,
                                const void* w_tail, const void* b_tail, const void* w_skip, const void* b_skip,
                                const float* mean, float norm_scale, int scale, void* out, int n, int c, int h,
                                int w, cudaStream_t stream);

}  // namespace wdsr
