// The launch API between the thin torch binding (ops.cpp) and the CUDA kernels (*.cu), which include only
// CUDA headers so that they build quickly. Each kernel takes one parameter struct, filled field by field by name
// (ops.cpp: one function per op), so that no two same-typed arguments can be swapped silently. Tensors are raw
// pointers with element strides.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace wdsr {

enum class DType : int { Float32, Float16, BFloat16 };

// Which fused WDSR-B block kernel runs fp16 / bf16 (fp32 has one, the CUDA-core kernel, for both):
// Tiled: one CTA per 16 x 16 output tile, each staging every weight (measured on an H100: 0.752 ms per block at
// 960x540 fp16); Persistent: one CTA per SM looping over tiles, weights staged once, the next tile's input copied
// asynchronously during this one's compute (unmeasured). wdsr_b_block_persistent.cu says what to expect.
enum class BlockKernel : int { Tiled, Persistent };

struct Strides {  // element strides of a logical (N, C, H, W) tensor
  int64_t n, c, h, w;
};

// Limits of the fused WDSR-B kernel (its weights and tiles live in shared memory); module.cpp reports them to Python.
constexpr int kMaxFeats = 32;     // n_feats
constexpr int kMaxWide = 256;     // n_feats * expansion
constexpr int kMaxLowRank = 32;   // int(n_feats * low_rank)
// The oldest GPUs the kernels run on: bf16 tensor cores (WMMA) need compute capability 8.0.
constexpr int kMinComputeCapability = 80;

// y = x + res_scale * conv3x3(conv1x1_reduce(relu(conv1x1_expand(x)))); weights OIHW contiguous, in `dtype`.
struct WdsrBBlockParams {
  DType dtype;
  BlockKernel kernel;
  const void* x;          // (n, c, h, w), strides x_strides
  Strides x_strides;
  const void* w_expand;   // (wide, c)
  const void* b_expand;   // (wide)
  const void* w_reduce;   // (low_rank, wide)
  const void* b_reduce;   // (low_rank)
  const void* w_conv;     // (c, low_rank, 3, 3)
  const void* b_conv;     // (c)
  void* y;                // (n, c, h, w), strides y_strides
  Strides y_strides;
  int n, c, h, w, wide, low_rank;
  float res_scale;
};
cudaError_t launch_wdsr_b_block(const WdsrBBlockParams& params, cudaStream_t stream);

// Dynamic shared memory (bytes) one CTA of the fused block's `kernel` asks for, for `dtype` and expansion width
// `wide`: 0 for fp32 (its CTA uses a static array under 48 KB). ops.cpp checks it against the device before a
// launch; module.cpp reports it to Python, which decides with it whether a GPU can run the block.
int wdsr_b_block_shared_bytes(DType dtype, int wide, BlockKernel kernel);

// out (N, 3, s*H, s*W) contiguous = shuffle(conv3x3(features) + conv5x5((image - mean) / norm_scale))
//                                   * norm_scale + mean
struct TailShuffleParams {
  DType dtype;
  const void* features;   // (n, c, h, w), strides feature_strides
  Strides feature_strides;
  const void* image;      // (n, 3, h, w), strides image_strides
  Strides image_strides;
  const void* w_tail;     // (3 s^2, c, 3, 3)
  const void* b_tail;     // (3 s^2)
  const void* w_skip;     // (3 s^2, 3, 5, 5)
  const void* b_skip;     // (3 s^2)
  const float* mean;      // (3), contiguous fp32
  float norm_scale;
  int scale;              // s: 2, 3 or 4
  void* out;              // (n, 3, s*h, s*w), contiguous
  int n, c, h, w;
};
cudaError_t launch_tail_shuffle(const TailShuffleParams& params, cudaStream_t stream);

}  // namespace wdsr
