// Test harness: the blocks on AMX tiles of csrc/cpu/block_a_amx.h and block_b_amx.h called from Python (ctypes)
// without torch, built with -DWDSR_CPU_AMX_EMULATED (the tile operations in plain C++, on any CPU with AVX512-BF16) or
// with the AMX flags (CPUs with AMX-BF16: call harness_amx_permit() first). Work items run one at a time, each with fresh
// scratch, planned for `threads` threads, with column chunks as narrow as asked: the halo logic on small images.
#define WDSR_CPU_AVX512
#define WDSR_CPU_BF16
#define WDSR_CPU_AMX
#include "simd.h"
// simd.h first: the blocks are written against its vector type
#include "block_a_amx.h"
#include "block_b_amx.h"
#include "one_item_at_a_time.h"

extern "C" int harness_amx_permit() { return wdsr_cpu::WDSR_CPU_ISA::tiles_permitted() ? 1 : 0; }

// x and y bf16 (N, H, W, c); weights and biases float32 as kernels.h's BlockBArgs.
extern "C" void harness_wdsr_b_block_amx(const wdsr_cpu::Bf16* x, const float* w_expand, const float* b_expand,
                                         const float* w_reduce, const float* b_reduce, const float* w_conv,
                                         const float* b_conv, float res_scale, wdsr_cpu::Bf16* y, int n, int h, int w,
                                         int c, int wide, int low_rank, int max_chunk_w, int threads) {
  const wdsr_cpu::BlockBArgsOf<wdsr_cpu::Bf16> a{
      .x = x, .w_expand = w_expand, .b_expand = b_expand, .w_reduce = w_reduce, .b_reduce = b_reduce, .w_conv = w_conv,
      .b_conv = b_conv, .res_scale = res_scale, .y = y, .n = n, .h = h, .w = w, .c = c, .wide = wide,
      .low_rank = low_rank, .max_chunk_w = max_chunk_w};
  wdsr_cpu::WDSR_CPU_ISA::wdsr_b_block_amx(a, wdsr_cpu::Parallel{threads, &one_item_at_a_time});
}

// x and y bf16 (N, H, W, c); weights and biases float32 as kernels.h's BlockAArgs; column chunks of
// WDSR_CPU_AMX_A_CHUNK.
extern "C" void harness_wdsr_a_block_amx(const wdsr_cpu::Bf16* x, const float* w_expand, const float* b_expand,
                                         const float* w_reduce, const float* b_reduce, float res_scale,
                                         wdsr_cpu::Bf16* y, int n, int h, int w, int c, int wide, int threads) {
  const wdsr_cpu::BlockAArgsOf<wdsr_cpu::Bf16> a{
      .x = x, .w_expand = w_expand, .b_expand = b_expand, .w_reduce = w_reduce, .b_reduce = b_reduce,
      .res_scale = res_scale, .y = y, .n = n, .h = h, .w = w, .c = c, .wide = wide};
  wdsr_cpu::WDSR_CPU_ISA::wdsr_a_block_amx(a, wdsr_cpu::Parallel{threads, &one_item_at_a_time});
}
