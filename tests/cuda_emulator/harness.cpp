// C entry points over csrc/cuda/'s launchers and launch arithmetic, for ctypes (tests/cuda_emulator/__init__.py).
// The launchers take the parameter structs of kernels.h, which __init__.py mirrors as ctypes Structures; the
// *_layout functions report the C++ layout so that a test can check the mirror field by field.
#include <cstddef>

#include "cuda_emulation.h"
#include "kernels.h"
#include "launch_grid.cuh"

extern "C" {

int emulated_wdsr_b_block(const wdsr::WdsrBBlockParams* params) {
  cuda_emulation::runtime().last_fault.clear();
  return wdsr::launch_wdsr_b_block(*params, nullptr);
}

int emulated_tail_shuffle(const wdsr::TailShuffleParams* params) {
  cuda_emulation::runtime().last_fault.clear();
  return wdsr::launch_tail_shuffle(*params, nullptr);
}

const char* emulated_last_fault() { return cuda_emulation::runtime().last_fault.c_str(); }

// ---- the emulated devices ----------------------------------------------------------------------------------------
int emulated_set_device(int device) { return cudaSetDevice(device); }

void emulated_set_shared_optin(int device, int bytes) { cuda_emulation::runtime().shared_optin[device] = bytes; }

void emulated_set_sm_count(int device, int sms) { cuda_emulation::runtime().sm_count[device] = sms; }

unsigned emulated_last_grid_x() { return cuda_emulation::runtime().last_grid_x; }

// The cudaFuncSetAttribute calls so far: their number; the first `capacity` (device, value) pairs into `out`.
int emulated_attribute_calls(int* out, int capacity) {
  const auto& calls = cuda_emulation::runtime().attribute_calls;
  for (int i = 0; i < capacity && i < static_cast<int>(calls.size()); ++i) {
    out[2 * i] = calls[i].device;
    out[2 * i + 1] = calls[i].value;
  }
  return static_cast<int>(calls.size());
}

// ---- launch arithmetic (launch_grid.cuh) -------------------------------------------------------------------------
long long emulated_block_grid_x(int n, int h, int w) { return wdsr::block_grid_x(n, h, w); }

void emulated_block_tile_origin(unsigned cta, int h, int w, int* out) {
  const wdsr::TileOrigin t = wdsr::block_tile_origin(cta, h, w);
  out[0] = t.n, out[1] = t.y0, out[2] = t.x0;
}

long long emulated_tail_grid_x(int n, int h, int w) { return wdsr::tail_grid_x(n, h, w); }

void emulated_tail_pixel(unsigned cta, unsigned thread, int h, int w, int* out) {
  const wdsr::PixelIndex p = wdsr::tail_pixel(cta, thread, h, w);
  out[0] = p.n, out[1] = p.pixel;
}

// ---- the parameter structs' layout: offsets of the fields in declaration order, then the size ----------------
int emulated_block_params_layout(size_t* out) {
  using P = wdsr::WdsrBBlockParams;
  const size_t layout[] = {offsetof(P, dtype), offsetof(P, kernel), offsetof(P, x), offsetof(P, x_strides), offsetof(P, w_expand),
                           offsetof(P, b_expand), offsetof(P, w_reduce), offsetof(P, b_reduce), offsetof(P, w_conv),
                           offsetof(P, b_conv), offsetof(P, y), offsetof(P, y_strides), offsetof(P, n),
                           offsetof(P, c), offsetof(P, h), offsetof(P, w), offsetof(P, wide),
                           offsetof(P, low_rank), offsetof(P, res_scale), sizeof(P)};
  for (size_t i = 0; i < std::size(layout); ++i) out[i] = layout[i];
  return static_cast<int>(std::size(layout));
}

int emulated_tail_params_layout(size_t* out) {
  using P = wdsr::TailShuffleParams;
  const size_t layout[] = {offsetof(P, dtype), offsetof(P, features), offsetof(P, feature_strides),
                           offsetof(P, image), offsetof(P, image_strides), offsetof(P, w_tail), offsetof(P, b_tail),
                           offsetof(P, w_skip), offsetof(P, b_skip), offsetof(P, mean), offsetof(P, norm_scale),
                           offsetof(P, scale), offsetof(P, out), offsetof(P, n), offsetof(P, c), offsetof(P, h),
                           offsetof(P, w), sizeof(P)};
  for (size_t i = 0; i < std::size(layout); ++i) out[i] = layout[i];
  return static_cast<int>(std::size(layout));
}

}  // extern "C"
