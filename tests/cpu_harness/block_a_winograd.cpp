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
  const wdsr_cpu::BlockAArgs a{.x = x, .w_expand = w_expand, .b_expand = b_expand, .w_reduce = w_reduce,
                                .b_reduce = b_reduce, .res_scale = res_scale, .y = y, .n = n, .h = h, .w = w, .c = c,
                                .wide = wide};
  wdsr_cpu::WDSR_CPU_ISA::wdsr_a_block_winograd(a, wdsr_cpu::Parallel{threads, &one_item_at_a_time});
}
