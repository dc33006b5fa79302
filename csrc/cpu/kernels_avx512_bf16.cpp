// The ops on bf16 features (convs.h, block_b.h, block_a.h with simd.h's bf16 words): the AVX-512
// register blocks with vdpbf16ps, two bf16 multiply-adds a lane per instruction into fp32 accumulators, where the
// fp32 kernels run one FMA. Built with -mavx512f -mavx512vl -mavx512bw -mavx512bf16 -mavx2 -mfma; ops.cpp runs it
// only where the CPU reports avx512bf16 and avx512bw besides the AVX-512 path's flags. This file includes no torch
// header.
#define WDSR_CPU_AVX512
#define WDSR_CPU_BF16
#include "simd.h"
// simd.h first: the algorithm headers are written against its vector type
#include "convs.h"
#include "block_b.h"
#include "block_a.h"
#include "block_a_winograd.h"
#include "block_b_winograd.h"

namespace wdsr_cpu {
const Bf16KernelTable kAvx512Bf16Kernels = {"avx512_bf16", &avx512_bf16::head_conv, &avx512_bf16::tail_shuffle,
                                            &avx512_bf16::wdsr_b_block, &avx512_bf16::wdsr_a_block,
                                            &avx512_bf16::wdsr_a_block_winograd, BlockAPath::winograd,
    &avx512_bf16::wdsr_b_block_winograd, BlockBPath::winograd};
}  // namespace wdsr_cpu
