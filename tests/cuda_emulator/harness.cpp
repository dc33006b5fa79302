// C entry points over csrc/'s launchers, for ctypes (tests/cuda_emulator/__init__.py). Strides come as int64[4].
#include "cuda_emulation.h"
#include "kernels.h"

namespace {
wdsr::Strides strides(const int64_t* s) { return {s[0], s[1], s[2], s[3]}; }
}  // namespace

extern "C" {

int emulated_wdsr_b_block(int dtype, const void* x, const int64_t* xs, const void* w_expand, const void* b_expand,
                          const void* w_reduce, const void* b_reduce, const void* w_conv, const void* b_conv, void* y,
                          const int64_t* ys, int n, int c, int h, int w, int wide, int low_rank, float res_scale) {
  cuda_emulation::runtime().last_fault.clear();
  return wdsr::launch_wdsr_b_block(static_cast<wdsr::DType>(dtype), x, strides(xs), w_expand, b_expand, w_reduce,
                                   b_reduce, w_conv, b_conv, y, strides(ys), n, c, h, w, wide, low_rank, res_scale,
                                   nullptr);
}

int emulated_tail_shuffle(int dtype, const void* features, const int64_t* fs, const void* image, const int64_t* is,
                          const void* w_tail, const void* b_tail, const void* w_skip, const void* b_skip,
                          const float* mean, float norm_scale, int scale, void* out, int n, int c, int h, int w) {
  cuda_emulation::runtime().last_fault.clear();
  return wdsr::launch_tail_shuffle(static_cast<wdsr::DType>(dtype), features, strides(fs), image, strides(is), w_tail,
                                   b_tail, w_skip, b_skip, mean, norm_scale, scale, out, n, c, h, w, nullptr);
}

const char* emulated_last_fault() { return cuda_emulation::runtime().last_fault.c_str(); }

}  // extern "C"
