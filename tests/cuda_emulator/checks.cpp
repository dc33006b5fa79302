// csrc/common/checks.h, the input validation of torch.ops.wdsr_cuda.*, built into a CPU library of torch ops with
// the same schemas (torch.ops.wdsr_cuda_checks.*, by tests/cuda_emulator/__init__.py's build_checks), so that the
// suite runs the CUDA ops' checks without a GPU: each op validates its CPU inputs exactly as csrc/cuda/ops.cpp
// validates CUDA ones, then returns an uninitialised output of the right shape (no kernel runs).
#include <torch/library.h>

#include "common/checks.h"
#include "common/op_schemas.h"

namespace {

// The CUDA kernels' rules, on CPU tensors.
constexpr wdsr::Target kTarget{c10::DeviceType::CPU, true, true};

at::Tensor features_like(const at::Tensor& x, int64_t channels) {
  return at::empty({x.size(0), channels, x.size(2), x.size(3)},
                   x.options().memory_format(at::MemoryFormat::ChannelsLast));
}

at::Tensor head_conv(const at::Tensor& image, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& mean,
                     double) {
  wdsr::check_head_conv(image, weight, bias, mean, kTarget);
  return features_like(image, weight.size(0));
}

at::Tensor wdsr_a_block(const at::Tensor& x, const at::Tensor& w_expand, const at::Tensor& b_expand,
                        const at::Tensor& w_reduce, const at::Tensor& b_reduce, double) {
  wdsr::check_wdsr_a_block(x, w_expand, b_expand, w_reduce, b_reduce, kTarget);
  return features_like(x, x.size(1));
}

at::Tensor wdsr_b_block(const at::Tensor& x, const at::Tensor& w_expand, const at::Tensor& b_expand,
                        const at::Tensor& w_reduce, const at::Tensor& b_reduce, const at::Tensor& w_conv,
                        const at::Tensor& b_conv, double) {
  wdsr::check_wdsr_b_block(x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv, kTarget);
  return features_like(x, x.size(1));
}

at::Tensor tail_shuffle(const at::Tensor& features, const at::Tensor& image, const at::Tensor& w_tail,
                        const at::Tensor& b_tail, const at::Tensor& w_skip, const at::Tensor& b_skip,
                        const at::Tensor& mean, double, int64_t scale) {
  wdsr::check_tail_shuffle(features, image, w_tail, b_tail, w_skip, b_skip, mean, scale, kTarget);
  return at::empty({features.size(0), 3, features.size(2) * scale, features.size(3) * scale}, features.options());
}

}  // namespace

TORCH_LIBRARY(wdsr_cuda_checks, m) {
  wdsr::define_ops(m);
}

// For every device, so that an input on another device than the CPU reaches the checks too.
TORCH_LIBRARY_IMPL(wdsr_cuda_checks, CompositeExplicitAutograd, m) {
  m.impl("head_conv", &head_conv);
  m.impl("wdsr_a_block", &wdsr_a_block);
  m.impl("wdsr_b_block", &wdsr_b_block);
  m.impl("tail_shuffle", &tail_shuffle);
}
