// Input validation of the torch.ops.wdsr_cuda.* and torch.ops.wdsr_cpu.* ops, with the exception types and messages
// of the other backends (wdsr_fast/ops/triton/common.py): ValueError for shapes and values, TypeError for dtypes,
// dtypes named as Python prints them (torch.float16). Plain ATen, no CUDA: tests/cuda_emulator/checks.cpp builds the
// CUDA ops' checks into a CPU library, so that the suite runs them without a GPU (a Target names the device the
// inputs must be on and what the kernels accept).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>


namespace wdsr {

// What a backend's kernels accept.
struct Target {
  c10::DeviceType device;  // the device of every input
  bool float16;            // besides float32 and bfloat16: the CUDA kernels run float16 too, the CPU ones do not
  bool int32_indexing;     // the CUDA kernels index with 32-bit ints: under 2**31 elements a tensor
};
constexpr Target kCudaTarget{c10::DeviceType::CUDA, true, true};
constexpr Target kCpuTarget{c10::DeviceType::CPU, false, false};

inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "torch.float32";
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kDouble: return "torch.float64";
    case at::kByte: return "torch.uint8";
    case at::kChar: return "torch.int8";
    case at::kShort: return "torch.int16";
    case at::kInt: return "torch.int32";
    case at::kLong: return "torch.int64";
    case at::kBool: return "torch.bool";
    default: return std::string("torch.") + c10::toString(t);
  }
}

inline void check_dtype(const char* op, const char* name, const at::Tensor& t, const Target& target) {
  const at::ScalarType dtype = t.scalar_type();
  if (!target.float16) {
    TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kBFloat16, op, ": ", name, ": expected float32 or bfloat16 "
                     "(the CPU kernels compute in these), got ", dtype_name(dtype));
    return;
  }
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op, ": ", name,
                   ": expected float32, float16 or bfloat16, got ", dtype_name(dtype));
}

inline void check_features(const char* op, const char* name, const at::Tensor& t, const Target& target) {
  TORCH_CHECK_VALUE(t.dim() == 4, op, ": ", name, ": expected a 4-D (N, C, H, W) tensor, got ", t.sizes());
  check_dtype(op, name, t, target);
  TORCH_CHECK_VALUE(t.numel() > 0, op, ": ", name, ": empty tensor ", t.sizes());
  if (target.int32_indexing) {  // fewer elements than 2**31, so every side too
    TORCH_CHECK_VALUE(t.numel() < (int64_t(1) << 31), op, ": ", name, ": ", t.sizes(),
                      " has 2**31 or more elements; upscale it in tiles (wdsr_fast.inference.upscaler.upscale_tensor)");
  } else {
    for (int64_t side : t.sizes())
      TORCH_CHECK_VALUE(side < (int64_t(1) << 31), op, ": ", name, ": ", t.sizes(), " has a side of 2**31 or more");
  }
  TORCH_CHECK_VALUE(t.device().type() == target.device, op, ": ", name, ": expected a tensor on ",
                    c10::DeviceTypeName(target.device, true), ", got one on ", t.device());
}

// A weight (or bias) of exactly `shape`, in the activation dtype and on its device.
inline void check_weight(const char* op, const char* name, const at::Tensor& w, at::IntArrayRef shape,
                         const at::Tensor& x) {
  TORCH_CHECK_VALUE(w.sizes() == shape, op, ": ", name, ": expected shape ", shape, ", got ", w.sizes());
  TORCH_CHECK_TYPE(w.scalar_type() == x.scalar_type() && w.device() == x.device(), op, ": ", name, ": expected ",
                   dtype_name(x.scalar_type()), " on ", x.device(), " like the input, got ",
                   dtype_name(w.scalar_type()), " on ", w.device());
}

inline void check_mean(const char* op, const at::Tensor& mean, const at::Tensor& x) {
  TORCH_CHECK_VALUE(mean.sizes() == at::IntArrayRef({3}) && mean.scalar_type() == at::kFloat &&
                        mean.device() == x.device(),
                    op, ": mean must be a (3,) float32 tensor on ", x.device(), ", got ", mean.sizes(), " ",
                    dtype_name(mean.scalar_type()), " on ", mean.device());
}

inline void check_head_conv(const at::Tensor& image, const at::Tensor& weight, const at::Tensor& bias,
                            const at::Tensor& mean, const Target& target) {
  check_features("head_conv", "image", image, target);
  TORCH_CHECK_VALUE(image.size(1) == 3, "head_conv: expected an RGB image (N, 3, H, W), got ", image.sizes());
  TORCH_CHECK_VALUE(weight.dim() == 4, "head_conv: weight: expected (n_feats, 3, 3, 3), got ", weight.sizes());
  check_weight("head_conv", "weight", weight, {weight.size(0), 3, 3, 3}, image);
  check_weight("head_conv", "bias", bias, {weight.size(0)}, image);
  check_mean("head_conv", mean, image);
}

inline void check_wdsr_a_block(const at::Tensor& x, const at::Tensor& w_expand, const at::Tensor& b_expand,
                               const at::Tensor& w_reduce, const at::Tensor& b_reduce, const Target& target) {
  check_features("wdsr_a_block", "x", x, target);
  TORCH_CHECK_VALUE(w_expand.dim() == 4, "wdsr_a_block: w_expand: expected (wide, C, 3, 3), got ", w_expand.sizes());
  const int64_t c = x.size(1), wide = w_expand.size(0);
  check_weight("wdsr_a_block", "w_expand", w_expand, {wide, c, 3, 3}, x);
  check_weight("wdsr_a_block", "b_expand", b_expand, {wide}, x);
  check_weight("wdsr_a_block", "w_reduce", w_reduce, {c, wide, 3, 3}, x);
  check_weight("wdsr_a_block", "b_reduce", b_reduce, {c}, x);
}

inline void check_wdsr_b_block(const at::Tensor& x, const at::Tensor& w_expand, const at::Tensor& b_expand,
                               const at::Tensor& w_reduce, const at::Tensor& b_reduce, const at::Tensor& w_conv,
                               const at::Tensor& b_conv, const Target& target) {
  check_features("wdsr_b_block", "x", x, target);
  TORCH_CHECK_VALUE(w_expand.dim() == 4 && w_reduce.dim() == 4, "wdsr_b_block: w_expand and w_reduce: expected "
                    "(wide, C, 1, 1) and (low_rank, wide, 1, 1), got ", w_expand.sizes(), " and ", w_reduce.sizes());
  const int64_t c = x.size(1), wide = w_expand.size(0), low_rank = w_reduce.size(0);
  check_weight("wdsr_b_block", "w_expand", w_expand, {wide, c, 1, 1}, x);
  check_weight("wdsr_b_block", "b_expand", b_expand, {wide}, x);
  check_weight("wdsr_b_block", "w_reduce", w_reduce, {low_rank, wide, 1, 1}, x);
  check_weight("wdsr_b_block", "b_reduce", b_reduce, {low_rank}, x);
  check_weight("wdsr_b_block", "w_conv", w_conv, {c, low_rank, 3, 3}, x);
  check_weight("wdsr_b_block", "b_conv", b_conv, {c}, x);
}

inline void check_tail_shuffle(const at::Tensor& features, const at::Tensor& image, const at::Tensor& w_tail,
                               const at::Tensor& b_tail, const at::Tensor& w_skip, const at::Tensor& b_skip,
                               const at::Tensor& mean, int64_t scale, const Target& target) {
  check_features("tail_shuffle", "features", features, target);
  check_features("tail_shuffle", "image", image, target);
  TORCH_CHECK_VALUE(scale >= 2 && scale <= 4, "tail_shuffle: scale must be 2, 3 or 4, got ", scale);
  const int64_t n = features.size(0), c = features.size(1), h = features.size(2), w = features.size(3);
  TORCH_CHECK_VALUE(image.sizes() == at::IntArrayRef({n, 3, h, w}) && image.scalar_type() == features.scalar_type() &&
                        image.device() == features.device(),
                    "tail_shuffle: image must be (", n, ", 3, ", h, ", ", w, ") ", dtype_name(features.scalar_type()),
                    " on ", features.device(), " like the features, got ", image.sizes(), " ",
                    dtype_name(image.scalar_type()), " on ", image.device());
  const int64_t out_feats = 3 * scale * scale;
  check_weight("tail_shuffle", "w_tail", w_tail, {out_feats, c, 3, 3}, features);
  check_weight("tail_shuffle", "b_tail", b_tail, {out_feats}, features);
  check_weight("tail_shuffle", "w_skip", w_skip, {out_feats, 3, 5, 5}, features);
  check_weight("tail_shuffle", "b_skip", b_skip, {out_feats}, features);
  check_mean("tail_shuffle", mean, features);
  TORCH_CHECK_VALUE(!target.int32_indexing || n * 3 * h * scale * w * scale < (int64_t(1) << 31),
                    "tail_shuffle: output (", n, ", 3, ", h * scale, ", ", w * scale,
                    ") has 2**31 or more elements; upscale in tiles");
}

}  // namespace wdsr
