// torch.ops.wdsr_cuda.*: the op schemas (same names and signatures as wdsr_fast/ops/reference.py), input
// validation, output allocation and launches on the current stream. The only file that includes torch headers.
// head_conv and wdsr_a_block run through ATen's convolution (cuDNN); wdsr_b_block and tail_shuffle are ours.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "kernels.h"

namespace {

wdsr::DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return wdsr::DType::Float32;
    case at::kHalf: return wdsr::DType::Float16;
    case at::kBFloat16: return wdsr::DType::BFloat16;
    default: TORCH_CHECK(false, "expected float32, float16 or bfloat16, got ", t.scalar_type());
  }
}

wdsr::Strides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

void check_features(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got one on ", t.device());
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be (N, C, H, W), got ", t.sizes());
  TORCH_CHECK(t.numel() > 0, op, ": ", name, " is empty: ", t.sizes());
  TORCH_CHECK(t.numel() < (int64_t(1) << 31), op, ": ", name, " ", t.sizes(),
              " has 2**31 or more elements; upscale it in tiles (wdsr_fast.infer.upscale_tensor)");
  dtype_of(t);
}

void check_weight(const char* op, const char* name, const at::Tensor& w, at::IntArrayRef shape, const at::Tensor& x) {
  TORCH_CHECK(w.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ", w.sizes());
  TORCH_CHECK(w.scalar_type() == x.scalar_type() && w.device() == x.device(), op, ": ", name, " must be ",
              x.scalar_type(), " on ", x.device(), " like the input, got ", w.scalar_type(), " on ", w.device());
}

void check_mean(const char* op, const at::Tensor& mean, const at::Tensor& x) {
  TORCH_CHECK(mean.sizes() == at::IntArrayRef({3}) && mean.scalar_type() == at::kFloat && mean.device() == x.device(),
              op, ": mean must be a (3,) float32 tensor on ", x.device());
}

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(err));
}

// WDSR_FAST_POISON_OUTPUTS=1 (set by the tests): outputs start as NaN, so an element a kernel misses shows.
at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
  const char* poison = std::getenv("WDSR_FAST_POISON_OUTPUTS");
  if (poison != nullptr && std::string(poison) == "1") out.fill_(NAN);
  return out;
}

at::Tensor channels_last(const at::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

at::Tensor normalise(const at::Tensor& image, const at::Tensor& mean, double norm_scale) {
  return ((image.to(at::kFloat) - mean.view({1, 3, 1, 1})) / norm_scale).to(image.scalar_type());
}

at::Tensor head_conv(const at::Tensor& image, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& mean,
                     double norm_scale) {
  check_features("head_conv", "image", image);
  TORCH_CHECK(image.size(1) == 3, "head_conv: expected an RGB image (N, 3, H, W), got ", image.sizes());
  check_weight("head_conv", "weight", weight, {weight.size(0), 3, 3, 3}, image);
  check_weight("head_conv", "bias", bias, {weight.size(0)}, image);
  check_mean("head_conv", mean, image);
  const c10::cuda::CUDAGuard guard(image.device());
  return channels_last(at::conv2d(channels_last(normalise(image, mean, norm_scale)), weight, bias, 1, 1));
}

at::Tensor wdsr_a_block(const at::Tensor& x, const at::Tensor& w_expand, const at::Tensor& b_expand,
                        const at::Tensor& w_reduce, const at::Tensor& b_reduce, double res_scale) {
  check_features("wdsr_a_block", "x", x);
  const int64_t c = x.size(1), wide = w_expand.size(0);
  check_weight("wdsr_a_block", "w_expand", w_expand, {wide, c, 3, 3}, x);
  check_weight("wdsr_a_block", "b_expand", b_expand, {wide}, x);
  check_weight("wdsr_a_block", "w_reduce", w_reduce, {c, wide, 3, 3}, x);
  check_weight("wdsr_a_block", "b_reduce", b_reduce, {c}, x);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor in = channels_last(x);
  const at::Tensor expanded = at::relu(at::conv2d(in, w_expand, b_expand, 1, 1));
  return channels_last(at::add(in, at::conv2d(expanded, w_reduce, b_reduce, 1, 1), res_scale));
}

at::Tensor wdsr_b_block(const at::Tensor& x, const at::Tensor& w_expand, const at::Tensor& b_expand,
                        const at::Tensor& w_reduce, const at::Tensor& b_reduce, const at::Tensor& w_conv,
                        const at::Tensor& b_conv, double res_scale) {
  check_features("wdsr_b_block", "x", x);
  const int64_t c = x.size(1), wide = w_expand.size(0), low_rank = w_reduce.size(0);
  check_weight("wdsr_b_block", "w_expand", w_expand, {wide, c, 1, 1}, x);
  check_weight("wdsr_b_block", "b_expand", b_expand, {wide}, x);
  check_weight("wdsr_b_block", "w_reduce", w_reduce, {low_rank, wide, 1, 1}, x);
  check_weight("wdsr_b_block", "b_reduce", b_reduce, {low_rank}, x);
  check_weight("wdsr_b_block", "w_conv", w_conv, {c, low_rank, 3, 3}, x);
  check_weight("wdsr_b_block", "b_conv", b_conv, {c}, x);
  TORCH_CHECK(c <= wdsr::kMaxFeats && wide <= wdsr::kMaxWide && low_rank <= wdsr::kMaxLowRank,
              "wdsr_b_block: the CUDA kernel supports n_feats <= ", wdsr::kMaxFeats, ", expansion width <= ",
              wdsr::kMaxWide, " and low-rank width <= ", wdsr::kMaxLowRank, "; got ", c, ", ", wide, ", ", low_rank,
              " (use backend='triton')");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = new_output(x.sizes(), x.options().memory_format(at::MemoryFormat::ChannelsLast));
  check_launch("wdsr_b_block", wdsr::launch_wdsr_b_block(
      dtype_of(x), x.data_ptr(), strides_of(x), w_expand.contiguous().data_ptr(), b_expand.contiguous().data_ptr(),
      w_reduce.contiguous().data_ptr(), b_reduce.contiguous().data_ptr(), w_conv.contiguous().data_ptr(),
      b_conv.contiguous().data_ptr(), y.data_ptr(), strides_of(y), x.size(0), c, x.size(2), x.size(3), wide,
      low_rank, static_cast<float>(res_scale), at::cuda::getCurrentCUDAStream()));
  return y;
}

at::Tensor tail_shuffle(const at::Tensor& features, const at::Tensor& image, const at::Tensor& w_tail,
                        const at::Tensor& b_tail, const at::Tensor& w_skip, const at::Tensor& b_skip,
                        const at::Tensor& mean, double norm_scale, int64_t scale) {
  check_features("tail_shuffle", "features", features);
  check_features("tail_shuffle", "image", image);
  TORCH_CHECK(scale >= 2 && scale <= 4, "tail_shuffle: scale must be 2, 3 or 4, got ", scale);
  const int64_t n = features.size(0), c = features.size(1), h = features.size(2), w = features.size(3);
  const int64_t out_feats = 3 * scale * scale;
  TORCH_CHECK(image.sizes() == at::IntArrayRef({n, 3, h, w}) && image.scalar_type() == features.scalar_type(),
              "tail_shuffle: image must be (", n, ", 3, ", h, ", ", w, ") ", features.scalar_type(),
              " like the features, got ", image.sizes(), " ", image.scalar_type());
  check_weight("tail_shuffle", "w_tail", w_tail, {out_feats, c, 3, 3}, features);
  check_weight("tail_shuffle", "b_tail", b_tail, {out_feats}, features);
  check_weight("tail_shuffle", "w_skip", w_skip, {out_feats, 3, 5, 5}, features);
  check_weight("tail_shuffle", "b_skip", b_skip, {out_feats}, features);
  check_mean("tail_shuffle", mean, features);
  TORCH_CHECK(n * 3 * h * scale * w * scale < (int64_t(1) << 31), "tail_shuffle: the output has 2**31 or more "
              "elements; upscale in tiles");
  const c10::cuda::CUDAGuard guard(features.device());
  at::Tensor out = new_output({n, 3, h * scale, w * scale}, features.options());
  check_launch("tail_shuffle", wdsr::launch_tail_shuffle(
      dtype_of(features), features.data_ptr(), strides_of(features), image.data_ptr(), strides_of(image),
      w_tail.contiguous().data_ptr(), b_tail.contiguous().data_ptr(), w_skip.contiguous().data_ptr(),
      b_skip.contiguous().data_ptr(), mean.data_ptr<float>(), static_cast<float>(norm_scale), static_cast<int>(scale),
      out.data_ptr(), n, c, h, w, at::cuda::getCurrentCUDAStream()));
  return out;
}

}  // namespace

TORCH_LIBRARY(wdsr_cuda, m) {
  m.def("head_conv(Tensor image, Tensor weight, Tensor bias, Tensor mean, float norm_scale) -> Tensor");
  m.def("wdsr_a_block(Tensor x, Tensor w_expand, Tensor b_expand, Tensor w_reduce, Tensor b_reduce, "
        "float res_scale) -> Tensor");
  m.def("wdsr_b_block(Tensor x, Tensor w_expand, Tensor b_expand, Tensor w_reduce, Tensor b_reduce, Tensor w_conv, "
        "Tensor b_conv, float res_scale) -> Tensor");
  m.def("tail_shuffle(Tensor features, Tensor image, Tensor w_tail, Tensor b_tail, Tensor w_skip, Tensor b_skip, "
        "Tensor mean, float norm_scale, int scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(wdsr_cuda, CUDA, m) {
  m.impl("head_conv", &head_conv);
  m.impl("wdsr_a_block", &wdsr_a_block);
  m.impl("wdsr_b_block", &wdsr_b_block);
  m.impl("tail_shuffle", &tail_shuffle);
}

#ifdef WDSR_FAST_PYTHON_MODULE
// `import wdsr_fast._C` loads this library, which runs the registrations above; the module itself is empty.
#include <Python.h>
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
#endif
