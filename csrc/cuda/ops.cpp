// torch.ops.wdsr_cuda.*: the op schemas (../common/op_schemas.h), input validation (../common/checks.h), output
// allocation (../common/tensors.h) and launches on the current stream. The only file that includes torch's CUDA
// headers. head_conv and wdsr_a_block run through ATen's convolution (cuDNN); wdsr_b_block and tail_shuffle are
// ours, each launched with a parameter struct filled field by field by one function below. wdsr_b_block runs the
// fused block's tiled kernel; wdsr_b_block_persistent, the same op on the persistent kernel (kernels.h,
// BlockKernel), is registered beside it: wdsr_fast/ops/cuda_backend.py calls the one $WDSR_FAST_CUDA_BLOCK names.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/checks.h"
#include "../common/op_schemas.h"
#include "../common/tensors.h"
#include "kernels.h"

namespace {

using wdsr::channels_last;
using wdsr::new_output;

// The kernels' dtype of a tensor that check_features has accepted.
wdsr::DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kHalf: return wdsr::DType::Float16;
    case at::kBFloat16: return wdsr::DType::BFloat16;
    default: return wdsr::DType::Float32;
  }
}

wdsr::Strides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(err));
}

// Whether the fused block takes these widths (its weights and tiles live in shared memory), and whether this GPU
// can run it (compute capability; the shared memory its fp16/bf16 CTA asks for against the device's opt-in limit
// per block). wdsr_fast/ops/cuda_backend.py checks the same before choosing this backend.
void check_block_fits(const at::Tensor& x, int64_t wide, int64_t low_rank, wdsr::BlockKernel kernel) {
  const int64_t c = x.size(1);
  TORCH_CHECK(c <= wdsr::kMaxFeats && wide <= wdsr::kMaxWide && low_rank <= wdsr::kMaxLowRank,
              "wdsr_b_block: the CUDA kernel supports n_feats <= ", wdsr::kMaxFeats, ", expansion width <= ",
              wdsr::kMaxWide, " and low-rank width <= ", wdsr::kMaxLowRank, "; got ", c, ", ", wide, ", ", low_rank,
              " (use backend='triton')");
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(x.device().index());
  TORCH_CHECK(prop->major * 10 + prop->minor >= wdsr::kMinComputeCapability, "wdsr_b_block: the CUDA kernels need "
              "compute capability ", wdsr::kMinComputeCapability / 10, ".", wdsr::kMinComputeCapability % 10,
              " or newer; ", prop->name, " is ", prop->major, ".", prop->minor, " (use backend='triton')");
  const bool persistent = kernel == wdsr::BlockKernel::Persistent;
  const int need = wdsr::wdsr_b_block_shared_bytes(dtype_of(x), static_cast<int>(wide), kernel);
  TORCH_CHECK(static_cast<size_t>(need) <= prop->sharedMemPerBlockOptin, "wdsr_b_block: the fused CUDA block ",
              persistent ? "(persistent kernel) " : "", "needs ", need, " bytes of shared memory per block in ",
              wdsr::dtype_name(x.scalar_type()), " at expansion width ", wide, "; ", prop->name, " allows ",
              prop->sharedMemPerBlockOptin,
              persistent ? " (use WDSR_FAST_CUDA_BLOCK=tiled or backend='triton')" : " (use backend='triton')");
}

at::Tensor normalise(const at::Tensor& image, const at::Tensor& mean, double norm_scale) {
  return ((image.to(at::kFloat) - mean.view({1, 3, 1, 1})) / norm_scale).to(image.scalar_type());
}

// The launch parameters of one wdsr_b_block call on `kernel`; the weights must be contiguous (OIHW).
wdsr::WdsrBBlockParams wdsr_b_block_params(wdsr::BlockKernel kernel, const at::Tensor& x,
                                           const at::Tensor& w_expand, const at::Tensor& b_expand,
                                           const at::Tensor& w_reduce, const at::Tensor& b_reduce,
                                           const at::Tensor& w_conv, const at::Tensor& b_conv, const at::Tensor& y,
                                           double res_scale) {
  for (const at::Tensor* t : {&w_expand, &b_expand, &w_reduce, &b_reduce, &w_conv, &b_conv})
    TORCH_INTERNAL_ASSERT(t->is_contiguous());
  wdsr::WdsrBBlockParams p{};
  p.dtype = dtype_of(x);
  p.kernel = kernel;
  p.x = x.data_ptr();
  p.x_strides = strides_of(x);
  p.w_expand = w_expand.data_ptr();
  p.b_expand = b_expand.data_ptr();
  p.w_reduce = w_reduce.data_ptr();
  p.b_reduce = b_reduce.data_ptr();
  p.w_conv = w_conv.data_ptr();
  p.b_conv = b_conv.data_ptr();
  p.y = y.data_ptr();
  p.y_strides = strides_of(y);
  p.n = static_cast<int>(x.size(0));
  p.c = static_cast<int>(x.size(1));
  p.h = static_cast<int>(x.size(2));
  p.w = static_cast<int>(x.size(3));
  p.wide = static_cast<int>(w_expand.size(0));
  p.low_rank = static_cast<int>(w_reduce.size(0));
  p.res_scale = static_cast<float>(res_scale);
  return p;
}

// The launch parameters of one tail_shuffle call; the weights and mean must be contiguous.
wdsr::TailShuffleParams tail_shuffle_params(const at::Tensor& features, const at::Tensor& image,
                                            const at::Tensor& w_tail, const at::Tensor& b_tail,
                                            const at::Tensor& w_skip, const at::Tensor& b_skip,
                                            const at::Tensor& mean, double norm_scale, int64_t scale,
                                            const at::Tensor& out) {
  for (const at::Tensor* t : {&w_tail, &b_tail, &w_skip, &b_skip, &mean}) TORCH_INTERNAL_ASSERT(t->is_contiguous());
  wdsr::TailShuffleParams p{};
  p.dtype = dtype_of(features);
  p.features = features.data_ptr();
  p.feature_strides = strides_of(features);
  p.image = image.data_ptr();
  p.image_strides = strides_of(image);
  p.w_tail = w_tail.data_ptr();
  p.b_tail = b_tail.data_ptr();
  p.w_skip = w_skip.data_ptr();
  p.b_skip = b_skip.data_ptr();
  p.mean = mean.data_ptr<float>();
  p.norm_scale = static_cast<float>(norm_scale);
  p.scale = static_cast<int>(scale);
  p.out = out.data_ptr();
  p.n = static_cast<int>(features.size(0));
  p.c = static_cast<int>(features.size(1));
  p.h = static_cast<int>(features.size(2));
  p.w = static_cast<int>(features.size(3));
  return p;
}

at::Tensor head_conv(const at::Tensor& image, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& mean,
                     double norm_scale) {
  wdsr::check_head_conv(image, weight, bias, mean, wdsr::kCudaTarget);
  const c10::cuda::CUDAGuard guard(image.device());
  return channels_last(at::conv2d(channels_last(normalise(image, mean, norm_scale)), weight, bias, 1, 1));
}

at::Tensor wdsr_a_block(const at::Tensor& x, const at::Tensor& w_expand, const at::Tensor& b_expand,
                        const at::Tensor& w_reduce, const at::Tensor& b_reduce, double res_scale) {
  wdsr::check_wdsr_a_block(x, w_expand, b_expand, w_reduce, b_reduce, wdsr::kCudaTarget);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor in = channels_last(x);
  const at::Tensor expanded = at::relu(at::conv2d(in, w_expand, b_expand, 1, 1));
  return channels_last(at::add(in, at::conv2d(expanded, w_reduce, b_reduce, 1, 1), res_scale));
}

at::Tensor run_wdsr_b_block(wdsr::BlockKernel kernel, const at::Tensor& x, const at::Tensor& w_expand,
                            const at::Tensor& b_expand, const at::Tensor& w_reduce, const at::Tensor& b_reduce,
                            const at::Tensor& w_conv, const at::Tensor& b_conv, double res_scale) {
  wdsr::check_wdsr_b_block(x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv, wdsr::kCudaTarget);
  const c10::cuda::CUDAGuard guard(x.device());
  check_block_fits(x, w_expand.size(0), w_reduce.size(0), kernel);
  at::Tensor y = new_output(x.sizes(), x.options().memory_format(at::MemoryFormat::ChannelsLast));
  // One expression: the contiguous copies live until the launch is queued (stream order covers the rest).
  check_launch("wdsr_b_block", wdsr::launch_wdsr_b_block(
      wdsr_b_block_params(kernel, x, w_expand.contiguous(), b_expand.contiguous(), w_reduce.contiguous(),
                          b_reduce.contiguous(), w_conv.contiguous(), b_conv.contiguous(), y, res_scale),
      at::cuda::getCurrentCUDAStream()));
  return y;
}

at::Tensor wdsr_b_block(const at::Tensor& x, const at::Tensor& w_expand, const at::Tensor& b_expand,
                        const at::Tensor& w_reduce, const at::Tensor& b_reduce, const at::Tensor& w_conv,
                        const at::Tensor& b_conv, double res_scale) {
  return run_wdsr_b_block(wdsr::BlockKernel::Tiled, x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv,
                          res_scale);
}

at::Tensor wdsr_b_block_persistent(const at::Tensor& x, const at::Tensor& w_expand, const at::Tensor& b_expand,
                                   const at::Tensor& w_reduce, const at::Tensor& b_reduce, const at::Tensor& w_conv,
                                   const at::Tensor& b_conv, double res_scale) {
  return run_wdsr_b_block(wdsr::BlockKernel::Persistent, x, w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv,
                          res_scale);
}

at::Tensor tail_shuffle(const at::Tensor& features, const at::Tensor& image, const at::Tensor& w_tail,
                        const at::Tensor& b_tail, const at::Tensor& w_skip, const at::Tensor& b_skip,
                        const at::Tensor& mean, double norm_scale, int64_t scale) {
  wdsr::check_tail_shuffle(features, image, w_tail, b_tail, w_skip, b_skip, mean, scale, wdsr::kCudaTarget);
  const c10::cuda::CUDAGuard guard(features.device());
  at::Tensor out = new_output({features.size(0), 3, features.size(2) * scale, features.size(3) * scale},
                              features.options());
  // One expression: the contiguous copies live until the launch is queued (stream order covers the rest).
  check_launch("tail_shuffle", wdsr::launch_tail_shuffle(
      tail_shuffle_params(features, image, w_tail.contiguous(), b_tail.contiguous(), w_skip.contiguous(),
                          b_skip.contiguous(), mean.contiguous(), norm_scale, scale, out),
      at::cuda::getCurrentCUDAStream()));
  return out;
}

}  // namespace

TORCH_LIBRARY(wdsr_cuda, m) {
  wdsr::define_ops(m);
  m.def("wdsr_b_block_persistent" WDSR_B_BLOCK_ARGUMENTS);
}

TORCH_LIBRARY_IMPL(wdsr_cuda, CUDA, m) {
  m.impl("head_conv", &head_conv);
  m.impl("wdsr_a_block", &wdsr_a_block);
  m.impl("wdsr_b_block", &wdsr_b_block);
  m.impl("wdsr_b_block_persistent", &wdsr_b_block_persistent);
  m.impl("tail_shuffle", &tail_shuffle);
}
