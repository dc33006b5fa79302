// Test harness: the Winograd WDSR-A block of csrc/cpu/block_a_winograd.h called from Python (ctypes) without torch,
// compiled in seconds for one instruction set (-DWDSR_CPU_GENERIC, -DWDSR_CPU_AVX2 -mavx2 -mfma, ...) with narrow
// column chunks (-DWDSR_CPU_WINOGRAD_CHUNK=5) and either tile size (-DWDSR_CPU_WINOGRAD_M=2 or 4), against the real
// header or a deliberately broken copy of it. Work items run one at a time, each with fresh scratch, but are planned
// for `threads` threads: bands of rows and chunks exercise the halo logic on small images.
#include "simd.h"
// simd.h first: block_a_winograd.h is written against its vector type
#include "block_a_winograd.h"
#include "one_item_at_a_time.h"

extern "C" void harness_wdsr_a_block(const float* x, const float* w_expand, const float* b_expand,
                                     const float* w_reduce, const float* b_reduce, float res_scale, float* y, int n,
                                     int h, int w, int c, int wide, int threads) {
  wdsr_cpu::BlockAArgs a{};
  a.x = x;
  a.w_expand = w_expand;
  a.b_expand = b_expand;
  a.w_reduce = w_reduce;
  a.b_reduce = b_reduce;
  a.res_scale = res_scale;
  a.y = y;
  a.n = n;
  a.h = h;
  a.w = w;
  a.c = c;
  a.wide = wide;
  wdsr_cpu::WDSR_CPU_ISA::wdsr_a_block_winograd(a, wdsr_cpu::Parallel{threads, &one_item_at_a_time});
}
