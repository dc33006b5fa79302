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
  wdsr_cpu::BlockBArgsOf<wdsr_cpu::Bf16> a{};
  a.x = x;
  a.w_expand = w_expand;
  a.b_expand = b_expand;
  a.w_reduce = w_reduce;
  a.b_reduce = b_reduce;
  a.w_conv = w_conv;
  a.b_conv = b_conv;
  a.res_scale = res_scale;
  a.y = y;
  a.n = n;
  a.h = h;
  a.w = w;
  a.c = c;
  a.wide = wide;
  a.low_rank = low_rank;
  a.max_chunk_w = max_chunk_w;
  const wdsr_cpu::Parallel parallel{threads, &one_item_at_a_time};
  wdsr_cpu::WDSR_CPU_ISA::wdsr_b_block_amx(a, parallel);
}

// x and y bf16 (N, H, W, c); weights and biases float32 as kernels.h's BlockAArgs; column chunks of
// WDSR_CPU_AMX_A_CHUNK.
extern "C" void harness_wdsr_a_block_amx(const wdsr_cpu::Bf16* x, const float* w_expand, const float* b_expand,
                                         const float* w_reduce, const float* b_reduce, float res_scale,
                                         wdsr_cpu::Bf16* y, int n, int h, int w, int c, int wide, int threads) {
  wdsr_cpu::BlockAArgsOf<wdsr_cpu::Bf16> a{};
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
  const wdsr_cpu::Parallel parallel{threads, &one_item_at_a_time};
  wdsr_cpu::WDSR_CPU_ISA::wdsr_a_block_amx(a, parallel);
}
