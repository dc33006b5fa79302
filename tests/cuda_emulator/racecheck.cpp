// One small launch of each csrc/cuda/ kernel and dtype, built with -fsanitize=thread by tests/cuda_emulator/__init__.py
// (run_racecheck): ThreadSanitizer then reports any shared-memory access that no barrier orders, whatever the
// thread timing. Exits non-zero on a launch error; ThreadSanitizer's exit code on a race is set by the caller.
// The persistent block runs on two images of two tiles each (the emulated devices have 3 SMs, so one CTA computes
// two tiles, one from each x buffer), on NCHW x (ordinary loads) and channels_last x (cp.async).
#include <cstdio>
#include <random>
#include <vector>

#include "cuda_emulation.h"
#include "kernels.h"

namespace {

std::mt19937 rng(0);

template <typename T> T convert(float v);
template <> float convert<float>(float v) { return v; }
template <> __half convert<__half>(float v) { return __float2half_rn(v); }
template <> __nv_bfloat16 convert<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T>
std::vector<T> random_values(size_t count, float scale) {
  std::normal_distribution<float> normal(0.f, scale);
  std::vector<T> values(count);
  for (T& v : values) v = convert<T>(normal(rng));
  return values;
}

wdsr::Strides nchw(int c, int h, int w) { return {int64_t(c) * h * w, int64_t(h) * w, w, 1}; }
wdsr::Strides nhwc(int c, int h, int w) { return {int64_t(c) * h * w, 1, int64_t(w) * c, c}; }

bool check(const char* what, cudaError_t error) {
  if (error != cudaSuccess) std::fprintf(stderr, "%s: CUDA error %d: %s\n", what, int(error),
                                         cuda_emulation::runtime().last_fault.c_str());
  return error == cudaSuccess;
}

template <typename T>
bool block(wdsr::DType dtype, wdsr::BlockKernel kernel = wdsr::BlockKernel::Tiled, bool channels_last = false) {
  const int n = kernel == wdsr::BlockKernel::Tiled ? 1 : 2, c = 32, h = 9, w = 21, wide = 192, low_rank = 25;
  auto x = random_values<T>(n * c * h * w, 1.f), y = random_values<T>(n * c * h * w, 1.f);
  auto w_expand = random_values<T>(wide * c, .3f), b_expand = random_values<T>(wide, .1f);
  auto w_reduce = random_values<T>(low_rank * wide, .3f), b_reduce = random_values<T>(low_rank, .1f);
  auto w_conv = random_values<T>(c * low_rank * 9, .3f), b_conv = random_values<T>(c, .1f);
  wdsr::WdsrBBlockParams p{};
  p.dtype = dtype;
  p.kernel = kernel;
  p.x = x.data();
  p.x_strides = channels_last ? nhwc(c, h, w) : nchw(c, h, w);
  p.w_expand = w_expand.data();
  p.b_expand = b_expand.data();
  p.w_reduce = w_reduce.data();
  p.b_reduce = b_reduce.data();
  p.w_conv = w_conv.data();
  p.b_conv = b_conv.data();
  p.y = y.data();
  p.y_strides = channels_last ? nhwc(c, h, w) : nchw(c, h, w);
  p.n = n, p.c = c, p.h = h, p.w = w, p.wide = wide, p.low_rank = low_rank;
  p.res_scale = 0.7f;
  return check("wdsr_b_block", wdsr::launch_wdsr_b_block(p, nullptr));
}

template <typename T>
bool tail(wdsr::DType dtype, int scale) {
  const int n = 1, c = 8, h = 9, w = 11, out_feats = 3 * scale * scale;
  auto features = random_values<T>(n * c * h * w, 1.f), image = random_values<T>(n * 3 * h * w, 50.f);
  auto w_tail = random_values<T>(out_feats * c * 9, .3f), b_tail = random_values<T>(out_feats, .1f);
  auto w_skip = random_values<T>(out_feats * 75, .3f), b_skip = random_values<T>(out_feats, .1f);
  auto out = random_values<T>(n * 3 * h * scale * w * scale, 1.f);
  const float mean[3] = {114.4f, 111.5f, 103.0f};
  wdsr::TailShuffleParams p{};
  p.dtype = dtype;
  p.features = features.data();
  p.feature_strides = nchw(c, h, w);
  p.image = image.data();
  p.image_strides = nchw(3, h, w);
  p.w_tail = w_tail.data();
  p.b_tail = b_tail.data();
  p.w_skip = w_skip.data();
  p.b_skip = b_skip.data();
  p.mean = mean;
  p.norm_scale = 127.5f;
  p.scale = scale;
  p.out = out.data();
  p.n = n, p.c = c, p.h = h, p.w = w;
  return check("tail_shuffle", wdsr::launch_tail_shuffle(p, nullptr));
}

}  // namespace

int main() {
  using wdsr::BlockKernel;
  bool ok = block<float>(wdsr::DType::Float32) && block<__half>(wdsr::DType::Float16) &&
            block<__nv_bfloat16>(wdsr::DType::BFloat16);
  for (const bool channels_last : {true, false})
    ok = ok && block<__half>(wdsr::DType::Float16, BlockKernel::Persistent, channels_last);
  ok = ok && block<__nv_bfloat16>(wdsr::DType::BFloat16, BlockKernel::Persistent, true);
  for (int scale = 2; scale <= 4; ++scale) ok = ok && tail<__half>(wdsr::DType::Float16, scale);
  std::puts(ok ? "racecheck: all launches ran" : "racecheck: a launch failed");
  return ok ? 0 : 1;
}
