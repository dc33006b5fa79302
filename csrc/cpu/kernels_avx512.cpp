// The CPU kernels (block_b.h, convs.h, block_a.h, block_a_winograd.h) compiled for AVX-512F: 16 fp32 lanes, 32 zmm
// registers, masked loads and stores for channel counts that are not multiples of 16. Built with -mavx512f -mavx512vl
// -mavx2 -mfma; ops.cpp runs it only where the CPU reports avx512f, avx512vl, avx2 and fma. This file includes no torch
// header.
#define WDSR_CPU_AVX512
#include "simd.h"
// simd.h first: the algorithm headers are written against its vector type
#include "block_b.h"
#include "convs.h"
#include "block_a.h"
#include "block_a_winograd.h"
#include "block_b_winograd.h"

namespace wdsr_cpu {
const KernelTable kAvx512Kernels = {"avx512", &avx512::head_conv, &avx512::wdsr_b_block, &avx512::wdsr_a_block,
                                     &avx512::wdsr_a_block_winograd, &avx512::tail_shuffle, BlockAPath::winograd,
    &avx512::wdsr_b_block_winograd, BlockBPath::winograd};
}  // namespace wdsr_cpu
