// Test harness: the fused WDSR-B block of csrc/cpu/block_b.h called from Python (ctypes) without torch, so
// that tests can compile it in seconds, against the real headers or a deliberately broken copy of them, for
// one instruction set (-DWDSR_CPU_GENERIC, -DWDSR_CPU_AVX2 -mavx2 -mfma, ...). Work items run one at a time,
// each with fresh scratch, but are planned for `threads` threads, and the column chunks can be made narrow:
// both exercise the halo logic on small images.
#include "simd.h"
// simd.h first: block_b.h is written against its vector type
#include "block_b.h"
#include "block_b_winograd.h"
#include "one_item_at_a_time.h"

// winograd: the 3x3 on Winograd F(2x2, 3x3) (block_b_winograd.h) instead of direct.
extern "C" void harness_wdsr_b_block(const float* x, const float* w_expand, const float* b_expand,
                                     const float* w_reduce, const float* b_reduce, const float* w_conv,
                                     const float* b_conv, float res_scale, float* y, int n, int h, int w, int c,
                                     int wide, int low_rank, int max_chunk_w, int threads, int winograd) {
  const wdsr_cpu::BlockBArgs a{.x = x, .w_expand = w_expand, .b_expand = b_expand, .w_reduce = w_reduce,
                                .b_reduce = b_reduce, .w_conv = w_conv, .b_conv = b_conv, .res_scale = res_scale, .y = y,
                                .n = n, .h = h, .w = w, .c = c, .wide = wide, .low_rank = low_rank,
                                .max_chunk_w = max_chunk_w};
  const wdsr_cpu::Parallel parallel{threads, &one_item_at_a_time};
  if (winograd) {
    wdsr_cpu::WDSR_CPU_ISA::wdsr_b_block_winograd(a, parallel);
  } else {
    wdsr_cpu::WDSR_CPU_ISA::wdsr_b_block(a, parallel);
  }
}
